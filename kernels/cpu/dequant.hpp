#pragma once
// CPU dequantization of a packed weight matrix (quantizer::QuantizedTensor) to float32 or
// fp16, row-major [rows, cols]. Torch-free, CUDA-free; OpenMP over rows.
//
// Exactness: every output equals the float64 reference (quantizer::dequantize_row_ref)
// rounded ONCE to the output type, round-to-nearest-even, for every format and scale kind.
// Each group's values are computed in double with the reference's own expression
//   (base - zero) * scale      (base = grid value of the code, or the group's special value)
// from quantizer::group_params() and quantizer::base_grid(), so the double is the very same
// number the reference produces, and it is rounded once (double -> float by the cast,
// double -> fp16 by common/half.hpp double_to_fp16, never through float: that would round twice).
// The per-element work is a lookup in a per-group table of 2^bits decoded outputs; groups
// shorter than 2^bits (e.g. int8 with g32) decode their elements directly, same arithmetic.
#include <cstdint>

#include "quantizer/quantize.hpp"

namespace razerq::kernels {

// Whole tensor: out [q.rows, q.cols]. threads <= 0: OpenMP's default.
// q must be consistent (quantizer::validate); it is validated here.
// Throws razerq::Error(kInvalidArgument / kMalformedInput) on a null output or a bad tensor.
void dequantize_to_float(const quantizer::QuantizedTensor& q, float* out, int threads = 0);
void dequantize_to_fp16(const quantizer::QuantizedTensor& q, uint16_t* out, int threads = 0);

// Rows [row0, row0 + nrows) only: out [nrows, q.cols]. For streaming a large tensor out in
// slices; checks the shape and the slice's metadata only (not the whole tensor each call).
void dequantize_rows_to_fp16(const quantizer::QuantizedTensor& q, int64_t row0, int64_t nrows,
                             uint16_t* out, int threads = 0);
void dequantize_rows_to_float(const quantizer::QuantizedTensor& q, int64_t row0, int64_t nrows,
                              float* out, int threads = 0);

}  // namespace razerq::kernels
