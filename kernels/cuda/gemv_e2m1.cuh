#pragma once
// The integer part of the fused GEMV's E2M1 decoder (gemv.cu, Decode::kE2M1: fp4, mxfp4, nvfp4
// and their RaZeR kinds): from an 8-code word to the fp16 bits of each pair (i, i + 4). Host and
// device, so that tests/kernels/test_gemv_bits3.cpp runs these very functions on the CPU; the
// fp16 arithmetic after them (the scale) stays in gemv.cu. Includes no CUDA header.
//
// Every E2M1 value v (and RaZeR's special values +-5, +-8) times 2^-14 is an fp16 whose low byte
// is 0 and whose high byte is, for a code c (sign s = bit 3, magnitude m = bits 0..2),
// s << 7 | m << 1 (the magnitude bits are fp16's two low exponent bits and first mantissa bit,
// subnormals included). So the word is decoded byte-wise, four codes per operation:
//   T_E, byte k = high byte of even code 2k: q1 = q << 1 puts that code at bits 1..4 of byte k,
//     and (q1 & 0x1e..) + (q1 & 0x10..) * 7 = 2c + 112 s = 2m + 128 s (no carry between bytes);
//   T_O, the same from q >> 3 for odd code 2k + 1;
//   RaZeR: the special code 8 gives 0x80 (-0); it is XORed with the group's
//     (special high byte ^ 0x80) where a byte mask, spread from the code-8 flags by PRMT's sign
//     replication, says so;
//   pair i = (c_i, c_(i + 4)): i = 0 / 1 take bytes 0 and 2 of T_E / T_O into bytes 1 and 3 by
//     one PRMT, i = 2 / 3 bytes 1 and 3 by one mask.
// Per word (sm_90 SASS): 8 for T_E and T_O, RaZeR 3 (flags) + 1 + 2 PRMT + 2 LOP3, pairs 4: 12
// for fp4, 20 for RaZeR, then per pair the scale's HMUL2 (16 / 24 per word: 4 / 6 per pair).
// The bit decoder these replace took 5 per pair for fp4 and 7.5 for RaZeR (two shifts and two
// LOP3s per pair, and per pair a PRMT + LOP3 patch beside 4 per word).
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/half.hpp"
#include "kernels/cuda/gemv_bit_ops.cuh"

namespace razerq::kernels::gemv4 {

// Bit 3 of each code that is 8 (RaZeR's remapped -0), 0 elsewhere: ((c & 7) + 7) has bit 3
// set iff c & 7 != 0, with no carry out of the nibble.
RAZERQ_HD uint32_t code8_flags(uint32_t q) {
  const uint32_t a = (q & 0x77777777u) + 0x77777777u;
  return bits::lop3<0x08>(a, q, 0x88888888u);  // ~a & q & mask
}

// The high bytes of a word's even (e) and odd (o) codes. d4: the group's special value's high
// byte XOR 0x80, in all four bytes (SPECIAL only).
struct E2m1Bytes {
  uint32_t e, o;
};
template <bool SPECIAL>
RAZERQ_HD E2m1Bytes e2m1_bytes(uint32_t q, uint32_t d4) {
  const uint32_t q1 = q << 1, q3 = q >> 3;
  uint32_t e = (q1 & 0x1e1e1e1eu) + (q1 & 0x10101010u) * 7u;
  uint32_t o = (q3 & 0x1e1e1e1eu) + (q3 & 0x10101010u) * 7u;
  if (SPECIAL) {
    // Flags at bit 3 of each nibble: the odd codes' are bit 7 of their byte, the even codes'
    // reach it shifted by 4; PRMT's sign replication (selector nibbles 8 + k) makes 0xff / 0x00.
    const uint32_t f = code8_flags(q);
    e = bits::lop3<0x6a>(bits::prmt(f << 4, 0u, 0xba98u), d4, e);  // e ^ (mask & d4)
    o = bits::lop3<0x6a>(bits::prmt(f, 0u, 0xba98u), d4, o);
  }
  return {e, o};
}

// Pair i (0..3) of the word: the half2 (c_i, c_(i + 4)) as fp16 bits of value x 2^-14.
RAZERQ_HD uint32_t e2m1_pair(E2m1Bytes b, int i) {
  const uint32_t t = i & 1 ? b.o : b.e;
  return i < 2 ? bits::prmt(t, 0u, 0x2404u) : t & 0xff00ff00u;
}

// --- host: what the byte decoders can take --------------------------------------------------
// The high byte of fp16(v x 2^-14) (sign included) when that fp16 is exact and its low byte 0, as
// the byte decoders need of a special value (this one and razer3's, gemv_bits3.cuh); else -1.
inline int fp16_high_byte_2m14(double v) {
  const double s = std::ldexp(v, -14);
  const uint16_t h = razerq::double_to_fp16(s);
  return razerq::fp16_to_double(h) == s && (h & 0xffu) == 0 ? h >> 8 : -1;
}

// Whether a 16-entry grid is E2M1's (code = sign bit 3 | magnitude index into {0, 0.5, 1, 1.5,
// 2, 3, 4, 6}) at every code but special_code.
inline bool is_e2m1_grid(const std::vector<double>& value, int special_code) {
  static constexpr double kE2M1[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  if (value.size() != 16) return false;
  for (int c = 0; c < 16; ++c)
    if (c != special_code && value[static_cast<size_t>(c)] != (c & 8 ? -1 : 1) * kE2M1[c & 7]) return false;
  return true;
}

// --- 4-bit RaZeR by two byte tables (gemv.cu Decode::kE2M1Xor) ------------------------------
// A 16-entry byte table looked up four codes at a time. PRMT takes byte s & 7 of an 8-byte
// table for a selector nibble s, or with bit 3 of s set that byte's bit 7 replicated (0x00 or
// 0xff). So with P1 = PRMT(T1, q) and P2 = PRMT(T2, q ^ 0x8888), a code n < 8 gives
// T1[n] ^ rep(T2[n]) and n = 8 + j gives rep(T1[j]) ^ T2[j]: any 16 bytes, provided codes j and
// 8 + j have the same sign bit (the sign of either result is top(T1[j]) ^ top(T2[j])). With
// T2[j] positive for every j, n < 8 reads T1[n] as it is; for a negative pair (T1[j] negative)
// n = 8 + j reads ~T2[j], so T2[j] holds the complement of its byte.
//
// The values (fp16 high bytes of value x 2^-14, as the E2M1 decoder's): 8 negative and 8
// positive, so RaZeR's group of 16 values {0, +-0.5 .. +-6, S} must first be made so: upload()
// re-encodes the codes of a group whose special value S is negative as those of its negation
// (-v for every v, S -> -S = |S|), whose scale then carries a minus sign (razer's scale word:
// bits 15, 14 the special-value index, 13..0 the fp16 scale; the index's high bit is the flip
// when values 0, 1 are positive and 2, 3 negative, as the defaults {5, 8, -5, -8}: the kernel
// reads the scale as word & 0xbfff; mxfp4-razer's and nvfp4-razer's scale bytes hold the index in
// bits 7, 6, so bit 7 is the flip there: fp16's sign of the E8M0 power, E4M3's of the E3M3
// scale). Zero is then -0 (code 0; its products add nothing):
//   codes 0..3: -0, -0.5, -1, -1.5;  8..11: -2, -3, -4, -6   (negative pairs j = 0..3)
//   codes 4..7: 0.5, 1, 1.5, 2;      12..15: 3, 4, 6, |S|     (positive pairs j = 4..7)
// T1 (bytes 0..7) = out(0..7); T2 = ~out(8..11), out(12..15): only T2's byte 7 (|S|) depends on
// the group (kXorT2Hi | its byte << 24, one register per row and group).
// Per word: 1 XOR, 2 shifts, 4 PRMT and 2 XOR for the 8 bytes, then one PRMT per pair (the
// bytes into the high halves, zeros from the second operand): 13, against the E2M1 byte
// decoder's 12 for fp4 and 20 for RaZeR (gemv_e2m1.cuh above). Pair i is codes (2 i, 2 i + 1):
// the codes of a chunk stay in column order (no pair order, gemv_layout.hpp).
constexpr uint32_t kXorT1Lo = 0x86848280u, kXorT1Hi = 0x08060402u, kXorT2Lo = 0x71737577u, kXorT2Hi = 0x000e0c0au;

// The values of the 16 re-encoded codes; code 15's is |S| (special).
constexpr double kXorValue[15] = {-0.0, -0.5, -1, -1.5, 0.5, 1, 1.5, 2, -2, -3, -4, -6, 3, 4, 6};

// The re-encoded code of on-disk RaZeR code c (E2M1: sign bit 3, magnitude 1..7 in bits 0..2;
// 0 = +0, 8 = the special value) in a group that is negated (flip: its special value is
// negative) or not.
RAZERQ_HD uint32_t xor_code(uint32_t c, bool flip) {
  if (c == 8) return 15u;
  const uint32_t m = c & 7u;
  if (m == 0) return 0u;
  const bool neg = ((c >> 3) != 0) != flip;
  return neg ? (m <= 3 ? m : 4u + m) : (m <= 4 ? 3u + m : 7u + m);
}

// --- the same codes as int8 weights (gemv.cu Decode::kE2M1XorI8, the int8 tensor-core products) --
// The two lookups with other tables give each re-encoded code's weight w = -2 v as an int8 (v its
// value above: E2M1's values are multiples of 0.5, and so must |S| be, with 2 |S| <= 128). The
// minus sign keeps each pair j, 8 + j of one sign, as the lookups need: codes 0..3 (-0 .. -1.5)
// and 8..11 (-2 .. -6) give 0, 1, 2, 3 and 4, 6, 8, 12; codes 4..7 and 12..15 give -1 .. -4 and
// -6, -8, -12, -2 |S|. T1 = the weights of codes 0..7; T2 = those of codes 8..11 and the
// complements of 12..15's (bit 7 clear in every byte of T2). The kernel multiplies the block's
// sums by -scale / 2. The bytes of e and o are 4 weights each in column order: an mma.m16n8k32 A
// register as they stand. Per word: 9 (no per-pair PRMT).
constexpr uint32_t kXorI8T1Lo = 0x03020100u, kXorI8T1Hi = 0xfcfdfeffu, kXorI8T2Lo = 0x0c080604u, kXorI8T2Hi = 0x000b0705u;

// The eight bytes of a word of re-encoded codes: e = codes 0..3, o = codes 4..7 (byte k of
// each: code k, resp. 4 + k). t2hi: the group's kXorT2Hi | |S|'s byte << 24 (I8: kXorI8T2Hi |
// (2 |S| - 1) << 24, xor_i8_special_byte).
template <bool I8 = false>
RAZERQ_HD E2m1Bytes xor_bytes(uint32_t q, uint32_t t2hi) {
  constexpr uint32_t t1lo = I8 ? kXorI8T1Lo : kXorT1Lo, t1hi = I8 ? kXorI8T1Hi : kXorT1Hi, t2lo = I8 ? kXorI8T2Lo : kXorT2Lo;
  const uint32_t qx = q ^ 0x88888888u;
  const uint32_t e = bits::prmt(t1lo, t1hi, q) ^ bits::prmt(t2lo, t2hi, qx);
  const uint32_t o = bits::prmt(t1lo, t1hi, q >> 16) ^ bits::prmt(t2lo, t2hi, qx >> 16);
  return {e, o};
}

// T2's byte 7 for the int8 weights of a special value of magnitude abs_s: ~(-2 abs_s) = 2 abs_s - 1,
// where 2 abs_s is an integer in [1, 128]; else -1 (no int8 weights for it).
inline int xor_i8_special_byte(double abs_s) {
  const double w = 2.0 * abs_s;
  return w >= 1.0 && w <= 128.0 && w == std::floor(w) ? static_cast<int>(w) - 1 : -1;
}

// Pair i (0..3): the half2 (code 2 i, code 2 i + 1) as fp16 bits of value x 2^-14.
RAZERQ_HD uint32_t xor_pair(E2m1Bytes b, int i) {
  return bits::prmt(i < 2 ? b.e : b.o, 0u, i & 1 ? 0x3424u : 0x1404u);
}

}  // namespace razerq::kernels::gemv4
