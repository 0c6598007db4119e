#pragma once
// Per-weight sensitivity of the linear layers for the lut format (quantizer/lut.hpp), on
// calibration windows (libtorch):
//   fisher  the Fisher diagonal: mean over the windows of the squared gradient of the window's
//           LM loss (mean next-token cross-entropy) with respect to each linear weight, one
//           backward per window; [out, in] per linear. SqueezeLLM sums the squared gradients
//           instead of averaging them: a positive factor, which changes neither the weighted
//           k-means nor the top-k choice of sensitive weights.
//   act2    the second moment of each input channel of the linear, mean over the windows'
//           tokens of x_k^2 (the diagonal of X^T X / tokens); [in] per linear, broadcast over rows.
// The model runs in its dtype (eval::ModelOptions::dtype, --calib-dtype). act2: fp32, fp16 or
// bf16, each activation converted to fp32 before it is squared, the sums kept in fp32. fisher:
// fp32 or bf16; the gradients are taken with respect to fp32 copies of the weights (cast to the
// model dtype in the forward, so the backward runs in the model dtype and the cast's backward
// returns fp32), squared and summed in fp32. SqueezeLLM does it in bf16 throughout (its
// SqueezeLLM-gradients run.py: model.bfloat16(), a hook squaring each bf16 gradient, summed in
// bf16 .grad). fp16 is refused (check_fisher_dtype).
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "eval/model.hpp"

namespace razerq::calib {

// Throws kInvalidArgument (starting with `where`, e.g. "--calib-dtype fp16") for fp16: the LM
// loss's weight gradients underflow in fp16 without loss scaling, which razerq does not do.
void check_fisher_dtype(torch::ScalarType dtype, const std::string& where);

struct SensitivityTensor {
  std::vector<int64_t> shape;  // [out, in] (fisher) or [in] (act2)
  std::vector<float> data;
};

struct SensitivityProgress {
  int64_t window = 0, windows = 0;
  double loss = 0;     // this window's LM loss (fisher); 0 for act2
  double seconds = 0;  // since the start
};

// Checkpoint weight name ("model.layers.0.self_attn.q_proj.weight") -> its sensitivity, for every
// linear of the decoder blocks. The model's weights are not changed.
std::map<std::string, SensitivityTensor> fisher_diagonal(const eval::Model& model,
                                                         const std::vector<std::vector<int32_t>>& windows,
                                                         const std::function<void(const SensitivityProgress&)>& progress = nullptr);
std::map<std::string, SensitivityTensor> activation_second_moments(
    const eval::Model& model, const std::vector<std::vector<int32_t>>& windows,
    const std::function<void(const SensitivityProgress&)>& progress = nullptr);

}  // namespace razerq::calib
