// The calibrated stages before quantization on real models: the Hadamard rotation
// (calib/rotation.hpp) and its online op keep the unquantized model's function (stories260K,
// llama-14m), also through a packed checkpoint; AWQ's scale folding (calib/awq.hpp) keeps the
// unquantized output, and AWQ lowers the block-output error of the quantized blocks against
// round-to-nearest on llama-14m; learned weight clipping (calib/lwc.hpp) lowers the block-output
// error below its starting point and below round-to-nearest on stories260K.
#include <gtest/gtest.h>
#include <torch/types.h>

#include <cstdio>
#include <tuple>

#include "calib/awq.hpp"
#include "calib/datasets.hpp"
#include "calib/lwc.hpp"
#include "calib/rotation.hpp"
#include "calib/tokenizer.hpp"
#include "eval/model.hpp"
#include "eval/perplexity.hpp"
#include "formats/export_dequant.hpp"
#include "formats/quantize_model.hpp"
#include "quantizer/format.hpp"
#include "quantizer/hadamard.hpp"
#include "tests/eval/eval_test_util.hpp"

namespace razerq::eval {
namespace {

using namespace razerq::eval::testing;

TEST(OnlineHadamard, EqualsTheDenseOrthogonalMatrix) {
  torch::manual_seed(0);
  for (int64_t n : {172, 384, 64}) {
    const OnlineHadamard h(n, torch::Device(torch::kCPU));
    const std::vector<double> q = quantizer::dense(h.plan());
    const torch::Tensor Q = torch::from_blob(const_cast<double*>(q.data()), {n, n}, torch::kFloat64).clone();
    const torch::Tensor x = torch::randn({2, 3, n}, torch::kFloat32);
    const torch::Tensor want = torch::matmul(x.to(torch::kFloat64), Q);
    EXPECT_LT((h(x).to(torch::kFloat64) - want).abs().max().item<double>(), 1e-5) << n;
    EXPECT_EQ(h(x.to(torch::kFloat16)).scalar_type(), torch::kFloat16);
  }
}

// Rotated (in memory, fp32) against the original: logits and perplexity.
void check_rotation(const char* rel, int64_t seqlen, int64_t nwin) {
  const std::string dir = test::data_path(rel);
  const std::unique_ptr<calib::Tokenizer> tok = calib::load_tokenizer(dir);
  const calib::EvalSet wiki = calib::gptq_eval_set("wikitext2", *tok, seqlen, test::data_dir());
  const Windows win(wiki.windows.begin(), wiki.windows.begin() + nwin);
  const Model base = Model::load(dir);
  const std::unique_ptr<WeightSource> src = WeightSource::open_hf(dir);
  const calib::FloatModel rot = calib::rotate_model(*src);
  const Model rotated = Model::load(*calib::memory_source(rot));
  EXPECT_TRUE(rotated.config().online_hadamard_down);
  EXPECT_FALSE(rotated.config().tie_word_embeddings);
  // The rotation did change the weights (norms are 1, linears differ).
  EXPECT_TRUE(torch::equal(rotated.tensor("model.layers.0.input_layernorm.weight"),
                           torch::ones_like(rotated.tensor("model.layers.0.input_layernorm.weight"))));
  EXPECT_GT((rotated.tensor("model.layers.0.mlp.down_proj.weight") - base.tensor("model.layers.0.mlp.down_proj.weight")).abs().max().item<double>(), 1e-3);
  const torch::Tensor ids = torch::tensor(std::vector<int64_t>(win[0].begin(), win[0].end())).unsqueeze(0);
  const torch::Tensor a = base.forward(ids), b = rotated.forward(ids);
  const double rel_diff = ((a - b).abs().max() / a.abs().max()).item<double>();
  EvalOptions eo;
  eo.batch_size = 8;
  const double p0 = perplexity(base, win, eo).ppl, p1 = perplexity(rotated, win, eo).ppl;
  std::printf("  %s rotated (%s; down_proj %s): max |logit diff| / max |logit| %.2e, ppl %.6f -> %.6f (%lld windows of %lld)\n", rel,
              rot.record["residual"].get<std::string>().c_str(), rot.record["online_hadamard"]["down_proj"].get<std::string>().c_str(),
              rel_diff, p0, p1, static_cast<long long>(nwin), static_cast<long long>(seqlen));
  EXPECT_LT(rel_diff, 1e-4);
  EXPECT_NEAR(p1, p0, 1e-5 * p0);
}

TEST(Rotation, Stories260KKeepsThePerplexity) {
  RAZERQ_REQUIRE_DATA(kStories);
  check_rotation(kStories, 512, 40);
}

TEST(Rotation, Llama14mKeepsThePerplexity) {
  RAZERQ_REQUIRE_DATA(kLlama14m);
  check_rotation(kLlama14m, 512, 8);
}

// A rotated packed checkpoint (untied head, online Hadamard in config.json) evaluates as the
// in-memory rotated model quantized the same way.
TEST(Rotation, PackedCheckpointAppliesTheOnlineHadamard) {
  RAZERQ_REQUIRE_DATA(kStories);
  const std::string dir = test::data_path(kStories);
  const calib::FloatModel rot = calib::rotate_model(*WeightSource::open_hf(dir));
  const quantizer::FormatConfig cfg = quantizer::make_format_config("razer", 4, 128);
  test::TempDir tmp;
  formats::QuantizeJob job;
  job.model_dir = dir;
  job.out_dir = tmp.str("rot");
  job.cfg = cfg;
  job.checksums = false;
  job.replaced = &rot.tensors;
  job.config_patch = rot.config_patch;
  formats::quantize_model(job, [](const formats::TensorProgress&) {});
  const Model packed = Model::load(job.out_dir);
  EXPECT_TRUE(packed.config().online_hadamard_down);
  Model mem = Model::load(*calib::memory_source(rot));
  for (int64_t l = 0; l < mem.num_layers(); ++l)
    for (const std::string& n : mem.layer_linears(l)) mem.set_tensor(n + ".weight", calib::fake_quantize(mem.tensor(n + ".weight"), cfg));
  const std::unique_ptr<calib::Tokenizer> tok = calib::load_tokenizer(dir);
  const calib::EvalSet wiki = calib::gptq_eval_set("wikitext2", *tok, 512, test::data_dir());
  const Windows win(wiki.windows.begin(), wiki.windows.begin() + 20);
  const double a = perplexity(packed, win).ppl, b = perplexity(mem, win).ppl;
  // The dequant export folds the online Hadamard back into down_proj: a plain HF model.
  formats::ExportOptions xo;
  xo.dtype = formats::DType::kF32;
  formats::export_dequant(job.out_dir, tmp.str("export"), xo, nullptr);
  const Model exported = Model::load(tmp.str("export"));
  EXPECT_FALSE(exported.config().online_hadamard_down);
  const double c = perplexity(exported, win).ppl;
  std::printf("  stories260K rotated razer4 packed %.6f, in memory %.6f, dequant export %.6f\n", a, b, c);
  EXPECT_EQ(a, b);
  EXPECT_NEAR(c, a, 1e-5 * a);
}

// Block-output MSE of every block of `q` against `fp`, on the full-precision inputs.
std::vector<double> block_errors(const Model& fp, const Model& q, const std::vector<std::vector<int32_t>>& cal) {
  std::vector<int64_t> flat;
  torch::Tensor h;
  {
    std::vector<torch::Tensor> rows;
    for (const auto& w : cal) rows.push_back(torch::tensor(std::vector<int64_t>(w.begin(), w.end())));
    h = fp.embed(torch::stack(rows));
  }
  std::vector<double> e;
  for (int64_t l = 0; l < fp.num_layers(); ++l) {
    const torch::Tensor y = fp.layer(l, h), yq = q.layer(l, h);
    e.push_back((y - yq).pow(2).mean().item<double>());
    h = y;
  }
  return e;
}

TEST(Awq, FoldingKeepsTheUnquantizedOutputAndLowersBlockErrorOnLlama14m) {
  RAZERQ_REQUIRE_DATA(kLlama14m);
  const std::string dir = test::data_path(kLlama14m);
  const std::unique_ptr<calib::Tokenizer> tok = calib::load_tokenizer(dir);
  const std::vector<std::vector<int32_t>> cal = calib::calibration_windows("c4", 8, 256, 0, *tok, test::data_dir());
  const torch::Tensor ids = torch::tensor(std::vector<int64_t>(cal[0].begin(), cal[0].end())).unsqueeze(0);
  const Model base = Model::load(dir);
  const torch::Tensor ref = base.forward(ids);
  {
    // Scales only: the folded model computes the same function.
    Model folded = Model::load(dir);
    calib::AwqOptions ao;
    ao.clip = false;
    ao.n_grid = 5;
    ao.batch = 4;
    const calib::AwqResult fr = calib::awq_apply(folded, cal, quantizer::make_format_config("razer", 4, 128), ao);
    EXPECT_EQ(fr.scales.size(), 8u * 4u);  // MHA: q/k/v, o, gate/up, down in each of the 8 blocks
    const double diff = ((folded.forward(ids) - ref).abs().max() / ref.abs().max()).item<double>();
    std::printf("  llama-14m AWQ-folded (unquantized): max |logit diff| / max |logit| %.2e\n", diff);
    EXPECT_LT(diff, 1e-5);
    EXPECT_GT((folded.tensor("model.layers.0.input_layernorm.weight") - base.tensor("model.layers.0.input_layernorm.weight")).abs().max().item<double>(), 0.0);
  }
  for (const auto& [fmt, bits] : {std::pair<const char*, int>{"razer", 4}, {"int", 3}}) {
    SCOPED_TRACE(std::string(fmt) + std::to_string(bits));
    const quantizer::FormatConfig cfg = quantizer::make_format_config(fmt, bits, 128);
    // Scales and clipping, then every linear quantized: block-output error against RTN. A
    // 10-point alpha grid (the default is AWQ's 20) keeps the test within CI's time.
    calib::AwqOptions ao;
    ao.batch = 4;
    ao.n_grid = 10;
    Model awq = Model::load(dir);
    calib::AwqResult r = calib::awq_apply(awq, cal, cfg, ao);
    Model rtn = Model::load(dir);
    for (int64_t l = 0; l < awq.num_layers(); ++l)
      for (const std::string& n : awq.layer_linears(l)) {
        const std::string w = n + ".weight";
        if (r.clipped.count(w)) {
          torch::Tensor d = torch::empty({r.clipped[w].rows, r.clipped[w].cols}, torch::kFloat64);
          quantizer::dequantize_ref(r.clipped[w], d.data_ptr<double>());
          awq.set_tensor(w, d);
        } else {
          awq.set_tensor(w, calib::fake_quantize(awq.tensor(w), cfg));
        }
        rtn.set_tensor(w, calib::fake_quantize(rtn.tensor(w), cfg));
      }
    const std::vector<double> ea = block_errors(base, awq, cal), er = block_errors(base, rtn, cal);
    double sa = 0, sr = 0;
    std::printf("  llama-14m %s%d/g128 block-output MSE, RTN -> AWQ:", fmt, bits);
    for (size_t l = 0; l < ea.size(); ++l) {
      std::printf(" %.3g->%.3g", er[l], ea[l]);
      sa += ea[l], sr += er[l];
    }
    std::printf("\n");
    EXPECT_LT(sa, sr);
    for (size_t l = 0; l < ea.size(); ++l) EXPECT_LT(ea[l], er[l]) << "block " << l;
  }
}

TEST(Lwc, LearnsClippingOnStories260K) {
  RAZERQ_REQUIRE_DATA(kStories);
  const std::string dir = test::data_path(kStories);
  const std::unique_ptr<calib::Tokenizer> tok = calib::load_tokenizer(dir);
  const std::vector<std::vector<int32_t>> cal = calib::calibration_windows("c4", 16, 256, 0, *tok, test::data_dir());
  const Model base = Model::load(dir);
  for (const auto& [fmt, bits, asym] : {std::tuple<const char*, int, bool>{"razer", 3, false}, {"int", 3, true}}) {
    const quantizer::FormatConfig cfg = quantizer::make_format_config(fmt, bits, 128, asym);
    SCOPED_TRACE(cfg.label());
    std::vector<double> losses;
    calib::LwcOptions lo;
    lo.epochs = 0;  // the starting point: each group's weight-MSE clip ratio
    Model start = Model::load(dir);
    calib::lwc_apply(start, cal, cfg, lo);
    lo.epochs = 3;
    lo.progress = [&](const calib::LwcProgress& p) { losses.push_back(p.loss); };
    Model lwc = Model::load(dir);
    const auto q = calib::lwc_apply(lwc, cal, cfg, lo);
    EXPECT_EQ(q.size(), 35u);
    for (const auto& [name, qt] : q) {  // the model computes with exactly the packed tensors
      torch::Tensor want = torch::empty({qt.rows, qt.cols}, torch::kFloat64);
      quantizer::dequantize_ref(qt, want.data_ptr<double>());
      EXPECT_TRUE(torch::equal(lwc.tensor(name), want.to(torch::kFloat32))) << name;
    }
    Model rtn = Model::load(dir);
    for (int64_t l = 0; l < rtn.num_layers(); ++l)
      for (const std::string& n : rtn.layer_linears(l)) rtn.set_tensor(n + ".weight", calib::fake_quantize(rtn.tensor(n + ".weight"), cfg));
    const std::vector<double> e0 = block_errors(base, start, cal), e1 = block_errors(base, lwc, cal), er = block_errors(base, rtn, cal);
    double s0 = 0, s1 = 0, sr = 0;
    std::printf("  stories260K %s block-output MSE, start / RTN / LWC:", cfg.label().c_str());
    for (size_t l = 0; l < e1.size(); ++l) {
      std::printf(" %.3g/%.3g/%.3g", e0[l], er[l], e1[l]);
      s0 += e0[l], s1 += e1[l], sr += er[l];
    }
    std::printf("\n");
    EXPECT_LT(s1, s0);
    EXPECT_LT(s1, sr);
    // The epoch losses of the first block go down.
    ASSERT_GE(losses.size(), 3u);
    EXPECT_LT(losses[2], losses[0]);
  }
}

}  // namespace
}  // namespace razerq::eval
