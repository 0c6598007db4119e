#pragma once
// Weight-only Hadamard rotation of a LLaMA-family model (QuaRot, Ashkboos et al. 2024;
// spcl/QuaRot rotation_utils.py), before quantization. Built with libtorch only (it hands the
// rotated model to eval::Model through an in-memory eval::WeightSource).
//
// 1. Every RMSNorm weight g is folded into the linears that read the norm's output
//    (q/k/v, gate/up, the LM head): W <- W diag(g), g <- 1.
// 2. The residual stream is rotated by Q = D H / sqrt(n) (n = hidden size, H the Hadamard
//    matrix of quantizer::hadamard_plan(n), D a seeded random +-1 diagonal): the embeddings
//    E <- E Q, the readers W <- W Q (q/k/v, gate/up, LM head), the writers W <- Q^T W (o_proj,
//    down_proj; their biases b <- Q^T b). RMSNorm commutes with an orthogonal Q (rms(xQ) = rms(x))
//    once its weight is 1, so the model computes the same function.
// 3. down_proj's input is rotated online: W_down <- W_down Hf with Hf the orthogonal transform of
//    hadamard_plan(intermediate_size), and the forward applies x <- x Hf before down_proj
//    (config.json "razerq_online_hadamard": ["down_proj"], eval::OnlineHadamard).
// A tied LM head is untied (it carries the final norm's weight, the embeddings do not).
// All arithmetic in float64; tensors handed out in float32.
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/weight_source.hpp"
#include "formats/quantize_model.hpp"

namespace razerq::calib {

struct RotationOptions {
  uint64_t seed = 0;  // the random signs of D (std::mt19937_64, one bit per sign)
};

// A model held in memory: its config.json and every tensor (float32), in source order.
struct FloatModel {
  std::string dir;  // for messages
  nlohmann::json config;
  std::vector<std::string> names;
  std::map<std::string, formats::FloatTensor> tensors;
  nlohmann::json config_patch = nlohmann::json::object();  // what changed in config.json (merge patch)
  nlohmann::json record = nlohmann::json::object();        // the manifest's "rotation" entry
};

// Rotates a Hugging Face LLaMA-family model (llama, mistral, qwen2); other architectures throw
// kUnsupported. Stored dtypes are kept in FloatTensor::dtype (the untied head: the embedding's).
FloatModel rotate_model(const eval::WeightSource& src, const RotationOptions& opt = {});

// An eval::WeightSource over a FloatModel (which must outlive it).
std::unique_ptr<eval::WeightSource> memory_source(const FloatModel& m);

}  // namespace razerq::calib
