#pragma once
// 16-byte asynchronous copies global -> shared (sm_80's cp.async; .cg: through L2 only), completed
// by cp_async_wait_all (which commits the thread's outstanding copies and waits for them all; a
// __syncthreads after it makes every thread's copies visible to the block). For the decode
// attention's K/V tiles (decode_ops.cu) and the normed products' sums of squares (gemv.cu).
#include <cuda_runtime.h>

#include <cstdint>

namespace razerq::kernels {

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }

}  // namespace razerq::kernels
