#pragma once
// `razerq export OUT --to dequant`: a Hugging Face model directory whose quantized weights
// are the packed checkpoint's float64 reference dequantization rounded once to fp16 (or
// bf16/fp32): the fallback any runtime loads. Unquantized tensors are copied unchanged.
#include <functional>
#include <string>

#include "formats/safetensors.hpp"

namespace razerq::formats {

struct ExportOptions {
  DType dtype = DType::kF16;  // kF16, kBF16 or kF32
  bool force = false;
};

struct ExportSummary {
  int tensors = 0, dequantized = 0;
  uint64_t bytes = 0;
};

ExportSummary export_dequant(const std::string& packed_dir, const std::string& out_dir, const ExportOptions& opt,
                             const std::function<void(const std::string& line)>& progress);

// Parses "fp16"/"f16", "bf16", "fp32"/"f32" (the --dtype option).
DType parse_export_dtype(const std::string& s);

}  // namespace razerq::formats
