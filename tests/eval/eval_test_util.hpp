#pragma once
// Helpers of the eval tests: shared-data checks, tiny random models written as Hugging Face
// directories, and an independent float64 reference forward (plain per-head loops in torch
// double, written from the transformers model definitions, sharing no code with eval/).
#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "formats/quantize_model.hpp"
#include "formats/safetensors.hpp"
#include "tests/formats/pack_test_util.hpp"
#include "tests/test_util.hpp"

namespace razerq::eval::testing {

using nlohmann::json;
using Weights = std::map<std::string, torch::Tensor>;  // float64, CPU
using Shapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

// Paths under the data directory shared by the eval test files.
inline constexpr const char* kStories = "models/stories260K/hf";
inline constexpr const char* kLlama14m = "models/llama-14m";
inline constexpr const char* kGreedy = "golden/stories260K_greedy200.txt";

inline bool have_data(const std::string& rel) { return std::filesystem::exists(test::data_path(rel)); }

#define RAZERQ_REQUIRE_DATA(rel)                                                                  \
  do {                                                                                           \
    if (!::razerq::eval::testing::have_data(rel))                                                \
      GTEST_SKIP() << "no test data at " << ::razerq::test::data_path(rel)                       \
                   << " (../shared/data is missing; set RAZERQ_DATA to a copy)";                 \
  } while (0)

// Quantizes the HF directory `model_dir` into a packed checkpoint `out_dir` (no source
// checksums, no progress output); returns out_dir.
using razerq::test::quantize_packed;

inline std::vector<int32_t> read_i32_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(0, std::ios::end);
  const auto n = static_cast<size_t>(in.tellg());
  in.seekg(0);
  std::vector<int32_t> v(n / 4);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  return v;
}

inline int64_t jint(const json& j, const char* k, int64_t def) {
  return j.contains(k) && !j[k].is_null() ? j[k].get<int64_t>() : def;
}
inline bool jbool(const json& j, const char* k, bool def) { return j.contains(k) && !j[k].is_null() ? j[k].get<bool>() : def; }

// Every tensor a config needs, with its shape (the naming of transformers' checkpoints).
inline Shapes model_shapes(const json& c) {
  Shapes s;
  const int64_t V = c["vocab_size"], H = c["hidden_size"], L = c["num_hidden_layers"], nh = c["num_attention_heads"];
  if (c["model_type"] == "opt") {
    const int64_t F = c["ffn_dim"], E = jint(c, "word_embed_proj_dim", H), P = c["max_position_embeddings"];
    const bool pre = jbool(c, "do_layer_norm_before", true);
    s.push_back({"model.decoder.embed_tokens.weight", {V, E}});
    s.push_back({"model.decoder.embed_positions.weight", {P + 2, H}});
    if (E != H) {
      s.push_back({"model.decoder.project_in.weight", {H, E}});
      s.push_back({"model.decoder.project_out.weight", {E, H}});
    }
    for (int64_t l = 0; l < L; ++l) {
      const std::string p = "model.decoder.layers." + std::to_string(l) + ".";
      for (const char* n : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"}) {
        s.push_back({p + n + ".weight", {H, H}});
        s.push_back({p + n + ".bias", {H}});
      }
      s.push_back({p + "self_attn_layer_norm.weight", {H}});
      s.push_back({p + "self_attn_layer_norm.bias", {H}});
      s.push_back({p + "fc1.weight", {F, H}});
      s.push_back({p + "fc1.bias", {F}});
      s.push_back({p + "fc2.weight", {H, F}});
      s.push_back({p + "fc2.bias", {H}});
      s.push_back({p + "final_layer_norm.weight", {H}});
      s.push_back({p + "final_layer_norm.bias", {H}});
    }
    if (pre) {
      s.push_back({"model.decoder.final_layer_norm.weight", {H}});
      s.push_back({"model.decoder.final_layer_norm.bias", {H}});
    }
    if (!jbool(c, "tie_word_embeddings", true)) s.push_back({"lm_head.weight", {V, E}});
    return s;
  }
  const int64_t F = c["intermediate_size"], nkv = jint(c, "num_key_value_heads", nh), hd = jint(c, "head_dim", H / nh);
  const bool qkvb = c["model_type"] == "qwen2" || jbool(c, "attention_bias", false);
  const bool ob = c["model_type"] != "qwen2" && jbool(c, "attention_bias", false);
  const bool mb = jbool(c, "mlp_bias", false);
  s.push_back({"model.embed_tokens.weight", {V, H}});
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    s.push_back({p + "input_layernorm.weight", {H}});
    s.push_back({p + "self_attn.q_proj.weight", {nh * hd, H}});
    s.push_back({p + "self_attn.k_proj.weight", {nkv * hd, H}});
    s.push_back({p + "self_attn.v_proj.weight", {nkv * hd, H}});
    if (qkvb) {
      s.push_back({p + "self_attn.q_proj.bias", {nh * hd}});
      s.push_back({p + "self_attn.k_proj.bias", {nkv * hd}});
      s.push_back({p + "self_attn.v_proj.bias", {nkv * hd}});
    }
    s.push_back({p + "self_attn.o_proj.weight", {H, nh * hd}});
    if (ob) s.push_back({p + "self_attn.o_proj.bias", {H}});
    s.push_back({p + "post_attention_layernorm.weight", {H}});
    s.push_back({p + "mlp.gate_proj.weight", {F, H}});
    s.push_back({p + "mlp.up_proj.weight", {F, H}});
    s.push_back({p + "mlp.down_proj.weight", {H, F}});
    if (mb) {
      s.push_back({p + "mlp.gate_proj.bias", {F}});
      s.push_back({p + "mlp.up_proj.bias", {F}});
      s.push_back({p + "mlp.down_proj.bias", {H}});
    }
  }
  s.push_back({"model.norm.weight", {H}});
  if (!jbool(c, "tie_word_embeddings", false)) s.push_back({"lm_head.weight", {V, H}});
  return s;
}

// Writes dir/config.json and dir/model.safetensors (F32, random weights of sensible scale:
// matrices N(0, 1/in), norm weights 1 + N(0, 0.1), biases N(0, 0.1), embeddings N(0, 1)).
// `drop` leaves one tensor out; `reshape` writes one tensor with another shape. Returns the
// weights as float64 (the float32 values written, exactly).
inline Weights write_model(const std::string& dir, const json& cfg, uint32_t seed, const std::string& drop = "",
                           const std::pair<std::string, std::vector<int64_t>>& reshape = {}) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << cfg.dump(2);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Weights w;
  formats::SafetensorsWriter writer(dir + "/model.safetensors");
  for (auto [name, shape] : model_shapes(cfg)) {
    if (name == drop) continue;
    if (name == reshape.first) shape = reshape.second;
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    const bool norm = name.find("norm") != std::string::npos && name.find(".weight") != std::string::npos;
    const bool bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    const bool emb = name.find("embed_") != std::string::npos;
    const float sd = norm || bias ? 0.1f : emb ? 1.0f : 1.0f / std::sqrt(static_cast<float>(shape.back()));
    for (float& x : v) x = (norm ? 1.0f : 0.0f) + sd * nd(rng);
    writer.add(name, formats::DType::kF32, shape, v.data(), v.size() * 4);
    w[name] = torch::from_blob(v.data(), shape, torch::kFloat32).to(torch::kFloat64).clone();
  }
  writer.finish();
  return w;
}

// Weights of a Hugging Face directory as float64.
inline Weights read_weights(const formats::SafetensorsFile& f, Weights w = {}) {
  for (const auto& t : f.tensors()) {
    torch::Tensor d = torch::empty(t.shape, torch::kFloat64);
    f.read_double(t, d.data_ptr<double>());
    w[t.name] = d;
  }
  return w;
}

// The float64 reference forward of one sequence: ids [T] -> logits [T, V] (CPU, float64).
// LLaMA family: rotate_half RoPE (default or linear scaling), RMSNorm, SiLU-gated MLP, GQA,
// optional sliding window. OPT: learned positions (offset 2), LayerNorm, ReLU/GELU.
inline torch::Tensor reference_forward(const json& c, const Weights& W, const std::vector<int64_t>& ids) {
  using torch::indexing::Slice;
  const auto d64 = torch::TensorOptions().dtype(torch::kFloat64);
  const int64_t T = static_cast<int64_t>(ids.size());
  const int64_t H = c["hidden_size"], L = c["num_hidden_layers"], nh = c["num_attention_heads"];
  const bool opt = c["model_type"] == "opt";
  const int64_t nkv = opt ? nh : jint(c, "num_key_value_heads", nh);
  const int64_t hd = opt ? H / nh : jint(c, "head_dim", H / nh);
  auto at = [&](const std::string& n) -> const torch::Tensor& { return W.at(n); };
  auto has = [&](const std::string& n) { return W.count(n) != 0; };
  auto lin = [&](const torch::Tensor& x, const std::string& p) {
    torch::Tensor y = torch::matmul(x, at(p + ".weight").t());
    if (has(p + ".bias")) y = y + at(p + ".bias");
    return y;
  };
  torch::Tensor idt = torch::tensor(ids, torch::kLong);
  // Causal (and sliding-window) mask in float64: 0 or -inf, [T, T].
  auto mask = [&](int64_t window) {
    torch::Tensor m = torch::zeros({T, T}, d64);
    auto a = m.accessor<double, 2>();
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j < T; ++j)
        if (j > i || (window > 0 && i - j >= window)) a[i][j] = -INFINITY;
    return m;
  };
  auto attend = [&](const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& m,
                    double scale) {
    torch::Tensor out = torch::zeros({T, nh * hd}, d64);
    for (int64_t h = 0; h < nh; ++h) {
      const int64_t kh = h / (nh / nkv);
      torch::Tensor qh = q.index({Slice(), Slice(h * hd, (h + 1) * hd)});
      torch::Tensor kk = k.index({Slice(), Slice(kh * hd, (kh + 1) * hd)});
      torch::Tensor vv = v.index({Slice(), Slice(kh * hd, (kh + 1) * hd)});
      torch::Tensor s = torch::matmul(qh, kk.t()) * scale + m;
      s = s - std::get<0>(s.max(1, true));
      torch::Tensor p = s.exp();
      p = p / p.sum(1, true);
      out.index_put_({Slice(), Slice(h * hd, (h + 1) * hd)}, torch::matmul(p, vv));
    }
    return out;
  };

  if (!opt) {
    const double eps = c.contains("rms_norm_eps") ? c["rms_norm_eps"].get<double>() : 1e-6;
    double theta = c.contains("rope_theta") ? c["rope_theta"].get<double>() : 10000.0;
    if (c.contains("rope_parameters") && c["rope_parameters"].contains("rope_theta"))
      theta = c["rope_parameters"]["rope_theta"].get<double>();
    double lin_factor = 1.0;
    if (c.contains("rope_scaling") && c["rope_scaling"].is_object()) lin_factor = c["rope_scaling"]["factor"].get<double>();
    int64_t window = 0;
    if (c["model_type"] == "mistral" && c.contains("sliding_window") && !c["sliding_window"].is_null())
      window = c["sliding_window"];
    // cos/sin of position t and frequency i: angle t * theta^(-2i/hd) / factor.
    torch::Tensor cs = torch::empty({T, hd / 2}, d64), sn = torch::empty({T, hd / 2}, d64);
    auto ca = cs.accessor<double, 2>(), sa = sn.accessor<double, 2>();
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < hd / 2; ++i) {
        const double ang = static_cast<double>(t) * std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(hd)) / lin_factor;
        ca[t][i] = std::cos(ang);
        sa[t][i] = std::sin(ang);
      }
    // rotate_half convention: (x1, x2) -> (x1 c - x2 s, x2 c + x1 s) on the two halves of each head.
    auto rope = [&](const torch::Tensor& x, int64_t heads) {
      torch::Tensor y = x.clone();
      for (int64_t h = 0; h < heads; ++h) {
        torch::Tensor x1 = x.index({Slice(), Slice(h * hd, h * hd + hd / 2)});
        torch::Tensor x2 = x.index({Slice(), Slice(h * hd + hd / 2, (h + 1) * hd)});
        y.index_put_({Slice(), Slice(h * hd, h * hd + hd / 2)}, x1 * cs - x2 * sn);
        y.index_put_({Slice(), Slice(h * hd + hd / 2, (h + 1) * hd)}, x2 * cs + x1 * sn);
      }
      return y;
    };
    auto rms = [&](const torch::Tensor& x, const std::string& n) {
      return x / torch::sqrt((x * x).mean(1, true) + eps) * at(n);
    };
    const torch::Tensor m = mask(window);
    torch::Tensor x = at("model.embed_tokens.weight").index_select(0, idt);
    for (int64_t l = 0; l < L; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      torch::Tensor a = rms(x, p + "input_layernorm.weight");
      torch::Tensor q = rope(lin(a, p + "self_attn.q_proj"), nh);
      torch::Tensor k = rope(lin(a, p + "self_attn.k_proj"), nkv);
      torch::Tensor v = lin(a, p + "self_attn.v_proj");
      x = x + lin(attend(q, k, v, m, 1.0 / std::sqrt(static_cast<double>(hd))), p + "self_attn.o_proj");
      torch::Tensor b = rms(x, p + "post_attention_layernorm.weight");
      torch::Tensor g = lin(b, p + "mlp.gate_proj");
      x = x + lin(g / (1.0 + torch::exp(-g)) * lin(b, p + "mlp.up_proj"), p + "mlp.down_proj");
    }
    x = rms(x, "model.norm.weight");
    const bool tied = jbool(c, "tie_word_embeddings", false);
    return torch::matmul(x, at(tied ? "model.embed_tokens.weight" : "lm_head.weight").t());
  }

  // OPT
  const std::string d = "model.decoder.";
  const bool pre = jbool(c, "do_layer_norm_before", true);
  const bool gelu = c.contains("activation_function") && c["activation_function"] == "gelu";
  auto ln = [&](const torch::Tensor& x, const std::string& n) {
    torch::Tensor mu = x.mean(1, true);
    torch::Tensor var = ((x - mu) * (x - mu)).mean(1, true);
    return (x - mu) / torch::sqrt(var + 1e-5) * at(n + ".weight") + at(n + ".bias");
  };
  torch::Tensor x = at(d + "embed_tokens.weight").index_select(0, idt);
  if (has(d + "project_in.weight")) x = lin(x, d + "project_in");
  // transformers: positions = cumsum(attention_mask) - 1, rows offset by 2.
  x = x + at(d + "embed_positions.weight").index_select(0, torch::ones({T}, torch::kLong).cumsum(0) - 1 + 2);
  const torch::Tensor m = mask(0);
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = d + "layers." + std::to_string(l) + ".";
    torch::Tensor a = pre ? ln(x, p + "self_attn_layer_norm") : x;
    torch::Tensor q = lin(a, p + "self_attn.q_proj");
    x = x + lin(attend(q, lin(a, p + "self_attn.k_proj"), lin(a, p + "self_attn.v_proj"), m,
                       1.0 / std::sqrt(static_cast<double>(hd))),
                p + "self_attn.out_proj");
    if (!pre) x = ln(x, p + "self_attn_layer_norm");
    torch::Tensor f = lin(pre ? ln(x, p + "final_layer_norm") : x, p + "fc1");
    f = gelu ? 0.5 * f * (1.0 + torch::erf(f / std::sqrt(2.0))) : f.clamp_min(0.0);
    x = x + lin(f, p + "fc2");
    if (!pre) x = ln(x, p + "final_layer_norm");
  }
  if (pre) x = ln(x, d + "final_layer_norm");
  if (has(d + "project_out.weight")) x = lin(x, d + "project_out");
  const bool tied = jbool(c, "tie_word_embeddings", true);
  return torch::matmul(x, at(tied ? d + "embed_tokens.weight" : "lm_head.weight").t());
}

struct Diff {
  double max_abs = 0;  // max |a - b|
  double max_ref = 0;  // max |b|
  double rel() const { return max_ref > 0 ? max_abs / max_ref : max_abs; }
};
inline Diff diff(const torch::Tensor& a, const torch::Tensor& b) {
  torch::Tensor a64 = a.to(torch::kFloat64).cpu(), b64 = b.to(torch::kFloat64).cpu();
  Diff d;
  d.max_abs = (a64 - b64).abs().max().item<double>();
  d.max_ref = b64.abs().max().item<double>();
  return d;
}

// Tiny LLaMA-family configurations for write_model (test_eval_synthetic, test_eval_decode).
inline json qwen2_gqa() {  // GQA 3:1, q/k/v biases, tied, rope_theta 1e6
  return json{{"model_type", "qwen2"},   {"vocab_size", 96},           {"hidden_size", 48},
              {"intermediate_size", 80}, {"num_hidden_layers", 2},     {"num_attention_heads", 6},
              {"num_key_value_heads", 2}, {"max_position_embeddings", 64}, {"rms_norm_eps", 1e-6},
              {"rope_theta", 1000000.0}, {"tie_word_embeddings", true}, {"use_sliding_window", false}};
}
inline json llama_mqa() {  // MQA, head_dim != hidden / heads, all biases, linear rope scaling, untied
  return json{{"model_type", "llama"},   {"vocab_size", 70},        {"hidden_size", 40},
              {"intermediate_size", 56}, {"num_hidden_layers", 2},  {"num_attention_heads", 4},
              {"num_key_value_heads", 1}, {"head_dim", 12},         {"max_position_embeddings", 64},
              {"rms_norm_eps", 1e-5},    {"rope_theta", 10000.0},   {"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}},
              {"attention_bias", true},  {"mlp_bias", true},        {"tie_word_embeddings", false}};
}
inline json mistral_window() {  // sliding window 5 < sequence length
  return json{{"model_type", "mistral"}, {"vocab_size", 64},        {"hidden_size", 32},
              {"intermediate_size", 48}, {"num_hidden_layers", 2},  {"num_attention_heads", 4},
              {"num_key_value_heads", 2}, {"max_position_embeddings", 64}, {"rms_norm_eps", 1e-5},
              {"sliding_window", 5},     {"tie_word_embeddings", false}};
}
}  // namespace razerq::eval::testing
