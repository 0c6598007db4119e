#pragma once
// The lut format on CUDA (kernels/cuda/lut_gemv.cu): y = x W^T for a packed lut tensor W [N, K]
// (quantizer/lut.hpp, formats/SPEC.md 5.7) and small M (1 .. kLutGemvMaxM), in two kernels:
//   lut_gemv_cuda    the dense part: each weight is its row's fp16 table entry (exact), one warp
//                    per output row, the row's table in shared memory; each lane takes chunks of
//                    32 codes (b words: 16 bytes at 4 bits), looks them up and multiplies them
//                    with x's 32 matching entries (16-byte loads when x is 16-byte aligned and K
//                    a multiple of 8), fp32 products and accumulation; y is overwritten.
//   sparse_add_cuda  the CSR part: y[m, r] += sum over row r's entries of val * x[m, col], fp32,
//                    one warp per row (no atomics); nothing to do without a sparse part.
// One template over the code width (3, 4) and M. x: fp16 [M, K], row stride K, any alignment;
// y: fp32 [M, N], row stride N. Asynchronous on `stream`; argument errors throw razerq::Error.
// Host API only: includes no CUDA header. Link razerq::kernels_cuda.
#include <cstdint>

#include "kernels/cuda/dequant_cuda.hpp"
#include "quantizer/quantize.hpp"

namespace razerq::kernels {

inline constexpr int kLutGemvMaxM = 8;

// A lut tensor in device memory (one owned allocation). Move-only.
struct LutDeviceTensor {
  int bits = 0;
  int64_t rows = 0, cols = 0, code_words_per_row = 0, nnz = 0;
  const uint32_t* codes = nullptr;   // [rows, code_words_per_row]
  const uint16_t* lut = nullptr;     // [rows, 2^bits] fp16
  const int32_t* row_ptr = nullptr;  // [rows + 1] (null without a sparse part)
  const int32_t* col = nullptr;      // [nnz]
  const uint16_t* val = nullptr;     // [nnz] fp16
  DeviceBuffer storage;
};

// Validates q (quantizer::validate; must be lut) and copies it to the device; synchronous.
LutDeviceTensor upload_lut(const quantizer::QuantizedTensor& q, void* stream = nullptr);

void lut_gemv_cuda(const LutDeviceTensor& w, const uint16_t* x, int64_t M, float* y, void* stream = nullptr);
void sparse_add_cuda(const LutDeviceTensor& w, const uint16_t* x, int64_t M, float* y, void* stream = nullptr);

}  // namespace razerq::kernels
