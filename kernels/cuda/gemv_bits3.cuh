#pragma once
// The integer part of the fused GEMV's 3-bit bit decoders (gemv.cu): from a lane's 12 bytes of
// codes to the fp16 bits of each pair (i, i + 4) of an 8-code word. Host and device, so that
// tests/kernels/test_gemv_bits3.cpp runs these very functions on every 24-bit word on the CPU;
// the fp16 arithmetic (zero point, scale) stays in gemv.cu. Includes no CUDA header.
//
// A row's codes are a little-endian bitstream (formats/SPEC.md); a lane's 32 codes of a 128-column
// block are three words x, y, z (96 bits). words() cuts them into four words of 8 codes, code j
// of a word at bit 3j + P (P = 0 or 1, the decoder's choice: P = 1 saves a shift per word in the
// fp3 decoders, see fp3_pair and fp3_selectors). Bits outside the 24 code bits are junk (the
// neighbouring words' codes) except where said; every step below masks them away.
//
// Instruction counts (sm_90 SASS, per word of 8 codes, i.e. 4 pairs, one weight row):
//  - int3:  spread (SHF + LOP3), pairs 0..2 one LOP3 each, pair 3 SHF + LOP3 -> 7; then per
//           pair HSUB2 (zero point / magic) and HMUL2 (scale): 15, 3.75 per pair.
//  - fp3:   spread 2, sign move 2, per pair SHF + LOP3 (pair 3: LOP3 only with P = 1) -> 11; then
//           per pair HMUL2: 15, 3.75 per pair (16 for word 0, whose x << 1 is one more).
//  - razer3 (fp3 with the -0 code replaced by the group's special value): spread 2, byte
//           split 2 + PRMT, selectors 3 (+ 2 shifts for pairs 2 and 3), per pair one PRMT lookup
//           of a register-held 8-entry byte table -> 14; then HMUL2: 18, 4.5 per pair.
// The shared-memory table decoder these replace takes 8 per pair (two SHF + LOP3 + LDS.U16,
// PRMT, HMUL2) and 9 with a zero point.
#include <cstdint>

#include "kernels/cuda/gemv_bit_ops.cuh"

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

// fp3 by table lookup in registers (razer3: code 4 is the group's special value). Every value
// v x 2^-14 of the grid (and each special value the host admits) is an fp16 whose low byte is 0,
// so a PRMT whose selector holds code c_i in nibble 1 and c_(i+4) in nibble 3 (nibbles 0 and 2
// zero: code 0's byte, 0x00) looks up the high bytes of both halves at once in the 8-byte table
// {kFp3Bytes0 (codes 0..3), per-group word (codes 4..7)}.
inline constexpr uint32_t kFp3Bytes0 = 0x0c080400u;   // 0, 1, 2, 4 (x 2^-14)
inline constexpr uint32_t kFp3Bytes1 = 0x8c888400u;   // byte 0: code 4's, filled in by the host
// P = 1, s = spread<1>(q): the selectors of pairs 0 / 1 (bits 0..15 of e / o) and 2 / 3 (their
// bits 16..31). Codes 0..3 and 4..7 are first split into 6-bit pairs (c0 c1 | c2 c3) per byte,
// bytes reordered to (c0 c1, c4 c5, c2 c3, c6 c7), then odd and even codes masked into nibbles 1.
struct Fp3Selectors {
  uint32_t e, o;
};
RAZERQ_HD Fp3Selectors fp3_selectors(uint32_t s) {
  const uint32_t t = select_bits(0x007f007fu, s, s << 2);  // c2 c3 / c6 c7 to bits 9..14 / 25..30
  const uint32_t v = prmt(t, 0u, 0x3120u);                 // each byte: even code at 1..3, odd at 4..6
  return {(v << 3) & 0x70707070u, v & 0x70707070u};
}
RAZERQ_HD uint32_t fp3_lookup(Fp3Selectors sel, uint32_t bytes1, int i) {
  const uint32_t c = (i & 1 ? sel.o : sel.e) >> (i < 2 ? 0 : 16);
  return prmt(kFp3Bytes0, bytes1, c);
}

}  // namespace razerq::kernels::gemv3
