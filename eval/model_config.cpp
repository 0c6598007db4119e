#include "eval/model_config.hpp"

#include <cmath>

#include "common/error.hpp"

namespace razerq::eval {

namespace {

using nlohmann::json;

// A present, non-null field.
const json* field(const json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

int64_t get_int(const json& j, const char* key, const std::string& where, const int64_t* def = nullptr) {
  const json* f = field(j, key);
  if (!f) {
    if (def) return *def;
    throw_error(ErrorKind::kMalformedInput, where, "missing \"%s\"", key);
  }
  if (!f->is_number_integer() && !(f->is_number_float() && std::floor(f->get<double>()) == f->get<double>()))
    throw_error(ErrorKind::kMalformedInput, where, "\"%s\" must be an integer", key);
  return f->is_number_integer() ? f->get<int64_t>() : static_cast<int64_t>(f->get<double>());
}
int64_t get_int(const json& j, const char* key, const std::string& where, int64_t def) {
  return get_int(j, key, where, &def);
}

double get_double(const json& j, const char* key, const std::string& where, double def) {
  const json* f = field(j, key);
  if (!f) return def;
  if (!f->is_number()) throw_error(ErrorKind::kMalformedInput, where, "\"%s\" must be a number", key);
  return f->get<double>();
}

bool get_bool(const json& j, const char* key, const std::string& where, bool def) {
  const json* f = field(j, key);
  if (!f) return def;
  if (!f->is_boolean()) throw_error(ErrorKind::kMalformedInput, where, "\"%s\" must be true or false", key);
  return f->get<bool>();
}

std::string get_string(const json& j, const char* key, const std::string& where, const std::string& def) {
  const json* f = field(j, key);
  if (!f) return def;
  if (!f->is_string()) throw_error(ErrorKind::kMalformedInput, where, "\"%s\" must be a string", key);
  return f->get<std::string>();
}

void require_positive(int64_t v, const char* key, const std::string& where) {
  if (v <= 0) throw_error(ErrorKind::kMalformedInput, where, "\"%s\" is %lld (expected > 0)", key, static_cast<long long>(v));
}

// rope_theta and the scaling: transformers 4 writes "rope_theta" and "rope_scaling"
// ({"type" or "rope_type", "factor", ...}); transformers 5 writes "rope_parameters"
// ({"rope_type", "rope_theta", ...}).
RopeConfig parse_rope(const json& j, const std::string& where) {
  RopeConfig r;
  const json* params = field(j, "rope_parameters");
  if (params && !params->is_object())
    throw_error(ErrorKind::kMalformedInput, where, "\"rope_parameters\" must be an object");
  const json* scaling = field(j, "rope_scaling");
  if (scaling && !scaling->is_object())
    throw_error(ErrorKind::kMalformedInput, where, "\"rope_scaling\" must be an object or null");
  r.theta = get_double(j, "rope_theta", where, 10000.0);
  if (params) r.theta = get_double(*params, "rope_theta", where, r.theta);
  const json* s = params ? params : scaling;
  if (!s) return r;
  std::string type = get_string(*s, "rope_type", where, "");
  if (type.empty()) type = get_string(*s, "type", where, "default");
  const std::string key = params ? "rope_parameters" : "rope_scaling";
  if (type == "default") return r;
  if (type != "linear" && type != "llama3")
    throw_error(ErrorKind::kUnsupported, where, "%s type \"%s\" is not supported (supported: default, linear, llama3)",
                key.c_str(), type.c_str());
  r.type = type;
  if (!field(*s, "factor")) throw_error(ErrorKind::kMalformedInput, where, "%s of type %s needs \"factor\"", key.c_str(), type.c_str());
  r.factor = get_double(*s, "factor", where, 1.0);
  if (!(r.factor > 0)) throw_error(ErrorKind::kMalformedInput, where, "%s factor %g must be > 0", key.c_str(), r.factor);
  if (type == "llama3") {
    for (const char* k : {"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"})
      if (!field(*s, k)) throw_error(ErrorKind::kMalformedInput, where, "%s of type llama3 needs \"%s\"", key.c_str(), k);
    r.low_freq_factor = get_double(*s, "low_freq_factor", where, 1.0);
    r.high_freq_factor = get_double(*s, "high_freq_factor", where, 4.0);
    r.original_max_position_embeddings = get_int(*s, "original_max_position_embeddings", where, int64_t{8192});
    if (!(r.high_freq_factor != r.low_freq_factor) || r.original_max_position_embeddings <= 0)
      throw_error(ErrorKind::kMalformedInput, where, "%s llama3: high_freq_factor must differ from low_freq_factor and "
                  "original_max_position_embeddings be > 0", key.c_str());
  }
  return r;
}

}  // namespace

const char* supported_model_types() { return "llama, mistral, qwen2, opt"; }

ModelConfig ModelConfig::from_json(const json& j, const std::string& where) {
  if (!j.is_object()) throw_error(ErrorKind::kMalformedInput, where, "config must be a JSON object");
  ModelConfig c;
  c.model_type = get_string(j, "model_type", where, "");
  if (c.model_type.empty()) throw_error(ErrorKind::kMalformedInput, where, "missing \"model_type\"");
  const bool llama_family = c.model_type == "llama" || c.model_type == "mistral" || c.model_type == "qwen2";
  if (!llama_family && c.model_type != "opt")
    throw_error(ErrorKind::kUnsupported, where, "model_type \"%s\" is not supported (supported: %s)", c.model_type.c_str(),
                supported_model_types());

  c.vocab_size = get_int(j, "vocab_size", where);
  c.hidden_size = get_int(j, "hidden_size", where);
  c.num_layers = get_int(j, "num_hidden_layers", where);
  c.num_heads = get_int(j, "num_attention_heads", where);
  require_positive(c.vocab_size, "vocab_size", where);
  require_positive(c.hidden_size, "hidden_size", where);
  require_positive(c.num_layers, "num_hidden_layers", where);
  require_positive(c.num_heads, "num_attention_heads", where);

  if (llama_family) {
    c.arch = Arch::kLlama;
    c.intermediate_size = get_int(j, "intermediate_size", where);
    c.num_kv_heads = get_int(j, "num_key_value_heads", where, c.num_heads);
    require_positive(c.num_kv_heads, "num_key_value_heads", where);
    if (field(j, "head_dim")) {
      c.head_dim = get_int(j, "head_dim", where);
    } else {
      if (c.hidden_size % c.num_heads != 0)
        throw_error(ErrorKind::kMalformedInput, where, "hidden_size %lld is not a multiple of num_attention_heads %lld (and no head_dim)",
                    static_cast<long long>(c.hidden_size), static_cast<long long>(c.num_heads));
      c.head_dim = c.hidden_size / c.num_heads;
    }
    require_positive(c.head_dim, "head_dim", where);
    if (c.head_dim % 2 != 0)
      throw_error(ErrorKind::kMalformedInput, where, "head_dim %lld must be even for RoPE", static_cast<long long>(c.head_dim));
    if (c.num_heads % c.num_kv_heads != 0)
      throw_error(ErrorKind::kMalformedInput, where, "num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
                  static_cast<long long>(c.num_heads), static_cast<long long>(c.num_kv_heads));
    c.max_position_embeddings = get_int(j, "max_position_embeddings", where, int64_t{2048});
    c.norm_eps = get_double(j, "rms_norm_eps", where, 1e-6);
    c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", where, false);
    const std::string act = get_string(j, "hidden_act", where, "silu");
    if (act != "silu" && act != "swish")
      throw_error(ErrorKind::kUnsupported, where, "hidden_act \"%s\" is not supported for %s (supported: silu)", act.c_str(),
                  c.model_type.c_str());
    c.activation = "silu";
    if (c.model_type == "qwen2") {
      c.qkv_bias = true;
    } else {
      c.qkv_bias = get_bool(j, "attention_bias", where, false);
      c.o_bias = c.qkv_bias;
    }
    if (c.model_type == "llama") c.mlp_bias = get_bool(j, "mlp_bias", where, false);
    const double prf = get_double(j, "partial_rotary_factor", where, 1.0);
    if (prf != 1.0)
      throw_error(ErrorKind::kUnsupported, where, "partial_rotary_factor %g is not supported (supported: 1)", prf);
    c.rope = parse_rope(j, where);
    if (const json* oh = field(j, "razerq_online_hadamard")) {
      if (!oh->is_array()) throw_error(ErrorKind::kMalformedInput, where, "\"razerq_online_hadamard\" must be an array of linear names");
      for (const json& e : *oh) {
        if (!e.is_string() || e.get<std::string>() != "down_proj")
          throw_error(ErrorKind::kUnsupported, where, "\"razerq_online_hadamard\": %s is not supported (supported: \"down_proj\")",
                      e.dump().c_str());
        c.online_hadamard_down = true;
      }
    }

    // Sliding windows.
    c.sliding_layers.assign(static_cast<size_t>(c.num_layers), 0);
    if (c.model_type == "mistral") {
      c.sliding_window = j.contains("sliding_window") ? get_int(j, "sliding_window", where, int64_t{0}) : 4096;
      if (c.sliding_window > 0) c.sliding_layers.assign(static_cast<size_t>(c.num_layers), 1);
    } else if (c.model_type == "qwen2" && get_bool(j, "use_sliding_window", where, false)) {
      c.sliding_window = get_int(j, "sliding_window", where, int64_t{4096});
      const int64_t from = get_int(j, "max_window_layers", where, int64_t{28});
      for (int64_t l = from; l < c.num_layers; ++l) c.sliding_layers[static_cast<size_t>(l)] = 1;
    }
    if (const json* lt = field(j, "layer_types"); lt && c.sliding_window > 0) {
      if (!lt->is_array() || static_cast<int64_t>(lt->size()) != c.num_layers)
        throw_error(ErrorKind::kMalformedInput, where, "\"layer_types\" must be an array of num_hidden_layers strings");
      for (int64_t l = 0; l < c.num_layers; ++l) {
        const json& t = (*lt)[static_cast<size_t>(l)];
        c.sliding_layers[static_cast<size_t>(l)] = t.is_string() && t.get<std::string>() == "sliding_attention";
      }
    }
    if (c.sliding_window < 0) throw_error(ErrorKind::kMalformedInput, where, "\"sliding_window\" must be >= 0");
  } else {
    c.arch = Arch::kOpt;
    c.intermediate_size = get_int(j, "ffn_dim", where);
    c.num_kv_heads = c.num_heads;
    if (c.hidden_size % c.num_heads != 0)
      throw_error(ErrorKind::kMalformedInput, where, "hidden_size %lld is not a multiple of num_attention_heads %lld",
                  static_cast<long long>(c.hidden_size), static_cast<long long>(c.num_heads));
    c.head_dim = c.hidden_size / c.num_heads;
    c.max_position_embeddings = get_int(j, "max_position_embeddings", where, int64_t{2048});
    c.norm_eps = 1e-5;
    c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", where, true);
    c.word_embed_proj_dim = get_int(j, "word_embed_proj_dim", where, c.hidden_size);
    require_positive(c.word_embed_proj_dim, "word_embed_proj_dim", where);
    c.do_layer_norm_before = get_bool(j, "do_layer_norm_before", where, true);
    c.final_layer_norm = c.do_layer_norm_before && !get_bool(j, "_remove_final_layer_norm", where, false);
    c.enable_bias = get_bool(j, "enable_bias", where, true);
    c.layer_norm_affine = get_bool(j, "layer_norm_elementwise_affine", where, true);
    c.activation = get_string(j, "activation_function", where, "relu");
    if (c.activation != "relu" && c.activation != "gelu")
      throw_error(ErrorKind::kUnsupported, where, "activation_function \"%s\" is not supported for opt (supported: relu, gelu)",
                  c.activation.c_str());
    c.sliding_layers.assign(static_cast<size_t>(c.num_layers), 0);
  }
  require_positive(c.intermediate_size, c.arch == Arch::kOpt ? "ffn_dim" : "intermediate_size", where);
  require_positive(c.max_position_embeddings, "max_position_embeddings", where);
  return c;
}

std::string ModelConfig::summary() const {
  std::string s = strprintf("%s: %lld layers, hidden %lld, heads %lld/%lld x %lld, ffn %lld, vocab %lld", model_type.c_str(),
                            static_cast<long long>(num_layers), static_cast<long long>(hidden_size),
                            static_cast<long long>(num_heads), static_cast<long long>(num_kv_heads),
                            static_cast<long long>(head_dim), static_cast<long long>(intermediate_size),
                            static_cast<long long>(vocab_size));
  if (arch == Arch::kLlama) {
    s += strprintf(", rope %g (%s", rope.theta, rope.type.c_str());
    if (rope.type != "default") s += strprintf(" x%g", rope.factor);
    s += ")";
    if (qkv_bias) s += ", qkv bias";
    if (sliding_window > 0) s += strprintf(", sliding window %lld", static_cast<long long>(sliding_window));
    if (online_hadamard_down) s += ", online Hadamard on down_proj input";
  } else {
    s += strprintf(", %s, layer norm %s", activation.c_str(), do_layer_norm_before ? "before" : "after");
    if (has_project_in_out()) s += strprintf(", embed %lld", static_cast<long long>(word_embed_proj_dim));
  }
  s += tie_word_embeddings ? ", tied" : ", untied";
  return s;
}

std::vector<double> rope_inv_freq(const ModelConfig& cfg) {
  const int64_t half = cfg.head_dim / 2;
  std::vector<double> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv[static_cast<size_t>(i)] = 1.0 / std::pow(cfg.rope.theta, static_cast<double>(2 * i) / static_cast<double>(cfg.head_dim));
  const RopeConfig& r = cfg.rope;
  if (r.type == "linear") {
    for (double& f : inv) f /= r.factor;
  } else if (r.type == "llama3") {
    const double old_len = static_cast<double>(r.original_max_position_embeddings);
    const double low_freq_wavelen = old_len / r.low_freq_factor;
    const double high_freq_wavelen = old_len / r.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2.0 * M_PI / f;
      // Low frequencies (long wavelengths) are divided by factor, high ones kept, and the
      // band between interpolated smoothly.
      double scaled = wavelen > low_freq_wavelen ? f / r.factor : f;
      const double smooth = (old_len / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      const double smoothed = (1.0 - smooth) * scaled / r.factor + smooth * scaled;
      const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
      f = medium ? smoothed : scaled;
    }
  }
  return inv;
}

}  // namespace razerq::eval
