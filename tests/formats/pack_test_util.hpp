#pragma once
// A packed checkpoint of a test model, quantized inside the test (no source checksums): the setup
// the export, GGUF and evaluation tests share.
#include <string>
#include <vector>

#include "formats/quantize_model.hpp"

namespace razerq::test {

inline std::string quantize_packed(const std::string& model_dir, const std::string& out_dir,
                                   const quantizer::FormatConfig& cfg, const std::vector<std::string>& skip = {},
                                   int threads = 0) {
  formats::QuantizeJob job;
  job.model_dir = model_dir;
  job.out_dir = out_dir;
  job.cfg = cfg;
  job.skip = skip;
  job.threads = threads;
  job.checksums = false;
  formats::quantize_model(job, [](const formats::TensorProgress&) {});
  return out_dir;
}

}  // namespace razerq::test
