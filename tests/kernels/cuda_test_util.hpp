#pragma once
// Shared by the CUDA kernel tests: whether a device can run them (printed once), and a skip
// with the reason where none can.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "kernels/cuda/dequant_cuda.hpp"

namespace razerq::test {

inline bool cuda_device_ok(std::string* why) {
  static std::string reason;
  static const bool ok = [] {
    const bool r = kernels::cuda_device_available(&reason);
    if (r) std::printf("[ device   ] %s\n", kernels::cuda_device_description().c_str());
    return r;
  }();
  *why = reason;
  return ok;
}

}  // namespace razerq::test

#define SKIP_WITHOUT_DEVICE()                                     \
  do {                                                            \
    std::string why_;                                             \
    if (!::razerq::test::cuda_device_ok(&why_)) GTEST_SKIP() << why_; \
  } while (0)
