#pragma once
// IEEE binary16 (fp16) and bfloat16 conversions on bit patterns, round-to-nearest-even,
// with subnormals, infinities and NaN. Host-only, header-only, no intrinsics: these are the
// references that the SIMD and CUDA paths are tested against.
#include <cmath>
#include <cstdint>
#include <cstring>

namespace razerq {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// fp16 bits -> float (exact).
inline float fp16_to_float(uint16_t h) {
  const uint32_t sign = (uint32_t(h) & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t man = h & 0x3ff;
  if (exp == 0) {
    // zero or subnormal: man * 2^-24
    float v = std::ldexp(static_cast<float>(man), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return bits_float(sign | 0x7f800000u | (man << 13));
  return bits_float(sign | ((exp + 112) << 23) | (man << 13));
}

// float -> fp16 bits, round to nearest even; overflow gives inf.
inline uint16_t float_to_fp16(float f) {
  const uint32_t x = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u);  // inf/nan
  if (ax >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to inf
  if (ax < 0x38800000u) {
    // result is fp16 subnormal (or zero): round ax * 2^24 to an integer, ties to even
    const float a = bits_float(ax);
    const float scaled = a * 16777216.0f;  // exact (power of two)
    float r = std::nearbyint(scaled);      // default rounding mode: to nearest even
    return sign | static_cast<uint16_t>(r);
  }
  // normal: rebias exponent, round mantissa 23 -> 10 bits
  uint32_t e = (ax >> 23) - 112;
  uint32_t m = ax & 0x7fffffu;
  uint32_t h = (e << 10) | (m >> 13);
  const uint32_t rest = m & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // carry may bump the exponent: correct
  return sign | static_cast<uint16_t>(h);
}

inline double fp16_to_double(uint16_t h) { return static_cast<double>(fp16_to_float(h)); }
inline float round_to_fp16(float f) { return fp16_to_float(float_to_fp16(f)); }

// bfloat16 bits <-> float.
inline float bf16_to_float(uint16_t b) { return bits_float(uint32_t(b) << 16); }
inline uint16_t float_to_bf16(float f) {
  uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet nan
  const uint32_t lsb = (x >> 16) & 1u;
  x += 0x7fffu + lsb;
  return static_cast<uint16_t>(x >> 16);
}
inline float round_to_bf16(float f) { return bf16_to_float(float_to_bf16(f)); }

}  // namespace razerq
