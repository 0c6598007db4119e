// The fused-dequant GEMV (kernels/cuda/gemv_cuda.hpp) against a float64 CPU reference, for every
// 4-bit registry format and the 3-bit ones (razer3, int3 sym/asym, fp3): fresh random weights
// quantized by the search (realistic scales and codes) and real llama-14m layers; M = 1 .. 16;
// N not a multiple of the 8-row tile; outputs poisoned before each run, guards after them.
// Label gpu; skips with the reason without a device.
//
// Reference: y[m][n] = sum_k x[m][k] * w[n][k] in float64, where w is what the kernel is
// specified to multiply by (gemv_cuda.hpp): fp16(dequantize_ref) for the fp16-scale and MX kinds,
// dequantize_ref itself for the NV kinds (the tensor scale is applied to the fp32 sums) and the
// 3-bit decoders' POST (gemv_post_scaled), and fp16(fp16(grid) x scale) for nf4. The bound per
// element: the fp16 rounding of y (2^-11 relative) plus fp32 accumulation (K x 2^-23 x sum |x w|);
// for the int8 products (gemv_int8_products) plus x's b-bit fixed point per 128-column block,
// 2^(1 - b) max_block |x| x sum_block |w| (gemv_cuda.hpp; b = gemv_int8_x_bits: 16, razer4 15).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <random>
#include <tuple>
#include <utility>

#include "common/error.hpp"
#include "common/half.hpp"
#include "formats/hf_checkpoint.hpp"
#include "kernels/cuda/decode_ops_cuda.hpp"
#include "kernels/cuda/dequant_cuda.hpp"
#include "kernels/cuda/gemv_cuda.hpp"
#include "kernels/cuda/gemv_layout.hpp"
#include "kernels/cuda/pdl_cuda.hpp"
#include "quantizer/format.hpp"
#include "quantizer/pack.hpp"
#include "quantizer/quantize.hpp"
#include "tests/kernels/cuda_test_util.hpp"
#include "tests/kernels/kernel_test_util.hpp"
#include "tests/test_util.hpp"

namespace razerq {
namespace {

using kernels::CodeLayout;
using kernels::DeviceBuffer;
using kernels::DeviceTensor;
using quantizer::QuantizedTensor;


// The formats the fused kernel takes, with the group (and code width) each is tested at.
struct GemvCase {
  const char* format;
  bool asym;
  int group;
  int bits = 4;
};
const GemvCase kCases[] = {
    {"razer", false, 128}, {"int", false, 128}, {"int", true, 128}, {"fp4", false, 128}, {"nf4", false, 64},
    {"mxfp4", false, 32},  {"mxfp4-razer", false, 32}, {"nvfp4", false, 16}, {"nvfp4-razer", false, 16},
    {"razer", false, 64},  {"int", true, 256},
    {"razer", false, 128, 3}, {"int", false, 128, 3}, {"int", true, 128, 3}, {"fp3", false, 128, 3},
    {"razer", false, 64, 3}, {"int", true, 32, 3}};

std::string label(const GemvCase& c) {
  return std::string(c.format) + (c.bits == 3 && std::string(c.format) != "fp3" ? "3" : "") + (c.asym ? "-asym" : "") +
         "/g" + std::to_string(c.group);
}

// The weights the kernel multiplies by, as doubles [N, K]. exact: dequantize_ref's (the NV kinds,
// and the 3-bit decoders' POST: the scale applied to the fp32 sums, set_gemv_post).
std::vector<double> kernel_weights(const QuantizedTensor& q, bool exact = false) {
  std::vector<double> w(static_cast<size_t>(q.rows * q.cols));
  quantizer::dequantize_ref(q, w.data());
  const auto kind = q.cfg.spec().scale_kind;
  const bool nv = kind == quantizer::ScaleKind::kE4M3Tensor || kind == quantizer::ScaleKind::kE3M3RazerTensor;
  if (nv || exact) return w;
  if (q.cfg.id == quantizer::FormatId::kNf4) {
    const quantizer::Grid g = quantizer::base_grid(q.cfg);
    std::vector<uint8_t> codes(static_cast<size_t>(q.cols));
    for (int64_t n = 0; n < q.rows; ++n) {
      quantizer::unpack_row(q.codes.data() + n * q.code_words_per_row, q.cols, q.cfg.bits, codes.data());
      for (int64_t k = 0; k < q.cols; ++k) {
        const double s = fp16_to_float(q.scales16[n * q.groups_per_row + k / q.cfg.group]);
        const double v = fp16_to_float(double_to_fp16(g.value[codes[k]]));
        w[n * q.cols + k] = fp16_to_float(double_to_fp16(v * s));
      }
    }
    return w;
  }
  for (double& v : w) v = fp16_to_float(double_to_fp16(v));
  return w;
}

struct Stats {
  double max_excess = 0;  // max over elements of |err| / bound (must stay <= 1)
  double max_rel = 0;     // max |err| / max |y|
};

// Runs the kernel on x (fp16 bits, [M, q.cols]) and checks every element (and the guards) against
// the reference.
Stats check_gemv_x(const QuantizedTensor& q, int64_t M, const std::vector<uint16_t>& xh, const std::string& what) {
  const int64_t N = q.rows, K = q.cols;
  DeviceTensor t = kernels::upload(q);
  const int i8_bits = kernels::gemv_int8_x_bits(t, M);  // (0: not the int8 products)
  const bool i8 = i8_bits != 0;
  const std::vector<double> w = kernel_weights(q, kernels::gemv_post_scaled(t, M));
  std::string why;
  EXPECT_TRUE(kernels::gemv_supported(t, &why)) << what << ": " << why;
  DeviceBuffer dx(xh.size() * 2), dy(static_cast<size_t>(M * N + 64) * 2);
  dx.copy_from_host(xh.data(), xh.size() * 2);
  dy.fill_bytes(0xff);  // NaN everywhere, including 64 guard halves after the output
  kernels::gemv_fp16_cuda(t, dx.as<uint16_t>(), M, dy.as<uint16_t>());
  kernels::cuda_synchronize();
  std::vector<uint16_t> y(static_cast<size_t>(M * N + 64));
  dy.copy_to_host(y.data(), y.size() * 2);

  Stats st;
  double ymax = 0;
  std::vector<double> ref(static_cast<size_t>(M * N)), absum(static_cast<size_t>(M * N));
  std::vector<double> i8term(static_cast<size_t>(M * N), 0.0), xmax(static_cast<size_t>(K / 128 + 1), 0.0);
  for (int64_t m = 0; m < M; ++m) {
    const uint16_t* xr = xh.data() + m * K;
    std::fill(xmax.begin(), xmax.end(), 0.0);
    for (int64_t k = 0; k < K; ++k)  // (times 2^(1 - bits): the term's factor)
      xmax[k / 128] = std::max(xmax[k / 128], std::ldexp(std::fabs(static_cast<double>(fp16_to_float(xr[k]))), 1 - i8_bits));
    for (int64_t n = 0; n < N; ++n) {
      double s = 0, a = 0;
      const double* wr = w.data() + n * K;
      for (int64_t k = 0; k < K; ++k) {
        const double p = static_cast<double>(fp16_to_float(xr[k])) * wr[k];
        s += p;
        a += std::fabs(p);
      }
      if (i8) {
        double e = 0;
        for (int64_t k = 0; k < K; ++k) e += xmax[k / 128] * std::fabs(wr[k]);
        i8term[m * N + n] = e;
      }
      ref[m * N + n] = s;
      absum[m * N + n] = a;
      ymax = std::max(ymax, std::fabs(s));
    }
  }
  int bad = 0;
  for (int64_t i = 0; i < M * N; ++i) {
    const double got = fp16_to_float(y[i]);
    const double err = std::fabs(got - ref[i]);
    const double bound =
        std::ldexp(std::fabs(ref[i]), -11) + 6e-8 + static_cast<double>(K) * std::ldexp(absum[i], -23) + i8term[i];
    st.max_excess = std::max(st.max_excess, err / bound);
    st.max_rel = std::max(st.max_rel, err / std::max(ymax, 1e-30));
    if (!(err <= bound) && bad++ < 5)
      ADD_FAILURE() << what << ": y[" << i / N << "][" << i % N << "] = " << got << ", reference " << ref[i]
                    << " (bound " << bound << ")";
  }
  for (int i = 0; i < 64; ++i) EXPECT_EQ(y[M * N + i], 0xffffu) << what << ": guard " << i << " overwritten";
  return st;
}

// check_gemv_x on x drawn from N(0, x_scale^2).
Stats check_gemv(const QuantizedTensor& q, int64_t M, std::mt19937& rng, float x_scale, const std::string& what) {
  std::normal_distribution<float> nd(0.f, x_scale);
  std::vector<uint16_t> xh(static_cast<size_t>(M * q.cols));
  for (auto& h : xh) h = float_to_fp16(nd(rng));
  return check_gemv_x(q, M, xh, what);
}

// y = x W^T by gemv_fp16_cuda into dy (poisoned with 0xff first), copied back: [M, t.rows] fp16 bits.
std::vector<uint16_t> gemv_to_host(const DeviceTensor& t, const DeviceBuffer& dx, int64_t M, DeviceBuffer& dy) {
  dy.fill_bytes(0xff);
  kernels::gemv_fp16_cuda(t, dx.as<uint16_t>(), M, dy.as<uint16_t>());
  kernels::cuda_synchronize();
  std::vector<uint16_t> y(static_cast<size_t>(M * t.rows));
  dy.copy_to_host(y.data(), y.size() * 2);
  return y;
}

// t's fp16 weights by dequantize_fp16_cuda (into a buffer poisoned with 0xff first), copied back:
// [t.rows, t.cols] fp16 bits.
std::vector<uint16_t> dequant_to_host(const DeviceTensor& t) {
  DeviceBuffer d(static_cast<size_t>(t.rows * t.cols) * 2);
  d.fill_bytes(0xff);
  kernels::dequantize_fp16_cuda(t, d.as<uint16_t>());
  kernels::cuda_synchronize();
  std::vector<uint16_t> w(static_cast<size_t>(t.rows * t.cols));
  d.copy_to_host(w.data(), w.size() * 2);
  return w;
}

// The elements where two outputs differ in any bit.
int count_diff(const std::vector<uint16_t>& a, const std::vector<uint16_t>& b) {
  int diff = 0;
  for (size_t k = 0; k < a.size(); ++k) diff += a[k] != b[k];
  return diff;
}

QuantizedTensor quantize_random(std::mt19937& rng, const GemvCase& c, int64_t N, int64_t K, double wscale = 1.0) {
  const std::vector<float> w = test::random_weights(rng, N, K, wscale);
  return quantizer::quantize_tensor(w.data(), N, K, quantizer::make_format_config(c.format, c.bits, c.group, c.asym));
}

// Restores the automatic decoder, stage, tile and split choice and upload's code layout and row
// tiling when a test ends (also on failure).
struct DecoderScope {
  explicit DecoderScope(kernels::GemvDecoder d, int stages = 0, int tiles = 0, CodeLayout layout = CodeLayout::kAuto,
                        int split = 0, bool tiled_rows = true) {
    kernels::set_upload_tiling(tiled_rows);
    kernels::set_gemv_split(split);
    kernels::set_gemv_decoder(d);
    kernels::set_gemv_stages(stages);
    kernels::set_gemv_tiles(tiles);
    kernels::set_upload_layout(layout);
  }
  ~DecoderScope() {
    kernels::set_gemv_int8(0);
    kernels::set_gemv_post(0);
    kernels::set_gemv_decoder(kernels::GemvDecoder::kAuto);
    kernels::set_gemv_stages(0);
    kernels::set_gemv_tiles(0);
    kernels::set_upload_layout(CodeLayout::kAuto);
    kernels::set_gemv_split(0);
    kernels::set_upload_tiling(true);
  }
};

// Restores upload()'s default nibble encoding (set_upload_nib3(true)) when a test that switched
// it off ends, failed assertions included.
struct Nib3UploadScope {
  ~Nib3UploadScope() { kernels::set_upload_nib3(true); }
};

// Two uploads of one tensor in different device encodings (first, second) give the same weights
// (dequantization) and the same y bit for bit: M = 1, 5 and 16 with random x, each tensor with the
// bit decoder and with the table, all against the first tensor's bit decoder. refused_concat: when
// not null and the rows are whole 16-row tiles, concat_rows refuses the pair with a message
// containing it.
void expect_encodings_agree(const DeviceTensor& first, const DeviceTensor& second, std::mt19937& rng,
                            const std::string& what, const char* refused_concat) {
  EXPECT_EQ(dequant_to_host(first), dequant_to_host(second)) << what << ": dequantized weights";
  if (refused_concat && first.rows % 16 == 0) {
    const Error e = test::catch_error([&] { (void)kernels::concat_rows({&first, &second}); });
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << what;
    EXPECT_NE(std::string(e.what()).find(refused_concat), std::string::npos) << e.what();
  }
  const int64_t N = first.rows, K = first.cols;
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int64_t M : {1, 5, 16}) {
    std::vector<uint16_t> xh(static_cast<size_t>(M * K));
    for (auto& h : xh) h = float_to_fp16(nd(rng));
    DeviceBuffer dx(xh.size() * 2), dy(static_cast<size_t>(M * N) * 2);
    dx.copy_from_host(xh.data(), xh.size() * 2);
    std::vector<uint16_t> ref;
    for (const DeviceTensor* t : {&first, &second})
      for (auto dec : {kernels::GemvDecoder::kBits, kernels::GemvDecoder::kTable}) {
        DecoderScope scope(dec);  // (after the uploads: its tiling setting does not matter)
        kernels::set_gemv_post(1);  // (POST sums the same products in another order than the table)
        kernels::set_gemv_int8(1);  // (and razer4's int8 products other products)
        const std::vector<uint16_t> y = gemv_to_host(*t, dx, M, dy);
        if (ref.empty()) {
          ref = y;
          continue;
        }
        EXPECT_EQ(count_diff(y, ref), 0) << what << " M=" << M << " " << kernels::gemv_decoder_name(*t)
                                         << (t == &first ? " (first" : " (second") << " encoding) vs the first's bits";
      }
  }
}

// The encoding tests' sweep: each of cases at 300x1024, 37x512 and 64x8192 (ragged rows), with
// 16-row tiles and, where row_major_too, row-major rows; a random tensor uploaded with one of
// upload()'s encodings on (first) and off (second), set: its switch (set_upload_razer_xor,
// set_upload_nib3, set_upload_pair_table), on again afterwards, failed assertions included.
// body(c, on, off, what) checks the pair; what names the case, shape and rows.
template <size_t NC, class Body>
void sweep_encoding_pairs(std::mt19937& rng, const GemvCase (&cases)[NC], void (*set)(bool), bool row_major_too,
                          Body body) {
  struct Restore {
    void (*set)(bool);
    ~Restore() { set(true); }
  } restore{set};
  for (const GemvCase& c : cases) {
    for (auto [N, K] : {std::pair<int64_t, int64_t>{300, 1024}, {37, 512}, {64, 8192}}) {
      for (bool tiled_rows : {true, false}) {
        if (!tiled_rows && !row_major_too) continue;
        const QuantizedTensor q = quantize_random(rng, c, N, K);
        DecoderScope scope(kernels::GemvDecoder::kAuto, 0, 0, CodeLayout::kAuto, 0, tiled_rows);
        set(true);
        const DeviceTensor on = kernels::upload(q);
        set(false);
        const DeviceTensor off = kernels::upload(q);
        set(true);
        body(c, on, off, label(c) + " " + std::to_string(N) + "x" + std::to_string(K) + (tiled_rows ? "" : " row-major"));
      }
    }
  }
}

TEST(GemvCuda, EveryFormatShapeAndM) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  // Rows that are whole 16-row tiles (64, 320, 48: tiled by upload unless set_upload_tiling(false))
  // and rows that are not (row-major); 48 x 8192 is an under-filled grid with long rows, which the
  // automatic split (split_plan) splits whole at M <= 8.
  const std::pair<int64_t, int64_t> shapes[] = {{8, 128},  {37, 256},   {300, 1024}, {1000, 384},
                                                {1, 512},  {64, 256},   {320, 1024}, {48, 8192}};
  // (decoder, stages, tiles per block, code layout where a permutation applies, split, tiled rows):
  // two tiles with the bit decoders and the table; every code layout (gemv_layout.hpp) with both;
  // every tile split into two halves of K (set_gemv_split(2): the cluster pairs of the split tail)
  // with both; row-major rows where they would be tiled, with both.
  using G = kernels::GemvDecoder;
  const std::tuple<G, int, int, CodeLayout, int, bool> configs[] = {
      {G::kBits, 0, 0, CodeLayout::kAuto, 0, true},  {G::kTable, 0, 0, CodeLayout::kAuto, 0, true},
      {G::kBits, 2, 0, CodeLayout::kAuto, 0, true},  {G::kTable, 2, 0, CodeLayout::kAuto, 0, true},
      {G::kBits, 0, 2, CodeLayout::kAuto, 0, true},  {G::kTable, 0, 2, CodeLayout::kAuto, 0, true},
      {G::kBits, 0, 0, CodeLayout::kDisk, 0, true},  {G::kTable, 0, 0, CodeLayout::kDisk, 0, true},
      {G::kBits, 0, 0, CodeLayout::kQuad, 0, true},  {G::kTable, 0, 0, CodeLayout::kQuad, 0, true},
      {G::kBits, 0, 0, CodeLayout::kPair, 0, true},  {G::kTable, 0, 0, CodeLayout::kPair, 0, true},
      {G::kBits, 0, 1, CodeLayout::kAuto, 2, true},  {G::kTable, 0, 1, CodeLayout::kAuto, 2, true},
      {G::kBits, 0, 0, CodeLayout::kAuto, 0, false}, {G::kTable, 0, 0, CodeLayout::kAuto, 0, false},
      {G::kBits, 0, 2, CodeLayout::kAuto, 0, false}, {G::kBits, 0, 1, CodeLayout::kAuto, 2, false}};
  for (auto [dec, stages, tiles, layout, split, tiled_rows] : configs) {
    DecoderScope scope(dec, stages, tiles, layout, split, tiled_rows);
    for (const GemvCase& c : kCases) {
      Stats worst;
      std::string decoder;
      const char* layout_name = "";
      for (auto [N, K] : shapes) {
        const QuantizedTensor q = quantize_random(rng, c, N, K);
        const DeviceTensor t = kernels::upload(q);
        decoder = kernels::gemv_decoder_name(t);
        layout_name = t.layout == CodeLayout::kQuad ? "quad" : t.layout == CodeLayout::kPair ? "pair" : "disk";
        for (int64_t M : {1, 2, 3, 8, 9, 16}) {
          const Stats s = check_gemv(q, M, rng, 1.f, label(c) + " (" + decoder + ") " + std::to_string(N) + "x" +
                                                         std::to_string(K) + " M=" + std::to_string(M));
          worst.max_excess = std::max(worst.max_excess, s.max_excess);
          worst.max_rel = std::max(worst.max_rel, s.max_rel);
        }
      }
      std::printf("  %-18s %-10s tiles %d %-4s %-5s %-9s worst error / bound %.3f, worst |err| / max|y| %.2e\n",
                  label(c).c_str(), decoder.c_str(), tiles == 2 ? 2 : 1, layout_name, split == 2 ? "split" : "",
                  tiled_rows ? "" : "row-major", worst.max_excess, worst.max_rel);
    }
  }
}

// The bit decoders (int4 / int3 magics, E2M1 and fp3 bit placement, RaZeR's special-value patch,
// razer3's register byte table) produce the very weights the value table does and feed the same
// k-slots, whatever the pipeline depth: y is equal bit for bit. Scales below and above 4 (the
// 2^14 folded into the scale, or applied separately). The 3-bit ones with the scale on the
// weights (set_gemv_post(1); fp3 with scales of 4 or more then takes the table: POST is checked
// by PostScaledBlockSumsAreWithinTheReferenceBound); razer4 with the fp16 products
// (set_gemv_int8(1); its int8 products: Razer4Int8ProductsAreWithinTheirBound).
TEST(GemvCuda, BitDecodersEqualTheTableBitForBit) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  const std::string expect[] = {"e2m1-xor",  "int4-bits", "int4-bits", "e2m1-bits", "pair-table", "e2m1-bits",
                                "e2m1-xor",  "e2m1-bits", "e2m1-xor",  "e2m1-xor",  "int4-bits", "nib3",
                                "nib3",      "nib3",      "nib3",      "nib3",      "nib3"};
  static_assert(std::size(expect) == std::size(kCases), "one expected decoder per case");
  const std::pair<kernels::GemvDecoder, int> configs[] = {
      {kernels::GemvDecoder::kBits, 1}, {kernels::GemvDecoder::kBits, 2}, {kernels::GemvDecoder::kTable, 1},
      {kernels::GemvDecoder::kTable, 2}, {kernels::GemvDecoder::kAuto, 0}};
  int i = 0;
  for (const GemvCase& c : kCases) {
    for (double wscale : {1.0, 300.0}) {
      const QuantizedTensor q = quantize_random(rng, c, 300, 1024, wscale);
      const DeviceTensor t = kernels::upload(q);
      {
        DecoderScope scope(kernels::GemvDecoder::kBits);
        kernels::set_gemv_int8(1);
        const std::string name = kernels::gemv_decoder_name(t);
        // (razer's separate special-value indices, scales of 2 and above: the table only; so the
        // nibble decoder under groups of 64 or less with scales of 4 and above, set_gemv_post)
        const bool table = t.sv_index || (t.nib3 && c.group < 128 && t.max_inner_scale >= 4);
        EXPECT_EQ(name.substr(0, name.find('/')), table ? std::string("table") : expect[i]) << label(c) << " x" << wscale;
      }
      std::normal_distribution<float> nd(0.f, static_cast<float>(1.0 / wscale));
      for (int64_t M : {1, 7, 16}) {
        std::vector<uint16_t> xh(static_cast<size_t>(M * 1024));
        for (auto& h : xh) h = float_to_fp16(nd(rng));
        DeviceBuffer dx(xh.size() * 2), dy(static_cast<size_t>(M * 300) * 2);
        dx.copy_from_host(xh.data(), xh.size() * 2);
        std::vector<uint16_t> first;
        for (auto [dec, stages] : configs) {
          DecoderScope scope(dec, stages);
          kernels::set_gemv_post(1);  // (the 3-bit scale on the weights, as the table's)
          kernels::set_gemv_int8(1);
          const std::vector<uint16_t> y = gemv_to_host(t, dx, M, dy);
          if (first.empty()) {
            first = y;
            continue;
          }
          EXPECT_EQ(count_diff(y, first), 0) << label(c) << " x" << wscale << " M=" << M << " " << kernels::gemv_decoder_name(t)
                             << " vs bits/1 (max inner scale " << t.max_inner_scale << ")";
        }
      }
    }
    ++i;
  }
}

// The bulk ring (set_gemv_stages(3), gemv.cu BULK: a producer warp's bulk copies into shared
// memory) hands each warp the words and scales the register prefetch loads, and the warps sum the
// same blocks of K in the same order: y equal to stages 1's bit for bit, for every 3-bit case in
// groups of 128. K of one block, of a partial step of the block's 8 warps, and of more
// steps than the ring's four stages (its barriers' phases wrap); whole and split tiles (the split
// tail's halves start mid-row); M = 1..16; and against the reference. By default it serves M = 1
// with K >= 8192 on grids that are not split whole only.
TEST(GemvCuda, BulkRingEqualsTheRegisterPrefetchBitForBit) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  // (Whole 16-row tiles: the ring takes tiled rows only.)
  const std::pair<int64_t, int64_t> shapes[] = {{48, 128}, {304, 1152}, {80, 8192}, {144, 4096 + 5 * 128}};
  int cases = 0;
  for (const GemvCase& c : kCases) {
    if (c.bits != 3 || c.group != 128) continue;
    ++cases;
    for (auto [N, K] : shapes) {
      const QuantizedTensor q = quantize_random(rng, c, N, K);
      const DeviceTensor t = kernels::upload(q);
      const std::string what = label(c) + " " + std::to_string(N) + "x" + std::to_string(K);
      {
        DecoderScope scope(kernels::GemvDecoder::kAuto, 3);
        EXPECT_NE(std::string(kernels::gemv_decoder_name(t)).find("/bulk"), std::string::npos)
            << what << ": " << kernels::gemv_decoder_name(t);
      }
      {
        DecoderScope scope(kernels::GemvDecoder::kAuto);  // (all four grids are under-filled: split whole)
        EXPECT_EQ(std::string(kernels::gemv_decoder_name(t)).find("/bulk"), std::string::npos) << what;
      }
      std::normal_distribution<float> nd(0.f, 1.f);
      for (int64_t M : {1, 3, 8, 16}) {
        std::vector<uint16_t> xh(static_cast<size_t>(M * K));
        for (auto& h : xh) h = float_to_fp16(nd(rng));
        DeviceBuffer dx(xh.size() * 2), dy(static_cast<size_t>(M * N) * 2);
        dx.copy_from_host(xh.data(), xh.size() * 2);
        for (int split : {1, 2}) {
          std::vector<uint16_t> y[2];
          for (int stages : {1, 3}) {
            DecoderScope scope(kernels::GemvDecoder::kAuto, stages, 1, CodeLayout::kAuto, split);
            kernels::set_gemv_int8(1);  // (the int8 products: Int8ProductsAreWithinTheirBound)
            y[stages == 3] = gemv_to_host(t, dx, M, dy);
          }
          EXPECT_EQ(count_diff(y[1], y[0]), 0) << what << " M=" << M << (split == 2 ? " split" : "") << ": bulk vs stages 1";
        }
      }
      DecoderScope scope(kernels::GemvDecoder::kAuto, 3, 1);
      for (int64_t M : {1, 16}) check_gemv(q, M, rng, 1.f, what + " bulk M=" + std::to_string(M));
    }
  }
  EXPECT_EQ(cases, 4) << "razer3, int3, int3-asym and fp3 in groups of 128";
  // The default takes the ring at M = 1 only, for K >= 8192 and grids of more than two tiles per SM
  // (int3 asym's bit decoder on the bitstream; the nibble decoder's int8 products:
  // Int8ProductsAreWithinTheirBound).
  Nib3UploadScope restore;
  kernels::set_upload_nib3(false);
  for (int64_t K : {4096, 8192}) {
    const GemvCase c{"int", true, 128, 3};
    const DeviceTensor t = kernels::upload(quantize_random(rng, c, 6400, K));
    DecoderScope scope(kernels::GemvDecoder::kAuto);
    EXPECT_EQ(std::string(kernels::gemv_decoder_name(t, 1)), K >= 8192 ? "int3-bits/bulk" : "int3-bits/1") << K;
    EXPECT_EQ(std::string(kernels::gemv_decoder_name(t, 2)), "int3-bits/1") << K;
  }
}

// The int8 products' tests: x of K values of one kind (0 normal, 1 an outlier of 1000 sigma in
// every 128-column block, 2 subnormal size, 3 zero) and its name.
std::vector<uint16_t> int8_test_x(std::mt19937& rng, int64_t K, int kind) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<uint16_t> xh(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) {
    const float v = nd(rng);
    xh[k] = float_to_fp16(kind == 1 && k % 128 == 17 ? 1000.f * v : kind == 2 ? 1e-6f * v : kind == 3 ? 0.f : v);
  }
  return xh;
}
const char* int8_x_kind(int kind) {
  return kind == 0 ? " x normal" : kind == 1 ? " x outliers" : kind == 2 ? " x subnormal" : " x zero";
}

// check_gemv_x at M = 1 on x of each kind (int8_test_x); returns the normal one.
std::vector<uint16_t> check_int8_x_kinds(const QuantizedTensor& q, std::mt19937& rng, const std::string& what) {
  std::vector<uint16_t> normal;
  for (int kind = 0; kind < 4; ++kind) {
    std::vector<uint16_t> xh = int8_test_x(rng, q.cols, kind);
    check_gemv_x(q, 1, xh, what + int8_x_kind(kind));
    if (kind == 0) normal = std::move(xh);
  }
  return normal;
}

// t's int8 products at M = 1 (y8, from x in dx) against its fp16 products (set_gemv_int8(1), which
// gemv_decoder_name must call fp16_name): within 2^-9 max |y|; then x with an inf (xh changed) gives
// NaN in every row.
void expect_int8_near_fp16_and_inf_nan(const DeviceTensor& t, std::vector<uint16_t>& xh, DeviceBuffer& dx, DeviceBuffer& dy,
                                       const std::vector<uint16_t>& y8, const char* fp16_name, const std::string& what) {
  const int64_t N = t.rows, K = t.cols;
  kernels::set_gemv_int8(1);
  EXPECT_EQ(std::string(kernels::gemv_decoder_name(t, 1)), fp16_name) << what;
  const std::vector<uint16_t> y16 = gemv_to_host(t, dx, 1, dy);
  kernels::set_gemv_int8(0);
  double ymax = 0, dmax = 0;
  for (int64_t n = 0; n < N; ++n) {
    ymax = std::max(ymax, std::fabs(static_cast<double>(fp16_to_float(y16[n]))));
    dmax = std::max(dmax, std::fabs(static_cast<double>(fp16_to_float(y8[n])) - fp16_to_float(y16[n])));
  }
  EXPECT_LE(dmax, std::ldexp(ymax, -9)) << what << ": int8 against fp16 products";
  xh[K / 2] = 0x7c00;  // +inf
  dx.copy_from_host(xh.data(), xh.size() * 2);
  const std::vector<uint16_t> yinf = gemv_to_host(t, dx, 1, dy);
  for (int64_t n = 0; n < N; ++n)
    if (!std::isnan(fp16_to_float(yinf[n]))) {
      ADD_FAILURE() << what << ": x with inf, y[" << n << "] = " << fp16_to_float(yinf[n]);
      break;
    }
}

// The int8 products (set_gemv_int8; the bulk ring at M = 1; razer3, fp3 and int3): taken by
// default where the nibble decoder runs in the ring at M = 1 (not at M = 2, not under
// set_gemv_int8(1)); within the reference's bound with x's fixed-point term, for K of one block, a
// partial step and more steps than the ring holds, whole and split tiles, one and two tiles per
// block (N of an odd number of tiles: the second tile of the last block is past N), both permuted
// layouts, razer3's default special values and a set that needs the shift 2^1 (0.5, -64), fp3 and
// int3 sym (one table), int3 asym (the codes, z sum q per row and block, the zero points staged);
// x normal, with an outlier of 1000 sigma in every block (most of the block then rounds to the
// fixed point), of subnormal size, and zero; an inf in x gives NaN rows. y stays within 2^-9
// max |y| of the fp16 products', and two tiles per block (each warp 32 rows with one x split) give
// one tile's y bit for bit.
TEST(GemvCuda, Int8ProductsAreWithinTheirBound) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  const std::pair<int64_t, int64_t> shapes[] = {{48, 128}, {304, 1152}, {80, 8192}, {144, 4096 + 5 * 128}};
  // razer3 with the default special values and a set that needs the shift; int3 sym and fp3 (no
  // special value: one table); int3 asym.
  const quantizer::FormatConfig cfgs[] = {quantizer::make_format_config("razer", 3, 128, false),
                                          quantizer::make_format_config("razer", 3, 128, false, {0.5f, -3.5f, 7.f, -64.f}),
                                          quantizer::make_format_config("int", 3, 128, false),
                                          quantizer::make_format_config("fp3", 3, 128, false),
                                          quantizer::make_format_config("int", 3, 128, true)};
  for (const quantizer::FormatConfig& cfg : cfgs)
    for (auto [N, K] : shapes)
      for (CodeLayout layout : {CodeLayout::kQuad, CodeLayout::kPair})
        for (int split : {1, 2})
          for (int tiles : {1, 2}) {
            DecoderScope scope(kernels::GemvDecoder::kAuto, 3, tiles, layout, split);
            const std::vector<float> wf = test::random_weights(rng, N, K, 1.0);
            const QuantizedTensor q = quantizer::quantize_tensor(wf.data(), N, K, cfg);
            const DeviceTensor t = kernels::upload(q);
            const std::string sv = cfg.special_values.empty() ? "" : " sv " + std::to_string(cfg.special_values[0]);
            const std::string what = cfg.label() + sv + " " + std::to_string(N) + "x" + std::to_string(K) +
                                     (layout == CodeLayout::kQuad ? " quad" : " pair") + (split == 2 ? " split" : "") +
                                     " tiles " + std::to_string(tiles);
            ASSERT_TRUE(t.nib3) << what;
            ASSERT_EQ(t.zero_bytes != nullptr, cfg.asym) << what;
            ASSERT_EQ(std::string(kernels::gemv_decoder_name(t, 1)), "nib3-i8/bulk") << what;
            EXPECT_TRUE(kernels::gemv_int8_products(t, 1)) << what;
            EXPECT_FALSE(kernels::gemv_int8_products(t, 2)) << what;
            std::vector<uint16_t> xh = check_int8_x_kinds(q, rng, what);
            DeviceBuffer dx(xh.size() * 2), dy(static_cast<size_t>(N) * 2);
            dx.copy_from_host(xh.data(), xh.size() * 2);
            const std::vector<uint16_t> y8 = gemv_to_host(t, dx, 1, dy);
            if (tiles == 2) {
              kernels::set_gemv_tiles(1);
              EXPECT_EQ(count_diff(y8, gemv_to_host(t, dx, 1, dy)), 0) << what << ": two tiles against one";
              kernels::set_gemv_tiles(2);
            }
            expect_int8_near_fp16_and_inf_nan(t, xh, dx, dy, y8, "nib3/bulk", what);
          }
  // The default: razer3, int3 and fp3 at M = 1 on a grid the ring takes (K >= 8192, more than two
  // tiles per SM).
  DecoderScope scope(kernels::GemvDecoder::kAuto);
  for (const GemvCase& c : {GemvCase{"int", false, 128, 3}, GemvCase{"fp3", false, 128, 3}, GemvCase{"int", true, 128, 3}}) {
    const DeviceTensor t = kernels::upload(quantize_random(rng, c, 6400, 8192));
    EXPECT_EQ(std::string(kernels::gemv_decoder_name(t, 1)), "nib3-i8/bulk") << label(c);
    EXPECT_EQ(std::string(kernels::gemv_decoder_name(t, 2)), "nib3/1") << label(c);
  }
  const DeviceTensor big = kernels::upload(quantize_random(rng, {"razer", false, 128, 3}, 6400, 8192));
  EXPECT_EQ(std::string(kernels::gemv_decoder_name(big, 1)), "nib3-i8/bulk");
  EXPECT_EQ(std::string(kernels::gemv_decoder_name(big, 2)), "nib3/1");
  // The SiLU epilogue's kernels (one stage, no ring) take the fp16 products on that tensor at M = 1:
  // equal to the plain fp16 product followed by the SiLU kernel, bit for bit.
  {
    const int64_t F = big.rows / 2, K = big.cols;
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<uint16_t> xh(static_cast<size_t>(K));
    for (auto& h : xh) h = float_to_fp16(nd(rng));
    DeviceBuffer dx(xh.size() * 2), dy(static_cast<size_t>(2 * F) * 2), dref(static_cast<size_t>(F) * 2),
        dact(static_cast<size_t>(F) * 2);
    dx.copy_from_host(xh.data(), xh.size() * 2);
    DecoderScope plain(kernels::GemvDecoder::kAuto, 1);  // (the epilogue's pipeline: one stage)
    (void)gemv_to_host(big, dx, 1, dy);
    kernels::silu_mul_cuda(kernels::ActDType::kFp16, dy.data(), dy.as<uint16_t>() + F, 2 * F, 1, F, dref.data());
    kernels::set_gemv_stages(0);
    kernels::gemv_silu_mul_fp16_cuda(big, dx.as<uint16_t>(), 1, dact.as<uint16_t>());
    kernels::cuda_synchronize();
    std::vector<uint16_t> ref(static_cast<size_t>(F)), act(static_cast<size_t>(F));
    dref.copy_to_host(ref.data(), ref.size() * 2);
    dact.copy_to_host(act.data(), act.size() * 2);
    EXPECT_EQ(count_diff(act, ref), 0) << "razer3 6400x8192 SiLU epilogue at M = 1";
  }
  kernels::set_gemv_int8(1);
  EXPECT_EQ(std::string(kernels::gemv_decoder_name(big, 1)), "nib3/bulk");
}

// razer4's int8 products (the two-table tensors at M = 1, groups of 128 or more; set_gemv_int8):
// taken by default at M = 1 (not at M = 2, not under set_gemv_int8(1), not with groups of 64);
// within the reference's bound with x's 15-bit fixed point term, for K of one block and of
// several, rows past N, one and two tiles per block, whole and split tiles, the three code layouts,
// the default special values and a set at the ends of the int8 range (2 |S| = 1 and 128); x normal,
// with an outlier of 1000 sigma in every block, of subnormal size, and zero; y within 2^-9 max |y|
// of the fp16 products'; an inf in x gives NaN rows; the SiLU epilogue's kernel (the same int8
// products) equal to the plain product then the SiLU kernel, bit for bit.
TEST(GemvCuda, Razer4Int8ProductsAreWithinTheirBound) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  const std::pair<int64_t, int64_t> shapes[] = {{48, 128}, {304, 1152}, {80, 8192}, {144, 4096 + 5 * 128}};
  const std::vector<float> sets[] = {{}, {0.5f, 64.f, -7.f, -64.f}};
  for (const std::vector<float>& sv : sets)
    for (auto [N, K] : shapes)
      for (CodeLayout layout : {CodeLayout::kQuad, CodeLayout::kPair, CodeLayout::kDisk})
        for (int split : {1, 2})
          for (int tiles : {1, 2}) {
            DecoderScope scope(kernels::GemvDecoder::kAuto, 0, tiles, layout, split);
            const std::vector<float> wf = test::random_weights(rng, N, K, 1.0);
            const QuantizedTensor q =
                quantizer::quantize_tensor(wf.data(), N, K, quantizer::make_format_config("razer", 4, 128, false, sv));
            const DeviceTensor t = kernels::upload(q);
            const std::string what = q.cfg.label() + (sv.empty() ? "" : " sv " + std::to_string(sv[0])) + " " +
                                     std::to_string(N) + "x" + std::to_string(K) + " layout " +
                                     std::to_string(static_cast<int>(layout)) + (split == 2 ? " split" : "") + " tiles " +
                                     std::to_string(tiles);
            ASSERT_TRUE(t.razer_xor) << what;
            ASSERT_EQ(std::string(kernels::gemv_decoder_name(t, 1)), "e2m1-xor-i8/1") << what;
            EXPECT_EQ(kernels::gemv_int8_x_bits(t, 1), 15) << what;
            EXPECT_FALSE(kernels::gemv_int8_products(t, 2)) << what;
            std::vector<uint16_t> xh = check_int8_x_kinds(q, rng, what);
            DeviceBuffer dx(xh.size() * 2), dy(static_cast<size_t>(N) * 2);
            dx.copy_from_host(xh.data(), xh.size() * 2);
            const std::vector<uint16_t> y8 = gemv_to_host(t, dx, 1, dy);  // (dy keeps it for the SiLU kernel)
            if (tiles == 1 && split == 1) {  // the SiLU epilogue (one tile, no split tail here)
              const int64_t F = N / 2;
              DeviceBuffer dref(static_cast<size_t>(F) * 2), dact(static_cast<size_t>(F) * 2);
              kernels::silu_mul_cuda(kernels::ActDType::kFp16, dy.data(), dy.as<uint16_t>() + F, 2 * F, 1, F, dref.data());
              kernels::gemv_silu_mul_fp16_cuda(t, dx.as<uint16_t>(), 1, dact.as<uint16_t>());
              kernels::cuda_synchronize();
              std::vector<uint16_t> ref(static_cast<size_t>(F)), act(static_cast<size_t>(F));
              dref.copy_to_host(ref.data(), ref.size() * 2);
              dact.copy_to_host(act.data(), act.size() * 2);
              EXPECT_EQ(count_diff(act, ref), 0) << what << ": SiLU epilogue";
            }
            expect_int8_near_fp16_and_inf_nan(t, xh, dx, dy, y8, "e2m1-xor/1", what);
          }
  // Not taken with groups of 64 (a row's 128-column block has two scales).
  const DeviceTensor g64 = kernels::upload(quantize_random(rng, {"razer", false, 64}, 48, 1024));
  EXPECT_EQ(std::string(kernels::gemv_decoder_name(g64, 1)), "e2m1-xor/1");
  EXPECT_EQ(kernels::gemv_int8_x_bits(g64, 1), 0);
}

// RaZeR (3- and 4-bit) with special values other than the defaults: the bit decoders (razer3's
// register byte table, razer4's byte patch or two tables) take a set whose values x 2^-14 are fp16
// with a zero low byte (0.5 subnormal, 64 the largest allowed), equal to the table bit for bit and
// within the reference's bound; razer4's two tables (upload's re-encoding) need values 0, 1
// positive and 2, 3 negative, else the byte patch; a set with 5.5 (4 significant bits) falls back
// to the table.
TEST(GemvCuda, RazerSpecialValueSets) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  const struct {
    int bits;
    std::vector<float> sv;
    const char* decoder;
  } sets[] = {{3, {0.5f, -3.5f, 7.f, -64.f}, "nib3"}, {3, {5.5f, 3.f, -6.f, -3.f}, "table"},
              {4, {0.5f, -3.5f, 7.f, -64.f}, "e2m1-bits"}, {4, {5.5f, 5.f, -8.f, -5.f}, "table"},
              {4, {0.5f, 64.f, -3.5f, -7.f}, "e2m1-xor"}};
  for (const auto& set : sets) {
    const std::vector<float> w = test::random_weights(rng, 300, 1024, 1.0);
    const QuantizedTensor q = quantizer::quantize_tensor(
        w.data(), 300, 1024, quantizer::make_format_config("razer", set.bits, 128, false, set.sv));
    const DeviceTensor t = kernels::upload(q);
    std::string what = "razer" + std::to_string(set.bits) + " special values";
    for (float v : set.sv) what += " " + std::to_string(v);
    {
      DecoderScope scope(kernels::GemvDecoder::kBits);
      const std::string name = kernels::gemv_decoder_name(t, 2);  // (M = 1: razer4's int8 products)
      EXPECT_EQ(name.substr(0, name.find('/')), set.decoder) << what;
      for (int64_t M : {1, 16}) check_gemv(q, M, rng, 1.f, what + " M=" + std::to_string(M));
    }
    std::normal_distribution<float> nd(0.f, 1.f);
    for (int64_t M : {1, 9}) {
      std::vector<uint16_t> xh(static_cast<size_t>(M * 1024));
      for (auto& h : xh) h = float_to_fp16(nd(rng));
      DeviceBuffer dx(xh.size() * 2), dy(static_cast<size_t>(M * 300) * 2);
      dx.copy_from_host(xh.data(), xh.size() * 2);
      std::vector<uint16_t> y[2];
      for (int k = 0; k < 2; ++k) {
        DecoderScope scope(k == 0 ? kernels::GemvDecoder::kBits : kernels::GemvDecoder::kTable);
        kernels::set_gemv_post(1);
        kernels::set_gemv_int8(1);
        y[k] = gemv_to_host(t, dx, M, dy);
      }
      EXPECT_EQ(count_diff(y[0], y[1]), 0) << what << " M=" << M << ": bits vs table";
    }
  }
}

// gemv_fp16_cuda keeps the tables it builds from a grid per thread (set_gemv_table_cache): launches
// that interleave more formats than it keeps (4-bit and 3-bit RaZeR with two special-value sets
// each, int4 and int3 asym, int3 asym on nibbles and on the bitstream, nf4 on the table), under
// both decoder settings and in the ring wherever it applies (stages 3: the int8 tables at M = 1),
// give y bit for bit as with the tables rebuilt at every launch.
TEST(GemvCuda, KeptGridTablesGiveTheRebuiltTablesY) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  Nib3UploadScope restore_nib3;
  struct CacheScope {
    ~CacheScope() { kernels::set_gemv_table_cache(true); }
  } restore_cache;
  const int64_t N = 96, K = 512;
  const struct {
    GemvCase c;
    std::vector<float> sv;  // (empty: the format's defaults)
    bool nib3;
  } cases[] = {{{"razer", false, 128}, {}, true},          {{"razer", false, 128}, {0.5f, 64.f, -3.5f, -7.f}, true},
               {{"razer", false, 128, 3}, {}, true},       {{"razer", false, 128, 3}, {0.5f, -3.5f, 7.f, -64.f}, true},
               {{"int", true, 128}, {}, true},             {{"int", true, 128, 3}, {}, true},
               {{"int", true, 128, 3}, {}, false},         {{"nf4", false, 64}, {}, true}};
  std::vector<DeviceTensor> ts;
  for (const auto& k : cases) {
    const std::vector<float> w = test::random_weights(rng, N, K, 1.0);
    const QuantizedTensor q = quantizer::quantize_tensor(
        w.data(), N, K, quantizer::make_format_config(k.c.format, k.c.bits, k.c.group, k.c.asym, k.sv));
    kernels::set_upload_nib3(k.nib3);
    ts.push_back(kernels::upload(q));
    kernels::set_upload_nib3(true);
  }
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int64_t M : {1, 3}) {
    std::vector<uint16_t> xh(static_cast<size_t>(M * K));
    for (auto& h : xh) h = float_to_fp16(nd(rng));
    DeviceBuffer dx(xh.size() * 2), dy(static_cast<size_t>(M * N) * 2);
    dx.copy_from_host(xh.data(), xh.size() * 2);
    for (auto [dec, stages] : {std::pair{kernels::GemvDecoder::kAuto, 0}, std::pair{kernels::GemvDecoder::kTable, 0},
                               std::pair{kernels::GemvDecoder::kAuto, 3}}) {
      DecoderScope scope(dec, stages);
      std::vector<std::vector<uint16_t>> rebuilt;
      kernels::set_gemv_table_cache(false);
      for (const DeviceTensor& t : ts) rebuilt.push_back(gemv_to_host(t, dx, M, dy));
      kernels::set_gemv_table_cache(true);
      for (int pass = 0; pass < 2; ++pass)  // (the second pass: every format evicted once before)
        for (size_t i = 0; i < ts.size(); ++i) {
          const std::vector<uint16_t> y = gemv_to_host(ts[i], dx, M, dy);
          EXPECT_EQ(count_diff(y, rebuilt[i]), 0) << ts[i].cfg.label() << (ts[i].nib3 ? " nib3" : "") << " case " << i
                                                  << " M=" << M << " stages " << stages << " pass " << pass << " "
                                                  << kernels::gemv_decoder_name(ts[i], M);
      if (stages == 3 && M == 1) {  // (the ring applies to the nibble tensors: int8 products there)
        EXPECT_STREQ(kernels::gemv_decoder_name(ts[5], M), "nib3-i8/bulk") << ts[5].cfg.label();
      }
        }
    }
  }
}

// 4-bit RaZeR uploaded re-encoded for the two-table decoder (DeviceTensor::razer_xor, the default)
// and as E2M1 codes in pair order (set_upload_razer_xor(false): the byte patch) gives the same
// weights (dequantization) and the same y bit for bit, with either decoder of each, for razer's
// groups of 64 to 256, mxfp4-razer and nvfp4-razer (their sign in the scale byte's bit 7) and
// ragged rows; tensors of the two encodings are not concatenated.
TEST(GemvCuda, RazerReencodedCodesEqualTheE2m1Codes) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  const GemvCase cases[] = {{"razer", false, 128}, {"razer", false, 64}, {"razer", false, 256},
                            {"mxfp4-razer", false, 32}, {"nvfp4-razer", false, 16}};
  sweep_encoding_pairs(rng, cases, kernels::set_upload_razer_xor, false,
                       [&](const GemvCase&, const DeviceTensor& tx, const DeviceTensor& te, const std::string& what) {
                         ASSERT_TRUE(tx.razer_xor) << what;
                         ASSERT_FALSE(te.razer_xor) << what;
                         expect_encodings_agree(tx, te, rng, what, "RaZeR or nibble encoding");
                       });
}

// razer3, fp3 and int3 (sym and asym) uploaded as nibbles for the lookup decoder (DeviceTensor::nib3,
// the default; int3 asym with its zero points as bytes too) and as a bitstream in pair order
// (set_upload_nib3(false): the table or bit decoder then) give the same weights (dequantization)
// and the same y bit for bit, with either decoder of each, tiled and row-major, groups of 32, 64
// and 128, ragged rows; tensors of the two encodings are not concatenated.
TEST(GemvCuda, Nib3CodesEqualTheBitstreamCodes) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  const GemvCase cases[] = {{"razer", false, 128, 3}, {"razer", false, 64, 3}, {"fp3", false, 128, 3},
                            {"int", false, 128, 3},   {"int", true, 128, 3},    {"int", true, 32, 3}};
  sweep_encoding_pairs(rng, cases, kernels::set_upload_nib3, true,
                       [&](const GemvCase& c, const DeviceTensor& tn, const DeviceTensor& tb, const std::string& what) {
                         ASSERT_TRUE(tn.nib3) << what;
                         ASSERT_EQ(tn.zero_bytes != nullptr, c.asym) << what;
                         ASSERT_FALSE(tb.nib3) << what;
                         ASSERT_EQ(tb.zero_bytes, nullptr) << what;
                         ASSERT_TRUE(tb.pair_order) << what;
                         expect_encodings_agree(tn, tb, rng, what, "nibble encoding");
                       });
}

// nf4 uploaded in column order for the pair-table decoder (DeviceTensor::pair_table, the default)
// and in pair order (set_upload_pair_table(false): the table decoder then) gives the same weights
// (dequantization) and the same y bit for bit, with either decoder of each, tiled and row-major,
// groups of 64, 128 and 256 (the permuted chunk layouts at 128 and 256), ragged rows; tensors of the
// two encodings are not concatenated. gemv_decoder_name names the pair table at M = 1 and 16.
TEST(GemvCuda, PairTableCodesEqualThePairOrderCodes) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  const GemvCase cases[] = {{"nf4", false, 128}, {"nf4", false, 64}, {"nf4", false, 256}};
  sweep_encoding_pairs(rng, cases, kernels::set_upload_pair_table, true,
                       [&](const GemvCase&, const DeviceTensor& tp, const DeviceTensor& to, const std::string& what) {
                         ASSERT_TRUE(tp.pair_table) << what;
                         ASSERT_FALSE(tp.pair_order) << what;
                         ASSERT_FALSE(to.pair_table) << what;
                         ASSERT_TRUE(to.pair_order) << what;
                         EXPECT_TRUE(kernels::row_view(tp, 16, 5).pair_table) << what;
                         EXPECT_STREQ(kernels::gemv_decoder_name(tp, 1), "pair-table/1") << what;
                         EXPECT_STREQ(kernels::gemv_decoder_name(tp, 16), "pair-table/1") << what;
                         EXPECT_STREQ(kernels::gemv_decoder_name(to, 1), "table/1") << what;
                         expect_encodings_agree(tp, to, rng, what, "pair-table encoding");
                       });
}

// POST (set_gemv_post(2): the nibble decoder (razer3, fp3, int3 sym), fp3's bit decoder (on the
// bitstream) and razer4's two-table decoder apply the scale to each 128-column block's fp32 sums, not
// to every weight): within the bound of the reference with the exact weights, for groups of 128 and
// 256, every tile, split, layout and row order, M = 1 .. 16, scales below and above 4 (razer4's are
// below 2); groups of 64 keep the scale on the weights (PRE).
TEST(GemvCuda, PostScaledBlockSumsAreWithinTheReferenceBound) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  using G = kernels::GemvDecoder;
  const GemvCase cases[] = {{"razer", false, 128, 3}, {"razer", false, 256, 3}, {"fp3", false, 128, 3},
                            {"razer", false, 64, 3},  {"int", false, 128, 3},  {"fp3", false, 128, 3},
                            {"razer", false, 128, 4}, {"razer", false, 256, 4}, {"razer", false, 64, 4}};
  // (fp3's bit decoder: set_upload_nib3(false))
  const bool bitstream[] = {false, false, false, false, false, true, false, false, false};
  Nib3UploadScope restore;
  const std::pair<int64_t, int64_t> shapes[] = {{300, 1024}, {37, 256}, {64, 8192}, {320, 1024}};
  // (tiles per block, code layout, split, tiled rows)
  const std::tuple<int, CodeLayout, int, bool> configs[] = {
      {0, CodeLayout::kAuto, 0, true}, {2, CodeLayout::kAuto, 0, true}, {1, CodeLayout::kAuto, 2, true},
      {0, CodeLayout::kQuad, 0, true}, {0, CodeLayout::kPair, 0, true}, {0, CodeLayout::kAuto, 0, false}};
  for (size_t ci = 0; ci < std::size(cases); ++ci)
    for (double wscale : {1.0, 300.0}) {
      const GemvCase& c = cases[ci];
      kernels::set_upload_nib3(!bitstream[ci]);
      if (std::string(c.format) == "razer" && wscale > 1) continue;  // (razer's scales of 2 and above: the table)
      for (auto [tiles, layout, split, tiled_rows] : configs) {
        DecoderScope scope(G::kBits, 0, tiles, layout, split, tiled_rows);
        kernels::set_gemv_post(2);
        for (auto [N, K] : shapes) {
          if (K % c.group) continue;
          const QuantizedTensor q = quantize_random(rng, c, N, K, wscale);
          const DeviceTensor t = kernels::upload(q);
          const std::string name = kernels::gemv_decoder_name(t, 2);  // (M = 1: razer4's int8 products, g128)
          const char* dec = c.bits == 4 ? "e2m1-xor" : bitstream[ci] ? "fp3-bits" : "nib3";
          EXPECT_EQ(name.substr(0, name.find('/')), dec) << label(c);
          for (int64_t M : {1, 2, 8, 9, 16}) {
            const std::string what = label(c) + (bitstream[ci] ? " bitstream" : "") + " x" + std::to_string(wscale) + " " +
                                     std::to_string(N) + "x" + std::to_string(K) + " tiles " + std::to_string(tiles) +
                                     " M=" + std::to_string(M);
            EXPECT_EQ(kernels::gemv_post_scaled(t, M), c.group % 128 == 0) << what;
            check_gemv(q, M, rng, static_cast<float>(1.0 / wscale), what);
          }
        }
      }
    }
}

// The automatic choice: POST for the nibble decoder (razer3, fp3, int3 sym) and razer4's two-table
// decoder at M <= 8 and K > 4096 with groups of 128 or more, and for the nibbles at any M and K where
// their scales reach 4 (fp3's bit decoder on the bitstream: only there); under set_gemv_post(1) never
// (fp3 with such scales then takes the table, within the fp16-weight reference's bound). razer4 at
// M = 1 with groups of 128 takes its int8 products instead, whose block sums are scaled at any K.
TEST(GemvCuda, PostScaledByDefaultForTheNibblesAndRazer4UpToM8) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  const DeviceTensor r3 = kernels::upload(quantize_random(rng, {"razer", false, 128, 3}, 32, 4224));
  const DeviceTensor r3short = kernels::upload(quantize_random(rng, {"razer", false, 128, 3}, 32, 4096));
  const DeviceTensor r3g64 = kernels::upload(quantize_random(rng, {"razer", false, 64, 3}, 32, 4224));
  const DeviceTensor fp3 = kernels::upload(quantize_random(rng, {"fp3", false, 128, 3}, 32, 4224));
  const DeviceTensor int3 = kernels::upload(quantize_random(rng, {"int", false, 128, 3}, 32, 4224));
  const DeviceTensor fp3big = kernels::upload(quantize_random(rng, {"fp3", false, 128, 3}, 64, 512, 300.0));
  const DeviceTensor r4 = kernels::upload(quantize_random(rng, {"razer", false, 128}, 32, 4224));
  const DeviceTensor r4short = kernels::upload(quantize_random(rng, {"razer", false, 128}, 32, 4096));
  const DeviceTensor r4g64 = kernels::upload(quantize_random(rng, {"razer", false, 64}, 32, 4224));
  ASSERT_GE(fp3big.max_inner_scale, 4.0);
  EXPECT_EQ(std::string(kernels::gemv_decoder_name(r4, 2)), "e2m1-xor/1");
  // razer4 at M = 1 (groups of 128): the int8 products, which scale the block sums at every K.
  EXPECT_EQ(std::string(kernels::gemv_decoder_name(r4, 1)), "e2m1-xor-i8/1");
  EXPECT_EQ(std::string(kernels::gemv_decoder_name(r4short, 1)), "e2m1-xor-i8/1");
  EXPECT_EQ(std::string(kernels::gemv_decoder_name(r4g64, 1)), "e2m1-xor/1");
  EXPECT_TRUE(kernels::gemv_post_scaled(r4short, 1));
  for (int64_t M : {1, 8}) {
    EXPECT_TRUE(kernels::gemv_post_scaled(r4, M)) << M;
    if (M > 1) {
      EXPECT_FALSE(kernels::gemv_post_scaled(r4short, M)) << M;
    }
    EXPECT_FALSE(kernels::gemv_post_scaled(r4g64, M)) << M;
    EXPECT_TRUE(kernels::gemv_post_scaled(r3, M)) << M;
    EXPECT_TRUE(kernels::gemv_post_scaled(fp3, M)) << M;
    EXPECT_TRUE(kernels::gemv_post_scaled(int3, M)) << M;
    EXPECT_FALSE(kernels::gemv_post_scaled(r3short, M)) << M;
    EXPECT_FALSE(kernels::gemv_post_scaled(r3g64, M)) << M;
  }
  EXPECT_FALSE(kernels::gemv_post_scaled(r3, 9));
  EXPECT_FALSE(kernels::gemv_post_scaled(fp3, 9));
  EXPECT_FALSE(kernels::gemv_post_scaled(r4, 9));
  for (int64_t M : {1, 8, 9})
    check_gemv(quantize_random(rng, {"razer", false, 128}, 64, 4224), M, rng, 1.f, "razer4 default M=" + std::to_string(M));
  {  // fp3's bit decoder (the bitstream): PRE wherever its scales allow
    Nib3UploadScope restore;
    kernels::set_upload_nib3(false);
    const DeviceTensor fp3bs = kernels::upload(quantize_random(rng, {"fp3", false, 128, 3}, 32, 4224));
    EXPECT_EQ(std::string(kernels::gemv_decoder_name(fp3bs, 1)), "fp3-bits/1");
    EXPECT_FALSE(kernels::gemv_post_scaled(fp3bs, 1));
  }
  EXPECT_TRUE(kernels::gemv_post_scaled(fp3big, 1));
  EXPECT_TRUE(kernels::gemv_post_scaled(fp3big, 16));
  {
    DecoderScope scope(kernels::GemvDecoder::kAuto);
    kernels::set_gemv_post(1);
    EXPECT_FALSE(kernels::gemv_post_scaled(r3, 1));
    EXPECT_FALSE(kernels::gemv_post_scaled(r4, 2));
    EXPECT_TRUE(kernels::gemv_post_scaled(r4, 1));  // (the int8 products)
    EXPECT_FALSE(kernels::gemv_post_scaled(fp3big, 1));
    EXPECT_EQ(std::string(kernels::gemv_decoder_name(fp3big)), "table/1");
    check_gemv(quantize_random(rng, {"fp3", false, 128, 3}, 64, 512, 300.0), 1, rng, 1.f / 300.f, "fp3 x300 never POST");
  }
}

// A larger, LLM-shaped layer (and razer's separate special-value index, weights x 1000).
TEST(GemvCuda, LargeLayerAndRazerFallback) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  for (const GemvCase& c : {kCases[0], kCases[2], kCases[7], kCases[8], kCases[11], kCases[13]}) {
    const QuantizedTensor q = quantize_random(rng, c, 4096, 4096);
    for (int64_t M : {1, 16}) {
      const Stats s = check_gemv(q, M, rng, 1.f, label(c) + " 4096x4096 M=" + std::to_string(M));
      std::printf("  %-18s 4096x4096 M=%-2lld error / bound %.3f\n", label(c).c_str(), static_cast<long long>(M), s.max_excess);
    }
  }
  // Scales of 2 and above: razer's separate special-value indices, which only the table decoder
  // reads (4- and 3-bit; 64 rows: tiled, the indices tiled with the scales).
  for (const GemvCase& c : {kCases[0], kCases[11]}) {
    const QuantizedTensor big = quantize_random(rng, c, 64, 1024, 1000.0);
    ASSERT_FALSE(big.sv_index.empty()) << label(c) << ": expected the separate special-value index";
    const DeviceTensor t = kernels::upload(big);
    EXPECT_EQ(std::string(kernels::gemv_decoder_name(t)).substr(0, 5), "table") << label(c);
    for (int64_t M : {1, 16}) check_gemv(big, M, rng, 1e-3f, label(c) + " x1000 (separate index)");
  }
}

// Real layers: llama-14m's q_proj, gate_proj and down_proj of layer 3: razer4, nvfp4-razer,
// int4-asym, razer3 and int3-asym.
TEST(GemvCuda, Llama14mLayers) {
  SKIP_WITHOUT_DEVICE();
  const std::string dir = test::data_path("models/llama-14m");
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "no " << dir;
  const formats::HfCheckpoint ckpt = formats::HfCheckpoint::open(dir);
  std::mt19937 rng(test::test_seed());
  for (const char* name : {"model.layers.3.self_attn.q_proj.weight", "model.layers.3.mlp.gate_proj.weight",
                           "model.layers.3.mlp.down_proj.weight"}) {
    const formats::SafetensorsFile& f = ckpt.file_of(name);
    const formats::TensorInfo& ti = f.info(name);
    const std::vector<float> w = f.read_float(name);
    for (const GemvCase& c : {kCases[0], kCases[8], kCases[2], kCases[11], kCases[13]}) {
      const QuantizedTensor q = quantizer::quantize_tensor(w.data(), ti.shape[0], ti.shape[1],
                                                           quantizer::make_format_config(c.format, c.bits, c.group, c.asym));
      for (int64_t M : {1, 5, 16}) check_gemv(q, M, rng, 1.f, std::string(name) + " " + label(c));
    }
  }
}

// kernels::concat_rows: the GEMV of the stacked tensor equals the separate GEMVs bit for bit
// (each output row is the same arithmetic), for row counts that are not multiples of the
// 16-row tile, and so does a row_view of each part's rows; tensors of other formats or
// columns, and row ranges outside the tensor, are refused.
TEST(GemvCuda, ConcatRowsEqualsTheSeparateProducts) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  // (Not the NV kinds: their per-tensor scales differ between separately quantized parts.)
  for (const GemvCase& c : {kCases[0], kCases[2], kCases[5], kCases[11], kCases[13]}) {
    const int64_t K = 512, rows[3] = {40, 13, 77};
    std::vector<DeviceTensor> parts;
    for (int64_t r : rows) parts.push_back(kernels::upload(quantize_random(rng, c, r, K)));
    const DeviceTensor cat = kernels::concat_rows({&parts[0], &parts[1], &parts[2]});
    ASSERT_EQ(cat.rows, 130);
    for (int64_t M : {1, 5, 16}) {
      std::normal_distribution<float> nd(0.f, 1.f);
      std::vector<uint16_t> xh(static_cast<size_t>(M * K));
      for (auto& h : xh) h = float_to_fp16(nd(rng));
      DeviceBuffer dx(xh.size() * 2), dy(static_cast<size_t>(M * 130) * 2);
      dx.copy_from_host(xh.data(), xh.size() * 2);
      dy.fill_bytes(0xff);
      kernels::gemv_fp16_cuda(cat, dx.as<uint16_t>(), M, dy.as<uint16_t>());
      kernels::cuda_synchronize();
      std::vector<uint16_t> y(static_cast<size_t>(M * 130));
      dy.copy_to_host(y.data(), y.size() * 2);
      int64_t r0 = 0;
      for (int p = 0; p < 3; ++p) {
        DeviceBuffer dp(static_cast<size_t>(M * rows[p]) * 2);
        dp.fill_bytes(0xff);
        kernels::gemv_fp16_cuda(parts[p], dx.as<uint16_t>(), M, dp.as<uint16_t>());
        kernels::cuda_synchronize();
        std::vector<uint16_t> yp(static_cast<size_t>(M * rows[p]));
        dp.copy_to_host(yp.data(), yp.size() * 2);
        int diff = 0;
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < rows[p]; ++n) diff += y[m * 130 + r0 + n] != yp[m * rows[p] + n];
        EXPECT_EQ(diff, 0) << label(c) << " part " << p << " M=" << M;
        // The same rows as a view of the concatenation (eval's parts after fusing): the same y.
        const DeviceTensor view = kernels::row_view(cat, r0, rows[p]);
        EXPECT_EQ(view.storage, nullptr);
        dp.fill_bytes(0xff);
        kernels::gemv_fp16_cuda(view, dx.as<uint16_t>(), M, dp.as<uint16_t>());
        kernels::cuda_synchronize();
        std::vector<uint16_t> yv(yp.size());
        dp.copy_to_host(yv.data(), yv.size() * 2);
        EXPECT_EQ(yv, yp) << label(c) << " row view of part " << p << " M=" << M;
        r0 += rows[p];
      }
    }
  }
  const DeviceTensor a = kernels::upload(quantize_random(rng, kCases[0], 16, 256));
  const DeviceTensor b = kernels::upload(quantize_random(rng, kCases[3], 16, 256));
  const DeviceTensor wide = kernels::upload(quantize_random(rng, kCases[0], 16, 384));
  const Error e1 = test::catch_error([&] { (void)kernels::concat_rows({&a, &b}); });
  EXPECT_EQ(e1.kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(std::string(e1.what()).find("format"), std::string::npos) << e1.what();
  const Error e2 = test::catch_error([&] { (void)kernels::concat_rows({&a, &wide}); });
  EXPECT_NE(std::string(e2.what()).find("columns"), std::string::npos) << e2.what();
  EXPECT_EQ(test::catch_error([&] { (void)kernels::row_view(a, 8, 9); }).kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(test::catch_error([&] { (void)kernels::row_view(a, 0, 0); }).kind(), ErrorKind::kInvalidArgument);
}

// The permuted code layouts (gemv_layout.hpp): upload applies one exactly where retile_applies
// says (3- and 4-bit codes, groups that are multiples of 128; kQuad for RaZeR, kPair else) and
// kPair to the NV kinds (nv_pair_applies), the
// dequantization kernel reads each back to the same fp16 weights bit for bit, and tensors of two
// layouts are not concatenated.
TEST(GemvCuda, PermutedLayoutsDequantizeToTheSameWeights) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  const int64_t K = 640;
  for (int64_t N : {37, 48}) {  // 48: whole 16-row tiles (tiled unless set_upload_tiling(false))
    for (const GemvCase& c : kCases) {
      const QuantizedTensor q = quantize_random(rng, c, N, K);
      const CodeLayout layouts[] = {CodeLayout::kAuto, CodeLayout::kDisk, CodeLayout::kQuad, CodeLayout::kPair};
      // The NV kinds: kPair only (gemv_layout.hpp nv_pair_applies), and not under kAuto for
      // tensors of so few rows (layout_for's few_rows).
      const bool nv = c.group == 16;
      const CodeLayout auto_layout = nv                                 ? CodeLayout::kDisk
                                     : c.group % 128 != 0               ? CodeLayout::kDisk
                                     : std::string(c.format) == "razer" ? CodeLayout::kQuad
                                                                        : CodeLayout::kPair;
      std::vector<uint16_t> first;
      for (int i = 0; i < 4; ++i) {
        for (bool tiled_rows : {true, false}) {
          DecoderScope scope(kernels::GemvDecoder::kAuto, 0, 0, layouts[i], 0, tiled_rows);
          const DeviceTensor t = kernels::upload(q);
          const CodeLayout expect = layouts[i] == CodeLayout::kAuto         ? auto_layout
                                    : nv && layouts[i] == CodeLayout::kQuad  ? CodeLayout::kDisk
                                    : !nv && c.group % 128 != 0             ? CodeLayout::kDisk
                                                                             : layouts[i];
          const std::string what = label(c) + " " + std::to_string(N) + " rows, layout asked " + std::to_string(i) +
                                   (tiled_rows ? "" : " row-major");
          EXPECT_EQ(static_cast<int>(t.layout), static_cast<int>(expect)) << what;
          EXPECT_EQ(t.tiled, tiled_rows && N % 16 == 0) << what;
          // (3/4-bit codes, K a multiple of 128: pair order, or the 4-bit RaZeR kinds' re-encoded codes)
          const std::string f = c.format;
          const bool xor_codes = (f == "razer" || f == "mxfp4-razer" || f == "nvfp4-razer") && c.bits == 4;
          const bool nib = c.bits == 3;  // (razer3, fp3, int3: nibbles, DeviceTensor::nib3)
          const bool ptab = f == "nf4";   // (column order for the pair table, DeviceTensor::pair_table)
          EXPECT_EQ(t.razer_xor, xor_codes) << what;
          EXPECT_EQ(t.nib3, nib) << what;
          EXPECT_EQ(t.pair_table, ptab) << what;
          EXPECT_EQ(kernels::row_view(t, 0, 16).pair_table, t.pair_table) << what;
          EXPECT_EQ(t.zero_bytes != nullptr, nib && c.asym) << what;
          EXPECT_EQ(kernels::row_view(t, 16, 5).zero_bytes != nullptr, nib && c.asym) << what;
          EXPECT_EQ(t.pair_order, !xor_codes && !nib && !ptab) << what;
          EXPECT_EQ(kernels::row_view(t, 0, 16).razer_xor, t.razer_xor) << what;
          EXPECT_EQ(kernels::row_view(t, 0, 16).nib3, t.nib3) << what;
          const DeviceTensor v = kernels::row_view(t, 16, 5);
          EXPECT_EQ(static_cast<int>(v.layout), static_cast<int>(t.layout)) << what;
          EXPECT_EQ(v.tiled, t.tiled) << what;
          const std::vector<uint16_t> w = dequant_to_host(t);
          if (first.empty()) {
            // The reference: the CPU dequantization, rounded to fp16 (the kernel's exact rounding).
            std::vector<double> ref(static_cast<size_t>(N * K));
            for (int64_t r = 0; r < N; ++r) quantizer::dequantize_row_ref(q, r, ref.data() + r * K);
            int bad = 0;
            for (size_t k = 0; k < ref.size(); ++k) bad += w[k] != double_to_fp16(ref[k]);
            EXPECT_EQ(bad, 0) << what << ": weights differ from the CPU reference's";
            first = w;
          } else {
            EXPECT_EQ(w, first) << what;
          }
          // The row view dequantizes to rows 16 .. 20 of the whole.
          const std::vector<uint16_t> wv = dequant_to_host(v);
          EXPECT_TRUE(std::equal(wv.begin(), wv.end(), w.begin() + 16 * K)) << what << ": row view";
        }
      }
    }
  }
  const QuantizedTensor q = quantize_random(rng, kCases[0], 16, 256);
  const DeviceTensor a = kernels::upload(q);
  EXPECT_TRUE(a.tiled);
  {
    DecoderScope scope(kernels::GemvDecoder::kAuto, 0, 0, CodeLayout::kDisk);
    const DeviceTensor b = kernels::upload(q);
    EXPECT_EQ(static_cast<int>(a.layout), static_cast<int>(CodeLayout::kQuad));
    EXPECT_EQ(static_cast<int>(b.layout), static_cast<int>(CodeLayout::kDisk));
    const Error e = test::catch_error([&] { (void)kernels::concat_rows({&a, &b}); });
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("layout"), std::string::npos) << e.what();
  }
  {
    DecoderScope scope(kernels::GemvDecoder::kAuto, 0, 0, CodeLayout::kAuto, 0, false);
    const DeviceTensor b = kernels::upload(q);
    EXPECT_FALSE(b.tiled);
    const Error e = test::catch_error([&] { (void)kernels::concat_rows({&a, &b}); });
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("tiling"), std::string::npos) << e.what();
  }
  // A tiled tensor's rows are reachable from tile starts only; a view ending inside a tile is not
  // concatenated (its rows would not be whole tiles).
  const Error e1 = test::catch_error([&] { (void)kernels::row_view(a, 3, 5); });
  EXPECT_EQ(e1.kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(std::string(e1.what()).find("multiple of 16"), std::string::npos) << e1.what();
  const DeviceTensor part = kernels::row_view(a, 0, 5);
  const Error e2 = test::catch_error([&] { (void)kernels::concat_rows({&part, &a}); });
  EXPECT_EQ(e2.kind(), ErrorKind::kInvalidArgument);
  EXPECT_NE(std::string(e2.what()).find("16-row tiles"), std::string::npos) << e2.what();
}

// Programmatic dependent launch (pdl_cuda.hpp): a chain of products where each reads the one
// before's output (y1 = W1 x_i, y2_i = W2 y1, i = 0 .. 7, x_i alternating between two inputs, on
// one created stream with nothing between the launches) gives the same outputs bit for bit
// with and without it. A GEMV that read y1 before the one writing it had finished would see the
// other input's y1 (or the NaN it was poisoned with) and differ.
TEST(GemvCuda, ProgrammaticLaunchChainsSeeThePreviousOutput) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  const int64_t K1 = 4096, K2 = 2048, N = 1000, M = 3, kSteps = 8;
  const DeviceTensor w1 = kernels::upload(quantize_random(rng, kCases[0], K2, K1));
  const DeviceTensor w2 = kernels::upload(quantize_random(rng, kCases[1], N, K2, 0.05));
  std::normal_distribution<float> nd(0.f, 1.f);
  DeviceBuffer dx[2] = {DeviceBuffer(static_cast<size_t>(M * K1) * 2), DeviceBuffer(static_cast<size_t>(M * K1) * 2)};
  for (auto& b : dx) {
    std::vector<uint16_t> xh(static_cast<size_t>(M * K1));
    for (auto& h : xh) h = float_to_fp16(nd(rng));
    b.copy_from_host(xh.data(), xh.size() * 2);
  }
  DeviceBuffer y1(static_cast<size_t>(M * K2) * 2), y2(static_cast<size_t>(kSteps * M * N) * 2);
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  auto run = [&](bool pdl) {
    kernels::set_pdl(pdl);
    y1.fill_bytes(0xff, s);
    y2.fill_bytes(0xff, s);
    for (int64_t i = 0; i < kSteps; ++i) {
      kernels::gemv_fp16_cuda(w1, dx[i % 2].as<uint16_t>(), M, y1.as<uint16_t>(), s);
      kernels::gemv_fp16_cuda(w2, y1.as<uint16_t>(), M, y2.as<uint16_t>() + i * M * N, s);
    }
    kernels::cuda_synchronize(s);
    std::vector<uint16_t> out(static_cast<size_t>(kSteps * M * N));
    y2.copy_to_host(out.data(), out.size() * 2, s);
    return out;
  };
  const std::vector<uint16_t> serial = run(false);
  for (int rep = 0; rep < 3; ++rep) {
    const std::vector<uint16_t> chained = run(true);
    int64_t diff = 0, nan = 0;
    for (size_t i = 0; i < serial.size(); ++i) {
      diff += chained[i] != serial[i];
      nan += (serial[i] & 0x7c00u) == 0x7c00u;
    }
    EXPECT_EQ(diff, 0) << "repetition " << rep;
    EXPECT_EQ(nan, 0);
  }
  // Steps with the same input give the same output; the two inputs give different ones.
  for (int64_t i = 2; i < kSteps; ++i)
    EXPECT_TRUE(std::equal(serial.begin() + i * M * N, serial.begin() + (i + 1) * M * N, serial.begin() + (i % 2) * M * N));
  EXPECT_FALSE(std::equal(serial.begin(), serial.begin() + M * N, serial.begin() + M * N));
  kernels::set_pdl(true);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

// The SiLU epilogue (gemv_silu_mul_fp16_cuda) against the plain product into y [M, 2 F] and
// silu_mul_cuda(y, y + F): equal bit for bit, with one tile per block in the plain product and
// the split tail never or on every tile (the settings under which both take a row's sums in the
// same order, gemv_cuda.hpp), for every format, both decoders, tiled and row-major rows, F a
// multiple of 16 and not (gate row 8 j's tile then holds other rows than up row F + 8 j's), M = 1
// .. 16; act poisoned first, 64 guard halves after it. The plain product and the SiLU kernel are
// each checked against float64 references (EveryFormatShapeAndM; test_decode_ops_cuda.cpp).
TEST(GemvCuda, SiluEpilogueEqualsProductThenSiluKernel) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  int64_t checked = 0;
  for (const GemvCase& c : kCases) {
    for (const auto& [F, K, tiled] : {std::tuple<int64_t, int64_t, bool>{24, 256, true}, {64, 512, true},
                                      {200, 256, true}, {40, 384, false}}) {
      DecoderScope rows_scope(kernels::GemvDecoder::kAuto, 0, 1, CodeLayout::kAuto, 0, tiled);
      const DeviceTensor w = kernels::upload(quantize_random(rng, c, 2 * F, K));  // [gate; up]
      ASSERT_EQ(w.tiled, tiled) << label(c);
      std::string why;
      ASSERT_TRUE(kernels::gemv_silu_mul_supported(w, &why)) << label(c) << ": " << why;
      for (const auto dec : {kernels::GemvDecoder::kAuto, kernels::GemvDecoder::kTable})
        for (int split : {1, 2}) {
          DecoderScope scope(dec, 0, 1, CodeLayout::kAuto, split, tiled);
          for (int64_t M : {1, 3, 8, 9, 16}) {
            const std::string what = label(c) + " F=" + std::to_string(F) + " K=" + std::to_string(K) +
                                     (tiled ? " tiled" : " row-major") + " " + kernels::gemv_decoder_name(w) +
                                     " split=" + std::to_string(split) + " M=" + std::to_string(M);
            std::normal_distribution<float> nd(0.f, 1.f);
            std::vector<uint16_t> xh(static_cast<size_t>(M * K));
            for (auto& h : xh) h = float_to_fp16(nd(rng));
            DeviceBuffer dx(xh.size() * 2), dy(static_cast<size_t>(M * 2 * F) * 2),
                dref(static_cast<size_t>(M * F) * 2), dact(static_cast<size_t>(M * F + 64) * 2);
            dx.copy_from_host(xh.data(), xh.size() * 2);
            (void)gemv_to_host(w, dx, M, dy);
            kernels::silu_mul_cuda(kernels::ActDType::kFp16, dy.data(), dy.as<uint16_t>() + F, 2 * F, M, F, dref.data());
            dact.fill_bytes(0xff);
            kernels::gemv_silu_mul_fp16_cuda(w, dx.as<uint16_t>(), M, dact.as<uint16_t>());
            kernels::cuda_synchronize();
            std::vector<uint16_t> ref(static_cast<size_t>(M * F)), act(static_cast<size_t>(M * F + 64));
            dref.copy_to_host(ref.data(), ref.size() * 2);
            dact.copy_to_host(act.data(), act.size() * 2);
            const std::vector<uint16_t> head(act.begin(), act.begin() + M * F);
            EXPECT_EQ(count_diff(head, ref), 0) << what;
            int nan = 0;
            for (uint16_t h : head) nan += (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu);
            EXPECT_EQ(nan, 0) << what << ": act elements left unwritten (poison) or NaN";
            for (int i = 0; i < 64; ++i) EXPECT_EQ(act[M * F + i], 0xffffu) << what << ": guard " << i << " overwritten";
            ++checked;
          }
        }
    }
  }
  EXPECT_EQ(checked, static_cast<int64_t>(std::size(kCases)) * 4 * 2 * 2 * 5);
  // Not a [gate; up] of F % 8 == 0 rows: refused with the reason.
  const DeviceTensor odd = kernels::upload(quantize_random(rng, kCases[0], 40, 256));
  std::string why;
  EXPECT_TRUE(kernels::gemv_supported(odd, &why)) << why;
  EXPECT_FALSE(kernels::gemv_silu_mul_supported(odd, &why));
  EXPECT_NE(why.find("40 rows"), std::string::npos) << why;
  DeviceBuffer x(256 * 2), y(64 * 2);
  EXPECT_EQ(test::catch_error([&] { kernels::gemv_silu_mul_fp16_cuda(odd, x.as<uint16_t>(), 1, y.as<uint16_t>()); }).kind(),
            ErrorKind::kUnsupported);
}

// The norm epilogues (gemv_add_norm_fp16_cuda, gemv_normed_fp16_cuda,
// gemv_normed_silu_mul_fp16_cuda) for every format, M = 1, 3, 8, the split tail never and on every
// tile, one tile per block (the epilogues' setting) in the plain products compared against:
// - add + norm (a producer [H, 384], H = 256, and H = 200 for the slots' padding): h equals
//   fp16(h0 + y) and x_out fp16(h w x_scale) bit for bit, y the plain product's; each slot the sum of
//   its tile's h^2 (float64, relative 1e-5), the padding zero; guards after x_out and the slots kept.
// - normed (a consumer [2 F, H], F = 96, x = that x_out): y against the float64 product of x_out and
//   the kernel's weights times rsqrt(sum h^2 / H + eps) / x_scale (float64 from h), within the plain
//   product's bound plus 2^-19 of the unscaled sum (the fp32 slot sum and rsqrtf); the normed SiLU
//   epilogue equal bit for bit to the normed product followed by silu_mul_cuda.
// Outputs poisoned first. Then the refusals: M = 9, slots over kGemvNormSlots, x_scale not a power of two.
TEST(GemvCuda, NormEpiloguesAgainstTheSeparateArithmetic) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  constexpr int64_t K1 = 384, F = 96;
  constexpr float kEps = 1e-5f;
  int64_t checked = 0;
  for (const GemvCase& c : kCases) {
    // (H = 2048: 128 slots per x row, so the consumers' slot sums take their four-chain loop.)
    for (const int64_t H : {int64_t{256}, int64_t{200}, int64_t{2048}}) {
      DecoderScope rows_scope(kernels::GemvDecoder::kAuto, 0, 1);
      const bool consumer = H % 128 == 0;
      const QuantizedTensor qc = quantize_random(rng, c, 2 * F, consumer ? H : 256);
      const DeviceTensor wp = kernels::upload(quantize_random(rng, c, H, K1)), wc = kernels::upload(qc);
      const int64_t Tp = kernels::gemv_norm_slot_stride(H), T = (H + 15) / 16;
      std::uniform_real_distribution<float> ud(0.25f, 2.5f);
      std::vector<uint16_t> nw(static_cast<size_t>(H));
      float wmax = 0.f;
      for (auto& v : nw) v = float_to_fp16(ud(rng)), wmax = std::max(wmax, fp16_to_float(v));
      int e = 0;
      (void)std::frexp(wmax, &e);
      const float xs = std::ldexp(1.f, -e);  // as eval's Norm::x_scale
      for (int split : {1, 2}) {
        DecoderScope scope(kernels::GemvDecoder::kAuto, 0, 1, CodeLayout::kAuto, split, true);
        for (int64_t M : {1, 3, 8}) {
          const std::string what = label(c) + " H=" + std::to_string(H) + " split=" + std::to_string(split) +
                                   " M=" + std::to_string(M);
          std::normal_distribution<float> nd(0.f, 1.f);
          std::vector<uint16_t> x1(static_cast<size_t>(M * K1)), h0(static_cast<size_t>(M * H));
          for (auto& v : x1) v = float_to_fp16(nd(rng));
          for (auto& v : h0) v = float_to_fp16(2.f * nd(rng));
          DeviceBuffer dx(x1.size() * 2), dy(static_cast<size_t>(M * H) * 2), dh(h0.size() * 2), dw(nw.size() * 2),
              dxo(static_cast<size_t>(M * H + 64) * 2), dsl(static_cast<size_t>(M * Tp + 16) * 4);
          dx.copy_from_host(x1.data(), x1.size() * 2);
          dh.copy_from_host(h0.data(), h0.size() * 2);
          dw.copy_from_host(nw.data(), nw.size() * 2);
          const std::vector<uint16_t> y = gemv_to_host(wp, dx, M, dy);
          dxo.fill_bytes(0xff);
          dsl.fill_bytes(0xff);
          kernels::gemv_add_norm_fp16_cuda(wp, dx.as<uint16_t>(), M, dh.as<uint16_t>(), dw.as<uint16_t>(), xs,
                                           dxo.as<uint16_t>(), dsl.as<float>());
          kernels::cuda_synchronize();
          std::vector<uint16_t> h(h0.size()), xo(static_cast<size_t>(M * H + 64));
          std::vector<float> sl(static_cast<size_t>(M * Tp + 16));
          dh.copy_to_host(h.data(), h.size() * 2);
          dxo.copy_to_host(xo.data(), xo.size() * 2);
          dsl.copy_to_host(sl.data(), sl.size() * 4);
          int bad_h = 0, bad_x = 0, bad_s = 0;
          std::vector<double> ss(static_cast<size_t>(M), 0.0);
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < H; ++n) {
              const size_t i = static_cast<size_t>(m * H + n);
              const uint16_t hn = float_to_fp16(fp16_to_float(h0[i]) + fp16_to_float(y[i]));
              const float hv = fp16_to_float(hn);
              bad_h += h[i] != hn;
              bad_x += xo[i] != float_to_fp16(hv * fp16_to_float(nw[static_cast<size_t>(n)]) * xs);
              ss[static_cast<size_t>(m)] += static_cast<double>(hv) * hv;
            }
          for (int64_t m = 0; m < M; ++m)
            for (int64_t j = 0; j < Tp; ++j) {
              double want = 0;
              for (int64_t n = 16 * j; n < std::min(H, 16 * j + 16); ++n) {
                const double hv = fp16_to_float(h[static_cast<size_t>(m * H + n)]);
                want += hv * hv;
              }
              const float got = sl[static_cast<size_t>(m * Tp + j)];
              bad_s += j >= T ? got != 0.f : !(std::fabs(got - want) <= 1e-5 * want + 1e-30);
            }
          EXPECT_EQ(bad_h, 0) << what << ": h elements other than fp16(h0 + y)";
          EXPECT_EQ(bad_x, 0) << what << ": x_out elements other than fp16(h w x_scale)";
          EXPECT_EQ(bad_s, 0) << what << ": slots off their tiles' sums of squares (or padding not zero)";
          for (int i = 0; i < 64; ++i) EXPECT_EQ(xo[static_cast<size_t>(M * H + i)], 0xffffu) << what << ": x_out guard " << i;
          for (int i = 0; i < 16; ++i) {
            uint32_t bits = 0;
            std::memcpy(&bits, &sl[static_cast<size_t>(M * Tp + i)], 4);
            EXPECT_EQ(bits, 0xffffffffu) << what << ": slot guard " << i;
          }
          ++checked;
          if (!consumer) continue;
          // The consumer on x_out and the slots.
          // The plain normed product with one tile per block (the scope's) and with two (yc2).
          DeviceBuffer dyc(static_cast<size_t>(M * 2 * F + 64) * 2), dyc2(static_cast<size_t>(M * 2 * F + 64) * 2),
              dact(static_cast<size_t>(M * F) * 2), dref(static_cast<size_t>(M * F) * 2);
          dyc.fill_bytes(0xff);
          dyc2.fill_bytes(0xff);
          dact.fill_bytes(0xff);
          kernels::gemv_normed_fp16_cuda(wc, dxo.as<uint16_t>(), M, dsl.as<float>(), kEps, xs, dyc.as<uint16_t>());
          kernels::set_gemv_tiles(2);
          kernels::gemv_normed_fp16_cuda(wc, dxo.as<uint16_t>(), M, dsl.as<float>(), kEps, xs, dyc2.as<uint16_t>());
          kernels::set_gemv_tiles(1);
          kernels::gemv_normed_silu_mul_fp16_cuda(wc, dxo.as<uint16_t>(), M, dsl.as<float>(), kEps, xs, dact.as<uint16_t>());
          kernels::silu_mul_cuda(kernels::ActDType::kFp16, dyc.data(), dyc.as<uint16_t>() + F, 2 * F, M, F, dref.data());
          kernels::cuda_synchronize();
          std::vector<uint16_t> yc(static_cast<size_t>(M * 2 * F + 64)), yc2(yc.size()), act(static_cast<size_t>(M * F)),
              ref_act(static_cast<size_t>(M * F));
          dyc.copy_to_host(yc.data(), yc.size() * 2);
          dyc2.copy_to_host(yc2.data(), yc2.size() * 2);
          dact.copy_to_host(act.data(), act.size() * 2);
          dref.copy_to_host(ref_act.data(), ref_act.size() * 2);
          EXPECT_EQ(count_diff(act, ref_act), 0) << what << ": normed SiLU epilogue against normed product + SiLU kernel";
          const std::vector<double> wk = kernel_weights(qc, kernels::gemv_post_scaled(wc, M));
          int bad = 0;
          for (int64_t m = 0; m < M; ++m) {
            const double r = 1.0 / std::sqrt(ss[static_cast<size_t>(m)] / H + kEps) / xs;
            for (int64_t n = 0; n < 2 * F; ++n) {
              double s = 0, a = 0;
              for (int64_t k = 0; k < H; ++k) {
                const double p = static_cast<double>(fp16_to_float(xo[static_cast<size_t>(m * H + k)])) * wk[static_cast<size_t>(n * H + k)];
                s += p;
                a += std::fabs(p);
              }
              const double ref = s * r;
              const double bound = std::ldexp(std::fabs(ref), -11) + 6e-8 + (H * std::ldexp(a, -23) + std::ldexp(std::fabs(s), -19)) * r;
              for (int tiles : {1, 2}) {
                const double got = fp16_to_float((tiles == 1 ? yc : yc2)[static_cast<size_t>(m * 2 * F + n)]);
                if (!(std::fabs(got - ref) <= bound) && bad++ < 5)
                  ADD_FAILURE() << what << " tiles=" << tiles << ": normed y[" << m << "][" << n << "] = " << got
                                << ", reference " << ref << " (bound " << bound << ")";
              }
            }
          }
          for (int i = 0; i < 64; ++i) {
            EXPECT_EQ(yc[static_cast<size_t>(M * 2 * F + i)], 0xffffu) << what << ": y guard " << i;
            EXPECT_EQ(yc2[static_cast<size_t>(M * 2 * F + i)], 0xffffu) << what << ": y guard (two tiles) " << i;
          }
        }
      }
    }
  }
  EXPECT_EQ(checked, static_cast<int64_t>(std::size(kCases)) * 3 * 2 * 3);
  // Refusals, with the reason.
  const DeviceTensor w = kernels::upload(quantize_random(rng, kCases[0], 256, 256));
  std::string why;
  EXPECT_TRUE(kernels::gemv_norm_supported(w, 8, 256, &why)) << why;
  EXPECT_FALSE(kernels::gemv_norm_supported(w, 9, 256, &why));
  EXPECT_NE(why.find("M = 9"), std::string::npos) << why;
  EXPECT_FALSE(kernels::gemv_norm_supported(w, 4, 8192, &why));
  EXPECT_NE(why.find("2048 slots"), std::string::npos) << why;
  DeviceBuffer x(256 * 2 * 9), hb(256 * 2 * 9), xo(256 * 2 * 9), sl(4096 * 4);
  EXPECT_EQ(test::catch_error([&] {
              kernels::gemv_add_norm_fp16_cuda(w, x.as<uint16_t>(), 9, hb.as<uint16_t>(), hb.as<uint16_t>(), 1.f,
                                               xo.as<uint16_t>(), sl.as<float>());
            }).kind(),
            ErrorKind::kUnsupported);
  EXPECT_EQ(test::catch_error([&] {
              kernels::gemv_normed_fp16_cuda(w, x.as<uint16_t>(), 1, sl.as<float>(), kEps, 0.3f, xo.as<uint16_t>());
            }).kind(),
            ErrorKind::kInvalidArgument);
  EXPECT_EQ(test::catch_error([&] {
              kernels::gemv_add_norm_fp16_cuda(w, x.as<uint16_t>(), 1, xo.as<uint16_t>(), hb.as<uint16_t>(), 1.f,
                                               xo.as<uint16_t>(), sl.as<float>());
            }).kind(),
            ErrorKind::kInvalidArgument);
}

TEST(GemvCuda, UnsupportedTensorsAndArgumentsAreRefused) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  std::string why;
  {  // K not a multiple of 128
    const QuantizedTensor q = quantize_random(rng, {"razer", false, 64}, 16, 192);
    DeviceTensor t = kernels::upload(q);
    EXPECT_FALSE(kernels::gemv_supported(t, &why));
    EXPECT_NE(why.find("128"), std::string::npos) << why;
  }
  {  // 2-bit codes
    const std::vector<float> w = test::random_weights(rng, 16, 256, 1.0);
    const QuantizedTensor q = quantizer::quantize_tensor(w.data(), 16, 256, quantizer::make_format_config("int", 2, 128));
    DeviceTensor t = kernels::upload(q);
    EXPECT_FALSE(kernels::gemv_supported(t, &why));
    DeviceBuffer x(256 * 2), y(64);
    const Error e = test::catch_error([&] { kernels::gemv_fp16_cuda(t, x.as<uint16_t>(), 1, y.as<uint16_t>()); });
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
  }
  {  // M out of range, misaligned x
    const QuantizedTensor q = quantize_random(rng, kCases[0], 16, 256);
    DeviceTensor t = kernels::upload(q);
    DeviceBuffer x(17 * 256 * 2 + 16), y(17 * 16 * 2);
    EXPECT_EQ(test::catch_error([&] { kernels::gemv_fp16_cuda(t, x.as<uint16_t>(), 17, y.as<uint16_t>()); }).kind(),
              ErrorKind::kInvalidArgument);
    EXPECT_EQ(test::catch_error([&] { kernels::gemv_fp16_cuda(t, x.as<uint16_t>(), 0, y.as<uint16_t>()); }).kind(),
              ErrorKind::kInvalidArgument);
    EXPECT_EQ(test::catch_error([&] { kernels::gemv_fp16_cuda(t, x.as<uint16_t>() + 1, 1, y.as<uint16_t>()); }).kind(),
              ErrorKind::kInvalidArgument);
  }
}

}  // namespace
}  // namespace razerq
