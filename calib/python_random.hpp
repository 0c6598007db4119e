#pragma once
// CPython's `random` module, bit for bit: the Mersenne Twister MT19937 of
// Modules/_randommodule.c and the integer helpers of Lib/random.py. The reference
// evaluation and calibration loaders (IST-DASLab/gptq datautils.py and its forks) draw
// their C4 documents and crop offsets with `random.seed(seed)` + `random.randint`, so the
// same windows can only be cut with the same generator.
//
// What is reproduced (CPython 3.2 and later; checked against CPython 3.11):
//   random.seed(n)       n an int: init_by_array with the 32-bit words of |n|, least
//                        significant first ([0] for n == 0)
//   random.getrandbits(k) k <= 32: the next word >> (32 - k); k > 32: words filled least
//                        significant first, the last one shifted down to the bits left
//   random.random()      (a * 2^26 + b) / 2^53 with a = word >> 5, b = word >> 6
//   random._randbelow(n) k = n.bit_length(); draw getrandbits(k) until it is < n
//   random.randrange(a, b) / randint(a, b) = a + _randbelow(b - a) / (b - a + 1)
// Seeds and results are limited to 64-bit integers (Python's are unbounded).
#include <array>
#include <cstdint>

namespace razerq::calib {

class PythonRandom {
 public:
  // Equivalent to `random.seed(seed)` (so PythonRandom(0) is `random.seed(0)`).
  explicit PythonRandom(int64_t seed = 0) { this->seed(seed); }

  // `random.seed(seed)` for an int seed: the sign is dropped, as CPython does.
  void seed(int64_t seed);

  // The next 32-bit output of MT19937 (CPython's genrand_uint32).
  uint32_t next_uint32();

  // `random.random()`: a double in [0, 1) with 53 random bits.
  double random();

  // `random.getrandbits(k)` for 0 <= k <= 64.
  uint64_t getrandbits(int k);

  // `random._randbelow(n)` (the getrandbits path): uniform in [0, n), n >= 1.
  uint64_t randbelow(uint64_t n);

  // `random.randrange(start, stop)`: uniform in [start, stop); stop > start, and the width
  // must fit in 64 bits. Throws razerq::Error (invalid argument) on an empty range, where
  // Python raises ValueError.
  int64_t randrange(int64_t start, int64_t stop);

  // `random.randint(a, b)` = randrange(a, b + 1): uniform in [a, b], a <= b.
  int64_t randint(int64_t a, int64_t b);

 private:
  static constexpr int kN = 624;  // MT19937 state words
  static constexpr int kM = 397;  // MT19937 middle word offset
  void init_genrand(uint32_t s);
  void init_by_array(const uint32_t* key, int key_length);

  std::array<uint32_t, kN> mt_{};
  int index_ = kN + 1;
};

}  // namespace razerq::calib
