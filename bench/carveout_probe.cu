// bench_carveout_probe: which shared-memory configuration the driver gives a kernel for each
// carveout percentage (cudaFuncAttributePreferredSharedMemoryCarveout, and the launch attribute
// cudaLaunchAttributePreferredSharedMemoryCarveout). kernels/cuda/gemv.cu's carveout_pct_for
// takes its percentages from what this printed on the H100 (bench/gemv.md, thirty-second session).
//
// The probe kernel holds 33 KB of static shared memory, 256 threads, few registers: its resident
// blocks per SM are set by the configuration alone (with the 1 KB the system reserves per block:
// 64 KB -> 1, 100 -> 2, 132 -> 3, 164 -> 4, 196 -> 5, 228 -> 6). Each block counts itself in a
// per-SM counter, spins, and leaves; the largest count is the residency. The occupancy calculator's
// answer is printed beside it. `ncu --section LaunchStats` prints the configuration's size
// ("Shared Memory Configuration Size") for the kernel attribute's launches; for a launch
// attribute it printed the kernel attribute's configuration while the residency followed the
// launch attribute (CUDA 13), so the residency is the measure here.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

constexpr int kThreads = 256;
constexpr int kSmemFloats = 33 * 1024 / 4;
constexpr int kMaxSms = 1024;

__device__ unsigned g_cur[kMaxSms], g_peak[kMaxSms];

__global__ void __launch_bounds__(kThreads) probe_kernel(long long spin, float* sink) {
  __shared__ float buf[kSmemFloats];
  unsigned sm;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
  if (threadIdx.x == 0) atomicMax(&g_peak[sm], atomicAdd(&g_cur[sm], 1u) + 1u);
  for (int i = threadIdx.x; i < kSmemFloats; i += kThreads) buf[i] = static_cast<float>(i);
  __syncthreads();
  const long long t0 = clock64();
  while (clock64() - t0 < spin) {
  }
  if (threadIdx.x == 0) {
    atomicSub(&g_cur[sm], 1u);
    if (buf[(threadIdx.x * 7) % kSmemFloats] < 0.f) *sink = 1.f;  // keeps buf
  }
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "bench_carveout_probe: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

// One launch: the kernel attribute at kernel_pct, the launch attribute at launch_pct (< 0: none).
void probe(int sms, int kernel_pct, int launch_pct, float* sink) {
  static unsigned zero[kMaxSms] = {};
  check(cudaMemcpyToSymbol(g_cur, zero, sizeof zero), "reset");
  check(cudaMemcpyToSymbol(g_peak, zero, sizeof zero), "reset");
  check(cudaFuncSetAttribute(probe_kernel, cudaFuncAttributePreferredSharedMemoryCarveout, kernel_pct), "carveout");
  int calc = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&calc, probe_kernel, kThreads, 0), "occupancy");
  cudaLaunchAttribute attr[1];
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(sms * 8));
  cfg.blockDim = dim3(kThreads);
  cfg.attrs = attr;
  if (launch_pct >= 0) {
    attr[0].id = cudaLaunchAttributePreferredSharedMemoryCarveout;
    attr[0].val.sharedMemCarveout = static_cast<unsigned>(launch_pct);
    cfg.numAttrs = 1;
  }
  check(cudaLaunchKernelEx(&cfg, probe_kernel, 200000LL, sink), "launch");
  check(cudaDeviceSynchronize(), "probe_kernel");
  unsigned peak[kMaxSms];
  check(cudaMemcpyFromSymbol(peak, g_peak, sizeof peak), "read back");
  unsigned most = 0;
  for (int i = 0; i < sms; ++i) most = peak[i] > most ? peak[i] : most;
  std::printf("| %d | %s | %u | %d |\n", kernel_pct, launch_pct < 0 ? "-" : std::to_string(launch_pct).c_str(), most, calc);
}

}  // namespace

int main() {
  int dev = 0, sms = 0, per_sm = 0;
  check(cudaGetDevice(&dev), "device");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "SM count");
  check(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev), "shared memory");
  if (sms > kMaxSms) sms = kMaxSms;
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, dev), "properties");
  std::printf("%s, %d SMs, %d bytes of shared memory per SM; a block of the probe: %d bytes + the system's\n\n",
              prop.name, sms, per_sm, kSmemFloats * 4);
  std::printf("| kernel attribute %% | launch attribute %% | resident blocks | occupancy calculator |\n|---:|---:|---:|---:|\n");
  float* sink = nullptr;
  check(cudaMalloc(&sink, sizeof(float)), "malloc");
  for (int p = 0; p <= 100; p += 1) probe(sms, p, -1, sink);
  for (int p : {20, 36, 48, 60, 74, 100}) probe(sms, 100, p, sink);
  for (int p : {20, 36, 48, 60, 74, 100}) probe(sms, 20, p, sink);
  check(cudaFree(sink), "free");
  return 0;
}
