// eval/'s forward against transformers itself: tiny random OPT (with and without
// project_in/out), Qwen2 (GQA, biases, tied) and Llama-3 (llama3 RoPE scaling) models saved by
// transformers, with its float32 and float64 logits (tests/golden/transformers, made on the GPU
// machine by scripts/gpu/make_transformers_fixtures.py). CPU, float32; test_eval_gpu.cpp runs
// the same comparison on CUDA.
#include <gtest/gtest.h>

#include <cstdio>

#include "tests/eval/transformers_fixtures.hpp"

namespace razerq::eval {
namespace {

using namespace razerq::eval::testing;

TEST(EvalTransformers, FixturesPresent) {
  const std::vector<std::string> names = transformers_fixtures();
  // opt-proj, opt-pre, qwen2, llama3: the issue asks for OPT and Qwen2 at least.
  EXPECT_GE(names.size(), 4u) << "in " << transformers_fixture_dir();
  for (const char* must : {"opt-proj", "qwen2"})
    EXPECT_NE(std::find(names.begin(), names.end(), must), names.end()) << must;
}

TEST(EvalTransformers, LogitsEqualTransformersFloat32OnCpu) {
  const std::vector<std::string> names = transformers_fixtures();
  if (names.empty()) GTEST_SKIP() << "no fixtures in " << transformers_fixture_dir();
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    const TransformersReference ref = read_reference(name);
    const Model model = Model::load(transformers_fixture_dir() + "/" + name);
    const torch::Tensor logits = model.forward(ref.ids);
    const double r32 = max_rel(logits, ref.logits_f32), r64 = max_rel(logits, ref.logits_f64);
    std::printf("  %-9s %s: max rel diff vs transformers fp32 %.2e, vs fp64 %.2e\n", name.c_str(),
                model.describe().c_str(), r32, r64);
    EXPECT_LT(r32, 1e-4);
    EXPECT_LT(r64, 1e-4);
    EXPECT_TRUE(torch::equal(logits.argmax(-1), ref.logits_f64.argmax(-1)));
  }
}

}  // namespace
}  // namespace razerq::eval
