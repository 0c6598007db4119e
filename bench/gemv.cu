// bench_gemv: the fused-dequant GEMV (kernels/cuda/gemv_cuda.hpp) and the lut GEMV
// (kernels/cuda/lut_gemv_cuda.hpp) against cuBLAS fp16 at the issue's shapes, M = 1, 2, 4, 8, 16
// (lut: M = 1, 2, 4, 8, the kernel's range; its M = 16 rows are skipped). Rotating sets of
// weights larger than L2 (>= 200 MB per measurement), CUDA events around batches of launches,
// the median of 15 batches.
//   bench_gemv [--formats razer,int,razer:bits:s2,razer3,int3,int3-asym,fp3,lut4,lut3,lut4+sparse]
//              [--shapes all|small|NxK,...] [--m 1,2,4,8,16] [--json FILE] [--hot]
// --hot: the fused GEMV's rows reuse one weight set (L2-resident where it fits: what an L2
// prefetch before the product could at best give; cuBLAS stays rotated).
// Suffixes force the decoder (":table", ":bits"), the blocks in flight per warp (":s1", ":s2"),
// the 16-row tiles per block (":t1", ":t2"), the device code layout (":disk", ":quad", ":pair";
// kernels/cuda/gemv_layout.hpp; default: upload's choice), row-major rows instead of 16-row tiles
// (":rm", set_upload_tiling), no split tail (":ns", set_gemv_split) or every tile split (":sp"),
// 4-bit RaZeR's E2M1 codes with the byte patch instead of the re-encoded two-table codes (":e2m1",
// set_upload_razer_xor), razer3's codes as a bitstream (the table decoder then) instead of
// nibbles for the lookup decoder (":bs", set_upload_nib3), nf4's codes in pair order (the table
// decoder then) instead of column order for the pair-table decoder (":porder", set_upload_pair_table),
// the 3-bit scale on the block sums
// (":post", set_gemv_post(2); rows marked "post") or on the weights (":pre"), the fp16
// products where the int8 ones would run (":f16", set_gemv_int8(1): razer3, fp3, int3 and razer4), the launch's grid tables
// rebuilt at every launch instead of kept (":nocache", set_gemv_table_cache(false)), the gate/up
// product's SiLU epilogue (":silu", gemv_silu_mul_fp16_cuda: N = 2 F rows as [gate; up]) or the plain product followed by
// the SiLU kernel (":silusep", the decode step's pair without the epilogue; its time is the two
// launches').
// lutB (B = 3, 4): dense lut; lutB+sparse[P%]: with a CSR part of P % of the weights (default
// 0.5 %, SqueezeLLM's 0.45 % outliers + 0.05 % sensitive); random tables, codes and sparse
// entries (valid tensors, no k-means), each configuration first checked once against the float64
// reference (dequantize_row_ref) on a 256 x 4096 tensor, M = 1, 2, 4, 8: a mismatch aborts.
// Prints the measured copy bandwidth (device-to-device cudaMemcpy, read + write bytes) and a
// table: microseconds, and our time as a % of the floor "bytes we must read / copy bandwidth".
// The fused GEMV is timed twice on a created stream: with programmatic dependent launch (the
// library's default: each launch may load its first weights while the one before finishes,
// kernels/cuda/pdl_cuda.hpp), the main columns, and without ("serial"). Each fused-GEMV row also
// gives the read-only ceiling ("read-only", JSON read_us): a kernel that only reads the same
// weight bytes from the same rotated sets, launched the same way (read_only_kernel), and our time
// as a % of it. "host" (JSON host_us): the host's time to issue one launch of the PDL batches
// (the median batch's wall-clock time over its launches; the batches end in a sync, so the
// queue never fills): where it reaches the GPU time, the row is host-bound.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench/cuda_bench.cuh"
#include "common/half.hpp"
#include "kernels/cuda/decode_ops_cuda.hpp"
#include "kernels/cuda/dequant_cuda.hpp"
#include "kernels/cuda/gemv_cuda.hpp"
#include "kernels/cuda/lut_gemv_cuda.hpp"
#include "kernels/cuda/pdl.cuh"
#include "quantizer/format.hpp"
#include "quantizer/pack.hpp"
#include "quantizer/quantize.hpp"

using namespace razerq;
using bench::median_us;

namespace {

constexpr size_t kRotateBytes = 200u << 20;

// The read-only ceiling of a row: a kernel that only reads the weight bytes (16 bytes per lane and
// load, four loads in flight per lane, grid-stride over 8 blocks of 256 threads per SM), launched
// as our GEMV is (the created stream, programmatic dependent launch: the next launch may start once
// every block is past its loads). What any kernel that must read those bytes once can at best
// take; "% of read-only" = its time over ours.
__global__ void __launch_bounds__(256) read_only_kernel(const uint4* __restrict__ p, size_t n, uint32_t* sink) {
  const size_t stride = static_cast<size_t>(gridDim.x) * 256;
  size_t i = static_cast<size_t>(blockIdx.x) * 256 + threadIdx.x;
  uint32_t acc = 0;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const uint4 a = bench::ld_stream(p + i), b = bench::ld_stream(p + i + stride), c = bench::ld_stream(p + i + 2 * stride),
                d = bench::ld_stream(p + i + 3 * stride);
    acc ^= (a.x ^ b.y ^ c.z ^ d.w) + (a.y ^ b.z ^ c.w ^ d.x) * 3u + (a.z ^ b.w ^ c.x ^ d.y) * 5u + (a.w ^ b.x ^ c.y ^ d.z) * 7u;
  }
  for (; i < n; i += stride) {
    const uint4 a = bench::ld_stream(p + i);
    acc ^= a.x + a.y * 3u + a.z * 5u + a.w * 7u;
  }
  kernels::pdl::launch_dependents();
  kernels::pdl::wait();
  if (acc == 0x9e3779b9u) sink[0] = acc;  // (never, in practice: keeps the loads)
}

// Median us of the read-only kernel over `bytes` of each of `bufs` in turn (rotated as the GEMV's
// weight sets are), on stream s with programmatic dependent launch where the GEMV has it
// (pdl::launch: the setting, on by default, and sm_90).
double read_only_us(const std::vector<const void*>& bufs, size_t bytes, cudaStream_t s, uint32_t* sink) {
  int sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const size_t n = bytes / 16;
  int idx = 0;
  return median_us(
      [&](int r) {
        for (int i = 0; i < r; ++i)
          kernels::pdl::launch(read_only_kernel, dim3(static_cast<unsigned>(sms * 8)), dim3(256), 0, s,
                               static_cast<const uint4*>(bufs[idx++ % bufs.size()]), n, sink);
      },
      50);
}

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
    const int64_t zw = q.zero_words_per_row(), used = q.groups_per_row * cfg.bits % 32;
    q.zeros.resize(static_cast<size_t>(N * zw));
    for (auto& z : q.zeros) z = rng();
    if (used)  // the padding bits after the row's last zero point stay 0 (validate() checks)
      for (int64_t r = 0; r < N; ++r) q.zeros[static_cast<size_t>(r * zw + zw - 1)] &= (1u << used) - 1u;
  }
  return q;
}

// A lut format entry of --formats: "lut4", "lut3", "lut4+sparse", "lut4+sparse0.5%".
struct LutEntry {
  int bits = 0;
  double sparse_frac = 0;  // fraction of the weights in the CSR part (0: dense only)
  std::string label() const {
    if (sparse_frac <= 0) return "lut" + std::to_string(bits);
    char b[64];
    std::snprintf(b, sizeof b, "lut%d+sparse%g%%", bits, 100.0 * sparse_frac);
    return b;
  }
};

// Parses a lut entry; false when `e` does not start with "lut". Exits on a malformed one.
bool parse_lut_entry(const std::string& e, LutEntry& out) {
  if (e.compare(0, 3, "lut") != 0) return false;
  const bool ok_bits = e.size() >= 4 && (e[3] == '3' || e[3] == '4');
  std::string rest = ok_bits ? e.substr(4) : "";
  out = LutEntry{};
  out.bits = ok_bits ? e[3] - '0' : 0;
  bool ok = ok_bits;
  if (ok && !rest.empty()) {
    ok = rest.compare(0, 7, "+sparse") == 0;
    rest = ok ? rest.substr(7) : "";
    out.sparse_frac = 0.005;
    if (ok && !rest.empty()) {
      char* end = nullptr;
      const double pct = std::strtod(rest.c_str(), &end);
      ok = end != rest.c_str() && std::string(end) == "%" && pct > 0 && pct < 100;
      out.sparse_frac = pct / 100.0;
    }
  }
  if (!ok) {
    std::fprintf(stderr, "bench_gemv: --formats entry '%s': expected lut3 or lut4, optionally followed by +sparse or +sparseP%% (e.g. lut4+sparse0.5%%)\n", e.c_str());
    std::exit(2);
  }
  return true;
}

// A valid packed lut tensor with random codes, sorted random per-row tables and (sparse_frac > 0)
// floor(sparse_frac * N * K) CSR entries spread evenly over the rows at random distinct columns.
// Timing does not depend on the values; quantizer::validate accepts it (upload_lut checks).
quantizer::QuantizedTensor random_lut_tensor(const LutEntry& e, int64_t N, int64_t K, std::mt19937& rng) {
  quantizer::QuantizedTensor q;
  q.cfg = quantizer::row_group_config(quantizer::make_format_config("lut", e.bits), K);
  q.rows = N, q.cols = K;
  q.groups_per_row = 1;
  q.code_words_per_row = quantizer::words_per_row(K, e.bits);
  q.codes.resize(static_cast<size_t>(N * q.code_words_per_row));
  const int tail_bits = static_cast<int>((K * e.bits) % 32);  // padding bits of a row's last word must be 0
  for (int64_t r = 0; r < N; ++r)
    for (int64_t w = 0; w < q.code_words_per_row; ++w) {
      uint32_t v = rng();
      if (tail_bits && w == q.code_words_per_row - 1) v &= (1u << tail_bits) - 1u;
      q.codes[static_cast<size_t>(r * q.code_words_per_row + w)] = v;
    }
  const int k = 1 << e.bits;
  q.lut.resize(static_cast<size_t>(N * k));
  std::normal_distribution<float> nd(0.f, 0.02f);
  std::vector<float> t(static_cast<size_t>(k));
  for (int64_t r = 0; r < N; ++r) {
    for (auto& v : t) v = nd(rng);
    std::sort(t.begin(), t.end());
    for (int c = 0; c < k; ++c) q.lut[static_cast<size_t>(r * k + c)] = float_to_fp16(t[static_cast<size_t>(c)]);
  }
  if (e.sparse_frac > 0) {
    const auto total = static_cast<int64_t>(std::floor(e.sparse_frac * double(N) * double(K)));
    q.sparse.row_ptr.resize(static_cast<size_t>(N + 1));
    q.sparse.row_ptr[0] = 0;
    std::uniform_int_distribution<int64_t> col(0, K - 1);
    std::uniform_real_distribution<float> mag(0.05f, 0.2f);
    std::vector<int32_t> cols;
    for (int64_t r = 0; r < N; ++r) {
      const int64_t want = std::min<int64_t>(K, (r + 1) * total / N - r * total / N);
      cols.clear();
      while (static_cast<int64_t>(cols.size()) < want) {  // distinct columns: draw the missing ones, dedupe
        for (int64_t i = static_cast<int64_t>(cols.size()); i < want; ++i) cols.push_back(static_cast<int32_t>(col(rng)));
        std::sort(cols.begin(), cols.end());
        cols.erase(std::unique(cols.begin(), cols.end()), cols.end());
      }
      for (int32_t c : cols) {
        q.sparse.col.push_back(c);
        q.sparse.val.push_back(float_to_fp16((rng() & 1u) ? mag(rng) : -mag(rng)));
      }
      q.sparse.row_ptr[static_cast<size_t>(r + 1)] = static_cast<int32_t>(q.sparse.col.size());
    }
  }
  return q;
}

// One y = x W^T of a lut tensor as the bench times it: the dense kernel (writes y), then the
// CSR add when there is a sparse part. y: fp32 [M, N].
void lut_forward(const kernels::LutDeviceTensor& w, const uint16_t* dx, int M, float* dy) {
  kernels::lut_gemv_cuda(w, dx, M, dy);
  if (w.nnz) kernels::sparse_add_cuda(w, dx, M, dy);
}

// Checks the lut path of `e` once against the float64 reference on a small tensor, every M of
// the bench; prints the worst error relative to its bound and exits on a mismatch.
void check_lut_entry(const LutEntry& e, const int* Ms, int nM, std::mt19937& rng) {
  const int64_t N = 256, K = 4096;
  const quantizer::QuantizedTensor q = random_lut_tensor(e, N, K, rng);
  const kernels::LutDeviceTensor t = kernels::upload_lut(q);
  // Reference weights (dense + sparse, float64) and the magnitude of the two parts for the bound.
  std::vector<double> w(static_cast<size_t>(N * K)), mag(static_cast<size_t>(N * K));
  for (int64_t n = 0; n < N; ++n) {
    quantizer::dequantize_row_ref(q, n, w.data() + n * K, true);
    quantizer::dequantize_row_ref(q, n, mag.data() + n * K, false);
  }
  for (size_t i = 0; i < w.size(); ++i) mag[i] = std::fabs(mag[i]) + std::fabs(w[i] - mag[i]);
  const int maxM = kernels::kLutGemvMaxM;
  std::vector<uint16_t> xh(static_cast<size_t>(maxM * K));
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto& h : xh) h = float_to_fp16(nd(rng));
  kernels::DeviceBuffer dx(xh.size() * 2), dy(static_cast<size_t>(maxM * N) * 4);
  dx.copy_from_host(xh.data(), xh.size() * 2);
  std::vector<float> y(static_cast<size_t>(maxM * N));
  double worst = 0;
  std::string checked;
  for (int i = 0; i < nM; ++i) {
    const int M = Ms[i];
    if (M > maxM) continue;
    dy.fill_bytes(0xff);  // NaN: an output not written fails
    lut_forward(t, dx.as<uint16_t>(), M, dy.as<float>());
    CK(cudaDeviceSynchronize());
    dy.copy_to_host(y.data(), static_cast<size_t>(M * N) * 4);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double s = 0, a = 0;
        for (int64_t kk = 0; kk < K; ++kk) {
          const double xv = fp16_to_double(xh[static_cast<size_t>(m * K + kk)]);
          s += xv * w[static_cast<size_t>(n * K + kk)];
          a += std::fabs(xv) * mag[static_cast<size_t>(n * K + kk)];
        }
        // fp32 products and sums in each kernel, plus the add of the two partial sums.
        const double bound = double(K) * std::ldexp(a, -23) + 1e-30;
        const double got = y[static_cast<size_t>(m * N + n)], err = std::fabs(got - s);
        if (!(err <= bound)) {
          std::fprintf(stderr, "bench_gemv: %s check failed: M = %d, y[%lld][%lld] = %.9g, float64 reference %.9g (bound %.3g)\n",
                       e.label().c_str(), M, static_cast<long long>(m), static_cast<long long>(n), got, s, bound);
          std::exit(1);
        }
        worst = std::max(worst, err / bound);
      }
    checked += (checked.empty() ? "" : ", ") + std::to_string(M);
  }
  std::printf("check %s: %lldx%lld, nnz %lld, M = %s: every y within its bound (worst error %.3g of it)\n", e.label().c_str(),
              static_cast<long long>(N), static_cast<long long>(K), static_cast<long long>(q.sparse.nnz()), checked.c_str(), worst);
}


}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> formats = {"razer", "int"};
  std::vector<std::pair<int64_t, int64_t>> shapes = {{4096, 4096},   {11008, 4096}, {4096, 11008}, {14336, 4096},
                                                     {28672, 8192},  {8192, 28672}, {16384, 16384}};
  std::vector<int> Ms = {1, 2, 4, 8, 16};
  std::string json_path;
  bool hot = false;  // --hot: one weight set per fused-GEMV row, not rotated (L2-resident where it fits)
  auto split = [](const std::string& s) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : s + ",")
      if (c == ',') {
        if (!cur.empty()) out.push_back(cur);
        cur.clear();
      } else {
        cur += c;
      }
    return out;
  };
  auto usage = [] {
    std::fprintf(stderr,
                 "usage: bench_gemv [--formats razer,int,lut4,lut3,lut4+sparse,...] [--shapes all|small|NxK,...] "
                 "[--m 1,2,4,8,16] [--json FILE] [--hot]\n");
    return 2;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--formats" && i + 1 < argc) {
      formats = split(argv[++i]);
    } else if (a == "--shapes" && i + 1 < argc) {
      const std::string v = argv[++i];
      if (v == "small") {
        shapes = {{4096, 4096}, {28672, 8192}};
      } else if (v != "all") {
        shapes.clear();
        for (const std::string& sh : split(v)) {
          long long n = 0, k = 0;
          char x = 0, extra = 0;
          if (std::sscanf(sh.c_str(), "%lld%c%lld%c", &n, &x, &k, &extra) != 3 || x != 'x' || n < 1 || k < 128 || k % 128) {
            std::fprintf(stderr, "bench_gemv: --shapes: '%s' is not NxK (N >= 1, K a multiple of 128)\n", sh.c_str());
            return 2;
          }
          shapes.emplace_back(n, k);
        }
      }
    } else if (a == "--m" && i + 1 < argc) {
      Ms.clear();
      for (const std::string& m : split(argv[++i])) {
        const int v = std::atoi(m.c_str());
        if (v < 1 || v > 16) {
          std::fprintf(stderr, "bench_gemv: --m: '%s' is not 1 .. 16\n", m.c_str());
          return 2;
        }
        Ms.push_back(v);
      }
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if (a == "--hot") {
      hot = true;
    } else {
      return usage();
    }
  }
  if (formats.empty() || shapes.empty() || Ms.empty()) return usage();
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
  // Our GEMVs run on a created (blocking) stream: programmatic dependent launch is not used on the
  // legacy default stream (pdl_cuda.hpp); events on the default stream still bracket its work.
  cudaStream_t gs;
  CK(cudaStreamCreate(&gs));
  const int nM = static_cast<int>(Ms.size());
  std::mt19937 rng(7);
  {  // every lut configuration against the float64 reference before any timing
    std::mt19937 crng(11);
    LutEntry e;
    for (const std::string& entry : formats)
      if (parse_lut_entry(entry, e)) check_lut_entry(e, Ms.data(), nM, crng);
  }
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
    void *dx, *dy, *dyf;
    CK(cudaMalloc(&dx, 16 * K * 2));
    CK(cudaMalloc(&dy, 16 * N * 2));
    CK(cudaMalloc(&dyf, 16 * N * 4));  // lut: fp32 y
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
    // One table row (stdout) and its JSON record; floor_us: the bytes the format must move over
    // the measured copy bandwidth.
    // us_serial (fused GEMV only, else < 0): the same launches without programmatic dependent
    // launch, each waiting for the one before to finish.
    // read_us (fused GEMV only, else < 0): the read-only ceiling of the row's weight bytes.
    // host_us (fused GEMV only, else < 0): the host's issue time per launch.
    auto row = [&](const std::string& name, int M, double us, double floor_us, double us_serial, double read_us,
                   double host_us = -1) {
      std::printf("%-24s %6lldx%-6lld %3d %10.2f %6.1f%% %10.2f %7.2fx", name.c_str(), static_cast<long long>(N),
                  static_cast<long long>(K), M, us, 100.0 * floor_us / us, cublas_us[M], cublas_us[M] / us);
      if (us_serial > 0) std::printf("   serial %8.2f %6.1f%%", us_serial, 100.0 * floor_us / us_serial);
      if (read_us > 0) std::printf("   read-only %8.2f (%5.1f%%)", read_us, 100.0 * read_us / us);
      if (host_us > 0) std::printf("   host %6.2f", host_us);
      std::printf("\n");
      if (js)
        std::fprintf(js, "%s{\"format\": \"%s\", \"N\": %lld, \"K\": %lld, \"M\": %d, \"us\": %.3f, \"bw_pct\": %.2f, \"cublas_us\": %.3f, \"us_serial\": %.3f, \"bw_pct_serial\": %.2f, \"read_us\": %.3f, \"host_us\": %.3f}",
                     first_row ? "" : ",\n", name.c_str(), static_cast<long long>(N), static_cast<long long>(K), M, us,
                     100.0 * floor_us / us, cublas_us[M], us_serial, us_serial > 0 ? 100.0 * floor_us / us_serial : -1.0, read_us,
                     host_us);
      first_row = false;
    };

    for (const std::string& entry : formats) {
      LutEntry le;
      if (parse_lut_entry(entry, le)) {
        const quantizer::QuantizedTensor q = random_lut_tensor(le, N, K, rng);
        // Bytes the format must move: codes, tables, CSR row pointers / columns / values, x (fp16),
        // y written once (fp32, the kernels' output type).
        const size_t qbytes = q.codes.size() * 4 + q.lut.size() * 2 + q.sparse.row_ptr.size() * 4 +
                              q.sparse.col.size() * 4 + q.sparse.val.size() * 2;
        const int nq = static_cast<int>(std::max<size_t>(2, (kRotateBytes + qbytes - 1) / qbytes));
        std::vector<kernels::LutDeviceTensor> ws;
        for (int i = 0; i < nq; ++i) ws.push_back(kernels::upload_lut(q));
        const std::string name = le.label();
        for (int M : Ms) {
          if (M > kernels::kLutGemvMaxM) continue;  // the lut kernel's range is M = 1..8
          int idx = 0;
          const double us = median_us(
              [&](int r) {
                for (int i = 0; i < r; ++i) lut_forward(ws[idx++ % nq], static_cast<uint16_t*>(dx), M, static_cast<float*>(dyf));
              },
              50);
          row(name, M, us, (qbytes + 2.0 * M * K + 4.0 * M * N) / (copy_gbs * 1e3), -1.0, -1.0);
        }
        continue;
      }
      // "razer:table", "razer:bits", "int:s1", "int:t2": force the decoder, the stage count or the tiles.
      const size_t colon = entry.find(':');
      const std::string f = entry.substr(0, colon), opts = colon == std::string::npos ? "" : entry.substr(colon);
      kernels::set_gemv_decoder(opts.find(":table") != std::string::npos ? kernels::GemvDecoder::kTable
                                : opts.find(":bits") != std::string::npos ? kernels::GemvDecoder::kBits
                                                                          : kernels::GemvDecoder::kAuto);
      kernels::set_gemv_stages(opts.find(":s1") != std::string::npos ? 1 : opts.find(":s2") != std::string::npos ? 2 : 0);
      const int tiles = opts.find(":t1") != std::string::npos ? 1 : opts.find(":t2") != std::string::npos ? 2 : 0;
      kernels::set_gemv_tiles(tiles);
      const bool no_split = opts.find(":ns") != std::string::npos, split_all = opts.find(":sp") != std::string::npos;
      kernels::set_gemv_split(no_split ? 1 : split_all ? 2 : 0);
      kernels::set_gemv_post(opts.find(":post") != std::string::npos ? 2 : opts.find(":pre") != std::string::npos ? 1 : 0);
      kernels::set_gemv_int8(opts.find(":f16") != std::string::npos ? 1 : 0);
      const bool rebuild_tables = opts.find(":nocache") != std::string::npos;
      kernels::set_gemv_table_cache(!rebuild_tables);
      using kernels::CodeLayout;
      const CodeLayout layout = opts.find(":disk") != std::string::npos   ? CodeLayout::kDisk
                                : opts.find(":quad") != std::string::npos ? CodeLayout::kQuad
                                : opts.find(":pair") != std::string::npos ? CodeLayout::kPair
                                                                          : CodeLayout::kAuto;
      // "razer3", "int3", "int3-asym", "fp3": the 3-bit formats.
      const bool asym = f == "int-asym" || f == "int3-asym";
      std::string fname = asym ? f.substr(0, f.size() - 5) : f;
      int bits = 4;
      if (fname == "fp3") {
        bits = 3;
      } else if (fname == "razer3" || fname == "int3") {
        bits = 3;
        fname.pop_back();
      }
      const auto& spec = quantizer::format_spec(fname);
      const int group = spec.fixed_group ? spec.fixed_group : 128;
      const quantizer::FormatConfig cfg = quantizer::make_format_config(fname, bits, group, asym);
      const quantizer::QuantizedTensor q = random_tensor(cfg, N, K, rng);
      const size_t qbytes = q.codes.size() * 4 + q.scales16.size() * 2 + q.scales8.size() + q.zeros.size() * 4;
      const int nq = hot ? 1 : static_cast<int>(std::max<size_t>(2, (kRotateBytes + qbytes - 1) / qbytes));
      std::vector<kernels::DeviceTensor> ws;
      const bool row_major = opts.find(":rm") != std::string::npos;
      kernels::set_upload_layout(layout);
      kernels::set_upload_tiling(!row_major);
      kernels::set_upload_razer_xor(opts.find(":e2m1") == std::string::npos);
      kernels::set_upload_nib3(opts.find(":bs") == std::string::npos);
      kernels::set_upload_pair_table(opts.find(":porder") == std::string::npos);
      for (int i = 0; i < nq; ++i) ws.push_back(kernels::upload(q));
      kernels::set_upload_layout(CodeLayout::kAuto);
      kernels::set_upload_tiling(true);
      kernels::set_upload_razer_xor(true);
      kernels::set_upload_nib3(true);
      kernels::set_upload_pair_table(true);
      const char* layout_name = ws[0].layout == CodeLayout::kQuad   ? " quad"
                                : ws[0].layout == CodeLayout::kPair ? " pair"
                                                                    : "";
      const bool silu = opts.find(":silu") != std::string::npos && opts.find(":silusep") == std::string::npos;
      const bool silusep = opts.find(":silusep") != std::string::npos;
      if ((silu || silusep) && N % 16) {
        std::fprintf(stderr, "bench_gemv: %s needs N a multiple of 16 ([gate; up]); skipping %lldx%lld\n", entry.c_str(),
                     static_cast<long long>(N), static_cast<long long>(K));
        continue;
      }
      // (The decoder and pipeline by M: gemv_decoder_name below.)
      const std::string name = (silu ? std::string(" silu") : silusep ? " silu-sep" : "") +
                               (tiles ? " tiles " + std::to_string(tiles) : "") + layout_name +
                               (ws[0].tiled ? "" : " row-major") +
                               (no_split ? " no split" : "") + (split_all ? " split all" : "") +
                               (rebuild_tables ? " tables rebuilt" : "");
      // The weight sets' bytes (codes first, then scales; storage_bytes may add alignment padding,
      // which is not read): qbytes of each.
      std::vector<const void*> bufs;
      for (const auto& w : ws) bufs.push_back(w.storage);
      const double read_us = read_only_us(bufs, std::min(qbytes, ws[0].storage_bytes) & ~size_t{15}, gs, static_cast<uint32_t*>(dyf));
      for (int M : Ms) {
        double us_pdl[2];
        std::vector<double> host_us;  // per batch of the PDL run
        for (int pdl = 0; pdl < 2; ++pdl) {
          kernels::set_pdl(pdl == 1);
          int idx = 0;
          us_pdl[pdl] = median_us(
              [&](int r) {
                const auto t0 = std::chrono::steady_clock::now();
                for (int i = 0; i < r; ++i) {
                  const kernels::DeviceTensor& w = ws[idx++ % nq];
                  if (silu) {
                    kernels::gemv_silu_mul_fp16_cuda(w, static_cast<uint16_t*>(dx), M, static_cast<uint16_t*>(dyf), gs);
                  } else {
                    kernels::gemv_fp16_cuda(w, static_cast<uint16_t*>(dx), M, static_cast<uint16_t*>(dy), gs);
                    if (silusep)
                      kernels::silu_mul_cuda(kernels::ActDType::kFp16, dy, static_cast<uint16_t*>(dy) + N / 2, N, M, N / 2,
                                             dyf, gs);
                  }
                }
                if (pdl == 1)
                  host_us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / r);
              },
              50);
        }
        kernels::set_pdl(true);
        std::sort(host_us.begin(), host_us.end());
        row(cfg.label() + " " + kernels::gemv_decoder_name(ws[0], M) + name +
                (kernels::gemv_post_scaled(ws[0], M) ? " post" : ""),
            M, us_pdl[1],
            (qbytes + 2.0 * M * K + 2.0 * M * N) / (copy_gbs * 1e3), us_pdl[0], read_us, host_us[host_us.size() / 2]);
      }
    }
    CK(cudaFree(dx));
    CK(cudaFree(dy));
    CK(cudaFree(dyf));
  }
  if (js) {
    std::fprintf(js, "\n]}\n");
    std::fclose(js);
  }
  cublasDestroy(blas);
  CK(cudaStreamDestroy(gs));
  return 0;
}
