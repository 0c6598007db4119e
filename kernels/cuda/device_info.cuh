#pragma once
// The current device's attributes the kernels' host code chooses by (SM count for grid sizes,
// compute capability for launch attributes), asked once per device and attribute and cached
// (so that a launch inside a CUDA-graph capture makes no attribute query).
// CUDA errors throw razerq::Error (cuda_check.cuh). For kernels/cuda/*.cu only.
#include <cuda_runtime.h>

namespace razerq::kernels::detail {

// cudaDeviceGetAttribute(attr) of the current device; attr is cudaDevAttrMultiProcessorCount or
// cudaDevAttrComputeCapabilityMajor (the ones cached).
int current_device_attribute(cudaDeviceAttr attr);

inline int current_device_sm_count() { return current_device_attribute(cudaDevAttrMultiProcessorCount); }
inline int current_device_cc_major() { return current_device_attribute(cudaDevAttrComputeCapabilityMajor); }

}  // namespace razerq::kernels::detail
