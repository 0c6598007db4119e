#pragma once
// The authors' quantization rules, reproduced exactly (razer.md sections 3.1, 3.8, 3.10 and
// 10), for `--razer-rule reference` and for printing the reference error next to ours.
// Arithmetic follows the official PyTorch-on-CUDA runs: fp32 throughout, a tensor divided by
// a Python scalar c computed as a * fp32(1/c) (razer.md 3.2), midpoint cascades with ties to
// the lower value, strict '<' updates, the output cast to fp16 (RL) or bf16 (NV).
//
//   int asym     RL quant_int         int sym   GPTQ's symmetric rule (no authors' rule)
//   fp4          RL quant_fp4         fp3       the same with the FP3 grid (max 4)
//   nf4          NV quant_nf4         razer 4   RL quant_fp4_razer      razer 3  the same on FP3, SVs +-3/+-6
//   mxfp4        RL quant_mxfp4       mxfp4-razer  NV quant_mxfp4_razer
//   nvfp4        NV quant_nvfp4       nvfp4-razer  NV quant_nvfp4_razer_e3m3
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "quantizer/format.hpp"

namespace razerq::quantizer {

struct QuantizedTensor;

struct ReferenceResult {
  std::vector<float> w_hat;              // [rows, cols] the authors' output, cast as they cast it
  std::vector<uint8_t> codes;            // [rows, cols] our code of each element
  std::vector<float> scale;              // [rows, groups] per-group multiplier (tensor scale excluded)
  std::vector<uint8_t> sv_index;         // [rows, groups] stored special-value index (RaZeR family)
  std::vector<uint8_t> zero;             // [rows, groups] asym int zero point
  float tensor_scale = 1.0f;             // NVFP4 family
  std::array<int64_t, 4> sv_groups{};    // histogram of sv_index
  double rel_error = 0;                  // ||w_hat - w||_F / ||w||_F in float64
  double rel_error_precast = 0;          // the same before the output cast to fp16/bf16
};

// Runs the reference rule of cfg's format on W [rows, cols].
ReferenceResult reference_quantize(const float* w, int64_t rows, int64_t cols, const FormatConfig& cfg);

// Fills q's codes and scales from the reference rule (scales rounded to the stored encoding:
// fp16 for the fp16 kinds; E3M3 for nvfp4-razer, exact for block scales >= 0.25).
void reference_pack(const float* w, int64_t rows, int64_t cols, const FormatConfig& cfg, QuantizedTensor& q);

// One line naming the rule used for cfg (for logs and manifests).
std::string reference_rule_description(const FormatConfig& cfg);

}  // namespace razerq::quantizer
