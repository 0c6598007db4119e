// The integer part of the fused GEMV's 3-bit bit decoders (kernels/cuda/gemv_bits3.cuh), run on
// the CPU: the very functions the kernel calls (PRMT and LOP3 by their PTX definitions), on every
// 24-bit word of 8 codes with junk in the other bits, against independent references: the codes
// from quantizer::unpack_row (the checkpoint's bitstream reader), the values from the registry's
// grid (quantizer::base_grid) scaled by 2^-14 and rounded by double_to_fp16. The fp16 arithmetic
// after these bits (zero point, scale) and the whole kernel are checked on the GPU
// (test_gemv_cuda.cpp: every decoder equals the table bit for bit).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/half.hpp"
#include "kernels/cuda/gemv_bits3.cuh"
#include "quantizer/format.hpp"
#include "quantizer/pack.hpp"
#include "tests/kernels/kernel_test_util.hpp"

namespace razerq {
namespace {

namespace g3 = kernels::gemv3;

// The fp16 bits the decoders must produce for code c: value x 2^-14 (sign of -0 included).
std::vector<uint16_t> halves_times_2m14(const std::vector<double>& values) {
  std::vector<uint16_t> h;
  for (double v : values) h.push_back(double_to_fp16(std::ldexp(v, -14)));
  return h;
}

// Bits outside a word's 24 code bits hold the neighbouring codes: pseudo-random junk here.
uint32_t junk(uint32_t q) { return (q * 0x9e3779b1u) ^ (q >> 7); }

TEST(GemvBits3, WordsCutTheBitstreamAsUnpackRowReadsIt) {
  std::mt19937 rng(test::test_seed());
  std::uniform_int_distribution<uint32_t> u32;
  for (int it = 0; it < 20000; ++it) {
    const uint32_t xyz[3] = {u32(rng), u32(rng), u32(rng)};
    uint8_t codes[32];
    quantizer::unpack_row(xyz, 32, 3, codes);
    uint32_t w0[4], w1[4];
    g3::words<0>(xyz[0], xyz[1], xyz[2], w0);
    g3::words<1>(xyz[0], xyz[1], xyz[2], w1);
    for (int w = 0; w < 4; ++w)
      for (int j = 0; j < 8; ++j) {
        ASSERT_EQ((w0[w] >> (3 * j)) & 7u, codes[8 * w + j]) << "P = 0, word " << w << " code " << j;
        ASSERT_EQ((w1[w] >> (3 * j + 1)) & 7u, codes[8 * w + j]) << "P = 1, word " << w << " code " << j;
      }
  }
}

TEST(GemvBits3, Int3PairsAreTheMagicPlusTheCode) {
  // int3_pair's halves must be m + c exactly (m = 1024, 128, 16, 16 by pair): then
  // (m + c) - (m + z) is c - z exactly in fp16, as the table decoder's c - z.
  const double magic[4] = {1024, 128, 16, 16};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(fp16_to_double(static_cast<uint16_t>(g3::int3_magic(g3::int3_magic_index(i)))), magic[i]);
  for (uint32_t c24 = 0; c24 < (1u << 24); ++c24) {
    const uint32_t q = c24 | (junk(c24) << 24);
    const uint32_t s = g3::spread<0>(q);
    for (int i = 0; i < 4; ++i) {
      const uint32_t h = g3::int3_pair(s, i);
      const double lo = fp16_to_double(static_cast<uint16_t>(h)), hi = fp16_to_double(static_cast<uint16_t>(h >> 16));
      if (lo != magic[i] + ((c24 >> (3 * i)) & 7u) || hi != magic[i] + ((c24 >> (3 * i + 12)) & 7u))
        FAIL() << std::hex << "word " << c24 << " pair " << i << ": " << h;
    }
  }
}

TEST(GemvBits3, Fp3PairsAreTheGridTimes2m14) {
  const quantizer::Grid grid = quantizer::base_grid(quantizer::make_format_config("fp3", 3, 128, false));
  ASSERT_EQ(grid.value.size(), 8u);
  const std::vector<uint16_t> want = halves_times_2m14(grid.value);
  EXPECT_EQ(want[4], 0x8000u) << "code 4 is -0";
  for (uint32_t c24 = 0; c24 < (1u << 24); ++c24) {
    const uint32_t j = junk(c24);
    const uint32_t q = (c24 << 1) | (j & 1u) | (j << 25);  // P = 1: junk in bit 0 and bits 25..31
    const uint32_t w = g3::fp3_word(g3::spread<1>(q));
    for (int i = 0; i < 4; ++i) {
      const uint32_t h = g3::fp3_pair(w, i);
      if ((h & 0xffffu) != want[(c24 >> (3 * i)) & 7u] || (h >> 16) != want[(c24 >> (3 * i + 12)) & 7u])
        FAIL() << std::hex << "word " << c24 << " pair " << i << ": " << h;
    }
  }
}

TEST(GemvBits3, Fp3LookupsAreTheGridWithTheSpecialValue) {
  // razer3: code 4 (fp3's -0) is the group's special value; each table's byte 0 of codes 4..7
  // is filled in as gemv.cu's choose_decoder3 does. The fixed bytes are the grid's.
  const quantizer::FormatConfig cfg = quantizer::make_format_config("razer", 3, 128, false);
  const quantizer::Grid grid = quantizer::base_grid(cfg);
  ASSERT_EQ(grid.special_code, 4);
  ASSERT_EQ(cfg.special_values.size(), 4u);
  const std::vector<uint16_t> base = halves_times_2m14(grid.value);
  for (int c = 0; c < 8; ++c) {
    if (c == 4) continue;
    EXPECT_EQ(base[c] & 0xffu, 0u) << c;
    EXPECT_EQ(base[c] >> 8, ((c < 4 ? g3::kFp3Bytes0 : g3::kFp3Bytes1) >> (8 * (c & 3))) & 0xffu) << c;
  }
  std::mt19937 rng(test::test_seed());
  std::uniform_int_distribution<uint32_t> u32;
  for (int t = 0; t < 4; ++t) {
    std::vector<double> values = grid.value;
    values[4] = cfg.special_values[t];
    const std::vector<uint16_t> want = halves_times_2m14(values);
    ASSERT_EQ(want[4] & 0xffu, 0u) << "special value " << values[4];
    const uint32_t bytes1 = g3::kFp3Bytes1 | (want[4] >> 8u);
    auto check = [&](uint32_t c24) {
      const uint32_t j = junk(c24);
      const uint32_t q = (c24 << 1) | (j & 1u) | (j << 25);
      const g3::Fp3Selectors sel = g3::fp3_selectors(g3::spread<1>(q));
      for (int i = 0; i < 4; ++i) {
        const uint32_t h = g3::fp3_lookup(sel, bytes1, i);
        if ((h & 0xffffu) != want[(c24 >> (3 * i)) & 7u] || (h >> 16) != want[(c24 >> (3 * i + 12)) & 7u])
          return ::testing::AssertionFailure() << std::hex << "word " << c24 << " pair " << i << ": " << h;
      }
      return ::testing::AssertionSuccess();
    };
    if (t == 0) {  // every word once; the other tables differ in one byte only
      for (uint32_t c24 = 0; c24 < (1u << 24); ++c24)
        if (auto r = check(c24); !r) FAIL() << r.message();
    } else {
      for (int it = 0; it < 200000; ++it)
        if (auto r = check(u32(rng) & 0xffffffu); !r) FAIL() << r.message();
    }
  }
}

}  // namespace
}  // namespace razerq
