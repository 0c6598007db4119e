// bench_decode_ops: the decode step's small kernels (kernels/cuda/decode_ops_cuda.hpp) at one
// layer's shapes, alone: residual add + RMSNorm, RoPE + attention (every split count asked for,
// and the automatic one), SiLU * up. Each is launched 50 times back to back on a created stream
// with programmatic dependent launch (the library's default: a launch may start while the one
// before ends, as in the decode step's CUDA graph) and again without ("serial": each launch waits
// for the one before); CUDA events around the batch, the median of 15 batches, in microseconds
// per launch.
//   bench_decode_ops [--batch 1] [--heads 32] [--kv-heads 32] [--head-dim 128] [--capacity 264]
//                    [--pos 192] [--hidden 4096] [--ffn 11008] [--splits auto,1,2,4,8,16]
//                    [--single-pass 0|1|2]
// The defaults: Llama-2-7B at `razerq bench decode --prompt 128 --tokens 64`'s capacity.
// Inputs are random fp16; the residual's delta is zero, so h stays finite however many launches.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/cuda_bench.cuh"
#include "common/half.hpp"
#include "kernels/cuda/decode_ops_cuda.hpp"
#include "kernels/cuda/pdl_cuda.hpp"

using namespace razerq;

namespace {

// A device buffer of n fp16 values, uniform in [-a, a] (a = 0: zeros).
void* device_half(size_t n, float a, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-a, a);
  std::vector<uint16_t> h(n);
  for (auto& v : h) v = a == 0.f ? 0 : float_to_fp16(u(rng));
  void* d = nullptr;
  CK(cudaMalloc(&d, n * 2));
  CK(cudaMemcpy(d, h.data(), n * 2, cudaMemcpyHostToDevice));
  return d;
}

}  // namespace

int run(int argc, char** argv) {
  CLI::App app{"bench_decode_ops: the decode step's small CUDA kernels at one layer's shapes"};
  int64_t batch = 1, heads = 32, kv_heads = 32, head_dim = 128, capacity = 264, pos = 192, hidden = 4096, ffn = 11008;
  std::string splits_arg = "auto,1,2,4,8,16";
  int single_pass = 0;
  app.add_option("--batch", batch, "Sequences (rows)")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--heads", heads, "Query heads")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--kv-heads", kv_heads, "Key/value heads (a divisor of --heads)")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--head-dim", head_dim, "Head dimension (even, at most 256)")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--capacity", capacity, "K/V cache slots")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--pos", pos, "The step's position (keys 0 .. pos attend)")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--hidden", hidden, "RMSNorm width")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--ffn", ffn, "SiLU * up width")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--splits", splits_arg, "Attention split counts: 'auto' or 1 .. 64, comma-separated")->capture_default_str();
  app.add_option("--single-pass", single_pass,
                 "Attention at 1 split: 0 the library's rule (the single pass where the grid has >= SMs / 2 blocks "
                 "and the keys fit), 1 the single pass wherever it fits, 2 never")
      ->capture_default_str()
      ->check(CLI::Range(0, 2));
  CLI11_PARSE(app, argc, argv);
  kernels::set_attention_single_pass(single_pass);
  if (pos >= capacity) {
    std::fprintf(stderr, "bench_decode_ops: --pos %lld is not below --capacity %lld\n", static_cast<long long>(pos),
                 static_cast<long long>(capacity));
    return 2;
  }
  const kernels::DecodeShape s{batch, heads, kv_heads, head_dim, capacity};
  std::vector<int> splits;
  {
    std::stringstream ss(splits_arg);
    std::string tok;
    while (std::getline(ss, tok, ',')) {
      int v = 0;
      if (tok == "auto") {
        v = kernels::decode_attention_splits(s);  // (validates the shape: throws on a bad one)
      } else {
        try {
          v = std::stoi(tok);
        } catch (...) {
          v = 0;
        }
        if (v < 1 || v > kernels::kDecodeMaxSplits) {
          std::fprintf(stderr, "bench_decode_ops: --splits entry '%s' (expected auto or 1 .. %d)\n", tok.c_str(),
                       kernels::kDecodeMaxSplits);
          return 2;
        }
      }
      splits.push_back(v);
    }
  }

  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
  std::printf("shape: batch %lld, heads %lld / %lld x %lld, capacity %lld, pos %lld, hidden %lld, ffn %lld\n\n",
              static_cast<long long>(batch), static_cast<long long>(heads), static_cast<long long>(kv_heads),
              static_cast<long long>(head_dim), static_cast<long long>(capacity), static_cast<long long>(pos),
              static_cast<long long>(hidden), static_cast<long long>(ffn));

  std::mt19937 rng(5);
  const auto f16 = kernels::ActDType::kFp16;
  // RMSNorm: h, a zero delta, w, y.
  void* h = device_half(static_cast<size_t>(batch * hidden), 1.f, rng);
  void* delta = device_half(static_cast<size_t>(batch * hidden), 0.f, rng);
  void* w = device_half(static_cast<size_t>(hidden), 1.f, rng);
  void* y = device_half(static_cast<size_t>(batch * hidden), 0.f, rng);
  // Attention: the fused q/k/v row, the caches, the RoPE tables, the position.
  const int64_t qkv_w = (heads + 2 * kv_heads) * head_dim;
  void* qkv = device_half(static_cast<size_t>(batch * qkv_w), 1.f, rng);
  const size_t cache_n = static_cast<size_t>(batch * kv_heads * capacity * head_dim);
  void* kc = device_half(cache_n, 1.f, rng);
  void* vc = device_half(cache_n, 1.f, rng);
  void* cosb = device_half(static_cast<size_t>(capacity * head_dim), 1.f, rng);
  void* sinb = device_half(static_cast<size_t>(capacity * head_dim), 1.f, rng);
  void* out = device_half(static_cast<size_t>(batch * heads * head_dim), 0.f, rng);
  int64_t* dpos = nullptr;
  CK(cudaMalloc(&dpos, sizeof(int64_t)));
  CK(cudaMemcpy(dpos, &pos, sizeof(int64_t), cudaMemcpyHostToDevice));
  const size_t ws_bytes = kernels::decode_attention_workspace_bytes(s, kernels::kDecodeMaxSplits);
  void* ws = nullptr;
  CK(cudaMalloc(&ws, ws_bytes));
  CK(cudaMemset(ws, 0, ws_bytes));  // the counters start (and stay) zero
  // SiLU * up: the fused gate/up row.
  void* gu = device_half(static_cast<size_t>(batch * 2 * ffn), 1.f, rng);
  void* act = device_half(static_cast<size_t>(batch * ffn), 0.f, rng);

  cudaStream_t st;
  CK(cudaStreamCreate(&st));
  std::printf("| kernel | us (PDL chain) | us (serial) |\n|---|---:|---:|\n");
  auto row = [&](const std::string& name, auto&& launch) {
    double us[2];
    for (int pdl = 1; pdl >= 0; --pdl) {
      kernels::set_pdl(pdl == 1);
      us[pdl] = bench::median_us([&](int reps) { for (int r = 0; r < reps; ++r) launch(); }, 50, st);
    }
    kernels::set_pdl(true);
    std::printf("| %s | %.2f | %.2f |\n", name.c_str(), us[1], us[0]);
    std::fflush(stdout);
  };
  row("add + RMSNorm", [&] { kernels::add_rms_norm_cuda(f16, h, delta, w, batch, hidden, 1e-5f, y, st); });
  const int auto_splits = kernels::decode_attention_splits(s);
  std::vector<int> done;  // a count asked for twice (e.g. auto and its value) is measured once
  for (int sp : splits) {
    if (std::find(done.begin(), done.end(), sp) != done.end()) continue;
    done.push_back(sp);
    const std::string name = "RoPE + attention, " + std::to_string(sp) + (sp == auto_splits ? " splits (auto)" : " splits");
    row(name, [&] {
      kernels::decode_rope_attention_cuda(f16, s, qkv, qkv_w, static_cast<char*>(qkv) + 2 * heads * head_dim, qkv_w,
                                          static_cast<char*>(qkv) + 2 * (heads + kv_heads) * head_dim, qkv_w, cosb, sinb,
                                          dpos, kc, vc, sp, ws, ws_bytes, out, st);
    });
  }
  row("SiLU * up", [&] { kernels::silu_mul_cuda(f16, gu, static_cast<char*>(gu) + 2 * ffn, 2 * ffn, batch, ffn, act, st); });
  CK(cudaStreamSynchronize(st));
  for (void* p : {h, delta, w, y, qkv, kc, vc, cosb, sinb, out, ws, gu, act}) CK(cudaFree(p));
  CK(cudaFree(dpos));
  CK(cudaStreamDestroy(st));
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // razerq::Error from the library's checks, CUDA errors
    std::fprintf(stderr, "bench_decode_ops: %s\n", e.what());
    return 1;
  }
}
