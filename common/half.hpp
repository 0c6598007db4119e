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

// float64 -> fp16 bits with a single rounding (to nearest even): going through float would
// round twice. Overflow gives inf.
inline uint16_t double_to_fp16(double d) {
  const uint16_t sign = std::signbit(d) ? 0x8000 : 0;
  const double a = std::fabs(d);
  if (std::isnan(d)) return 0x7e00;
  if (a >= 65520.0) return sign | 0x7c00;
  if (a < 6.103515625e-05) return sign | static_cast<uint16_t>(std::nearbyint(a * 16777216.0));  // subnormal: units of 2^-24
  int e = std::ilogb(a);                                      // 2^e <= a < 2^(e+1), e in [-14, 15]
  double m = std::nearbyint(std::ldexp(a, 10 - e));           // [1024, 2048], exact scaling
  if (m == 2048.0) m = 1024.0, ++e;
  return sign | static_cast<uint16_t>(((e + 15) << 10) | (static_cast<int>(m) - 1024));
}
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

// float64 -> bfloat16 bits with a single rounding (to nearest even).
inline uint16_t double_to_bf16(double d) {
  const uint16_t sign = std::signbit(d) ? 0x8000 : 0;
  const double a = std::fabs(d);
  if (std::isnan(d)) return 0x7fc0;
  if (a >= 3.3961775292304455e38) return sign | 0x7f80;  // at or past the midpoint above the max finite
  if (a < 1.1754943508222875e-38) return sign | static_cast<uint16_t>(std::nearbyint(std::ldexp(a, 133)));  // subnormal
  int e = std::ilogb(a);
  double m = std::nearbyint(std::ldexp(a, 7 - e));  // [128, 256]
  if (m == 256.0) m = 128.0, ++e;
  return sign | static_cast<uint16_t>(((e + 127) << 7) | (static_cast<int>(m) - 128));
}

}  // namespace razerq
