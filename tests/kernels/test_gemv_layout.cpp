// The fused GEMV's device code layouts (kernels/cuda/gemv_layout.hpp), on the CPU: the header the
// upload and both CUDA kernels use. Reference: quantizer::unpack_row (the checkpoint's bitstream
// reader) on the original and the permuted rows, and each layout written out by hand from where
// the GEMV's lane t reads its word w: the code of column c = 128 b + (columns of lane t's word w)
// + e must sit at position 128 b + 32 t + 8 w + e.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cuda/gemv_layout.hpp"
#include "quantizer/format.hpp"
#include "quantizer/pack.hpp"
#include "tests/kernels/kernel_test_util.hpp"

namespace razerq {
namespace {

using kernels::CodeLayout;

// The first column (within its block) of lane t's word w.
int64_t word_column(CodeLayout l, int t, int w) {
  if (l == CodeLayout::kQuad) return 32 * w + 8 * t;
  if (l == CodeLayout::kPair) return 64 * (w / 2) + 16 * t + 8 * (w % 2);
  return 32 * t + 8 * w;
}

TEST(GemvLayout, RetileChunkPutsEachChunkWhereItsLaneReadsIt) {
  for (CodeLayout l : {CodeLayout::kDisk, CodeLayout::kQuad, CodeLayout::kPair})
    for (int b = 0; b < 3; ++b)
      for (int t = 0; t < 4; ++t)
        for (int w = 0; w < 4; ++w) {
          const int chunk = 16 * b + static_cast<int>(word_column(l, t, w) / 8);
          EXPECT_EQ(kernels::retile_chunk(chunk, l), 16 * b + 4 * t + w)
              << "layout " << static_cast<int>(l) << " lane " << t << " word " << w;
        }
}

TEST(GemvLayout, PermutedRowsHoldEveryCodeWhereTheKernelReadsIt) {
  std::mt19937 rng(test::test_seed());
  std::uniform_int_distribution<uint32_t> u32;
  for (CodeLayout l : {CodeLayout::kQuad, CodeLayout::kPair}) {
    for (int bits : {3, 4}) {
      for (int64_t cols : {128, 384, 1024}) {
        const int64_t rows = 3, words = cols * bits / 32;
        std::vector<uint32_t> w(static_cast<size_t>(rows * words));
        for (auto& v : w) v = u32(rng);
        const std::vector<uint32_t> r = kernels::retile_codes(w.data(), rows, words, cols, bits, l);
        ASSERT_EQ(r.size(), w.size());
        std::vector<uint8_t> a(static_cast<size_t>(cols)), b(static_cast<size_t>(cols));
        for (int64_t row = 0; row < rows; ++row) {
          quantizer::unpack_row(w.data() + row * words, cols, bits, a.data());
          quantizer::unpack_row(r.data() + row * words, cols, bits, b.data());
          for (int64_t blk = 0; blk < cols / 128; ++blk)
            for (int t = 0; t < 4; ++t)
              for (int wd = 0; wd < 4; ++wd)
                for (int e = 0; e < 8; ++e) {
                  const int64_t c = 128 * blk + word_column(l, t, wd) + e, p = 128 * blk + 32 * t + 8 * wd + e;
                  ASSERT_EQ(b[static_cast<size_t>(p)], a[static_cast<size_t>(c)])
                      << "layout " << static_cast<int>(l) << ", " << bits << "-bit, " << cols << " columns, row " << row
                      << ", column " << c;
                }
        }
      }
    }
  }
}

// Pair order: the GEMV's pair i of a chunk is fields i and i + 4, and must be columns 2 i and
// 2 i + 1 (x's half2 word i). Checked with unpack_row on whole rows, with each layout.
TEST(GemvLayout, PairOrderPutsColumns2iAnd2iPlus1InFieldsIAndIPlus4) {
  for (int c = 0; c < 8; ++c) EXPECT_EQ(kernels::pair_field(c), c % 2 ? 4 + c / 2 : c / 2) << c;
  std::mt19937 rng(test::test_seed());
  std::uniform_int_distribution<uint32_t> u32;
  for (CodeLayout l : {CodeLayout::kDisk, CodeLayout::kQuad, CodeLayout::kPair}) {
    for (int bits : {3, 4}) {
      const int64_t rows = 3, cols = 384, words = cols * bits / 32;
      std::vector<uint32_t> w(static_cast<size_t>(rows * words));
      for (auto& v : w) v = u32(rng);
      const std::vector<uint32_t> plain = kernels::retile_codes(w.data(), rows, words, cols, bits, l);
      const std::vector<uint32_t> paired = kernels::retile_codes(w.data(), rows, words, cols, bits, l, true);
      std::vector<uint8_t> a(static_cast<size_t>(cols)), b(static_cast<size_t>(cols));
      for (int64_t row = 0; row < rows; ++row) {
        quantizer::unpack_row(plain.data() + row * words, cols, bits, a.data());
        quantizer::unpack_row(paired.data() + row * words, cols, bits, b.data());
        for (int64_t chunk = 0; chunk < cols / 8; ++chunk)
          for (int i = 0; i < 4; ++i) {
            ASSERT_EQ(b[static_cast<size_t>(8 * chunk + i)], a[static_cast<size_t>(8 * chunk + 2 * i)])
                << bits << "-bit, layout " << static_cast<int>(l) << ", row " << row << ", chunk " << chunk << ", pair " << i;
            ASSERT_EQ(b[static_cast<size_t>(8 * chunk + i + 4)], a[static_cast<size_t>(8 * chunk + 2 * i + 1)])
                << bits << "-bit, layout " << static_cast<int>(l) << ", row " << row << ", chunk " << chunk << ", pair " << i;
          }
      }
    }
  }
  EXPECT_TRUE(kernels::pair_order_applies(4, 4096));
  EXPECT_TRUE(kernels::pair_order_applies(3, 128));
  EXPECT_FALSE(kernels::pair_order_applies(4, 200));
  EXPECT_FALSE(kernels::pair_order_applies(2, 4096));
  EXPECT_FALSE(kernels::pair_order_applies(8, 4096));
}

TEST(GemvLayout, AppliesToThreeAndFourBitCodesWithBlockWideGroups) {
  EXPECT_TRUE(kernels::retile_applies(4, 128, 4096));
  EXPECT_TRUE(kernels::retile_applies(3, 256, 384));
  EXPECT_FALSE(kernels::retile_applies(4, 64, 4096));   // a lane's columns would span two groups
  EXPECT_FALSE(kernels::retile_applies(4, 32, 4096));   // MX
  EXPECT_FALSE(kernels::retile_applies(4, 16, 4096));   // NV: nv_pair_applies (kPair only)
  EXPECT_FALSE(kernels::retile_applies(4, 128, 200));   // not whole blocks (no fused GEMV either)
  EXPECT_FALSE(kernels::retile_applies(8, 128, 4096));  // not a fused-GEMV code width
  EXPECT_FALSE(kernels::retile_applies(2, 128, 4096));
  using quantizer::make_format_config;
  EXPECT_EQ(kernels::layout_for(make_format_config("razer", 4, 128, false), 4096), CodeLayout::kQuad);
  EXPECT_EQ(kernels::layout_for(make_format_config("razer", 3, 128, false), 4096), CodeLayout::kQuad);
  EXPECT_EQ(kernels::layout_for(make_format_config("int", 4, 128, true), 4096), CodeLayout::kPair);
  EXPECT_EQ(kernels::layout_for(make_format_config("fp4", 4, 256, false), 4096), CodeLayout::kPair);
  EXPECT_EQ(kernels::layout_for(make_format_config("razer", 4, 64, false), 4096), CodeLayout::kDisk);
  EXPECT_EQ(kernels::layout_for(make_format_config("mxfp4", 4, 32, false), 4096), CodeLayout::kDisk);
  EXPECT_EQ(kernels::layout_for(make_format_config("int", 8, 128, false), 4096), CodeLayout::kDisk);
  EXPECT_EQ(kernels::layout_for(make_format_config("int", 4, 128, false), 4096, CodeLayout::kQuad), CodeLayout::kQuad);
  EXPECT_EQ(kernels::layout_for(make_format_config("int", 4, 128, false), 4096, CodeLayout::kDisk), CodeLayout::kDisk);
  EXPECT_EQ(kernels::layout_for(make_format_config("int", 4, 64, false), 4096, CodeLayout::kPair), CodeLayout::kDisk);
  // The NV kinds: kPair keeps a lane's two 16-column groups two; kQuad would make them four.
  for (const char* nv : {"nvfp4", "nvfp4-razer"}) {
    const quantizer::FormatConfig cfg = make_format_config(nv, 4, 16, false);
    EXPECT_TRUE(kernels::nv_pair_applies(cfg, 4096)) << nv;
    EXPECT_FALSE(kernels::nv_pair_applies(cfg, 200)) << nv;
    EXPECT_EQ(kernels::layout_for(cfg, 4096), CodeLayout::kPair) << nv;
    EXPECT_EQ(kernels::layout_for(cfg, 4096, CodeLayout::kAuto, true), CodeLayout::kDisk) << nv;  // few rows
    EXPECT_EQ(kernels::layout_for(cfg, 4096, CodeLayout::kPair), CodeLayout::kPair) << nv;
    EXPECT_EQ(kernels::layout_for(cfg, 4096, CodeLayout::kPair, true), CodeLayout::kPair) << nv;
    EXPECT_EQ(kernels::layout_for(cfg, 4096, CodeLayout::kQuad), CodeLayout::kDisk) << nv;
    EXPECT_EQ(kernels::layout_for(cfg, 4096, CodeLayout::kDisk), CodeLayout::kDisk) << nv;
    EXPECT_EQ(kernels::layout_for(cfg, 200), CodeLayout::kDisk) << nv;
  }
  // few_rows (upload: few_rows_per_sm) concerns the NV kinds only.
  EXPECT_TRUE(kernels::few_rows_per_sm(4224, 132));   // two 16-row tiles per SM of an H100
  EXPECT_FALSE(kernels::few_rows_per_sm(4225, 132));
  EXPECT_EQ(kernels::layout_for(make_format_config("int", 4, 128, false), 4096, CodeLayout::kAuto, true), CodeLayout::kPair);
  EXPECT_FALSE(kernels::nv_pair_applies(make_format_config("mxfp4", 4, 32, false), 4096));
  EXPECT_FALSE(kernels::nv_pair_applies(make_format_config("int", 4, 16, false), 4096));
}

// Tiled rows: the word the GEMV's lane t reads for row g (0..15) of tile T and 128-column block
// kb, j-th of its 16 / 12 bytes' words, is that row's row-major word. It is at T 16 words_per_row
// + kb 64 bits + (4-bit) g 16 + t 4 + j, (3-bit, planes) j 64 + g 4 + t (gemv.cu: wT + g row_stride
// + kb kb_stride + t q_lane_words + j q_plane).
TEST(GemvLayout, TiledRowsHoldEveryWordWhereTheKernelReadsIt) {
  std::mt19937 rng(test::test_seed());
  std::uniform_int_distribution<uint32_t> u32;
  for (int bits : {3, 4}) {
    for (int64_t cols : {128, 384, 1024}) {
      const int64_t rows = 48, wpr = cols * bits / 32;
      std::vector<uint32_t> w(static_cast<size_t>(rows * wpr));
      for (auto& v : w) v = u32(rng);
      const std::vector<uint32_t> tl = kernels::tile_rows(w.data(), rows, wpr, bits);
      ASSERT_EQ(tl.size(), w.size());
      for (int64_t T = 0; T < rows / 16; ++T)
        for (int g = 0; g < 16; ++g)
          for (int64_t kb = 0; kb < cols / 128; ++kb)
            for (int t = 0; t < 4; ++t)
              for (int j = 0; j < bits; ++j) {
                const int64_t at =
                    T * 16 * wpr + kb * 64 * bits + (bits == 4 ? g * 16 + t * 4 + j : j * 64 + g * 4 + t);
                const int64_t from = (16 * T + g) * wpr + kb * 4 * bits + t * bits + j;
                ASSERT_EQ(tl[static_cast<size_t>(at)], w[static_cast<size_t>(from)])
                    << bits << "-bit, " << cols << " columns, tile " << T << " row " << g << " block " << kb;
                ASSERT_EQ(kernels::tiled_word(16 * T + g, kb * 4 * bits + t * bits + j, wpr, bits), at);
              }
    }
  }
}

// Tiled per-group entries: for a group of g columns, units of u = max(1, 128 / g) groups, the 16
// rows' u entries contiguous: group gi of row 16 T + r at T 16 groups_per_row + (gi / u) 16 u +
// r u + gi % u.
TEST(GemvLayout, TiledGroupsHoldEveryEntryWhereTheKernelReadsIt) {
  for (int group : {16, 32, 64, 128, 256, 512}) {
    const int64_t rows = 32, cols = 1024, gpr = cols / group, u = std::max<int64_t>(1, 128 / group);
    EXPECT_EQ(int64_t{1} << kernels::group_unit_shift(group), u) << group;
    std::vector<uint16_t> v(static_cast<size_t>(rows * gpr));
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint16_t>(i * 7 + 3);
    const std::vector<uint16_t> tl = kernels::tile_groups(v.data(), rows, gpr, group);
    ASSERT_EQ(tl.size(), v.size());
    for (int64_t T = 0; T < rows / 16; ++T)
      for (int64_t r = 0; r < 16; ++r)
        for (int64_t gi = 0; gi < gpr; ++gi) {
          const int64_t at = T * 16 * gpr + (gi / u) * 16 * u + r * u + gi % u;
          ASSERT_EQ(tl[static_cast<size_t>(at)], v[static_cast<size_t>((16 * T + r) * gpr + gi)])
              << "group " << group << " tile " << T << " row " << r << " group index " << gi;
          ASSERT_EQ(kernels::tiled_group(16 * T + r, gi, gpr, kernels::group_unit_shift(group)), at);
        }
  }
}

TEST(GemvLayout, TilingAppliesToWholeTilesOfThreeAndFourBitCodes) {
  EXPECT_TRUE(kernels::tiling_applies(4, 128, 4096, 4096));
  EXPECT_TRUE(kernels::tiling_applies(3, 128, 16, 384));
  EXPECT_TRUE(kernels::tiling_applies(4, 16, 32, 128));
  EXPECT_TRUE(kernels::tiling_applies(4, 256, 32, 4096));
  EXPECT_FALSE(kernels::tiling_applies(4, 128, 37, 4096));   // rows not whole tiles
  EXPECT_FALSE(kernels::tiling_applies(4, 128, 4096, 200));  // columns not whole blocks
  EXPECT_FALSE(kernels::tiling_applies(4, 48, 4096, 4096));  // a group that neither divides 128 nor is a multiple
  EXPECT_FALSE(kernels::tiling_applies(8, 128, 4096, 4096)); // not a fused-GEMV code width
  EXPECT_FALSE(kernels::tiling_applies(2, 128, 4096, 4096));
}

}  // namespace
}  // namespace razerq
