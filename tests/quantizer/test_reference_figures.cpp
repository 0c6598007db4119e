// razer.md section 10: the authors' rules on W = np.random.default_rng(0).standard_normal((256, 1024))
// (float32, written by tests/golden/make_goldens.py). Two independent references:
//   * the figures published in razer.md (six digits, measured against the authors' own code on an H100);
//   * tests/golden/razer_reference_goldens.json, a NumPy re-implementation (per-group choices too).
// Differences from razer.md, explained (also in quantizer/NOTES.md):
//   * NVFP4-RaZeR E3M3: NV's code returns bf16; after that cast the error is 0.0752930. razer.md's
//     0.075263 is the error before the cast (0.0752637): we check the pre-cast error against it.
//   * 3-bit RaZeR: ours and NumPy agree (0.19513111) but sit 1.1e-6 above razer.md's 0.195130
//     (its rounding interval ends at 0.1951305); no variant of the rule tried (true division,
//     fp16 search, fp16 input, float64 MSE) lands inside it. We assert 1.5e-6 against razer.md.
#include <gtest/gtest.h>

#include "quantizer/quantize.hpp"
#include "quantizer/reference_rules.hpp"
#include "tests/quantizer/quantizer_test_util.hpp"

using namespace razerq::quantizer;
namespace test = razerq::test;

namespace {

struct Figure {
  const char* key;  // in razer_reference_goldens.json
  const char* format;
  int bits, group;
  bool asym;
  double published;  // razer.md section 10
  double tol;        // against the published figure
  bool precast;      // compare the error before the output cast (see above)
};

const Figure kFigures[] = {
    {"int4_asym_g128", "int", 4, 128, true, 0.100823, 1e-6, false},
    {"fp4_absmax6_g128", "fp4", 4, 128, false, 0.109007, 1e-6, false},
    {"razer4_rtn_g128", "razer", 4, 128, false, 0.098016, 1e-6, false},
    {"razer3_rtn_g128", "razer", 3, 128, false, 0.195130, 1.5e-6, false},
    {"nvfp4_razer_e3m3_g16", "nvfp4-razer", 4, 16, false, 0.075263, 1e-6, true},
    {"mxfp4_razer_nv_g32", "mxfp4-razer", 4, 32, false, 0.103447, 1e-6, false},
};

class ReferenceFigures : public ::testing::TestWithParam<Figure> {};

}  // namespace

TEST_P(ReferenceFigures, MatchRazerMdAndNumpy) {
  const Figure& f = GetParam();
  static const std::vector<float> w = test::load_rng0_matrix();
  static const nlohmann::json gold = test::load_json("golden/razer_reference_goldens.json");
  const auto& g = gold["figures"][f.key];
  const FormatConfig cfg = make_format_config(f.format, f.bits, f.group, f.asym);
  const ReferenceResult r = reference_quantize(w.data(), 256, 1024, cfg);

  const double ours = f.precast ? r.rel_error_precast : r.rel_error;
  EXPECT_NEAR(ours, f.published, f.tol) << f.key;
  EXPECT_NEAR(r.rel_error, g["rel_fro_err"].get<double>(), 1e-9) << "after the output cast, vs NumPy";
  EXPECT_NEAR(r.rel_error_precast, g["rel_fro_err_precast"].get<double>(), 1e-9) << "before the cast, vs NumPy";

  if (!cfg.spec().has_special) return;
  // Every group's special value equals NumPy's choice.
  const auto cands = g["sv_candidates"].get<std::vector<float>>();
  const std::string choices = g["choices"];
  const int64_t groups = 256 * (1024 / f.group);
  ASSERT_EQ(static_cast<int64_t>(choices.size()), groups);
  int64_t mismatches = 0;
  for (int64_t i = 0; i < groups; ++i) {
    const float v = cands[static_cast<size_t>(choices[static_cast<size_t>(i)] - '0')];
    mismatches += cfg.special_values[r.sv_index[static_cast<size_t>(i)]] != v;
  }
  EXPECT_EQ(mismatches, 0);
}

INSTANTIATE_TEST_SUITE_P(Section10, ReferenceFigures, ::testing::ValuesIn(kFigures),
                         [](const auto& p) { return std::string(p.param.key); });

TEST(ReferenceFigures, Razer4HistogramIsThePublishedOne) {
  const std::vector<float> w = test::load_rng0_matrix();
  const ReferenceResult r = reference_quantize(w.data(), 256, 1024, make_format_config("razer", 4, 128));
  // Stored index order {+5, +8, -5, -8}; razer.md: {+5: 829, -5: 697, +8: 249, -8: 273}.
  EXPECT_EQ(r.sv_groups[0], 829);
  EXPECT_EQ(r.sv_groups[1], 249);
  EXPECT_EQ(r.sv_groups[2], 697);
  EXPECT_EQ(r.sv_groups[3], 273);
}

TEST(ReferenceFigures, PackedReferenceKeepsTheRuleUpToFp16Scales) {
  // --razer-rule reference stores the authors' choices; only the scale's fp16 rounding moves the error.
  const std::vector<float> w = test::load_rng0_matrix();
  for (const Figure& f : kFigures) {
    const FormatConfig cfg = make_format_config(f.format, f.bits, f.group, f.asym);
    SearchOptions opt;
    opt.rule = Rule::kReference;
    const QuantizedTensor q = quantize_tensor(w.data(), 256, 1024, cfg, opt);
    const ReferenceResult r = reference_quantize(w.data(), 256, 1024, cfg);
    EXPECT_NEAR(q.stats.rel_error(), r.rel_error_precast, 2e-4 * r.rel_error_precast) << f.key;
    if (cfg.spec().has_special) {
      for (int i = 0; i < 4; ++i) EXPECT_EQ(q.stats.sv_groups[static_cast<size_t>(i)], r.sv_groups[static_cast<size_t>(i)]) << f.key;
    }
  }
}
