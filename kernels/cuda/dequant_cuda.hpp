#pragma once
// Host API of the CUDA dequantization kernel (kernels/cuda/dequant.cu). Includes no CUDA
// header: device memory is passed as plain pointers, streams as `void*` (a cudaStream_t;
// nullptr = the legacy default stream). Link razerq::kernels_cuda (defines RAZERQ_HAS_CUDA=1).
//
// Every CUDA call is checked; a failure throws razerq::Error naming the call and
// cudaGetErrorString's text.
//
// Exactness: the kernel computes each value in float64 with the reference's expression
// (base - zero) * scale, scales decoded exactly, and rounds once (cvt.rn.f16.f64), so its
// output equals fp16(quantizer::dequantize_ref) bit for bit for EVERY scale kind (the tests
// check 0 ULP for all formats).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cuda/gemv_layout.hpp"
#include "kernels/host_device.hpp"
#include "quantizer/quantize.hpp"

namespace razerq::kernels {

// True when a CUDA device is present and can run these kernels (built for sm_90 plus PTX).
// Otherwise false and, when why != nullptr, the reason (e.g. cudaGetDeviceCount's error).
bool cuda_device_available(std::string* why = nullptr);
// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, driver 13.0, runtime 13.0)", for logs.
std::string cuda_device_description();

// The scale kinds that carry RaZeR's special-value index (quantizer::FormatSpec::has_special; the
// kernels' own list, upload() checks that the two agree).
RAZERQ_HD constexpr bool is_razer_kind(quantizer::ScaleKind k) {
  return k == quantizer::ScaleKind::kFp16Razer || k == quantizer::ScaleKind::kE8M0Razer ||
         k == quantizer::ScaleKind::kE3M3RazerTensor;
}

// A packed tensor in device memory: one allocation (owned) holding the arrays of a
// quantizer::QuantizedTensor. Move-only; freed by free() or the destructor.
struct DeviceTensor {
  quantizer::FormatConfig cfg;
  int64_t rows = 0, cols = 0;
  int64_t groups_per_row = 0, code_words_per_row = 0, zero_words_per_row = 0;
  const uint32_t* codes = nullptr;     // [rows, code_words_per_row]
  const uint16_t* scales16 = nullptr;  // [rows, groups_per_row] kFp16, kFp16Razer (else null)
  const uint8_t* scales8 = nullptr;    // [rows, groups_per_row] 8-bit scale kinds (else null)
  const uint32_t* zeros = nullptr;     // [rows, zero_words_per_row] asym int (else null)
  const uint8_t* sv_index = nullptr;   // [rows, groups_per_row] razer fallback (else null)
  // [rows, groups_per_row] the zero points once more, a byte each and laid out like the scales
  // (tiled where they are), for the fused GEMV's nibble decoders: asym int nib3 tensors (else null).
  const uint8_t* zero_bytes = nullptr;
  float tensor_scale = 1.0f;
  // Every group scale is representable as an fp16 (always for fp16 kinds; MX kinds: exponents
  // -24 .. 15), which the fused GEMV needs (gemv_cuda.hpp). Set by upload().
  bool scales_fit_fp16 = true;
  // The largest inner group scale (fp16/2^e/E4M3/E3M3, without the tensor scale); the fused
  // GEMV folds the 2^14 of its E2M1 bit decode into the scale when this is below 4. Set by upload().
  double max_inner_scale = 0;
  // How the codes are laid out on the device (gemv_layout.hpp): kDisk, or the 8-code chunks of
  // each 128-column block permuted for the fused GEMV (kQuad, kPair); the dequantization kernel
  // reads every layout. Set by upload() (layout_for), kept by concat_rows and row_view.
  CodeLayout layout = CodeLayout::kDisk;
  // The rows stored tile by tile (gemv_layout.hpp tile_rows: 16-row tiles, each 128-column
  // block's 16 row pieces contiguous; the scales and sv_index alike, tile_groups; the zero points
  // stay row-major), for the fused GEMV's streaming. Set by upload() where tiling_applies (rows
  // a multiple of 16); kept by concat_rows and row_view (whose first row must then be a
  // multiple of 16).
  bool tiled = false;
  // Each 8-code chunk's codes in pair order (gemv_layout.hpp pair_chunk: columns 0, 2, 4, 6
  // then 1, 3, 5, 7), which the fused GEMV requires. Set by upload() where pair_order_applies
  // (3/4-bit codes, columns a multiple of 128); kept by concat_rows and row_view.
  bool pair_order = false;
  // 4-bit RaZeR codes re-encoded for the fused GEMV's two-table decoder (gemv_e2m1.cuh, kXor*):
  // a group whose special value is negative stored as its negation, its scale then read with the
  // sign bit (the special-value index's high bit, which is the sign when special values 0, 1 are
  // positive and 2, 3 negative, as the defaults: razer's word & 0xbfff, mxfp4-razer's and
  // nvfp4-razer's scale byte's bit 7; the on-disk scales are unchanged); the codes of a chunk in
  // column order (pair_order false). Set by upload() where razer_xor_applies; kept by concat_rows and
  // row_view; the dequantization kernel and the GEMV's table decoder read it too.
  bool razer_xor = false;
  // 3-bit codes stored as nibbles for the fused GEMV's lookup decoder (gemv_bits3.cuh nib3_pack:
  // a lane's 12 bytes of a row and 128-column block hold three chunks as nibbles, the fourth in
  // their spare bits; the chunks in column order, pair_order false). Set by upload() where
  // nib3_applies (razer3, fp3 and int3: grids whose values and special values x 2^-14 are fp16
  // with a zero low byte, as the defaults; int3 asym also gets zero_bytes); kept by concat_rows
  // and row_view; the dequantization kernel and the GEMV's table decoder read it too.
  bool nib3 = false;
  // 4-bit codes kept in column order (pair_order false) for the fused GEMV's pair-table decoder
  // (gemv.cu Decode::kPairLut: each byte of two codes looks up its half2 of fp16 values in a
  // 256-entry shared-memory table): grids without a bit decoder, with plain fp16 scales,
  // symmetric (nf4). Set by upload() where pair_table_applies; kept by concat_rows and row_view;
  // the dequantization kernel and the GEMV's table decoder read the column order.
  bool pair_table = false;
  void* storage = nullptr;  // the owning allocation (null for a row_view, which borrows it)
  size_t storage_bytes = 0;

  DeviceTensor() = default;
  DeviceTensor(DeviceTensor&& o) noexcept;
  DeviceTensor& operator=(DeviceTensor&& o) noexcept;
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;
  ~DeviceTensor();
};

// Validates q (quantizer::validate) and copies it to the device; synchronous. The codes are
// permuted for the fused GEMV where gemv_layout.hpp's layout_for says so (DeviceTensor::layout;
// few_rows: gemv_layout.hpp few_rows_per_sm on the current device).
DeviceTensor upload(const quantizer::QuantizedTensor& q, void* stream = nullptr);
// The layout later upload() calls ask layout_for for: kAuto (the default), or one forced where a
// permutation applies (kDisk keeps the on-disk order), for tests and benchmarks. Process-wide.
void set_upload_layout(CodeLayout layout);
// Whether later upload() calls tile the rows where tiling_applies (the default, true); false
// keeps them row-major, for tests and benchmarks. Process-wide.
void set_upload_tiling(bool tiled);
// Whether later upload() calls re-encode 4-bit RaZeR codes where razer_xor_applies (the default,
// true: DeviceTensor::razer_xor); false keeps the E2M1 codes in pair order, for tests and
// benchmarks. Process-wide.
void set_upload_razer_xor(bool on);
// Whether later upload() calls store 3-bit codes as nibbles where nib3_applies (the default,
// true: DeviceTensor::nib3); false keeps them in pair order for the bit decoders, for tests and
// benchmarks. Process-wide.
void set_upload_nib3(bool on);
// Whether later upload() calls keep 4-bit codes in column order for the pair-table decoder where
// pair_table_applies (the default, true: DeviceTensor::pair_table); false gives them the pair
// order (then the table decoder), for tests and benchmarks. Process-wide.
void set_upload_pair_table(bool on);
// Frees the device memory; idempotent.
void free(DeviceTensor& t);

// The rows of several uploaded tensors stacked into one [sum of rows, cols] tensor, in order
// (e.g. q/k/v or gate/up, so one product replaces several). They must agree on the format
// (label, special values, int options), the columns, the tensor scale (NV kinds) and whether
// razer's special-value index is separate; else kInvalidArgument naming the first mismatch.
// Device-to-device copies on `stream`; synchronous.
DeviceTensor concat_rows(const std::vector<const DeviceTensor*>& parts, void* stream = nullptr);

// Rows [row0, row0 + rows) of t as a tensor that borrows t's device memory: its storage is
// null, so free() and its destructor leave the memory alone, and t must outlive it (e.g. the
// parts of a concat_rows result, so the parts need not stay uploaded beside it). Throws
// kInvalidArgument for a range outside t, a t that is not uploaded, or a tiled t and a first
// row that is not a multiple of 16.
DeviceTensor row_view(const DeviceTensor& t, int64_t row0, int64_t rows);

// d_out: device [t.rows, t.cols] fp16 bits, row-major (any alignment; 16-byte aligned with
// cols % 8 == 0 takes the vector-store path). Asynchronous on `stream`; launch errors throw
// here, execution errors at the next synchronising call.
void dequantize_fp16_cuda(const DeviceTensor& t, uint16_t* d_out, void* stream = nullptr);

// cudaStreamSynchronize (nullptr: the default stream), checked.
void cuda_synchronize(void* stream = nullptr);

// Plain device buffer, for outputs and tests. Move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();

  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }

  void fill_bytes(int byte_value, void* stream = nullptr);                 // cudaMemsetAsync
  void copy_from_host(const void* src, size_t bytes, void* stream = nullptr);  // then synchronises
  void copy_to_host(void* dst, size_t bytes, void* stream = nullptr) const;    // then synchronises

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace razerq::kernels
