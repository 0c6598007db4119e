#pragma once
// The device layout of a packed tensor's codes (kernels::upload): the checkpoint's row bitstreams
// (formats/SPEC.md), changed in three independent ways where the fused GEMV reads them better,
// else as on disk: the 8-code chunks of every 128-column block permuted (CodeLayout, here); the
// codes inside each chunk in pair order (pair_chunk, below); the rows stored in 16-row tiles
// with their scales (tile_rows, tile_groups, below). The dequantization kernel reads every
// combination. Plain C++ (host and device); includes no CUDA header.
//
// The chunk permutation (CodeLayout).
// Why: the GEMV's lane t (of 4 per weight row) loads 16 contiguous bytes of codes per row and
// 128-column block, and must hold x at the same columns (mma.sync pairs A's and B's k-slots by
// lane). On disk those bytes are columns 32 t .. 32 t + 31, so a lane's four 16-byte x loads
// are contiguous and the four lanes of an x row are 64 bytes apart: each load touches two
// 128-byte lines per x row, 16 L1 wavefronts per load at M = 8, four loads per block, against
// 2 x 8 for the codes. That made M = 8 20-25 % slower than M = 4 and M = 16 up to 2.4x slower than M = 4
// (bench/gemv.md). Permuted, a lane's 16 bytes hold the chunks of other columns:
//  kQuad: columns 32 w + 8 t (w = 0..3): x load w of the four lanes of a row is 64 contiguous
//         bytes, one line per row.
//  kPair: columns 64 (w >> 1) + 16 t + 8 (w & 1): x loads 0 and 1 (2 and 3) of the four lanes
//         cover one 128-byte line, 32 bytes apart, the second load hitting the sectors the first
//         brought in (as on disk), with one line per load and row.
// Both halve the x wavefronts; measured (bench/gemv.md, 2026-11-24 fourth session) kPair keeps
// int4 at M = 1..4 where kQuad lost 1-7 %, and kQuad keeps razer4 at M = 1 where kPair lost
// 1-3 %; at M = 8 and 16 both gain. Hence layout_for: kQuad for the RaZeR kinds, kPair else.
// Applies when every 128-column block lies inside one group (group % 128 == 0), so a lane's codes
// still share one scale; and for the NV kinds (16-column groups) kPair alone: there a lane's
// words 0, 1 are columns 16 t .. 16 t + 15 and 2, 3 are 64 + 16 t .., two whole groups, as on
// disk (where they are 32 t .. 32 t + 31), so the GEMV's two groups per lane stay two. The
// on-disk spec does not change.
//
// Chunk c (0..15) of a block, columns 8 c .. 8 c + 7, sits at position retile_chunk(c). A chunk
// is 8 codes: one 32-bit word at 4 bits, 24 bits at 3 bits (the bitstream order is kept inside
// a chunk).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/host_device.hpp"
#include "quantizer/format.hpp"

namespace razerq::kernels {

inline constexpr int kRetileColumns = 128;  // a block of columns whose chunks are permuted

// kAuto is a setting only (set_upload_layout): layout_for decides.
enum class CodeLayout : int { kAuto = -1, kDisk = 0, kQuad = 1, kPair = 2 };

// The position of chunk c (counted from the row's start) in the permuted row: in each block of
// 16, kQuad swaps the two 2-bit halves of c (4 j + t -> 4 t + j), kPair moves 8 j + 2 t + h to
// 4 t + 2 j + h.
RAZERQ_HD int retile_chunk(int c, CodeLayout l) {
  if (l == CodeLayout::kPair) return (c & ~15) | (((c >> 1) & 3) << 2) | (((c >> 3) & 1) << 1) | (c & 1);
  if (l == CodeLayout::kQuad) return (c & ~15) | ((c & 3) << 2) | ((c >> 2) & 3);
  return c;
}

// Whether a tensor of this code width, group and column count may be permuted (the fused GEMV's
// code widths; its other conditions do not matter here: the dequantization kernel reads every
// layout). The NV kinds' 16-column groups: nv_pair_applies, below.
inline bool retile_applies(int bits, int group, int64_t cols) {
  return (bits == 3 || bits == 4) && group > 0 && group % kRetileColumns == 0 && cols % kRetileColumns == 0;
}

// Whether kPair may permute a tensor of the NV kinds (4-bit codes, 16-column groups).
inline bool nv_pair_applies(const quantizer::FormatConfig& cfg, int64_t cols) {
  const quantizer::ScaleKind k = cfg.spec().scale_kind;
  return (k == quantizer::ScaleKind::kE4M3Tensor || k == quantizer::ScaleKind::kE3M3RazerTensor) && cfg.bits == 4 &&
         cfg.group == 16 && cols % kRetileColumns == 0;
}

// The layout upload() gives a tensor: `want` where it applies (kAuto: kQuad for the RaZeR kinds
// with fp16 scales, kPair for the others and the NV kinds), else kDisk. few_rows (upload: at most
// two 16-row tiles per SM, gemv.cu's under-filled grids): the NV kinds keep kDisk under kAuto.
// Measured on the H100 (bench/gemv.md, seventh session), kPair against kDisk for nvfp4 /
// nvfp4-razer: M = 16 1.1-1.5x faster at every shape; M = 1..8 0.89-1.09x on the larger shapes
// but 0.91-0.96x on the 4096-row ones (not understood: registers and resident blocks are the
// same), whose M = 1 speed is what batch-1 decoding needs.
inline CodeLayout layout_for(const quantizer::FormatConfig& cfg, int64_t cols, CodeLayout want = CodeLayout::kAuto,
                             bool few_rows = false) {
  if (want == CodeLayout::kDisk) return CodeLayout::kDisk;
  if (nv_pair_applies(cfg, cols))
    return want == CodeLayout::kQuad || (want == CodeLayout::kAuto && few_rows) ? CodeLayout::kDisk : CodeLayout::kPair;
  if (!retile_applies(cfg.bits, cfg.group, cols)) return CodeLayout::kDisk;
  if (want != CodeLayout::kAuto) return want;
  return cfg.spec().scale_kind == quantizer::ScaleKind::kFp16Razer ? CodeLayout::kQuad : CodeLayout::kPair;
}

// Pair order (DeviceTensor::pair_order), orthogonal to the chunk permutation: inside each 8-code
// chunk, the codes of columns 0, 2, 4, 6 in fields 0..3 and those of columns 1, 3, 5, 7 in fields
// 4..7. The GEMV's decoders build the half2 of fields (i, i + 4) of a chunk; in this order that
// is columns (2 i, 2 i + 1), the very half2 word i of the lane's x load, so x needs no
// regrouping (the on-disk order needed 16 PRMTs per block of K and 8 x rows). Applies to every
// tensor the GEMV takes (3- and 4-bit codes, whole 128-column blocks).
inline bool pair_order_applies(int bits, int64_t cols) { return (bits == 3 || bits == 4) && cols % kRetileColumns == 0; }

// The field of column c (0..7) of a chunk in pair order.
RAZERQ_HD int pair_field(int c) { return c & 1 ? 4 + (c >> 1) : c >> 1; }

// An 8-code chunk of `bits`-bit fields (field c = column c) in pair order.
RAZERQ_HD uint64_t pair_chunk(uint64_t v, int bits) {
  const uint64_t m = (uint64_t{1} << bits) - 1;
  uint64_t out = 0;
  for (int c = 0; c < 8; ++c) out |= ((v >> (c * bits)) & m) << (pair_field(c) * bits);
  return out;
}

// The permuted copy of `rows` row bitstreams of `words_per_row` 32-bit words, `cols` codes of
// `bits` bits each: chunks moved by `layout` (retile_applies must hold unless kDisk) and, with
// pair_order, each chunk's codes in pair order (pair_order_applies must hold).
inline std::vector<uint32_t> retile_codes(const uint32_t* words, int64_t rows, int64_t words_per_row, int64_t cols,
                                          int bits, CodeLayout layout, bool pair_order = false) {
  std::vector<uint32_t> out(static_cast<size_t>(rows * words_per_row), 0u);
  const int64_t chunks = cols / 8;
  const uint64_t mask = (uint64_t{1} << (8 * bits)) - 1;  // one chunk: 8 codes of `bits` bits
  for (int64_t r = 0; r < rows; ++r) {
    const uint32_t* src = words + r * words_per_row;
    uint32_t* dst = out.data() + r * words_per_row;
    auto get = [&](int64_t bit) {  // 8 * bits (<= 32) bits from `bit` on
      const int64_t w = bit >> 5;
      uint64_t v = src[w];
      if (w + 1 < words_per_row) v |= static_cast<uint64_t>(src[w + 1]) << 32;
      return (v >> (bit & 31)) & mask;
    };
    auto put = [&](int64_t bit, uint64_t v) {
      const int64_t w = bit >> 5;
      const uint64_t s = v << (bit & 31);
      dst[w] |= static_cast<uint32_t>(s);
      if (s >> 32) dst[w + 1] |= static_cast<uint32_t>(s >> 32);
    };
    for (int64_t c = 0; c < chunks; ++c) {
      const uint64_t v = get(c * 8 * bits);
      put(retile_chunk(static_cast<int>(c), layout) * 8 * bits, pair_order ? pair_chunk(v, bits) : v);
    }
  }
  return out;
}

// Row tiling (DeviceTensor::tiled), orthogonal to the chunk permutation above: the rows of
// each 16-row tile (the GEMV's block of output channels) stored tile by tile, and inside a tile
// block by block: the 16 rows' words of 128-column block b (4 * bits words each) are contiguous.
// So the 8 warps of a GEMV block, each reading one 128-column block of its 16 rows per step,
// read 1 KB (4-bit) contiguous each, and a tile is one contiguous stream, where the row-major
// order has each warp read 64 bytes from each of 16 rows one row length apart. Measured on the
// H100 with a read-only kernel of the GEMV's access pattern (no decode; kernels/NOTES.md):
// 28672x8192 4-bit 55-57 us row-major against 45 us tiled (the linear-read speed), 8192x28672
// 60 against 45. A tile starts where its first row would start row-major, so a row range that
// begins at a multiple of 16 keeps its offset (row_view, concat_rows).
// Inside a tile's block:
//  4-bit: row after row, each row's 4 words (16 bytes per GEMV lane) in order: word w of row r
//         at 4 r + w, so the GEMV's one 16-byte load per lane reads 512 contiguous bytes per warp.
//  3-bit: in three planes of 64 words. The GEMV's lane t of row r reads the row's words 3 t,
//         3 t + 1, 3 t + 2 (its 32 codes, 12 bytes: no vector load), by three 32-bit loads; with
//         the words in row order each of those loads touched all 12 sectors of the warp's 384
//         bytes, so a warp asked L2 for 3x its bytes. Word 3 t + j of row r is therefore at
//         64 j + 4 r + t: each load of a warp's 8 rows reads 128 contiguous bytes (one line).
//         Measured on the H100 (bench/gemv.md, twentieth session): int3 28672x8192 M = 1 46.8 ->
//         40.1 us, fp3 47.5 -> 38.9.
// Applies to the fused GEMV's code widths when rows are whole tiles, columns whole blocks and
// the group divides or is a multiple of 128 (the scales are tiled too: tile_groups below).
inline constexpr int kTileRows = 16;  // tiled_group's "+ 4" is its log2

// A tensor of at most two 16-row tiles per SM (N <= 4224 on the H100's 132): the fused GEMV's
// grid is then under-filled (gemv.cu split_plan splits it whole), and upload() keeps the NV
// kinds' codes in the on-disk order (layout_for's few_rows).
RAZERQ_HD constexpr bool few_rows_per_sm(int64_t rows, int sm_count) {
  return rows <= 2 * static_cast<int64_t>(kTileRows) * sm_count;
}

inline bool tiling_applies(int bits, int group, int64_t rows, int64_t cols) {
  return (bits == 3 || bits == 4) && rows > 0 && rows % kTileRows == 0 && cols % kRetileColumns == 0 && group > 0 &&
         (group % kRetileColumns == 0 || kRetileColumns % group == 0);
}

// 32-bit words of one row's 128-column block.
RAZERQ_HD constexpr int block_words(int bits) { return kRetileColumns * bits / 32; }

// 3-bit tiles: the words of a plane (one word of each of the 16 rows' 4 GEMV lanes).
inline constexpr int kTilePlaneWords = kTileRows * 4;

// Where word w (0 .. block_words(bits) - 1) of row r (0..15) of a tile's 128-column block lies,
// counted from the block's first word.
RAZERQ_HD constexpr int tiled_block_word(int r, int w, int bits) {
  return bits == 3 ? (w % 3) * kTilePlaneWords + r * 4 + w / 3 : r * block_words(bits) + w;
}

// Where word w of row r (row-major: r * words_per_row + w) lies in the tiled array.
RAZERQ_HD int64_t tiled_word(int64_t r, int64_t w, int64_t words_per_row, int bits) {
  const int64_t bw = block_words(bits);
  return (r / kTileRows) * kTileRows * words_per_row + (w / bw) * kTileRows * bw +
         tiled_block_word(static_cast<int>(r % kTileRows), static_cast<int>(w % bw), bits);
}

// The tiled copy of `rows` rows of `words_per_row` words (tiling_applies must hold).
inline std::vector<uint32_t> tile_rows(const uint32_t* words, int64_t rows, int64_t words_per_row, int bits) {
  std::vector<uint32_t> out(static_cast<size_t>(rows * words_per_row));
  const int64_t bw = block_words(bits);
  for (int64_t r0 = 0; r0 < rows; r0 += kTileRows)
    for (int64_t w = 0; w < words_per_row; w += bw) {
      uint32_t* dst = out.data() + r0 * words_per_row + w * kTileRows;  // the tile's block
      for (int r = 0; r < kTileRows; ++r)
        for (int j = 0; j < bw; ++j) dst[tiled_block_word(r, j, bits)] = words[(r0 + r) * words_per_row + w + j];
    }
  return out;
}

// The group scales (and razer's separate special-value indices) of a tiled tensor, tiled alike:
// per tile, per unit of u = max(1, 128 / group) groups (the groups of one 128-column block, or
// one group), the 16 rows' u entries contiguous, row after row. So the GEMV warp's scale load
// for 16 rows reads 16 u contiguous entries (one sector for fp16 g128) instead of one from each
// of 16 rows. log2 u (0 for groups of 128 and more, or no group):
RAZERQ_HD int group_unit_shift(int group) {
  int s = 0;
  while (group > 0 && (group << s) < kRetileColumns) ++s;
  return s;
}

// Where group gi of row r (row-major: r * groups_per_row + gi) lies in the tiled array.
RAZERQ_HD int64_t tiled_group(int64_t r, int64_t gi, int64_t groups_per_row, int unit_shift) {
  return (r / kTileRows) * kTileRows * groups_per_row + ((gi >> unit_shift) << (unit_shift + 4)) +
         ((r % kTileRows) << unit_shift) + (gi & ((int64_t{1} << unit_shift) - 1));
}

// The tiled copy of a [rows, groups_per_row] array of per-group entries (tiling_applies must hold).
template <class T>
std::vector<T> tile_groups(const T* v, int64_t rows, int64_t groups_per_row, int group) {
  std::vector<T> out(static_cast<size_t>(rows * groups_per_row));
  const int us = group_unit_shift(group);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t gi = 0; gi < groups_per_row; ++gi)
      out[static_cast<size_t>(tiled_group(r, gi, groups_per_row, us))] = v[r * groups_per_row + gi];
  return out;
}

}  // namespace razerq::kernels
