// Simulated custom-precision matrix product on CUDA (kernels/cuda/sim_gemm_cuda.hpp).
//
// Block: kTile x kTile outputs, one per thread. The k axis goes in slices of kSlice: the block
// loads the x rows and w rows of the slice into shared memory, rounding each operand to the
// multiply format (sim_round, as the CPU kernel does once per call), then every thread runs its
// own chain s = sim_mac(s, a, b) over the slice, in k order. So each output is one sequential
// chain over k = 0 .. K-1, exactly sim_dot. Large M: the grid's y dimension strides over the
// row tiles.
#include <algorithm>

#include "common/error.hpp"
#include "kernels/cpu/sim_gemm.hpp"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/sim_gemm_cuda.hpp"

namespace razerq::kernels {

namespace {

constexpr int kTile = 16;   // outputs per block side (16 x 16 threads)
constexpr int kSlice = 32;  // k per shared-memory slice

__global__ void sim_gemm_kernel(const float* __restrict__ x, const float* __restrict__ w, int64_t M, int64_t N,
                                int64_t K, float* __restrict__ y, SimArith ar, bool convert) {
  __shared__ float xs[kTile][kSlice + 1];
  __shared__ float ws[kTile][kSlice + 1];
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * kTile + tx;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kTile + tx;
  const int64_t n_base = static_cast<int64_t>(blockIdx.x) * kTile;
  for (int64_t m_base = static_cast<int64_t>(blockIdx.y) * kTile; m_base < M;
       m_base += static_cast<int64_t>(gridDim.y) * kTile) {
    const int64_t m = m_base + ty;
    double s = 0.0;
    for (int64_t k0 = 0; k0 < K; k0 += kSlice) {
      // 256 threads load 16 x 32 of x and of w: two elements each.
      for (int i = tid; i < kTile * kSlice; i += kTile * kTile) {
        const int r = i / kSlice, c = i % kSlice;
        const int64_t k = k0 + c;
        const int64_t mr = m_base + r, nr = n_base + r;
        xs[r][c] = mr < M && k < K ? static_cast<float>(sim_round(static_cast<double>(x[mr * K + k]), ar.mul)) : 0.f;
        ws[r][c] = nr < N && k < K ? static_cast<float>(sim_round(static_cast<double>(w[nr * K + k]), ar.mul)) : 0.f;
      }
      __syncthreads();
      const int kn = K - k0 < kSlice ? static_cast<int>(K - k0) : kSlice;
      for (int c = 0; c < kn; ++c) s = sim_mac(s, xs[ty][c], ws[tx][c], ar, convert);
      __syncthreads();
    }
    if (m < M && n < N) y[m * N + n] = static_cast<float>(s);
  }
}

}  // namespace

void sim_gemm_cuda(const float* x, const float* w, int64_t M, int64_t N, int64_t K, float* y, const SimArith& ar,
                   void* stream) {
  if (!check_sim_gemm_args(x, w, M, N, K, y, ar, "sim_gemm_cuda")) return;
  const int64_t nx = (N + kTile - 1) / kTile, ny = (M + kTile - 1) / kTile;
  if (nx > 0x7fffffff)
    throw_error(ErrorKind::kInvalidArgument, "sim_gemm_cuda", "N %lld is too large", static_cast<long long>(N));
  const dim3 grid(static_cast<unsigned>(nx), static_cast<unsigned>(std::min<int64_t>(ny, 65535)));
  const dim3 block(kTile, kTile);
  sim_gemm_kernel<<<grid, block, 0, detail::as_stream(stream)>>>(x, w, M, N, K, y, ar, !sim_contains(ar.acc, ar.mul));
  RAZERQ_CUDA(cudaGetLastError());
}

}  // namespace razerq::kernels
