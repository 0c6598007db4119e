#pragma once
// An independent GGUF reader and block decoder, written from ggml's specification
// (ggml-org/ggml docs/gguf.md; ggml/src/ggml-common.h block structs and ggml-quants.c
// dequantize_row_* for the type layouts) and sharing no packing code with the writer
// (formats/export_gguf.cpp). `razerq export --to gguf` re-reads every file it writes with it,
// and the tests decode hand-made blocks with it.
//
// Supported: GGUF versions 2 and 3, every metadata value type, tensor types F32, F16, BF16,
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, MXFP4, NVFP4 (decoding); other types are listed with
// their id but cannot be decoded.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace razerq::formats::gguf {

// Metadata value types (docs/gguf.md, gguf_metadata_value_type).
enum class ValueType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// One metadata value. Scalars are widened: integers in `i` (unsigned ones below 2^63) and
// `u`, floats in `f`. Arrays hold their element type and the elements.
struct Value {
  ValueType type = ValueType::kU8;
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0;
  std::string s;
  ValueType elem_type = ValueType::kU8;  // arrays
  std::vector<Value> elems;              // arrays
};

struct TensorInfo {
  std::string name;
  std::vector<uint64_t> ne;  // ne[0] is the fastest-varying dimension (columns of a weight)
  uint32_t type = 0;         // ggml_type id
  uint64_t offset = 0;       // relative to the start of the data section
  uint64_t nbytes = 0;       // computed from the type's block size
  uint64_t rows() const;     // product of ne[1..]
};

// ggml type ids this reader knows by name ("Q4_0", ...); "type<N>" otherwise.
std::string type_name(uint32_t type);
// Elements per block and bytes per block of a type; {0, 0} if unknown to this reader.
std::pair<int, int> block_layout(uint32_t type);

class File {
 public:
  // Maps and parses `path`: header, metadata, tensor infos, alignment, and checks that every
  // tensor lies inside the file at an aligned offset. Errors name the path and the item.
  static File open(const std::string& path);
  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  ~File();

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }

  const Value* find(const std::string& key) const;           // null when absent
  const TensorInfo* find_tensor(const std::string& name) const;
  // Typed getters; a missing key or a wrong type throws kMalformedInput naming the key.
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;     // any integer type
  double get_float(const std::string& key) const;    // F32 or F64

  // The raw bytes of a tensor.
  const uint8_t* data(const TensorInfo& t) const;
  // Decodes row `row` (ne[0] values) to float64, exactly as ggml's reference dequantization
  // defines it (products of the stored fields, evaluated in float64 so that nothing rounds).
  void decode_row(const TensorInfo& t, uint64_t row, double* out) const;

 private:
  File() = default;
  std::string path_;
  uint8_t* map_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_start_ = 0;
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> kv_index_, tensor_index_;
};

// IEEE binary16 -> double (subnormals, infinities, NaN), written here from the standard.
double fp16_value(uint16_t h);

// Decoders of one block (exposed for the tests' hand-computed blocks): `blk` points at the
// block's bytes, `out` receives its elements.
void decode_block(uint32_t type, const uint8_t* blk, double* out);

}  // namespace razerq::formats::gguf
