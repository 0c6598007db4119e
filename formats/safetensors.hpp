#pragma once
// safetensors reading and writing, torch-free.
//
// File layout (https://github.com/huggingface/safetensors):
//   8 bytes   u64 little-endian N = length of the JSON header
//   N bytes   JSON object: "__metadata__" (string -> string, optional) and, per tensor,
//             "name": {"dtype": "F16", "shape": [a, b], "data_offsets": [begin, end]}
//   rest      the data section; offsets are relative to its start
//
// SafetensorsFile maps a file read-only and validates the whole header before handing out
// anything, so no accessor can read outside the mapping. SafetensorsWriter streams tensors
// to a side file and assembles the final file in finish(); it holds at most one tensor.
// All failures throw razerq::Error naming the file and, where relevant, the tensor.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace razerq::formats {

// Element types of safetensors, spelled as in the format by dtype_name().
enum class DType {
  kBool,
  kU8,
  kI8,
  kU16,
  kI16,
  kF16,
  kBF16,
  kU32,
  kI32,
  kF32,
  kU64,
  kI64,
  kF64,
  kF8E4M3,
  kF8E5M2,
};

// The safetensors spelling of a dtype: "BOOL", "U8", "F16", "BF16", "F8_E4M3", ...
const char* dtype_name(DType dtype);
// Bytes per element.
size_t dtype_size(DType dtype);
// Inverse of dtype_name(); an unknown spelling throws kMalformedInput at `where`, naming the
// string and listing the accepted ones.
DType parse_dtype(const std::string& s, const std::string& where);

// One tensor of a safetensors file.
struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t data_begin = 0;  // offsets relative to the start of the data section
  uint64_t data_end = 0;

  // Product of the dims (1 for a scalar). Validated files guarantee it does not overflow.
  int64_t numel() const;
  // Size of the tensor's data in bytes (data_end - data_begin).
  uint64_t nbytes() const { return data_end - data_begin; }
};

// "[a, b, c]", as used in error messages.
std::string shape_string(const std::vector<int64_t>& shape);

// A read-only, memory-mapped safetensors file. Movable, not copyable.
class SafetensorsFile {
 public:
  // Maps `path` (PROT_READ, MAP_PRIVATE) and validates the header: sizes, JSON structure,
  // dtypes, shapes against byte ranges, ranges inside the data section, no overlaps.
  // Throws kIo when the file cannot be opened, kMalformedInput for any bad content.
  static SafetensorsFile open(const std::string& path);

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  // The path the file was opened with.
  const std::string& path() const { return path_; }
  // Every tensor, in the order of their data offsets.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // Whether the file holds a tensor of that name.
  bool has(const std::string& name) const;
  // The tensor of that name; a missing one throws kMalformedInput naming file and tensor.
  const TensorInfo& info(const std::string& name) const;
  // Pointer to the tensor's first byte inside the mapping (no alignment guarantee).
  // `t` must come from this file; a range outside the data section throws kInvalidArgument.
  const uint8_t* data(const TensorInfo& t) const;
  // The "__metadata__" map (empty when the header has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Total file size, and the header length N of the layout above.
  uint64_t file_size() const { return map_size_; }
  uint64_t header_size() const { return header_size_; }

  // Converts an F32/F16/BF16/F64 tensor to float into out[0, numel). Other dtypes throw
  // kUnsupported naming file, tensor and dtype.
  void read_float(const TensorInfo& t, float* out) const;
  // Same, by name, into a new vector.
  std::vector<float> read_float(const std::string& name) const;
  // Converts an F32/F16/BF16/F64 tensor to double into out[0, numel).
  void read_double(const TensorInfo& t, double* out) const;

  // Hint that the tensor's pages are no longer needed (madvise MADV_DONTNEED), so streaming
  // a model larger than RAM keeps the resident set small. Later reads fault the pages back
  // in from the file, so this never changes what is read.
  void release(const TensorInfo& t) const;

 private:
  SafetensorsFile() = default;
  void unmap() noexcept;
  void parse_header();
  // Throws kInvalidArgument unless t's range lies inside this file's data section.
  void check_range(const TensorInfo& t) const;

  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  uint64_t header_size_ = 0;
  uint64_t data_size_ = 0;  // bytes in the data section
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// Streams tensors into a safetensors file. Tensors are appended to "<path>.data.tmp" as
// they come; finish() writes the file (length, JSON header padded with spaces to a multiple
// of 8, data) to "<path>.tmp", renames it to "<path>" and removes the side file. Peak memory
// is the caller's one tensor plus a small copy buffer. Not copyable, not movable.
class SafetensorsWriter {
 public:
  // Creates "<path>.data.tmp" at once (kIo on failure); "<path>" is written by finish().
  explicit SafetensorsWriter(std::string path);
  // If finish() did not complete, removes the side file and any partial "<path>.tmp";
  // "<path>" itself is only ever replaced whole, by finish().
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Sets the "__metadata__" map (replacing any earlier one). Written only when non-empty.
  void set_metadata(const std::map<std::string, std::string>& md);
  // Appends one tensor. Throws kInvalidArgument for an empty, reserved ("__metadata__"),
  // non-UTF-8 or duplicate name, a negative dim, or nbytes != numel * dtype_size;
  // the writer is unchanged after such an error. Write failures throw kIo.
  void add(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
           const void* bytes, size_t nbytes);
  // Writes "<path>" (atomically, by rename) and removes the side file. Further calls to
  // add()/set_metadata()/finish() throw kInvalidArgument.
  void finish();

  const std::string& path() const { return path_; }
  // Name of the side file that holds the data until finish().
  const std::string& tmp_path() const { return tmp_path_; }

 private:
  void cleanup() noexcept;

  std::string path_;
  std::string tmp_path_;      // "<path>.data.tmp": the data section, as tensors come
  std::string out_tmp_path_;  // "<path>.tmp": the whole file, until renamed to "<path>"
  std::FILE* tmp_ = nullptr;
  bool finished_ = false;
  bool output_started_ = false;  // finish() created "<path>.tmp"
  uint64_t data_size_ = 0;
  std::vector<TensorInfo> tensors_;  // in add() order; offsets into the data section
  std::unordered_set<std::string> names_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace razerq::formats
