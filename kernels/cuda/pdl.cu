// Programmatic dependent launch: the process-wide setting and the per-launch check (pdl.cuh).
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/device_info.cuh"
#include "kernels/cuda/pdl.cuh"

namespace razerq::kernels {

namespace {

// -1: not read from the environment yet; 0 off; 1 on.
std::atomic<int> g_setting{-1};

bool setting() {
  int v = g_setting.load(std::memory_order_relaxed);
  if (v < 0) {
    const char* e = std::getenv("RAZERQ_PDL");
    v = e && std::strcmp(e, "0") == 0 ? 0 : 1;
    int expected = -1;
    g_setting.compare_exchange_strong(expected, v);  // a set_pdl() in between wins
    v = g_setting.load(std::memory_order_relaxed);
  }
  return v == 1;
}

}  // namespace

void set_pdl(bool on) { g_setting.store(on ? 1 : 0, std::memory_order_relaxed); }
bool pdl_setting() { return setting(); }

namespace pdl {

bool use(cudaStream_t s) {
  return setting() && s != nullptr && s != cudaStreamLegacy && detail::current_device_cc_major() >= 9;
}

}  // namespace pdl

}  // namespace razerq::kernels
