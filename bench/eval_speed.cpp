// bench_eval_speed: forward throughput of eval::Model (tokens/s of whole-window forwards, the
// work of a perplexity evaluation), on random token ids, after one warm-up forward.
//   bench_eval_speed MODEL [--device cpu|cuda] [--dtype fp32|fp16|bf16] [--seqlen 2048]
//                    [--batch 1] [--iters 5] [--json]
// Prints one line: model, device, dtype, load seconds, median seconds per forward, tokens/s.
#include <CLI/CLI.hpp>
#include <torch/cuda.h>
#include <torch/types.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/error.hpp"
#include "eval/model.hpp"

using namespace razerq;

int main(int argc, char** argv) {
  CLI::App app{"Forward tokens/s of a model (random ids, median of --iters forwards)"};
  std::string path, device = "cpu", dtype = "fp32";
  int64_t seqlen = 2048, batch = 1;
  int iters = 5;
  bool json = false;
  app.add_option("MODEL", path, "HF model directory or packed checkpoint")->required();
  app.add_option("--device", device)->capture_default_str();
  app.add_option("--dtype", dtype)->capture_default_str();
  app.add_option("--seqlen", seqlen)->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--batch", batch)->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--iters", iters)->capture_default_str()->check(CLI::PositiveNumber);
  app.add_flag("--json", json);
  CLI11_PARSE(app, argc, argv);
  try {
    eval::ModelOptions mo;
    mo.device = eval::parse_device(device);
    mo.dtype = eval::parse_dtype(dtype);
    const eval::Model model = eval::Model::load(path, mo);
    torch::manual_seed(0);
    const torch::Tensor ids =
        torch::randint(0, model.config().vocab_size, {batch, seqlen}, torch::TensorOptions().dtype(torch::kInt64)).to(mo.device);
    auto sync = [&] {
      if (mo.device.is_cuda()) torch::cuda::synchronize();
    };
    torch::NoGradGuard ng;
    model.forward(ids);  // warm-up
    sync();
    std::vector<double> t;
    for (int i = 0; i < iters; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      const torch::Tensor out = model.forward(ids);
      sync();
      t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    const double med = t[t.size() / 2];
    const double tps = static_cast<double>(batch * seqlen) / med;
    if (json) {
      std::printf("%s\n", nlohmann::json({{"model", path}, {"device", mo.device.str()}, {"dtype", eval::dtype_label(mo.dtype)},
                                          {"params", model.parameters()}, {"seqlen", seqlen}, {"batch", batch},
                                          {"load_s", model.load_seconds()}, {"forward_s", med}, {"tokens_per_s", tps}})
                              .dump()
                              .c_str());
    } else {
      std::printf("%s | %.1f M params | %s %s | seqlen %lld batch %lld | load %.1f s | forward %.4f s (median of %d) | %.0f tok/s\n",
                  path.c_str(), model.parameters() / 1e6, mo.device.str().c_str(), eval::dtype_label(mo.dtype),
                  static_cast<long long>(seqlen), static_cast<long long>(batch), model.load_seconds(), med, iters, tps);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
