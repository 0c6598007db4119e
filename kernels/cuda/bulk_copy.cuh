#pragma once
// Bulk asynchronous copies global -> shared (sm_90's cp.async.bulk, the TMA engine's 1-D form)
// completed on an mbarrier: a thread issues one copy of any multiple of 16 bytes, the bytes land
// with no register cost, and the consumers wait on the barrier's phase. For kernels/cuda/*.cu only.
// Addresses are shared-window (cvta) 32-bit addresses; sources and destinations 16-byte aligned.
#include <cstdint>

namespace razerq::kernels::bulk {

// A barrier that completes a phase when one arrival (expect_tx) and its bytes have landed.
__device__ __forceinline__ void init(uint32_t bar, uint32_t arrivals) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(arrivals) : "memory");
#endif
}

// Makes the barriers initialised by this thread visible to the async proxy (the copies' completion).
__device__ __forceinline__ void fence_init() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}

// Arrives on bar and adds `bytes` to the transaction count of its current phase.
__device__ __forceinline__ void expect_tx(uint32_t bar, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
#endif
}

// `bytes` from global src to shared dst, counted on bar (evict-first in L2: read once).
__device__ __forceinline__ void copy(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar, uint64_t policy) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;" ::"r"(
          dst),
      "l"(src), "r"(bytes), "r"(bar), "l"(policy)
      : "memory");
#endif
}

__device__ __forceinline__ uint64_t evict_first_policy() {
  uint64_t p = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
#endif
  return p;
}

// One arrival on bar (release: this thread's reads of the stage are done before it counts).
__device__ __forceinline__ void arrive(uint32_t bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
#endif
}

// Returns once bar's phase of parity `phase` has completed.
__device__ __forceinline__ void wait(uint32_t bar, uint32_t phase) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "{\n .reg .pred p;\n WAIT:\n mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n @!p bra WAIT;\n}" ::"r"(bar),
      "r"(phase)
      : "memory");
#endif
}

}  // namespace razerq::kernels::bulk
