#pragma once
// OmniQuant's learnable weight clipping (LWC; Shao et al. 2024, OpenGVLab/OmniQuant
// quantize/quantizer.py), for every registry format, with libtorch autograd. Built with libtorch only.
//
// Each group of each linear has clip factors sigmoid(gamma) (upper) and, for asym int,
// sigmoid(beta) (lower). OmniQuant initialises them at sigmoid(4) = 0.982; by default here they
// start at the ratio a weight-MSE clip search picks for the group (quantizer::awq_clip_search
// without a Gram matrix: r = 1, 0.95, ..., 0.55), because our round-to-nearest baseline already
// searches the clipping and a start at 0.98 would begin far behind it (init_from_search =
// false: OmniQuant's constant). The group is
// clamped to [-sigmoid(gamma) max|w|, sigmoid(gamma) max|w|] (asym: [sigmoid(beta) min w,
// sigmoid(gamma) max w]) and quantized by the format (quantizer::quantize_clipped: parameters
// chosen on the clamped values without further clipping, so RaZeR's special value follows the
// clipped range). Gradients (straight-through rounding): the fake-quantized weight is
//   q = w_c + s * stopgrad(c - w_c / s),   s = span * stopgrad(s_format / span),
// with w_c the clamped weights (clamp bounds differentiable), c = the decoded value / the
// format's scale s_format, span = hi - lo: q's value is the format's, dq/dgamma has OmniQuant's
// two terms (the clamped weights, and the rounding residual through the scale).
// Training, block by block (OmniQuant): the block's input is the previous quantized blocks'
// output, its target the full-precision block's output on the full-precision input; loss the
// MSE; AdamW (no weight decay) over the factors for `epochs` passes over the windows.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "eval/model.hpp"
#include "quantizer/quantize.hpp"

namespace razerq::calib {

struct LwcProgress {
  int64_t layer = 0, layers = 0;
  int epoch = 0, epochs = 0;
  double loss = 0;        // mean block-output MSE over the epoch
  double seconds = 0;
};

struct LwcOptions {
  int epochs = 2;
  double lr = 1e-2;       // OmniQuant's lwc_lr (it trains 20 epochs of 128 windows)
  bool init_from_search = true;  // start each group at its weight-MSE clip ratio
  double init = 4.0;      // else gamma, beta at start: sigmoid(4) = 0.982 (OmniQuant)
  int64_t batch = 1;      // windows per step
  bool offload = false;   // activations in host memory between forwards
  bool range_aware = true;
  std::function<void(const LwcProgress&)> progress;
};

// Learns the clip factors block by block; the model's linears are left replaced by their
// quantized values. Returns the packed tensors (name + ".weight").
std::map<std::string, quantizer::QuantizedTensor> lwc_apply(eval::Model& model, const std::vector<std::vector<int32_t>>& windows,
                                                            const quantizer::FormatConfig& cfg, const LwcOptions& opt = {});

}  // namespace razerq::calib
