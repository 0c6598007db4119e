// eval/ against the goldens of ../shared/data (skips with the reason when it is missing):
// stories260K logits (float64 NumPy), its greedy text (llama2.c), its WikiText-2 perplexity
// (PyTorch/transformers), a packed RaZeR checkpoint of it, and llama-14m against a float64
// libtorch forward written in the test (plus, labelled "slow" by name, its full WikiText-2
// perplexity at seqlen 2048).
#include <gtest/gtest.h>
#include <ATen/Parallel.h>
#include <torch/types.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "calib/datasets.hpp"
#include "calib/tokenizer.hpp"
#include "common/error.hpp"
#include "common/file.hpp"
#include "common/json.hpp"
#include "eval/model.hpp"
#include "eval/perplexity.hpp"
#include "formats/hf_checkpoint.hpp"
#include "formats/packed_checkpoint.hpp"
#include "formats/quantize_model.hpp"
#include "formats/safetensors.hpp"
#include "kernels/cpu/dequant.hpp"
#include "quantizer/format.hpp"
#include "tests/eval/eval_test_util.hpp"


namespace razerq::eval {
namespace {

using namespace razerq::eval::testing;

constexpr const char* kWikiIds = "golden/token_ids/tok512.wikitext2.sentencepiece.i32";
constexpr const char* kRefLogits = "golden/stories260K_ref_logits.safetensors";
constexpr const char* kStoriesGolden = "golden/stories260K_and_tokenizers_golden_hf.json";

// Goldens (../shared/data/golden): stories260K_and_tokenizers_golden_hf.json and
// llama-14m.golden_hf.json, fp32, GPTQ protocol on WikiText-2.
constexpr double kStoriesWiki512 = 122.372895;
constexpr double kLlama14mWiki2048 = 10.150151411704826;
constexpr int64_t kWikiIdCount = 815066;

void print_progress(const EvalProgress& p) {
  if (p.windows_done == p.windows_total || p.windows_done % 200 == 0)
    std::printf("  %lld/%lld windows, %.0f tok/s, eta %.1f s, running ppl %.4f\n", static_cast<long long>(p.windows_done),
                static_cast<long long>(p.windows_total), p.tokens_per_s, p.eta_seconds, p.running_ppl);
  std::fflush(stdout);
}

TEST(EvalStories260K, LogitsMatchFloat64NumPyGolden) {
  RAZERQ_REQUIRE_DATA(kStories);
  RAZERQ_REQUIRE_DATA(kRefLogits);
  const formats::SafetensorsFile g = formats::SafetensorsFile::open(test::data_path(kRefLogits));
  const formats::TensorInfo& ti = g.info("tokens");
  ASSERT_EQ(ti.dtype, formats::DType::kI32);
  std::vector<int32_t> tokens(static_cast<size_t>(ti.numel()));
  std::memcpy(tokens.data(), g.data(ti), tokens.size() * 4);
  const formats::TensorInfo& li = g.info("logits");
  ASSERT_EQ(li.shape, (std::vector<int64_t>{static_cast<int64_t>(tokens.size()), 512}));
  torch::Tensor ref = torch::empty(li.shape, torch::kFloat64);
  g.read_double(li, ref.data_ptr<double>());

  const Model model = Model::load(test::data_path(kStories));
  torch::Tensor ids = torch::tensor(std::vector<int64_t>(tokens.begin(), tokens.end())).unsqueeze(0);
  const torch::Tensor logits = model.forward(ids)[0];
  const Diff d = diff(logits, ref);
  const double max_rel_elem = ((logits.to(torch::kFloat64) - ref).abs() / (ref.abs() + 1.0)).max().item<double>();
  std::printf("  stories260K fp32 vs float64 NumPy, 128 positions: max abs diff %.3g, max |logit| %.3g, relative %.3g, "
              "max |d|/(1+|ref|) %.3g\n", d.max_abs, d.max_ref, d.rel(), max_rel_elem);
  EXPECT_LT(d.rel(), 1e-5);
  EXPECT_TRUE(torch::equal(logits.argmax(-1), ref.argmax(-1)));
}

TEST(EvalStories260K, Greedy200MatchesLlama2c) {
  RAZERQ_REQUIRE_DATA(kStories);
  RAZERQ_REQUIRE_DATA(kGreedy);
  const Model model = Model::load(test::data_path(kStories));
  // llama2.c `run -t 0 -n 200`: 200 forward steps from BOS (position 0 is BOS itself), each
  // printing the argmax token; stops early on BOS. So 200 generated tokens, BOS not counted.
  KVCache cache;
  std::vector<int> out;
  int64_t token = 1;
  for (int step = 0; step < 200; ++step) {
    const torch::Tensor logits = model.forward(torch::tensor({{token}}), &cache);
    const int64_t next = logits[0][0].argmax().item<int64_t>();
    if (next == 1) break;
    out.push_back(static_cast<int>(next));
    token = next;
  }
  ASSERT_EQ(out.size(), 200u);
  // The cached decode equals a full forward of the same sequence.
  std::vector<int64_t> seq{1};
  seq.insert(seq.end(), out.begin(), out.end() - 1);
  const torch::Tensor full = model.forward(torch::tensor(seq).unsqueeze(0))[0].argmax(-1);
  EXPECT_TRUE(torch::equal(full, torch::tensor(std::vector<int64_t>(out.begin(), out.end()))));

  // Decoded by calib's sentencepiece tokenizer, in this process next to libtorch (through the
  // dlopen'ed shim: calib/NOTES.md).
  const std::unique_ptr<calib::Tokenizer> tok = calib::load_tokenizer(test::data_path(kStories));
  const std::string text = tok->decode(std::vector<int32_t>(out.begin(), out.end()));
  const std::string golden = read_file(test::data_path(kGreedy));
  EXPECT_EQ(text, golden);
  std::printf("  greedy 200 tokens: %zu bytes, golden %zu bytes, %s\n", text.size(), golden.size(),
              text == golden ? "identical" : "DIFFERENT");
}

TEST(EvalStories260K, PerplexityWikitext2Seqlen512) {
  RAZERQ_REQUIRE_DATA(kStories);
  RAZERQ_REQUIRE_DATA(kWikiIds);
  const std::vector<int32_t> ids = read_i32_file(test::data_path(kWikiIds));
  ASSERT_EQ(static_cast<int64_t>(ids.size()), kWikiIdCount);
  ASSERT_EQ(ids[0], 1);  // BOS first
  const Windows win = split_windows(ids, 512);
  ASSERT_EQ(win.size(), 1591u);
  const Model model = Model::load(test::data_path(kStories));
  EvalOptions opt;
  opt.batch_size = 16;
  opt.progress = print_progress;
  const PerplexityResult r = perplexity(model, win, opt);
  std::printf("  stories260K wikitext2/512 fp32: %s; golden %.6f, diff %+.5f %%\n", format_result(r).c_str(), kStoriesWiki512,
              100.0 * (r.ppl / kStoriesWiki512 - 1.0));
  EXPECT_EQ(r.scored_tokens, 1591 * 511);
  EXPECT_NEAR(r.ppl / kStoriesWiki512, 1.0, 5e-4);
  EXPECT_NEAR(r.exact_ppl / kStoriesWiki512, 1.0, 5e-4);
}

// PTB, PTB-new and C4-new at seqlen 512 against the fp32 goldens (the golden file's "c4" is
// GPTQ's c4-new construction: " ".join of the documents, the first 256 x 512 tokens). The text
// is tokenized here by calib's sentencepiece tokenizer (its ids are checked against the golden
// hashes in tests/calib).
TEST(EvalStories260K, PtbPtbNewC4NewSeqlen512MatchGoldens) {
  RAZERQ_REQUIRE_DATA(kStories);
  RAZERQ_REQUIRE_DATA(kStoriesGolden);
  const nlohmann::json golden = read_json_object(test::data_path(kStoriesGolden))["stories260K_ppl"];
  const std::unique_ptr<calib::Tokenizer> tok = calib::load_tokenizer(test::data_path(kStories));
  const Model model = Model::load(test::data_path(kStories));
  for (const auto& [ours, theirs] : {std::pair<const char*, const char*>{"ptb", "ptb"}, {"ptb-new", "ptb-new"}, {"c4-new", "c4"}}) {
    SCOPED_TRACE(ours);
    const calib::EvalSet set = calib::gptq_eval_set(ours, *tok, 512, test::data_dir());
    EvalOptions opt;
    opt.batch_size = 16;
    const PerplexityResult r = perplexity(model, set.windows, opt);
    const nlohmann::json& g = golden[theirs]["float32"];
    std::printf("  stories260K %-8s 512 fp32: %.6f, golden %.6f, diff %+.5f %%\n", ours, r.ppl, g["gptq_ppl"].get<double>(),
                100.0 * (r.ppl / g["gptq_ppl"].get<double>() - 1.0));
    EXPECT_EQ(r.windows, g["nsamples"].get<int64_t>());
    EXPECT_EQ(r.scored_tokens, g["predicted_tokens"].get<int64_t>());
    EXPECT_NEAR(r.ppl / g["gptq_ppl"].get<double>(), 1.0, 5e-4);
  }
}

TEST(EvalStories260K, PackedRazer4LoadsDequantizesAndEvaluates) {
  RAZERQ_REQUIRE_DATA(kStories);
  RAZERQ_REQUIRE_DATA(kWikiIds);
  test::TempDir tmp;
  const std::string out = quantize_packed(test::data_path(kStories), tmp.str("razer4"), quantizer::make_format_config("razer", 4, 128));

  const Model base = Model::load(test::data_path(kStories));
  const Model q = Model::load(out);
  EXPECT_TRUE(q.packed());
  std::printf("  %s\n", q.describe().c_str());

  // Every quantized weight equals kernels::dequantize_to_float of its packed tensor; every
  // other tensor equals the base model's.
  const formats::PackedCheckpoint pc = formats::PackedCheckpoint::open(out);
  int64_t nq = 0;
  for (const formats::TensorRecord& r : pc.tensors()) {
    const torch::Tensor got = q.tensor(r.name);
    if (r.quantized) {
      ++nq;
      const quantizer::QuantizedTensor qt = pc.load_quantized(r.name);
      torch::Tensor want = torch::empty({qt.rows, qt.cols}, torch::kFloat32);
      kernels::dequantize_to_float(qt, want.data_ptr<float>());
      EXPECT_TRUE(torch::equal(got, want)) << r.name;
      EXPECT_FALSE(torch::equal(got, base.tensor(r.name))) << r.name << " was not quantized at all";
    } else {
      EXPECT_TRUE(torch::equal(got, base.tensor(r.name))) << r.name;
    }
  }
  EXPECT_EQ(q.quantized_tensors(), nq);
  EXPECT_EQ(nq, 35);  // 5 layers x (q, k, v, o, gate, up, down); the tied embedding stays

  const std::vector<int32_t> ids = read_i32_file(test::data_path(kWikiIds));
  const Windows win = split_windows(ids, 512);
  EvalOptions opt;
  opt.batch_size = 16;
  const KlResult kl = kl_divergence(base, q, win, opt);
  std::printf("  razer4/g128 vs fp32, wikitext2/512: %s\n", format_result(kl).c_str());
  EXPECT_TRUE(std::isfinite(kl.model.ppl));
  EXPECT_NEAR(kl.base.ppl / kStoriesWiki512, 1.0, 5e-4);
  EXPECT_NEAR(kl.model.ppl / kl.base.ppl, 1.0, 0.05);  // a few per cent (measured +3.2 %)
  // 4 bits hit this 260K-parameter model hard on text it was not trained for (flat
  // distributions, measured KL 0.25 and 66 % top-1 agreement); llama-14m below is the model
  // of the "KL below 0.05" criterion.
  EXPECT_GT(kl.mean_kl, 0.0);
  EXPECT_LT(kl.mean_kl, 0.5);
  EXPECT_GT(kl.top1_agreement, 0.5);
}

TEST(EvalLlama14m, PackedRazer4KlOnFirstWindows) {
  RAZERQ_REQUIRE_DATA(kLlama14m);
  RAZERQ_REQUIRE_DATA(kWikiIds);
  test::TempDir tmp;
  const std::string out = quantize_packed(test::data_path(kLlama14m), tmp.str("razer4"), quantizer::make_format_config("razer", 4, 128));
  const Model base = Model::load(test::data_path(kLlama14m));
  const Model q = Model::load(out);
  EXPECT_EQ(q.quantized_tensors(), 56);  // 8 layers x 7 linears; embeddings and lm_head kept

  const Windows win = split_windows(read_i32_file(test::data_path(kWikiIds)), 2048, 6);  // 6 of the 397 windows
  const KlResult kl = kl_divergence(base, q, win);
  std::printf("  llama-14m razer4/g128 vs fp32, first 6 wikitext2/2048 windows: %s\n", format_result(kl).c_str());
  EXPECT_GT(kl.mean_kl, 0.0);
  EXPECT_LT(kl.mean_kl, 0.05);
  EXPECT_GT(kl.top1_agreement, 0.8);
  EXPECT_NEAR(kl.model.ppl / kl.base.ppl, 1.0, 0.03);
}

TEST(EvalLlama14m, ForwardMatchesFloat64Torch) {
  RAZERQ_REQUIRE_DATA(kLlama14m);
  RAZERQ_REQUIRE_DATA(kWikiIds);
  const std::string dir = test::data_path(kLlama14m);
  const formats::HfCheckpoint ckpt = formats::HfCheckpoint::open(dir);
  Weights w;
  for (const auto& shard : ckpt.shards()) w = read_weights(shard, std::move(w));
  const std::vector<int32_t> ids32 = read_i32_file(test::data_path(kWikiIds));
  const std::vector<int64_t> ids(ids32.begin(), ids32.begin() + 2048);  // the first window

  const Model model = Model::load(dir);
  const torch::Tensor logits = model.forward(torch::tensor(ids).unsqueeze(0))[0];
  const torch::Tensor ref = reference_forward(ckpt.config, w, ids);
  const Diff d = diff(logits, ref);
  // Mean NLL of the window both ways.
  auto nll = [&](const torch::Tensor& lg) {
    torch::Tensor lp = torch::log_softmax(lg.to(torch::kFloat64), -1).narrow(0, 0, 2047);
    return -lp.gather(1, torch::tensor(std::vector<int64_t>(ids.begin() + 1, ids.end())).unsqueeze(1)).mean().item<double>();
  };
  const double n32 = nll(logits), n64 = nll(ref);
  std::printf("  llama-14m window 0 (2048), fp32 vs float64 torch: max abs diff %.3g, max |logit| %.3g, relative %.3g; "
              "mean NLL %.9f vs %.9f\n", d.max_abs, d.max_ref, d.rel(), n32, n64);
  EXPECT_LT(d.rel(), 1e-5);
  EXPECT_NEAR(n32, n64, 1e-5);
}

// The full WikiText-2 set at seqlen 2048 (397 windows): 8.4 minutes here (2 vCPUs, one physical
// core), over the ~5 minutes a default test may take, so it is disabled; run it with
//   test_eval --gtest_also_run_disabled_tests --gtest_filter='EvalLlama14m.DISABLED_*'
// (eval/NOTES.md has its last result). ForwardMatchesFloat64Torch checks the forward meanwhile.
TEST(EvalLlama14m, DISABLED_PerplexityWikitext2Seqlen2048) {
  RAZERQ_REQUIRE_DATA(kLlama14m);
  RAZERQ_REQUIRE_DATA(kWikiIds);
  const std::vector<int32_t> ids = read_i32_file(test::data_path(kWikiIds));
  const Windows win = split_windows(ids, 2048);
  ASSERT_EQ(win.size(), 397u);
  const Model model = Model::load(test::data_path(kLlama14m));
  EvalOptions opt;
  opt.batch_size = 1;
  opt.progress = [](const EvalProgress& p) {
    if (p.windows_done % 50 == 0 || p.windows_done == p.windows_total) print_progress(p);
  };
  const PerplexityResult r = perplexity(model, win, opt);
  std::printf("  llama-14m wikitext2/2048 fp32: %s; golden %.6f, diff %+.5f %%\n", format_result(r).c_str(), kLlama14mWiki2048,
              100.0 * (r.ppl / kLlama14mWiki2048 - 1.0));
  EXPECT_NEAR(r.ppl / kLlama14mWiki2048, 1.0, 5e-4);
}

// Forward throughput on this machine, batch 1 (printed; eval/NOTES.md records it).
TEST(EvalSpeed, ForwardTokensPerSecond) {
  RAZERQ_REQUIRE_DATA(kStories);
  RAZERQ_REQUIRE_DATA(kLlama14m);
  RAZERQ_REQUIRE_DATA(kWikiIds);
  const std::vector<int32_t> ids = read_i32_file(test::data_path(kWikiIds));
  for (const char* m : {kStories, kLlama14m}) {
    const Model model = Model::load(test::data_path(m));
    for (int64_t T : {512, 2048}) {
      torch::Tensor x = torch::tensor(std::vector<int64_t>(ids.begin(), ids.begin() + T)).unsqueeze(0);
      model.forward(x);  // warm-up
      const int reps = T == 512 ? 4 : 2;
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < reps; ++i) EXPECT_EQ(model.forward(x).size(1), T);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
      std::printf("  %-22s fp32 seqlen %4lld batch 1: %.3f s per forward, %.0f tokens/s (torch threads %d)\n", m,
                  static_cast<long long>(T), s, static_cast<double>(T) / s, at::get_num_threads());
    }
  }
}

}  // namespace
}  // namespace razerq::eval
