// razerq_synthetic_model: a LLaMA-family Hugging Face directory with random weights, shaped by a
// config.json, for speed work where no real weights are at hand (e.g. Llama-2-7B:
// ../shared/data/tokenizers/llama2/llama-2-7b.config.json).
//
//   razerq_synthetic_model CONFIG.json -o DIR [--dtype fp16|bf16|fp32] [--seed N]
//                          [--tokenizer DIR] [--layers N]
//
// Weights follow transformers' initialisation in distribution width: linears and embeddings
// uniform with standard deviation `initializer_range` (0.02 by default), norms 1. Values come
// from a counter-based generator (splitmix64 of seed, tensor, index), so a seed gives the same
// model on any machine and thread count. One safetensors shard per layer plus one for the
// embeddings/head, with model.safetensors.index.json; config.json gets torch_dtype set.
// The tokenizer files of --tokenizer (tokenizer.model, tokenizer.json, ...) are copied in.
// The output appears whole: it is written to DIR.partial and renamed.
#include <CLI/CLI.hpp>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/file.hpp"
#include "common/half.hpp"
#include "common/json.hpp"
#include "formats/safetensors.hpp"

namespace fs = std::filesystem;
using namespace razerq;

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

struct Spec {
  std::string name;
  std::vector<int64_t> shape;
  bool norm = false;
};

int64_t get_int(const nlohmann::json& c, const char* key, const std::string& path) {
  if (!c.contains(key) || !c[key].is_number_integer())
    throw_error(ErrorKind::kMalformedInput, path, "\"%s\" missing or not an integer", key);
  return c[key].get<int64_t>();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Random-weight LLaMA-family Hugging Face directory shaped by a config.json (for speed work)"};
  std::string config_path, out, dtype = "fp16", tokenizer;
  uint64_t seed = 0;
  int64_t layers = -1;
  app.add_option("CONFIG", config_path, "config.json of a llama/mistral model")->required()->check(CLI::ExistingFile);
  app.add_option("-o,--out", out, "Output directory (must not exist)")->required();
  app.add_option("--dtype", dtype, "fp16, bf16 or fp32")->check(CLI::IsMember({"fp16", "bf16", "fp32"}))->capture_default_str();
  app.add_option("--seed", seed, "Seed")->capture_default_str();
  app.add_option("--tokenizer", tokenizer, "Directory whose tokenizer files are copied in")->check(CLI::ExistingDirectory);
  app.add_option("--layers", layers, "Override num_hidden_layers (a smaller model of the same width)");
  CLI11_PARSE(app, argc, argv);

  try {
    nlohmann::json cfg = read_json_object(config_path);
    const std::string type = cfg.value("model_type", "");
    if (type != "llama" && type != "mistral")
      throw_error(ErrorKind::kUnsupported, config_path, "model_type \"%s\" (expected llama or mistral)", type.c_str());
    const int64_t H = get_int(cfg, "hidden_size", config_path), F = get_int(cfg, "intermediate_size", config_path),
                  V = get_int(cfg, "vocab_size", config_path), heads = get_int(cfg, "num_attention_heads", config_path);
    int64_t L = get_int(cfg, "num_hidden_layers", config_path);
    const int64_t kv = cfg.contains("num_key_value_heads") ? get_int(cfg, "num_key_value_heads", config_path) : heads;
    const int64_t hd = cfg.contains("head_dim") && cfg["head_dim"].is_number_integer() ? cfg["head_dim"].get<int64_t>() : H / heads;
    const bool tied = cfg.value("tie_word_embeddings", false);
    const double stdev = cfg.value("initializer_range", 0.02);
    if (layers >= 0) {
      L = layers;
      cfg["num_hidden_layers"] = L;
    }
    cfg["torch_dtype"] = dtype == "fp16" ? "float16" : dtype == "bf16" ? "bfloat16" : "float32";
    const formats::DType dt = dtype == "fp16" ? formats::DType::kF16 : dtype == "bf16" ? formats::DType::kBF16 : formats::DType::kF32;
    const size_t esize = dtype == "fp32" ? 4 : 2;

    if (fs::exists(out)) throw_error(ErrorKind::kInvalidArgument, out, "exists (choose a new directory)");
    const std::string tmp = out + ".partial";
    std::error_code rm_ec;
    remove_tree(tmp, rm_ec);
    fs::create_directories(tmp);

    // Shards: 0 = embeddings, norm and head; 1..L = one layer each.
    std::vector<std::vector<Spec>> shards(static_cast<size_t>(L + 1));
    shards[0].push_back({"model.embed_tokens.weight", {V, H}});
    shards[0].push_back({"model.norm.weight", {H}, true});
    if (!tied) shards[0].push_back({"lm_head.weight", {V, H}});
    for (int64_t l = 0; l < L; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      auto& s = shards[static_cast<size_t>(l + 1)];
      s.push_back({p + "input_layernorm.weight", {H}, true});
      s.push_back({p + "post_attention_layernorm.weight", {H}, true});
      s.push_back({p + "self_attn.q_proj.weight", {heads * hd, H}});
      s.push_back({p + "self_attn.k_proj.weight", {kv * hd, H}});
      s.push_back({p + "self_attn.v_proj.weight", {kv * hd, H}});
      s.push_back({p + "self_attn.o_proj.weight", {H, heads * hd}});
      s.push_back({p + "mlp.gate_proj.weight", {F, H}});
      s.push_back({p + "mlp.up_proj.weight", {F, H}});
      s.push_back({p + "mlp.down_proj.weight", {H, F}});
    }

    const auto t0 = std::chrono::steady_clock::now();
    nlohmann::json weight_map = nlohmann::json::object();
    uint64_t total_bytes = 0, tensor_id = 0;
    std::vector<uint8_t> buf;
    const double a = stdev * std::sqrt(3.0);  // uniform(-a, a) has standard deviation stdev
    for (size_t si = 0; si < shards.size(); ++si) {
      const std::string file = strprintf("model-%05zu-of-%05zu.safetensors", si + 1, shards.size());
      formats::SafetensorsWriter w(tmp + "/" + file);
      for (const Spec& s : shards[si]) {
        int64_t n = 1;
        for (int64_t d : s.shape) n *= d;
        buf.resize(static_cast<size_t>(n) * esize);
        const uint64_t tid = ++tensor_id;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i) {
          double v = 1.0;
          if (!s.norm) {
            const uint64_t r = splitmix64(seed * 0x100000001B3ull ^ (tid << 40) ^ static_cast<uint64_t>(i));
            v = a * (2.0 * (static_cast<double>(r >> 11) * 0x1.0p-53) - 1.0);
          }
          if (esize == 4) {
            const float f = static_cast<float>(v);
            std::memcpy(&buf[static_cast<size_t>(i) * 4], &f, 4);
          } else {
            const uint16_t h = dtype == "fp16" ? double_to_fp16(v) : double_to_bf16(v);
            std::memcpy(&buf[static_cast<size_t>(i) * 2], &h, 2);
          }
        }
        w.add(s.name, dt, s.shape, buf.data(), buf.size());
        weight_map[s.name] = file;
        total_bytes += buf.size();
      }
      w.finish();
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "\rshard %zu/%zu, %.2f GB, %.1f s", si + 1, shards.size(), total_bytes / 1e9, sec);
    }
    std::fprintf(stderr, "\n");
    {
      std::ofstream f(tmp + "/model.safetensors.index.json");
      f << nlohmann::json({{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}}).dump(2) << "\n";
      std::ofstream c(tmp + "/config.json");
      c << cfg.dump(2) << "\n";
      if (!f || !c) throw_error(ErrorKind::kIo, tmp, "cannot write the index or config.json");
    }
    if (!tokenizer.empty())
      for (const char* name : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"})
        if (fs::exists(fs::path(tokenizer) / name)) fs::copy_file(fs::path(tokenizer) / name, fs::path(tmp) / name);
    fs::rename(tmp, out);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s: %lld layers, hidden %lld, %.2f GB %s, %.1f s\n", out.c_str(), static_cast<long long>(L),
                static_cast<long long>(H), total_bytes / 1e9, dtype.c_str(), sec);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    std::error_code ec;
    remove_tree(out + ".partial", ec);  // nothing half-written stays behind
    return 1;
  }
  return 0;
}
