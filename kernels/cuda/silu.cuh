#pragma once
// SiLU as the decode step computes it, shared by silu_mul_kernel (decode_ops.cu) and the fused
// GEMV's SiLU epilogue (gemv.cu, gemv_silu_mul_fp16_cuda), so that the two give the same bits:
// silu(g) = g / (1 + exp(-g)) in fp32 (libtorch's silu), from g already rounded to the
// activation type; the caller rounds the result to that type, multiplies by up (as a float of
// that type) and rounds again.
#include <cuda_runtime.h>

namespace razerq::kernels {

__device__ __forceinline__ float silu_f32(float g) { return g / (1.f + expf(-g)); }

}  // namespace razerq::kernels
