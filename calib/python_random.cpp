// CPython's random module (see python_random.hpp). The generator is MT19937 as in
// CPython's Modules/_randommodule.c (Matsumoto and Nishimura's mt19937ar.c with CPython's
// seeding); the integer helpers follow Lib/random.py.
#include "calib/python_random.hpp"

#include "common/error.hpp"

namespace razerq::calib {
namespace {

constexpr uint32_t kMatrixA = 0x9908b0dfu;    // MT19937 twist constant
constexpr uint32_t kUpperMask = 0x80000000u;  // most significant bit of a word
constexpr uint32_t kLowerMask = 0x7fffffffu;  // the 31 bits below it

int bit_length(uint64_t n) {
  int k = 0;
  while (n) {
    ++k;
    n >>= 1;
  }
  return k;
}

}  // namespace

void PythonRandom::init_genrand(uint32_t s) {
  mt_[0] = s;
  for (int i = 1; i < kN; ++i)
    mt_[i] = 1812433253u * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + static_cast<uint32_t>(i);
  index_ = kN;
}

void PythonRandom::init_by_array(const uint32_t* key, int key_length) {
  init_genrand(19650218u);
  int i = 1, j = 0;
  for (int k = kN > key_length ? kN : key_length; k > 0; --k) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525u)) + key[j] +
             static_cast<uint32_t>(j);  // non linear
    ++i;
    ++j;
    if (i >= kN) {
      mt_[0] = mt_[kN - 1];
      i = 1;
    }
    if (j >= key_length) j = 0;
  }
  for (int k = kN - 1; k > 0; --k) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941u)) -
             static_cast<uint32_t>(i);  // non linear
    ++i;
    if (i >= kN) {
      mt_[0] = mt_[kN - 1];
      i = 1;
    }
  }
  mt_[0] = 0x80000000u;  // MSB is 1, assuring a non-zero initial state
}

void PythonRandom::seed(int64_t seed) {
  // CPython random_seed(): key = the 32-bit words of abs(seed), least significant first,
  // at least one word (so seed 0 gives the key [0]).
  const uint64_t magnitude =
      seed < 0 ? ~static_cast<uint64_t>(seed) + 1u : static_cast<uint64_t>(seed);
  const uint32_t key[2] = {static_cast<uint32_t>(magnitude),
                           static_cast<uint32_t>(magnitude >> 32)};
  init_by_array(key, key[1] != 0 ? 2 : 1);
}

uint32_t PythonRandom::next_uint32() {
  static constexpr uint32_t mag01[2] = {0u, kMatrixA};
  if (index_ >= kN) {  // generate kN words at one time
    int kk = 0;
    for (; kk < kN - kM; ++kk) {
      const uint32_t y = (mt_[kk] & kUpperMask) | (mt_[kk + 1] & kLowerMask);
      mt_[kk] = mt_[kk + kM] ^ (y >> 1) ^ mag01[y & 1u];
    }
    for (; kk < kN - 1; ++kk) {
      const uint32_t y = (mt_[kk] & kUpperMask) | (mt_[kk + 1] & kLowerMask);
      mt_[kk] = mt_[kk + (kM - kN)] ^ (y >> 1) ^ mag01[y & 1u];
    }
    const uint32_t y = (mt_[kN - 1] & kUpperMask) | (mt_[0] & kLowerMask);
    mt_[kN - 1] = mt_[kM - 1] ^ (y >> 1) ^ mag01[y & 1u];
    index_ = 0;
  }
  uint32_t y = mt_[index_++];
  // Tempering.
  y ^= (y >> 11);
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= (y >> 18);
  return y;
}

double PythonRandom::random() {
  // CPython random_random(): 27 + 26 bits, "by Isaku Wada".
  const uint32_t a = next_uint32() >> 5;
  const uint32_t b = next_uint32() >> 6;
  return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

uint64_t PythonRandom::getrandbits(int k) {
  if (k < 0 || k > 64)
    throw_error(ErrorKind::kInvalidArgument, "PythonRandom::getrandbits",
                "k = %d (expected 0 <= k <= 64)", k);
  if (k == 0) return 0;  // Python 3.9+ returns 0
  if (k <= 32) return next_uint32() >> (32 - k);
  // CPython fills the result from the least significant 32-bit word up; the most
  // significant word keeps only its top (k - 32) bits.
  const uint64_t low = next_uint32();
  const uint64_t high = next_uint32() >> (64 - k);
  return (high << 32) | low;
}

uint64_t PythonRandom::randbelow(uint64_t n) {
  if (n == 0)
    throw_error(ErrorKind::kInvalidArgument, "PythonRandom::randbelow", "n = 0 (expected n >= 1)");
  // Lib/random.py _randbelow_with_getrandbits: "don't use (n-1) here because n can be 1".
  const int k = bit_length(n);
  uint64_t r = getrandbits(k);
  while (r >= n) r = getrandbits(k);
  return r;
}

int64_t PythonRandom::randrange(int64_t start, int64_t stop) {
  if (stop <= start)
    throw_error(ErrorKind::kInvalidArgument, "PythonRandom::randrange",
                "empty range for randrange() (%lld, %lld)", static_cast<long long>(start),
                static_cast<long long>(stop));
  const uint64_t width = static_cast<uint64_t>(stop) - static_cast<uint64_t>(start);
  return static_cast<int64_t>(static_cast<uint64_t>(start) + randbelow(width));
}

int64_t PythonRandom::randint(int64_t a, int64_t b) {
  if (b < a)
    throw_error(ErrorKind::kInvalidArgument, "PythonRandom::randint",
                "empty range for randint(%lld, %lld)", static_cast<long long>(a),
                static_cast<long long>(b));
  // randrange(a, b + 1) without overflowing at b = INT64_MAX.
  const uint64_t width = static_cast<uint64_t>(b) - static_cast<uint64_t>(a) + 1u;
  if (width == 0)
    throw_error(ErrorKind::kUnsupported, "PythonRandom::randint",
                "a range of 2^64 values needs 65 random bits (at most 64 supported)");
  return static_cast<int64_t>(static_cast<uint64_t>(a) + randbelow(width));
}

}  // namespace razerq::calib
