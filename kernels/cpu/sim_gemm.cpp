// Simulated custom-precision matrix product on the CPU (kernels/cpu/sim_gemm.hpp).
//
// The operands are rounded to the multiply format once (x per call, w per call: O((M + N) K)
// against the O(M N K) of the product). Each task computes 16 outputs of one row of x, their k
// loops side by side in SIMD lanes: each chain's steps depend on each other (three dependent
// roundings per step), so independent chains in lanes keep the core busy. Every output is
// still one sequential chain over k = 0 .. K-1, as sim_dot specifies; the product a * b is
// rounded by sim_round straight away, so no FMA can be formed across it.
#include "kernels/cpu/sim_gemm.hpp"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "common/error.hpp"

namespace razerq::kernels {

namespace {

// Outputs per task: 16 chains side by side in SIMD lanes (sim_round is branch-free); 16
// measured 1.07 ns per multiply-add on one core here, 8: 1.24, 32: 1.05, scalar code: ~40.
constexpr int64_t kLanes = 16;

// One row of x against one block of kLanes weight rows (wt: [K][kLanes], transposed).
template <bool kConvert>
void block_dot(const double* xm, const double* wt, int64_t K, const SimArith& ar, double* out) {
  double s[kLanes] = {};
  for (int64_t k = 0; k < K; ++k) {
    const double a = xm[k];
    const double* wk = wt + k * kLanes;
    for (int64_t j = 0; j < kLanes; ++j) {
      double p = sim_round(a * wk[j], ar.mul);
      if (kConvert) p = sim_round(p, ar.acc);
      s[j] = sim_round(s[j] + p, ar.acc);
    }
  }
  for (int64_t j = 0; j < kLanes; ++j) out[j] = s[j];
}

}  // namespace

bool check_sim_gemm_args(const float* x, const float* w, int64_t M, int64_t N, int64_t K, const float* y,
                         const SimArith& ar, const char* where) {
  validate_sim_arith(ar, where);
  if (M < 0 || N < 0 || K < 0)
    throw_error(ErrorKind::kInvalidArgument, where, "negative shape M %lld, N %lld, K %lld", static_cast<long long>(M),
                static_cast<long long>(N), static_cast<long long>(K));
  if (M == 0 || N == 0) return false;
  if ((K > 0 && (!x || !w)) || !y) throw_error(ErrorKind::kInvalidArgument, where, "null pointer");
  return true;
}

void sim_gemm_cpu(const float* x, const float* w, int64_t M, int64_t N, int64_t K, float* y, const SimArith& ar,
                  int threads) {
  if (!check_sim_gemm_args(x, w, M, N, K, y, ar, "sim_gemm_cpu")) return;
  const int nt = threads > 0 ? threads : omp_get_max_threads();

  // Operands in the multiply format, as doubles: x [M][K]; w in blocks of kLanes rows,
  // transposed ([block][K][kLanes], rows past N zero) so the lanes read consecutive doubles.
  const int64_t nb = (N + kLanes - 1) / kLanes;
  std::vector<double> xr(static_cast<size_t>(M * K)), wt(static_cast<size_t>(nb * K * kLanes), 0.0);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < M * K; ++i) xr[i] = sim_round(static_cast<double>(x[i]), ar.mul);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      wt[((n / kLanes) * K + k) * kLanes + n % kLanes] = sim_round(static_cast<double>(w[n * K + k]), ar.mul);

  const bool convert = !sim_contains(ar.acc, ar.mul);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 8)
  for (int64_t t = 0; t < M * nb; ++t) {
    const int64_t m = t / nb, b = t % nb;
    double out[kLanes];
    if (convert)
      block_dot<true>(xr.data() + m * K, wt.data() + b * K * kLanes, K, ar, out);
    else
      block_dot<false>(xr.data() + m * K, wt.data() + b * K * kLanes, K, ar, out);
    const int64_t n0 = b * kLanes, nn = std::min(kLanes, N - n0);
    for (int64_t j = 0; j < nn; ++j) y[m * N + n0 + j] = static_cast<float>(out[j]);
  }
}

}  // namespace razerq::kernels
