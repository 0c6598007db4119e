// Hadamard matrices (quantizer/hadamard.hpp): H H^T = n I for the Sylvester and Paley orders
// the rotation needs (12, 20, 28 = GF(27), 36, 52 = GF(25), ... x 2^k), the documented
// block-diagonal fallback for orders without a construction (172), and the factored transform
// against the dense matrix. AWQ's clip search (quantizer/awq_clip.hpp): never worse than no
// clipping on the output error d^T G d, consistent with its packed tensor, for every format.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <tuple>
#include <vector>

#include "quantizer/awq_clip.hpp"
#include "quantizer/hadamard.hpp"
#include "tests/quantizer/quantizer_test_util.hpp"

namespace razerq::quantizer {
namespace {

TEST(Hadamard, OrthogonalForEveryConstructedOrder) {
  for (int64_t n : {1, 2, 4, 8, 12, 20, 24, 28, 36, 40, 44, 52, 60, 64, 76, 108, 140, 344, 384, 768}) {
    SCOPED_TRACE(n);
    const SignMatrix h = hadamard_matrix(n);
    ASSERT_EQ(h.order, n);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        int64_t dot = 0;
        for (int64_t k = 0; k < n; ++k) dot += h.at(i, k) * h.at(j, k);
        ASSERT_EQ(dot, i == j ? n : 0) << i << "," << j;
      }
    EXPECT_FALSE(hadamard_plan(n).fallback()) << hadamard_plan(n).construction;
  }
}

TEST(Hadamard, PlansOfModelSizes) {
  // llama-14m hidden 384 = 32 x 12; Llama-2-7B 4096 and 11008 = 32 x 344 (344 = 7^3 + 1);
  // Llama-3-8B 14336 = 512 x 28 (28 = 3^3 + 1).
  EXPECT_NE(hadamard_plan(384).construction.find("paley1(12)"), std::string::npos) << hadamard_plan(384).construction;
  EXPECT_NE(hadamard_plan(11008).construction.find("paley1(344)"), std::string::npos) << hadamard_plan(11008).construction;
  EXPECT_NE(hadamard_plan(14336).construction.find("paley1(28)"), std::string::npos) << hadamard_plan(14336).construction;
  EXPECT_EQ(hadamard_plan(4096).construction, "sylvester(64) x sylvester(64)");
  // stories260K's intermediate 172 = 4 x 43: no construction here (171 and 85 are not prime
  // powers), so the fallback is block-diagonal, 43 blocks of order 4.
  EXPECT_EQ(hadamard_matrix(172).order, 0);
  const HadamardPlan p = hadamard_plan(172);
  EXPECT_TRUE(p.fallback());
  EXPECT_EQ(p.count, 43);
  EXPECT_EQ(p.block(), 4);
  EXPECT_EQ(hadamard_plan(7).count, 7);  // odd: the identity
}

TEST(Hadamard, FactoredTransformIsTheDenseOrthogonalMatrix) {
  for (int64_t n : {12, 172, 384, 40}) {
    SCOPED_TRACE(n);
    const HadamardPlan p = hadamard_plan(n);
    const std::vector<double> Q = dense(p);
    // Q Q^T = I.
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double d = 0;
        for (int64_t k = 0; k < n; ++k) d += Q[static_cast<size_t>(i * n + k)] * Q[static_cast<size_t>(j * n + k)];
        ASSERT_NEAR(d, i == j ? 1.0 : 0.0, 1e-12);
      }
    // Without fallback, sqrt(n) Q is the +-1 matrix of hadamard_matrix(n).
    if (!p.fallback()) {
      const SignMatrix h = hadamard_matrix(n);
      for (int64_t i = 0; i < n * n; ++i) ASSERT_NEAR(Q[static_cast<size_t>(i)] * std::sqrt(double(n)), h.v[static_cast<size_t>(i)], 1e-12);
    }
    // apply_right on random rows = x Q by a plain product.
    std::mt19937 rng(3);
    std::normal_distribution<double> nd;
    const int64_t rows = 5;
    std::vector<double> x(static_cast<size_t>(rows * n)), want(x.size(), 0.0);
    for (auto& v : x) v = nd(rng);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < n; ++k)
        for (int64_t j = 0; j < n; ++j) want[static_cast<size_t>(r * n + j)] += x[static_cast<size_t>(r * n + k)] * Q[static_cast<size_t>(k * n + j)];
    apply_right(p, x.data(), rows);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(x[i], want[i], 1e-12);
  }
}

TEST(AwqClip, NeverWorseThanNoClippingAndConsistent) {
  const int64_t rows = 64, cols = 256;
  const std::vector<float> w = test::llm_like(rows, cols, 7);
  // Correlated inputs with a few large channels: G = X^T X / N.
  std::mt19937 rng(11);
  std::normal_distribution<double> nd;
  const int64_t N = 512;
  std::vector<double> X(static_cast<size_t>(N * cols));
  for (int64_t t = 0; t < N; ++t) {
    const double common = nd(rng);
    for (int64_t k = 0; k < cols; ++k) X[static_cast<size_t>(t * cols + k)] = (nd(rng) + 0.5 * common) * (k % 37 == 0 ? 8.0 : 1.0);
  }
  std::vector<double> G(static_cast<size_t>(cols * cols), 0.0);
  for (int64_t t = 0; t < N; ++t)
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = 0; j < cols; ++j) G[static_cast<size_t>(i * cols + j)] += X[static_cast<size_t>(t * cols + i)] * X[static_cast<size_t>(t * cols + j)] / N;
  for (const auto& [fmt, bits, group] : {std::tuple<const char*, int, int>{"razer", 4, 128}, {"razer", 3, 128}, {"int", 3, 128},
                                         {"fp4", 4, 128}, {"nf4", 4, 64}, {"nvfp4", 4, 16}, {"nvfp4-razer", 4, 16}}) {
    SCOPED_TRACE(std::string(fmt) + std::to_string(bits));
    const FormatConfig cfg = make_format_config(fmt, bits, group);
    const AwqClipResult r = awq_clip_search(w.data(), rows, cols, G.data(), cfg);
    EXPECT_GT(r.err_before, 0.0);
    EXPECT_LE(r.err_after, r.err_before);
    // The packed tensor decodes to what the search measured: recompute sum over groups of d^T G_gg d.
    std::vector<double> deq(static_cast<size_t>(rows * cols));
    dequantize_ref(r.q, deq.data());
    double err = 0;
    for (int64_t row = 0; row < rows; ++row)
      for (int64_t k0 = 0; k0 < cols; k0 += group)
        for (int64_t i = k0; i < std::min<int64_t>(cols, k0 + group); ++i)
          for (int64_t j = k0; j < std::min<int64_t>(cols, k0 + group); ++j)
            err += (deq[static_cast<size_t>(row * cols + i)] - w[static_cast<size_t>(row * cols + i)]) * G[static_cast<size_t>(i * cols + j)] *
                   (deq[static_cast<size_t>(row * cols + j)] - w[static_cast<size_t>(row * cols + j)]);
    EXPECT_NEAR(err, r.err_after, 1e-9 * r.err_before);
    // Clamped weights stay inside ratio x max|w| of their group, and some groups were clipped.
    int clipped = 0;
    for (int64_t row = 0; row < rows; ++row)
      for (int64_t g = 0; g < r.q.groups_per_row; ++g) {
        const float ratio = r.ratio[static_cast<size_t>(row * r.q.groups_per_row + g)];
        clipped += ratio < 1.0f;
        float amax = 0;
        for (int64_t k = g * group; k < std::min<int64_t>(cols, (g + 1) * group); ++k) amax = std::max(amax, std::fabs(w[static_cast<size_t>(row * cols + k)]));
        for (int64_t k = g * group; k < std::min<int64_t>(cols, (g + 1) * group); ++k)
          ASSERT_LE(std::fabs(r.clipped[static_cast<size_t>(row * cols + k)]), amax * ratio * (1 + 1e-6f));
      }
    EXPECT_GT(clipped, 0);
    std::printf("  %s: output error no clip %.4e -> AWQ clip %.4e (%d of %lld groups clipped)\n", cfg.label().c_str(),
                r.err_before, r.err_after, clipped, static_cast<long long>(rows * r.q.groups_per_row));
  }
}

}  // namespace
}  // namespace razerq::quantizer
