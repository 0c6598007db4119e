// CUDA dequantization (kernels/cuda/dequant_cuda.hpp) against the float64 reference rounded
// once to fp16. The bound tested is 0 ULP (bit equality) for EVERY scale kind: the kernel
// computes in float64 with the reference's expression and exactly decoded scales, so its
// double equals the reference's double and one correct rounding (cvt.rn.f16.f64) follows.
// Skips, with the reason, when no usable device is present. Label: gpu.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "common/error.hpp"
#include "kernels/cpu/dequant.hpp"
#include "kernels/cuda/dequant_cuda.hpp"
#include "tests/kernels/cuda_test_util.hpp"
#include "tests/kernels/kernel_test_util.hpp"

namespace razerq {
namespace {

using kernels::DeviceBuffer;
using kernels::DeviceTensor;
using quantizer::QuantizedTensor;
using test::FormatCase;

constexpr uint16_t kPoison = 0xffffu;  // an fp16 NaN the kernel never produces
constexpr int64_t kGuard = 64;         // poisoned halves after the output, must stay untouched


// Runs the kernel into a poisoned buffer at element offset `offset` (misaligns the output
// when odd) and checks every element against the rounded reference and the guards.
void check_on_device(const QuantizedTensor& q, const std::string& what, int64_t offset = 0) {
  const std::vector<uint16_t> want = test::expected_fp16(q, razerq::double_to_fp16);
  ASSERT_TRUE(std::any_of(want.begin(), want.end(), [](uint16_t h) { return (h & 0x7fffu) != 0; }))
      << what << ": all-zero reference";
  const int64_t n = q.rows * q.cols;
  const int64_t total = offset + n + kGuard;
  DeviceTensor t = kernels::upload(q);
  DeviceBuffer out(static_cast<size_t>(total) * 2);
  out.fill_bytes(0xff);  // 0xffff everywhere
  kernels::dequantize_fp16_cuda(t, out.as<uint16_t>() + offset);
  kernels::cuda_synchronize();
  std::vector<uint16_t> all(static_cast<size_t>(total));
  out.copy_to_host(all.data(), all.size() * 2);
  for (int64_t i = 0; i < offset; ++i) ASSERT_EQ(all[static_cast<size_t>(i)], kPoison) << what << ": wrote before the output";
  for (int64_t i = offset + n; i < total; ++i)
    ASSERT_EQ(all[static_cast<size_t>(i)], kPoison) << what << ": wrote past the output at +" << i - offset - n;
  const std::vector<uint16_t> got(all.begin() + offset, all.begin() + offset + n);
  int64_t unwritten = 0;
  for (uint16_t h : got) unwritten += h == kPoison;
  EXPECT_EQ(unwritten, 0) << what << ": elements left unwritten";
  const int64_t m = test::first_mismatch(got, want);
  ASSERT_EQ(m, -1) << what << ": element " << m << " (row " << m / q.cols << ", col " << m % q.cols << ") got 0x"
                   << std::hex << got[static_cast<size_t>(m)] << " want 0x" << want[static_cast<size_t>(m)];
}

struct Shape {
  int64_t rows, cols;
  int group;
};
// Rows and cols that are multiples of 32/128 and not; cols % 8 == 0 (vector stores) and not;
// ragged last groups; a row shorter than one group.
const Shape kShapes[] = {{37, 100, 32}, {129, 300, 0}, {64, 256, 128}, {3, 2050, 64},
                         {1, 7, 32},    {130, 1000, 48}, {33, 4104, 0}};

class CudaDequant : public ::testing::TestWithParam<FormatCase> {
 protected:
  void SetUp() override { SKIP_WITHOUT_DEVICE(); }
};

TEST_P(CudaDequant, QuantizedRandomWeightsBitExact) {
  const FormatCase& c = GetParam();
  for (const Shape& s : kShapes) {
    const quantizer::FormatConfig cfg = c.config(s.group);
    std::mt19937 rng(test::test_seed(cfg.label() + std::to_string(s.rows) + "x" + std::to_string(s.cols)));
    const std::vector<float> w = test::random_weights(rng, s.rows, s.cols, c.weight_scale);
    ASSERT_TRUE(test::any_nonzero(w));
    const QuantizedTensor q = quantizer::quantize_tensor(w.data(), s.rows, s.cols, cfg);
    if (c.expects_fallback()) {
      ASSERT_TRUE(q.separate_sv()) << cfg.label();
    }
    const std::string what = cfg.label() + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols);
    check_on_device(q, what);
    if (HasFatalFailure()) return;
    if (s.cols % 8 == 0) {  // the same tensor into a misaligned output: the scalar-store path
      check_on_device(q, what + " (output offset 1)", 1);
      if (HasFatalFailure()) return;
    }
  }
}

TEST_P(CudaDequant, RandomPackedBitExact) {
  const FormatCase& c = GetParam();
  std::mt19937 rng(test::test_seed());
  for (const Shape& s : {Shape{23, 203, 24}, Shape{65, 512, 0}, Shape{7, 33, 2}}) {
    const quantizer::FormatConfig cfg = c.config(s.group);
    const QuantizedTensor q = test::random_packed(rng, cfg, s.rows, s.cols, c.expects_fallback());
    check_on_device(q, cfg.label() + " random packed " + std::to_string(s.rows) + "x" + std::to_string(s.cols));
    if (HasFatalFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(AllFormats, CudaDequant, ::testing::ValuesIn(test::all_format_cases()), test::case_name);

class CudaDequantMisc : public ::testing::Test {
 protected:
  void SetUp() override { SKIP_WITHOUT_DEVICE(); }
};

// More rows than one launch's grid covers (65535 blocks x 8 rows for 8 columns): the kernel's
// row loop.
TEST_F(CudaDequantMisc, ManyRowsBeyondTheGrid) {
  std::mt19937 rng(test::test_seed());
  const auto cfg = quantizer::make_format_config("nvfp4-razer");
  const QuantizedTensor q = test::random_packed(rng, cfg, 600001, 12);
  check_on_device(q, "nvfp4-razer 600001x12");
}

TEST_F(CudaDequantMisc, RejectsBadArguments) {
  std::mt19937 rng(test::test_seed());
  const auto cfg = quantizer::make_format_config("int", 4, 32);
  QuantizedTensor q = test::random_packed(rng, cfg, 4, 70);
  DeviceTensor t = kernels::upload(q);
  EXPECT_THROW(kernels::dequantize_fp16_cuda(t, nullptr), Error);
  DeviceBuffer out(1024);
  EXPECT_THROW(kernels::dequantize_fp16_cuda(t, reinterpret_cast<uint16_t*>(out.as<char>() + 1)), Error);
  kernels::free(t);
  kernels::free(t);  // idempotent
  EXPECT_THROW(kernels::dequantize_fp16_cuda(t, out.as<uint16_t>()), Error);
  q.codes.pop_back();
  EXPECT_THROW(kernels::upload(q), Error);
}

// Not a pass/fail criterion: the bandwidth of an 8192 x 8192 dequantization, printed for the
// log (bytes = packed input read + fp16 output written), checked on a few rows.
TEST_F(CudaDequantMisc, Throughput8192) {
  std::mt19937 rng(test::test_seed());
  for (const char* name : {"int", "razer", "nvfp4", "mxfp4-razer"}) {
    const auto cfg = quantizer::make_format_config(name);
    const int64_t rows = 8192, cols = 8192;
    const QuantizedTensor q = test::random_packed(rng, cfg, rows, cols);
    DeviceTensor t = kernels::upload(q);
    DeviceBuffer out(static_cast<size_t>(rows * cols) * 2);
    for (int i = 0; i < 3; ++i) kernels::dequantize_fp16_cuda(t, out.as<uint16_t>());
    kernels::cuda_synchronize();
    std::vector<double> ms;
    constexpr int kInner = 10;
    for (int rep = 0; rep < 15; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < kInner; ++i) kernels::dequantize_fp16_cuda(t, out.as<uint16_t>());
      kernels::cuda_synchronize();
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / kInner);
    }
    std::sort(ms.begin(), ms.end());
    const double med = ms[ms.size() / 2];
    const double bytes = double(q.codes.size()) * 4 + double(q.scales16.size()) * 2 + double(q.scales8.size()) +
                         double(rows * cols) * 2;
    std::printf("[ perf     ] %-16s 8192x8192: median %.3f ms, %.0f GB/s (in+out)\n", cfg.label().c_str(), med,
                bytes / med / 1e6);
    // A few rows against the CPU kernel (itself bit-exact to the reference).
    std::vector<uint16_t> host(static_cast<size_t>(rows * cols));
    out.copy_to_host(host.data(), host.size() * 2);
    std::vector<uint16_t> want(static_cast<size_t>(cols));
    for (int64_t r : {int64_t{0}, int64_t{4097}, rows - 1}) {
      kernels::dequantize_rows_to_fp16(q, r, 1, want.data());
      const std::vector<uint16_t> got(host.begin() + r * cols, host.begin() + (r + 1) * cols);
      ASSERT_EQ(test::first_mismatch(got, want), -1) << cfg.label() << " row " << r;
    }
  }
}

}  // namespace
}  // namespace razerq
