#pragma once
// Code packing shared by every format and bit width (2..8): each row's b-bit codes form a
// little-endian bitstream, element k at bit offset k*b of the row, the row padded with zero
// bits to a whole number of uint32 words. For b = 4 one word holds 8 codes:
//   bits 31..28 27..24 23..20 19..16 15..12 11..8 7..4 3..0
//        c7     c6     c5     c4     c3     c2    c1   c0
// For b = 3, 32 codes fill 3 words and codes 10 and 21 straddle word boundaries.
#include <cstdint>

namespace razerq::quantizer {

inline int64_t words_per_row(int64_t cols, int bits) { return (cols * bits + 31) / 32; }

// words must hold words_per_row(n, bits) entries; they are overwritten.
void pack_row(const uint8_t* codes, int64_t n, int bits, uint32_t* words);
void unpack_row(const uint32_t* words, int64_t n, int bits, uint8_t* codes);

// One code (random access).
inline uint32_t unpack_one(const uint32_t* words, int64_t k, int bits) {
  const int64_t pos = k * bits;
  const int64_t w = pos >> 5;
  const int off = static_cast<int>(pos & 31);
  uint64_t v = words[w] >> off;
  if (off + bits > 32) v |= uint64_t(words[w + 1]) << (32 - off);
  return static_cast<uint32_t>(v) & ((1u << bits) - 1u);
}

}  // namespace razerq::quantizer
