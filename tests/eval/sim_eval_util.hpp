#pragma once
// Shared by the CPU and CUDA eval tests of the simulated arithmetic: the product of one
// simulated linear inside a model, observed exactly. The transformers OPT fixture (opt-pre, with
// biases) packed with only its fc1 linears quantized: layer 0's fc2 then receives
// relu(fc1(x)) = relu(sim(x W^T) + b), elementwise after the simulated product, so it can be
// compared bit for bit with the float64 emulation (tests/kernels/sim_test_util.hpp ref_dot).
#include <gtest/gtest.h>
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>

#include "eval/model.hpp"
#include "quantizer/format.hpp"
#include "tests/eval/eval_test_util.hpp"
#include "tests/eval/transformers_fixtures.hpp"
#include "tests/kernels/sim_test_util.hpp"

namespace razerq::eval::testing {

// Packs opt-pre with only fc1 quantized into dir; "" when the fixture is missing.
inline std::string pack_opt_fc1_only(const std::string& dir) {
  const std::string src = transformers_fixture_dir() + "/opt-pre";
  if (!std::filesystem::exists(src + "/config.json")) return "";
  return quantize_packed(src, dir, quantizer::make_format_config("razer", 4, 128), {"self_attn", "fc2"});
}

// Loads `packed` on `opt` (sim set), runs layer 0 on 64 random tokens and returns how many of
// fc2's inputs differ from relu(ref_dot(x, W) + b) (x: fc1's input as the hook saw it).
inline int64_t fc1_mismatches(const std::string& packed, const ModelOptions& opt) {
  const Model m = Model::load(packed, opt);
  EXPECT_EQ(m.simulated_linears(), 2);
  torch::manual_seed(11);
  const torch::Tensor ids = torch::randint(0, m.config().vocab_size, {1, 64}, torch::kLong);
  std::map<std::string, torch::Tensor> in;
  (void)m.layer(0, m.embed(ids), [&](const std::string& n, const torch::Tensor& x) { in[n] = x.clone(); });
  const torch::Tensor x = in.at("model.decoder.layers.0.fc1").to(torch::kCPU).contiguous();
  const torch::Tensor w = m.tensor("model.decoder.layers.0.fc1.weight").to(torch::kCPU).contiguous();
  const torch::Tensor b = m.tensor("model.decoder.layers.0.fc1.bias");
  const int64_t K = w.size(1), N = w.size(0), R = x.numel() / K;
  torch::Tensor y = torch::empty({R, N}, torch::kFloat32);
  auto ya = y.accessor<float, 2>();
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  for (int64_t r = 0; r < R; ++r)
    for (int64_t n = 0; n < N; ++n) ya[r][n] = static_cast<float>(test::ref_dot(xp + r * K, wp + n * K, K, *opt.sim));
  // The model adds the bias to the simulated product in its dtype on its device, then relu.
  const torch::Tensor want = torch::relu(y.to(b.device()).view({1, 64, N}) + b).cpu();
  const torch::Tensor got = in.at("model.decoder.layers.0.fc2").cpu();
  EXPECT_EQ(got.sizes(), want.sizes());
  // NaN where both are NaN (narrow formats overflow to inf, and inf - inf) counts as equal.
  const int64_t bad = ((got != want) & ~(got.isnan() & want.isnan())).sum().item<int64_t>();
  const int64_t both_nan = (got.isnan() & want.isnan()).sum().item<int64_t>();
  EXPECT_LT(both_nan, got.numel() / 2) << "mostly NaN: the comparison would say little";
  return bad;
}

}  // namespace razerq::eval::testing
