#pragma once
// AWQ's weight-clipping search (Lin et al. 2023; AutoAWQ awq/quantize/quantizer.py
// _compute_best_clip), for every registry format, torch-free (Eigen).
//
// For each output row and group, the weights are clamped to +-r * max|w| of the group for
// r = 1, 1 - 1/n_grid, ..., 1 - (max_shrink n_grid - 1)/n_grid (AutoAWQ: 20 and 0.5, so
// r = 1.00, 0.95, ..., 0.55), the clamped group is quantized by the format (its parameters
// chosen by the search on the clamped weights, without further clipping: for RaZeR the special
// value follows the clipped range) and the candidate with the lowest output error is kept:
//   err(r) = mean over tokens of (x_g . (q_g(r) - w_g))^2 = d^T G_gg d,  d = q_g(r) - w_g,
// with G = mean x x^T the Gram matrix of the layer's inputs (AutoAWQ evaluates the same sum
// on 512 sub-sampled tokens; the full Gram matrix is exact over all calibration tokens).
#include <cstdint>
#include <vector>

#include "quantizer/quantize.hpp"

namespace razerq::quantizer {

struct AwqClipOptions {
  int n_grid = 20;          // ratio step 1 / n_grid
  double max_shrink = 0.5;  // ratios down to 1 - max_shrink (exclusive)
  bool range_aware = true;  // the search's range-aware scale candidates (razer.md 3.2)
  int threads = 0;          // <= 0: OpenMP's default
};

struct AwqClipResult {
  std::vector<float> clipped;  // [rows, cols]: w clamped per group to +-ratio * max|w_g|
  QuantizedTensor q;           // the clamped weights quantized with the chosen candidates
  std::vector<float> ratio;    // [rows, groups_per_row] the chosen ratio
  double err_before = 0;       // sum over groups of d^T G d at ratio 1 (no clipping)
  double err_after = 0;        // the same at the chosen ratios
};

// w: [rows, cols] row-major; gram: [cols, cols] row-major float64, symmetric PSD (mean x x^T),
// only its diagonal blocks (one per group) are read; null: the identity (plain weight MSE).
AwqClipResult awq_clip_search(const float* w, int64_t rows, int64_t cols, const double* gram, const FormatConfig& cfg,
                              const AwqClipOptions& opt = {});

}  // namespace razerq::quantizer

namespace razerq::quantizer {

// Quantization with given per-group clipping ranges (AWQ's chosen ratios, OmniQuant's learned
// factors): group g of row r is clamped to [lo, hi] with hi = hi_ratio * (max|w_g| for the
// symmetric formats, max w_g for asym int) and lo = -hi (symmetric) or lo_ratio * min w_g
// (asym int), its parameters are chosen by the search on the clamped values without further
// clipping, and the clamped values are quantized with them.
struct ClippedQuantization {
  QuantizedTensor q;
  std::vector<float> values;       // [rows, cols] the dequantized weights (exact values, rounded to float)
  std::vector<double> scale;       // [rows, groups_per_row] each group's effective scale (0: an all-zero group)
  std::vector<float> lo, hi;       // [rows, groups_per_row] the clamping bounds
};
// hi_ratio, lo_ratio: [rows, groups_per_row]; lo_ratio is read for asym int only (may be null
// otherwise). Stats of q are against the unclipped w.
ClippedQuantization quantize_clipped(const float* w, int64_t rows, int64_t cols, const FormatConfig& cfg,
                                     const float* hi_ratio, const float* lo_ratio, bool range_aware = true,
                                     int threads = 0);

}  // namespace razerq::quantizer
