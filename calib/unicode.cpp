#include "calib/unicode.hpp"

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "calib/unicode_tables.hpp"

namespace razerq::calib::unicode {
namespace {

namespace t = tables;

// Hangul syllables compose and decompose algorithmically (Unicode chapter 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr uint32_t kNCount = kVCount * kTCount;
constexpr uint32_t kSCount = kLCount * kNCount;

bool in_ranges(const t::CodepointRange* ranges, size_t n, uint32_t cp) {
  // First range whose last >= cp; cp is in it when first <= cp.
  const t::CodepointRange* end = ranges + n;
  const t::CodepointRange* it = std::lower_bound(
      ranges, end, cp, [](const t::CodepointRange& r, uint32_t c) { return r.last < c; });
  return it != end && it->first <= cp;
}

// ASCII flags: the pre-tokenizer asks about nearly every character, most of them ASCII.
enum : uint8_t { kAsciiLetter = 1, kAsciiNumber = 2, kAsciiSpace = 4 };
constexpr std::array<uint8_t, 128> make_ascii_flags() {
  std::array<uint8_t, 128> f{};
  for (int c = 'A'; c <= 'Z'; ++c) f[c] = kAsciiLetter;
  for (int c = 'a'; c <= 'z'; ++c) f[c] = kAsciiLetter;
  for (int c = '0'; c <= '9'; ++c) f[c] = kAsciiNumber;
  for (int c = 0x09; c <= 0x0D; ++c) f[c] = kAsciiSpace;
  f[' '] = kAsciiSpace;
  return f;
}
constexpr std::array<uint8_t, 128> kAsciiFlags = make_ascii_flags();

bool is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

// Full canonical decomposition of cp appended to out.
void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const t::Decomposition* end = t::kDecomposition + t::kDecomposition_size;
  const t::Decomposition* it = std::lower_bound(
      t::kDecomposition, end, cp, [](const t::Decomposition& d, uint32_t c) { return d.cp < c; });
  if (it != end && it->cp == cp) {
    out.insert(out.end(), t::kDecompositionData + it->offset,
               t::kDecompositionData + it->offset + it->length);
  } else {
    out.push_back(cp);
  }
}

// The primary composite of (a, b), or 0 when they do not compose.
uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  const t::Composition* end = t::kComposition + t::kComposition_size;
  const t::Composition* it =
      std::lower_bound(t::kComposition, end, std::make_pair(a, b),
                       [](const t::Composition& c, const std::pair<uint32_t, uint32_t>& key) {
                         return c.first < key.first || (c.first == key.first && c.second < key.second);
                       });
  return (it != end && it->first == a && it->second == b) ? it->composite : 0;
}

}  // namespace

const char* table_version() { return t::kUnicodeVersion; }

Utf8Step decode_utf8(std::string_view s) {
  if (s.empty()) return {0, 0, false};
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const unsigned char b0 = p[0];
  if (b0 < 0x80) return {b0, 1, true};
  // Sequence length and the allowed range of the second byte (which excludes overlong
  // forms, surrogates and values above U+10FFFF), per Unicode Table 3-7.
  uint32_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  uint32_t cp;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {0, 1, false};  // a continuation byte, C0, C1 or F5..FF: never a lead byte
  }
  for (uint32_t k = 1; k < need; ++k) {
    if (k >= s.size()) return {0, k, false};
    const unsigned char b = p[k];
    const bool ok = (k == 1) ? (b >= lo && b <= hi) : is_continuation(b);
    if (!ok) return {0, k, false};
    cp = (cp << 6) | (b & 0x3F);
  }
  return {cp, need, true};
}

size_t find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const Utf8Step step = decode_utf8(s.substr(i));
    if (!step.valid) return i;
    i += step.length;
  }
  return std::string_view::npos;
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    const Utf8Step step = decode_utf8(bytes.substr(i));
    if (step.valid)
      out.append(bytes.data() + i, step.length);
    else
      append_utf8(out, kReplacementChar);
    i += step.length;
  }
  return out;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool is_letter(uint32_t cp) {
  if (cp < 128) return kAsciiFlags[cp] & kAsciiLetter;
  return in_ranges(t::kLetter, t::kLetter_size, cp);
}

bool is_number(uint32_t cp) {
  if (cp < 128) return kAsciiFlags[cp] & kAsciiNumber;
  return in_ranges(t::kNumber, t::kNumber_size, cp);
}

bool is_white_space(uint32_t cp) {
  if (cp < 128) return kAsciiFlags[cp] & kAsciiSpace;
  return in_ranges(t::kWhiteSpace, t::kWhiteSpace_size, cp);
}

uint8_t combining_class(uint32_t cp) {
  if (cp < 0x300) return 0;  // the first non-zero class is U+0300 (checked by the generator)
  const t::CombiningClassRange* end = t::kCombiningClass + t::kCombiningClass_size;
  const t::CombiningClassRange* it =
      std::lower_bound(t::kCombiningClass, end, cp,
                       [](const t::CombiningClassRange& r, uint32_t c) { return r.last < c; });
  return (it != end && it->first <= cp) ? it->ccc : 0;
}

std::string nfc(std::string_view utf8) {
  // Fast path: text without code points >= U+0300 is NFC already (no decomposable character
  // below U+0300 changes under NFC, and nothing there composes with a following character;
  // the generator checks both). Those code points are exactly the UTF-8 bytes < 0xCC.
  if (std::none_of(utf8.begin(), utf8.end(),
                   [](char c) { return static_cast<unsigned char>(c) >= 0xCC; }))
    return std::string(utf8);

  // 1. Full canonical decomposition.
  std::vector<uint32_t> d;
  d.reserve(utf8.size());
  for (size_t i = 0; i < utf8.size();) {
    const Utf8Step step = decode_utf8(utf8.substr(i));
    decompose(step.valid ? step.cp : kReplacementChar, d);
    i += step.length;
  }
  // 2. Canonical ordering: a stable sort of every run of non-starters by combining class.
  std::vector<uint8_t> ccc(d.size());
  for (size_t i = 0; i < d.size(); ++i) ccc[i] = combining_class(d[i]);
  for (size_t i = 0; i < d.size();) {
    if (ccc[i] == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && ccc[j] != 0) ++j;
    for (size_t a = i + 1; a < j; ++a) {  // insertion sort: runs are short, and it is stable
      const uint32_t c = d[a];
      const uint8_t k = ccc[a];
      size_t b = a;
      for (; b > i && ccc[b - 1] > k; --b) {
        d[b] = d[b - 1];
        ccc[b] = ccc[b - 1];
      }
      d[b] = c;
      ccc[b] = k;
    }
    i = j;
  }
  // 3. Canonical composition: each character joins the last starter unless blocked (a
  // character in between with class 0 or with a class >= its own).
  std::vector<uint32_t> out;
  std::vector<uint8_t> out_ccc;
  out.reserve(d.size());
  out_ccc.reserve(d.size());
  long starter = -1;
  for (size_t i = 0; i < d.size(); ++i) {
    const uint32_t c = d[i];
    const uint8_t k = ccc[i];
    if (starter >= 0) {
      const bool adjacent = out.size() == static_cast<size_t>(starter) + 1;
      const uint8_t last = out_ccc.back();
      if (adjacent || (last != 0 && last < k)) {
        if (const uint32_t comp = compose(out[starter], c)) {
          out[starter] = comp;
          out_ccc[starter] = combining_class(comp);
          continue;
        }
      }
    }
    if (k == 0) starter = static_cast<long>(out.size());
    out.push_back(c);
    out_ccc.push_back(k);
  }
  std::string result;
  result.reserve(utf8.size());
  for (uint32_t c : out) append_utf8(result, c);
  return result;
}

}  // namespace razerq::calib::unicode
