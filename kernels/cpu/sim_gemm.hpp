#pragma once
// Simulated custom-precision matrix product on the CPU (torch-free, OpenMP over output
// elements): y[m][n] = sim_dot(x[m, :], w[n, :]) with the arithmetic of kernels/cpu/sim_arith.hpp
// (operands and products rounded to ar.mul, each partial sum to ar.acc, k sequential from 0).
// Every output is computed by one thread in a fixed order, so the result is deterministic and
// independent of the thread count, and equal bit for bit to the float64 emulation (sim_dot) and
// to the CUDA kernel (kernels/cuda/sim_gemm_cuda.hpp).
#include <cstdint>
#include <string>

#include "kernels/cpu/sim_arith.hpp"

namespace razerq::kernels {

// Throws razerq::Error(kInvalidArgument) at `where` when a format is outside e2..8 m0..23.
void validate_sim_arith(const SimArith& ar, const std::string& where);

// The arguments of a simulated product (CPU or CUDA), checked at `where`: the formats, M, N, K
// >= 0, non-null pointers where there is work. Returns false when there is nothing to compute
// (M or N zero).
bool check_sim_gemm_args(const float* x, const float* w, int64_t M, int64_t N, int64_t K, const float* y,
                         const SimArith& ar, const char* where);

// x: float32 [M, K] row-major; w: float32 [N, K] row-major (a linear's weight); y: float32
// [M, N] (each value is the final partial sum, exactly a float32). threads <= 0: OpenMP's
// default. M, N, K >= 0 (K = 0 gives +0).
void sim_gemm_cpu(const float* x, const float* w, int64_t M, int64_t N, int64_t K, float* y, const SimArith& ar,
                  int threads = 0);

}  // namespace razerq::kernels
