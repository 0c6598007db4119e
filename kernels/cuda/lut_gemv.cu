// The lut GEMV and the CSR sparse add (lut_gemv_cuda.hpp).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cstring>

#include "common/error.hpp"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/lut_gemv_cuda.hpp"

namespace razerq::kernels {

namespace {

constexpr int kWarps = 4;  // rows per block

struct LutArgs {
  const uint32_t* codes;
  const uint16_t* lut;
  const int32_t* row_ptr;
  const int32_t* col;
  const uint16_t* val;
  const __half* x;
  float* y;
  int rows, cols, words;
};

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One warp per row. The row's codes go in chunks of 32 (BITS words of its bitstream): lane l
// takes chunks l, l + 32, ...; it loads the chunk's BITS words, looks its 32 codes up in the
// row's table (shared memory, one float per entry: the 32 lanes hit distinct banks or share an
// entry) and multiplies them with x[m, 32 c .. 32 c + 32), loaded as four 16-byte vectors when
// x allows (vec: 16-byte aligned, K a multiple of 8), else element by element. The chunk that
// crosses K masks the codes beyond it (the row's padding).
template <int BITS>
__device__ __forceinline__ void decode_chunk(const uint32_t (&wd)[BITS], const float* table, float (&wv)[32]) {
#pragma unroll
  for (int i = 0; i < 32; ++i) {
    constexpr int kMask = (1 << BITS) - 1;
    const int p = BITS * i, wi = p >> 5, off = p & 31;
    uint32_t c = wd[wi] >> off;
    if (off + BITS > 32) c |= wd[wi + 1] << (32 - off);
    wv[i] = table[c & kMask];
  }
}

template <int BITS, int M>
__global__ void __launch_bounds__(kWarps * 32) lut_gemv_kernel(LutArgs a, bool vec) {
  __shared__ float table[kWarps][1 << BITS];
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  const int r = blockIdx.x * kWarps + wid;
  if (r >= a.rows) return;  // whole warps only: no block-wide barrier below
  if (lane < (1 << BITS)) table[wid][lane] = __half2float(__ushort_as_half(a.lut[static_cast<size_t>(r) * (1 << BITS) + lane]));
  __syncwarp();
  const uint32_t* wrow = a.codes + static_cast<size_t>(r) * a.words;
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.f;
  const int chunks = (a.cols + 31) / 32;
  for (int c = lane; c < chunks; c += 32) {
    uint32_t wd[BITS];
#pragma unroll
    for (int j = 0; j < BITS; ++j) wd[j] = c * BITS + j < a.words ? __ldg(wrow + c * BITS + j) : 0u;
    float wv[32];
    decode_chunk<BITS>(wd, table[wid], wv);
    const int k0 = c * 32;
    if (vec && k0 + 32 <= a.cols) {
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const uint4* xv = reinterpret_cast<const uint4*>(a.x + static_cast<size_t>(m) * a.cols + k0);
        float s = 0.f;
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const uint4 u = __ldg(xv + q);
          const uint32_t h[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
          for (int t = 0; t < 4; ++t) {
            const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h[t]));
            s = fmaf(wv[q * 8 + 2 * t], f.x, s);
            s = fmaf(wv[q * 8 + 2 * t + 1], f.y, s);
          }
        }
        acc[m] += s;
      }
    } else {
      const int n = a.cols - k0 < 32 ? a.cols - k0 : 32;
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const __half* xr = a.x + static_cast<size_t>(m) * a.cols + k0;
        float s = 0.f;
#pragma unroll
        for (int i = 0; i < 32; ++i)
          if (i < n) s = fmaf(wv[i], __half2float(xr[i]), s);
        acc[m] += s;
      }
    }
  }
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const float v = warp_sum(acc[m]);
    if (lane == 0) a.y[static_cast<size_t>(m) * a.rows + r] = v;
  }
}

template <int M>
__global__ void __launch_bounds__(kWarps * 32) sparse_add_kernel(LutArgs a) {
  const int lane = threadIdx.x & 31;
  const int r = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (r >= a.rows) return;
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.f;
  const int b = a.row_ptr[r], e = a.row_ptr[r + 1];
  for (int i = b + lane; i < e; i += 32) {
    const float v = __half2float(__ushort_as_half(a.val[i]));
    const int c = a.col[i];
#pragma unroll
    for (int m = 0; m < M; ++m) acc[m] = fmaf(v, __half2float(a.x[static_cast<size_t>(m) * a.cols + c]), acc[m]);
  }
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const float v = warp_sum(acc[m]);
    if (lane == 0 && e > b) a.y[static_cast<size_t>(m) * a.rows + r] += v;
  }
}

template <int M>
void launch_dense(int bits, const LutArgs& a, dim3 grid, cudaStream_t s) {
  const bool vec = reinterpret_cast<uintptr_t>(a.x) % 16 == 0 && a.cols % 8 == 0;
  if (bits == 3)
    lut_gemv_kernel<3, M><<<grid, kWarps * 32, 0, s>>>(a, vec);
  else
    lut_gemv_kernel<4, M><<<grid, kWarps * 32, 0, s>>>(a, vec);
}

LutArgs make_args(const LutDeviceTensor& w, const uint16_t* x, int64_t M, float* y, const char* where) {
  if (!w.codes || !w.lut) throw_error(ErrorKind::kInvalidArgument, where, "tensor not uploaded");
  if (w.bits != 3 && w.bits != 4) throw_error(ErrorKind::kUnsupported, where, "%d-bit codes (lut is 3 or 4 bits)", w.bits);
  if (M < 1 || M > kLutGemvMaxM)
    throw_error(ErrorKind::kInvalidArgument, where, "M = %lld (expected 1 to %d)", static_cast<long long>(M), kLutGemvMaxM);
  if (!x || !y) throw_error(ErrorKind::kInvalidArgument, where, "null x or y");
  LutArgs a{};
  a.codes = w.codes;
  a.lut = w.lut;
  a.row_ptr = w.row_ptr;
  a.col = w.col;
  a.val = w.val;
  a.x = reinterpret_cast<const __half*>(x);
  a.y = y;
  a.rows = static_cast<int>(w.rows);
  a.cols = static_cast<int>(w.cols);
  a.words = static_cast<int>(w.code_words_per_row);
  return a;
}

}  // namespace

LutDeviceTensor upload_lut(const quantizer::QuantizedTensor& q, void* stream) {
  quantizer::validate(q, "upload_lut " + q.cfg.label());
  if (q.cfg.spec().scale_kind != quantizer::ScaleKind::kLutRow)
    throw_error(ErrorKind::kInvalidArgument, "upload_lut", "%s is not a lut tensor", q.cfg.label().c_str());
  if (q.rows > INT_MAX / 2 || q.cols > INT_MAX / 2)
    throw_error(ErrorKind::kUnsupported, "upload_lut", "[%lld, %lld]: the kernels index with 32-bit integers",
                static_cast<long long>(q.rows), static_cast<long long>(q.cols));
  LutDeviceTensor t;
  t.bits = q.cfg.bits;
  t.rows = q.rows;
  t.cols = q.cols;
  t.code_words_per_row = q.code_words_per_row;
  t.nnz = q.sparse.nnz();
  // Parts at 256-byte offsets in one allocation.
  const size_t b_codes = q.codes.size() * 4, b_lut = q.lut.size() * 2, b_rp = q.sparse.row_ptr.size() * 4,
               b_col = q.sparse.col.size() * 4, b_val = q.sparse.val.size() * 2;
  auto up = [](size_t n) { return (n + 255) / 256 * 256; };
  const size_t o_lut = up(b_codes), o_rp = o_lut + up(b_lut), o_col = o_rp + up(b_rp), o_val = o_col + up(b_col),
               total = o_val + up(b_val);
  std::vector<unsigned char> host(total, 0);
  std::memcpy(host.data(), q.codes.data(), b_codes);
  std::memcpy(host.data() + o_lut, q.lut.data(), b_lut);
  if (b_rp) std::memcpy(host.data() + o_rp, q.sparse.row_ptr.data(), b_rp);
  if (b_col) std::memcpy(host.data() + o_col, q.sparse.col.data(), b_col);
  if (b_val) std::memcpy(host.data() + o_val, q.sparse.val.data(), b_val);
  t.storage = DeviceBuffer(total);
  t.storage.copy_from_host(host.data(), total, stream);
  unsigned char* base = t.storage.as<unsigned char>();
  t.codes = reinterpret_cast<const uint32_t*>(base);
  t.lut = reinterpret_cast<const uint16_t*>(base + o_lut);
  if (q.sparse.present()) {
    t.row_ptr = reinterpret_cast<const int32_t*>(base + o_rp);
    t.col = reinterpret_cast<const int32_t*>(base + o_col);
    t.val = reinterpret_cast<const uint16_t*>(base + o_val);
  }
  return t;
}

void lut_gemv_cuda(const LutDeviceTensor& w, const uint16_t* x, int64_t M, float* y, void* stream) {
  const LutArgs a = make_args(w, x, M, y, "lut_gemv_cuda");
  const dim3 grid(static_cast<unsigned>((w.rows + kWarps - 1) / kWarps));
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (M) {
    case 1: launch_dense<1>(w.bits, a, grid, s); break;
    case 2: launch_dense<2>(w.bits, a, grid, s); break;
    case 3: launch_dense<3>(w.bits, a, grid, s); break;
    case 4: launch_dense<4>(w.bits, a, grid, s); break;
    case 5: launch_dense<5>(w.bits, a, grid, s); break;
    case 6: launch_dense<6>(w.bits, a, grid, s); break;
    case 7: launch_dense<7>(w.bits, a, grid, s); break;
    default: launch_dense<8>(w.bits, a, grid, s); break;
  }
  RAZERQ_CUDA(cudaGetLastError());
}

void sparse_add_cuda(const LutDeviceTensor& w, const uint16_t* x, int64_t M, float* y, void* stream) {
  const LutArgs a = make_args(w, x, M, y, "sparse_add_cuda");
  if (!w.row_ptr) return;
  const dim3 grid(static_cast<unsigned>((w.rows + kWarps - 1) / kWarps));
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (M) {
    case 1: sparse_add_kernel<1><<<grid, kWarps * 32, 0, s>>>(a); break;
    case 2: sparse_add_kernel<2><<<grid, kWarps * 32, 0, s>>>(a); break;
    case 3: sparse_add_kernel<3><<<grid, kWarps * 32, 0, s>>>(a); break;
    case 4: sparse_add_kernel<4><<<grid, kWarps * 32, 0, s>>>(a); break;
    case 5: sparse_add_kernel<5><<<grid, kWarps * 32, 0, s>>>(a); break;
    case 6: sparse_add_kernel<6><<<grid, kWarps * 32, 0, s>>>(a); break;
    case 7: sparse_add_kernel<7><<<grid, kWarps * 32, 0, s>>>(a); break;
    default: sparse_add_kernel<8><<<grid, kWarps * 32, 0, s>>>(a); break;
  }
  RAZERQ_CUDA(cudaGetLastError());
}

}  // namespace razerq::kernels
