#include "calib/tokenizer_bpe.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <queue>
#include <sstream>
#include <utility>

#include "calib/unicode.hpp"
#include "common/error.hpp"
#include "common/file.hpp"
#include "common/json.hpp"

namespace razerq::calib {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// The three pre-tokenizer regexes, exactly as tokenizer.json spells them (after JSON
// unescaping). The GPT-2 one is also what ByteLevel's use_regex applies.
constexpr std::string_view kGpt2Regex =
    R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kLlama3Regex =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kQwen2Regex =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

// Largest token id accepted (the id -> token table is dense).
constexpr int64_t kMaxId = (int64_t{1} << 24) - 1;

// GPT-2's byte characters: bytes 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF are their own code
// point; the other 68 bytes take U+0100, U+0101, ... in increasing byte order.
std::array<uint32_t, 256> make_byte_to_cp() {
  std::array<uint32_t, 256> map{};
  uint32_t next = 0x100;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool self = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    map[b] = self ? b : next++;
  }
  return map;
}
const std::array<uint32_t, 256> kByteToCp = make_byte_to_cp();

// Inverse: code point (< 0x144) -> byte, or -1.
std::array<int16_t, 0x144> make_cp_to_byte() {
  std::array<int16_t, 0x144> inv;
  inv.fill(-1);
  for (int b = 0; b < 256; ++b) inv[kByteToCp[b]] = static_cast<int16_t>(b);
  return inv;
}
const std::array<int16_t, 0x144> kCpToByte = make_cp_to_byte();

// A JSON value for an error message: scalars dumped and shortened, containers described.
std::string brief(const json& j) {
  if (!j.is_primitive()) return strprintf("%s of %zu elements", j.type_name(), j.size());
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

// Readers for optional fields; a present value of the wrong type is an error.
bool get_bool(const json& obj, const char* key, bool fallback, const std::string& path,
              const char* where) {
  if (!obj.contains(key) || obj.at(key).is_null()) return fallback;
  const json& v = obj.at(key);
  if (!v.is_boolean())
    throw_error(ErrorKind::kMalformedInput, path, "%s: '%s' must be a boolean, got %s", where, key,
                brief(v).c_str());
  return v.get<bool>();
}

std::string get_type(const json& obj, const std::string& path, const char* where) {
  if (!obj.is_object())
    throw_error(ErrorKind::kMalformedInput, path, "%s must be an object or null, got %s", where,
                brief(obj).c_str());
  if (!obj.contains("type") || !obj.at("type").is_string())
    throw_error(ErrorKind::kMalformedInput, path, "%s has no string 'type'", where);
  return obj.at("type").get<std::string>();
}

// A valid tokenizer.json piece that is not implemented.
[[noreturn]] void refuse(const std::string& path, const std::string& what) {
  throw_error(ErrorKind::kUnsupported, path, "%s", what.c_str());
}

// A code point lower-cased the way the (?i:...) contractions compare: ASCII, and the long
// s U+017F, whose simple case folding is 's'.
uint32_t fold(uint32_t c) {
  if (c >= 'A' && c <= 'Z') return c + ('a' - 'A');
  if (c == 0x17F) return 's';
  return c;
}

}  // namespace

// ---- added tokens -------------------------------------------------------------------------

struct BpeTokenizer::Piece {
  std::string_view text;  // when id < 0
  int32_t id;             // an added token, or -1
};

void BpeTokenizer::Trie::insert(const std::string& s, int32_t token) {
  int32_t node = 0;
  for (unsigned char c : s) {
    int32_t child = -1;
    for (const auto& [byte, index] : nodes[node].next)
      if (byte == c) child = index;
    if (child < 0) {
      child = static_cast<int32_t>(nodes.size());
      nodes[node].next.emplace_back(c, child);
      nodes.emplace_back();
    }
    node = child;
  }
  // A later duplicate content keeps the first token (both have the same text anyway).
  if (nodes[node].token < 0) nodes[node].token = token;
}

size_t BpeTokenizer::Trie::longest_at(std::string_view text, size_t i, int32_t* token) const {
  size_t best = 0;
  int32_t node = 0;
  for (size_t k = i; k < text.size(); ++k) {
    const unsigned char c = static_cast<unsigned char>(text[k]);
    int32_t child = -1;
    for (const auto& [byte, index] : nodes[node].next)
      if (byte == c) child = index;
    if (child < 0) break;
    node = child;
    if (nodes[node].token >= 0) {
      best = k + 1 - i;
      *token = nodes[node].token;
    }
  }
  return best;
}

// Cuts `text` into added tokens and the text between them, leftmost-longest (the
// aho-corasick LeftmostLongest of `tokenizers`); empty text pieces are dropped.
void BpeTokenizer::split_added(std::string_view text, const Trie& trie,
                               std::vector<Piece>& out) const {
  out.clear();
  if (trie.empty()) {
    if (!text.empty()) out.push_back({text, -1});
    return;
  }
  size_t start = 0;
  for (size_t i = 0; i < text.size();) {
    int32_t token = -1;
    const size_t len = trie.longest_at(text, i, &token);
    if (len == 0) {
      ++i;
      continue;
    }
    if (start < i) out.push_back({text.substr(start, i - start), -1});
    out.push_back({std::string_view(), added_[token].id});
    i += len;
    start = i;
  }
  if (start < text.size()) out.push_back({text.substr(start), -1});
}

// ---- pre-tokenization -----------------------------------------------------------------------

uint8_t BpeTokenizer::char_class(uint32_t cp) {
  uint8_t k = 0;
  if (unicode::is_letter(cp)) k |= kClassLetter;
  if (unicode::is_number(cp)) k |= kClassNumber;
  if (unicode::is_white_space(cp)) k |= kClassSpace;
  return k;
}

size_t BpeTokenizer::match_pattern(Pattern pattern, const uint32_t* cp, const uint8_t* cls,
                                   size_t n, size_t i) {
  if (i >= n) return i;
  auto letter = [&](size_t k) { return k < n && (cls[k] & kClassLetter); };
  auto number = [&](size_t k) { return k < n && (cls[k] & kClassNumber); };
  auto space = [&](size_t k) { return k < n && (cls[k] & kClassSpace); };
  auto other = [&](size_t k) { return k < n && cls[k] == 0; };  // [^\s\p{L}\p{N}]
  auto crlf = [&](size_t k) { return k < n && (cp[k] == '\r' || cp[k] == '\n'); };
  const uint32_t c = cp[i];

  // Contractions: 's 't 're 've 'm 'll 'd (case-insensitive for Llama-3 / Qwen2).
  if (c == '\'' && i + 1 < n) {
    const bool ci = pattern != Pattern::kGpt2;
    const uint32_t c1 = ci ? fold(cp[i + 1]) : cp[i + 1];
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
    if (i + 2 < n) {
      const uint32_t c2 = ci ? fold(cp[i + 2]) : cp[i + 2];
      if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
        return i + 3;
    }
  }

  if (pattern == Pattern::kGpt2) {
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: the optional space can only be taken
    // by a following run (without it, the space itself matches none of the classes).
    size_t j = c == ' ' ? i + 1 : i;
    if (letter(j)) {
      while (letter(j)) ++j;
      return j;
    }
    if (number(j)) {
      while (number(j)) ++j;
      return j;
    }
    if (other(j)) {
      while (other(j)) ++j;
      return j;
    }
  } else {
    // `[^\r\n\p{L}\p{N}]?\p{L}+`: one optional character that is not CR, LF, a letter or a
    // number (a space, a tab, punctuation...), then letters.
    if (letter(i)) {
      size_t j = i;
      while (letter(j)) ++j;
      return j;
    }
    if (!crlf(i) && !number(i) && letter(i + 1)) {
      size_t j = i + 1;
      while (letter(j)) ++j;
      return j;
    }
    // `\p{N}{1,3}` (Llama-3) or `\p{N}` (Qwen2).
    if (number(i)) {
      const size_t max_len = pattern == Pattern::kLlama3 ? 3 : 1;
      size_t j = i;
      while (j - i < max_len && number(j)) ++j;
      return j;
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    size_t j = c == ' ' ? i + 1 : i;
    if (other(j)) {
      while (other(j)) ++j;
      while (crlf(j)) ++j;
      return j;
    }
    // `\s*[\r\n]+`: the greedy \s* gives back characters until [\r\n]+ matches, so the
    // piece ends after the last CR/LF of the whitespace run.
    if (space(i)) {
      size_t last = n;
      for (size_t k = i; space(k); ++k)
        if (crlf(k)) last = k;
      if (last != n) return last + 1;
    }
  }

  // `\s+(?!\S)|\s+`: a whitespace run followed by a non-space gives back its last
  // character (which then joins the next piece), unless the run is that one character.
  if (space(i)) {
    size_t j = i;
    while (space(j)) ++j;
    if (j == n || j - i == 1) return j;
    return j - 1;
  }
  return i;
}

struct BpeTokenizer::EncodeState {
  std::vector<Piece> raw, normalized;
  // Per pre-tokenizer stage (stages nest): code points, their classes, their byte offsets,
  // and the text with a prefix space when the stage adds one.
  struct Stage {
    std::vector<uint32_t> cps;
    std::vector<uint8_t> classes;
    std::vector<size_t> offsets;
    std::string prefixed;
  };
  std::vector<Stage> stages;
  std::unordered_map<std::string, std::vector<int32_t>> cache;  // pre-token -> ids
};

template <typename OnWord>
void BpeTokenizer::pre_tokenize(std::string_view text, size_t stage, EncodeState& st,
                                OnWord&& on_word) const {
  if (text.empty()) return;
  if (stage == stages_.size()) {
    on_word(text);
    return;
  }
  const PreStage& s = stages_[stage];
  EncodeState::Stage& buf = st.stages[stage];
  if (s.add_prefix_space && text[0] != ' ') {
    buf.prefixed.assign(1, ' ');
    buf.prefixed.append(text);
    text = buf.prefixed;
  }
  if (!s.has_pattern) {
    pre_tokenize(text, stage + 1, st, on_word);
    return;
  }
  // Decode once; the matcher works on code points and their classes.
  buf.cps.clear();
  buf.classes.clear();
  buf.offsets.clear();
  for (size_t i = 0; i < text.size();) {
    const unicode::Utf8Step step = unicode::decode_utf8(text.substr(i));
    // The text was validated in encode(); keep going safely regardless.
    const uint32_t c = step.valid ? step.cp : unicode::kReplacementChar;
    buf.cps.push_back(c);
    buf.classes.push_back(char_class(c));
    buf.offsets.push_back(i);
    i += step.length;
  }
  buf.offsets.push_back(text.size());
  const size_t n = buf.cps.size();
  // Like a regex find-all with the Isolated split behaviour: matches are pieces, and so is
  // any text between them (none for these patterns, which match every character).
  auto emit = [&](size_t a, size_t b) {
    const size_t from = buf.offsets[a], to = buf.offsets[b];
    pre_tokenize(text.substr(from, to - from), stage + 1, st, on_word);
  };
  size_t gap = 0;
  for (size_t i = 0; i < n;) {
    const size_t end = match_pattern(s.pattern, buf.cps.data(), buf.classes.data(), n, i);
    if (end == i) {
      ++i;
      continue;
    }
    if (gap < i) emit(gap, i);
    emit(i, end);
    i = gap = end;
  }
  if (gap < n) emit(gap, n);
}

template <typename OnToken, typename OnWord>
void BpeTokenizer::segment(const std::string& text, EncodeState& st, OnToken&& on_token,
                           OnWord&& on_word) const {
  const size_t bad = unicode::find_invalid_utf8(text);
  if (bad != std::string::npos)
    throw_error(ErrorKind::kInvalidArgument, path_,
                "cannot encode: the text is not valid UTF-8 at byte %zu (of %zu)", bad,
                text.size());
  st.stages.resize(stages_.size());
  split_added(text, raw_trie_, st.raw);
  for (const Piece& p : st.raw) {
    if (p.id >= 0) {
      on_token(p.id);
      continue;
    }
    std::string normalized;
    std::string_view seg = p.text;
    if (nfc_) {
      normalized = unicode::nfc(seg);
      seg = normalized;
    }
    split_added(seg, normalized_trie_, st.normalized);
    for (const Piece& q : st.normalized) {
      if (q.id >= 0)
        on_token(q.id);
      else
        pre_tokenize(q.text, 0, st, on_word);
    }
  }
}

// ---- BPE ----------------------------------------------------------------------------------

std::string BpeTokenizer::to_byte_chars(std::string_view bytes) const {
  std::string s;
  s.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) s += byte_char_[b];
  return s;
}

// Merges the bytes of one pre-token the way `tokenizers` does (models/bpe/word.rs): a
// priority queue of adjacent pairs, lowest rank first and leftmost among equal ranks;
// stale entries are skipped when popped.
void BpeTokenizer::bpe(std::string_view word, std::vector<int32_t>& out) const {
  const size_t n = word.size();
  if (n == 0) return;
  if (n == 1) {
    out.push_back(byte_id_[static_cast<unsigned char>(word[0])]);
    return;
  }
  if (ignore_merges_) {
    const auto it = vocab_.find(to_byte_chars(word));
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  struct Symbol {
    int32_t id;  // -1 once merged into its left neighbour
    int32_t prev, next;
  };
  std::vector<Symbol> sym(n);
  for (size_t k = 0; k < n; ++k)
    sym[k] = {byte_id_[static_cast<unsigned char>(word[k])], static_cast<int32_t>(k) - 1,
              k + 1 < n ? static_cast<int32_t>(k + 1) : -1};

  struct Candidate {
    int32_t rank, pos, new_id;
  };
  auto later = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(later)> queue(later);
  auto find = [&](int32_t a, int32_t b) -> const Merge* {
    const auto it = merges_.find((static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) |
                                 static_cast<uint32_t>(b));
    return it == merges_.end() ? nullptr : &it->second;
  };
  for (size_t k = 0; k + 1 < n; ++k)
    if (const Merge* m = find(sym[k].id, sym[k + 1].id))
      queue.push({m->rank, static_cast<int32_t>(k), m->new_id});

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = sym[top.pos];
    if (left.id < 0 || left.next < 0) continue;
    Symbol& right = sym[left.next];
    const Merge* m = find(left.id, right.id);
    if (m == nullptr || m->new_id != top.new_id) continue;  // stale entry
    left.id = top.new_id;
    left.next = right.next;
    right.id = -1;
    if (left.next >= 0) sym[left.next].prev = top.pos;
    if (left.prev >= 0)
      if (const Merge* pm = find(sym[left.prev].id, left.id))
        queue.push({pm->rank, left.prev, pm->new_id});
    if (left.next >= 0)
      if (const Merge* nm = find(left.id, sym[left.next].id))
        queue.push({nm->rank, top.pos, nm->new_id});
  }
  for (int32_t k = 0; k >= 0; k = sym[k].next) out.push_back(sym[k].id);
}

// ---- public interface ---------------------------------------------------------------------

std::vector<int32_t> BpeTokenizer::encode(const std::string& text, bool add_bos) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 4 + 1);
  if (add_bos && bos_id_ >= 0) ids.push_back(bos_id_);
  EncodeState st;
  segment(
      text, st, [&](int32_t id) { ids.push_back(id); },
      [&](std::string_view word) {
        if (word.size() == 1) {
          ids.push_back(byte_id_[static_cast<unsigned char>(word[0])]);
          return;
        }
        // Text repeats its words: each distinct pre-token is merged once per call.
        auto [it, inserted] = st.cache.try_emplace(std::string(word));
        if (inserted) bpe(word, it->second);
        ids.insert(ids.end(), it->second.begin(), it->second.end());
      });
  return ids;
}

std::vector<std::string> BpeTokenizer::pre_tokens(const std::string& text) const {
  std::vector<std::string> out;
  EncodeState st;
  segment(
      text, st, [](int32_t) {}, [&](std::string_view word) { out.push_back(to_byte_chars(word)); });
  return out;
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= vocab_size() || id_to_token_[id].empty())
      throw_error(ErrorKind::kInvalidArgument, path_,
                  "cannot decode id %d at position %zu (not a token; vocabulary size %d)", id, i,
                  vocab_size());
    bytes += id_to_bytes_[id];
  }
  return unicode::utf8_lossy(bytes);
}

const std::string& BpeTokenizer::id_to_token(int32_t id) const {
  static const std::string kNone;
  return (id >= 0 && id < vocab_size()) ? id_to_token_[id] : kNone;
}

int32_t BpeTokenizer::token_to_id(const std::string& token) const {
  for (const AddedToken& t : added_)
    if (t.content == token) return t.id;
  const auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

// ---- loading ------------------------------------------------------------------------------

std::unique_ptr<BpeTokenizer> BpeTokenizer::load(const std::string& json_path) {
  std::unique_ptr<BpeTokenizer> tok(new BpeTokenizer());
  tok->path_ = json_path;
  tok->parse(read_file(json_path));

  // EOS: tokenizer.json does not say; the files transformers reads next to it do.
  const fs::path dir = fs::path(json_path).parent_path();
  std::error_code ec;
  const fs::path tc = dir / "tokenizer_config.json";
  const fs::path cfg = dir / "config.json";
  if (fs::is_regular_file(tc, ec)) {
    const json j = parse_json_object(read_file(tc.string()), tc.string());
    if (j.contains("eos_token") && !j.at("eos_token").is_null()) {
      const json& e = j.at("eos_token");
      std::string content;
      if (e.is_string())
        content = e.get<std::string>();
      else if (e.is_object() && e.contains("content") && e.at("content").is_string())
        content = e.at("content").get<std::string>();
      else
        throw_error(ErrorKind::kMalformedInput, tc.string(),
                    "'eos_token' must be a string or an object with a string 'content', got %s",
                    brief(e).c_str());
      tok->eos_id_ = tok->token_to_id(content);
      if (tok->eos_id_ < 0)
        throw_error(ErrorKind::kMalformedInput, tc.string(),
                    "eos_token %s is not a token of %s", brief(json(content)).c_str(),
                    json_path.c_str());
      return tok;
    }
  }
  if (fs::is_regular_file(cfg, ec)) {
    const json j = parse_json_object(read_file(cfg.string()), cfg.string());
    if (j.contains("eos_token_id") && !j.at("eos_token_id").is_null()) {
      json e = j.at("eos_token_id");
      if (e.is_array() && !e.empty()) e = json(e.at(0));  // several EOS ids: the first
      if (!e.is_number_integer() || e.get<int64_t>() < 0 ||
          e.get<int64_t>() >= tok->vocab_size())
        throw_error(ErrorKind::kMalformedInput, cfg.string(),
                    "'eos_token_id' must be a token id below %d, got %s", tok->vocab_size(),
                    brief(j.at("eos_token_id")).c_str());
      tok->eos_id_ = static_cast<int32_t>(e.get<int64_t>());
    }
  }
  return tok;
}

void BpeTokenizer::parse(const std::string& text) {
  const std::string& path = path_;
  const json j = parse_json_object(text, path);
  auto unsupported = [&](const std::string& what) { refuse(path, what); };

  // Encoding options that would change every encoding.
  for (const char* key : {"truncation", "padding"})
    if (j.contains(key) && !j.at(key).is_null())
      unsupported(strprintf("'%s' is set (%s); expected null: it would cut or pad every encoding",
                            key, brief(j.at(key)).c_str()));

  // ---- model
  if (!j.contains("model") || !j.at("model").is_object())
    throw_error(ErrorKind::kMalformedInput, path, "missing object 'model'");
  const json& model = j.at("model");
  if (model.contains("type")) {
    const json& t = model.at("type");
    if (!t.is_string())
      throw_error(ErrorKind::kMalformedInput, path, "model: 'type' must be a string, got %s",
                  brief(t).c_str());
    if (t.get<std::string>() != "BPE")
      unsupported(strprintf("model type '%s' is not supported (expected BPE)",
                            t.get<std::string>().c_str()));
  }
  if (!model.contains("vocab") || !model.at("vocab").is_object())
    throw_error(ErrorKind::kMalformedInput, path, "model: missing object 'vocab' (expected a BPE model)");
  if (!model.contains("merges") || !model.at("merges").is_array())
    throw_error(ErrorKind::kMalformedInput, path, "model: missing array 'merges' (expected a BPE model)");
  if (model.contains("dropout") && !model.at("dropout").is_null() &&
      !(model.at("dropout").is_number() && model.at("dropout").get<double>() == 0.0))
    unsupported(strprintf("model: BPE dropout %s is not supported (expected null)",
                          brief(model.at("dropout")).c_str()));
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (!model.contains(key) || model.at(key).is_null()) continue;
    const json& v = model.at(key);
    if (!v.is_string() || !v.get<std::string>().empty())
      unsupported(strprintf("model: '%s' %s is not supported (expected null or \"\")", key,
                            brief(v).c_str()));
  }
  ignore_merges_ = get_bool(model, "ignore_merges", false, path, "model");
  // byte_fallback and unk_token never act: every byte character is in the vocabulary
  // (checked below), so no symbol is ever unknown. Only their types are checked.
  get_bool(model, "byte_fallback", false, path, "model");

  // ---- normalizer: none or NFC (also inside a Sequence)
  std::function<void(const json&, const std::string&)> add_normalizer =
      [&](const json& n, const std::string& where) {
        if (n.is_null()) return;
        const std::string type = get_type(n, path, where.c_str());
        if (type == "NFC") {
          nfc_ = true;
        } else if (type == "Sequence") {
          if (!n.contains("normalizers") || !n.at("normalizers").is_array())
            throw_error(ErrorKind::kMalformedInput, path, "%s: Sequence without 'normalizers'",
                        where.c_str());
          std::string list;
          bool only_nfc = true;
          for (const json& e : n.at("normalizers")) {
            const std::string t = get_type(e, path, (where + ".normalizers[]").c_str());
            list += (list.empty() ? "" : ", ") + t;
            only_nfc = only_nfc && t == "NFC";
          }
          if (!only_nfc)
            unsupported(strprintf("normalizer Sequence [%s] is not supported (only NFC is "
                                  "implemented)",
                                  list.c_str()));
          if (!n.at("normalizers").empty()) nfc_ = true;
        } else {
          unsupported(strprintf("normalizer '%s' is not supported (expected null or NFC)",
                                type.c_str()));
        }
      };
  if (j.contains("normalizer")) add_normalizer(j.at("normalizer"), "normalizer");

  // ---- pre-tokenizer: [Split(regex)]* then ByteLevel
  const json null_value;
  const json& pre = j.contains("pre_tokenizer") ? j.at("pre_tokenizer") : null_value;
  if (pre.is_null())
    unsupported("pre_tokenizer is null: not a byte-level BPE (expected ByteLevel, or a Sequence "
                "of Split and ByteLevel)");
  std::vector<const json*> steps;
  if (get_type(pre, path, "pre_tokenizer") == "Sequence") {
    if (!pre.contains("pretokenizers") || !pre.at("pretokenizers").is_array())
      throw_error(ErrorKind::kMalformedInput, path, "pre_tokenizer: Sequence without 'pretokenizers'");
    for (const json& e : pre.at("pretokenizers")) steps.push_back(&e);
  } else {
    steps.push_back(&pre);
  }
  for (const json* e : steps) {
    const std::string type = get_type(*e, path, "pre_tokenizer");
    if (!stages_.empty() && stages_.back().byte_level)
      unsupported(strprintf("pre_tokenizer: '%s' after ByteLevel is not supported", type.c_str()));
    PreStage st;
    if (type == "Split") {
      const json& pat = e->contains("pattern") ? e->at("pattern") : null_value;
      if (!pat.is_object() || !(pat.contains("Regex") || pat.contains("String")))
        throw_error(ErrorKind::kMalformedInput, path,
                    "pre_tokenizer: Split needs a 'pattern' {\"Regex\": ...} or {\"String\": ...}");
      if (pat.contains("String"))
        unsupported(strprintf("pre_tokenizer: Split on the string %s is not supported (expected a "
                              "Regex)",
                              brief(pat.at("String")).c_str()));
      if (!pat.at("Regex").is_string())
        throw_error(ErrorKind::kMalformedInput, path, "pre_tokenizer: Split 'Regex' must be a string");
      const std::string& re = pat.at("Regex").get_ref<const std::string&>();
      if (re == kGpt2Regex)
        st.pattern = Pattern::kGpt2;
      else if (re == kLlama3Regex)
        st.pattern = Pattern::kLlama3;
      else if (re == kQwen2Regex)
        st.pattern = Pattern::kQwen2;
      else
        unsupported(strprintf("pre_tokenizer: Split regex %s is not supported (expected the "
                              "GPT-2, Llama-3 or Qwen2 pattern)",
                              brief(pat.at("Regex")).c_str()));
      st.has_pattern = true;
      const std::string behavior = e->contains("behavior") && e->at("behavior").is_string()
                                       ? e->at("behavior").get<std::string>()
                                       : brief(e->contains("behavior") ? e->at("behavior") : null_value);
      if (behavior != "Isolated")
        unsupported(strprintf("pre_tokenizer: Split behavior '%s' is not supported (expected "
                              "Isolated)",
                              behavior.c_str()));
      if (get_bool(*e, "invert", false, path, "pre_tokenizer Split"))
        unsupported("pre_tokenizer: Split with invert true is not supported");
    } else if (type == "ByteLevel") {
      st.byte_level = true;
      if (!e->contains("add_prefix_space"))
        throw_error(ErrorKind::kMalformedInput, path, "pre_tokenizer: ByteLevel lacks 'add_prefix_space'");
      st.add_prefix_space = get_bool(*e, "add_prefix_space", false, path, "pre_tokenizer ByteLevel");
      st.has_pattern = get_bool(*e, "use_regex", true, path, "pre_tokenizer ByteLevel");
      st.pattern = Pattern::kGpt2;
    } else {
      unsupported(strprintf("pre_tokenizer '%s' is not supported (expected ByteLevel, or a "
                            "Sequence of Split and ByteLevel)",
                            type.c_str()));
    }
    stages_.push_back(st);
  }
  if (stages_.empty() || !stages_.back().byte_level)
    unsupported("pre_tokenizer has no ByteLevel step: not a byte-level BPE tokenizer");

  // ---- decoder: ByteLevel (or none: decode is the byte-level inverse either way)
  if (j.contains("decoder") && !j.at("decoder").is_null()) {
    const std::string type = get_type(j.at("decoder"), path, "decoder");
    if (type != "ByteLevel")
      unsupported(strprintf("decoder '%s' is not supported (expected ByteLevel)", type.c_str()));
  }

  // vocab: token -> id
  int64_t max_id = -1;
  for (const auto& [token, v] : model.at("vocab").items()) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxId)
      throw_error(ErrorKind::kMalformedInput, path,
                  "model.vocab: token %s has id %s (expected an integer in [0, %lld])",
                  brief(json(token)).c_str(), brief(v).c_str(), static_cast<long long>(kMaxId));
    max_id = std::max(max_id, v.get<int64_t>());
  }
  if (max_id < 0) throw_error(ErrorKind::kMalformedInput, path, "model.vocab is empty");

  // added tokens: their ids may lie beyond the model's vocabulary
  const json empty_array = json::array();
  const json& added = j.contains("added_tokens") && !j.at("added_tokens").is_null()
                          ? j.at("added_tokens")
                          : empty_array;
  if (!added.is_array())
    throw_error(ErrorKind::kMalformedInput, path, "'added_tokens' must be an array, got %s",
                brief(added).c_str());
  for (const json& a : added)
    if (a.is_object() && a.contains("id") && a.at("id").is_number_integer())
      max_id = std::max(max_id, std::min<int64_t>(a.at("id").get<int64_t>(), kMaxId));

  id_to_token_.assign(static_cast<size_t>(max_id) + 1, std::string());
  vocab_.reserve(model.at("vocab").size());
  for (const auto& [token, v] : model.at("vocab").items()) {
    const int32_t id = static_cast<int32_t>(v.get<int64_t>());
    if (token.empty())
      throw_error(ErrorKind::kMalformedInput, path, "model.vocab: empty token (id %d)", id);
    if (!id_to_token_[id].empty())
      throw_error(ErrorKind::kMalformedInput, path, "model.vocab: id %d is used by %s and %s", id,
                  brief(json(id_to_token_[id])).c_str(), brief(json(token)).c_str());
    id_to_token_[id] = token;
    vocab_.emplace(token, id);
  }

  // ---- byte characters: a byte-level vocabulary has all 256
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    unicode::append_utf8(ch, kByteToCp[b]);
    const auto it = vocab_.find(ch);
    if (it == vocab_.end())
      unsupported(strprintf("model.vocab lacks the byte character U+%04X of byte 0x%02X: not a "
                            "byte-level BPE vocabulary",
                            kByteToCp[b], b));
    byte_char_[b] = ch;
    byte_id_[b] = it->second;
  }

  // ---- merges: "A B" strings (merges.txt lines) or ["A", "B"] pairs; rank = position
  const json& merges = model.at("merges");
  merges_.reserve(merges.size());
  int32_t rank = 0;
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges.at(i);
    std::string a, b;
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      if (s.rfind("#version", 0) == 0) continue;  // a merges.txt header: not a merge
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        throw_error(ErrorKind::kMalformedInput, path,
                    "model.merges[%zu] is %s (expected two tokens separated by one space)", i,
                    brief(m).c_str());
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m.at(0).is_string() && m.at(1).is_string()) {
      a = m.at(0).get<std::string>();
      b = m.at(1).get<std::string>();
    } else {
      throw_error(ErrorKind::kMalformedInput, path,
                  "model.merges[%zu] is %s (expected \"A B\" or [\"A\", \"B\"])", i,
                  brief(m).c_str());
    }
    int32_t ids[3];
    const std::string parts[3] = {a, b, a + b};
    for (int k = 0; k < 3; ++k) {
      const auto it = vocab_.find(parts[k]);
      if (it == vocab_.end())
        throw_error(ErrorKind::kMalformedInput, path,
                    "model.merges[%zu] (%s): token %s is not in the vocabulary", i,
                    brief(m).c_str(), brief(json(parts[k])).c_str());
      ids[k] = it->second;
    }
    // As in `tokenizers`, a repeated pair keeps its last rank.
    merges_[(static_cast<uint64_t>(static_cast<uint32_t>(ids[0])) << 32) |
            static_cast<uint32_t>(ids[1])] = Merge{rank, ids[2]};
    ++rank;
  }

  // ---- added tokens
  for (size_t i = 0; i < added.size(); ++i) {
    const json& a = added.at(i);
    const std::string where = strprintf("added_tokens[%zu]", i);
    if (!a.is_object() || !a.contains("id") || !a.at("id").is_number_integer() ||
        a.at("id").get<int64_t>() < 0 || a.at("id").get<int64_t>() > kMaxId ||
        !a.contains("content") || !a.at("content").is_string() ||
        a.at("content").get_ref<const std::string&>().empty())
      throw_error(ErrorKind::kMalformedInput, path,
                  "%s is %s (expected an object with an integer 'id' and a non-empty 'content')",
                  where.c_str(), brief(a).c_str());
    AddedToken t;
    t.id = static_cast<int32_t>(a.at("id").get<int64_t>());
    t.content = a.at("content").get<std::string>();
    for (const char* key : {"lstrip", "rstrip", "single_word"})
      if (get_bool(a, key, false, path, where.c_str()))
        unsupported(strprintf("%s (%s) has '%s': true, which is not supported", where.c_str(),
                              brief(a.at("content")).c_str(), key));
    const bool special = get_bool(a, "special", false, path, where.c_str());
    const bool normalized = get_bool(a, "normalized", !special, path, where.c_str());
    if (unicode::find_invalid_utf8(t.content) != std::string::npos)
      throw_error(ErrorKind::kMalformedInput, path, "%s: content is not valid UTF-8", where.c_str());
    const int32_t index = static_cast<int32_t>(added_.size());
    if (normalized)
      normalized_trie_.insert(nfc_ ? unicode::nfc(t.content) : t.content, index);
    else
      raw_trie_.insert(t.content, index);
    id_to_token_[t.id] = t.content;  // decode shows the added token's text
    added_.push_back(std::move(t));
  }

  // ---- post-processor: what encode(add_bos = true) adds
  std::function<void(const json&)> add_post = [&](const json& p) {
    if (p.is_null()) return;
    const std::string type = get_type(p, path, "post_processor");
    if (type == "ByteLevel") return;  // only adjusts offsets
    if (type == "Sequence") {
      if (!p.contains("processors") || !p.at("processors").is_array())
        throw_error(ErrorKind::kMalformedInput, path, "post_processor: Sequence without 'processors'");
      for (const json& e : p.at("processors")) add_post(e);
      return;
    }
    if (type != "TemplateProcessing")
      unsupported(strprintf("post_processor '%s' is not supported (expected null, ByteLevel or "
                            "TemplateProcessing)",
                            type.c_str()));
    if (!p.contains("single") || !p.at("single").is_array())
      throw_error(ErrorKind::kMalformedInput, path, "post_processor: TemplateProcessing without a 'single' list");
    std::vector<int32_t> before, after;
    bool seen_sequence = false;
    for (const json& item : p.at("single")) {
      if (item.is_object() && item.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      if (!item.is_object() || !item.contains("SpecialToken") ||
          !item.at("SpecialToken").is_object() || !item.at("SpecialToken").contains("id") ||
          !item.at("SpecialToken").at("id").is_string())
        throw_error(ErrorKind::kMalformedInput, path,
                    "post_processor: template item %s (expected {\"SpecialToken\": {\"id\": ...}} "
                    "or {\"Sequence\": ...})",
                    brief(item).c_str());
      const std::string name = item.at("SpecialToken").at("id").get<std::string>();
      const json* spec = nullptr;
      if (p.contains("special_tokens") && p.at("special_tokens").is_object() &&
          p.at("special_tokens").contains(name))
        spec = &p.at("special_tokens").at(name);
      if (spec == nullptr || !spec->contains("ids") || !spec->at("ids").is_array())
        throw_error(ErrorKind::kMalformedInput, path,
                    "post_processor: special token %s has no 'ids' in 'special_tokens'",
                    brief(json(name)).c_str());
      for (const json& id : spec->at("ids")) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
            id.get<int64_t>() >= static_cast<int64_t>(id_to_token_.size()))
          throw_error(ErrorKind::kMalformedInput, path,
                      "post_processor: special token %s has id %s (not in the vocabulary)",
                      brief(json(name)).c_str(), brief(id).c_str());
        (seen_sequence ? after : before).push_back(static_cast<int32_t>(id.get<int64_t>()));
      }
    }
    if (!seen_sequence)
      throw_error(ErrorKind::kMalformedInput, path, "post_processor: template 'single' has no Sequence");
    if (!after.empty() || before.size() > 1 || (bos_id_ >= 0 && !before.empty()))
      unsupported(strprintf("post_processor: a template that adds %zu token(s) before and %zu "
                            "after the text is not supported (expected at most one BOS before it)",
                            before.size() + (bos_id_ >= 0 ? 1 : 0), after.size()));
    if (!before.empty()) bos_id_ = before[0];
  };
  if (j.contains("post_processor")) add_post(j.at("post_processor"));

  // ---- what decode emits per id: the byte characters mapped back to bytes; a token with
  // other characters (an added token's text) as its own UTF-8, as the ByteLevel decoder does.
  id_to_bytes_.assign(id_to_token_.size(), std::string());
  for (size_t id = 0; id < id_to_token_.size(); ++id) {
    const std::string& t = id_to_token_[id];
    std::string bytes;
    bool all_bytes = true;
    for (size_t i = 0; i < t.size() && all_bytes;) {
      const unicode::Utf8Step step = unicode::decode_utf8(std::string_view(t).substr(i));
      if (!step.valid || step.cp >= kCpToByte.size() || kCpToByte[step.cp] < 0) {
        all_bytes = false;
        break;
      }
      bytes.push_back(static_cast<char>(kCpToByte[step.cp]));
      i += step.length;
    }
    id_to_bytes_[id] = all_bytes ? bytes : t;
  }
}

}  // namespace razerq::calib
