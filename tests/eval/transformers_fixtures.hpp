#pragma once
// The transformers fixtures of tests/golden/transformers (made on the GPU machine by
// scripts/gpu/make_transformers_fixtures.py): tiny random OPT / Qwen2 / Llama-3 models saved by
// transformers' save_pretrained, with transformers' own float32 and float64 logits.
#include <torch/types.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "eval/model.hpp"
#include "formats/safetensors.hpp"
#include "tests/test_util.hpp"

namespace razerq::eval::testing {

inline std::string transformers_fixture_dir() { return test::src_path("golden/transformers"); }

inline std::vector<std::string> transformers_fixtures() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(transformers_fixture_dir(), ec))
    if (std::filesystem::exists(e.path() / "reference.safetensors")) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

struct TransformersReference {
  torch::Tensor ids, logits_f32, logits_f64;  // CPU
};

inline torch::Tensor read_tensor(const formats::SafetensorsFile& f, const std::string& name) {
  const formats::TensorInfo& t = f.info(name);
  std::vector<int64_t> shape(t.shape.begin(), t.shape.end());
  const torch::ScalarType st = t.dtype == formats::DType::kI64   ? torch::kInt64
                               : t.dtype == formats::DType::kF64 ? torch::kFloat64
                                                                 : torch::kFloat32;
  return torch::from_blob(const_cast<uint8_t*>(f.data(t)), shape, torch::TensorOptions().dtype(st)).clone();
}

inline TransformersReference read_reference(const std::string& name) {
  const formats::SafetensorsFile f = formats::SafetensorsFile::open(transformers_fixture_dir() + "/" + name + "/reference.safetensors");
  return {read_tensor(f, "ids"), read_tensor(f, "logits_f32"), read_tensor(f, "logits_f64")};
}

// max |a - b| / max |b|
inline double max_rel(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max() / b.to(torch::kFloat64).abs().max()).item<double>();
}

}  // namespace razerq::eval::testing
