#pragma once
// A causal language model in libtorch, for evaluation: the LLaMA family (llama, mistral, qwen2)
// and OPT, built from a Hugging Face directory or a razerq packed checkpoint.
//
// Loading: every tensor the architecture needs is checked (a missing one, or one of the wrong
// shape, throws razerq::Error naming the tensor and the expected shape) and converted once to
// the model dtype on the model device. The quantized linears of a packed checkpoint are
// dequantized once, at load ("reference dequant cached per layer"): on CPU, and on CUDA for
// fp32/bf16, by kernels::dequantize_to_float (equal to the float64 reference rounded once to
// float32); on CUDA with fp16 (when built with the CUDA kernels) by the dequant-to-fp16 kernel
// (equal to the reference rounded once to fp16). Forward then runs dense matmuls.
//
// The forward follows transformers' eager implementations: RMSNorm in float32, HF rotate_half
// RoPE (tables computed in float64, rounded to the model dtype), attention scores in the model
// dtype with a float32 softmax, and the logits returned as float32. CUDA fp16 models of packed
// checkpoints keep the packed weights too: decode-sized products (<= 16 rows) run the fused
// dequant GEMV on them (ModelOptions::fused_gemv), prefill-sized ones the dense weights.
//
// This header includes <torch/types.h>; nothing here includes spdlog (log through common/log.hpp).
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "eval/model_config.hpp"
#include "eval/weight_source.hpp"
#include "kernels/cpu/sim_arith.hpp"
#include "quantizer/hadamard.hpp"

namespace razerq::eval {

// Called with a linear layer's checkpoint prefix ("model.layers.3.mlp.up_proj") and its input
// [B, T, in] each time the layer runs (activation capture for calibration).
using LinearHook = std::function<void(const std::string& name, const torch::Tensor& input)>;

struct ModelOptions {
  torch::ScalarType dtype = torch::kFloat32;  // kFloat32, kFloat16 or kBFloat16
  torch::Device device = torch::Device(torch::kCPU);
  int threads = 0;  // dequantization threads at load and simulated-arithmetic threads (<= 0: OpenMP's default)
  // On CUDA with libtorch >= 2: attention through at::scaled_dot_product_attention (flash /
  // memory-efficient kernels) for whole windows and one-token decode steps without a sliding
  // window. Otherwise (and always on CPU) the eager path: scores in the model dtype, float32
  // softmax, causal chunks.
  bool fused_attention = true;
  // CUDA fp16 models of packed checkpoints (3/4-bit formats the fused kernel takes): products with
  // at most 16 rows of x (token-by-token decoding) run kernels::gemv_fp16_cuda on the packed
  // weights, kept on the device beside the dequantized ones; larger ones run the dense matmul.
  // (Every LLaMA model on CUDA, packed or not, also runs such products of q/k/v as one linear
  // and of gate/up as one: weights concatenated by rows at load, the parts views into them.)
  bool fused_gemv = true;
  // The static decode step (forward_static) of a LLaMA-family model on CUDA in fp16 or bf16 runs
  // its small operations through our kernels (kernels/cuda/decode_ops_cuda.hpp: residual add +
  // RMSNorm twice, RoPE + K/V cache write + split-K attention in one, SiLU * up: 4 launches per
  // layer beside the products instead of ~25 libtorch ops) when razerq is built with the CUDA kernels against
  // a CUDA libtorch. false: libtorch's ops, as on CPU and in forward() (for tests and `razerq
  // bench decode --decode-ops libtorch`). Model::decode_kernels() says which one a model takes.
  bool fused_decode_ops = true;
  // With fused_decode_ops: a packed model's fused gate/up product (fp16) writes SiLU * up itself
  // (kernels::gemv_silu_mul_fp16_cuda: each lane holds a gate row's and its up row's sums), one
  // launch less per layer, the same bits as the product followed by the SiLU kernel where that
  // product runs one tile per block and the GEMV's split tail splits neither's tiles
  // (kernels/cuda/gemv_cuda.hpp). false: the product, then kernels::silu_mul_cuda (`razerq bench
  // decode --decode-ops separate-silu`).
  bool silu_epilogue = true;
  // With fused_decode_ops, fp16 and packed weights the norm epilogues take (every product of
  // every layer; kernels/cuda/gemv_cuda.hpp gemv_add_norm_fp16_cuda): the residual add + RMSNorm
  // between the products runs in them (the o and down products add into the residual stream and
  // write the next x unnormalised with its sums of squares; q/k/v and gate/up scale their sums by
  // the rsqrt), so a step launches 2 norm kernels instead of 2 per layer. The normalisation then
  // enters after the product instead of before x's fp16 rounding: logits differ in the last bits
  // from the separate kernels' (tests bound it). At batch sizes the kernels take (M <= 8 and M x
  // ceil(hidden / 64) x 4 <= 1024: 1..4 at hidden 4096); others keep the norm kernels. Off by
  // default: on the H100 the 7B-shaped razer4 step ran 3 % slower with them at batch 1 and 5 % at
  // batch 4 than with the norm kernels (bench/decode.md, thirty-fifth session). `razerq bench
  // decode --decode-ops norm-epilogue` measures them.
  bool norm_epilogue = false;
  // Simulated custom-precision arithmetic (`razerq eval --sim-mul/--sim-acc`): the quantized
  // linears (those stored quantized in the packed checkpoint) compute x W^T with every product
  // rounded to sim->mul and every partial sum to sim->acc, k in order (kernels/cpu/sim_arith.hpp:
  // operands rounded to mul too; x is the activation in the model dtype, W the dequantized
  // weight as loaded), by kernels::sim_gemm_cpu or, on CUDA, kernels::sim_gemm_cuda; the result
  // is rounded to the model dtype, then the bias (if any) is added as usual. Everything else
  // (other linears, attention, norms, LM head) is unchanged. Loading a model without quantized
  // linears with this set throws kInvalidArgument (nothing would be simulated). Replaces the
  // fused GEMV in those linears. CUDA: device 0 only (kUnsupported otherwise).
  std::optional<kernels::SimArith> sim;
};

// "fp32"/"float32", "fp16"/"float16"/"half", "bf16"/"bfloat16"; else kInvalidArgument.
torch::ScalarType parse_dtype(const std::string& s);
const char* dtype_label(torch::ScalarType t);  // "float32", "float16", "bfloat16"
// "cpu", "cuda", "cuda:N"; else kInvalidArgument. CUDA without a usable device: kUnsupported.
torch::Device parse_device(const std::string& s);

// Keys and values of the layers already seen, for incremental decoding: forward(ids, &cache)
// appends the new positions. One cache per sequence batch; clear() to reuse it.
struct KVCache {
  std::vector<torch::Tensor> k, v;  // per layer: [B, kv_heads, length, head_dim]
  int64_t length = 0;               // positions already in the cache
  void clear() {
    k.clear();
    v.clear();
    length = 0;
  }
};

// A preallocated KV cache for one-token decode steps whose tensors all keep their shapes and
// addresses (Model::forward_static; eval::StaticDecoder builds on it, eval/decode.hpp), so that
// a step can be captured in a CUDA graph. Made by Model::make_static_cache; fields are the
// step's inputs and state, on the model device.
struct StaticKVCache {
  int64_t batch = 0, capacity = 0;    // positions the buffers hold
  std::vector<torch::Tensor> k, v;    // per layer: [B, kv_heads, capacity, head_dim], model dtype, zeros at first
  torch::Tensor pos;                  // int64 [1]: the position the next step writes (its K/V slot)
  torch::Tensor ids;                  // int64 [B, 1]: the tokens the next step reads
  torch::Tensor cos, sin;             // [capacity, head_dim], model dtype: RoPE tables as forward's (float64, rounded once)
  torch::Tensor key_pos;              // int64 [capacity]: 0 .. capacity-1 (the attention mask is key_pos > pos)
  // Models on the decode kernels (Model::decode_kernels()): the attention's workspace, bytes
  // (kernels/cuda/decode_ops_cuda.hpp; its counters zero, as every step leaves them). Else undefined.
  torch::Tensor attn_ws;
};

// The orthogonal transform x -> x Q of quantizer::hadamard_plan(n) on the last axis of x,
// applied factor by factor (Kronecker structure: cost n x the sum of the factor orders per
// row), in float32, the result in x's dtype. The online Hadamard op of rotated models
// (ModelConfig::online_hadamard_down); calib/rotation.cpp multiplies the weights by the same Q.
class OnlineHadamard {
 public:
  OnlineHadamard() = default;
  OnlineHadamard(int64_t n, torch::Device device);
  bool defined() const { return n_ > 0; }
  int64_t size() const { return n_; }
  const quantizer::HadamardPlan& plan() const { return plan_; }
  torch::Tensor operator()(const torch::Tensor& x) const;

 private:
  int64_t n_ = 0;
  quantizer::HadamardPlan plan_;
  std::vector<torch::Tensor> factors_;  // float32 [order, order] each, +-1
  double scale_ = 1.0;                  // 1 / sqrt(block)
};

class Model {
 public:
  // A packed checkpoint when `path` holds manifest.json, else a Hugging Face directory.
  static Model load(const std::string& path, const ModelOptions& opt = {});
  static Model load(const WeightSource& src, const ModelOptions& opt = {});

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const ModelConfig& config() const;
  const ModelOptions& options() const;
  torch::ScalarType dtype() const { return options().dtype; }
  torch::Device device() const { return options().device; }
  const std::string& path() const;
  bool packed() const;
  int64_t quantized_tensors() const;  // dequantized at load
  int64_t fused_gemv_tensors() const;  // of those, kept packed for the fused GEMV
  // Device bytes those packed copies take (each allocation once: the q/k/v and gate/up parts
  // are row views of their fused linear's concatenation on CUDA).
  int64_t fused_gemv_bytes() const;
  int64_t simulated_linears() const;   // linears running ModelOptions::sim (0 without it)
  // Fused-GEMV products run by all models of this process so far.
  static int64_t fused_gemv_calls();
  // Of those, gate/up products that wrote SiLU * up themselves (ModelOptions::silu_epilogue).
  static int64_t silu_epilogue_calls();
  // Of those, products with a norm epilogue (ModelOptions::norm_epilogue).
  static int64_t norm_epilogue_calls();
  // Whether forward_static runs the CUDA decode kernels (ModelOptions::fused_decode_ops, and the
  // model on CUDA in fp16/bf16, a CUDA libtorch, head_dim even and <= 256); else libtorch's ops.
  bool decode_kernels() const;
  // Static decode steps run through the decode kernels by all models of this process so far.
  static int64_t decode_kernel_steps();
  int64_t parameters() const;         // elements of the loaded tensors (tied ones once)
  double load_seconds() const;
  // One line: path, architecture summary, dtype, device, quantized tensors.
  std::string describe() const;

  // ids: [B, T] integer token ids (int64 or int32, any device). Returns float32 logits
  // [B, T, vocab] on the model device, computed in the model dtype. Causal attention over
  // the T positions. Ids outside [0, vocab) throw kInvalidArgument; for OPT, positions past
  // max_position_embeddings throw kInvalidArgument.
  torch::Tensor forward(const torch::Tensor& ids) const;
  // Same, continuing the sequences in `cache` (positions cache->length ...), which it
  // extends; nullptr = no cache. Batch size must match the cache's.
  torch::Tensor forward(const torch::Tensor& ids, KVCache* cache) const;

  // The static decode step (LLaMA family without a sliding window; anything else throws
  // kUnsupported from make_static_cache). make_static_cache allocates the buffers (K/V zeros,
  // pos 0, ids 0); batch >= 1, capacity >= 1. forward_static(c) runs one token per row: it reads
  // c.ids [B, 1] at position c.pos, writes the new K/V into slot c.pos of every layer
  // (index_copy_), attends over all `capacity` slots with an additive mask (-inf where the key
  // position > pos, computed on the device from pos) and returns float32 logits [B, 1, vocab].
  // It does not advance pos, checks no token ids and never synchronises with the host (every
  // shape is fixed, every position is a device tensor): the work of a step can be captured in a
  // CUDA graph. The caller keeps pos < capacity and the ids in [0, vocab). Its logits equal
  // forward(c.ids, &dynamic cache) over the same prefix up to the summation order of the longer
  // (masked) key axis. Attention: at::scaled_dot_product_attention with the mask where
  // forward() would use the fused kernel (CUDA, libtorch >= 2, fused_attention), else forward()'s
  // eager arithmetic (scores in the model dtype, float32 softmax) over the masked capacity.
  // With decode_kernels(), the step's norms, RoPE, cache writes, attention (over slots 0 .. pos
  // only, split over the key axis; float32 scores, softmax and sums, one rounding) and SiLU run as
  // our CUDA kernels, rounded where libtorch's ops round: the same logits up to the attention's
  // summation order. The products (q/k/v, o, gate/up, down, LM head) are the same Linear calls.
  StaticKVCache make_static_cache(int64_t batch, int64_t capacity) const;
  torch::Tensor forward_static(StaticKVCache& c) const;

  // The forward in pieces, for calibration (sequential, layer-by-layer quantization):
  // head(layer(n-1, ... layer(0, embed(ids)))) equals forward(ids) (positions 0 .. T-1, no cache).
  // embed: token (and OPT position) embeddings [B, T, hidden]; layer: decoder block i, calling
  // `hook` with each linear's input; head: final norm, projections and LM head (float32 logits).
  torch::Tensor embed(const torch::Tensor& ids) const;
  torch::Tensor layer(int64_t i, const torch::Tensor& hidden, const LinearHook& hook = nullptr) const;
  torch::Tensor head(const torch::Tensor& hidden) const;
  // head() with autograd left as the caller set it (gradients through the LM head into the
  // layers, e.g. the Fisher diagonal of calib/sensitivity.hpp).
  torch::Tensor head_with_grad(const torch::Tensor& hidden) const;
  // layer() with some of the block's linear weights replaced (checkpoint name -> [out, in]
  // tensor, e.g. a fake-quantized weight that requires grad) and autograd left as the caller
  // set it: for learned quantization parameters (calib/lwc.hpp). No hook.
  torch::Tensor layer_with(int64_t i, const torch::Tensor& hidden, const std::map<std::string, torch::Tensor>& weights) const;
  int64_t num_layers() const;
  // The checkpoint prefixes of block i's linears, in the order the forward runs them.
  std::vector<std::string> layer_linears(int64_t i) const;
  // Overwrites a loaded tensor in place (e.g. a linear's weight by its quantized value):
  // same shape, converted to the model dtype and device; unknown names or shapes throw.
  void set_tensor(const std::string& name, const torch::Tensor& value);

  // A loaded tensor by its checkpoint name (model dtype, model device), e.g.
  // "model.layers.0.self_attn.q_proj.weight"; for a packed checkpoint the dequantized matrix.
  // Unknown names throw kInvalidArgument.
  torch::Tensor tensor(const std::string& name) const;
  std::vector<std::string> tensor_names() const;

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace razerq::eval
