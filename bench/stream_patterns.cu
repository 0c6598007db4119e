// bench_stream_patterns: read-only kernels with the fused GEMV's access pattern and no decode, to
// tell what the order of the code bytes costs in DRAM efficiency (bench/gemv.md, 2026-11-24
// fifth session). Blocks of 8 warps own 16 rows of R = K / 2 bytes (4-bit codes); per step a
// warp reads 64 bytes of each of its 16 rows (one 16-byte load per lane and row, lane = 4 g + t
// holding rows g and g + 8), warps taking the 64-byte pieces round robin:
//   rowmajor:  the checkpoint's row-major order (64 bytes from each of 16 rows, a row apart);
//   tiled:     tile-major, [tile][piece][16 rows][64 B] (kernels/cuda/gemv_layout.hpp tile_rows):
//              each warp step reads 1 KB contiguous;
//   rowcontig: row-major, each warp taking a contiguous eighth of the row instead;
//   linear:    a grid-stride read of the whole buffer, for reference.
// 3-bit codes (the same shapes' 3-bit bytes): the GEMV's tiled planes (six 4-byte loads per lane
// and block), one 16-byte and one 8-byte load per lane, and the 4-bit tiled kernel over the same
// bytes (bench/gemv.md, 2026-11-25 twenty-third session).
// At 3, 4, 5 and 8 resident blocks per SM (dynamic shared memory limits the count; the label is
// the count the occupancy API reports), 1 or 2 loads in flight per lane and row; the copy
// bandwidth (cudaMemcpy device to device, read + write) first. Median of 60 launches over three
// 240 MB buffers in turn (L2 is 50 MB).
//   bench_stream_patterns   (no arguments; prints one line per shape, pattern and occupancy)
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench/cuda_bench.cuh"
#include "kernels/cuda/cuda_check.cuh"

using razerq::bench::ld_stream;
using razerq::bench::ld_stream32;
using razerq::bench::ld_stream64;

__device__ __forceinline__ uint32_t mix(uint4 v) { return v.x ^ v.y ^ v.z ^ v.w; }

// PAT 0: row-major (rows of R bytes, block = 16 rows, warp wk takes 64-byte pieces kb = wk + 8 i).
// PAT 1: tiled: tile-major, [tile][kb][16 rows][64 B].
// PAT 2: row-major, each warp taking a contiguous eighth of the pieces (kb = wk nkb / 8 + i).
// 3-bit codes (R = 3 K / 8, 48 bytes per row and 128-column block, 768 per tile block):
// PAT 3: the GEMV's tiled planes: [tile][kb][plane][16 rows][4 lanes][4 B], six 4-byte loads per
//        lane and block (rows g, g + 8 in each plane);
// PAT 4: the same bytes as one 16-byte and one 8-byte load per lane ([512 B][256 B] per block).
template <int PAT, int STAGES>
__global__ void __launch_bounds__(256) rd3(const uint8_t* __restrict__ w, int N, int R, uint32_t* out) {
  extern __shared__ uint8_t smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int nkb = R / 48;
  const uint8_t* tile = w + static_cast<size_t>(blockIdx.x) * 16 * R;
  uint32_t acc = 0;
  auto load = [&](int kb) {
    const uint8_t* b = tile + static_cast<size_t>(kb) * 768;
    uint4 v;
    if constexpr (PAT == 3) {
      const uint8_t* p = b + g * 16 + t * 4;
      v.x = ld_stream32(p) ^ ld_stream32(p + 128);
      v.y = ld_stream32(p + 256) ^ ld_stream32(p + 384);
      v.z = ld_stream32(p + 512) ^ ld_stream32(p + 640);
      v.w = 0;
    } else {
      const uint4 u = ld_stream(b + lane * 16);
      const uint2 h = ld_stream64(b + 512 + lane * 8);
      v = make_uint4(u.x ^ h.x, u.y ^ h.y, u.z, u.w);
    }
    return v;
  };
  uint4 q[STAGES];
#pragma unroll
  for (int s = 0; s < STAGES; ++s) q[s] = warp + s * 8 < nkb ? load(warp + s * 8) : make_uint4(0, 0, 0, 0);
  for (int kb = warp; kb < nkb; kb += STAGES * 8) {
#pragma unroll
    for (int s = 0; s < STAGES; ++s) {
      const uint4 a = q[s];
      const int kn = kb + (s + STAGES) * 8;
      q[s] = kn < nkb ? load(kn) : make_uint4(0, 0, 0, 0);
      acc += mix(a) * 3;
    }
  }
  if (acc == 0x12345678u) out[0] = acc + smem[0];
}

template <int PAT, int STAGES>
__global__ void __launch_bounds__(256) rd(const uint8_t* __restrict__ w, int N, int R, uint32_t* out) {
  extern __shared__ uint8_t smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int nkb = R / 64;
  const int n0 = blockIdx.x * 16;
  uint32_t acc = 0;
  auto addrA = [&](int kb) -> const uint8_t* {
    if (PAT == 1) return w + (size_t)n0 * R + (size_t)kb * 1024 + g * 64 + t * 16;
    return w + (size_t)(n0 + g) * R + kb * 64 + t * 16;
  };
  auto addrB = [&](int kb) -> const uint8_t* {
    if (PAT == 1) return w + (size_t)n0 * R + (size_t)kb * 1024 + 512 + g * 64 + t * 16;
    return w + (size_t)(n0 + g + 8) * R + kb * 64 + t * 16;
  };
  int kb0, step, kend;
  if (PAT == 2) { const int per = nkb / 8; kb0 = warp * per; step = 1; kend = kb0 + per; }
  else { kb0 = warp; step = 8; kend = nkb; }
  uint4 qa[STAGES], qb[STAGES];
#pragma unroll
  for (int s = 0; s < STAGES; ++s) {
    const int kb = kb0 + s * step;
    qa[s] = kb < kend ? ld_stream(addrA(kb)) : make_uint4(0, 0, 0, 0);
    qb[s] = kb < kend ? ld_stream(addrB(kb)) : make_uint4(0, 0, 0, 0);
  }
  for (int kb = kb0; kb < kend; kb += STAGES * step) {
#pragma unroll
    for (int s = 0; s < STAGES; ++s) {
      const uint4 a = qa[s], b = qb[s];
      const int kn = kb + (s + STAGES) * step;
      qa[s] = kn < kend ? ld_stream(addrA(kn)) : make_uint4(0, 0, 0, 0);
      qb[s] = kn < kend ? ld_stream(addrB(kn)) : make_uint4(0, 0, 0, 0);
      acc += mix(a) * 3 + mix(b);
    }
  }
  if (acc == 0x12345678u) out[0] = acc + smem[0];
}

// Linear: grid-stride 16 B per lane.
__global__ void __launch_bounds__(256) lin(const uint4* __restrict__ w, size_t n, uint32_t* out) {
  extern __shared__ uint8_t smem[];
  uint32_t acc = 0;
  for (size_t i = blockIdx.x * 256ull + threadIdx.x; i < n; i += (size_t)gridDim.x * 256) acc ^= mix(ld_stream(w + i));
  if (acc == 0x12345678u) out[0] = acc + smem[0];
}

template <typename F>
float time_us(F f, int reps) {
  cudaEvent_t a, b;
  RAZERQ_CUDA(cudaEventCreate(&a));
  RAZERQ_CUDA(cudaEventCreate(&b));
  std::vector<float> v;
  for (int i = 0; i < 5; ++i) f(i);
  for (int i = 0; i < reps; ++i) {
    RAZERQ_CUDA(cudaEventRecord(a));
    f(i);
    RAZERQ_CUDA(cudaEventRecord(b));
    RAZERQ_CUDA(cudaEventSynchronize(b));
    float ms;
    RAZERQ_CUDA(cudaEventElapsedTime(&ms, a, b));
    v.push_back(ms * 1000);
  }
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int run_all() {
  uint32_t* out;
  RAZERQ_CUDA(cudaMalloc(&out, 4));
  const size_t maxb = 240ull << 20;
  uint8_t* buf[3];
  for (auto& p : buf) {
    RAZERQ_CUDA(cudaMalloc(&p, maxb));
    RAZERQ_CUDA(cudaMemset(p, 1, maxb));
  }
  {
    const size_t bytes = 117440512;
    float us = time_us([&](int i) { RAZERQ_CUDA(cudaMemcpyAsync(buf[(i + 1) % 3], buf[i % 3], bytes, cudaMemcpyDeviceToDevice)); }, 50);
    std::printf("copy %zu B: %.1f us = %.0f GB/s (read+write)\n", bytes, us, 2.0 * bytes / us / 1e3);
  }
  struct Shape { int N, K; };
  Shape shapes[] = {{28672, 8192}, {8192, 28672}, {16384, 16384}, {4096, 4096}, {11008, 4096}, {4096, 11008}};
  int sms;
  RAZERQ_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  // One pattern kernel over rows of R bytes at the occupancy `occ` (dynamic shared memory limits
  // the resident blocks; the label is the count the occupancy API reports), and the linear read of
  // the same bytes with bpsm blocks per SM; tag prefixes the line ("3-bit ").
  auto run = [&](const char* tag, Shape sh, int R, int occ, auto kern, const char* name) {
    const size_t bytes = (size_t)sh.N * R;
    const int smem = occ == 8 ? 0 : (228 * 1024) / occ - 2048;
    RAZERQ_CUDA(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    float us = time_us([&](int i) { kern<<<sh.N / 16, 256, smem>>>(buf[i % 3], sh.N, R, out); }, 60);
    int nb;
    RAZERQ_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, kern, 256, smem));
    std::printf("%s%5dx%-5d occ %d %-12s %8.2f us %7.0f GB/s\n", tag, sh.N, sh.K, nb, name, us, bytes / us / 1e3);
  };
  auto linear = [&](const char* tag, Shape sh, size_t bytes, int bpsm) {
    float us = time_us([&](int i) { lin<<<sms * bpsm, 256>>>(reinterpret_cast<const uint4*>(buf[i % 3]), bytes / 16, out); }, 60);
    std::printf("%s%5dx%-5d linear %2d/SM %8.2f us %7.0f GB/s\n", tag, sh.N, sh.K, bpsm, us, bytes / us / 1e3);
  };
  for (auto sh : shapes) {
    const int R = sh.K / 2;
    for (int occ : {3, 4, 5, 8}) {
      run("", sh, R, occ, rd<0, 1>, "rowmajor s1");
      run("", sh, R, occ, rd<0, 2>, "rowmajor s2");
      run("", sh, R, occ, rd<1, 1>, "tiled s1");
      run("", sh, R, occ, rd<1, 2>, "tiled s2");
      run("", sh, R, occ, rd<2, 1>, "rowcontig s1");
      run("", sh, R, occ, rd<2, 2>, "rowcontig s2");
    }
    for (int bpsm : {4, 8, 16}) linear("", sh, (size_t)sh.N * R, bpsm);
  }
  // 3-bit codes: the same shapes' 3-bit bytes (R = 3 K / 8) in the planes (six 4-byte loads per
  // lane and block) and as 16 + 8 bytes per lane, against the 4-bit tiled kernel and a linear read
  // of the same byte count (K' = 3 K / 4 as 4-bit rows).
  for (auto sh : shapes) {
    const int R = sh.K / 8 * 3;
    for (int occ : {3, 4, 5, 8}) {
      run("3-bit ", sh, R, occ, rd3<3, 1>, "planes s1");
      run("3-bit ", sh, R, occ, rd3<3, 2>, "planes s2");
      run("3-bit ", sh, R, occ, rd3<4, 1>, "16+8 s1");
      run("3-bit ", sh, R, occ, rd3<4, 2>, "16+8 s2");
      if (R % 64 == 0) run("3-bit ", sh, R, occ, rd<1, 1>, "tiled4 s1");  // 4-bit blocks over the same bytes
    }
    linear("3-bit ", sh, (size_t)sh.N * R, 8);
  }
  RAZERQ_CUDA(cudaGetLastError());
  RAZERQ_CUDA(cudaDeviceSynchronize());
  return 0;
}

int main() {
  try {
    return run_all();
  } catch (const razerq::Error& e) {  // a failed CUDA call (RAZERQ_CUDA), named with its line
    std::fprintf(stderr, "bench_stream_patterns: %s\n", e.what());
    return 1;
  }
}
