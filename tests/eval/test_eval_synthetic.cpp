// eval::Model on tiny random models of every supported architecture, against the float64
// reference of eval_test_util.hpp; the KV cache against the full forward; dtypes; the error
// paths. Needs no shared data.
#include <gtest/gtest.h>
#include <torch/types.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "eval/model.hpp"
#include "eval/perplexity.hpp"
#include "tests/eval/eval_test_util.hpp"

namespace razerq::eval {
namespace {

using namespace razerq::eval::testing;

json opt_project() {  // pre-LN, word_embed_proj_dim != hidden (project_in/out), tied
  return json{{"model_type", "opt"},       {"vocab_size", 80},          {"hidden_size", 32},
              {"ffn_dim", 64},             {"num_hidden_layers", 2},    {"num_attention_heads", 4},
              {"max_position_embeddings", 40}, {"word_embed_proj_dim", 24}, {"do_layer_norm_before", true},
              {"activation_function", "relu"}};
}
json opt_post_ln() {  // post-LN (opt-350m style, no final layer norm), GELU, untied
  return json{{"model_type", "opt"},       {"vocab_size", 72},          {"hidden_size", 32},
              {"ffn_dim", 48},             {"num_hidden_layers", 2},    {"num_attention_heads", 2},
              {"max_position_embeddings", 40}, {"do_layer_norm_before", false},
              {"activation_function", "gelu"}, {"tie_word_embeddings", false}};
}

std::vector<int64_t> random_ids(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<int64_t>(rng() % static_cast<uint32_t>(vocab));
  return v;
}

struct Case {
  const char* name;
  json (*cfg)();
};
const Case kCases[] = {{"qwen2_gqa", qwen2_gqa},
                       {"llama_mqa", llama_mqa},
                       {"mistral_window", mistral_window},
                       {"opt_project", opt_project},
                       {"opt_post_ln", opt_post_ln}};

class EvalSynthetic : public ::testing::TestWithParam<Case> {};

TEST_P(EvalSynthetic, LogitsMatchFloat64Reference) {
  test::TempDir tmp;
  const json cfg = GetParam().cfg();
  const Weights w = write_model(tmp.str("m"), cfg, 7);
  const Model model = Model::load(tmp.str("m"));
  const int64_t T = 19, V = cfg["vocab_size"];
  const std::vector<int64_t> a = random_ids(T, V, 1), b = random_ids(T, V, 2);
  torch::Tensor ids = torch::stack({torch::tensor(a), torch::tensor(b)});  // batch of 2
  torch::Tensor logits = model.forward(ids);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{2, T, V}));
  ASSERT_EQ(logits.scalar_type(), torch::kFloat32);
  for (int bi = 0; bi < 2; ++bi) {
    const Diff d = diff(logits[bi], reference_forward(cfg, w, bi == 0 ? a : b));
    EXPECT_LT(d.rel(), 2e-6) << GetParam().name << " seq " << bi << ": max abs " << d.max_abs << " of " << d.max_ref;
  }
}

// The calibration API: embed -> layer(i) -> head equals forward bit for bit; the hook sees every
// linear of a block, in layer_linears order, with its input; set_tensor changes the forward and
// restoring the weight restores it exactly.
TEST_P(EvalSynthetic, PiecesHooksAndSetTensor) {
  test::TempDir tmp;
  const json cfg = GetParam().cfg();
  write_model(tmp.str("m"), cfg, 5);
  Model model = Model::load(tmp.str("m"));
  const int64_t T = 13;
  torch::Tensor ids = torch::stack({torch::tensor(random_ids(T, cfg["vocab_size"], 8)),
                                    torch::tensor(random_ids(T, cfg["vocab_size"], 9))});
  const torch::Tensor full = model.forward(ids);
  torch::Tensor h = model.embed(ids);
  std::vector<std::string> seen;
  for (int64_t i = 0; i < model.num_layers(); ++i) {
    seen.clear();
    h = model.layer(i, h, [&](const std::string& name, const torch::Tensor& x) {
      seen.push_back(name);
      EXPECT_EQ(x.dim(), 3);
      EXPECT_EQ(x.size(0), 2);
      EXPECT_EQ(x.size(1), T);
      EXPECT_EQ(x.size(2), model.tensor(name + ".weight").size(1)) << name;
    });
    EXPECT_EQ(seen, model.layer_linears(i)) << "layer " << i;
  }
  EXPECT_TRUE(torch::equal(model.head(h), full)) << GetParam().name;

  const std::string w = model.layer_linears(0).back() + ".weight";
  const torch::Tensor orig = model.tensor(w).clone();
  model.set_tensor(w, torch::zeros_like(orig));
  EXPECT_FALSE(torch::equal(model.forward(ids), full));
  model.set_tensor(w, orig);
  EXPECT_TRUE(torch::equal(model.forward(ids), full));
  EXPECT_EQ(test::catch_error([&] { model.set_tensor(w, torch::zeros({3, 3})); }).kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(test::catch_error([&] { model.set_tensor("nope.weight", orig); }).kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(test::catch_error([&] { model.layer(model.num_layers(), h); }).kind(), ErrorKind::kInvalidArgument);
}

TEST_P(EvalSynthetic, KvCacheEqualsFullForward) {
  test::TempDir tmp;
  const json cfg = GetParam().cfg();
  write_model(tmp.str("m"), cfg, 11);
  const Model model = Model::load(tmp.str("m"));
  const int64_t T = 17;
  torch::Tensor ids = torch::stack({torch::tensor(random_ids(T, cfg["vocab_size"], 3)),
                                    torch::tensor(random_ids(T, cfg["vocab_size"], 4))});
  const torch::Tensor full = model.forward(ids);
  KVCache cache;
  std::vector<torch::Tensor> parts;
  using torch::indexing::Slice;
  parts.push_back(model.forward(ids.index({Slice(), Slice(0, 7)}), &cache));  // a prefix,
  parts.push_back(model.forward(ids.index({Slice(), Slice(7, 10)}), &cache));  // a chunk,
  for (int64_t t = 10; t < T; ++t) parts.push_back(model.forward(ids.index({Slice(), Slice(t, t + 1)}), &cache));  // then one by one
  EXPECT_EQ(cache.length, T);
  const Diff d = diff(torch::cat(parts, 1), full);
  EXPECT_LT(d.rel(), 1e-6) << GetParam().name << ": max abs " << d.max_abs;
}

TEST_P(EvalSynthetic, HalfPrecisionDtypesCloseToFloat32) {
  test::TempDir tmp;
  const json cfg = GetParam().cfg();
  write_model(tmp.str("m"), cfg, 5);
  const Model f32 = Model::load(tmp.str("m"));
  torch::Tensor ids = torch::tensor(random_ids(13, cfg["vocab_size"], 9)).unsqueeze(0);
  const torch::Tensor ref = f32.forward(ids);
  for (torch::ScalarType dt : {torch::kBFloat16, torch::kFloat16}) {
    ModelOptions o;
    o.dtype = dt;
    const Model m = Model::load(tmp.str("m"), o);
    EXPECT_EQ(m.tensor(m.tensor_names()[0]).scalar_type(), dt);
    torch::Tensor out;
    try {
      out = m.forward(ids);
    } catch (const Error& e) {
      // libtorch 1.13 has no CPU matmul for float16 (2.x has): note it, do not fail.
      if (dt == torch::kFloat16 && std::string(e.what()).find("Half") != std::string::npos) {
        std::printf("  [%s] float16 forward not available on this libtorch CPU: %s\n", GetParam().name, e.what());
        continue;
      }
      throw;
    }
    EXPECT_EQ(out.scalar_type(), torch::kFloat32);
    const Diff d = diff(out, ref);
    const double tol = dt == torch::kBFloat16 ? 0.06 : 0.01;
    EXPECT_LT(d.rel(), tol) << GetParam().name << " " << dtype_label(dt) << ": max abs " << d.max_abs << " of " << d.max_ref;
    std::printf("  [%s] %s vs float32: max abs %.3g (rel %.3g)\n", GetParam().name, dtype_label(dt), d.max_abs, d.rel());
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, EvalSynthetic, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

// ---- perplexity bookkeeping on a tiny model ---------------------------------------------------

TEST(EvalPerplexity, ConventionsAndBatching) {
  test::TempDir tmp;
  const json cfg = qwen2_gqa();
  const Weights w = write_model(tmp.str("m"), cfg, 21);
  const Model model = Model::load(tmp.str("m"));
  std::vector<int32_t> ids;
  for (int64_t x : random_ids(16 * 7 + 5, cfg["vocab_size"], 8)) ids.push_back(static_cast<int32_t>(x));
  const Windows win = split_windows(ids, 16);
  ASSERT_EQ(win.size(), 7u);

  // Expected from the float64 reference: per window, NLL of tokens 1..15 given the prefix.
  double total = 0, gptq = 0, total_half = 0;
  for (const auto& wv : win) {
    std::vector<int64_t> w64(wv.begin(), wv.end());
    torch::Tensor lp = torch::log_softmax(reference_forward(cfg, w, w64), 1);
    double s = 0, s_half = 0;
    for (int64_t t = 0; t + 1 < 16; ++t) {
      const double nll = -lp[t][w64[static_cast<size_t>(t + 1)]].item<double>();
      s += nll;
      if (t >= 8) s_half += nll;
    }
    total += s;
    gptq += s / 15.0 * 16.0;
    total_half += s_half;
  }
  int calls = 0;
  EvalOptions opt;
  opt.batch_size = 3;  // 7 windows: batches of 3, 3, 1
  opt.progress = [&](const EvalProgress& p) {
    ++calls;
    EXPECT_LE(p.windows_done, p.windows_total);
    EXPECT_GE(p.eta_seconds, 0.0);
  };
  const PerplexityResult r = perplexity(model, win, opt);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(r.windows, 7);
  EXPECT_EQ(r.scored_tokens, 7 * 15);
  EXPECT_NEAR(r.total_nll / total, 1.0, 1e-6);
  EXPECT_NEAR(r.ppl / std::exp(gptq / (7.0 * 16.0)), 1.0, 1e-6);
  EXPECT_NEAR(r.exact_ppl / std::exp(total / (7.0 * 15.0)), 1.0, 1e-6);

  EvalOptions one;  // batch 1 gives the same numbers
  const PerplexityResult r1 = perplexity(model, win, one);
  EXPECT_NEAR(r1.total_nll / r.total_nll, 1.0, 1e-6);

  EvalOptions half;  // llama.cpp: score from position n_ctx / 2
  half.first_scored = 8;
  const PerplexityResult rh = perplexity(model, win, half);
  EXPECT_EQ(rh.scored_tokens, 7 * 7);
  EXPECT_NEAR(rh.exact_ppl / std::exp(total_half / 49.0), 1.0, 1e-6);

  // KL of a model against itself: 0, full agreement, equal perplexities.
  const KlResult kl = kl_divergence(model, model, win, opt);
  EXPECT_NEAR(kl.mean_kl, 0.0, 1e-7);
  EXPECT_DOUBLE_EQ(kl.top1_agreement, 1.0);
  EXPECT_NEAR(kl.base.ppl / r.ppl, 1.0, 1e-6);  // log_softmax vs logsumexp: float32 rounding
  EXPECT_NEAR(kl.model.ppl / r.ppl, 1.0, 1e-6);

  // ... and against another model: KL > 0 equals the float64 reference's mean KL.
  const Weights w2 = write_model(tmp.str("m2"), cfg, 22);
  const Model other = Model::load(tmp.str("m2"));
  const KlResult kl2 = kl_divergence(model, other, win, opt);
  double ref_kl = 0;
  for (const auto& wv : win) {
    std::vector<int64_t> w64(wv.begin(), wv.end());
    torch::Tensor p = torch::log_softmax(reference_forward(cfg, w, w64), 1).narrow(0, 0, 15);
    torch::Tensor q = torch::log_softmax(reference_forward(cfg, w2, w64), 1).narrow(0, 0, 15);
    ref_kl += (p.exp() * (p - q)).sum().item<double>();
  }
  ref_kl /= 7.0 * 15.0;
  EXPECT_GT(kl2.mean_kl, 0.0);
  EXPECT_NEAR(kl2.mean_kl / ref_kl, 1.0, 1e-5) << format_result(kl2);
  EXPECT_LT(kl2.top1_agreement, 1.0);
}

TEST(EvalPerplexity, BadWindows) {
  test::TempDir tmp;
  write_model(tmp.str("m"), qwen2_gqa(), 1);
  const Model model = Model::load(tmp.str("m"));
  auto kind = [&](const Windows& w, const EvalOptions& o) {
    try {
      perplexity(model, w, o);
    } catch (const Error& e) {
      return e.kind();
    }
    return ErrorKind::kInternal;
  };
  EXPECT_EQ(kind({}, {}), ErrorKind::kInvalidArgument);
  EXPECT_EQ(kind({{1, 2, 3}, {1, 2}}, {}), ErrorKind::kInvalidArgument);
  EvalOptions o;
  o.first_scored = 2;
  EXPECT_EQ(kind({{1, 2, 3}}, o), ErrorKind::kInvalidArgument);
  EXPECT_EQ(kind({{1, 2, 500}}, {}), ErrorKind::kInvalidArgument);  // id outside the vocabulary
}

// ---- error paths ----------------------------------------------------------------------------

// Loads dir and returns the error (kind, message); fails the test when it loads.
std::pair<ErrorKind, std::string> load_error(const std::string& dir) {
  try {
    Model::load(dir);
  } catch (const Error& e) {
    return {e.kind(), e.what()};
  }
  ADD_FAILURE() << dir << " loaded";
  return {ErrorKind::kInternal, ""};
}

TEST(EvalModelErrors, UnknownModelType) {
  test::TempDir tmp;
  json cfg = qwen2_gqa();
  write_model(tmp.str("m"), cfg, 1);
  cfg["model_type"] = "gpt2";
  std::ofstream(tmp.str("m/config.json")) << cfg.dump();
  const auto [kind, msg] = load_error(tmp.str("m"));
  EXPECT_EQ(kind, ErrorKind::kUnsupported);
  EXPECT_NE(msg.find("\"gpt2\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("llama, mistral, qwen2, opt"), std::string::npos) << msg;
}

TEST(EvalModelErrors, UnsupportedRopeScaling) {
  test::TempDir tmp;
  json cfg = llama_mqa();
  cfg["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
  write_model(tmp.str("m"), cfg, 1);
  const auto [kind, msg] = load_error(tmp.str("m"));
  EXPECT_EQ(kind, ErrorKind::kUnsupported);
  EXPECT_NE(msg.find("default, linear, llama3"), std::string::npos) << msg;
}

TEST(EvalModelErrors, MissingTensorNamesItAndItsShape) {
  test::TempDir tmp;
  write_model(tmp.str("m"), llama_mqa(), 1, "model.layers.1.mlp.up_proj.weight");
  const auto [kind, msg] = load_error(tmp.str("m"));
  EXPECT_EQ(kind, ErrorKind::kMalformedInput);
  EXPECT_NE(msg.find("'model.layers.1.mlp.up_proj.weight' is missing"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[56, 40]"), std::string::npos) << msg;

  test::TempDir tmp2;  // a missing bias that the config asks for (qwen2 q/k/v)
  write_model(tmp2.str("m"), qwen2_gqa(), 1, "model.layers.0.self_attn.k_proj.bias");
  const auto [kind2, msg2] = load_error(tmp2.str("m"));
  EXPECT_EQ(kind2, ErrorKind::kMalformedInput);
  EXPECT_NE(msg2.find("k_proj.bias"), std::string::npos) << msg2;

  test::TempDir tmp3;  // untied model without lm_head
  write_model(tmp3.str("m"), opt_post_ln(), 1, "lm_head.weight");
  const auto [kind3, msg3] = load_error(tmp3.str("m"));
  EXPECT_NE(msg3.find("'lm_head.weight' is missing"), std::string::npos) << msg3;
}

TEST(EvalModelErrors, WrongShapeNamesExpected) {
  test::TempDir tmp;
  write_model(tmp.str("m"), qwen2_gqa(), 1, "", {"model.layers.0.self_attn.k_proj.weight", {48, 48}});
  const auto [kind, msg] = load_error(tmp.str("m"));
  EXPECT_EQ(kind, ErrorKind::kMalformedInput);
  EXPECT_NE(msg.find("k_proj.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("shape [48, 48] (expected [16, 48]"), std::string::npos) << msg;
}

TEST(EvalModelErrors, BadForwardInput) {
  test::TempDir tmp;
  write_model(tmp.str("m"), opt_project(), 1);
  const Model model = Model::load(tmp.str("m"));
  auto kind = [&](const torch::Tensor& ids) {
    try {
      model.forward(ids);
    } catch (const Error& e) {
      return e.kind();
    }
    return ErrorKind::kInternal;
  };
  EXPECT_EQ(kind(torch::tensor({1, 2, 3})), ErrorKind::kInvalidArgument);                    // 1-D
  EXPECT_EQ(kind(torch::tensor({{1, 80}})), ErrorKind::kInvalidArgument);                    // id == vocab
  EXPECT_EQ(kind(torch::tensor({{1.0, 2.0}})), ErrorKind::kInvalidArgument);                 // not integers
  EXPECT_EQ(kind(torch::zeros({1, 41}, torch::kLong)), ErrorKind::kInvalidArgument);         // > max positions (OPT)
  EXPECT_EQ(model.forward(torch::zeros({1, 40}, torch::kInt)).size(1), 40);                  // int32 ids are fine
}

TEST(EvalModelErrors, BadOptions) {
  EXPECT_THROW(parse_dtype("fp8"), Error);
  EXPECT_EQ(parse_dtype("bf16"), torch::kBFloat16);
  EXPECT_EQ(parse_device("cpu").type(), torch::kCPU);
  EXPECT_THROW(parse_device("tpu"), Error);
  test::TempDir tmp;
  write_model(tmp.str("m"), qwen2_gqa(), 1);
  ModelOptions o;
  o.dtype = torch::kFloat64;
  EXPECT_THROW(Model::load(tmp.str("m"), o), Error);
}

}  // namespace
}  // namespace razerq::eval
