// The default search: never worse than the authors' rule, ragged groups, weighted MSE, the
// RaZeR special-value storage fallback, determinism across thread counts, bad inputs.
#include <gtest/gtest.h>

#include <cmath>

#include "common/error.hpp"
#include "quantizer/pack.hpp"
#include "quantizer/quantize.hpp"
#include "quantizer/reference_rules.hpp"
#include "tests/quantizer/quantizer_test_util.hpp"

using namespace razerq;
using namespace razerq::quantizer;

namespace {

struct Fmt {
  const char* name;
  int bits, group;
  bool asym;
};
const Fmt kAll[] = {{"int", 2, 64, false},  {"int", 3, 128, false},   {"int", 4, 128, false}, {"int", 4, 128, true},
                    {"int", 8, 128, true},  {"fp4", 4, 128, false},   {"fp3", 3, 128, false}, {"nf4", 4, 64, false},
                    {"razer", 4, 128, false}, {"razer", 3, 128, false}, {"mxfp4", 4, 32, false},
                    {"mxfp4-razer", 4, 32, false}, {"nvfp4", 4, 16, false}, {"nvfp4-razer", 4, 16, false}};

std::string label(const Fmt& f) { return make_format_config(f.name, f.bits, f.group, f.asym).label(); }

class EveryFormat : public ::testing::TestWithParam<Fmt> {};

std::vector<double> dequant(const QuantizedTensor& q) {
  std::vector<double> out(static_cast<size_t>(q.rows * q.cols));
  dequantize_ref(q, out.data());
  return out;
}

double rel_err(const std::vector<double>& a, const std::vector<float>& w) {
  double e = 0, n = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    e += (a[i] - w[i]) * (a[i] - w[i]);
    n += double(w[i]) * w[i];
  }
  return std::sqrt(e / n);
}

}  // namespace

TEST_P(EveryFormat, SearchIsNeverWorseThanTheReferenceRule) {
  const Fmt f = GetParam();
  const FormatConfig cfg = make_format_config(f.name, f.bits, f.group, f.asym);
  const std::vector<std::vector<float>> inputs = {test::load_rng0_matrix(), test::llm_like(256, 1024, test::seed_from_test_name())};
  for (const auto& w : inputs) {
    const QuantizedTensor q = quantize_tensor(w.data(), 256, 1024, cfg);
    const ReferenceResult r = reference_quantize(w.data(), 256, 1024, cfg);
    SearchOptions ro;
    ro.rule = Rule::kReference;
    const QuantizedTensor qr = quantize_tensor(w.data(), 256, 1024, cfg, ro);
    ASSERT_GT(q.stats.ssq, 0);
    EXPECT_LE(q.stats.rel_error(), std::min(r.rel_error, r.rel_error_precast)) << label(f);
    EXPECT_LE(q.stats.rel_error(), qr.stats.rel_error()) << label(f);
    // The statistics describe the packed tensor: recompute from its float64 dequantization.
    EXPECT_NEAR(q.stats.rel_error(), rel_err(dequant(q), w), 1e-12) << label(f);
    EXPECT_NO_THROW(validate(q, label(f)));
  }
}

TEST_P(EveryFormat, RaggedLastGroup) {
  const Fmt f = GetParam();
  const FormatConfig cfg = make_format_config(f.name, f.bits, f.group, f.asym);
  // stories260K's widths (64, 172) and a width that leaves a short last group for every group size.
  for (int64_t cols : {64, 172, 100, cfg.group * 2 + 5}) {
    const auto w = test::llm_like(37, cols, test::seed_from_test_name() + static_cast<uint32_t>(cols));
    const QuantizedTensor q = quantize_tensor(w.data(), 37, cols, cfg);
    EXPECT_EQ(q.groups_per_row, (cols + cfg.group - 1) / cfg.group);
    EXPECT_EQ(q.group_size(q.groups_per_row - 1), cols - (q.groups_per_row - 1) * cfg.group);
    const auto out = dequant(q);
    for (double v : out) ASSERT_TRUE(std::isfinite(v));
    // Short groups can be all of one sign, where the authors' int rule uses a zero point outside
    // [0, 2^b-1] that no b-bit format stores: compare with the reference as stored.
    SearchOptions ro;
    ro.rule = Rule::kReference;
    const QuantizedTensor qr = quantize_tensor(w.data(), 37, cols, cfg, ro);
    EXPECT_LE(q.stats.rel_error(), qr.stats.rel_error()) << label(f) << " cols " << cols;
    // A sanity bound (LLM-like rows carry 4 outliers of 7x the body's sigma).
    EXPECT_LT(q.stats.rel_error(), f.bits >= 4 ? 0.3 : 0.6) << label(f) << " cols " << cols;
    // The short group is quantized on its own range: its error is of the same order as a full group's.
    double e = 0, n = 0;
    const int64_t k0 = (q.groups_per_row - 1) * cfg.group;
    for (int64_t r0 = 0; r0 < 37; ++r0)
      for (int64_t k = k0; k < cols; ++k) {
        const size_t i = static_cast<size_t>(r0 * cols + k);
        e += (out[i] - w[i]) * (out[i] - w[i]);
        n += double(w[i]) * w[i];
      }
    EXPECT_LT(std::sqrt(e / n), 3 * q.stats.rel_error() + 0.05) << label(f) << " cols " << cols;
  }
}

TEST_P(EveryFormat, SameResultForAnyThreadCount) {
  const Fmt f = GetParam();
  const FormatConfig cfg = make_format_config(f.name, f.bits, f.group, f.asym);
  const auto w = test::llm_like(64, 512, test::seed_from_test_name());
  const QuantizedTensor a = quantize_tensor(w.data(), 64, 512, cfg, {}, nullptr, 1);
  const QuantizedTensor b = quantize_tensor(w.data(), 64, 512, cfg, {}, nullptr, 2);
  EXPECT_EQ(a.codes, b.codes);
  EXPECT_EQ(a.scales16, b.scales16);
  EXPECT_EQ(a.scales8, b.scales8);
  EXPECT_EQ(a.zeros, b.zeros);
  EXPECT_EQ(a.tensor_scale, b.tensor_scale);
}

TEST_P(EveryFormat, ZeroRowsStayZero) {
  const Fmt f = GetParam();
  const FormatConfig cfg = make_format_config(f.name, f.bits, f.group, f.asym);
  auto w = test::llm_like(4, 256, 7);
  std::fill(w.begin(), w.begin() + 256, 0.f);  // row 0 all zero
  const QuantizedTensor q = quantize_tensor(w.data(), 4, 256, cfg);
  const auto out = dequant(q);
  for (int k = 0; k < 256; ++k) ASSERT_EQ(out[static_cast<size_t>(k)], 0.0) << label(f);
  for (double v : out) ASSERT_TRUE(std::isfinite(v));
}

INSTANTIATE_TEST_SUITE_P(Formats, EveryFormat, ::testing::ValuesIn(kAll), [](const auto& p) {
  std::string s = label(p.param);
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
});

TEST(Search, WeightedMseFollowsTheImportance) {
  const auto w = test::llm_like(128, 512, test::seed_from_test_name());
  std::vector<float> h(512);
  std::mt19937 rng(3);
  std::exponential_distribution<float> ex(1.0f);
  for (auto& v : h) v = ex(rng) * ex(rng);
  auto weighted = [&](const QuantizedTensor& q) {
    const auto out = dequant(q);
    double e = 0;
    for (int64_t r = 0; r < 128; ++r)
      for (int64_t k = 0; k < 512; ++k) {
        const size_t i = static_cast<size_t>(r * 512 + k);
        e += h[static_cast<size_t>(k)] * (out[i] - w[i]) * (out[i] - w[i]);
      }
    return e;
  };
  for (const char* name : {"razer", "int", "nf4", "nvfp4-razer"}) {
    const FormatConfig cfg = make_format_config(name);
    const QuantizedTensor plain = quantize_tensor(w.data(), 128, 512, cfg);
    const QuantizedTensor imp = quantize_tensor(w.data(), 128, 512, cfg, {}, h.data());
    EXPECT_LT(weighted(imp), weighted(plain)) << name;
    EXPECT_GE(imp.stats.rel_error(), plain.stats.rel_error() * 0.999) << name << ": plain MSE is what the unweighted search minimises";
  }
  std::vector<float> bad(512, 1.f);
  bad[3] = -1.f;
  EXPECT_THROW(quantize_tensor(w.data(), 128, 512, make_format_config("razer"), {}, bad.data()), Error);
}

TEST(Search, RazerSpecialValueFallsBackToSeparateBytesWhenAScaleExceedsTwo) {
  auto w = test::llm_like(32, 256, 11);
  const FormatConfig cfg = make_format_config("razer", 4, 128);
  const QuantizedTensor small = quantize_tensor(w.data(), 32, 256, cfg);
  EXPECT_FALSE(small.separate_sv());
  EXPECT_DOUBLE_EQ(small.bits_per_weight(), 4.125);
  for (auto& v : w) v *= 1024.f;  // power of two: the same search problem with scales >= 2
  const QuantizedTensor big = quantize_tensor(w.data(), 32, 256, cfg);
  ASSERT_TRUE(big.separate_sv());
  EXPECT_DOUBLE_EQ(big.bits_per_weight(), 4.1875);
  EXPECT_NO_THROW(validate(big, "big"));
  EXPECT_NEAR(big.stats.rel_error(), small.stats.rel_error(), 1e-9);
  EXPECT_EQ(big.codes, small.codes);
  EXPECT_EQ(big.stats.sv_groups, small.stats.sv_groups);
}

TEST(Search, BitsPerWeight) {
  EXPECT_DOUBLE_EQ(bits_per_weight(make_format_config("razer", 4, 128), 10, 1024), 4.125);
  EXPECT_DOUBLE_EQ(bits_per_weight(make_format_config("fp4", 4, 128), 10, 1024), 4.125);
  EXPECT_DOUBLE_EQ(bits_per_weight(make_format_config("razer", 3, 128), 10, 1024), 3.125);
  EXPECT_DOUBLE_EQ(bits_per_weight(make_format_config("int", 4, 128, true), 10, 1024), 4.15625);
  EXPECT_DOUBLE_EQ(bits_per_weight(make_format_config("mxfp4"), 10, 1024), 4.25);
  EXPECT_DOUBLE_EQ(bits_per_weight(make_format_config("nvfp4"), 10, 1024), 4.5 + 32.0 / 10240);
  // stories260K's down_proj: K = 172 -> 2 groups of 128 and 44, 172*4 bits = 21.5 -> 22 words per row.
  EXPECT_DOUBLE_EQ(bits_per_weight(make_format_config("razer", 4, 128), 64, 172), (22 * 32 + 2 * 16) / 172.0);
}

TEST(Search, RejectsNonFiniteWeightsAndEmptyShapes) {
  auto w = test::llm_like(2, 128, 1);
  w[130] = NAN;
  try {
    quantize_tensor(w.data(), 2, 128, make_format_config("razer"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kMalformedInput);
    EXPECT_NE(std::string(e.what()).find("[1, 2] is NaN"), std::string::npos) << e.what();
  }
  EXPECT_THROW(quantize_tensor(w.data(), 0, 128, make_format_config("razer")), Error);
}

TEST(Search, SpecialCodeNeverEncodesZero) {
  // A zero weight must not take the negative-zero code, which RaZeR decodes as the special value.
  std::vector<float> w(256, 0.f);
  for (int i = 0; i < 256; i += 3) w[static_cast<size_t>(i)] = (i % 2 ? -0.01f : 0.01f) * static_cast<float>(i % 17);
  w[5] = -0.0f;
  const QuantizedTensor q = quantize_tensor(w.data(), 2, 128, make_format_config("razer", 4, 128));
  const auto out = dequant(q);
  for (size_t i = 0; i < w.size(); ++i)
    if (w[i] == 0.f) {
      EXPECT_EQ(out[i], 0.0) << i;
    }
}
