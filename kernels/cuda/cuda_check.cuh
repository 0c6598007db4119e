#pragma once
// Checked CUDA runtime calls for the host code of kernels/cuda (dequant.cu, gemv.cu): a failure
// throws razerq::Error(kInternal) naming the call, the source line and cudaGetErrorString's text.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.hpp"

namespace razerq::kernels::detail {

[[noreturn]] inline void cuda_fail(cudaError_t err, const char* call, const char* file, int line) {
  throw Error(ErrorKind::kInternal, std::string(file) + ":" + std::to_string(line),
              strprintf("%s failed: %s (%s)", call, cudaGetErrorString(err), cudaGetErrorName(err)));
}

// The public headers pass streams as void* (nullptr: the legacy default stream).
inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// [a, a + an) and [b, b + bn) bytes overlap (the argument checks of in-place operations).
inline bool bytes_overlap(const void* a, size_t an, const void* b, size_t bn) {
  const uintptr_t x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return x < y + bn && y < x + an;
}

}  // namespace razerq::kernels::detail

#define RAZERQ_CUDA(call)                                                                       \
  do {                                                                                          \
    const cudaError_t err_ = (call);                                                            \
    if (err_ != cudaSuccess) ::razerq::kernels::detail::cuda_fail(err_, #call, __FILE__, __LINE__); \
  } while (0)
