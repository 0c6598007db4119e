// config.json parsing and RoPE frequencies (torch-free parts of eval/).
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

#include "common/error.hpp"
#include "eval/model_config.hpp"

namespace razerq::eval {
namespace {

using nlohmann::json;

json llama_json() {
  return json{{"model_type", "llama"},     {"vocab_size", 512},         {"hidden_size", 64},
              {"intermediate_size", 172},  {"num_hidden_layers", 5},    {"num_attention_heads", 8},
              {"num_key_value_heads", 4},  {"max_position_embeddings", 512}, {"rms_norm_eps", 1e-5},
              {"rope_theta", 10000.0},     {"rope_scaling", nullptr},   {"tie_word_embeddings", true}};
}

// The error kind of parsing j, and its message (kInternal when it does not throw).
ErrorKind parse_error(const json& j, std::string* msg) {
  try {
    ModelConfig::from_json(j, "config.json");
  } catch (const Error& e) {
    *msg = e.what();
    return e.kind();
  }
  *msg = "(no error)";
  return ErrorKind::kInternal;
}

TEST(EvalModelConfig, LlamaFromStories260KConfig) {
  ModelConfig c = ModelConfig::from_json(llama_json(), "config.json");
  EXPECT_EQ(c.arch, Arch::kLlama);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.rope.type, "default");
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-5);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_NE(c.summary().find("5 layers"), std::string::npos) << c.summary();
}

TEST(EvalModelConfig, DefaultsAndHeadDim) {
  json j = llama_json();
  j.erase("num_key_value_heads");
  j.erase("rope_theta");
  j.erase("tie_word_embeddings");
  j.erase("rms_norm_eps");
  j["head_dim"] = 16;  // explicit head_dim wins over hidden / heads
  ModelConfig c = ModelConfig::from_json(j, "config.json");
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-6);
}

TEST(EvalModelConfig, Transformers5RopeParameters) {
  // llama-14m's config.json (transformers 5.17) keeps rope_theta inside rope_parameters.
  json j = llama_json();
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_theta", 500000.0}, {"rope_type", "default"}};
  ModelConfig c = ModelConfig::from_json(j, "config.json");
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_EQ(c.rope.type, "default");
}

TEST(EvalModelConfig, Qwen2AndMistral) {
  json q = llama_json();
  q["model_type"] = "qwen2";
  q["use_sliding_window"] = false;
  q["sliding_window"] = 32;
  ModelConfig c = ModelConfig::from_json(q, "config.json");
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_EQ(c.sliding_window, 0);
  q["use_sliding_window"] = true;
  q["max_window_layers"] = 3;
  c = ModelConfig::from_json(q, "config.json");
  EXPECT_EQ(c.sliding_window, 32);
  EXPECT_EQ(c.sliding_layers, (std::vector<char>{0, 0, 0, 1, 1}));

  json m = llama_json();
  m["model_type"] = "mistral";
  c = ModelConfig::from_json(m, "config.json");  // no sliding_window key: MistralConfig's 4096
  EXPECT_EQ(c.sliding_window, 4096);
  m["sliding_window"] = nullptr;
  c = ModelConfig::from_json(m, "config.json");
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_FALSE(c.qkv_bias);
}

TEST(EvalModelConfig, Opt) {
  json j{{"model_type", "opt"},          {"vocab_size", 50272}, {"hidden_size", 1024}, {"ffn_dim", 4096},
         {"num_hidden_layers", 24},      {"num_attention_heads", 16}, {"max_position_embeddings", 2048},
         {"word_embed_proj_dim", 512},   {"do_layer_norm_before", false}, {"activation_function", "relu"}};
  ModelConfig c = ModelConfig::from_json(j, "config.json");  // opt-350m's shape
  EXPECT_EQ(c.arch, Arch::kOpt);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_TRUE(c.has_project_in_out());
  EXPECT_FALSE(c.final_layer_norm);  // only with do_layer_norm_before
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.enable_bias);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-5);
  j["activation_function"] = "silu";
  std::string msg;
  EXPECT_EQ(parse_error(j, &msg), ErrorKind::kUnsupported) << msg;
  EXPECT_NE(msg.find("relu, gelu"), std::string::npos) << msg;
}

TEST(EvalModelConfig, UnsupportedModelTypeListsSupported) {
  json j = llama_json();
  j["model_type"] = "gpt_neox";
  std::string msg;
  EXPECT_EQ(parse_error(j, &msg), ErrorKind::kUnsupported);
  EXPECT_NE(msg.find("gpt_neox"), std::string::npos) << msg;
  EXPECT_NE(msg.find("llama, mistral, qwen2, opt"), std::string::npos) << msg;
}

TEST(EvalModelConfig, UnsupportedRopeScalingListsSupported) {
  json j = llama_json();
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}};
  std::string msg;
  EXPECT_EQ(parse_error(j, &msg), ErrorKind::kUnsupported);
  EXPECT_NE(msg.find("yarn"), std::string::npos) << msg;
  EXPECT_NE(msg.find("default, linear, llama3"), std::string::npos) << msg;
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};  // llama3 without its fields
  EXPECT_EQ(parse_error(j, &msg), ErrorKind::kMalformedInput);
  EXPECT_NE(msg.find("low_freq_factor"), std::string::npos) << msg;
}

TEST(EvalModelConfig, MalformedFields) {
  std::string msg;
  json j = llama_json();
  j.erase("hidden_size");
  EXPECT_EQ(parse_error(j, &msg), ErrorKind::kMalformedInput);
  EXPECT_NE(msg.find("hidden_size"), std::string::npos) << msg;
  j = llama_json();
  j["num_key_value_heads"] = 3;
  EXPECT_EQ(parse_error(j, &msg), ErrorKind::kMalformedInput);
  EXPECT_NE(msg.find("num_key_value_heads"), std::string::npos) << msg;
  j = llama_json();
  j["hidden_act"] = "gelu";
  EXPECT_EQ(parse_error(j, &msg), ErrorKind::kUnsupported);
}

TEST(EvalRopeInvFreq, DefaultAndLinear) {
  json j = llama_json();
  ModelConfig c = ModelConfig::from_json(j, "config.json");
  std::vector<double> f = rope_inv_freq(c);
  ASSERT_EQ(f.size(), 4u);
  EXPECT_DOUBLE_EQ(f[0], 1.0);
  EXPECT_NEAR(f[1], 0.1, 1e-15);  // 10000^(-2/8)
  EXPECT_NEAR(f[3], 0.001, 1e-17);
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  c = ModelConfig::from_json(j, "config.json");
  f = rope_inv_freq(c);
  EXPECT_NEAR(f[1], 0.05, 1e-15);
}

TEST(EvalRopeInvFreq, Llama3MatchesTransformersFormula) {
  // Llama 3.1's rope_scaling; expected values from transformers' _compute_llama3_parameters,
  // evaluated in Python float64: index 0 and 10 unchanged (high frequency), 30 smoothed
  // (wavelength 2948 between 2048 and 8192), 40.. divided by 8 (low frequency).
  json j = llama_json();
  j["hidden_size"] = 4096;
  j["num_attention_heads"] = 32;
  j["num_key_value_heads"] = 8;
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  ModelConfig c = ModelConfig::from_json(j, "config.json");
  ASSERT_EQ(c.head_dim, 128);
  std::vector<double> f = rope_inv_freq(c);
  ASSERT_EQ(f.size(), 64u);
  const std::pair<int, double> expected[] = {{0, 1.0},
                                             {10, 0.12868737343265052},
                                             {30, 0.0013718935677611381},
                                             {40, 3.428102195952591e-05},
                                             {45, 1.2297638677963614e-05},
                                             {50, 4.411534674558404e-06},
                                             {63, 3.068925988914511e-07}};
  for (const auto& [i, v] : expected) EXPECT_NEAR(f[static_cast<size_t>(i)] / v, 1.0, 1e-12) << "index " << i;
}

}  // namespace
}  // namespace razerq::eval
