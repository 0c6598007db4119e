#pragma once
// Programmatic dependent launch (pdl_cuda.hpp has the contract): the device-side calls and the
// host-side launch. For kernels/cuda/*.cu and the CUDA benchmarks (bench/*.cu).
#include <cuda_runtime.h>

#include <utility>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/pdl_cuda.hpp"

namespace razerq::kernels::pdl {

// Returns once the grids this one depends on have finished and their writes are visible;
// immediately for a grid launched without the attribute.
__device__ __forceinline__ void wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the next kernel on the stream (if launched with the attribute) start its blocks once every
// block of this grid has called this or exited. It does not make this grid's writes visible to it:
// that is griddepcontrol.wait's job there.
__device__ __forceinline__ void launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Whether a launch on s carries the attribute (pdl_cuda.hpp: setting, stream, device).
bool use(cudaStream_t s);

// kernel<<<grid, block, smem, s>>>(args...), with the attribute where use(s), in thread-block
// clusters of cluster_x blocks along x when cluster_x > 1 (sm_90); launch errors throw.
template <class... P, class... A>
void launch_clustered(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, unsigned cluster_x,
                      A&&... args) {
  cudaLaunchAttribute attr[2];
  unsigned n = 0;
  if (use(s)) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster_x > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = cluster_x;
    attr[n].val.clusterDim.y = 1;
    attr[n++].val.clusterDim.z = 1;
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = n;
  RAZERQ_CUDA(cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...));
}

template <class... P, class... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, A&&... args) {
  launch_clustered(kernel, grid, block, smem, s, 1u, std::forward<A>(args)...);
}

}  // namespace razerq::kernels::pdl
