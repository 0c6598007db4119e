#pragma once
// Bit helpers of the fused GEMV's decoders (gemv_bits3.cuh, gemv_e2m1.cuh): PRMT and LOP3 by their
// PTX definitions and a funnel shift, on the device as single instructions and on the host as
// plain C++ with the same results, so the decoders' tests run the very functions on the CPU.
// RAZERQ_HD marks a function for both. Includes no CUDA header.
#include <cstdint>

#include "kernels/host_device.hpp"

namespace razerq::kernels::bits {

// prmt.b32 (default mode): byte n of the result is byte s & 7 of {b, a} (a = bytes 0..3), s the
// n-th nibble of c; with bit 3 of s set, that byte's bit 7 replicated. CUDA's __byte_perm masks
// bit 3 away (an extra LOP3 for a variable selector), hence the asm.
RAZERQ_HD uint32_t prmt(uint32_t a, uint32_t b, uint32_t c) {
#ifdef __CUDA_ARCH__
  uint32_t r;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
#else
  const uint64_t ab = (static_cast<uint64_t>(b) << 32) | a;
  uint32_t r = 0;
  for (int n = 0; n < 4; ++n) {
    const uint32_t s = (c >> (4 * n)) & 15u;
    uint32_t byte = static_cast<uint32_t>(ab >> (8 * (s & 7u))) & 0xffu;
    if (s & 8u) byte = (byte & 0x80u) ? 0xffu : 0u;
    r |= byte << (8 * n);
  }
  return r;
#endif
}

// Bits 0..31 of (hi:lo) >> s, 0 <= s < 32 (__funnelshift_r).
RAZERQ_HD uint32_t funnel_r(uint32_t lo, uint32_t hi, int s) {
#ifdef __CUDA_ARCH__
  return __funnelshift_r(lo, hi, s);
#else
  return static_cast<uint32_t>(((static_cast<uint64_t>(hi) << 32) | lo) >> s);
#endif
}

// lop3.b32: bit k of the result is bit (a_k b_k c_k) of LUT (a the most significant). As asm
// because ptxas splits a C expression with two constant operands into two LOP3s.
template <uint32_t LUT>
RAZERQ_HD uint32_t lop3(uint32_t a, uint32_t b, uint32_t c) {
  static_assert(LUT < 256, "an 8-bit truth table");
#ifdef __CUDA_ARCH__
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, %4;" : "=r"(r) : "r"(a), "r"(b), "r"(c), "n"(LUT));
  return r;
#else
  uint32_t r = 0;
  for (int k = 0; k < 8; ++k)
    if ((LUT >> k) & 1u) r |= ((k & 4) ? a : ~a) & ((k & 2) ? b : ~b) & ((k & 1) ? c : ~c);
  return r;
#endif
}
// (a & mask) | (b & ~mask) and (a & mask) | bits: one LOP3 each.
RAZERQ_HD uint32_t select_bits(uint32_t mask, uint32_t a, uint32_t b) { return lop3<0xe4>(a, b, mask); }
RAZERQ_HD uint32_t and_or(uint32_t a, uint32_t mask, uint32_t bits) { return lop3<0xea>(a, mask, bits); }

}  // namespace razerq::kernels::bits
