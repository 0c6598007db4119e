#pragma once
// GPTQ with the Hessian kept on the device (TorchGptqDevice::set_hessian, what gptq_sequential
// does on a GPU): permutation, dead columns, damping and factorisation there, only U's diagonal
// blocks on the host. Shared by test_gptq_sequential.cpp (the CPU as device) and
// test_eval_gpu.cpp (CUDA). Same codes, loss and damping as the host path, with and
// without act-order, with a block that does not divide the group, and with the damping raised
// because H + damp I is not definite.
#include <gtest/gtest.h>
#include <torch/types.h>

#include <memory>
#include <string>

#include "calib/gptq_sequential.hpp"
#include "common/error.hpp"
#include "quantizer/format.hpp"
#include "quantizer/gptq.hpp"

namespace razerq::eval::testing {

inline void check_device_hessian_matches_host(torch::Device device) {
  torch::manual_seed(5);
  const int64_t rows = 64, cols = 320, n = 400;
  torch::Tensor X = torch::randn({n, cols}, torch::kFloat64) * torch::linspace(0.1, 3.0, cols, torch::kFloat64);
  X.narrow(1, 17, 1).zero_(), X.narrow(1, 200, 3).zero_();  // dead columns: no input reaches them
  const torch::Tensor H = X.t().mm(X).contiguous();
  // Not positive semi-definite (one negative diagonal entry): only a raised damping factors it.
  torch::Tensor Hneg = H.clone();
  Hneg[5][5] = -0.05 * H.diagonal().mean().item<double>();
  const torch::Tensor W = torch::randn({rows, cols}, torch::kFloat32).contiguous();
  const torch::Device cpu(torch::kCPU);
  struct Case {
    const char* fmt;
    int bits;
    bool act_order;
    int block;
    double damp;
  };
  for (const Case& c : {Case{"int", 4, false, 128, 0.01}, Case{"int", 4, true, 48, 0.01}, Case{"razer", 3, false, 48, 0.01},
                        Case{"razer", 4, true, 128, 0.01}, Case{"nvfp4", 4, false, 128, 0.01}, Case{"int", 3, false, 128, 0.0}}) {
    SCOPED_TRACE(std::string(c.fmt) + std::to_string(c.bits) + (c.act_order ? " act-order" : "") + " block " +
                 std::to_string(c.block) + " damp " + std::to_string(c.damp));
    const quantizer::FormatConfig cfg =
        quantizer::make_format_config(c.fmt, c.bits, std::string(c.fmt) == "nvfp4" ? 16 : 64);
    quantizer::GptqOptions go;
    go.act_order = c.act_order, go.block_size = c.block, go.damp = c.damp;
    go.inverse_cholesky = calib::torch_inverse_cholesky(cpu);
    const torch::Tensor& h = c.damp == 0 ? Hneg : H;
    const quantizer::GptqResult host = quantizer::gptq_quantize(W.data_ptr<float>(), rows, cols, h.data_ptr<double>(), cfg, go);
    const std::shared_ptr<calib::TorchGptqDevice> dev = calib::torch_gptq_device(device);
    dev->set_hessian(h.to(device).clone());
    go.device = dev;
    const quantizer::GptqResult on_dev = quantizer::gptq_quantize(W.data_ptr<float>(), rows, cols, nullptr, cfg, go);
    EXPECT_EQ(host.dead_columns, 4);
    EXPECT_EQ(on_dev.dead_columns, 4);
    EXPECT_EQ(host.damp_used, on_dev.damp_used);
    if (c.damp == 0) {
      EXPECT_GE(on_dev.damp_used, 0.01);  // raised from 0 past 1e-4 and 1e-3
    }
    EXPECT_NEAR(host.loss, on_dev.loss, 1e-6 * host.loss);
    size_t same = 0;
    for (size_t i = 0; i < host.q.codes.size(); ++i) same += host.q.codes[i] == on_dev.q.codes[i];
    EXPECT_GE(static_cast<double>(same), 0.999 * static_cast<double>(host.q.codes.size()));
  }
  // No Hessian at all: refused.
  quantizer::GptqOptions go;
  EXPECT_THROW(quantizer::gptq_quantize(W.data_ptr<float>(), rows, cols, nullptr,
                                        quantizer::make_format_config("int", 4, 64), go),
               Error);
}

}  // namespace razerq::eval::testing
