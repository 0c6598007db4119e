// bench_gemv: the fused-dequant GEMV (kernels/cuda/gemv_cuda.hpp) against cuBLAS fp16 at the
// issue's shapes, M = 1, 2, 4, 8, 16. Rotating sets of weights larger than L2 (>= 200 MB per
// measurement), CUDA events around batches of launches, the median of 15 batches.
//   bench_gemv [--formats razer,int,razer:bits:s2] [--shapes all|small] [--json FILE]
// Suffixes force the decoder (":table", ":bits") or the blocks in flight per warp (":s1", ":s2").
// Prints the measured copy bandwidth (device-to-device cudaMemcpy, read + write bytes) and a
// table: microseconds, and our time as a % of the floor "bytes we must read / copy bandwidth".
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/half.hpp"
#include "kernels/cuda/dequant_cuda.hpp"
#include "kernels/cuda/gemv_cuda.hpp"
#include "quantizer/format.hpp"
#include "quantizer/pack.hpp"
#include "quantizer/quantize.hpp"

using namespace razerq;

#define CK(x)                                                                        \
  do {                                                                               \
    cudaError_t e_ = (x);                                                            \
    if (e_ != cudaSuccess) {                                                         \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)

namespace {

constexpr size_t kRotateBytes = 200u << 20;

// A packed tensor with random codes and realistic scales (timing does not depend on values).
quantizer::QuantizedTensor random_tensor(const quantizer::FormatConfig& cfg, int64_t N, int64_t K, std::mt19937& rng) {
  quantizer::QuantizedTensor q;
  q.cfg = cfg;
  q.rows = N, q.cols = K;
  q.groups_per_row = (K + cfg.group - 1) / cfg.group;
  q.code_words_per_row = quantizer::words_per_row(K, cfg.bits);
  q.codes.resize(static_cast<size_t>(N * q.code_words_per_row));
  for (auto& w : q.codes) w = rng();
  const size_t ng = static_cast<size_t>(N * q.groups_per_row);
  const auto kind = cfg.spec().scale_kind;
  std::uniform_real_distribution<double> u(0.002, 0.02);
  if (kind == quantizer::ScaleKind::kFp16 || kind == quantizer::ScaleKind::kFp16Razer) {
    q.scales16.resize(ng);
    for (auto& s : q.scales16) s = static_cast<uint16_t>(double_to_fp16(u(rng)) | (kind == quantizer::ScaleKind::kFp16Razer ? (rng() & 3u) << 14 : 0u));
  } else {
    q.scales8.resize(ng);
    for (auto& s : q.scales8)
      s = kind == quantizer::ScaleKind::kE8M0 ? static_cast<uint8_t>(120 + rng() % 5)
          : kind == quantizer::ScaleKind::kE8M0Razer ? static_cast<uint8_t>(((rng() & 3u) << 6) | (24 + rng() % 5))
          : kind == quantizer::ScaleKind::kE4M3Tensor ? static_cast<uint8_t>(0x30 + rng() % 16)
                                                       : static_cast<uint8_t>(((rng() & 3u) << 6) | (20 + rng() % 16));
    q.tensor_scale = 0.01f;
  }
  if (cfg.asym) {
    q.zeros.resize(static_cast<size_t>(N * q.zero_words_per_row()));
    for (auto& z : q.zeros) z = rng();
  }
  return q;
}

template <class F>
double median_us(F&& launch_batch, int reps) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  launch_batch(reps);  // warm-up
  std::vector<double> t;
  for (int i = 0; i < 15; ++i) {
    CK(cudaEventRecord(a));
    launch_batch(reps);
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(1000.0 * ms / reps);
  }
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> formats = {"razer", "int"};
  bool small = false;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--formats" && i + 1 < argc) {
      formats.clear();
      std::string s = argv[++i], cur;
      for (char c : s + ",")
        if (c == ',') {
          if (!cur.empty()) formats.push_back(cur);
          cur.clear();
        } else {
          cur += c;
        }
    } else if (a == "--shapes" && i + 1 < argc) {
      small = std::string(argv[++i]) == "small";
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: bench_gemv [--formats razer,int,...] [--shapes all|small] [--json FILE]\n");
      return 2;
    }
  }
  std::printf("device: %s\n", kernels::cuda_device_description().c_str());
  // Copy bandwidth: 1 GiB device-to-device, read + write counted.
  double copy_gbs = 0;
  {
    const size_t bytes = 1u << 30;
    void *s, *d;
    CK(cudaMalloc(&s, bytes));
    CK(cudaMalloc(&d, bytes));
    const double us = median_us([&](int r) { for (int i = 0; i < r; ++i) CK(cudaMemcpyAsync(d, s, bytes, cudaMemcpyDeviceToDevice)); }, 3);
    copy_gbs = 2.0 * bytes / (us * 1e-6) / 1e9;
    CK(cudaFree(s));
    CK(cudaFree(d));
  }
  std::printf("measured copy bandwidth: %.0f GB/s (read + write)\n", copy_gbs);

  cublasHandle_t blas;
  if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) return 1;
  std::vector<std::pair<int64_t, int64_t>> shapes = {{4096, 4096},   {11008, 4096}, {4096, 11008}, {14336, 4096},
                                                     {28672, 8192},  {8192, 28672}, {16384, 16384}};
  if (small) shapes = {{4096, 4096}, {28672, 8192}};
  const int Ms[] = {1, 2, 4, 8, 16};
  std::mt19937 rng(7);
  FILE* js = json_path.empty() ? nullptr : std::fopen(json_path.c_str(), "w");
  if (js) std::fprintf(js, "{\"copy_gbs\": %.1f, \"rows\": [\n", copy_gbs);
  bool first_row = true;

  std::printf("\n%-24s %-13s %3s %10s %7s %10s %8s\n", "format", "N x K", "M", "ours us", "% BW", "cuBLAS us", "speedup");
  for (const auto& shape : shapes) {
    const int64_t N = shape.first, K = shape.second;
    // cuBLAS fp16 weights, rotated.
    const size_t wbytes16 = static_cast<size_t>(N * K * 2);
    const int n16 = static_cast<int>(std::max<size_t>(2, (kRotateBytes + wbytes16 - 1) / wbytes16));
    std::vector<void*> w16(n16);
    for (auto& p : w16) {
      CK(cudaMalloc(&p, wbytes16));
      CK(cudaMemset(p, 0x11, wbytes16));
    }
    void *dx, *dy;
    CK(cudaMalloc(&dx, 16 * K * 2));
    CK(cudaMalloc(&dy, 16 * N * 2));
    std::vector<uint16_t> xh(static_cast<size_t>(16 * K));
    for (auto& h : xh) h = float_to_fp16(std::normal_distribution<float>(0.f, 1.f)(rng));
    CK(cudaMemcpy(dx, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
    std::vector<double> cublas_us(17);
    for (int M : Ms) {
      const __half one = __float2half(1.f), zero = __float2half(0.f);
      int idx = 0;
      cublas_us[M] = median_us(
          [&](int r) {
            for (int i = 0; i < r; ++i)
              cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N), M, static_cast<int>(K), &one,
                           w16[idx++ % n16], CUDA_R_16F, static_cast<int>(K), dx, CUDA_R_16F, static_cast<int>(K), &zero,
                           dy, CUDA_R_16F, static_cast<int>(N), CUBLAS_COMPUTE_16F, CUBLAS_GEMM_DEFAULT);
          },
          20);
    }
    for (void* p : w16) CK(cudaFree(p));

    for (const std::string& entry : formats) {
      // "razer:table", "razer:bits", "int:s1": force the decoder or the stage count.
      const size_t colon = entry.find(':');
      const std::string f = entry.substr(0, colon), opts = colon == std::string::npos ? "" : entry.substr(colon);
      kernels::set_gemv_decoder(opts.find(":table") != std::string::npos ? kernels::GemvDecoder::kTable
                                : opts.find(":bits") != std::string::npos ? kernels::GemvDecoder::kBits
                                                                          : kernels::GemvDecoder::kAuto);
      kernels::set_gemv_stages(opts.find(":s1") != std::string::npos ? 1 : opts.find(":s2") != std::string::npos ? 2 : 0);
      const bool asym = f == "int-asym";
      const std::string fname = asym ? "int" : f;
      const auto& spec = quantizer::format_spec(fname);
      const int group = spec.fixed_group ? spec.fixed_group : 128;
      const quantizer::FormatConfig cfg = quantizer::make_format_config(fname, 4, group, asym);
      const quantizer::QuantizedTensor q = random_tensor(cfg, N, K, rng);
      const size_t qbytes = q.codes.size() * 4 + q.scales16.size() * 2 + q.scales8.size() + q.zeros.size() * 4;
      const int nq = static_cast<int>(std::max<size_t>(2, (kRotateBytes + qbytes - 1) / qbytes));
      std::vector<kernels::DeviceTensor> ws;
      for (int i = 0; i < nq; ++i) ws.push_back(kernels::upload(q));
      const std::string name = cfg.label() + " " + kernels::gemv_decoder_name(ws[0]);
      for (int M : Ms) {
        int idx = 0;
        const double us = median_us(
            [&](int r) {
              for (int i = 0; i < r; ++i)
                kernels::gemv_fp16_cuda(ws[idx++ % nq], static_cast<uint16_t*>(dx), M, static_cast<uint16_t*>(dy));
            },
            50);
        const double floor_us = (qbytes + 2.0 * M * K + 2.0 * M * N) / (copy_gbs * 1e3);
        std::printf("%-24s %6lldx%-6lld %3d %10.2f %6.1f%% %10.2f %7.2fx\n", name.c_str(), static_cast<long long>(N),
                    static_cast<long long>(K), M, us, 100.0 * floor_us / us, cublas_us[M], cublas_us[M] / us);
        if (js)
          std::fprintf(js, "%s{\"format\": \"%s\", \"N\": %lld, \"K\": %lld, \"M\": %d, \"us\": %.3f, \"bw_pct\": %.2f, \"cublas_us\": %.3f}",
                       first_row ? "" : ",\n", name.c_str(), static_cast<long long>(N), static_cast<long long>(K), M, us,
                       100.0 * floor_us / us, cublas_us[M]);
        first_row = false;
      }
    }
    CK(cudaFree(dx));
    CK(cudaFree(dy));
  }
  if (js) {
    std::fprintf(js, "\n]}\n");
    std::fclose(js);
  }
  cublasDestroy(blas);
  return 0;
}
