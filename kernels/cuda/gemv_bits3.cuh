#pragma once
// The integer part of the fused GEMV's 3-bit bit decoders (gemv.cu): from a lane's 12 bytes of
// codes to the fp16 bits of each pair (i, i + 4) of an 8-code word. Host and device, so that
// tests/kernels/test_gemv_bits3.cpp runs these very functions on every 24-bit word on the CPU;
// the fp16 arithmetic (zero point, scale) stays in gemv.cu. Includes no CUDA header.
//
// A row's codes are a little-endian bitstream (formats/SPEC.md); a lane's 32 codes of a 128-column
// block are three words x, y, z (96 bits). words() cuts them into four words of 8 codes, code j
// of a word at bit 3j + P (P = 0 or 1, the decoder's choice: P = 1 saves a shift per word in the
// fp3 decoder, see fp3_pair). Bits outside the 24 code bits are junk (the
// neighbouring words' codes) except where said; every step below masks them away.
//
// Instruction counts (sm_90 SASS, per word of 8 codes, i.e. 4 pairs, one weight row):
//  - int3:  spread (SHF + LOP3), pairs 0..2 one LOP3 each, pair 3 SHF + LOP3 -> 7; then per
//           pair HSUB2 (zero point / magic) and HMUL2 (scale): 15, 3.75 per pair.
//  - fp3:   spread 2, sign move 2, per pair SHF + LOP3 (pair 3: LOP3 only with P = 1) -> 11; then
//           per pair HMUL2: 15, 3.75 per pair (16 for word 0, whose x << 1 is one more).
//  - razer3 (fp3 with the -0 code replaced by the group's special value): the nibble encoding
//           and lookups below, 37 per 32 codes (9.25 per word); then HMUL2: 13.25, 3.3 per pair.
//           (Its decoder on the bitstream, 14 + 4 per word by one PRMT lookup per pair, was
//           replaced by these: bench/gemv.md, twenty-first session.)
// The shared-memory table decoder these replace takes 8 per pair (two SHF + LOP3 + LDS.U16,
// PRMT, HMUL2) and 9 with a zero point.
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cuda/gemv_bit_ops.cuh"
#include "kernels/cuda/gemv_e2m1.cuh"  // gemv4::fp16_high_byte_2m14

namespace razerq::kernels::gemv3 {

using bits::and_or;  // the PTX helpers this header shares with gemv_e2m1.cuh
using bits::funnel_r;
using bits::lop3;
using bits::prmt;
using bits::select_bits;

// The four 8-code words of codes x, y, z (bits 0..95 = codes 0..31): word w holds codes
// 8w .. 8w + 7, code 8w + j at bit 3j + P. Three funnel shifts; P = 1 costs a shift for word 0.
template <int P>
RAZERQ_HD void words(uint32_t x, uint32_t y, uint32_t z, uint32_t (&w)[4]) {
  static_assert(P == 0 || P == 1, "codes start at bit 0 or 1");
  w[0] = x << P;
  w[1] = funnel_r(x, y, 24 - P);
  w[2] = funnel_r(y, z, 16 - P);
  w[3] = z >> (8 - P);
}

// Codes 0..3 stay at bits 3j + P, codes 4..7 move to 16 + 3(j - 4) + P: pair i is then the same
// field in both halves. (Bits 12 + P .. 15 and 28 + P .. 31 are junk.)
template <int P>
RAZERQ_HD uint32_t spread(uint32_t q) {
  return select_bits((1u << (12 + P)) - 1, q, q << 4);
}

// int3, P = 0, s = spread<0>(q): the half2 (m + c_i, m + c_(i+4)) as fp16, exact, for the magic
// m = 1024 (pair 0, 0x6400: the code in mantissa bits 0..2), 128 (pair 1, 0x5800: bits 3..5,
// where the ulp is 1/8) and 16 (pairs 2 and 3, 0x4c00: bits 6..8, ulp 1/64). Pairs 0..2 need no
// shift; pair 3's code (bits 9..11) would reach the exponent, so it is shifted to pair 2's place.
RAZERQ_HD int int3_magic_index(int i) { return i < 2 ? i : 2; }
RAZERQ_HD uint32_t int3_magic(int k) { return k == 0 ? 0x6400u : k == 1 ? 0x5800u : 0x4c00u; }
RAZERQ_HD uint32_t int3_pair(uint32_t s, int i) {
  const int k = int3_magic_index(i);
  const uint32_t src = i == 3 ? s >> 3 : s;
  return and_or(src, 0x00070007u << (3 * k), int3_magic(k) * 0x10001u);
}

// fp3 (sign bit 2, exponent bits 1..0: {0, 1, 2, 4}), P = 1, s = spread<1>(q): each code's sign
// moves 3 bits up (mags at bits 3j + 1, 3j + 2, sign at 3j + 6; no two codes collide), so that
// one shift puts a pair's sign at bits 15 / 31 and its two exponent bits at 11..10 / 27..26: the
// fp16 of value x 2^-14 exactly ({0, 1, 2, 4} x 2^-14 = 0, 0x0400, 0x0800, 0x0c00; -0 for code 4).
RAZERQ_HD uint32_t fp3_word(uint32_t s) { return select_bits(0x0db60db6u, s, s << 3); }
RAZERQ_HD uint32_t fp3_pair(uint32_t w, int i) { return (w << (9 - 3 * i)) & 0x8c008c00u; }


// --- nib3: a device encoding of the codes for lookups four at a time ----------------------
// upload() may store a lane's 32 codes of a row and 128-column block (its 12 bytes: words x, y, z,
// j = 0, 1, 2) as nibbles instead of a bitstream (DeviceTensor::nib3): nibble n (bits 4 n .. 4 n + 2)
// of word j holds the code of column n of the lane's chunk j (column order), and the spare bit
// 4 n + 3 of word j holds bit j of the code of column n of chunk 3. Same bytes, so the same loads
// and planes; the on-disk format is unchanged.
// Decoding a chunk: its 8 codes as nibbles with bit 3 clear are 8 PRMT selectors; two PRMTs look
// up four codes each in the 8-byte table {t0 (codes 0..3), t1 (codes 4..7)} of the high bytes of
// value x 2^-14 (any 3-bit grid whose values x 2^-14 are fp16 with a zero low byte: fp3, razer3
// with its special value in t1, int3 sym), and one PRMT per pair spreads two of those bytes into a
// half2 with zero low bytes. Per chunk of 8 codes: mask + 2 PRMT + shift + 4 PRMT = 8 ALU-pipe
// instructions; chunk 3 first gathers its selectors from the spare bits: 3 shifts + 2 LOP3.
// Per 32 codes 37, against 56 for razer3's bitstream decoder that these replaced, fp3's 44 and
// int3's 28 (+ 16 HSUB2). Measured on the H100 (bench/gemv.md, twenty-first session): razer3
// 1.04-1.18x faster; fp3 and int3 within a few % either way, so they keep the bitstream
// (nib3_applies: grids with a special value only).

// Chunks c[0..3] (8 codes each, column n at bits 3 n) as the lane's words x, y, z.
RAZERQ_HD void nib3_pack(const uint32_t (&c)[4], uint32_t (&w)[3]) {
  for (int j = 0; j < 3; ++j) {
    uint32_t v = 0;
    for (int n = 0; n < 8; ++n) {
      v |= ((c[j] >> (3 * n)) & 7u) << (4 * n);
      v |= ((c[3] >> (3 * n + j)) & 1u) << (4 * n + 3);
    }
    w[j] = v;
  }
}
// Chunk v (0..3) of words x, y, z: column n at bits 3 n (nib3_pack's inverse).
RAZERQ_HD uint32_t nib3_chunk(uint32_t x, uint32_t y, uint32_t z, int v) {
  const uint32_t src = v == 0 ? x : v == 1 ? y : z;
  uint32_t c = 0;
  for (int n = 0; n < 8; ++n) {
    const uint32_t code = v < 3 ? (src >> (4 * n)) & 7u
                                : ((x >> (4 * n + 3)) & 1u) | (((y >> (4 * n + 3)) & 1u) << 1) |
                                      (((z >> (4 * n + 3)) & 1u) << 2);
    c |= code << (3 * n);
  }
  return c;
}
// Chunk 3's codes as nibbles (bit 3 of each is junk, cleared by nib3_lookup): bits 4 n, 4 n + 1,
// 4 n + 2 from the spare bits of x, y, z.
RAZERQ_HD uint32_t nib3_spare(uint32_t x, uint32_t y, uint32_t z) {
  return select_bits(0x33333333u, select_bits(0x11111111u, x >> 3, y >> 2), z >> 1);
}
// A lane's 32 nibble codes (its three words) as four chunks of 8: chunks 0..2 as loaded, 3 gathered.
RAZERQ_HD void nib3_words(uint32_t x, uint32_t y, uint32_t z, uint32_t (&w)[4]) {
  w[0] = x, w[1] = y, w[2] = z, w[3] = nib3_spare(x, y, z);
}
// The high bytes of a chunk's codes: lo = columns 0..3 (byte n = column n), hi = columns 4..7.
struct Nib3Bytes {
  uint32_t lo, hi;
};
RAZERQ_HD Nib3Bytes nib3_lookup(uint32_t w, uint32_t t0, uint32_t t1) {
  const uint32_t m = w & 0x77777777u;  // (PRMT reads the selector's low 16 bits)
  return {prmt(t0, t1, m), prmt(t0, t1, m >> 16)};
}
// Pair i (columns 2 i, 2 i + 1) as a half2: its two bytes in bytes 1 and 3, zeros (the second
// operand's byte 4) in bytes 0 and 2.
RAZERQ_HD uint32_t nib3_pair(Nib3Bytes b, int i) { return prmt(i < 2 ? b.lo : b.hi, 0u, i & 1 ? 0x3424u : 0x1404u); }

// The lookup tables of a 3-bit grid (value by code; special_code -1 or a code whose value is
// special_values[i] in table i): t0 the high bytes of codes 0..3's values x 2^-14, t1[i] those of
// codes 4..7 with special value i. False where a value x 2^-14 is not an fp16 with a zero low
// byte or the special code is below 4 (t0 is shared by the four tables).
struct Nib3Tables {
  uint32_t t0 = 0, t1[4] = {0, 0, 0, 0};
};
inline bool nib3_tables(const std::vector<double>& grid, int special_code, const std::vector<float>& special_values,
                        Nib3Tables* out) {
  if (grid.size() != 8 || (special_code >= 0 && (special_code < 4 || special_values.size() < 4))) return false;
  Nib3Tables t;
  for (int i = 0; i < 4; ++i)
    for (int c = 0; c < 8; ++c) {
      const double v = c == special_code ? special_values[static_cast<size_t>(i)] : grid[static_cast<size_t>(c)];
      const int b = gemv4::fp16_high_byte_2m14(v);
      if (b < 0) return false;
      if (c < 4) t.t0 |= static_cast<uint32_t>(b) << (8 * c);  // (the same in each pass)
      else t.t1[i] |= static_cast<uint32_t>(b) << (8 * (c - 4));
    }
  *out = t;
  return true;
}

// The int8 tables of a 3-bit grid for the int8 tensor-core products (gemv.cu's kNib3I8): the same
// layout as nib3_tables (t0: codes 0..3, t1[i]: codes 4..7 with special value i), each byte the
// two's-complement int8 of value x 2^shift, for the least shift in 0..7 that makes every value
// (special values included) an integer in [-128, 127]. The same nib3_lookup then gives four int8
// weights per PRMT. False where no shift does (or the special code is below 4).
struct Nib3I8Tables {
  uint32_t t0 = 0, t1[4] = {0, 0, 0, 0};
  int shift = 0;
};
inline bool nib3_i8_tables(const std::vector<double>& grid, int special_code, const std::vector<float>& special_values,
                           Nib3I8Tables* out) {
  if (grid.size() != 8 || (special_code >= 0 && (special_code < 4 || special_values.size() < 4))) return false;
  for (int shift = 0; shift < 8; ++shift) {
    Nib3I8Tables t;
    t.shift = shift;
    bool ok = true;
    for (int i = 0; i < 4 && ok; ++i)
      for (int c = 0; c < 8 && ok; ++c) {
        const double v = std::ldexp(c == special_code ? special_values[static_cast<size_t>(i)] : grid[static_cast<size_t>(c)], shift);
        ok = v == std::floor(v) && v >= -128 && v <= 127;
        const uint32_t b = ok ? static_cast<uint32_t>(static_cast<int>(v)) & 0xffu : 0u;
        if (c < 4) t.t0 |= b << (8 * c);  // (the same in each pass)
        else t.t1[i] |= b << (8 * (c - 4));
      }
    if (ok) {
      *out = t;
      return true;
    }
  }
  return false;
}

// Asym 3-bit grids (int3 asym: values 0..7, the group's zero point z subtracted) for the nibble
// decoder: for each z in 0..7 the tables of the values grid[c] - z, as nib3_tables lays them out
// (t0[z]: codes 0..3, t1[z]: codes 4..7; fp16 high bytes x 2^-14). So the zero point costs the
// table choice per group, nothing per weight. False where a value has no such byte.
inline bool nib3_zero_tables(const std::vector<double>& grid, uint32_t (&t0)[8], uint32_t (&t1)[8]) {
  if (grid.size() != 8) return false;
  for (int z = 0; z < 8; ++z) {
    std::vector<double> v(grid);
    for (double& x : v) x -= z;
    Nib3Tables t;
    if (!nib3_tables(v, -1, {}, &t)) return false;
    t0[z] = t.t0, t1[z] = t.t1[0];
  }
  return true;
}

}  // namespace razerq::kernels::gemv3
