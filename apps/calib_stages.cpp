#include "apps/calib_stages.hpp"

#include <cstdio>

#include "calib/awq.hpp"
#include "calib/datasets.hpp"
#include "calib/gptq_sequential.hpp"
#include "calib/lwc.hpp"
#include "calib/rotation.hpp"
#include "calib/sensitivity.hpp"
#include "calib/tokenizer.hpp"
#include "common/error.hpp"
#include "eval/model.hpp"
#include "quantizer/lut.hpp"

namespace razerq::app {

namespace {

// The calibration windows of a stage (--calib, --nsamples, --calib-seqlen, --seed), with their
// manifest record (rec["calibration"]: the tokens' SHA-256 and the model dtype they ran in).
std::vector<std::vector<int32_t>> calibration_windows(const std::string& model_dir, const CalibStageArgs& a,
                                                      const eval::Model& model, const std::string& model_dtype,
                                                      bool quiet, nlohmann::json& rec) {
  const std::string data_dir = a.data_dir.empty() ? calib::default_data_dir() : a.data_dir;
  const std::unique_ptr<calib::Tokenizer> tok = calib::load_tokenizer(model_dir);
  calib::CalibrationSet cal = calib::calibration_set(a.calib, a.nsamples, a.seqlen, a.seed, *tok, data_dir);
  if (!quiet && !cal.note.empty()) std::fprintf(stderr, "note (calibration): %s\n", cal.note.c_str());
  std::vector<int32_t> all;
  for (const auto& w : cal.windows) all.insert(all.end(), w.begin(), w.end());
  rec["calibration"] = {{"source", a.calib},  {"n_samples", a.nsamples},
                        {"seqlen", a.seqlen}, {"seed", a.seed},
                        {"tokens_sha256", calib::token_ids_sha256(all)}, {"model_dtype", model_dtype}};
  if (!quiet)
    std::fprintf(stderr, "calibration: %s, %d x %d tokens (seed %lld); %s\n", a.calib.c_str(), a.nsamples, a.seqlen,
                 static_cast<long long>(a.seed), model.describe().c_str());
  return std::move(cal.windows);
}

// The canonical name of a --calib-dtype ("fp32", "fp16", "bf16"), as the manifest records it.
const char* dtype_name(torch::ScalarType t) {
  return t == torch::kFloat16 ? "fp16" : t == torch::kBFloat16 ? "bf16" : "fp32";
}

}  // namespace

CalibStageOutput run_calib_stages(const std::string& model_dir, const quantizer::FormatConfig& cfg,
                                  const quantizer::SearchOptions& search, const CalibStageArgs& a, bool quiet,
                                  nlohmann::json* record) {
  if (a.lwc && a.gptq)
    throw_error(ErrorKind::kInvalidArgument, "--lwc", "does not combine with --gptq (GPTQ chooses its own group parameters)");
  CalibStageOutput out;
  nlohmann::json rec = nlohmann::json::object();
  nlohmann::json stages = nlohmann::json::array();

  eval::ModelOptions mo;
  mo.device = eval::parse_device(a.device);
  mo.dtype = eval::parse_dtype(a.dtype);
  calib::FloatModel rotated;
  std::unique_ptr<eval::WeightSource> src = eval::WeightSource::open_hf(model_dir);
  if (a.rotate) {
    calib::RotationOptions ro;
    ro.seed = a.rotate_seed;
    rotated = calib::rotate_model(*src, ro);
    src = calib::memory_source(rotated);
    out.config_patch = rotated.config_patch;
    rec["rotation"] = rotated.record;
    stages.push_back("rotate");
    if (!quiet)
      std::fprintf(stderr, "rotate: residual %s, down_proj input %s (seed %llu)\n", rotated.record["residual"].get<std::string>().c_str(),
                   rotated.record["online_hadamard"]["down_proj"].get<std::string>().c_str(),
                   static_cast<unsigned long long>(a.rotate_seed));
  }
  eval::Model model = eval::Model::load(*src, mo);

  std::vector<std::vector<int32_t>> windows;
  if (a.awq || a.lwc || a.gptq) windows = calibration_windows(model_dir, a, model, dtype_name(mo.dtype), quiet, rec);

  if (a.awq) {
    calib::AwqOptions ao;
    ao.n_grid = a.awq_grid;
    ao.duo_scaling = a.awq_duo_scaling;
    ao.clip = a.awq_clip && !a.lwc;
    ao.clip_opt.n_grid = a.awq_clip_grid;
    ao.clip_opt.max_shrink = a.awq_max_shrink;
    ao.range_aware = search.range_aware;
    ao.batch = a.batch;
    ao.offload = a.offload;
    ao.progress = [&](const calib::AwqProgress& p) {
      if (!quiet)
        std::fprintf(stderr, "awq [layer %lld/%lld] %s: ratio %.2f, block-output MSE %.4g (ratio 0: %.4g) %.1f s\n",
                     static_cast<long long>(p.layer + 1), static_cast<long long>(p.layers), p.group.c_str(), p.ratio, p.loss,
                     p.loss_first, p.seconds);
    };
    calib::AwqResult r = calib::awq_apply(model, windows, cfg, ao);
    if (!a.gptq && !a.lwc) out.precomputed = std::move(r.clipped);  // AWQ's own quantization of the clipped linears
    rec["awq"] = {{"n_grid", a.awq_grid},           {"duo_scaling", a.awq_duo_scaling}, {"clip", ao.clip},
                  {"clip_grid", a.awq_clip_grid},   {"max_shrink", a.awq_max_shrink},   {"loss", "block-output MSE"},
                  {"device", a.device}};
    stages.push_back("awq");
  }

  if (a.lwc) {
    calib::LwcOptions lo;
    lo.epochs = a.lwc_epochs;
    lo.lr = a.lwc_lr;
    lo.batch = a.batch;
    lo.offload = a.offload;
    lo.range_aware = search.range_aware;
    lo.progress = [&](const calib::LwcProgress& p) {
      if (!quiet)
        std::fprintf(stderr, "lwc [layer %lld/%lld] epoch %d/%d block-output MSE %.4g %.1f s\n", static_cast<long long>(p.layer + 1),
                     static_cast<long long>(p.layers), p.epoch, p.epochs, p.loss, p.seconds);
    };
    out.precomputed = calib::lwc_apply(model, windows, cfg, lo);
    rec["lwc"] = {{"epochs", a.lwc_epochs}, {"lr", a.lwc_lr}, {"init", lo.init_from_search ? "weight-MSE clip search" : std::to_string(lo.init)}, {"optimizer", "AdamW, no weight decay"},
                  {"loss", "block-output MSE"}, {"device", a.device}};
    stages.push_back("lwc");
  }

  if (a.gptq) {
    calib::SequentialOptions so;
    so.gptq.damp = a.damp;
    so.gptq.act_order = a.act_order;
    so.gptq.block_size = a.block_size;
    so.gptq.search = search;
    so.batch = a.batch;
    so.offload = a.offload;
    so.progress = [&](const calib::SequentialProgress& p) {
      if (!quiet)
        std::fprintf(stderr, "gptq [layer %lld/%lld] %s loss %.4g damp %g (inputs %.1f s, factor %.1f s, sweep %.1f s) %.1f s\n",
                     static_cast<long long>(p.layer + 1), static_cast<long long>(p.layers), p.tensor.c_str(), p.loss,
                     p.damp_used, p.hessian_seconds, p.factor_seconds, p.sweep_seconds, p.seconds);
    };
    out.precomputed = calib::gptq_sequential(model, windows, cfg, so);
    rec["gptq"] = {{"damp", a.damp}, {"act_order", a.act_order}, {"block_size", a.block_size},
                   {"static_groups", a.act_order}, {"device", a.device}};
    stages.push_back("gptq");
  }

  // Every value the stages changed (all of them after a rotation; norms and linears after AWQ),
  // except the tensors already packed.
  if (a.rotate || a.awq || a.lwc)
    for (const std::string& name : model.tensor_names()) {
      if (out.precomputed.count(name)) continue;
      const torch::Tensor t = model.tensor(name).to(torch::kCPU, torch::kFloat32).contiguous();
      formats::FloatTensor ft;
      ft.shape = t.sizes().vec();
      ft.data.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
      if (a.rotate) ft.dtype = rotated.tensors.at(name).dtype;
      out.replaced[name] = std::move(ft);
    }
  rec["stages"] = stages;
  if (record) *record = rec;
  return out;
}

CalibStageOutput run_lut_stage(const std::string& model_dir, const quantizer::FormatConfig& cfg,
                               const quantizer::LutOptions& lut, const std::string& sensitivity, const CalibStageArgs& a,
                               int threads, bool quiet, nlohmann::json* record) {
  if (sensitivity != "fisher" && sensitivity != "act2")
    throw_error(ErrorKind::kInvalidArgument, "--sensitivity", "'%s' (expected fisher, act2 or none)", sensitivity.c_str());
  eval::ModelOptions mo;
  mo.device = eval::parse_device(a.device);
  mo.dtype = eval::parse_dtype(a.dtype);
  if (sensitivity == "fisher") calib::check_fisher_dtype(mo.dtype, "--calib-dtype " + a.dtype);  // before loading
  const std::unique_ptr<eval::WeightSource> src = eval::WeightSource::open_hf(model_dir);
  const eval::Model model = eval::Model::load(*src, mo);
  nlohmann::json rec = nlohmann::json::object();
  const std::vector<std::vector<int32_t>> windows = calibration_windows(model_dir, a, model, dtype_name(mo.dtype), quiet, rec);
  rec["sensitivity"] = sensitivity == "fisher"
                           ? "fisher (mean over calibration windows of the squared gradient of the LM loss)"
                           : "act2 (mean square of each input channel, broadcast over rows)";
  rec["stages"] = nlohmann::json::array({"sensitivity"});
  auto progress = [&](const calib::SensitivityProgress& p) {
    if (!quiet)
      std::fprintf(stderr, "%s [window %lld/%lld]%s %.1f s\n", sensitivity.c_str(), static_cast<long long>(p.window),
                   static_cast<long long>(p.windows), p.loss > 0 ? strprintf(" loss %.4f", p.loss).c_str() : "", p.seconds);
  };
  const std::map<std::string, calib::SensitivityTensor> sens = sensitivity == "fisher"
                                                                   ? calib::fisher_diagonal(model, windows, progress)
                                                                   : calib::activation_second_moments(model, windows, progress);
  CalibStageOutput out;
  for (const auto& [name, st] : sens) {
    // The checkpoint's weights as stored (not the model's copy, rounded to --calib-dtype).
    const std::vector<int64_t> shape = src->shape(name);
    if (shape.size() != 2)
      throw_error(ErrorKind::kInternal, model_dir + ": tensor '" + name + "'", "rank %zu (expected a matrix)", shape.size());
    const int64_t rows = shape[0], cols = shape[1];
    std::vector<float> w(static_cast<size_t>(rows * cols));
    src->read_float(name, w.data(), threads);
    quantizer::Sensitivity s{st.data.data(), st.shape.size() == 2};
    try {
      out.precomputed[name] = quantizer::lut_quantize(w.data(), rows, cols, cfg, lut, s, threads);
    } catch (const Error& e) {
      throw Error(e.kind(), model_dir + ": tensor '" + name + "'", e.message());
    }
  }
  if (record) *record = rec;
  return out;
}

}  // namespace razerq::app
