// Sequential GPTQ over a real model (calib/gptq_sequential.hpp): stories260K calibrated on C4
// train crops, evaluated on WikiText-2 windows, against round-to-nearest packed checkpoints of
// the same format. The returned packed tensors are what the model now computes with.
#include <gtest/gtest.h>
#include <torch/types.h>

#include <cstdio>

#include "calib/datasets.hpp"
#include "calib/gptq_sequential.hpp"
#include "calib/tokenizer.hpp"
#include "eval/model.hpp"
#include "eval/perplexity.hpp"
#include "formats/quantize_model.hpp"
#include "quantizer/format.hpp"
#include "quantizer/gptq.hpp"
#include "tests/eval/eval_test_util.hpp"
#include "tests/eval/gptq_device_check.hpp"

namespace razerq::eval {
namespace {

using namespace razerq::eval::testing;

TEST(GptqSequential, Stories260KBeatsRoundToNearest) {
  RAZERQ_REQUIRE_DATA(kStories);
  const std::string dir = test::data_path(kStories);
  const std::unique_ptr<calib::Tokenizer> tok = calib::load_tokenizer(dir);
  const std::vector<std::vector<int32_t>> cal = calib::calibration_windows("c4", 32, 256, 0, *tok, test::data_dir());
  const calib::EvalSet wiki = calib::gptq_eval_set("wikitext2", *tok, 512, test::data_dir());
  const Windows win(wiki.windows.begin(), wiki.windows.begin() + 120);
  EvalOptions eo;
  eo.batch_size = 16;
  const double ppl_base = perplexity(Model::load(dir), win, eo).ppl;
  for (const auto& [fmt, bits] : {std::pair<const char*, int>{"razer", 3}, {"int", 3}, {"razer", 4}}) {
    SCOPED_TRACE(std::string(fmt) + std::to_string(bits));
    const quantizer::FormatConfig cfg = quantizer::make_format_config(fmt, bits, 128);
    test::TempDir tmp;
    const double ppl_rtn = perplexity(Model::load(quantize_packed(dir, tmp.str("rtn"), cfg)), win, eo).ppl;

    Model model = Model::load(dir);
    calib::SequentialOptions so;
    so.batch = 8;
    const auto q = calib::gptq_sequential(model, cal, cfg, so);
    EXPECT_EQ(q.size(), 35u);  // 5 layers x 7 linears
    const double ppl_gptq = perplexity(model, win, eo).ppl;
    std::printf("  stories260K %s%d/g128, 120 wikitext2 windows of 512: fp32 %.3f, RTN %.3f, GPTQ %.3f\n", fmt, bits,
                ppl_base, ppl_rtn, ppl_gptq);
    // What the model computes with is exactly the packed result (dequantized, rounded to fp32).
    for (const auto& [name, qt] : q) {
      torch::Tensor want = torch::empty({qt.rows, qt.cols}, torch::kFloat64);
      quantizer::dequantize_ref(qt, want.data_ptr<double>());
      EXPECT_TRUE(torch::equal(model.tensor(name), want.to(torch::kFloat32))) << name;
    }
    EXPECT_LT(ppl_gptq, ppl_rtn);
  }
}

// The libtorch factorisation (LAPACK here, cuSOLVER on a GPU) against quantizer's Eigen one on
// a random layer with a rank-deficient Hessian: the same U, so the same codes; and the libtorch
// trailing updates against Eigen's.
TEST(GptqSequential, TorchInverseCholeskyMatchesEigen) {
  torch::manual_seed(3);
  const int64_t rows = 96, cols = 256, n = 200;
  const torch::Tensor X = torch::randn({n, cols}, torch::kFloat64) * torch::linspace(0.1, 3.0, cols, torch::kFloat64);
  const torch::Tensor H = X.t().mm(X).contiguous();  // rank 200 < 256: only the damping makes it definite
  const torch::Tensor W = torch::randn({rows, cols}, torch::kFloat32).contiguous();
  for (const auto& [fmt, bits] : {std::pair<const char*, int>{"int", 4}, {"razer", 3}}) {
    SCOPED_TRACE(fmt);
    const quantizer::FormatConfig cfg = quantizer::make_format_config(fmt, bits, 128);
    quantizer::GptqOptions go;
    const quantizer::GptqResult a = quantizer::gptq_quantize(W.data_ptr<float>(), rows, cols, H.data_ptr<double>(), cfg, go);
    go.inverse_cholesky = calib::torch_inverse_cholesky(torch::Device(torch::kCPU));
    const quantizer::GptqResult b = quantizer::gptq_quantize(W.data_ptr<float>(), rows, cols, H.data_ptr<double>(), cfg, go);
    // And the trailing updates through the libtorch device interface (here on the CPU; the GPU
    // run is in test_eval_gpu), with a block that does not divide the group.
    go.device = calib::torch_gptq_device(torch::Device(torch::kCPU));
    go.block_size = 48;
    const quantizer::GptqResult c = quantizer::gptq_quantize(W.data_ptr<float>(), rows, cols, H.data_ptr<double>(), cfg, go);
    go.device = nullptr;
    const quantizer::GptqResult d = quantizer::gptq_quantize(W.data_ptr<float>(), rows, cols, H.data_ptr<double>(), cfg, go);
    for (const auto& [x, y] : {std::pair<const quantizer::GptqResult*, const quantizer::GptqResult*>{&a, &b}, {&c, &d}}) {
      size_t same = 0;
      for (size_t i = 0; i < x->q.codes.size(); ++i) same += x->q.codes[i] == y->q.codes[i];  // words of 8 or 10 codes
      EXPECT_GE(static_cast<double>(same), 0.999 * static_cast<double>(x->q.codes.size()));
      EXPECT_NEAR(x->loss, y->loss, 1e-6 * x->loss);
      EXPECT_EQ(x->damp_used, y->damp_used);
    }
  }
  // Not positive definite: false, so the caller raises the damping.
  std::vector<double> m = {1, 2, 2, 1};
  EXPECT_FALSE(calib::torch_inverse_cholesky(torch::Device(torch::kCPU))(m.data(), 2));
}

// The Hessian kept on the device, here the CPU (tests/eval/gptq_device_check.hpp; CUDA in
// test_eval_gpu).
TEST(GptqSequential, DeviceHessianMatchesHost) { check_device_hessian_matches_host(torch::Device(torch::kCPU)); }

}  // namespace
}  // namespace razerq::eval
