#pragma once
// AWQ (Lin et al. 2023), following AutoAWQ (awq/quantize/quantizer.py, scale.py) over the
// libtorch model, for every registry format. Built with libtorch only.
//
// Block by block, on the full-precision model (AutoAWQ quantizes nothing while calibrating):
// 1. The inputs of every linear are captured on the calibration windows, with the block's
//    full-precision output.
// 2. Scale search, per group of linears sharing an input (LLaMA family):
//      input_layernorm -> [q, k, v];  v_proj -> [o_proj] (only when v and o have the same shape:
//      no GQA);  post_attention_layernorm -> [gate, up];  up_proj -> [down_proj] (not with an
//      online Hadamard on down_proj's input, which does not commute with a channel scaling).
//    For r = 0, 1/n_grid, ..., (n_grid-1)/n_grid: s = x_mean^r / (w_mean^(1-r) + 1e-4) (duo
//    scaling; else x_mean^r), clamped at 1e-4, normalised by sqrt(max s * min s), where x_mean
//    is the mean |x| per input channel and w_mean the mean over rows of |w| / max|w| of its
//    group; the group's linears become Q(W diag(s)) diag(s)^-1 (Q: the format's round to
//    nearest without clipping) and the loss is the MSE of the block's output against the
//    full-precision one ("block-output MSE": AutoAWQ inspects the attention or MLP sub-module).
//    All groups are searched on the original block, then the best scales are folded:
//    W <- W diag(s) for the group, and 1/s into the previous op (the norm's weight, or the
//    previous linear's output rows and bias).
// 3. Clip search (quantizer::awq_clip_search) on every linear but q/k ("hard to clip
//    precisely" through the q.k product), with the Gram matrix of its scaled input; the
//    weights are replaced by their clamped values.
// The next block's input is this block's full-precision output.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "eval/model.hpp"
#include "quantizer/awq_clip.hpp"

namespace razerq::calib {

struct AwqProgress {
  int64_t layer = 0, layers = 0;
  std::string group;     // "input_layernorm -> q_proj,k_proj,v_proj", ...
  double ratio = 0;      // the chosen grid point r
  double loss = 0;       // block-output MSE at that point
  double loss_first = 0; // at r = 0
  double seconds = 0;    // since the start
};

struct AwqOptions {
  int n_grid = 20;
  bool duo_scaling = true;
  bool clip = true;                       // the clip search after the scales
  quantizer::AwqClipOptions clip_opt;
  bool range_aware = true;                // the format search's range-aware candidates
  int64_t batch = 1;                      // windows per forward
  bool offload = false;                   // activations in host memory between forwards
  std::function<void(const AwqProgress&)> progress;
};

struct AwqResult {
  // The clip search's packed tensors (name + ".weight"), for the linears it clipped: what a
  // plain AWQ checkpoint stores (without a later GPTQ).
  std::map<std::string, quantizer::QuantizedTensor> clipped;
  std::map<std::string, std::vector<float>> scales;  // per group, by its first linear's name
};

// Applies AWQ's scales (folded) and clipping to the model's weights in place.
AwqResult awq_apply(eval::Model& model, const std::vector<std::vector<int32_t>>& windows,
                    const quantizer::FormatConfig& cfg, const AwqOptions& opt = {});

// The round-to-nearest value of W [rows, cols] (float32, any device) in format cfg with the
// search (clip ratios `clip`, empty = the format's default), dequantized, float32 on W's device.
torch::Tensor fake_quantize(const torch::Tensor& w, const quantizer::FormatConfig& cfg, const std::vector<float>& clip = {},
                            bool range_aware = true);

}  // namespace razerq::calib
