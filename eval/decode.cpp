// StaticDecoder (eval/decode.hpp): greedy decoding on Model's static KV cache, eager or from a
// CUDA graph. The third translation unit of razerq_eval that includes torch.
#include "eval/decode.hpp"

#include <torch/cuda.h>

#include <algorithm>
#include <string>
#include <utility>

#include "common/error.hpp"
#include "formats/safetensors.hpp"

#if defined(RAZERQ_TORCH_CUDA)
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace razerq::eval {

namespace {
constexpr const char* kWhat = "eval::StaticDecoder";
constexpr int kWarmupSteps = 2;  // eager steps on the capture stream before the capture
}  // namespace

struct StaticDecoder::Impl {
  const Model* model = nullptr;
  bool graph_wanted = false;
  StaticKVCache c;
  torch::Tensor seq;      // int64 [B, capacity + 1]: column j = token at position j
#if defined(RAZERQ_TORCH_CUDA)
  std::unique_ptr<at::cuda::CUDAGraph> graph;  // declared before logits: destroyed after its output buffer
#endif
  torch::Tensor logits;   // the last step's logits (with a graph: its output buffer, in the graph's pool)
  int64_t length = 0;     // host mirror of c.pos
  bool prefilled = false;

  // The whole step, on the device: logits, greedy token into ids and seq[:, pos + 1], pos += 1.
  torch::Tensor greedy_step() {
    torch::Tensor lg = model->forward_static(c);
    const torch::Tensor next = lg.select(1, 0).argmax(-1, /*keepdim=*/true);  // [B, 1] int64
    c.ids.copy_(next);
    seq.index_copy_(1, c.pos + 1, next);
    c.pos.add_(1);
    return lg;
  }

  void need_room(int64_t n, const char* op) const {
    if (!prefilled) throw_error(ErrorKind::kInvalidArgument, kWhat, "%s before prefill", op);
    if (n < 0) throw_error(ErrorKind::kInvalidArgument, kWhat, "%s: %lld steps", op, static_cast<long long>(n));
    if (length + n > c.capacity)
      throw_error(ErrorKind::kInvalidArgument, kWhat,
                  "%s: %lld more steps after %lld positions exceed the capacity %lld (prompt + steps <= capacity)", op,
                  static_cast<long long>(n), static_cast<long long>(length), static_cast<long long>(c.capacity));
  }
};

StaticDecoder::StaticDecoder(const Model& model, int64_t batch, int64_t capacity, bool cuda_graph)
    : impl_(std::make_unique<Impl>()) {
  if (cuda_graph) {
#if !defined(RAZERQ_TORCH_CUDA)
    throw_error(ErrorKind::kUnsupported, kWhat,
                "CUDA graphs need razerq built against a libtorch with CUDA (this one is CPU-only: libtorch without CUDA)");
#endif
    if (!model.device().is_cuda())
      throw_error(ErrorKind::kUnsupported, kWhat, "CUDA graphs need a model on CUDA (this one is on %s)",
                  model.device().str().c_str());
  }
  impl_->model = &model;
  impl_->graph_wanted = cuda_graph;
  impl_->c = model.make_static_cache(batch, capacity);  // checks the architecture, batch and capacity
  impl_->seq = torch::zeros({batch, capacity + 1}, torch::TensorOptions().dtype(torch::kLong).device(model.device()));
}

StaticDecoder::StaticDecoder(StaticDecoder&&) noexcept = default;
StaticDecoder& StaticDecoder::operator=(StaticDecoder&&) noexcept = default;
StaticDecoder::~StaticDecoder() = default;

torch::Tensor StaticDecoder::prefill(const torch::Tensor& prompt) {
  Impl& d = *impl_;
  StaticKVCache& c = d.c;
  if (prompt.dim() != 2 || prompt.size(0) != c.batch || prompt.size(1) < 1)
    throw_error(ErrorKind::kInvalidArgument, kWhat, "prompt must be [%lld, P] with P >= 1 (got %s)",
                static_cast<long long>(c.batch), formats::shape_string(prompt.sizes().vec()).c_str());
  const int64_t P = prompt.size(1);
  if (P >= c.capacity)
    throw_error(ErrorKind::kInvalidArgument, kWhat, "a prompt of %lld tokens leaves no slot of the capacity %lld for decoding",
                static_cast<long long>(P), static_cast<long long>(c.capacity));
  torch::NoGradGuard no_grad;
  KVCache dyn;
  const torch::Tensor lg = d.model->forward(prompt, &dyn);  // checks the ids
  for (size_t l = 0; l < c.k.size(); ++l) {
    c.k[l].narrow(2, 0, P).copy_(dyn.k[l]);
    c.v[l].narrow(2, 0, P).copy_(dyn.v[l]);
  }
  const torch::Tensor first = lg.select(1, P - 1).argmax(-1, /*keepdim=*/true);  // [B, 1]
  c.ids.copy_(first);
  c.pos.fill_(P);
  d.seq.zero_();
  d.seq.narrow(1, 0, P).copy_(prompt.to(d.seq.device(), torch::kLong));
  d.seq.narrow(1, P, 1).copy_(first);
  d.length = P;
  d.prefilled = true;
  return first.view({c.batch});
}

torch::Tensor StaticDecoder::step() {
  Impl& d = *impl_;
  d.need_room(1, "step");
  torch::NoGradGuard no_grad;
  torch::Tensor lg = d.greedy_step();
#if defined(RAZERQ_TORCH_CUDA)
  if (d.graph) {
    d.logits.copy_(lg);  // logits() stays the graph's buffer
  } else {
    d.logits = lg;
  }
#else
  d.logits = lg;
#endif
  ++d.length;
  return lg;
}

void StaticDecoder::capture() {
  Impl& d = *impl_;
  if (!d.graph_wanted) return;
#if defined(RAZERQ_TORCH_CUDA)
  if (d.graph) return;
  if (!d.prefilled) throw_error(ErrorKind::kInvalidArgument, kWhat, "capture before prefill");
  torch::NoGradGuard no_grad;
  StaticKVCache& c = d.c;
  const torch::Device dev = d.model->device();
  // Warm-up steps write K/V slots pos, pos + 1, ...: those are written again by the real steps
  // before any query can see them, so only pos, ids and the token buffer are restored. They run
  // only while a slot is free (an index past the capacity would fault on the device).
  const int warm = static_cast<int>(std::min<int64_t>(kWarmupSteps, c.capacity - d.length));
  const torch::Tensor pos0 = c.pos.clone(), ids0 = c.ids.clone(), seq0 = d.seq.clone();
  torch::cuda::synchronize(dev.index());
  c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, dev.index());
  auto graph = std::make_unique<at::cuda::CUDAGraph>();
  torch::Tensor out;
  try {
    c10::cuda::CUDAStreamGuard guard(side);
    for (int i = 0; i < warm; ++i) (void)d.greedy_step();
    c.pos.copy_(pos0);
    c.ids.copy_(ids0);
    d.seq.copy_(seq0);
    torch::cuda::synchronize(dev.index());
    graph->capture_begin();
    out = d.greedy_step();
    graph->capture_end();
  } catch (const c10::Error& e) {
    std::string m = e.what_without_backtrace();
    m = m.substr(0, m.find('\n'));
    throw_error(ErrorKind::kInternal, kWhat, "CUDA graph capture of the decode step failed: %s", m.c_str());
  }
  torch::cuda::synchronize(dev.index());
  d.logits = out;
  d.graph = std::move(graph);
#else
  throw_error(ErrorKind::kUnsupported, kWhat, "libtorch without CUDA: no CUDA graphs");
#endif
}

void StaticDecoder::replay(int64_t n) {
  Impl& d = *impl_;
  d.need_room(n, "replay");
  if (!d.graph_wanted) {
    for (int64_t i = 0; i < n; ++i) (void)step();
    return;
  }
#if defined(RAZERQ_TORCH_CUDA)
  capture();
  for (int64_t i = 0; i < n; ++i) d.graph->replay();
  d.length += n;
#endif
}

torch::Tensor StaticDecoder::logits() const { return impl_->logits; }

torch::Tensor StaticDecoder::tokens() const {
  if (!impl_->prefilled) return torch::empty({impl_->c.batch, 0}, torch::kLong);
  return impl_->seq.narrow(1, 0, impl_->length + 1).cpu();
}

int64_t StaticDecoder::length() const { return impl_->length; }
int64_t StaticDecoder::batch() const { return impl_->c.batch; }
int64_t StaticDecoder::capacity() const { return impl_->c.capacity; }
bool StaticDecoder::cuda_graph() const { return impl_->graph_wanted; }
bool StaticDecoder::captured() const {
#if defined(RAZERQ_TORCH_CUDA)
  return impl_->graph != nullptr;
#else
  return false;
#endif
}

}  // namespace razerq::eval
