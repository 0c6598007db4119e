#pragma once
// The calibrated stages of `razerq quantize` (apps/calib_stages.cpp, built with libtorch only):
// --rotate (calib/rotation.hpp), --awq (calib/awq.hpp), --lwc (calib/lwc.hpp), --gptq
// (calib/gptq_sequential.hpp), in this order, on one libtorch model; then the manifest record.
// --lwc excludes --gptq (GPTQ chooses its own group parameters); with --awq and --lwc, AWQ's
// clip search is skipped (LWC learns the clipping). Torch-free header.
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "formats/quantize_model.hpp"
#include "quantizer/quantize.hpp"

namespace razerq::app {

struct CalibStageArgs {
  bool rotate = false, awq = false, lwc = false, gptq = false;
  // Calibration data (AWQ, GPTQ).
  std::string calib = "c4";  // calib::calibration_set source
  int nsamples = 128, seqlen = 2048;
  int64_t seed = 0;
  // GPTQ.
  double damp = 0.01;
  bool act_order = false;
  int block_size = 128;
  // AWQ.
  int awq_grid = 20;
  bool awq_duo_scaling = true, awq_clip = true;
  int awq_clip_grid = 20;
  double awq_max_shrink = 0.5;
  // LWC.
  int lwc_epochs = 2;
  double lwc_lr = 1e-2;
  // Rotation.
  uint64_t rotate_seed = 0;
  std::string device = "cpu", data_dir;
  std::string dtype = "fp32";  // the model's dtype during calibration (eval::parse_dtype)
  int64_t batch = 1;
  bool offload = false;  // --calib-offload
  bool any() const { return rotate || awq || lwc || gptq; }
};

struct CalibStageOutput {
  std::map<std::string, quantizer::QuantizedTensor> precomputed;  // packed by a stage (GPTQ, AWQ's clip search)
  std::map<std::string, formats::FloatTensor> replaced;           // values a stage changed (folded, rotated)
  nlohmann::json config_patch = nlohmann::json::object();
};

// Runs the requested stages over the decoder of `model_dir` for format `cfg`; fills `record`
// with the manifest's "stages", "calibration" and per-stage entries.
CalibStageOutput run_calib_stages(const std::string& model_dir, const quantizer::FormatConfig& cfg,
                                  const quantizer::SearchOptions& search, const CalibStageArgs& a, bool quiet,
                                  nlohmann::json* record);

// The lut format's calibrated stage: the sensitivity ("fisher" or "act2", calib/sensitivity.hpp)
// on the calibration windows of `a` (--calib, --nsamples, --calib-seqlen, --seed, --device),
// then quantizer::lut_quantize of every decoder linear with it. Fills `record` with
// "sensitivity" and "calibration" (tokens_sha256 included).
CalibStageOutput run_lut_stage(const std::string& model_dir, const quantizer::FormatConfig& cfg,
                               const quantizer::LutOptions& lut, const std::string& sensitivity, const CalibStageArgs& a,
                               int threads, bool quiet, nlohmann::json* record);

}  // namespace razerq::app
