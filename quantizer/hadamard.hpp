#pragma once
// Hadamard matrices for rotations (QuaRot-style weight-only rotation, calib/rotation.hpp, and
// the online Hadamard transform of down_proj's input in eval/). Torch-free.
//
// Constructions: Sylvester (order 2^k) and Paley (order q + 1 for a prime power q = 3 mod 4,
// "Paley I"; order 2(q + 1) for a prime power q = 1 mod 4, "Paley II"), combined by Kronecker
// products: H(2^k * m) = H(2^a) (x) H(2^b) (x) H_Paley(m), a + b = k. This covers 12, 20, 28,
// 36, 44, 52, 60, ... x 2^k (28 = 27 + 1 and 52 = 2(25 + 1) need GF(27) and GF(25)), and e.g.
// 11008 = 32 x 344 (344 = 343 + 1, GF(7^3)), Llama-2-7B's intermediate size.
//
// Fallback (documented, calib/NOTES.md): when no Hadamard matrix of order n is constructed this
// way (e.g. n = 172 = 4 x 43: 171 and 85 are not prime powers; QuaRot ships a hand-made table
// for it), the transform is block-diagonal: I(n / d) (x) H(d) for the largest constructible
// order d dividing n. It is still orthogonal (the rotated model computes the same function),
// but it mixes only d channels at a time.
//
// Every transform here is orthogonal: the +-1 factors are scaled by 1 / sqrt(d).
#include <cstdint>
#include <string>
#include <vector>

namespace razerq::quantizer {

// A +-1 matrix [order, order], row-major, with H H^T = order I.
struct SignMatrix {
  int64_t order = 0;
  std::vector<int8_t> v;
  int8_t at(int64_t i, int64_t j) const { return v[static_cast<size_t>(i * order + j)]; }
};

// The orthogonal transform Q [n, n] = I(count) (x) F1 (x) F2 (x) ... / sqrt(d), d = prod of the
// factor orders (d = n unless it is a fallback).
struct HadamardPlan {
  int64_t n = 0;
  int64_t count = 1;                 // identity blocks (1 unless fallback)
  std::vector<SignMatrix> factors;   // Kronecker factors, outermost first
  std::string construction;          // e.g. "sylvester(32) x paley1(12)", "block-diagonal 43 x sylvester(4)"
  bool fallback() const { return count > 1; }
  int64_t block() const { return n / count; }
};

// The plan for order n >= 1 (n = 1: the identity). Never throws for n >= 1.
HadamardPlan hadamard_plan(int64_t n);
// A Hadamard matrix of exactly this order, or an empty SignMatrix (order 0) when the
// constructions above do not give one.
SignMatrix hadamard_matrix(int64_t order);
// The dense orthogonal matrix of a plan, float64 [n, n] row-major (tests, small n).
std::vector<double> dense(const HadamardPlan& p);
// x [rows, n] row-major -> x Q (transpose: x Q^T = x Q^-1) in place, float64 (Kronecker
// factors applied one axis at a time).
void apply_right(const HadamardPlan& p, double* x, int64_t rows, bool transpose = false);

}  // namespace razerq::quantizer
