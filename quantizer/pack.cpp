#include "quantizer/pack.hpp"

#include <cstring>

namespace razerq::quantizer {

void pack_row(const uint8_t* codes, int64_t n, int bits, uint32_t* words) {
  const int64_t nw = words_per_row(n, bits);
  std::memset(words, 0, static_cast<size_t>(nw) * sizeof(uint32_t));
  const uint32_t mask = (1u << bits) - 1u;
  if (bits == 4) {  // the common case: 8 codes per word, no straddling
    for (int64_t k = 0; k < n; ++k) words[k >> 3] |= (codes[k] & mask) << ((k & 7) * 4);
    return;
  }
  for (int64_t k = 0; k < n; ++k) {
    const uint32_t c = codes[k] & mask;
    const int64_t pos = k * bits;
    const int64_t w = pos >> 5;
    const int off = static_cast<int>(pos & 31);
    words[w] |= c << off;
    if (off + bits > 32) words[w + 1] |= c >> (32 - off);
  }
}

void unpack_row(const uint32_t* words, int64_t n, int bits, uint8_t* codes) {
  for (int64_t k = 0; k < n; ++k) codes[k] = static_cast<uint8_t>(unpack_one(words, k, bits));
}

}  // namespace razerq::quantizer
