#include "calib/rotation.hpp"

#include <random>

#include "common/error.hpp"
#include "eval/model_config.hpp"
#include "quantizer/hadamard.hpp"

namespace razerq::calib {

namespace {

using Mat = std::vector<double>;  // row-major

class MemorySource final : public eval::WeightSource {
 public:
  explicit MemorySource(const FloatModel& m) : m_(m) {}
  const std::string& dir() const override { return m_.dir; }
  const nlohmann::json& config() const override { return m_.config; }
  bool packed() const override { return false; }
  bool has(const std::string& name) const override { return m_.tensors.count(name) > 0; }
  std::vector<int64_t> shape(const std::string& name) const override { return get(name).shape; }
  std::string stored_dtype(const std::string&) const override { return "F32"; }
  bool quantized(const std::string&) const override { return false; }
  std::string file_of(const std::string&) const override { return m_.dir + " (in memory)"; }
  void read_float(const std::string& name, float* out, int) const override {
    const auto& t = get(name);
    std::copy(t.data.begin(), t.data.end(), out);
  }
  const void* raw(const std::string& name, std::string* dtype) const override {
    *dtype = "F32";
    return get(name).data.data();
  }
  quantizer::QuantizedTensor load_quantized(const std::string& name) const override {
    throw_error(ErrorKind::kInvalidArgument, m_.dir + ": tensor '" + name + "'", "is not quantized (an in-memory model)");
  }
  std::vector<std::string> names() const override { return m_.names; }

 private:
  const formats::FloatTensor& get(const std::string& name) const {
    auto it = m_.tensors.find(name);
    if (it == m_.tensors.end()) throw_error(ErrorKind::kInvalidArgument, m_.dir, "no tensor '%s' (in memory)", name.c_str());
    return it->second;
  }
  const FloatModel& m_;
};

struct Rotator {
  const eval::WeightSource& src;
  FloatModel& out;
  std::vector<double> signs;         // D
  quantizer::HadamardPlan plan;      // residual (hidden size)

  Mat read(const std::string& name) {
    const std::vector<int64_t> s = src.shape(name);
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    std::vector<float> f(static_cast<size_t>(n));
    src.read_float(name, f.data());
    return Mat(f.begin(), f.end());
  }
  // Rows of x [rows, n] -> (rows ⊙ g ⊙ signs) H / sqrt(n): x diag(g) Q.
  void right_q(Mat& x, const Mat* g) const {
    const int64_t n = plan.n, rows = static_cast<int64_t>(x.size()) / n;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < n; ++j) x[static_cast<size_t>(r * n + j)] *= signs[static_cast<size_t>(j)] * (g ? (*g)[static_cast<size_t>(j)] : 1.0);
    quantizer::apply_right(plan, x.data(), rows);
  }
  // W [n, cols] (n = hidden, the output side) -> Q^T W.
  void left_qt(Mat& w) const {
    const int64_t n = plan.n, cols = static_cast<int64_t>(w.size()) / n;
    Mat t(w.size());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < cols; ++j) t[static_cast<size_t>(j * n + i)] = w[static_cast<size_t>(i * cols + j)];
    right_q(t, nullptr);  // (W^T Q)^T = Q^T W
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < cols; ++j) w[static_cast<size_t>(i * cols + j)] = t[static_cast<size_t>(j * n + i)];
  }
  void store(const std::string& name, const Mat& v, const std::vector<int64_t>& shape, const std::string& dtype) {
    formats::FloatTensor t;
    t.shape = shape;
    t.data.assign(v.begin(), v.end());
    t.dtype = dtype;
    out.tensors[name] = std::move(t);
  }
};

}  // namespace

FloatModel rotate_model(const eval::WeightSource& src, const RotationOptions& opt) {
  const eval::ModelConfig cfg = eval::ModelConfig::from_json(src.config(), src.config_path());
  if (cfg.arch != eval::Arch::kLlama)
    throw_error(ErrorKind::kUnsupported, src.config_path(), "--rotate: %s is not supported (supported: the LLaMA family)",
                cfg.model_type.c_str());
  if (cfg.online_hadamard_down) throw_error(ErrorKind::kInvalidArgument, src.dir(), "--rotate: the model is rotated already");
  if (src.packed()) throw_error(ErrorKind::kInvalidArgument, src.dir(), "--rotate: needs a Hugging Face model (not a packed checkpoint)");
  FloatModel out;
  out.dir = src.dir();
  out.config = src.config();
  Rotator R{src, out, {}, quantizer::hadamard_plan(cfg.hidden_size)};
  std::mt19937_64 rng(opt.seed);
  R.signs.resize(static_cast<size_t>(cfg.hidden_size));
  for (auto& s : R.signs) s = (rng() >> 63) ? -1.0 : 1.0;
  const quantizer::HadamardPlan down_plan = quantizer::hadamard_plan(cfg.intermediate_size);

  const std::string embed_name = "model.embed_tokens.weight";
  for (const std::string& name : src.names()) {
    const Mat v = R.read(name);
    R.store(name, v, src.shape(name), src.stored_dtype(name));  // unchanged unless rewritten below
    out.names.push_back(name);
  }
  auto get = [&](const std::string& n) -> Mat {
    const auto& t = out.tensors.at(n);
    return Mat(t.data.begin(), t.data.end());
  };
  auto put = [&](const std::string& n, const Mat& v) {
    auto& t = out.tensors.at(n);
    t.data.assign(v.begin(), v.end());
  };
  auto ones = [&](const std::string& n) {
    auto& t = out.tensors.at(n);
    std::fill(t.data.begin(), t.data.end(), 1.0f);
  };
  auto has = [&](const std::string& n) { return out.tensors.count(n) > 0; };

  // LM head first (it reads the original embedding when tied).
  const Mat g_final = get("model.norm.weight");
  Mat head = get(cfg.tie_word_embeddings ? embed_name : "lm_head.weight");
  R.right_q(head, &g_final);
  if (!has("lm_head.weight")) {
    R.store("lm_head.weight", head, {cfg.vocab_size, cfg.hidden_size}, out.tensors.at(embed_name).dtype);
    out.names.push_back("lm_head.weight");
  } else {
    put("lm_head.weight", head);
  }
  ones("model.norm.weight");
  Mat e = get(embed_name);
  R.right_q(e, nullptr);
  put(embed_name, e);

  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l);
    const Mat g1 = get(p + ".input_layernorm.weight"), g2 = get(p + ".post_attention_layernorm.weight");
    for (const char* r : {".self_attn.q_proj", ".self_attn.k_proj", ".self_attn.v_proj"}) {
      Mat w = get(p + r + ".weight");
      R.right_q(w, &g1);
      put(p + r + ".weight", w);
    }
    for (const char* r : {".mlp.gate_proj", ".mlp.up_proj"}) {
      Mat w = get(p + r + ".weight");
      R.right_q(w, &g2);
      put(p + r + ".weight", w);
    }
    ones(p + ".input_layernorm.weight");
    ones(p + ".post_attention_layernorm.weight");
    for (const char* r : {".self_attn.o_proj", ".mlp.down_proj"}) {
      Mat w = get(p + r + ".weight");
      R.left_qt(w);
      if (std::string(r) == ".mlp.down_proj") quantizer::apply_right(down_plan, w.data(), cfg.hidden_size);
      put(p + r + ".weight", w);
      if (has(p + r + ".bias")) {
        Mat b = get(p + r + ".bias");
        R.right_q(b, nullptr);
        put(p + r + ".bias", b);
      }
    }
  }
  out.config_patch = {{"tie_word_embeddings", false}, {"razerq_online_hadamard", {"down_proj"}}};
  out.config.merge_patch(out.config_patch);
  out.record = {{"seed", opt.seed},
                {"residual", R.plan.construction},
                {"residual_size", cfg.hidden_size},
                {"online_hadamard", {{"down_proj", down_plan.construction}}},
                {"untied_lm_head", cfg.tie_word_embeddings}};
  return out;
}

std::unique_ptr<eval::WeightSource> memory_source(const FloatModel& m) { return std::make_unique<MemorySource>(m); }

}  // namespace razerq::calib
