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
#include <cstdint>

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

}  // namespace razerq::kernels::gemv4
