#pragma once
// The architecture of an evaluable model, parsed from a Hugging Face config.json. Torch-free
// (so it compiles fast and can be tested on its own).
//
// Supported model_type values: "llama", "mistral", "qwen2" (the LLaMA family: RMSNorm, RoPE,
// SiLU-gated MLP, GQA/MQA through num_key_value_heads) and "opt" (learned positions with
// offset 2, LayerNorm, ReLU, biases). Anything else throws razerq::Error(kUnsupported)
// listing these.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace razerq::eval {

enum class Arch { kLlama, kOpt };

// Rotary embedding parameters (LLaMA family only). type: "default", "linear" or "llama3"
// (transformers' _compute_llama3_parameters).
struct RopeConfig {
  std::string type = "default";
  double theta = 10000.0;
  double factor = 1.0;                             // linear, llama3
  double low_freq_factor = 1.0;                    // llama3
  double high_freq_factor = 4.0;                   // llama3
  int64_t original_max_position_embeddings = 8192; // llama3
};

struct ModelConfig {
  std::string model_type;  // as in config.json
  Arch arch = Arch::kLlama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // OPT: ffn_dim
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;  // == num_heads for MHA and OPT
  int64_t head_dim = 0;      // config "head_dim", else hidden_size / num_heads
  int64_t max_position_embeddings = 0;
  double norm_eps = 1e-6;  // rms_norm_eps (LLaMA family); 1e-5 LayerNorm eps (OPT)
  bool tie_word_embeddings = false;

  // LLaMA family.
  bool qkv_bias = false;  // qwen2 always; llama/mistral with attention_bias
  bool o_bias = false;    // llama with attention_bias
  bool mlp_bias = false;  // llama with mlp_bias
  RopeConfig rope;
  // Online Hadamard transform of down_proj's input (a model rotated by `razerq quantize
  // --rotate`, QuaRot-style): config.json "razerq_online_hadamard": ["down_proj"]. The forward
  // multiplies the MLP's inner activation by the orthogonal quantizer::hadamard_plan
  // (intermediate_size) transform before down_proj, whose weight was multiplied by the same.
  bool online_hadamard_down = false;
  // Sliding-window attention: key j is visible from query i when i - window < j <= i.
  // 0 = none. sliding_layers[l] != 0 for the layers that use it (mistral: all; qwen2 with
  // use_sliding_window: layers >= max_window_layers; or config "layer_types").
  int64_t sliding_window = 0;
  std::vector<char> sliding_layers;

  // OPT.
  int64_t word_embed_proj_dim = 0;    // embedding width; project_in/out when != hidden_size
  bool do_layer_norm_before = true;
  bool final_layer_norm = true;       // model.decoder.final_layer_norm exists
  bool enable_bias = true;
  bool layer_norm_affine = true;
  std::string activation = "relu";    // OPT: "relu" or "gelu"
  int64_t position_offset = 2;        // OPT learned positions: row = position + 2

  // Parses config.json. `where` (the file) prefixes errors. Missing required fields and bad
  // values throw kMalformedInput; unsupported model_type / rope_scaling / activation throw
  // kUnsupported listing what is supported.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& where);

  bool has_project_in_out() const { return arch == Arch::kOpt && word_embed_proj_dim != hidden_size; }
  // "llama: 5 layers, hidden 64, heads 8/4 x 8, ffn 172, vocab 512, rope 10000 (default), tied"
  std::string summary() const;
};

// The model types accepted by ModelConfig::from_json, comma-separated (for messages).
const char* supported_model_types();

// RoPE inverse frequencies, float64, [head_dim / 2]: theta^(-2i/d) with the rope scaling
// applied (linear: / factor; llama3: transformers' _compute_llama3_parameters).
std::vector<double> rope_inv_freq(const ModelConfig& cfg);

}  // namespace razerq::eval
