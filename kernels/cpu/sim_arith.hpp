#pragma once
// Simulated custom-precision arithmetic: rounding to a small IEEE-like floating-point format
// eXmY, and the simulated dot product that `razerq eval --sim-mul eXmY --sim-acc eXmY` runs in
// the quantized linears (kernels/cpu/sim_gemm.cpp, kernels/cuda/sim_gemm.cu). Header-only for
// the rounding; torch-free; the functions are __host__ __device__ where nvcc compiles them, so
// the CPU and CUDA kernels run this very code.
//
// Format eXmY: 1 sign bit, X exponent bits (bias 2^(X-1) - 1), Y mantissa bits, X in 2..8,
// Y in 0..23 (so every value of every format is exactly a float32, and a float64 holds exact
// products of two of them). IEEE-like:
//   - exponent field 0 = subnormals (+-0.m x 2^(1-bias)), gradual underflow, signed zeros;
//   - exponent field all ones = inf / NaN, so the largest finite value is 2^bias x (2 - 2^-Y)
//     (e5m10 = IEEE binary16, e8m7 = bfloat16, e8m23 = binary32; e4m3 here is the IEEE-style
//     E4M3 with max 240, not OCP's E4M3FN with max 448);
//   - round to nearest, ties to the value with the even encoding (even last mantissa bit; for
//     the m0 formats, which have no mantissa bit, the even exponent field); a value of
//     magnitude at least max + half an ulp overflows to +-inf, as in IEEE 754 (a tie there
//     included);
//   - inf stays inf, NaN stays NaN, -0 stays -0; values rounding to zero keep their sign.
//
// The simulated dot product of x [K] and w [K] (sim_dot):
//   a_k = round_mul(x_k), b_k = round_mul(w_k)       operands in the multiply format
//   p_k = round_acc(round_mul(a_k * b_k))             product rounded to mul, then to acc
//   s   = +0;  for k = 0 .. K-1:  s = round_acc(s + p_k)   sequential, in this order
// Each rounding is a single correct rounding of the exact value: a_k * b_k is exact in
// float64 (two <= 24-bit significands), and s + p_k (both in an acc format of <= 24 bits)
// rounded to float64 and then to acc equals the direct rounding (53 >= 2 x 24 + 2, the
// double-rounding bound of Figueroa 1995; the sum is far from float64's range limits).
// With e8m23/e8m23 this is exactly a float32 loop `s = 0; s = s + float(x_k * w_k)` with no
// FMA contraction, for float32 inputs (tests/kernels/test_sim_arith.cpp checks it).
#include <cstdint>
#include <cstring>
#include <string>

#include "kernels/host_device.hpp"

namespace razerq::kernels {

// A floating-point format eXmY (see above). The default is float32.
struct SimFormat {
  int exp_bits = 8;
  int man_bits = 23;
};

// The simulated arithmetic of a dot product: products rounded to `mul`, sums to `acc`.
struct SimArith {
  SimFormat mul, acc;
};

inline constexpr int kSimMinExpBits = 2, kSimMaxExpBits = 8, kSimMaxManBits = 23;

// "eXmY" (case-insensitive), or the aliases fp32 / fp16 / bf16 (= e8m23 / e5m10 / e8m7).
// Anything else, or X outside 2..8, Y outside 0..23: razerq::Error(kInvalidArgument) whose
// "where" is `what` (e.g. "--sim-mul") and whose message names the text and the expected form.
SimFormat parse_sim_format(const std::string& text, const std::string& what);
std::string sim_format_name(const SimFormat& f);  // "e5m10"
std::string sim_arith_name(const SimArith& a);    // "mul e5m10, acc e8m23"
// The largest finite value and the smallest positive subnormal of f (as doubles).
double sim_format_max(const SimFormat& f);
double sim_format_min_subnormal(const SimFormat& f);

namespace sim_detail {

RAZERQ_HD uint64_t bits_of(double v) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(v));
#else
  uint64_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
#endif
}

RAZERQ_HD double double_of(uint64_t u) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(u));
#else
  double v;
  std::memcpy(&v, &u, sizeof v);
  return v;
#endif
}

// 2^n for -1022 <= n <= 1023, from the bits.
RAZERQ_HD double pow2(int n) { return double_of(static_cast<uint64_t>(n + 1023) << 52); }

// Products and sums that nvcc must not contract into an FMA (on the host the operands of
// every + below are results of sim_round, never raw products, so nothing can be contracted).
RAZERQ_HD double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

RAZERQ_HD double add_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

}  // namespace sim_detail

// v rounded to the format with `exp_bits` / `man_bits` (see the top of this file), returned as
// a double (exactly representable in float32 too). Branch-free (the CPU kernel's loops
// vectorize it):
//   - the quantum of v's binade in the format is 2^(e - Y), e = max(exponent of |v|, emin);
//     with C = 2^(e + 52 - Y) the float64 sum |v| + C has exactly that quantum as its ulp
//     (|v| < 2^(e+1) <= C / 2^(51 - Y)), so the hardware addition rounds |v| to the format's
//     grid, to nearest even, and subtracting C again is exact (Sterbenz). Below the format's
//     normal range e is clamped to emin: the fixed subnormal quantum, gradual underflow;
//   - m0 formats: a tie 1.5 x 2^e went to 2^(e+1) (the even multiple); the even encoding is
//     2^e when its exponent field e + bias is even, so it is put back;
//   - |v| >= max + half an ulp = (2^(Y+2) - 1) x 2^(bias-Y-1): inf (last, so it also covers
//     inf inputs, whose C is meaningless); NaN stays NaN through the additions.
// The sign is taken off first and put back last (signed zeros, symmetric rounding).
RAZERQ_HD double sim_round(double v, int exp_bits, int man_bits) {
  using namespace sim_detail;
  const uint64_t u = bits_of(v);
  const uint64_t sign = u & (uint64_t{1} << 63);
  const uint64_t mag = u ^ sign;
  const double a = double_of(mag);
  const int64_t bias = (int64_t{1} << (exp_bits - 1)) - 1;
  const int64_t E = static_cast<int64_t>(mag >> 52);  // float64 biased exponent of |v|
  const int64_t Emin = 1 - bias + 1023;              // the format's smallest normal exponent, biased
  const int64_t Ee = E > Emin ? E : Emin;
  const double C = double_of(static_cast<uint64_t>(Ee + 52 - man_bits) << 52);
  double r = add_rn(add_rn(a, C), -C);
  const bool tie_m0 = man_bits == 0 && E >= Emin && (mag & ((uint64_t{1} << 52) - 1)) == (uint64_t{1} << 51) &&
                      ((E - 1023 + bias) & 1) == 0;
  r = tie_m0 ? double_of(static_cast<uint64_t>(E) << 52) : r;
  const double ovf = static_cast<double>((int64_t{1} << (man_bits + 2)) - 1) * pow2(static_cast<int>(bias) - man_bits - 1);
  r = a >= ovf ? double_of(uint64_t{0x7ff} << 52) : r;
  return double_of(bits_of(r) | sign);
}

RAZERQ_HD double sim_round(double v, const SimFormat& f) { return sim_round(v, f.exp_bits, f.man_bits); }

// Whether every value of `narrow` is a value of `wide` (then rounding to `wide` is the identity
// on them).
RAZERQ_HD bool sim_contains(const SimFormat& wide, const SimFormat& narrow) {
  return wide.exp_bits >= narrow.exp_bits && wide.man_bits >= narrow.man_bits;
}

// One step of the simulated dot product: a and b already rounded to a.mul. Returns the new
// partial sum (in a.acc). `convert`: !sim_contains(a.acc, a.mul) (the product needs its
// rounding to acc; skipping it when not needed changes nothing).
RAZERQ_HD double sim_mac(double s, double a, double b, const SimArith& ar, bool convert) {
  using namespace sim_detail;
  double p = sim_round(mul_rn(a, b), ar.mul);
  if (convert) p = sim_round(p, ar.acc);
  return sim_round(add_rn(s, p), ar.acc);
}

// The simulated dot product of x[0..K) and w[0..K) (operands rounded here), as a double
// exactly representable in float32. Reference-speed (the kernels precompute the operands).
template <typename T>
RAZERQ_HD double sim_dot(const T* x, const T* w, int64_t K, const SimArith& ar) {
  const bool convert = !sim_contains(ar.acc, ar.mul);
  double s = 0.0;
  for (int64_t k = 0; k < K; ++k)
    s = sim_mac(s, sim_round(static_cast<double>(x[k]), ar.mul), sim_round(static_cast<double>(w[k]), ar.mul), ar,
                convert);
  return s;
}

}  // namespace razerq::kernels
