#include "formats/gguf_vocab.hpp"

#include <cstring>
#include <filesystem>
#include <map>

#include "common/error.hpp"
#include "common/file.hpp"
#include "common/json.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace razerq::formats {
namespace {

// ---- protobuf wire format, only what sentencepiece_model.proto needs ----

class ProtoReader {
 public:
  ProtoReader(const uint8_t* p, size_t n, const std::string& where) : p_(p), n_(n), where_(where) {}
  bool done() const { return pos_ >= n_; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= n_) fail("truncated varint");
      const uint8_t b = p_[pos_++];
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint longer than 10 bytes");
  }
  std::pair<const uint8_t*, size_t> bytes() {
    const uint64_t len = varint();
    if (len > n_ - pos_) fail("length-delimited field runs past the end");
    const uint8_t* r = p_ + pos_;
    pos_ += len;
    return {r, static_cast<size_t>(len)};
  }
  uint32_t fixed32() {
    if (n_ - pos_ < 4) fail("truncated fixed32");
    uint32_t v;
    std::memcpy(&v, p_ + pos_, 4);  // little-endian host (x86-64, aarch64)
    pos_ += 4;
    return v;
  }
  void skip(int wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1:
        if (n_ - pos_ < 8) fail("truncated fixed64");
        pos_ += 8;
        break;
      case 2: bytes(); break;
      case 5: fixed32(); break;
      default: fail("unsupported wire type " + std::to_string(wire));
    }
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw_error(ErrorKind::kMalformedInput, where_, "not a sentencepiece model: %s at byte %zu", what.c_str(), pos_);
  }

 private:
  const uint8_t* p_;
  size_t n_, pos_ = 0;
  const std::string& where_;
};

SentencePiece parse_piece(const uint8_t* p, size_t n, const std::string& where) {
  SentencePiece sp;
  ProtoReader r(p, n, where);
  while (!r.done()) {
    const uint64_t tag = r.varint();
    const int field = static_cast<int>(tag >> 3), wire = static_cast<int>(tag & 7);
    if (field == 1 && wire == 2) {
      auto [b, len] = r.bytes();
      sp.piece.assign(reinterpret_cast<const char*>(b), len);
    } else if (field == 2 && wire == 5) {
      const uint32_t u = r.fixed32();
      std::memcpy(&sp.score, &u, 4);
    } else if (field == 3 && wire == 0) {
      sp.type = static_cast<int32_t>(r.varint());
    } else {
      r.skip(wire);
    }
  }
  return sp;
}

void parse_trainer_spec(const uint8_t* p, size_t n, const std::string& where, SentencePieceModel& m) {
  ProtoReader r(p, n, where);
  while (!r.done()) {
    const uint64_t tag = r.varint();
    const int field = static_cast<int>(tag >> 3), wire = static_cast<int>(tag & 7);
    if (wire == 0 && field >= 40 && field <= 43) {
      const auto v = static_cast<int32_t>(static_cast<int64_t>(r.varint()));  // int32: negatives are 10-byte varints
      if (field == 40) m.unk_id = v;
      if (field == 41) m.bos_id = v;
      if (field == 42) m.eos_id = v;
      if (field == 43) m.pad_id = v;
    } else {
      r.skip(wire);
    }
  }
}

// The pre-tokenizer regexes llama.cpp knows by name (llama-vocab.cpp), as tokenizer.json
// spells them.
const char* const kGpt2Regex = R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re";
const char* const kLlama3Regex =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
const char* const kQwen2Regex =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

// tokenizer.ggml.pre of a byte-level BPE tokenizer.json, from its pre_tokenizer.
std::string bpe_pre_name(const json& tok, const std::string& path) {
  const json& pt = tok.contains("pre_tokenizer") ? tok["pre_tokenizer"] : json();
  std::vector<json> steps;
  if (pt.is_object() && pt.value("type", "") == "Sequence" && pt.contains("pretokenizers"))
    for (const auto& s : pt["pretokenizers"]) steps.push_back(s);
  else if (pt.is_object())
    steps.push_back(pt);
  std::string regex;
  bool byte_level = false;
  for (const auto& s : steps) {
    const std::string type = s.value("type", "");
    if (type == "ByteLevel") {
      byte_level = true;
      if (regex.empty() && s.value("use_regex", true)) regex = kGpt2Regex;
    } else if (type == "Split" && s.contains("pattern") && s["pattern"].contains("Regex")) {
      regex = s["pattern"]["Regex"].get<std::string>();
    } else if (type != "Digits" || !regex.empty()) {
      throw_error(ErrorKind::kUnsupported, path, "pre_tokenizer step '%s' has no llama.cpp pre-tokenizer name", type.c_str());
    }
  }
  if (!byte_level)
    throw_error(ErrorKind::kUnsupported, path,
                "not a byte-level BPE tokenizer (no ByteLevel pre-tokenizer) and no tokenizer.model: no GGUF vocabulary");
  if (regex == kGpt2Regex) return "gpt-2";
  if (regex == kLlama3Regex) return "llama-bpe";
  if (regex == kQwen2Regex) return "qwen2";
  throw_error(ErrorKind::kUnsupported, path,
              "pre-tokenizer regex %s is not one llama.cpp names here (expected the GPT-2, Llama-3 or Qwen2 pattern)",
              json(regex).dump().c_str());
}

// UTF-8 encoding of one code point.
std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// Special-token ids and add_* flags as gguf-py's SpecialVocab finds them for these models:
// tokenizer_config.json add_bos_token/add_eos_token and tokens named by content among
// tokenizer.json's added tokens; config.json *_token_id for what is still unset.
void read_special(const std::string& dir, const json* tokenizer_json, GgufVocab& v) {
  const fs::path d(dir);
  std::map<std::string, int64_t*> ids = {{"bos", &v.bos}, {"eos", &v.eos}, {"unk", &v.unk}, {"pad", &v.pad}};
  const auto n = static_cast<int64_t>(v.tokens.size());
  auto set = [&](const std::string& typ, const json& val) {
    int64_t* dst = ids.at(typ);
    if (*dst >= 0 || !val.is_number_integer()) return;
    const int64_t id = val.get<int64_t>();
    if (id >= 0 && id < n) *dst = id;
  };
  if (fs::is_regular_file(d / "tokenizer_config.json")) {
    const json tc = read_json_object((d / "tokenizer_config.json").string());
    for (const char* typ : {"bos", "eos"}) {
      const std::string key = std::string("add_") + typ + "_token";
      if (tc.contains(key) && tc[key].is_boolean()) (typ[0] == 'b' ? v.add_bos : v.add_eos) = tc[key].get<bool>();
    }
    if (tc.contains("chat_template") && tc["chat_template"].is_string()) v.chat_template = tc["chat_template"];
    if (tokenizer_json && tokenizer_json->contains("added_tokens")) {
      for (const auto& [typ, dst] : ids) {
        (void)dst;
        const std::string key = typ + "_token";
        if (!tc.contains(key)) continue;
        std::string content;
        if (tc[key].is_string()) content = tc[key];
        else if (tc[key].is_object() && tc[key].contains("content") && tc[key]["content"].is_string()) content = tc[key]["content"];
        else continue;
        for (const auto& at : (*tokenizer_json)["added_tokens"])
          if (at.value("content", "") == content) {
            set(typ, at["id"]);
            break;
          }
      }
    }
  }
  if (fs::is_regular_file(d / "config.json")) {
    const json cfg = read_json_object((d / "config.json").string());
    for (const auto& [typ, dst] : ids) {
      (void)dst;
      const std::string key = typ + "_token_id";
      if (cfg.contains(key)) set(typ, cfg[key]);
    }
  }
}

GgufVocab sentencepiece_vocab(const std::string& dir, int64_t vocab_size) {
  const std::string path = (fs::path(dir) / "tokenizer.model").string();
  const SentencePieceModel sp = parse_sentencepiece_model(read_file(path), path);
  GgufVocab v;
  v.model = "llama";
  v.pre = "default";
  if (vocab_size <= 0) vocab_size = static_cast<int64_t>(sp.pieces.size());
  if (static_cast<int64_t>(sp.pieces.size()) > vocab_size)
    throw_error(ErrorKind::kMalformedInput, path, "%zu pieces, more than config.json's vocab_size %lld", sp.pieces.size(),
                static_cast<long long>(vocab_size));
  // convert_hf_to_gguf.py _create_vocab_sentencepiece: ids without a piece are "[PAD<i>]",
  // score -10000, UNUSED; piece types map unknown/control/unused/byte and all else to NORMAL.
  for (int64_t i = 0; i < vocab_size; ++i) {
    if (i < static_cast<int64_t>(sp.pieces.size())) {
      const SentencePiece& p = sp.pieces[static_cast<size_t>(i)];
      v.tokens.push_back(p.piece);
      v.scores.push_back(p.score);
      const int32_t t = p.type;
      v.types.push_back(t == kTokUnknown || t == kTokControl || t == kTokUnused || t == kTokByte ? t : kTokNormal);
    } else {
      v.tokens.push_back("[PAD" + std::to_string(i) + "]");
      v.scores.push_back(-10000.0f);
      v.types.push_back(kTokUnused);
    }
  }
  // added_tokens.json and tokenizer_config.json's added_tokens_decoder override entries.
  const fs::path d(dir);
  auto override_token = [&](int64_t id, const std::string& text, int32_t type) {
    if (id < 0 || id >= vocab_size) return;
    v.tokens[static_cast<size_t>(id)] = text;
    v.scores[static_cast<size_t>(id)] = -1000.0f;
    v.types[static_cast<size_t>(id)] = type;
  };
  if (fs::is_regular_file(d / "added_tokens.json")) {
    const json at = read_json_object((d / "added_tokens.json").string());
    for (const auto& [text, id] : at.items())
      if (id.is_number_integer()) override_token(id.get<int64_t>(), text, kTokUserDefined);
  }
  if (fs::is_regular_file(d / "tokenizer_config.json")) {
    const json tc = read_json_object((d / "tokenizer_config.json").string());
    if (tc.contains("added_tokens_decoder") && tc["added_tokens_decoder"].is_object())
      for (const auto& [key, td] : tc["added_tokens_decoder"].items()) {
        if (!td.is_object() || !td.contains("content") || !td["content"].is_string()) continue;
        std::string text = td["content"];
        const bool special = td.value("special", false);
        if (!special) {  // user-defined pieces are pre-normalized: U+2581 -> ' '
          for (size_t pos; (pos = text.find("\xe2\x96\x81")) != std::string::npos;) text.replace(pos, 3, " ");
        }
        override_token(std::stoll(key), text, special ? kTokControl : kTokUserDefined);
      }
  }
  read_special(dir, nullptr, v);
  return v;
}

GgufVocab bpe_vocab(const std::string& dir, int64_t vocab_size) {
  const std::string path = (fs::path(dir) / "tokenizer.json").string();
  const json tok = read_json_object(path);
  if (!tok.contains("model") || !tok["model"].is_object() || !tok["model"].contains("vocab") ||
      !tok["model"]["vocab"].is_object())
    throw_error(ErrorKind::kMalformedInput, path, "no model.vocab object");
  const json& model = tok["model"];
  if (model.contains("type") && model["type"] != "BPE")
    throw_error(ErrorKind::kUnsupported, path, "model type %s: only BPE tokenizer.json files are exported (or a tokenizer.model)",
                model["type"].dump().c_str());
  GgufVocab v;
  v.model = "gpt2";
  v.pre = bpe_pre_name(tok, path);
  std::map<int64_t, std::string> by_id;
  for (const auto& [text, id] : model["vocab"].items())
    if (id.is_number_integer()) by_id[id.get<int64_t>()] = text;
  std::map<int64_t, bool> added_special;  // id -> special
  if (tok.contains("added_tokens") && tok["added_tokens"].is_array())
    for (const auto& at : tok["added_tokens"]) {
      if (!at.contains("id") || !at.contains("content")) continue;
      const int64_t id = at["id"];
      by_id[id] = at["content"].get<std::string>();
      added_special[id] = at.value("special", false);
    }
  if (vocab_size <= 0) vocab_size = by_id.empty() ? 0 : by_id.rbegin()->first + 1;
  if (!by_id.empty() && by_id.rbegin()->first >= vocab_size)
    throw_error(ErrorKind::kMalformedInput, path, "token id %lld is beyond config.json's vocab_size %lld",
                static_cast<long long>(by_id.rbegin()->first), static_cast<long long>(vocab_size));
  // convert_hf_to_gguf.py get_vocab_base: missing ids are "[PAD<i>]" UNUSED; added tokens are
  // CONTROL when special, else USER_DEFINED; the rest NORMAL.
  for (int64_t i = 0; i < vocab_size; ++i) {
    auto it = by_id.find(i);
    if (it == by_id.end()) {
      v.tokens.push_back("[PAD" + std::to_string(i) + "]");
      v.types.push_back(kTokUnused);
      continue;
    }
    v.tokens.push_back(it->second);
    auto a = added_special.find(i);
    v.types.push_back(a == added_special.end() ? kTokNormal : (a->second ? kTokControl : kTokUserDefined));
  }
  if (model.contains("merges") && model["merges"].is_array())
    for (const auto& m : model["merges"]) {
      if (m.is_string()) {
        v.merges.push_back(m);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        // transformers >= 4.45 pairs; spaces inside a part are written as U+0120 (gguf-py vocab.py)
        std::string joined;
        for (int k = 0; k < 2; ++k) {
          if (k) joined += ' ';
          for (char c : m[k].get<std::string>()) joined += c == ' ' ? utf8(0x120) : std::string(1, c);
        }
        v.merges.push_back(joined);
      } else {
        throw_error(ErrorKind::kMalformedInput, path, "model.merges: entry %s is neither \"a b\" nor [\"a\", \"b\"]", m.dump().c_str());
      }
    }
  if (v.merges.empty()) throw_error(ErrorKind::kMalformedInput, path, "BPE tokenizer without merges");
  read_special(dir, &tok, v);
  return v;
}

}  // namespace

SentencePieceModel parse_sentencepiece_model(const std::string& bytes, const std::string& where) {
  SentencePieceModel m;
  ProtoReader r(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), where);
  while (!r.done()) {
    const uint64_t tag = r.varint();
    const int field = static_cast<int>(tag >> 3), wire = static_cast<int>(tag & 7);
    if (field == 1 && wire == 2) {  // repeated SentencePiece pieces = 1
      auto [b, n] = r.bytes();
      m.pieces.push_back(parse_piece(b, n, where));
    } else if (field == 2 && wire == 2) {  // TrainerSpec trainer_spec = 2
      auto [b, n] = r.bytes();
      parse_trainer_spec(b, n, where, m);
    } else {
      r.skip(wire);
    }
  }
  if (m.pieces.empty()) r.fail("no pieces");
  for (size_t i = 0; i < m.pieces.size(); ++i)
    if (m.pieces[i].type < 1 || m.pieces[i].type > 6)
      throw_error(ErrorKind::kMalformedInput, where, "piece %zu: type %d (expected 1..6)", i, m.pieces[i].type);
  return m;
}

GgufVocab read_gguf_vocab(const std::string& model_dir, int64_t vocab_size) {
  const fs::path d(model_dir);
  if (fs::is_regular_file(d / "tokenizer.model")) return sentencepiece_vocab(model_dir, vocab_size);
  if (fs::is_regular_file(d / "tokenizer.json")) return bpe_vocab(model_dir, vocab_size);
  throw_error(ErrorKind::kMalformedInput, model_dir,
              "no tokenizer.model (sentencepiece) or tokenizer.json (BPE): a GGUF file needs the vocabulary");
}

}  // namespace razerq::formats
