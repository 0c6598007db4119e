#pragma once
// The GPTQ stage of `razerq quantize --gptq` (apps/gptq_stage.cpp, built with libtorch only):
// calibration windows, sequential GPTQ over the model, the manifest record. Torch-free header.
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "quantizer/quantize.hpp"

namespace razerq::app {

struct GptqStageArgs {
  std::string calib = "c4";  // calibration source (calib::calibration_set)
  int nsamples = 128, seqlen = 2048;
  int64_t seed = 0;
  double damp = 0.01;
  bool act_order = false;
  int block_size = 128;
  std::string device = "cpu", data_dir;
  int64_t batch = 1;
};

// Runs GPTQ over every decoder linear of `model_dir` for format `cfg`; fills `record` with the
// manifest's "stages"/"calibration"/"gptq" entries.
std::map<std::string, quantizer::QuantizedTensor> run_gptq_stage(const std::string& model_dir,
                                                                 const quantizer::FormatConfig& cfg,
                                                                 const quantizer::SearchOptions& search,
                                                                 const GptqStageArgs& a, bool quiet,
                                                                 nlohmann::json* record);

}  // namespace razerq::app
