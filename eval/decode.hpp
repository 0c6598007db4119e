#pragma once
// Greedy token-by-token decoding on a static KV cache (Model::make_static_cache and
// Model::forward_static, eval/model.hpp), stepped eagerly or replayed from one CUDA graph.
//
//   StaticDecoder d(model, B, capacity, /*cuda_graph=*/true);
//   torch::Tensor first = d.prefill(prompt);  // [B, P] ids -> the greedy token after the prompt, [B] int64
//   d.replay(n);                              // n more greedy tokens (one graph launch each)
//   torch::Tensor seq = d.tokens();           // host int64 [B, P + 1 + n]: prompt and generated ids
//
// prefill runs the prompt through Model::forward with a dynamic KVCache (eager), copies its keys
// and values into slots [0, P) of the static buffers, sets pos = P and the step's input ids to
// the argmax of the prompt's last logits. A step (step(), or one replay) feeds ids at position
// pos: it writes K/V slot pos, takes the argmax of its logits as the next ids (written in place
// into the ids buffer and into column pos + 1 of the token buffer) and advances pos, all on the
// device: replaying the step n times decodes n tokens without the host in the loop.
//
// With cuda_graph, capture() (called by the first replay if not before) runs the step twice on
// a side stream to warm libtorch up (the state is restored afterwards) and captures one step;
// replay(n) then launches that graph n times on the current stream and does not synchronise.
// Without it, replay(n) is n eager steps. The graph stays valid across prefills (same buffers).
//
// Errors: the model must be a LLaMA-family model without a sliding window (kUnsupported, from
// make_static_cache); cuda_graph needs a CUDA model and razerq built against a CUDA libtorch
// (RAZERQ_TORCH_CUDA; kUnsupported otherwise); a prompt of the wrong batch, an empty one, one
// that leaves no slot free, or steps past the capacity throw kInvalidArgument before any work.
// Capacity counts positions through the model: prompt + steps <= capacity.
#include <torch/types.h>

#include <cstdint>
#include <memory>

#include "eval/model.hpp"

namespace razerq::eval {

class StaticDecoder {
 public:
  StaticDecoder(const Model& model, int64_t batch, int64_t capacity, bool cuda_graph);
  StaticDecoder(StaticDecoder&&) noexcept;
  StaticDecoder& operator=(StaticDecoder&&) noexcept;
  ~StaticDecoder();

  // prompt: integer ids [B, P], 1 <= P < capacity, any device. Returns the first generated
  // token of each row, int64 [B] on the model device. Replaces whatever was decoded before.
  torch::Tensor prefill(const torch::Tensor& prompt);
  // One eager static step; returns its float32 logits [B, 1, vocab] (those of the position it
  // fed; the greedy token from them is already appended).
  torch::Tensor step();
  // Captures the CUDA graph of a step (cuda_graph only; idempotent). Needs a prefill first.
  void capture();
  // n steps: graph replays with cuda_graph, else eager steps. Asynchronous on CUDA.
  void replay(int64_t n);
  // The logits of the last step (step() or replay): [B, 1, vocab] float32 on the device (with
  // cuda_graph, the graph's output buffer, overwritten by every replay).
  torch::Tensor logits() const;

  // Host copy of the sequences so far: int64 [B, length() + 1] (prompt, then generated ids).
  torch::Tensor tokens() const;
  int64_t length() const;  // positions in the cache (prompt + steps)
  int64_t batch() const;
  int64_t capacity() const;
  bool cuda_graph() const;
  bool captured() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace razerq::eval
