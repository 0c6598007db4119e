#include "apps/gptq_stage.hpp"

#include <cstdio>

#include "calib/datasets.hpp"
#include "calib/gptq_sequential.hpp"
#include "calib/tokenizer.hpp"
#include "common/error.hpp"
#include "eval/model.hpp"

namespace razerq::app {

std::map<std::string, quantizer::QuantizedTensor> run_gptq_stage(const std::string& model_dir,
                                                                 const quantizer::FormatConfig& cfg,
                                                                 const quantizer::SearchOptions& search,
                                                                 const GptqStageArgs& a, bool quiet,
                                                                 nlohmann::json* record) {
  const std::string data_dir = a.data_dir.empty() ? calib::default_data_dir() : a.data_dir;
  const std::unique_ptr<calib::Tokenizer> tok = calib::load_tokenizer(model_dir);
  const calib::CalibrationSet cal = calib::calibration_set(a.calib, a.nsamples, a.seqlen, a.seed, *tok, data_dir);
  if (!quiet && !cal.note.empty()) std::fprintf(stderr, "note (calibration): %s\n", cal.note.c_str());
  std::vector<int32_t> all;
  for (const auto& w : cal.windows) all.insert(all.end(), w.begin(), w.end());

  eval::ModelOptions mo;
  mo.device = eval::parse_device(a.device);
  eval::Model model = eval::Model::load(model_dir, mo);
  if (!quiet)
    std::fprintf(stderr, "gptq: %s; calibration %s, %d x %d tokens (seed %lld)\n", model.describe().c_str(), a.calib.c_str(),
                 a.nsamples, a.seqlen, static_cast<long long>(a.seed));
  calib::SequentialOptions so;
  so.gptq.damp = a.damp;
  so.gptq.act_order = a.act_order;
  so.gptq.block_size = a.block_size;
  so.gptq.search = search;
  so.batch = a.batch;
  so.progress = [&](const calib::SequentialProgress& p) {
    if (!quiet)
      std::fprintf(stderr, "gptq [layer %lld/%lld] %s loss %.4g damp %g %.1f s\n", static_cast<long long>(p.layer + 1),
                   static_cast<long long>(p.layers), p.tensor.c_str(), p.loss, p.damp_used, p.seconds);
  };
  auto out = calib::gptq_sequential(model, cal.windows, cfg, so);
  if (record) {
    (*record)["stages"] = {"gptq"};
    (*record)["calibration"] = {{"source", a.calib},     {"n_samples", a.nsamples},
                                {"seqlen", a.seqlen},    {"seed", a.seed},
                                {"tokens_sha256", calib::token_ids_sha256(all)}};
    (*record)["gptq"] = {{"damp", a.damp}, {"act_order", a.act_order}, {"block_size", a.block_size},
                         {"static_groups", a.act_order}, {"device", a.device}};
  }
  return out;
}

}  // namespace razerq::app
