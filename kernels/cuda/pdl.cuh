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

// The optional parts of a launch: thread-block clusters of cluster_x blocks along x when
// cluster_x > 1 (sm_90); when carveout_pct >= 0, the shared-memory carveout for this launch
// instead of the kernel's attribute (a percentage the driver maps to a configuration: gemv.cu's
// carveout_pct_for has the mapping measured on sm_90).
struct LaunchExtras {
  unsigned cluster_x = 1;
  int carveout_pct = -1;
};

// kernel<<<grid, block, smem, s>>>(args...), with the attribute where use(s), and the extras;
// launch errors throw.
template <class... P, class... A>
void launch_ex(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, LaunchExtras ex,
               A&&... args) {
  cudaLaunchAttribute attr[3];
  unsigned n = 0;
  if (use(s)) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (ex.cluster_x > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = ex.cluster_x;
    attr[n].val.clusterDim.y = 1;
    attr[n++].val.clusterDim.z = 1;
  }
  if (ex.carveout_pct >= 0) {
    attr[n].id = cudaLaunchAttributePreferredSharedMemoryCarveout;
    attr[n++].val.sharedMemCarveout = static_cast<unsigned>(ex.carveout_pct);
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
  launch_ex(kernel, grid, block, smem, s, LaunchExtras{}, std::forward<A>(args)...);
}

}  // namespace razerq::kernels::pdl
