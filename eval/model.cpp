// libtorch forward of the LLaMA family and OPT, and the static decode step (forward_static).
// One of the three translation units of razerq_eval that include torch (with decode.cpp and
// perplexity.cpp): keep it that way, each costs about 30 s to compile.
#include "eval/model.hpp"

#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/utils.h>
#include <torch/version.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <unordered_map>

#include "common/error.hpp"
#include "common/log.hpp"
#include "formats/safetensors.hpp"
#include "kernels/cpu/sim_gemm.hpp"
#if defined(RAZERQ_HAS_CUDA)
#include "kernels/cpu/dequant.hpp"
#include "kernels/cuda/decode_ops_cuda.hpp"
#include "kernels/cuda/dequant_cuda.hpp"
#include "kernels/cuda/gemv_cuda.hpp"
#include "kernels/cuda/sim_gemm_cuda.hpp"
#endif
#if defined(RAZERQ_TORCH_CUDA)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif
// The static decode step's CUDA kernels (Model::decode_kernels) need our kernels and libtorch's
// CUDA stream and device guard.
#if defined(RAZERQ_HAS_CUDA) && defined(RAZERQ_TORCH_CUDA)
#define RAZERQ_DECODE_KERNELS 1
#endif

namespace razerq::eval {

namespace {

using torch::indexing::Slice;

#if TORCH_VERSION_MAJOR >= 2
constexpr bool kFusedAttentionAvailable = true;  // at::scaled_dot_product_attention
#else
constexpr bool kFusedAttentionAvailable = false;
#endif

std::string c10_message(const c10::Error& e) {
  std::string m = e.what_without_backtrace();
  const size_t nl = m.find('\n');
  return nl == std::string::npos ? m : m.substr(0, nl);
}

#if defined(RAZERQ_HAS_CUDA)
// The stream our CUDA kernels run on for a tensor on `d`: libtorch's current stream there (the
// one its own kernels use, a side stream during a CUDA-graph capture: eval::StaticDecoder);
// without a CUDA libtorch (no tensor can be on CUDA then) the legacy default stream.
void* torch_stream(const torch::Device& d) {
#if defined(RAZERQ_TORCH_CUDA)
  return static_cast<void*>(c10::cuda::getCurrentCUDAStream(d.index()).stream());
#else
  (void)d;
  return nullptr;
#endif
}
#endif

// Calls of the fused GEMV (decode-style products), counted for tests and logs.
std::atomic<int64_t> g_fused_calls{0};
// Gate/up products with the SiLU epilogue (Model::silu_epilogue_calls).
std::atomic<int64_t> g_silu_epilogue_calls{0};
// Products with a norm epilogue (Model::norm_epilogue_calls).
std::atomic<int64_t> g_norm_epilogue_calls{0};
// Static decode steps run through the decode kernels (Model::decode_kernel_steps).
std::atomic<int64_t> g_decode_kernel_steps{0};

#if defined(RAZERQ_HAS_CUDA)
// x as the fused GEMV takes it: [rows, in] dense, 16-byte aligned (a copy where it is not).
torch::Tensor gemv_input(const torch::Tensor& x, int64_t rows, int64_t in) {
  torch::Tensor x2 = x.reshape({rows, in}).contiguous();
  if (reinterpret_cast<uintptr_t>(x2.data_ptr()) % 16) x2 = x2.clone();
  return x2;
}
#endif

struct Linear {
  torch::Tensor w;   // [out, in]
  torch::Tensor b;   // [out] or undefined
  std::string name;  // checkpoint prefix, e.g. "model.layers.0.self_attn.q_proj"
#if defined(RAZERQ_HAS_CUDA)
  // The packed weight on the device (CUDA fp16 models of packed checkpoints): products with at
  // most kGemvMaxM rows of x (decoding) run the fused-dequant GEMV on it; larger ones (prefill)
  // the dense matmul on w, which the dequant kernel produced at load.
  std::shared_ptr<kernels::DeviceTensor> packed;
#endif
  // Quantized linears under ModelOptions::sim: the simulated-arithmetic product.
  std::optional<kernels::SimArith> sim;
  int sim_threads = 0;

  // y = x W^T by the simulated arithmetic, in float32 (the formats' values all are float32
  // values), rounded to x's dtype; then the bias in that dtype.
  torch::Tensor simulated(const torch::Tensor& x) const {
    const int64_t in = w.size(1), out = w.size(0), rows = x.numel() / in;
    const torch::Tensor x32 = x.reshape({rows, in}).to(torch::kFloat32).contiguous();
    const torch::Tensor w32 = w.to(torch::kFloat32).contiguous();
    torch::Tensor y = torch::empty({rows, out}, x32.options());
    if (x.is_cuda()) {
#if defined(RAZERQ_HAS_CUDA)
      kernels::sim_gemm_cuda(x32.data_ptr<float>(), w32.data_ptr<float>(), rows, out, in, y.data_ptr<float>(), *sim,
                             torch_stream(x.device()));
#else
      throw_error(ErrorKind::kUnsupported, name, "simulated arithmetic on CUDA needs razerq built with the CUDA kernels");
#endif
    } else {
      kernels::sim_gemm_cpu(x32.data_ptr<float>(), w32.data_ptr<float>(), rows, out, in, y.data_ptr<float>(), *sim,
                            sim_threads);
    }
    y = y.to(x.scalar_type());
    if (b.defined()) y = y + b;
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = out;
    return y.view(shape);
  }

  torch::Tensor operator()(const torch::Tensor& x, const LinearHook* hook = nullptr) const {
    if (hook && *hook) (*hook)(name, x);
    if (sim) return simulated(x);
#if defined(RAZERQ_HAS_CUDA)
    if (packed && x.is_cuda() && x.scalar_type() == torch::kFloat16) {
      const int64_t in = w.size(1), out = w.size(0), rows = x.numel() / in;
      if (rows >= 1 && rows <= kernels::kGemvMaxM) {
        const torch::Tensor x2 = gemv_input(x, rows, in);
        torch::Tensor y = torch::empty({rows, out}, x.options());
        kernels::gemv_fp16_cuda(*packed, reinterpret_cast<const uint16_t*>(x2.data_ptr()), rows,
                                reinterpret_cast<uint16_t*>(y.data_ptr()), torch_stream(x.device()));
        g_fused_calls.fetch_add(1, std::memory_order_relaxed);
        if (b.defined()) y = y + b;
        std::vector<int64_t> shape = x.sizes().vec();
        shape.back() = out;
        return y.view(shape);
      }
    }
#endif
    return b.defined() ? torch::linear(x, w, b) : torch::linear(x, w);
  }

  // This fused gate/up linear ([gate; up], F rows each) writes act [rows, F] = silu(gate) * up by
  // the GEMV's SiLU epilogue (kernels::gemv_silu_mul_fp16_cuda) and returns true where that
  // applies: a packed weight the epilogue takes, no bias, an fp16 CUDA x of 1 .. kGemvMaxM rows.
  // Else false, act untouched (the caller runs the product and the SiLU kernel).
  bool silu_mul_into(const torch::Tensor& x, const torch::Tensor& act) const {
#if defined(RAZERQ_HAS_CUDA)
    if (!packed || sim || b.defined() || !x.is_cuda() || x.scalar_type() != torch::kFloat16) return false;
    const int64_t in = w.size(1), rows = x.numel() / in;
    if (rows < 1 || rows > kernels::kGemvMaxM || !kernels::gemv_silu_mul_supported(*packed)) return false;
    if (!act.is_contiguous() || act.scalar_type() != torch::kFloat16 || act.numel() != rows * packed->rows / 2)
      throw_error(ErrorKind::kInternal, name, "silu_mul_into: act is not a dense fp16 [%lld, %lld] tensor",
                  static_cast<long long>(rows), static_cast<long long>(packed->rows / 2));
    const torch::Tensor x2 = gemv_input(x, rows, in);
    kernels::gemv_silu_mul_fp16_cuda(*packed, reinterpret_cast<const uint16_t*>(x2.data_ptr()), rows,
                                     reinterpret_cast<uint16_t*>(act.data_ptr()), torch_stream(x.device()));
    g_fused_calls.fetch_add(1, std::memory_order_relaxed);
    g_silu_epilogue_calls.fetch_add(1, std::memory_order_relaxed);
    return true;
#else
    (void)x, (void)act;
    return false;
#endif
  }

#if defined(RAZERQ_HAS_CUDA)
  // The decode step's norm epilogues (kernels/cuda/gemv_cuda.hpp, gemv_add_norm_fp16_cuda and
  // gemv_normed_*; ModelOptions::norm_epilogue): whether this linear's packed weight takes them
  // for `rows` rows of x normed over n elements (no bias, no simulated arithmetic).
  bool norm_epilogue_ok(int64_t rows, int64_t n) const {
    return packed && !sim && !b.defined() && kernels::gemv_norm_supported(*packed, rows, n);
  }
  // h += x W^T, x_out = h * norm_w * x_scale and the sums of squares into slots
  // (gemv_add_norm_fp16_cuda); norm_epilogue_ok(rows, out) checked by the caller.
  void add_norm_into(const torch::Tensor& x, const torch::Tensor& h, const torch::Tensor& norm_w, float x_scale,
                     const torch::Tensor& x_out, const torch::Tensor& slots) const {
    const int64_t in = w.size(1), rows = x.numel() / in;
    const torch::Tensor x2 = gemv_input(x, rows, in);
    kernels::gemv_add_norm_fp16_cuda(*packed, reinterpret_cast<const uint16_t*>(x2.data_ptr()), rows,
                                     reinterpret_cast<uint16_t*>(h.data_ptr()),
                                     reinterpret_cast<const uint16_t*>(norm_w.data_ptr()), x_scale,
                                     reinterpret_cast<uint16_t*>(x_out.data_ptr()), slots.data_ptr<float>(),
                                     torch_stream(x.device()));
    g_fused_calls.fetch_add(1, std::memory_order_relaxed);
    g_norm_epilogue_calls.fetch_add(1, std::memory_order_relaxed);
  }
  // y [rows, out] = the normed product of x (an add_norm_into x_out) by the slots
  // (gemv_normed_fp16_cuda); norm_epilogue_ok(rows, in) checked by the caller.
  torch::Tensor normed(const torch::Tensor& x, const torch::Tensor& slots, float eps, float x_scale) const {
    const int64_t in = w.size(1), out = w.size(0), rows = x.numel() / in;
    const torch::Tensor x2 = gemv_input(x, rows, in);
    torch::Tensor y = torch::empty({rows, out}, x.options());
    kernels::gemv_normed_fp16_cuda(*packed, reinterpret_cast<const uint16_t*>(x2.data_ptr()), rows,
                                   slots.data_ptr<float>(), eps, x_scale, reinterpret_cast<uint16_t*>(y.data_ptr()),
                                   torch_stream(x.device()));
    g_fused_calls.fetch_add(1, std::memory_order_relaxed);
    g_norm_epilogue_calls.fetch_add(1, std::memory_order_relaxed);
    return y;
  }
  // The fused gate/up linear: act = silu(gate) * up of the normed product (gemv_normed_silu_mul_fp16_cuda)
  // where the SiLU epilogue takes this weight (true), else false and act untouched.
  bool normed_silu_mul_into(const torch::Tensor& x, const torch::Tensor& slots, float eps, float x_scale,
                            const torch::Tensor& act) const {
    if (!kernels::gemv_silu_mul_supported(*packed)) return false;
    const int64_t in = w.size(1), rows = x.numel() / in;
    if (!act.is_contiguous() || act.scalar_type() != torch::kFloat16 || act.numel() != rows * packed->rows / 2)
      throw_error(ErrorKind::kInternal, name, "normed_silu_mul_into: act is not a dense fp16 [%lld, %lld] tensor",
                  static_cast<long long>(rows), static_cast<long long>(packed->rows / 2));
    const torch::Tensor x2 = gemv_input(x, rows, in);
    kernels::gemv_normed_silu_mul_fp16_cuda(*packed, reinterpret_cast<const uint16_t*>(x2.data_ptr()), rows,
                                            slots.data_ptr<float>(), eps, x_scale,
                                            reinterpret_cast<uint16_t*>(act.data_ptr()), torch_stream(x.device()));
    g_fused_calls.fetch_add(1, std::memory_order_relaxed);
    g_silu_epilogue_calls.fetch_add(1, std::memory_order_relaxed);
    g_norm_epilogue_calls.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
#endif
};

struct Norm {
  torch::Tensor w, b;  // b: LayerNorm only (may be undefined)
  // The norm epilogues' x_scale (kernels::gemv_add_norm_fp16_cuda): 2^-ceil(log2 max |w|) where
  // that is above 1, else 1, so that h * w * x_scale stays within |h| (set at load on CUDA with
  // ModelOptions::norm_epilogue, and by set_tensor: refresh_x_scale).
  float x_scale = 1.f;
  void refresh_x_scale() {
    x_scale = 1.f;
    if (!w.defined()) return;
    const float m = w.abs().max().item<float>();
    int e = 0;
    if (std::isfinite(m) && m > 1.f) {
      (void)std::frexp(m, &e);  // m = f 2^e, f in [0.5, 1): m <= 2^e
      x_scale = std::ldexp(1.f, -e);
    }
  }
};

// Products of at most this many rows of x on CUDA (decoding) take the fused q/k/v and gate/up
// linears when a layer has them (Layer::qkv, Layer::gateup).
constexpr int64_t kFusedRows = 16;

struct Layer {
  Norm ln1, ln2;  // LLaMA: input_layernorm, post_attention_layernorm; OPT: self_attn_layer_norm, final_layer_norm
  Linear q, k, v, o;
  Linear gate, up, down;  // LLaMA MLP
  Linear fc1, fc2;        // OPT MLP
  // LLaMA on CUDA: q/k/v and gate/up as one linear each (weights concatenated by rows; q.w, k.w,
  // v.w, gate.w, up.w are views into them; packed checkpoints: the packed rows concatenated
  // too), for decode-sized products: one launch instead of three (two). Undefined w: not fused.
  Linear qkv, gateup;
  bool sliding = false;
};

// Whether the fused linear f (Layer::qkv / gateup) takes this product: it exists, no hook
// watches the separate linears' inputs, and x is a decode-sized CUDA input.
bool use_fused(const Linear& f, const torch::Tensor& x, const LinearHook* hook) {
  return f.w.defined() && !(hook && *hook) && x.is_cuda() && x.numel() / x.size(-1) <= kFusedRows;
}

// One static decode step (Model::forward_static): the cache and the step's additive mask.
struct StaticStep {
  StaticKVCache* c;
  torch::Tensor mask;  // [1, 1, 1, capacity], model dtype: 0 where key position <= pos, -inf elsewhere
};

}  // namespace

struct Model::Impl {
  ModelConfig cfg;
  ModelOptions opt;
  std::string path;
  bool packed = false;
  int64_t quantized = 0;
  int64_t simulated = 0;  // linears under opt.sim
  bool decode_kernels = false;  // forward_static through forward_static_kernels (set at load)
  int64_t params = 0;
  double load_seconds = 0;

  std::unordered_map<std::string, torch::Tensor> tensors;  // by checkpoint name
#if defined(RAZERQ_HAS_CUDA)
  std::unordered_map<std::string, std::shared_ptr<kernels::DeviceTensor>> packed_weights;  // fused GEMV operands
#endif
  std::vector<std::string> names;                          // load order

  torch::Tensor embed;      // [V, E]
  torch::Tensor positions;  // OPT: [max_pos + 2, H]
  Linear project_in, project_out;  // OPT when word_embed_proj_dim != hidden_size
  std::vector<Layer> layers;
  Norm final_norm;  // LLaMA: model.norm; OPT: decoder.final_layer_norm (w undefined when absent)
  Linear lm_head;
  torch::Tensor inv_freq;  // float64 [head_dim / 2], CPU
  OnlineHadamard had_down;  // rotated models: applied to down_proj's input (ModelConfig::online_hadamard_down)

  // ---- loading ----
  torch::Tensor load(const WeightSource& src, const std::string& name, const std::vector<int64_t>& shape);
  Linear load_linear(const WeightSource& src, const std::string& prefix, int64_t out, int64_t in, bool bias);
  Norm load_norm(const WeightSource& src, const std::string& prefix, int64_t n, bool bias);
  void load_llama(const WeightSource& src);
  Linear fuse(const std::vector<Linear*>& parts, const std::string& name);
  void load_opt(const WeightSource& src);

  // ---- forward ----
  torch::Tensor rms_norm(const torch::Tensor& x, const Norm& n) const;
  torch::Tensor layer_norm(const torch::Tensor& x, const Norm& n) const;
  torch::Tensor attention(const Layer& L, size_t li, const torch::Tensor& x, const torch::Tensor& cos,
                          const torch::Tensor& sin, KVCache* cache, const LinearHook* hook = nullptr,
                          const StaticStep* st = nullptr) const;
  // forward() in pieces (also the calibration API of Model: embed / layer / head).
  // The static decode step's attention (q [B, nh, 1, hd], k and v [B, nkv, 1, hd] after RoPE).
  torch::Tensor attention_static(const Layer& L, size_t li, const torch::Tensor& q, const torch::Tensor& k,
                                 const torch::Tensor& v, const StaticStep& st, bool fused, const LinearHook* hook) const;
  torch::Tensor check_ids(const torch::Tensor& ids) const;
  torch::Tensor embed_tokens(const torch::Tensor& ids, int64_t p0) const;
  void rope_tables(int64_t p0, int64_t T, torch::ScalarType dt, torch::Tensor& cos, torch::Tensor& sin) const;
  torch::Tensor layer_forward(size_t li, torch::Tensor h, const torch::Tensor& cos, const torch::Tensor& sin,
                              KVCache* cache, const LinearHook* hook, const Layer* replaced = nullptr,
                              const StaticStep* st = nullptr) const;
  torch::Tensor head(torch::Tensor h) const;
  int64_t attention_chunk(int64_t rows, int64_t Tk, int64_t T) const;
  torch::Tensor forward(const torch::Tensor& ids, KVCache* cache) const;
  torch::Tensor forward_static(StaticKVCache& c) const;
  bool decode_kernels_usable() const;
#if defined(RAZERQ_DECODE_KERNELS)
  torch::Tensor forward_static_kernels(StaticKVCache& c) const;
  bool norm_epilogue_applies(int64_t B) const;
#endif
};

// ---- loading ------------------------------------------------------------------------------

torch::Tensor Model::Impl::load(const WeightSource& src, const std::string& name, const std::vector<int64_t>& shape) {
  if (!src.has(name))
    throw_error(ErrorKind::kMalformedInput, src.dir(), "tensor '%s' is missing (expected shape %s for %s)", name.c_str(),
                formats::shape_string(shape).c_str(), cfg.model_type.c_str());
  const std::vector<int64_t> got = src.shape(name);
  if (got != shape)
    throw_error(ErrorKind::kMalformedInput, src.file_of(name) + ": tensor '" + name + "'", "shape %s (expected %s for %s)",
                formats::shape_string(got).c_str(), formats::shape_string(shape).c_str(), cfg.model_type.c_str());
  if (auto it = tensors.find(name); it != tensors.end()) return it->second;

  torch::Tensor t;
  const bool q = src.quantized(name);
#if defined(RAZERQ_HAS_CUDA)
  // fp16 on CUDA: our dequant-to-fp16 kernel (the reference rounded once to fp16). It runs on
  // the current CUDA device, so only when the model lives on device 0 (or the default one).
  // Tensors with OA-CIM side parts (outliers, second-level scales, offsets) have no CUDA kernel:
  // they take the CPU dequantization below and are never kept packed for the fused GEMV.
  if (q && opt.device.is_cuda() && opt.dtype == torch::kFloat16 && opt.device.index() <= 0) {
    const quantizer::QuantizedTensor qt = src.load_quantized(name);
    if (qt.cfg.spec().scale_kind == quantizer::ScaleKind::kLutRow) {
      // lut (sparse part included): the CPU decoder, rounded once to fp16, then copied; the
      // LUT GEMV (kernels/cuda/lut_gemv_cuda.hpp) is not wired into the forward.
      torch::Tensor host = torch::empty({qt.rows, qt.cols}, torch::TensorOptions().dtype(torch::kFloat16));
      kernels::dequantize_to_fp16(qt, reinterpret_cast<uint16_t*>(host.data_ptr()), opt.threads);
      t = host.to(opt.device);
    } else if (!qt.cfg.opts.has_side_parts()) {
      kernels::DeviceTensor dt = kernels::upload(qt);
      t = torch::empty({qt.rows, qt.cols}, torch::TensorOptions().dtype(torch::kFloat16).device(opt.device));
      kernels::dequantize_fp16_cuda(dt, reinterpret_cast<uint16_t*>(t.data_ptr()), nullptr);
      kernels::cuda_synchronize(nullptr);
      if (opt.fused_gemv && kernels::gemv_supported(dt))
        packed_weights.emplace(name, std::make_shared<kernels::DeviceTensor>(std::move(dt)));
    }
  }
#endif
  if (!t.defined() && !q) {
    // Stored in the model dtype: copy the bytes as they are (a 7B fp16 checkpoint loads at the
    // speed of the copy instead of through float32).
    std::string stored;
    const void* bytes = src.raw(name, &stored);
    const torch::ScalarType st = stored == "F16"    ? torch::kFloat16
                                 : stored == "BF16" ? torch::kBFloat16
                                 : stored == "F32"  ? torch::kFloat32
                                                    : torch::kByte;
    if (bytes && st == opt.dtype && reinterpret_cast<uintptr_t>(bytes) % torch::elementSize(st) == 0) {
      const torch::Tensor view = torch::from_blob(const_cast<void*>(bytes), shape, torch::TensorOptions().dtype(st));
      t = opt.device.is_cpu() ? view.clone() : view.to(opt.device);
    }
  }
  if (!t.defined()) {
    torch::Tensor host = torch::empty(shape, torch::TensorOptions().dtype(torch::kFloat32));
    src.read_float(name, host.data_ptr<float>(), opt.threads);
    t = host.to(opt.device, opt.dtype);
  }
  if (q) ++quantized;
  params += t.numel();
  tensors.emplace(name, t);
  names.push_back(name);
  return t;
}

Linear Model::Impl::load_linear(const WeightSource& src, const std::string& prefix, int64_t out, int64_t in, bool bias) {
  Linear l;
  l.name = prefix;
  l.w = load(src, prefix + ".weight", {out, in});
  if (bias) l.b = load(src, prefix + ".bias", {out});
#if defined(RAZERQ_HAS_CUDA)
  if (auto it = packed_weights.find(prefix + ".weight"); it != packed_weights.end()) l.packed = it->second;
#endif
  if (opt.sim && src.quantized(prefix + ".weight")) {
    l.sim = opt.sim;
    l.sim_threads = opt.threads;
    ++simulated;
  }
  return l;
}

Norm Model::Impl::load_norm(const WeightSource& src, const std::string& prefix, int64_t n, bool bias) {
  Norm r;
  r.w = load(src, prefix + ".weight", {n});
  if (bias) r.b = load(src, prefix + ".bias", {n});
  if (opt.device.is_cuda() && opt.norm_epilogue) r.refresh_x_scale();  // (one value to the host per norm)
  return r;
}

// The linears' weights (and biases) concatenated by rows into one linear; each part's w (b)
// becomes a view into the concatenation, here and in `tensors`, so nothing is stored twice and
// set_tensor's in-place copies reach both. Packed parts that all have a fused-GEMV copy get
// theirs concatenated too (kernels::concat_rows; a mismatch such as different NV tensor scales
// leaves the fused linear dense). Not fused (an undefined linear returned): simulated
// arithmetic, or parts that differ in having a bias.
Linear Model::Impl::fuse(const std::vector<Linear*>& parts, const std::string& name) {
  Linear f;
  for (const Linear* p : parts)
    if (p->sim || p->b.defined() != parts.front()->b.defined()) return f;
  std::vector<torch::Tensor> ws, bs;
  for (const Linear* p : parts) {
    ws.push_back(p->w);
    if (p->b.defined()) bs.push_back(p->b);
  }
  f.name = name;
  f.w = torch::cat(ws, 0);
  if (!bs.empty()) f.b = torch::cat(bs, 0);
  int64_t row = 0;
  for (Linear* p : parts) {
    const int64_t n = p->w.size(0);
    p->w = f.w.narrow(0, row, n);
    tensors[p->name + ".weight"] = p->w;
    if (f.b.defined()) {
      p->b = f.b.narrow(0, row, n);
      tensors[p->name + ".bias"] = p->b;
    }
    row += n;
  }
#if defined(RAZERQ_HAS_CUDA)
  std::vector<const kernels::DeviceTensor*> packed_parts;
  for (const Linear* p : parts)
    if (p->packed) packed_parts.push_back(p->packed.get());
  if (packed_parts.size() == parts.size()) {
    try {
      f.packed = std::make_shared<kernels::DeviceTensor>(kernels::concat_rows(packed_parts));
    } catch (const Error& e) {
      log::debug(strprintf("eval: %s stays dense for decoding (%s)", name.c_str(), e.what()));
    }
  }
  if (f.packed) {
    // The parts' packed weights become row views of the concatenation (which each keeps
    // alive), so their own uploads are freed: the packed rows are on the device once.
    struct View {
      std::shared_ptr<kernels::DeviceTensor> whole;
      kernels::DeviceTensor rows;
    };
    int64_t r0 = 0;
    for (Linear* p : parts) {
      auto v = std::make_shared<View>(View{f.packed, kernels::row_view(*f.packed, r0, p->packed->rows)});
      r0 += p->packed->rows;
      p->packed = std::shared_ptr<kernels::DeviceTensor>(v, &v->rows);
      packed_weights[p->name + ".weight"] = p->packed;
    }
  }
#endif
  return f;
}

void Model::Impl::load_llama(const WeightSource& src) {
  const int64_t H = cfg.hidden_size, V = cfg.vocab_size, F = cfg.intermediate_size;
  const int64_t qd = cfg.num_heads * cfg.head_dim, kvd = cfg.num_kv_heads * cfg.head_dim;
  embed = load(src, "model.embed_tokens.weight", {V, H});
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l);
    Layer L;
    L.ln1 = load_norm(src, p + ".input_layernorm", H, false);
    L.q = load_linear(src, p + ".self_attn.q_proj", qd, H, cfg.qkv_bias);
    L.k = load_linear(src, p + ".self_attn.k_proj", kvd, H, cfg.qkv_bias);
    L.v = load_linear(src, p + ".self_attn.v_proj", kvd, H, cfg.qkv_bias);
    L.o = load_linear(src, p + ".self_attn.o_proj", H, qd, cfg.o_bias);
    L.ln2 = load_norm(src, p + ".post_attention_layernorm", H, false);
    L.gate = load_linear(src, p + ".mlp.gate_proj", F, H, cfg.mlp_bias);
    L.up = load_linear(src, p + ".mlp.up_proj", F, H, cfg.mlp_bias);
    L.down = load_linear(src, p + ".mlp.down_proj", H, F, cfg.mlp_bias);
    L.sliding = cfg.sliding_window > 0 && cfg.sliding_layers[static_cast<size_t>(l)];
    if (opt.device.is_cuda()) {
      L.qkv = fuse({&L.q, &L.k, &L.v}, p + ".self_attn.qkv");
      L.gateup = fuse({&L.gate, &L.up}, p + ".mlp.gate_up");
    }
    layers.push_back(std::move(L));
  }
  final_norm = load_norm(src, "model.norm", H, false);
  lm_head.w = cfg.tie_word_embeddings ? embed : load(src, "lm_head.weight", {V, H});
  if (cfg.online_hadamard_down) had_down = OnlineHadamard(F, opt.device);
  const std::vector<double> inv = rope_inv_freq(cfg);
  inv_freq = torch::tensor(inv, torch::TensorOptions().dtype(torch::kFloat64));
}

void Model::Impl::load_opt(const WeightSource& src) {
  const int64_t H = cfg.hidden_size, V = cfg.vocab_size, F = cfg.intermediate_size, E = cfg.word_embed_proj_dim;
  const bool b = cfg.enable_bias, aff = cfg.layer_norm_affine;
  // OPTForCausalLM names its tensors "model.decoder.*"; a bare OPTModel "decoder.*".
  const std::string d = !src.has("model.decoder.embed_tokens.weight") && src.has("decoder.embed_tokens.weight")
                            ? "decoder."
                            : "model.decoder.";
  embed = load(src, d + "embed_tokens.weight", {V, E});
  positions = load(src, d + "embed_positions.weight", {cfg.max_position_embeddings + cfg.position_offset, H});
  if (cfg.has_project_in_out()) {
    project_in = load_linear(src, d + "project_in", H, E, false);
    project_out = load_linear(src, d + "project_out", E, H, false);
  }
  auto norm = [&](const std::string& p) {
    Norm n;
    if (aff) n = load_norm(src, p, H, true);
    return n;
  };
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    const std::string p = d + "layers." + std::to_string(l);
    Layer L;
    L.ln1 = norm(p + ".self_attn_layer_norm");
    L.q = load_linear(src, p + ".self_attn.q_proj", H, H, b);
    L.k = load_linear(src, p + ".self_attn.k_proj", H, H, b);
    L.v = load_linear(src, p + ".self_attn.v_proj", H, H, b);
    L.o = load_linear(src, p + ".self_attn.out_proj", H, H, b);
    L.ln2 = norm(p + ".final_layer_norm");
    L.fc1 = load_linear(src, p + ".fc1", F, H, b);
    L.fc2 = load_linear(src, p + ".fc2", H, F, b);
    layers.push_back(std::move(L));
  }
  if (cfg.final_layer_norm) final_norm = norm(d + "final_layer_norm");
  lm_head.w = cfg.tie_word_embeddings ? embed : load(src, "lm_head.weight", {V, E});
}

// ---- forward ------------------------------------------------------------------------------

torch::Tensor Model::Impl::rms_norm(const torch::Tensor& x, const Norm& n) const {
  // transformers' LlamaRMSNorm: float32 statistics, weight applied in the input dtype.
  torch::Tensor xf = x.to(torch::kFloat32);
  torch::Tensor var = xf.pow(2).mean(-1, /*keepdim=*/true);
  xf = xf * torch::rsqrt(var + cfg.norm_eps);
  return n.w * xf.to(x.scalar_type());
}

torch::Tensor Model::Impl::layer_norm(const torch::Tensor& x, const Norm& n) const {
  return torch::layer_norm(x, {cfg.hidden_size}, n.w, n.b, cfg.norm_eps);
}

// Queries per attention chunk: keeps a chunk's float32 scores (rows x n x Tk) near a budget that
// stays in cache and that the allocator recycles (CPU: glibc maps blocks above 32 MiB afresh
// every time, and faulting them in dominated the unchunked forward).
int64_t Model::Impl::attention_chunk(int64_t rows, int64_t Tk, int64_t T) const {
  // Elements of float32 scores per chunk. CPU: 2 MiB (measured on llama-14m and stories260K at
  // seqlen 512 and 2048: much larger chunks were slower); CUDA: 1 GiB, one chunk for a 7B at 2048.
  const int64_t budget = opt.device.is_cpu() ? (int64_t{1} << 19) : (int64_t{1} << 28);
  const int64_t n = budget / std::max<int64_t>(1, rows * Tk);
  return std::max<int64_t>(std::min<int64_t>(n, T), std::min<int64_t>(T, 16));
}

torch::Tensor Model::Impl::attention(const Layer& L, size_t li, const torch::Tensor& x, const torch::Tensor& cos,
                                      const torch::Tensor& sin, KVCache* cache, const LinearHook* hook,
                                      const StaticStep* st) const {
  const int64_t B = x.size(0), T = x.size(1);
  const int64_t nh = cfg.num_heads, nkv = cfg.num_kv_heads, hd = cfg.head_dim, g = nh / nkv;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  const bool llama = cfg.arch == Arch::kLlama;

  // Decode-sized products on CUDA: q, k and v from the one fused linear (column slices of its
  // output; the head split below only splits the last, contiguous axis).
  torch::Tensor q, k, v;
  if (use_fused(L.qkv, x, hook)) {
    const torch::Tensor y = L.qkv(x);
    q = y.narrow(-1, 0, nh * hd);
    k = y.narrow(-1, nh * hd, nkv * hd);
    v = y.narrow(-1, nh * hd + nkv * hd, nkv * hd);
  } else {
    q = L.q(x, hook);
    k = L.k(x, hook);
    v = L.v(x, hook);
  }
  const int64_t window = L.sliding ? cfg.sliding_window : 0;
  // The fused kernel (CUDA, libtorch >= 2): full causal windows and one-token decode steps;
  // a cached prefix with several new tokens or a sliding window take the eager path.
  const int64_t cached = cache && li < cache->k.size() && cache->k[li].defined() ? cache->k[li].size(2) : 0;
  const bool fused = kFusedAttentionAvailable && opt.fused_attention && x.is_cuda() && window == 0 && (cached == 0 || T == 1);
  if (!llama && !fused) q = q * scale;  // OPT scales the queries before the product (as transformers does)
  q = q.view({B, T, nh, hd}).transpose(1, 2);  // [B, nh, T, hd]
  k = k.view({B, T, nkv, hd}).transpose(1, 2);  // [B, nkv, T, hd]
  v = v.view({B, T, nkv, hd}).transpose(1, 2);
  if (llama) {
    auto rope = [&](const torch::Tensor& t) {
      const int64_t h = hd / 2;
      torch::Tensor rot = torch::cat({-t.index({"...", Slice(h, torch::indexing::None)}), t.index({"...", Slice(0, h)})}, -1);
      return t * cos + rot * sin;
    };
    q = rope(q);
    k = rope(k);
  }
  if (st) return attention_static(L, li, q, k, v, *st, fused, hook);
  if (cache) {
    if (cache->k.size() <= li) {
      cache->k.resize(cfg.num_layers);
      cache->v.resize(cfg.num_layers);
    }
    if (cache->k[li].defined()) {
      k = torch::cat({cache->k[li], k}, 2);
      v = torch::cat({cache->v[li], v}, 2);
    }
    cache->k[li] = k;
    cache->v[li] = v;
  }
  const int64_t Tk = k.size(2);
#if TORCH_VERSION_MAJOR >= 2
  if (fused) {
    torch::Tensor kk = k, vv = v;
    if (g > 1) {  // GQA: each kv head serves g consecutive query heads
      kk = k.unsqueeze(2).expand({B, nkv, g, Tk, hd}).reshape({B, nh, Tk, hd});
      vv = v.unsqueeze(2).expand({B, nkv, g, Tk, hd}).reshape({B, nh, Tk, hd});
    }
    // Default scale 1/sqrt(head_dim); causal when the queries are the whole window.
    torch::Tensor o = at::scaled_dot_product_attention(q, kk, vv, {}, 0.0, /*is_causal=*/T > 1);
    return L.o(o.transpose(1, 2).reshape({B, T, nh * hd}), hook);
  }
#endif

  // Grouped heads without copying K/V: query head h uses kv head h / g, so the g query heads
  // of one kv head are stacked along the time axis: [B, nkv, g*n, hd] x [B, nkv, hd, Tk].
  // Causal attention is computed in chunks of queries: a chunk only multiplies the keys it
  // can see (about half the work of the full square), and its scores stay small enough to be
  // reused by the allocator instead of being mapped and faulted in afresh for every layer.
  // LLaMA: the queries are scaled after RoPE (transformers scales the scores: the same up to
  // one rounding, none when head_dim is a power of 4); OPT's were scaled above.
  const torch::Tensor qv = (llama ? q * scale : q.contiguous()).view({B, nkv, g, T, hd});
  const int64_t chunk = attention_chunk(B * nh, Tk, T);
  torch::Tensor out = chunk >= T ? torch::Tensor() : torch::empty({B, nkv, g, T, hd}, q.options());
  torch::Tensor single;
  const int64_t kshift = Tk - T;  // key index of query i's own position is i + kshift
  const auto lopt = torch::TensorOptions().dtype(torch::kLong).device(x.device());
  for (int64_t i0 = 0; i0 < T; i0 += chunk) {
    const int64_t n = std::min(chunk, T - i0);
    const int64_t kend = i0 + n + kshift;  // keys [kstart, kend) are visible to some query of the chunk
    const int64_t kstart = window > 0 ? std::max<int64_t>(0, i0 + kshift - window + 1) : 0;
    const int64_t kc_len = kend - kstart;
    const torch::Tensor kc = k.narrow(2, kstart, kc_len), vc = v.narrow(2, kstart, kc_len);
    torch::Tensor qc = qv.narrow(3, i0, n).reshape({B, nkv, g * n, hd});
    torch::Tensor scores = torch::matmul(qc, kc.transpose(-1, -2));  // [B, nkv, g*n, Kc]
    const double neg_inf = -std::numeric_limits<double>::infinity();
    if (window > 0) {
      // Masked where key position > query position or <= query position - window.
      const torch::Tensor qpos = torch::arange(i0 + kshift, i0 + kshift + n, lopt).unsqueeze(1);
      const torch::Tensor kpos = torch::arange(kstart, kend, lopt).unsqueeze(0);
      scores.view({B, nkv, g, n, kc_len}).masked_fill_((kpos > qpos).logical_or(kpos <= qpos - window), neg_inf);
    } else if (n > 1) {
      // Only the last n keys (the chunk's own positions) can be ahead of a query: mask the
      // strict upper triangle of that n x n block.
      const torch::Tensor r = torch::arange(n, lopt);
      scores.view({B, nkv, g, n, kc_len}).narrow(4, kc_len - n, n).masked_fill_(r.unsqueeze(0) > r.unsqueeze(1), neg_inf);
    }
    torch::Tensor p = torch::softmax(scores, -1, torch::kFloat32);
    if (p.scalar_type() != x.scalar_type()) p = p.to(x.scalar_type());
    torch::Tensor oc = torch::matmul(p, vc).view({B, nkv, g, n, hd});
    if (out.defined())
      out.narrow(3, i0, n).copy_(oc);
    else
      single = oc;
  }
  if (!out.defined()) out = single;
  out = out.view({B, nh, T, hd}).transpose(1, 2).reshape({B, T, nh * hd});
  return L.o(out, hook);
}

torch::Tensor Model::Impl::attention_static(const Layer& L, size_t li, const torch::Tensor& q, const torch::Tensor& k,
                                             const torch::Tensor& v, const StaticStep& st, bool fused,
                                             const LinearHook* hook) const {
  const int64_t B = q.size(0), nh = cfg.num_heads, nkv = cfg.num_kv_heads, hd = cfg.head_dim, g = nh / nkv;
  StaticKVCache& c = *st.c;
  // The new key and value into slot pos of the whole-capacity buffers; attention over all slots,
  // those past pos masked (zeros there until a step writes them).
  torch::Tensor& kb = c.k[li];
  torch::Tensor& vb = c.v[li];
  kb.index_copy_(2, c.pos, k);
  vb.index_copy_(2, c.pos, v);
#if TORCH_VERSION_MAJOR >= 2
  if (fused) {
    torch::Tensor kk = kb, vv = vb;
    const int64_t cap = c.capacity;
    if (g > 1) {  // GQA as forward(): each kv head serves g consecutive query heads
      kk = kb.unsqueeze(2).expand({B, nkv, g, cap, hd}).reshape({B, nh, cap, hd});
      vv = vb.unsqueeze(2).expand({B, nkv, g, cap, hd}).reshape({B, nh, cap, hd});
    }
    torch::Tensor o = at::scaled_dot_product_attention(q, kk, vv, st.mask, 0.0, /*is_causal=*/false);
    return L.o(o.transpose(1, 2).reshape({B, 1, nh * hd}), hook);
  }
#else
  (void)fused;
#endif
  // forward()'s eager arithmetic for one query (queries scaled after RoPE, scores in the model
  // dtype, float32 softmax), over the whole capacity with the additive mask: exp(-inf) = 0, so
  // the masked slots add exact zeros.
  const torch::Tensor qv = (q * (1.0 / std::sqrt(static_cast<double>(hd)))).reshape({B, nkv, g, hd});
  torch::Tensor scores = torch::matmul(qv, kb.transpose(-1, -2));  // [B, nkv, g, cap]
  scores = scores + st.mask;
  torch::Tensor p = torch::softmax(scores, -1, torch::kFloat32);
  if (p.scalar_type() != q.scalar_type()) p = p.to(q.scalar_type());
  const torch::Tensor o = torch::matmul(p, vb);  // [B, nkv, g, hd]: query head h = kv head h / g, in order
  return L.o(o.reshape({B, 1, nh * hd}), hook);
}

torch::Tensor Model::Impl::check_ids(const torch::Tensor& ids_in) const {
  if (ids_in.dim() != 2)
    throw_error(ErrorKind::kInvalidArgument, "eval::Model::forward", "ids must be [batch, time], got %lld dims",
                static_cast<long long>(ids_in.dim()));
  if (!c10::isIntegralType(ids_in.scalar_type(), /*includeBool=*/false))
    throw_error(ErrorKind::kInvalidArgument, "eval::Model::forward", "ids must be an integer tensor");
  const int64_t B = ids_in.size(0), T = ids_in.size(1);
  if (B == 0 || T == 0) throw_error(ErrorKind::kInvalidArgument, "eval::Model::forward", "ids is empty");
  torch::Tensor ids = ids_in.to(opt.device, torch::kLong);
  const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
  if (lo < 0 || hi >= cfg.vocab_size)
    throw_error(ErrorKind::kInvalidArgument, "eval::Model::forward", "token id %lld outside [0, %lld)",
                static_cast<long long>(lo < 0 ? lo : hi), static_cast<long long>(cfg.vocab_size));
  return ids;
}

torch::Tensor Model::Impl::embed_tokens(const torch::Tensor& ids, int64_t p0) const {
  const int64_t T = ids.size(1);
  torch::Tensor h = torch::embedding(embed, ids);  // [B, T, E]
  if (cfg.arch != Arch::kLlama) {
    if (p0 + T > cfg.max_position_embeddings)
      throw_error(ErrorKind::kInvalidArgument, "eval::Model::forward",
                  "positions up to %lld exceed max_position_embeddings %lld (OPT has learned positions)",
                  static_cast<long long>(p0 + T), static_cast<long long>(cfg.max_position_embeddings));
    if (project_in.w.defined()) h = project_in(h);
    torch::Tensor pos = torch::arange(p0 + cfg.position_offset, p0 + T + cfg.position_offset,
                                      torch::TensorOptions().dtype(torch::kLong).device(opt.device));
    h = h + torch::embedding(positions, pos).unsqueeze(0);
  }
  return h;
}

void Model::Impl::rope_tables(int64_t p0, int64_t T, torch::ScalarType dt, torch::Tensor& cos, torch::Tensor& sin) const {
  if (cfg.arch != Arch::kLlama) return;
  // RoPE tables in float64, rounded once to the model dtype: [T, head_dim], halves repeated.
  torch::Tensor pos = torch::arange(p0, p0 + T, torch::TensorOptions().dtype(torch::kFloat64)).unsqueeze(1);
  torch::Tensor ang = pos * inv_freq.unsqueeze(0);
  ang = torch::cat({ang, ang}, -1);
  cos = ang.cos().to(opt.device, dt);
  sin = ang.sin().to(opt.device, dt);
}

torch::Tensor Model::Impl::layer_forward(size_t li, torch::Tensor h, const torch::Tensor& cos, const torch::Tensor& sin,
                                         KVCache* cache, const LinearHook* hook, const Layer* replaced,
                                         const StaticStep* st) const {
  const Layer& L = replaced ? *replaced : layers[li];
  if (cfg.arch == Arch::kLlama) {
    h = h + attention(L, li, rms_norm(h, L.ln1), cos, sin, cache, hook, st);
    torch::Tensor m = rms_norm(h, L.ln2);
    torch::Tensor a;
    if (use_fused(L.gateup, m, hook)) {
      const torch::Tensor y = L.gateup(m);  // decode-sized: gate and up from one product
      const int64_t F = L.gate.w.size(0);
      a = torch::silu(y.narrow(-1, 0, F)) * y.narrow(-1, F, F);
    } else {
      const torch::Tensor gate = L.gate(m, hook);  // before up: hooks see the forward's order
      a = torch::silu(gate) * L.up(m, hook);
    }
    if (had_down.defined()) a = had_down(a);
    return h + L.down(a, hook);
  }
  const bool pre = cfg.do_layer_norm_before;
  const bool aff = cfg.layer_norm_affine;
  auto ln = [&](const torch::Tensor& x, const Norm& n) {
    return aff ? layer_norm(x, n) : torch::layer_norm(x, {cfg.hidden_size}, {}, {}, cfg.norm_eps);
  };
  torch::Tensor a = attention(L, li, pre ? ln(h, L.ln1) : h, cos, sin, cache, hook);
  h = h + a;
  if (!pre) h = ln(h, L.ln1);
  torch::Tensor f = L.fc1(pre ? ln(h, L.ln2) : h, hook);
  f = cfg.activation == "gelu" ? torch::gelu(f) : torch::relu(f);
  h = h + L.fc2(f, hook);
  if (!pre) h = ln(h, L.ln2);
  return h;
}

torch::Tensor Model::Impl::head(torch::Tensor h) const {
  if (cfg.arch == Arch::kLlama) {
    h = rms_norm(h, final_norm);
  } else {
    if (cfg.final_layer_norm)
      h = cfg.layer_norm_affine ? layer_norm(h, final_norm) : torch::layer_norm(h, {cfg.hidden_size}, {}, {}, cfg.norm_eps);
    if (project_out.w.defined()) h = project_out(h);
  }
  return lm_head(h).to(torch::kFloat32);
}

torch::Tensor Model::Impl::forward(const torch::Tensor& ids_in, KVCache* cache) const {
  const torch::Tensor ids = check_ids(ids_in);
  const int64_t B = ids.size(0), T = ids.size(1);
  int64_t p0 = 0;
  if (cache) {
    p0 = cache->length;
    if (p0 > 0 && !cache->k.empty() && cache->k[0].defined() && cache->k[0].size(0) != B)
      throw_error(ErrorKind::kInvalidArgument, "eval::Model::forward", "batch %lld does not match the cache's %lld",
                  static_cast<long long>(B), static_cast<long long>(cache->k[0].size(0)));
  }
  torch::Tensor h = embed_tokens(ids, p0);
  torch::Tensor cos, sin;
  rope_tables(p0, T, h.scalar_type(), cos, sin);
  for (size_t li = 0; li < layers.size(); ++li) h = layer_forward(li, h, cos, sin, cache, nullptr);
  if (cache) cache->length = p0 + T;
  return head(h);
}

torch::Tensor Model::Impl::forward_static(StaticKVCache& c) const {
#if defined(RAZERQ_DECODE_KERNELS)
  if (decode_kernels) return forward_static_kernels(c);
#endif
  // No host synchronisation and no shape that depends on a device value: see model.hpp.
  torch::Tensor h = torch::embedding(embed, c.ids);  // [B, 1, H]
  const torch::Tensor cos = c.cos.index_select(0, c.pos), sin = c.sin.index_select(0, c.pos);  // [1, hd]
  StaticStep st{&c, torch::zeros({c.capacity}, h.options())
                        .masked_fill(c.key_pos > c.pos, -std::numeric_limits<double>::infinity())
                        .view({1, 1, 1, c.capacity})};
  for (size_t li = 0; li < layers.size(); ++li) h = layer_forward(li, h, cos, sin, nullptr, nullptr, nullptr, &st);
  return head(h);
}

bool Model::Impl::decode_kernels_usable() const {
#if defined(RAZERQ_DECODE_KERNELS)
  return opt.fused_decode_ops && cfg.arch == Arch::kLlama && opt.device.is_cuda() &&
         (opt.dtype == torch::kFloat16 || opt.dtype == torch::kBFloat16) && cfg.head_dim % 2 == 0 &&
         cfg.head_dim <= kernels::kDecodeMaxHeadDim && cfg.num_kv_heads > 0 && cfg.num_heads % cfg.num_kv_heads == 0;
#else
  return false;
#endif
}

#if defined(RAZERQ_DECODE_KERNELS)
namespace {
// The address of element `offset` of a dense tensor (a column block of a fused product's rows).
const void* element_ptr(const torch::Tensor& t, int64_t offset) {
  return static_cast<const char*>(t.data_ptr()) + offset * static_cast<int64_t>(t.element_size());
}
}  // namespace

// Whether forward_static_kernels takes the norm epilogues at batch B (ModelOptions::norm_epilogue):
// fp16, and every layer's products (the fused q/k/v and gate/up where the layer has them) on
// packed weights that take them (Linear::norm_epilogue_ok: no bias, M and the slots within the
// kernels' bounds).
bool Model::Impl::norm_epilogue_applies(int64_t B) const {
  if (!opt.norm_epilogue || opt.dtype != torch::kFloat16 || layers.empty()) return false;
  const int64_t H = cfg.hidden_size;
  for (const Layer& L : layers) {
    std::vector<const Linear*> need = {&L.o, &L.down};
    for (const Linear* l : L.qkv.w.defined() ? std::vector<const Linear*>{&L.qkv} : std::vector<const Linear*>{&L.q, &L.k, &L.v})
      need.push_back(l);
    for (const Linear* l : L.gateup.w.defined() ? std::vector<const Linear*>{&L.gateup} : std::vector<const Linear*>{&L.gate, &L.up})
      need.push_back(l);
    for (const Linear* l : need)
      if (!l->norm_epilogue_ok(B, H)) return false;
  }
  return true;
}

// forward_static with the decode kernels (kernels/cuda/decode_ops_cuda.hpp). Per layer: the
// q/k/v product, RoPE + K/V write + attention (1 launch), the o product, residual add +
// post-attention RMSNorm (1), the gate/up product, SiLU * up (1; in the gate/up product's epilogue
// where Linear::silu_mul_into takes it, ModelOptions::silu_epilogue), the down product, residual add +
// the next layer's input RMSNorm, or the final norm after the last layer (1). The residual stream
// h is one [B, H] buffer updated in place; x holds the normed input of the next product. The
// products are the same Linear calls as layer_forward's (fused q/k/v and gate/up where it takes
// them), so the fused GEMV of packed checkpoints runs here too.
// With the norm epilogues (norm_epilogue_applies): the o product and every down product but the
// last add their outputs into h and write the next product's x unnormalised (h * w_norm * x_scale)
// with the sums of squares in `slots`; the gate/up product and the next layer's q/k/v apply the
// norm's rsqrt to their sums (kernels/cuda/gemv_cuda.hpp). Layer 0's input norm and the final norm
// keep their kernels: 2 norm launches per step instead of 2 per layer.
torch::Tensor Model::Impl::forward_static_kernels(StaticKVCache& c) const {
  const int64_t B = c.batch, H = cfg.hidden_size, nh = cfg.num_heads, nkv = cfg.num_kv_heads, hd = cfg.head_dim;
  const char* what = "forward_static";
  // The buffers' device (opt.device may name no index: "cuda" is the current device).
  const torch::Device dev = c.k.empty() ? opt.device : c.k.front().device();
  for (size_t li = 0; li < layers.size(); ++li) {
    const std::vector<int64_t> want = {B, nkv, c.capacity, hd};
    for (const torch::Tensor* t : {&c.k[li], &c.v[li]})
      if (!t->sizes().equals(want) || !t->is_contiguous() || t->scalar_type() != opt.dtype || !t->is_cuda() ||
          t->device() != dev)
        throw_error(ErrorKind::kInvalidArgument, path, "%s: layer %zu's K/V buffer is not a dense %s %s tensor on %s", what,
                    li, formats::shape_string(want).c_str(), dtype_label(opt.dtype), opt.device.str().c_str());
  }
  for (const torch::Tensor* t : {&c.cos, &c.sin})
    if (!t->sizes().equals({c.capacity, hd}) || !t->is_contiguous() || t->scalar_type() != opt.dtype)
      throw_error(ErrorKind::kInvalidArgument, path, "%s: the RoPE tables are not dense [capacity, head_dim] %s tensors",
                  what, dtype_label(opt.dtype));
  if (!c.pos.is_cuda() || c.pos.scalar_type() != torch::kLong)
    throw_error(ErrorKind::kInvalidArgument, path, "%s: pos is not an int64 CUDA tensor", what);

  const c10::cuda::CUDAGuard guard(dev);  // our kernels launch on the current device
  void* stream = torch_stream(dev);
  const kernels::ActDType dt = opt.dtype == torch::kBFloat16 ? kernels::ActDType::kBf16 : kernels::ActDType::kFp16;
  const float eps = static_cast<float>(cfg.norm_eps);  // as torch adds it to the float32 mean
  const kernels::DecodeShape shape{B, nh, nkv, hd, c.capacity};
  const int splits = kernels::decode_attention_splits(shape);
  const size_t ws_bytes = kernels::decode_attention_workspace_bytes(shape, splits);
  const auto fo = torch::TensorOptions().dtype(opt.dtype).device(dev);
  // The attention's workspace is the cache's: make_static_cache zeroed its counters once, and
  // every attention call leaves them zero, so a step needs no fill.
  const torch::Tensor& ws = c.attn_ws;
  if (!ws.defined() || !ws.is_cuda() || ws.device() != dev || ws.scalar_type() != torch::kByte ||
      !ws.is_contiguous() || ws.numel() < static_cast<int64_t>(ws_bytes))
    throw_error(ErrorKind::kInvalidArgument, path,
                "%s: the cache has no attention workspace of %zu bytes on %s (make it with make_static_cache of "
                "this model)",
                what, ws_bytes, opt.device.str().c_str());
  const int64_t* pos = c.pos.data_ptr<int64_t>();

  const torch::Tensor h = torch::embedding(embed, c.ids).reshape({B, H}).contiguous();  // residual stream
  const torch::Tensor x = torch::empty({B, H}, fo);
  const torch::Tensor o = torch::empty({B, nh, hd}, fo);
  const bool norm_epi = norm_epilogue_applies(B);
  const torch::Tensor slots =
      norm_epi ? torch::empty({B * kernels::gemv_norm_slot_stride(H)}, fo.dtype(torch::kFloat32)) : torch::Tensor();
  kernels::rms_norm_cuda(dt, h.data_ptr(), layers.front().ln1.w.data_ptr(), B, H, eps, x.data_ptr(), stream);
  for (size_t li = 0; li < layers.size(); ++li) {
    const Layer& L = layers[li];
    // x from the previous down product's norm epilogue (layer 0: the norm kernel's output).
    const bool qkv_normed = norm_epi && li > 0;
    auto in_product = [&](const Linear& l) {
      return qkv_normed ? l.normed(x, slots, eps, L.ln1.x_scale) : l(x).contiguous();
    };
    // q, k, v: column blocks of the fused product, or three products.
    torch::Tensor yq, yk, yv;
    const void *kp = nullptr, *vp = nullptr;
    int64_t sq = 0, sk = 0, sv = 0;
    if (use_fused(L.qkv, x, nullptr)) {
      yq = in_product(L.qkv);  // [B, (nh + 2 nkv) hd]
      sq = sk = sv = yq.size(-1);
      kp = element_ptr(yq, nh * hd);
      vp = element_ptr(yq, (nh + nkv) * hd);
    } else {
      yq = in_product(L.q), yk = in_product(L.k), yv = in_product(L.v);
      sq = yq.size(-1), sk = yk.size(-1), sv = yv.size(-1);
      kp = yk.data_ptr(), vp = yv.data_ptr();
    }
    kernels::decode_rope_attention_cuda(dt, shape, yq.data_ptr(), sq, kp, sk, vp, sv, c.cos.data_ptr(),
                                        c.sin.data_ptr(), pos, c.k[li].data_ptr(), c.v[li].data_ptr(), splits,
                                        ws.data_ptr(), ws_bytes, o.data_ptr(), stream);
    if (norm_epi) {
      L.o.add_norm_into(o.view({B, nh * hd}), h, L.ln2.w, L.ln2.x_scale, x, slots);
    } else {
      const torch::Tensor attn = L.o(o.view({B, nh * hd})).contiguous();  // [B, H]
      kernels::add_rms_norm_cuda(dt, h.data_ptr(), attn.data_ptr(), L.ln2.w.data_ptr(), B, H, eps, x.data_ptr(), stream);
    }
    auto mlp_product = [&](const Linear& l) {
      return norm_epi ? l.normed(x, slots, eps, L.ln2.x_scale) : l(x).contiguous();
    };
    const int64_t F = L.gate.w.size(0);
    torch::Tensor act = torch::empty({B, F}, fo);
    if (use_fused(L.gateup, x, nullptr)) {
      // (else written by the product itself)
      const bool by_epilogue = opt.silu_epilogue && (norm_epi ? L.gateup.normed_silu_mul_into(x, slots, eps, L.ln2.x_scale, act)
                                                              : L.gateup.silu_mul_into(x, act));
      if (!by_epilogue) {
        const torch::Tensor gu = mlp_product(L.gateup);  // [B, 2F]: gate, then up
        kernels::silu_mul_cuda(dt, gu.data_ptr(), element_ptr(gu, F), 2 * F, B, F, act.data_ptr(), stream);
      }
    } else {
      const torch::Tensor g = mlp_product(L.gate);  // before up, as layer_forward
      const torch::Tensor u = mlp_product(L.up);
      kernels::silu_mul_cuda(dt, g.data_ptr(), u.data_ptr(), F, B, F, act.data_ptr(), stream);
    }
    if (had_down.defined()) act = had_down(act);
    if (norm_epi && li + 1 < layers.size()) {
      const Norm& next = layers[li + 1].ln1;
      L.down.add_norm_into(act, h, next.w, next.x_scale, x, slots);
    } else {
      const torch::Tensor down = L.down(act).contiguous();  // [B, H]
      const Norm& next = li + 1 < layers.size() ? layers[li + 1].ln1 : final_norm;
      kernels::add_rms_norm_cuda(dt, h.data_ptr(), down.data_ptr(), next.w.data_ptr(), B, H, eps, x.data_ptr(), stream);
    }
  }
  g_decode_kernel_steps.fetch_add(1, std::memory_order_relaxed);
  return lm_head(x.view({B, 1, H})).to(torch::kFloat32);  // head() without its norm (done above)
}
#endif

// ---- OnlineHadamard -------------------------------------------------------------------------

OnlineHadamard::OnlineHadamard(int64_t n, torch::Device device) : n_(n), plan_(quantizer::hadamard_plan(n)) {
  for (const quantizer::SignMatrix& f : plan_.factors) {
    torch::Tensor t = torch::empty({f.order, f.order}, torch::kFloat32);
    float* p = t.data_ptr<float>();
    for (size_t i = 0; i < f.v.size(); ++i) p[i] = f.v[i];
    factors_.push_back(t.to(device));
  }
  scale_ = 1.0 / std::sqrt(static_cast<double>(plan_.block()));
}

torch::Tensor OnlineHadamard::operator()(const torch::Tensor& x) const {
  const std::vector<int64_t> sizes = x.sizes().vec();
  if (sizes.empty() || sizes.back() != n_)
    throw_error(ErrorKind::kInvalidArgument, "OnlineHadamard", "input of shape %s (expected the last axis %lld)",
                formats::shape_string(sizes).c_str(), static_cast<long long>(n_));
  // [..., n] -> [..., count, f1, f2, ...]: factor t acts on axis t of the tail (y_j = sum_i x_i F_ij).
  std::vector<int64_t> shape(sizes.begin(), sizes.end() - 1);
  shape.push_back(plan_.count);
  for (const torch::Tensor& f : factors_) shape.push_back(f.size(0));
  torch::Tensor y = x.to(torch::kFloat32).reshape(shape);
  const int64_t nf = static_cast<int64_t>(factors_.size()), nd = y.dim();
  for (int64_t t = 0; t < nf; ++t) {
    const int64_t axis = nd - nf + t;
    y = axis == nd - 1 ? torch::matmul(y, factors_[static_cast<size_t>(t)])
                       : torch::matmul(y.transpose(axis, -1), factors_[static_cast<size_t>(t)]).transpose(axis, -1);
  }
  return (y * scale_).reshape(sizes).to(x.scalar_type());
}

// ---- Model --------------------------------------------------------------------------------

torch::ScalarType parse_dtype(const std::string& s) {
  if (s == "fp32" || s == "float32" || s == "f32") return torch::kFloat32;
  if (s == "fp16" || s == "float16" || s == "half" || s == "f16") return torch::kFloat16;
  if (s == "bf16" || s == "bfloat16") return torch::kBFloat16;
  throw_error(ErrorKind::kInvalidArgument, "--dtype", "\"%s\" is not a model dtype (expected fp32, fp16 or bf16)", s.c_str());
}

const char* dtype_label(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return "float32";
    case torch::kFloat16: return "float16";
    case torch::kBFloat16: return "bfloat16";
    case torch::kFloat64: return "float64";
    default: return "other";
  }
}

torch::Device parse_device(const std::string& s) {
  torch::Device d(torch::kCPU);
  try {
    d = torch::Device(s);
  } catch (const c10::Error&) {
    throw_error(ErrorKind::kInvalidArgument, "--device", "\"%s\" is not a device (expected cpu, cuda or cuda:N)", s.c_str());
  }
  if (!d.is_cpu() && !d.is_cuda())
    throw_error(ErrorKind::kInvalidArgument, "--device", "\"%s\": only cpu and cuda are supported", s.c_str());
  if (d.is_cuda()) {
    if (!torch::cuda::is_available())
      throw_error(ErrorKind::kUnsupported, "--device", "\"%s\": this libtorch sees no CUDA device", s.c_str());
    if (d.has_index() && d.index() >= static_cast<int>(torch::cuda::device_count()))
      throw_error(ErrorKind::kInvalidArgument, "--device", "\"%s\": only %d CUDA device(s)", s.c_str(),
                  static_cast<int>(torch::cuda::device_count()));
  }
  return d;
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::load(const std::string& path, const ModelOptions& opt) {
  std::unique_ptr<WeightSource> src = WeightSource::open(path);
  return load(*src, opt);
}

Model Model::load(const WeightSource& src, const ModelOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  auto impl = std::make_unique<Impl>();
  impl->opt = opt;
  impl->path = src.dir();
  impl->packed = src.packed();
  if (opt.dtype != torch::kFloat32 && opt.dtype != torch::kFloat16 && opt.dtype != torch::kBFloat16)
    throw_error(ErrorKind::kInvalidArgument, src.dir(), "model dtype %s is not supported (supported: float32, float16, bfloat16)",
                dtype_label(opt.dtype));
  if (opt.device.is_cuda() && !torch::cuda::is_available())
    throw_error(ErrorKind::kUnsupported, src.dir(), "device %s requested but this libtorch sees no CUDA device",
                opt.device.str().c_str());
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  // Fused attention means the flash / memory-efficient kernels: cuDNN's SDPA backend builds a
  // plan per new key length, which made every decode step of the first model in a process cost
  // ~50 ms on the H100 (bench/decode.md). Process-wide libtorch setting.
  if (opt.device.is_cuda() && opt.fused_attention) at::globalContext().setSDPUseCuDNN(false);
#endif
  if (!opt.device.is_cpu() && !opt.device.is_cuda())
    throw_error(ErrorKind::kInvalidArgument, src.dir(), "device %s is not supported (supported: cpu, cuda)", opt.device.str().c_str());
  if (opt.sim) {
    kernels::validate_sim_arith(*opt.sim, src.dir());
#if !defined(RAZERQ_HAS_CUDA)
    if (opt.device.is_cuda())
      throw_error(ErrorKind::kUnsupported, src.dir(),
                  "simulated arithmetic on CUDA needs razerq built with the CUDA kernels (nvcc was not found)");
#endif
    // The kernel runs on the current CUDA device (as the dequant kernel above): device 0.
    if (opt.device.is_cuda() && opt.device.index() > 0)
      throw_error(ErrorKind::kUnsupported, src.dir(), "simulated arithmetic runs on CUDA device 0 only (got %s)",
                  opt.device.str().c_str());
  }
  impl->cfg = ModelConfig::from_json(src.config(), src.config_path());
  torch::NoGradGuard no_grad;
  try {
    if (impl->cfg.arch == Arch::kLlama)
      impl->load_llama(src);
    else
      impl->load_opt(src);
  } catch (const c10::Error& e) {
    throw_error(ErrorKind::kInternal, src.dir(), "libtorch failed while loading: %s", c10_message(e).c_str());
  }
  if (opt.sim && impl->simulated == 0)
    throw_error(ErrorKind::kInvalidArgument, src.dir(),
                "simulated arithmetic (%s) applies to the quantized linears of a packed checkpoint, and this model has "
                "none (expected a checkpoint written by razerq quantize)",
                kernels::sim_arith_name(*opt.sim).c_str());
  impl->decode_kernels = impl->decode_kernels_usable();
  impl->load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Model m(std::move(impl));
  log::debug("eval: loaded " + m.describe());
  return m;
}

const ModelConfig& Model::config() const { return impl_->cfg; }
const ModelOptions& Model::options() const { return impl_->opt; }
const std::string& Model::path() const { return impl_->path; }
bool Model::packed() const { return impl_->packed; }
int64_t Model::quantized_tensors() const { return impl_->quantized; }
int64_t Model::fused_gemv_tensors() const {
#if defined(RAZERQ_HAS_CUDA)
  return static_cast<int64_t>(impl_->packed_weights.size());
#else
  return 0;
#endif
}
int64_t Model::fused_gemv_bytes() const {
  int64_t bytes = 0;
#if defined(RAZERQ_HAS_CUDA)
  std::vector<const void*> seen;
  auto add = [&](const Linear& l) {
    if (!l.packed || !l.packed->storage) return;  // none, or a row view of a fused linear's rows
    if (std::find(seen.begin(), seen.end(), l.packed->storage) != seen.end()) return;
    seen.push_back(l.packed->storage);
    bytes += static_cast<int64_t>(l.packed->storage_bytes);
  };
  for (const Layer& L : impl_->layers)
    for (const Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down, &L.fc1, &L.fc2, &L.qkv, &L.gateup}) add(*l);
  for (const Linear* l : {&impl_->project_in, &impl_->project_out, &impl_->lm_head}) add(*l);
#endif
  return bytes;
}
int64_t Model::fused_gemv_calls() { return g_fused_calls.load(); }
bool Model::decode_kernels() const { return impl_->decode_kernels; }
int64_t Model::decode_kernel_steps() { return g_decode_kernel_steps.load(); }

int64_t Model::silu_epilogue_calls() { return g_silu_epilogue_calls.load(); }
int64_t Model::norm_epilogue_calls() { return g_norm_epilogue_calls.load(); }
int64_t Model::simulated_linears() const { return impl_->simulated; }
int64_t Model::parameters() const { return impl_->params; }
double Model::load_seconds() const { return impl_->load_seconds; }

std::string Model::describe() const {
  std::string s = impl_->path + " (" + (impl_->packed ? "packed" : "hf") + "): " + impl_->cfg.summary();
  s += strprintf("; %.2f M params, %s on %s", static_cast<double>(impl_->params) / 1e6, dtype_label(impl_->opt.dtype),
                 impl_->opt.device.str().c_str());
  if (impl_->quantized > 0) s += strprintf(", %lld quantized tensors dequantized at load", static_cast<long long>(impl_->quantized));
  if (fused_gemv_tensors() > 0)
    s += strprintf(" (%lld also kept packed for the fused GEMV, %.1f MiB)", static_cast<long long>(fused_gemv_tensors()),
                   static_cast<double>(fused_gemv_bytes()) / 1048576.0);
  if (impl_->decode_kernels) s += "; static decode step through the CUDA decode kernels";
  if (impl_->simulated > 0)
    s += strprintf("; simulated arithmetic (%s) in %lld quantized linears", kernels::sim_arith_name(*impl_->opt.sim).c_str(),
                   static_cast<long long>(impl_->simulated));
  return s;
}

torch::Tensor Model::forward(const torch::Tensor& ids) const { return forward(ids, nullptr); }

torch::Tensor Model::forward(const torch::Tensor& ids, KVCache* cache) const {
  torch::NoGradGuard no_grad;
  try {
    return impl_->forward(ids, cache);
  } catch (const c10::Error& e) {
    throw_error(ErrorKind::kInternal, impl_->path, "libtorch failed in forward (%s on %s): %s", dtype_label(impl_->opt.dtype),
                impl_->opt.device.str().c_str(), c10_message(e).c_str());
  }
}

StaticKVCache Model::make_static_cache(int64_t batch, int64_t capacity) const {
  const ModelConfig& cfg = impl_->cfg;
  const char* what = "eval::Model::make_static_cache";
  if (cfg.arch != Arch::kLlama)
    throw_error(ErrorKind::kUnsupported, impl_->path, "%s: the static decode step supports the LLaMA family only (this is %s)",
                what, cfg.model_type.c_str());
  if (cfg.sliding_window > 0)
    throw_error(ErrorKind::kUnsupported, impl_->path, "%s: the static decode step has no sliding window (this model has %lld)",
                what, static_cast<long long>(cfg.sliding_window));
  if (batch < 1 || capacity < 1)
    throw_error(ErrorKind::kInvalidArgument, impl_->path, "%s: batch %lld and capacity %lld (expected >= 1)", what,
                static_cast<long long>(batch), static_cast<long long>(capacity));
  torch::NoGradGuard no_grad;
  const auto fo = torch::TensorOptions().dtype(impl_->opt.dtype).device(impl_->opt.device);
  const auto lo = torch::TensorOptions().dtype(torch::kLong).device(impl_->opt.device);
  StaticKVCache c;
  c.batch = batch;
  c.capacity = capacity;
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    c.k.push_back(torch::zeros({batch, cfg.num_kv_heads, capacity, cfg.head_dim}, fo));
    c.v.push_back(torch::zeros({batch, cfg.num_kv_heads, capacity, cfg.head_dim}, fo));
  }
  c.pos = torch::zeros({1}, lo);
  c.ids = torch::zeros({batch, 1}, lo);
  impl_->rope_tables(0, capacity, impl_->opt.dtype, c.cos, c.sin);  // forward()'s tables for positions 0 .. capacity-1
  c.key_pos = torch::arange(capacity, lo);
#if defined(RAZERQ_DECODE_KERNELS)
  if (impl_->decode_kernels) {  // the decode kernels' attention workspace, its counters zero
    const kernels::DecodeShape s{batch, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, capacity};
    const size_t bytes = kernels::decode_attention_workspace_bytes(s, kernels::decode_attention_splits(s));
    c.attn_ws = torch::zeros({static_cast<int64_t>(bytes)}, fo.dtype(torch::kByte));
  }
#endif
  return c;
}

torch::Tensor Model::forward_static(StaticKVCache& c) const {
  if (c.batch < 1 || c.k.size() != impl_->layers.size() || !c.pos.defined())
    throw_error(ErrorKind::kInvalidArgument, impl_->path, "forward_static: the cache was not made by make_static_cache for this model");
  torch::NoGradGuard no_grad;
  try {
    return impl_->forward_static(c);
  } catch (const c10::Error& e) {
    throw_error(ErrorKind::kInternal, impl_->path, "libtorch failed in the static decode step (%s on %s): %s",
                dtype_label(impl_->opt.dtype), impl_->opt.device.str().c_str(), c10_message(e).c_str());
  }
}

torch::Tensor Model::embed(const torch::Tensor& ids) const {
  torch::NoGradGuard no_grad;
  return impl_->embed_tokens(impl_->check_ids(ids), 0);
}

torch::Tensor Model::layer(int64_t i, const torch::Tensor& hidden, const LinearHook& hook) const {
  if (i < 0 || i >= num_layers())
    throw_error(ErrorKind::kInvalidArgument, impl_->path, "layer %lld (the model has %lld)", static_cast<long long>(i),
                static_cast<long long>(num_layers()));
  if (hidden.dim() != 3 || hidden.size(2) != impl_->cfg.hidden_size)
    throw_error(ErrorKind::kInvalidArgument, impl_->path, "hidden states must be [batch, time, %lld]",
                static_cast<long long>(impl_->cfg.hidden_size));
  torch::NoGradGuard no_grad;
  const torch::Tensor h = hidden.to(impl_->opt.device, impl_->opt.dtype);
  torch::Tensor cos, sin;
  impl_->rope_tables(0, h.size(1), h.scalar_type(), cos, sin);
  return impl_->layer_forward(static_cast<size_t>(i), h, cos, sin, nullptr, hook ? &hook : nullptr);
}

torch::Tensor Model::layer_with(int64_t i, const torch::Tensor& hidden, const std::map<std::string, torch::Tensor>& weights) const {
  if (i < 0 || i >= num_layers())
    throw_error(ErrorKind::kInvalidArgument, impl_->path, "layer %lld (the model has %lld)", static_cast<long long>(i),
                static_cast<long long>(num_layers()));
  Layer L = impl_->layers[static_cast<size_t>(i)];  // shares the tensors; linears replaced below
  L.qkv = Linear{}, L.gateup = Linear{};  // the fused linears would not see the replacements
  size_t used = 0;
  for (Linear* lin : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down, &L.fc1, &L.fc2}) {
    if (lin->name.empty()) continue;
    auto it = weights.find(lin->name + ".weight");
    if (it == weights.end()) continue;
    if (!it->second.sizes().equals(lin->w.sizes()))
      throw_error(ErrorKind::kInvalidArgument, impl_->path, "layer_with: '%s' of shape %s (expected %s)", it->first.c_str(),
                  formats::shape_string(it->second.sizes().vec()).c_str(), formats::shape_string(lin->w.sizes().vec()).c_str());
    lin->w = it->second.to(impl_->opt.device, impl_->opt.dtype);
#if defined(RAZERQ_HAS_CUDA)
    lin->packed.reset();  // the packed weights are not these
#endif
    lin->sim.reset();  // autograd goes through torch::linear
    ++used;
  }
  if (used != weights.size())
    throw_error(ErrorKind::kInvalidArgument, impl_->path, "layer_with: %zu of the %zu weights are not linears of layer %lld",
                weights.size() - used, weights.size(), static_cast<long long>(i));
  const torch::Tensor h = hidden.to(impl_->opt.device, impl_->opt.dtype);
  torch::Tensor cos, sin;
  impl_->rope_tables(0, h.size(1), h.scalar_type(), cos, sin);
  return impl_->layer_forward(static_cast<size_t>(i), h, cos, sin, nullptr, nullptr, &L);
}

torch::Tensor Model::head(const torch::Tensor& hidden) const {
  torch::NoGradGuard no_grad;
  return impl_->head(hidden.to(impl_->opt.device, impl_->opt.dtype));
}

torch::Tensor Model::head_with_grad(const torch::Tensor& hidden) const {
  return impl_->head(hidden.to(impl_->opt.device, impl_->opt.dtype));
}

int64_t Model::num_layers() const { return static_cast<int64_t>(impl_->layers.size()); }

std::vector<std::string> Model::layer_linears(int64_t i) const {
  if (i < 0 || i >= num_layers())
    throw_error(ErrorKind::kInvalidArgument, impl_->path, "layer %lld (the model has %lld)", static_cast<long long>(i),
                static_cast<long long>(num_layers()));
  const auto& L = impl_->layers[static_cast<size_t>(i)];
  if (impl_->cfg.arch == Arch::kLlama) return {L.q.name, L.k.name, L.v.name, L.o.name, L.gate.name, L.up.name, L.down.name};
  return {L.q.name, L.k.name, L.v.name, L.o.name, L.fc1.name, L.fc2.name};
}

void Model::set_tensor(const std::string& name, const torch::Tensor& value) {
  auto it = impl_->tensors.find(name);
  if (it == impl_->tensors.end())
    throw_error(ErrorKind::kInvalidArgument, impl_->path, "the model has no tensor '%s'", name.c_str());
  if (!value.sizes().equals(it->second.sizes()))
    throw_error(ErrorKind::kInvalidArgument, impl_->path, "tensor '%s': new value of shape %s (expected %s)", name.c_str(),
                formats::shape_string(value.sizes().vec()).c_str(), formats::shape_string(it->second.sizes().vec()).c_str());
  torch::NoGradGuard no_grad;
  it->second.copy_(value);  // the layers hold the same storage
  if (impl_->opt.device.is_cuda() && impl_->opt.norm_epilogue) {  // a norm's weight: its x_scale follows
    for (Layer& L : impl_->layers)
      for (Norm* n : {&L.ln1, &L.ln2})
        if (n->w.defined() && n->w.is_same(it->second)) n->refresh_x_scale();
    if (impl_->final_norm.w.defined() && impl_->final_norm.w.is_same(it->second)) impl_->final_norm.refresh_x_scale();
  }
#if defined(RAZERQ_HAS_CUDA)
  // A packed copy for the fused GEMV no longer matches: the linear falls back to the matmul.
  if (impl_->packed_weights.erase(name)) {
    const std::string prefix = name.substr(0, name.rfind(".weight"));
    auto drop = [&](Linear& l) {
      if (l.name == prefix) l.packed.reset();
    };
    for (Layer& L : impl_->layers) {
      for (Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down, &L.fc1, &L.fc2}) drop(*l);
      // The fused linears' dense weights are views (already updated); their packed rows are not.
      if (L.q.name == prefix || L.k.name == prefix || L.v.name == prefix) L.qkv.packed.reset();
      if (L.gate.name == prefix || L.up.name == prefix) L.gateup.packed.reset();
    }
    for (Linear* l : {&impl_->project_in, &impl_->project_out, &impl_->lm_head}) drop(*l);
  }
#endif
}

torch::Tensor Model::tensor(const std::string& name) const {
  auto it = impl_->tensors.find(name);
  if (it == impl_->tensors.end())
    throw_error(ErrorKind::kInvalidArgument, impl_->path, "the model has no tensor '%s'", name.c_str());
  return it->second;
}

std::vector<std::string> Model::tensor_names() const { return impl_->names; }

}  // namespace razerq::eval
