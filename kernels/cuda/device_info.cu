// Cached device attributes (device_info.cuh).
#include <atomic>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/device_info.cuh"

namespace razerq::kernels::detail {

int current_device_attribute(cudaDeviceAttr attr) {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> sms[kMaxDevices], major[kMaxDevices];  // 0: not asked yet
  if (attr != cudaDevAttrMultiProcessorCount && attr != cudaDevAttrComputeCapabilityMajor)
    throw_error(ErrorKind::kInternal, "current_device_attribute", "attribute %d is not cached", static_cast<int>(attr));
  int dev = 0;
  RAZERQ_CUDA(cudaGetDevice(&dev));
  std::atomic<int>* slot = dev >= 0 && dev < kMaxDevices ? &(attr == cudaDevAttrMultiProcessorCount ? sms : major)[dev] : nullptr;
  if (slot && slot->load(std::memory_order_relaxed) > 0) return slot->load(std::memory_order_relaxed);
  int v = 0;
  RAZERQ_CUDA(cudaDeviceGetAttribute(&v, attr, dev));
  if (slot) slot->store(v, std::memory_order_relaxed);
  return v;
}

}  // namespace razerq::kernels::detail
