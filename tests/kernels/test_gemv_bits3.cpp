// The integer part of the fused GEMV's 3-bit bit decoders and razer3's nibble lookups
// (kernels/cuda/gemv_bits3.cuh: nib3_pack, nib3_lookup, nib3_pair) and of its
// E2M1 byte decoder (kernels/cuda/gemv_e2m1.cuh: fp4 and 4-bit RaZeR), run on the CPU: the very functions the kernel calls (PRMT and LOP3 by their PTX definitions), on every
// 24-bit word of 8 codes with junk in the other bits, against independent references: the codes
// from quantizer::unpack_row (the checkpoint's bitstream reader), the values from the registry's
// grid (quantizer::base_grid) scaled by 2^-14 and rounded by double_to_fp16. The fp16 arithmetic
// after these bits (zero point, scale) and the whole kernel are checked on the GPU
// (test_gemv_cuda.cpp: every decoder equals the table bit for bit).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "common/half.hpp"
#include "kernels/cuda/gemv_bits3.cuh"
#include "kernels/cuda/gemv_e2m1.cuh"
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

// nib3 (upload's nibble encoding of a lane's 32 codes and the lookup decoder): the codes packed
// by nib3_pack come back by nib3_chunk, and the decoder's lookups give the grid's values x 2^-14
// for fp3, int3 sym and razer3 with each of its special values (nib3_tables built from the
// registry's grid), every 24-bit chunk once in chunk 0 and in chunk 3 (the spare bits), random
// codes in the others.
TEST(GemvBits3, Nib3LookupsAreTheGridOfThePackedCodes) {
  struct Grid3 {
    std::string what;
    std::vector<double> value;  // by code, the special value in place
  };
  std::vector<Grid3> grids;
  const quantizer::Grid fp3 = quantizer::base_grid(quantizer::make_format_config("fp3", 3, 128, false));
  grids.push_back({"fp3", fp3.value});
  const quantizer::Grid int3 = quantizer::base_grid(quantizer::make_format_config("int", 3, 128, false));
  grids.push_back({"int3", int3.value});
  const quantizer::FormatConfig rcfg = quantizer::make_format_config("razer", 3, 128, false);
  const quantizer::Grid razer3 = quantizer::base_grid(rcfg);
  ASSERT_EQ(razer3.special_code, 4);
  std::vector<g3::Nib3Tables> tables;
  for (const auto& [g, cfg] : {std::pair{fp3, quantizer::make_format_config("fp3", 3, 128, false)},
                               std::pair{int3, quantizer::make_format_config("int", 3, 128, false)}, std::pair{razer3, rcfg}}) {
    g3::Nib3Tables t;
    ASSERT_TRUE(g3::nib3_tables(g.value, g.special_code, cfg.special_values, &t));
    tables.push_back(t);
  }
  for (int i = 1; i < 4; ++i) tables.push_back(tables[2]);
  for (int i = 0; i < 4; ++i) {
    std::vector<double> v = razer3.value;
    v[4] = rcfg.special_values[static_cast<size_t>(i)];
    grids.push_back({"razer3 special value " + std::to_string(v[4]), v});
  }
  std::mt19937 rng(test::test_seed());
  std::uniform_int_distribution<uint32_t> u32;
  for (size_t gi = 0; gi < grids.size(); ++gi) {
    const std::vector<uint16_t> want = halves_times_2m14(grids[gi].value);
    const uint32_t t0 = tables[gi].t0, t1 = tables[gi].t1[gi < 2 ? 0 : gi - 2];
    const uint32_t n = gi == 2 ? (1u << 24) : (1u << 18);  // every chunk for one table, a sample for the others
    for (uint32_t c24 = 0; c24 < n; ++c24) {
      const uint32_t c = gi == 2 ? c24 : u32(rng) & 0xffffffu;
      const uint32_t chunk[4] = {c, u32(rng) & 0xffffffu, u32(rng) & 0xffffffu, c ^ 0x5a5a5au};
      uint32_t w[3];
      g3::nib3_pack(chunk, w);
      for (int v = 0; v < 4; ++v) {
        if (g3::nib3_chunk(w[0], w[1], w[2], v) != chunk[v])
          FAIL() << std::hex << "chunk " << v << " of " << chunk[0] << " " << chunk[1] << " " << chunk[2] << " " << chunk[3];
        const uint32_t word = v < 3 ? w[v] : g3::nib3_spare(w[0], w[1], w[2]);
        const g3::Nib3Bytes b = g3::nib3_lookup(word, t0, t1);
        for (int i = 0; i < 4; ++i) {
          const uint32_t h = g3::nib3_pair(b, i);
          const uint32_t lo = (chunk[v] >> (6 * i)) & 7u, hi = (chunk[v] >> (6 * i + 3)) & 7u;  // columns 2 i, 2 i + 1
          if ((h & 0xffffu) != want[lo] || (h >> 16) != want[hi])
            FAIL() << grids[gi].what << std::hex << ": chunk " << v << " = " << chunk[v] << " pair " << i << ": " << h;
        }
      }
    }
  }
  // Grids the lookups cannot take: a value with bits in fp16's low byte (5.5), the special code below 4.
  g3::Nib3Tables t;
  std::vector<float> sv = {5.5f, 3.f, -6.f, -3.f};
  EXPECT_FALSE(g3::nib3_tables(razer3.value, 4, sv, &t));
  EXPECT_FALSE(g3::nib3_tables(razer3.value, 3, rcfg.special_values, &t));
}

// The int8 tables (gemv.cu's int8 products): nib3_lookup on them gives value x 2^shift as int8
// for every code of razer3 (each special value), fp3 and int3 sym; the least shift is taken (1 for a
// set with 0.5, 0 for the defaults); sets no shift fits (5.2: not dyadic; 0.25 needs 2^2, and -64 x 4 is out of range) or
// a special code below 4 are refused.
TEST(GemvBits3, Nib3Int8TablesGiveTheValuesTimesTheirShift) {
  const quantizer::FormatConfig rcfg = quantizer::make_format_config("razer", 3, 128, false);
  const quantizer::Grid razer3 = quantizer::base_grid(rcfg);
  const quantizer::Grid fp3 = quantizer::base_grid(quantizer::make_format_config("fp3", 3, 128, false));
  const quantizer::Grid int3 = quantizer::base_grid(quantizer::make_format_config("int", 3, 128, false));
  const struct {
    const quantizer::Grid* g;
    std::vector<float> sv;
    int shift;
  } cases[] = {{&razer3, rcfg.special_values, 0}, {&razer3, {0.5f, -3.5f, 7.f, -64.f}, 1}, {&fp3, {}, 0}, {&int3, {}, 0}};
  for (const auto& c : cases) {
    g3::Nib3I8Tables t;
    ASSERT_TRUE(g3::nib3_i8_tables(c.g->value, c.g->special_code, c.sv, &t));
    EXPECT_EQ(t.shift, c.shift);
    for (int i = 0; i < 4; ++i)
      for (uint32_t codes = 0; codes < (1u << 24); codes += 4099) {  // 8 codes as nibbles, bit 3 junk
        uint32_t word = 0;
        for (int n = 0; n < 8; ++n) word |= (((codes >> (3 * n)) & 7u) | ((n & 1u) << 3)) << (4 * n);
        const g3::Nib3Bytes b = g3::nib3_lookup(word, t.t0, t.t1[i]);
        for (int n = 0; n < 8; ++n) {
          const int code = static_cast<int>((codes >> (3 * n)) & 7u);
          const double v = code == c.g->special_code ? c.sv[static_cast<size_t>(i)] : c.g->value[static_cast<size_t>(code)];
          const int8_t got = static_cast<int8_t>(((n < 4 ? b.lo : b.hi) >> (8 * (n & 3))) & 0xffu);
          ASSERT_EQ(got, std::ldexp(v, c.shift)) << "code " << code << " table " << i;
        }
      }
  }
  g3::Nib3I8Tables t;
  EXPECT_FALSE(g3::nib3_i8_tables(razer3.value, 4, {5.2f, 3.f, -6.f, -3.f}, &t));
  EXPECT_FALSE(g3::nib3_i8_tables(razer3.value, 4, {0.25f, 3.f, -64.f, -3.f}, &t));
  EXPECT_FALSE(g3::nib3_i8_tables(razer3.value, 3, rcfg.special_values, &t));
}

// Runs check (a word -> AssertionResult) on 1M random words, then for each pair position i on
// every two codes at nibbles field(i, 0) and field(i, 1) of the word, 16 times each with random
// neighbours (the byte arithmetic must not leak between codes). Stops at the first failure.
template <class Check, class Field>
void sweep_words(std::mt19937& rng, Check check, Field field) {
  std::uniform_int_distribution<uint32_t> u32;
  for (int it = 0; it < 1000000; ++it)
    if (auto r = check(u32(rng)); !r) FAIL() << r.message();
  for (int i = 0; i < 4; ++i)
    for (uint32_t a = 0; a < 16; ++a)
      for (uint32_t c = 0; c < 16; ++c)
        for (int rep = 0; rep < 16; ++rep) {
          const int f0 = field(i, 0), f1 = field(i, 1);
          const uint32_t keep = ~((0xfu << (4 * f0)) | (0xfu << (4 * f1)));
          if (auto r = check((u32(rng) & keep) | (a << (4 * f0)) | (c << (4 * f1))); !r) FAIL() << r.message();
        }
}

// E2M1 by bytes (gemv_e2m1.cuh): pair i of a word is the half2 (code i, code i + 4), each the
// fp16 of grid value x 2^-14; fp4's code 8 is -0, RaZeR's the group's special value (the four of
// the razer config, the byte mask built as gemv.cu's choose_decoder does). Random words, and every
// pair of codes at every pair position with random neighbours (the byte arithmetic must not leak
// between codes).
TEST(GemvE2m1, PairsAreTheGridTimes2m14WithTheSpecialValue) {
  const quantizer::Grid fp4 = quantizer::base_grid(quantizer::make_format_config("fp4", 4, 128, false));
  const quantizer::FormatConfig rcfg = quantizer::make_format_config("razer", 4, 128, false);
  const quantizer::Grid razer = quantizer::base_grid(rcfg);
  ASSERT_EQ(fp4.value.size(), 16u);
  ASSERT_EQ(razer.special_code, 8);
  ASSERT_EQ(rcfg.special_values.size(), 4u);
  std::mt19937 rng(test::test_seed());
  for (int t = -1; t < 4; ++t) {  // -1: fp4 (no special value)
    std::vector<double> values = t < 0 ? fp4.value : razer.value;
    if (t >= 0) values[8] = rcfg.special_values[t];
    const std::vector<uint16_t> want = halves_times_2m14(values);
    if (t < 0) {
      EXPECT_EQ(want[8], 0x8000u) << "fp4's code 8 is -0";
    }
    for (uint16_t h : want) ASSERT_EQ(h & 0xffu, 0u) << "every value x 2^-14 has a zero low byte";
    const uint32_t d4 = t < 0 ? 0u : ((want[8] >> 8) ^ 0x80u) * 0x01010101u;
    auto check = [&](uint32_t q) {
      const kernels::gemv4::E2m1Bytes b =
          t < 0 ? kernels::gemv4::e2m1_bytes<false>(q, 0u) : kernels::gemv4::e2m1_bytes<true>(q, d4);
      for (int i = 0; i < 4; ++i) {
        const uint32_t h = kernels::gemv4::e2m1_pair(b, i);
        if ((h & 0xffffu) != want[(q >> (4 * i)) & 15u] || (h >> 16) != want[(q >> (4 * i + 16)) & 15u])
          return ::testing::AssertionFailure() << std::hex << "table " << t << " word " << q << " pair " << i << ": " << h;
      }
      return ::testing::AssertionSuccess();
    };
    sweep_words(rng, check, [](int i, int k) { return i + 4 * k; });  // pair i: codes i, i + 4
    if (HasFatalFailure()) return;
  }
}

// 4-bit RaZeR by two byte tables (gemv_e2m1.cuh kXor*): upload() re-encodes each on-disk code c
// by xor_code(c, flip), flip = the group's special value is negative (the kernel then negates the
// scale); pair i of the decoded word is the half2 (code 2 i, code 2 i + 1). The reference is the
// registry: (flip ? -1 : 1) x grid value (the special code's the group's special value) x 2^-14,
// zero of either sign. Every special value of the default config, random words and every pair
// of codes at every pair position.
TEST(GemvE2m1, XorTablesDecodeTheReencodedCodesToTheGrid) {
  const quantizer::FormatConfig cfg = quantizer::make_format_config("razer", 4, 128, false);
  const quantizer::Grid grid = quantizer::base_grid(cfg);
  ASSERT_EQ(grid.special_code, 8);
  ASSERT_EQ(cfg.special_values.size(), 4u);
  std::mt19937 rng(test::test_seed());
  namespace g4 = kernels::gemv4;
  for (int t = 0; t < 4; ++t) {
    const double sv = cfg.special_values[static_cast<size_t>(t)];
    const bool flip = sv < 0;
    EXPECT_EQ(flip, t >= 2) << "the index's high bit is the special value's sign (the scale word's bit 15)";
    const uint16_t hs = double_to_fp16(std::ldexp(std::fabs(sv), -14));
    ASSERT_EQ(hs & 0xffu, 0u);
    const uint32_t t2hi = g4::kXorT2Hi | (static_cast<uint32_t>(hs >> 8) << 24);
    auto value = [&](uint32_t c) { return (flip ? -1.0 : 1.0) * (static_cast<int>(c) == grid.special_code ? sv : grid.value[c]); };
    auto check = [&](uint32_t disk) {  // a word of 8 on-disk codes
      uint32_t q = 0;
      for (int k = 0; k < 8; ++k) q |= g4::xor_code((disk >> (4 * k)) & 15u, flip) << (4 * k);
      const g4::E2m1Bytes b = g4::xor_bytes(q, t2hi);
      for (int i = 0; i < 4; ++i) {
        const uint32_t h = g4::xor_pair(b, i);
        for (int half = 0; half < 2; ++half) {
          const uint32_t c = (disk >> (4 * (2 * i + half))) & 15u;
          const uint16_t got = static_cast<uint16_t>(h >> (16 * half));
          if (fp16_to_double(got) != std::ldexp(value(c), -14) || (got & 0xffu) != 0)
            return ::testing::AssertionFailure() << std::hex << "table " << t << " word " << disk << " pair " << i
                                                 << " half " << half << ": " << got;
        }
      }
      return ::testing::AssertionSuccess();
    };
    sweep_words(rng, check, [](int i, int k) { return 2 * i + k; });  // pair i: codes 2 i, 2 i + 1
    if (HasFatalFailure()) return;
    // The re-encoding is a bijection on the 16 codes (xor_code's values are all distinct).
    std::vector<int> seen(16, 0);
    for (uint32_t c = 0; c < 16; ++c) ++seen[g4::xor_code(c, flip)];
    for (int n = 0; n < 16; ++n) EXPECT_EQ(seen[static_cast<size_t>(n)], 1) << "code " << n << " flip " << flip;
  }
}

// The int8 weights of the same re-encoded codes (gemv_e2m1.cuh kXorI8*, the int8 products): byte k
// of e / o is code k / 4 + k's weight -2 x (flip ? -1 : 1) x grid value (the special code's the
// group's special value) as an int8. The default special values and a set at the range's ends
// (2 |S| = 1 and 128); 2 |S| not an integer or above 128 has no byte.
TEST(GemvE2m1, XorInt8TablesGiveMinusTwiceTheGridValues) {
  namespace g4 = kernels::gemv4;
  std::mt19937 rng(test::test_seed());
  for (const std::vector<float>& svs : {std::vector<float>{}, std::vector<float>{0.5f, 64.f, -7.5f, -64.f}}) {
    const quantizer::FormatConfig cfg = quantizer::make_format_config("razer", 4, 128, false, svs);
    const quantizer::Grid grid = quantizer::base_grid(cfg);
    ASSERT_EQ(grid.special_code, 8);
    for (int t = 0; t < 4; ++t) {
      const double sv = cfg.special_values[static_cast<size_t>(t)];
      const bool flip = sv < 0;
      const int b = g4::xor_i8_special_byte(std::fabs(sv));
      ASSERT_GE(b, 0) << sv;
      const uint32_t t2hi = g4::kXorI8T2Hi | (static_cast<uint32_t>(b) << 24);
      auto value = [&](uint32_t c) { return (flip ? -1.0 : 1.0) * (static_cast<int>(c) == grid.special_code ? sv : grid.value[c]); };
      auto check = [&](uint32_t disk) {
        uint32_t q = 0;
        for (int k = 0; k < 8; ++k) q |= g4::xor_code((disk >> (4 * k)) & 15u, flip) << (4 * k);
        const g4::E2m1Bytes by = g4::xor_bytes<true>(q, t2hi);
        for (int k = 0; k < 8; ++k) {
          const uint32_t c = (disk >> (4 * k)) & 15u;
          const int got = static_cast<int8_t>(((k < 4 ? by.e : by.o) >> (8 * (k & 3))) & 0xffu);
          if (static_cast<double>(got) != -2.0 * value(c))
            return ::testing::AssertionFailure() << "special value " << sv << " word " << std::hex << disk << std::dec
                                                 << " code " << k << ": " << got << ", expected " << -2.0 * value(c);
        }
        return ::testing::AssertionSuccess();
      };
      sweep_words(rng, check, [](int i, int k) { return 2 * i + k; });
      if (HasFatalFailure()) return;
    }
  }
  EXPECT_EQ(g4::xor_i8_special_byte(0.25), -1);
  EXPECT_EQ(g4::xor_i8_special_byte(5.25), -1);
  EXPECT_EQ(g4::xor_i8_special_byte(64.5), -1);
  EXPECT_EQ(g4::xor_i8_special_byte(0.0), -1);
  EXPECT_EQ(g4::xor_i8_special_byte(5.0), 9);
}

}  // namespace
}  // namespace razerq
