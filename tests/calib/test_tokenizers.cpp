// Tokenizer unit tests that need no shared data: the Unicode helpers (UTF-8, classes, NFC),
// byte-level BPE on small synthetic tokenizer.json files (merge order, ignore_merges, added
// tokens, normalization, pre-tokenizer options, post-processor, decode, EOS lookup), and
// every load / encode / decode error path of both tokenizer kinds and of load_tokenizer.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "calib/tokenizer.hpp"
#include "calib/tokenizer_bpe.hpp"
#include "calib/tokenizer_sentencepiece.hpp"
#include "calib/unicode.hpp"
#include "common/error.hpp"
#include "tests/test_util.hpp"

namespace razerq::calib {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::TempDir;

// ---- helpers ---------------------------------------------------------------------------

using test::catch_error;
using test::Contains;

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

// GPT-2's byte characters, written independently of the library: bytes 0x21-0x7E,
// 0xA1-0xAC, 0xAE-0xFF are themselves, the others U+0100.. in byte order.
std::string byte_chars(const std::string& bytes) {
  std::string out;
  for (unsigned char b : bytes) {
    uint32_t cp = b;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) {
      cp = 0x100;
      for (unsigned x = 0; x < b; ++x)
        if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE)) ++cp;
    }
    unicode::append_utf8(out, cp);
  }
  return out;
}

// A small byte-level BPE tokenizer.json: the 256 byte characters as ids 0..255 (id = byte),
// then one token per merge (ids 256, 257, ... in merge order), merges given as raw byte
// strings (spelled as byte characters in the file), and any extra vocabulary tokens.
json tiny_tokenizer(const std::vector<std::pair<std::string, std::string>>& merges,
                    const std::vector<std::string>& extra_tokens = {}) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_chars(std::string(1, static_cast<char>(b)))] = b;
  int next = 256;
  json m = json::array();
  for (const auto& [a, b] : merges) {
    m.push_back(byte_chars(a) + " " + byte_chars(b));
    if (!vocab.contains(byte_chars(a + b))) vocab[byte_chars(a + b)] = next++;
  }
  for (const std::string& t : extra_tokens)
    if (!vocab.contains(byte_chars(t))) vocab[byte_chars(t)] = next++;
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}}},
          {"post_processor", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}}},
          {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"continuing_subword_prefix", ""},
            {"end_of_word_suffix", ""},
            {"fuse_unk", false},
            {"vocab", vocab},
            {"merges", m}}}};
}

json added_token(int id, const std::string& content, bool special, bool normalized) {
  return {{"id", id},        {"content", content},       {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", normalized}, {"special", special}};
}

std::unique_ptr<BpeTokenizer> load_json(const TempDir& dir, const json& j,
                                        const std::string& name = "tokenizer.json") {
  write_file(dir.str(name), j.dump());
  return BpeTokenizer::load(dir.str(name));
}

// Ids of raw byte strings in a tiny tokenizer.
int32_t id_of(const BpeTokenizer& t, const std::string& bytes) {
  return t.token_to_id(byte_chars(bytes));
}

// ---- Unicode -----------------------------------------------------------------------------

TEST(Unicode, CharacterClasses) {
  for (uint32_t c : {uint32_t('a'), uint32_t('Z'), 0xE9u, 0x4E2Du, 0x1C5u /* Lt */,
                     0x2B0u /* Lm */, 0x17Fu, 0xAC00u, 0x10400u})
    EXPECT_TRUE(unicode::is_letter(c)) << std::hex << c;
  for (uint32_t c : {uint32_t('1'), uint32_t('_'), uint32_t(' '), 0x301u /* Mn */, 0x1F600u,
                     0xD800u, 0x110000u})
    EXPECT_FALSE(unicode::is_letter(c)) << std::hex << c;
  for (uint32_t c : {uint32_t('0'), uint32_t('9'), 0xB2u /* No */, 0x663u /* Nd */,
                     0x2167u /* Nl */, 0x1D7CEu})
    EXPECT_TRUE(unicode::is_number(c)) << std::hex << c;
  for (uint32_t c : {uint32_t('a'), uint32_t('.'), 0x301u}) EXPECT_FALSE(unicode::is_number(c));
  // \s is White_Space: not U+001C..U+001F (str.isspace has them), not ZWSP or the BOM.
  for (uint32_t c : {0x09u, 0x0Au, 0x0Bu, 0x0Cu, 0x0Du, 0x20u, 0x85u, 0xA0u, 0x1680u, 0x2000u,
                     0x200Au, 0x2028u, 0x2029u, 0x202Fu, 0x205Fu, 0x3000u})
    EXPECT_TRUE(unicode::is_white_space(c)) << std::hex << c;
  for (uint32_t c : {0x1Cu, 0x1Fu, 0x200Bu, 0xFEFFu, 0x180Eu, uint32_t('x')})
    EXPECT_FALSE(unicode::is_white_space(c)) << std::hex << c;
  EXPECT_EQ(unicode::combining_class(0x301), 230);
  EXPECT_EQ(unicode::combining_class(0x323), 220);
  EXPECT_EQ(unicode::combining_class(0x3099), 8);
  EXPECT_EQ(unicode::combining_class('a'), 0);
  EXPECT_STRNE(unicode::table_version(), "");
}

TEST(Unicode, DecodeUtf8MaximalSubparts) {
  auto step = [](const std::string& s) { return unicode::decode_utf8(s); };
  EXPECT_EQ(step("a").cp, 'a');
  EXPECT_EQ(step("\xc3\xa9").cp, 0xE9u);
  EXPECT_EQ(step("\xe2\x82\xac").cp, 0x20ACu);
  EXPECT_EQ(step("\xf0\x9f\x98\x80").cp, 0x1F600u);
  EXPECT_EQ(step("\xf0\x9f\x98\x80").length, 4u);
  struct Bad {
    const char* bytes;
    uint32_t length;
  };
  for (const Bad& b : {Bad{"\x80", 1}, Bad{"\xc0\x80", 1}, Bad{"\xe0\x80\xaf", 1},
                       Bad{"\xe2\x82", 2}, Bad{"\xed\xa0\x80", 1}, Bad{"\xf0\x9f\x98", 3},
                       Bad{"\xf4\x90\x80\x80", 1}, Bad{"\xff", 1}, Bad{"\xe2\x28\xa1", 1}}) {
    const unicode::Utf8Step s = step(b.bytes);
    EXPECT_FALSE(s.valid) << b.bytes;
    EXPECT_EQ(s.length, b.length) << b.bytes;
  }
  EXPECT_EQ(unicode::find_invalid_utf8("ok \xc3\xa9"), std::string::npos);
  EXPECT_EQ(unicode::find_invalid_utf8("ok \xc3"), 3u);
}

TEST(Unicode, LossyDecodingAsPythonAndRust) {
  // Expected strings from Python's bytes.decode("utf-8", "replace").
  const std::string r = "\xef\xbf\xbd";  // U+FFFD
  EXPECT_EQ(unicode::utf8_lossy("a\xf0\x9f\x98" "b"), "a" + r + "b");
  EXPECT_EQ(unicode::utf8_lossy("\xc0\x80"), r + r);
  EXPECT_EQ(unicode::utf8_lossy("\xe2\x82"), r);
  EXPECT_EQ(unicode::utf8_lossy("\xed\xa0\x80"), r + r + r);
  EXPECT_EQ(unicode::utf8_lossy("\xf4\x90\x80\x80"), r + r + r + r);
  EXPECT_EQ(unicode::utf8_lossy("\xe0\x80\xaf"), r + r + r);
  EXPECT_EQ(unicode::utf8_lossy("\xf0\x9f\x98\x80\x80"), "\xf0\x9f\x98\x80" + r);
  EXPECT_EQ(unicode::utf8_lossy("\xff\xfe"), r + r);
  EXPECT_EQ(unicode::utf8_lossy("\xe2\x82\xac"), "\xe2\x82\xac");
}

TEST(Unicode, Nfc) {
  // Expected strings from Python's unicodedata.normalize("NFC", ...).
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"e\xcc\x81", "\xc3\xa9"},                                   // e + U+0301 -> é
      {"a\xcc\xa3\xcc\x82", "\xe1\xba\xad"},                       // a + 0323 + 0302 -> U+1EAD
      {"a\xcc\x82\xcc\xa3", "\xe1\xba\xad"},                       // reordered first
      {"\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81"},    // Hangul L V T -> U+AC01
      {"\xea\xb0\x80\xe1\x86\xa8", "\xea\xb0\x81"},                // LV + T
      {"\xe2\x84\xab", "\xc3\x85"},                                // Angstrom sign -> Å
      {"\xcd\x84", "\xcc\x88\xcc\x81"},                            // U+0344 -> 0308 0301
      {"q\xcc\x87\xcc\xa3", "q\xcc\xa3\xcc\x87"},                  // canonical order
      {"\xe0\xa5\x98", "\xe0\xa4\x95\xe0\xa4\xbc"},                // U+0958: composition exclusion
      {"A\xcc\x8a\xcc\x81", "\xc7\xba"},                           // two steps -> U+01FA
      {"\xe1\xb8\x8b\xcc\xa3", "\xe1\xb8\x8d\xcc\x87"},            // U+1E0B U+0323 -> 1E0D 0307
      {"x\xcc\x81\xcc\x81", "x\xcc\x81\xcc\x81"},                  // nothing composes
      {"\xcc\x81" "a", "\xcc\x81" "a"},                            // leading mark
      {"\xef\xa4\x80", "\xe8\xb1\x88"},                            // CJK compatibility U+F900
      {"\xe2\x84\xa6", "\xce\xa9"},                                // Ohm sign -> Ω
      {"caf\xc3\xa9 plain ASCII", "caf\xc3\xa9 plain ASCII"}};
  for (const auto& [in, want] : cases) EXPECT_EQ(unicode::nfc(in), want) << in;
}

// ---- pre-tokenizer patterns (targeted; test_tokenizers_variants.cpp has the fuzz) ----------

std::vector<std::string> split(BpeTokenizer::Pattern p, const std::string& text) {
  std::vector<uint32_t> cps;
  std::vector<uint8_t> cls;
  std::vector<size_t> offs;
  for (size_t i = 0; i < text.size();) {
    const unicode::Utf8Step st = unicode::decode_utf8(std::string_view(text).substr(i));
    cps.push_back(st.cp);
    cls.push_back(BpeTokenizer::char_class(st.cp));
    offs.push_back(i);
    i += st.length;
  }
  offs.push_back(text.size());
  std::vector<std::string> out;
  for (size_t i = 0; i < cps.size();) {
    size_t end = BpeTokenizer::match_pattern(p, cps.data(), cls.data(), cps.size(), i);
    if (end == i) end = i + 1;  // never happens for these patterns
    out.push_back(text.substr(offs[i], offs[end] - offs[i]));
    i = end;
  }
  return out;
}

using V = std::vector<std::string>;

TEST(PreTokenizerPattern, Gpt2) {
  using P = BpeTokenizer::Pattern;
  EXPECT_EQ(split(P::kGpt2, "a \n\n  b"), (V{"a", " \n\n ", " b"}));
  EXPECT_EQ(split(P::kGpt2, "trailing spaces   "), (V{"trailing", " spaces", "   "}));
  EXPECT_EQ(split(P::kGpt2, "   three"), (V{"  ", " three"}));
  EXPECT_EQ(split(P::kGpt2, "DON'T don't"), (V{"DON", "'", "T", " don", "'t"}));
  EXPECT_EQ(split(P::kGpt2, "1234567 x2"), (V{"1234567", " x", "2"}));
  EXPECT_EQ(split(P::kGpt2, "\tword\xc2\xa0word"), (V{"\t", "word", "\xc2\xa0", "word"}));
  EXPECT_EQ(split(P::kGpt2, "e\xcc\x81!?"), (V{"e", "\xcc\x81!?"}));
}

TEST(PreTokenizerPattern, Llama3AndQwen2) {
  using P = BpeTokenizer::Pattern;
  // Case-insensitive contractions, including the long s (simple case folding to 's').
  EXPECT_EQ(split(P::kLlama3, "DON'T x'\xc5\xbf 'Ll"), (V{"DON", "'T", " x", "'\xc5\xbf", " '", "Ll"}));
  // One non-letter, non-number, non-CR/LF character joins the word (a tab too).
  EXPECT_EQ(split(P::kLlama3, "\thello (world"), (V{"\thello", " (", "world"}));
  // Digits by three (Llama-3) or one (Qwen2).
  EXPECT_EQ(split(P::kLlama3, "1234567"), (V{"123", "456", "7"}));
  EXPECT_EQ(split(P::kQwen2, "1234"), (V{"1", "2", "3", "4"}));
  // Punctuation keeps the line breaks after it; whitespace before a line break goes with it.
  EXPECT_EQ(split(P::kLlama3, "end.\n\n  x"), (V{"end", ".\n\n", " ", " x"}));
  EXPECT_EQ(split(P::kLlama3, "a  \n  b"), (V{"a", "  \n", " ", " b"}));
  EXPECT_EQ(split(P::kLlama3, "x \r\n"), (V{"x", " \r\n"}));
  EXPECT_EQ(split(P::kLlama3, "tail   "), (V{"tail", "   "}));
}

// ---- BPE on synthetic tokenizers ---------------------------------------------------------

TEST(BpeTokenizer, MergesLowestRankFirst) {
  TempDir dir;
  auto t1 = load_json(dir, tiny_tokenizer({{"a", "b"}, {"b", "c"}}), "t1.json");
  EXPECT_EQ(t1->encode("abc", false), (std::vector<int32_t>{id_of(*t1, "ab"), 'c'}));
  auto t2 = load_json(dir, tiny_tokenizer({{"b", "c"}, {"a", "b"}}), "t2.json");
  EXPECT_EQ(t2->encode("abc", false), (std::vector<int32_t>{'a', id_of(*t2, "bc")}));
  // Every occurrence of the best pair, left to right, then the pairs that creates.
  auto t3 = load_json(dir, tiny_tokenizer({{"a", "a"}, {"aa", "aa"}}), "t3.json");
  const int32_t aa = id_of(*t3, "aa"), aaaa = id_of(*t3, "aaaa");
  EXPECT_EQ(t3->encode("aaa", false), (std::vector<int32_t>{aa, 'a'}));
  EXPECT_EQ(t3->encode("aaaa", false), (std::vector<int32_t>{aaaa}));
  EXPECT_EQ(t3->encode("aaaaaaa", false), (std::vector<int32_t>{aaaa, aa, 'a'}));
  auto t4 = load_json(dir, tiny_tokenizer({{"c", "d"}, {"a", "b"}, {"ab", "cd"}}), "t4.json");
  EXPECT_EQ(t4->encode("abcd", false), (std::vector<int32_t>{id_of(*t4, "abcd")}));
  // Each pre-token on its own: "ab ab" is "ab" and " ab" (no merge with the space).
  EXPECT_EQ(t1->encode("ab ab", false),
            (std::vector<int32_t>{id_of(*t1, "ab"), ' ', id_of(*t1, "ab")}));
  EXPECT_EQ(t1->vocab_size(), 258);
  EXPECT_EQ(t1->bos_id(), -1);
  EXPECT_EQ(t1->eos_id(), -1);
  EXPECT_EQ(t1->kind(), "bpe");
}

TEST(BpeTokenizer, MergeFormatsAgree) {
  TempDir dir;
  json strings = tiny_tokenizer({{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}});
  json pairs = strings;
  json arr = json::array();
  for (const json& m : strings["model"]["merges"]) {
    const std::string s = m.get<std::string>();
    arr.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  pairs["model"]["merges"] = arr;
  json with_header = strings;
  with_header["model"]["merges"].insert(with_header["model"]["merges"].begin(), "#version: 0.2");
  auto a = load_json(dir, strings, "a.json");
  auto b = load_json(dir, pairs, "b.json");
  auto c = load_json(dir, with_header, "c.json");
  const std::string text = "hello hell help";
  EXPECT_EQ(a->encode(text, false), b->encode(text, false));
  EXPECT_EQ(a->encode(text, false), c->encode(text, false));
  EXPECT_EQ(a->encode("hello", false), (std::vector<int32_t>{id_of(*a, "hello")}));
}

TEST(BpeTokenizer, IgnoreMerges) {
  TempDir dir;
  json j = tiny_tokenizer({{"a", "b"}}, {"abc"});  // "abc" is reachable by no merge
  auto plain = load_json(dir, j, "plain.json");
  EXPECT_EQ(plain->encode("abc", false), (std::vector<int32_t>{id_of(*plain, "ab"), 'c'}));
  j["model"]["ignore_merges"] = true;
  auto ignoring = load_json(dir, j, "ignoring.json");
  EXPECT_EQ(ignoring->encode("abc", false), (std::vector<int32_t>{id_of(*ignoring, "abc")}));
  EXPECT_EQ(ignoring->encode("abcab", false),  // whole pre-token not in vocab: merges as usual
            (std::vector<int32_t>{id_of(*ignoring, "ab"), 'c', id_of(*ignoring, "ab")}));
}

TEST(BpeTokenizer, AddedTokensLeftmostLongest) {
  TempDir dir;
  json j = tiny_tokenizer({});
  j["added_tokens"] = {added_token(300, "<s>", true, false), added_token(301, "<s><s>", true, false),
                       added_token(302, "s>x", true, false)};
  auto t = load_json(dir, j);
  EXPECT_EQ(t->vocab_size(), 303);
  EXPECT_EQ(t->encode("a<s><s>b", false), (std::vector<int32_t>{'a', 301, 'b'}));
  EXPECT_EQ(t->encode("<s>x", false), (std::vector<int32_t>{300, 'x'}));  // leftmost wins
  EXPECT_EQ(t->encode("<s", false), (std::vector<int32_t>{'<', 's'}));
  EXPECT_EQ(t->pre_tokens("a <s> b"), (V{"a", byte_chars(" "), byte_chars(" b")}));
  EXPECT_EQ(t->decode({'a', 301, 'b'}), "a<s><s>b");
  EXPECT_EQ(t->id_to_token(300), "<s>");
}

TEST(BpeTokenizer, RawAddedTokensBeforeNormalizedOnes) {
  TempDir dir;
  json j = tiny_tokenizer({});
  // "bc" (normalized: false) is matched on the raw text first, then "ab" on what is left.
  j["added_tokens"] = {added_token(300, "ab", false, true), added_token(301, "bc", true, false)};
  auto t = load_json(dir, j);
  EXPECT_EQ(t->encode("abc", false), (std::vector<int32_t>{'a', 301}));
  EXPECT_EQ(t->encode("abxab", false), (std::vector<int32_t>{300, 'x', 300}));
}

TEST(BpeTokenizer, NfcNormalizer) {
  TempDir dir;
  json j = tiny_tokenizer({{"\xc3", "\xa9"}});
  const std::string e_acute = "\xc3\xa9", e_comb = "e\xcc\x81";
  auto plain = load_json(dir, j, "plain.json");
  EXPECT_EQ(plain->encode(e_comb, false), (std::vector<int32_t>{'e', 0xCC, 0x81}));
  j["normalizer"] = {{"type", "NFC"}};
  // A normalized added token is matched after NFC (its content normalized too); a raw one
  // before it, on the text as given.
  j["added_tokens"] = {added_token(300, "<" + e_comb + ">", false, true),
                       added_token(301, "[" + e_comb + "]", true, false)};
  auto nfc = load_json(dir, j, "nfc.json");
  const int32_t e = id_of(*nfc, e_acute);
  EXPECT_EQ(nfc->encode(e_comb, false), (std::vector<int32_t>{e}));
  EXPECT_EQ(nfc->encode(e_acute, false), (std::vector<int32_t>{e}));
  EXPECT_EQ(nfc->encode("<" + e_acute + ">", false), (std::vector<int32_t>{300}));
  EXPECT_EQ(nfc->encode("<" + e_comb + ">", false), (std::vector<int32_t>{300}));
  EXPECT_EQ(nfc->encode("[" + e_comb + "]", false), (std::vector<int32_t>{301}));
  EXPECT_EQ(nfc->encode("[" + e_acute + "]", false), (std::vector<int32_t>{'[', e, ']'}));
  // A Sequence holding NFC is the same normalizer.
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}}}};
  auto seq = load_json(dir, j, "seq.json");
  EXPECT_EQ(seq->encode(e_comb, false), (std::vector<int32_t>{e}));
}

TEST(BpeTokenizer, ByteLevelOptions) {
  TempDir dir;
  json j = tiny_tokenizer({{" ", "h"}, {" h", "i"}});
  j["pre_tokenizer"]["add_prefix_space"] = true;
  auto prefix = load_json(dir, j, "prefix.json");
  EXPECT_EQ(prefix->pre_tokens("hi hi"), (V{byte_chars(" hi"), byte_chars(" hi")}));
  EXPECT_EQ(prefix->encode("hi", false), prefix->encode(" hi", false));
  EXPECT_EQ(prefix->encode("hi", false), (std::vector<int32_t>{id_of(*prefix, " hi")}));
  j["pre_tokenizer"]["add_prefix_space"] = false;
  j["pre_tokenizer"]["use_regex"] = false;
  auto whole = load_json(dir, j, "whole.json");  // no regex: the text is one pre-token
  EXPECT_EQ(whole->pre_tokens("a b, c"), (V{byte_chars("a b, c")}));
}

TEST(BpeTokenizer, TemplateBos) {
  TempDir dir;
  json j = tiny_tokenizer({});
  j["added_tokens"] = {added_token(256, "<bos>", true, false)};
  json bos = {{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}};
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", {bos, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                         {"pair", json::array()},
                         {"special_tokens", {{"<bos>", {{"id", "<bos>"}, {"ids", {256}}, {"tokens", {"<bos>"}}}}}}};
  auto t = load_json(dir, j);
  EXPECT_EQ(t->bos_id(), 256);
  EXPECT_EQ(t->encode("x", true), (std::vector<int32_t>{256, 'x'}));
  EXPECT_EQ(t->encode("x", false), (std::vector<int32_t>{'x'}));
  EXPECT_EQ(t->encode("", true), (std::vector<int32_t>{256}));
  EXPECT_EQ(t->decode({256, 'x'}), "<bos>x");
}

TEST(BpeTokenizer, DecodeReplacesInvalidUtf8) {
  TempDir dir;
  auto t = load_json(dir, tiny_tokenizer({}));
  const std::string r = "\xef\xbf\xbd";
  EXPECT_EQ(t->decode({0xE2, 0x82}), r);              // a cut-off euro sign
  EXPECT_EQ(t->decode({0xE2, 0x82, 0xAC}), "\xe2\x82\xac");
  EXPECT_EQ(t->decode({'a', 0xFF, 'b'}), "a" + r + "b");
  EXPECT_EQ(t->decode({}), "");
  // A token that splits a character decodes with its neighbour.
  EXPECT_EQ(t->decode(t->encode("\xf0\x9f\x98\x80", false)), "\xf0\x9f\x98\x80");
}

TEST(BpeTokenizer, EosFromTokenizerConfigOrConfig) {
  TempDir dir;
  json j = tiny_tokenizer({});
  j["added_tokens"] = {added_token(256, "<eos>", true, false)};
  write_file(dir.str("tokenizer.json"), j.dump());
  EXPECT_EQ(BpeTokenizer::load(dir.str("tokenizer.json"))->eos_id(), -1);
  write_file(dir.str("config.json"), R"({"eos_token_id": [256, 3]})");
  EXPECT_EQ(BpeTokenizer::load(dir.str("tokenizer.json"))->eos_id(), 256);
  write_file(dir.str("tokenizer_config.json"), R"({"eos_token": {"content": "a"}})");
  EXPECT_EQ(BpeTokenizer::load(dir.str("tokenizer.json"))->eos_id(), 'a');
  write_file(dir.str("tokenizer_config.json"), R"({"eos_token": "<eos>"})");
  EXPECT_EQ(BpeTokenizer::load(dir.str("tokenizer.json"))->eos_id(), 256);

  write_file(dir.str("tokenizer_config.json"), R"({"eos_token": "<nope>"})");
  Error e = catch_error([&] { BpeTokenizer::load(dir.str("tokenizer.json")); });
  EXPECT_EQ(e.where(), dir.str("tokenizer_config.json"));
  EXPECT_TRUE(Contains(e.what(), "<nope>"));
  fs::remove(dir.path() / "tokenizer_config.json");
  write_file(dir.str("config.json"), R"({"eos_token_id": 9999})");
  e = catch_error([&] { BpeTokenizer::load(dir.str("tokenizer.json")); });
  EXPECT_EQ(e.where(), dir.str("config.json"));
  write_file(dir.str("config.json"), "{not json");
  e = catch_error([&] { BpeTokenizer::load(dir.str("tokenizer.json")); });
  EXPECT_EQ(e.kind(), ErrorKind::kMalformedInput);
  EXPECT_EQ(e.where(), dir.str("config.json"));
}

TEST(BpeTokenizer, EncodeAndDecodeErrors) {
  TempDir dir;
  auto t = load_json(dir, tiny_tokenizer({}));
  Error e = catch_error([&] { t->encode("ok\xc3(", false); });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(e.where(), dir.str("tokenizer.json"));
  EXPECT_TRUE(Contains(e.what(), "not valid UTF-8 at byte 2"));
  e = catch_error([&] { t->decode({'a', 256}); });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  EXPECT_TRUE(Contains(e.what(), "id 256 at position 1"));
  e = catch_error([&] { t->decode({-1}); });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
}

// ---- tokenizer.json that must be refused ---------------------------------------------------

struct BadJson {
  const char* name;
  std::function<void(json&)> edit;
  ErrorKind kind;
  const char* message;  // a part of the error message
};

const BadJson kBadJson[] = {
    {"WordPiece", [](json& j) { j["model"]["type"] = "WordPiece"; }, ErrorKind::kUnsupported,
     "model type 'WordPiece' is not supported"},
    {"Unigram", [](json& j) { j["model"]["type"] = "Unigram"; }, ErrorKind::kUnsupported,
     "model type 'Unigram'"},
    {"NoModel", [](json& j) { j.erase("model"); }, ErrorKind::kMalformedInput,
     "missing object 'model'"},
    {"NoMerges", [](json& j) { j["model"].erase("merges"); }, ErrorKind::kMalformedInput,
     "missing array 'merges'"},
    {"Dropout", [](json& j) { j["model"]["dropout"] = 0.1; }, ErrorKind::kUnsupported, "dropout"},
    {"SubwordPrefix", [](json& j) { j["model"]["continuing_subword_prefix"] = "##"; },
     ErrorKind::kUnsupported, "continuing_subword_prefix"},
    {"Truncation", [](json& j) { j["truncation"] = {{"max_length", 64}}; }, ErrorKind::kUnsupported,
     "'truncation' is set"},
    {"Padding", [](json& j) { j["padding"] = {{"strategy", "BatchLongest"}}; },
     ErrorKind::kUnsupported, "'padding' is set"},
    {"Lowercase", [](json& j) { j["normalizer"] = {{"type", "Lowercase"}}; }, ErrorKind::kUnsupported,
     "normalizer 'Lowercase' is not supported"},
    {"NfcThenLowercase",
     [](json& j) {
       j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "Lowercase"}}}}};
     },
     ErrorKind::kUnsupported, "normalizer Sequence [NFC, Lowercase]"},
    {"NoPreTokenizer", [](json& j) { j["pre_tokenizer"] = nullptr; }, ErrorKind::kUnsupported,
     "pre_tokenizer is null"},
    {"Whitespace", [](json& j) { j["pre_tokenizer"] = {{"type", "Whitespace"}}; },
     ErrorKind::kUnsupported, "pre_tokenizer 'Whitespace' is not supported"},
    {"Metaspace",
     [](json& j) {
       j["pre_tokenizer"] = {{"type", "Sequence"},
                             {"pretokenizers", {{{"type", "Metaspace"}}, j["pre_tokenizer"]}}};
     },
     ErrorKind::kUnsupported, "pre_tokenizer 'Metaspace'"},
    {"UnknownRegex",
     [](json& j) {
       j["pre_tokenizer"] = {{"type", "Sequence"},
                             {"pretokenizers",
                              {{{"type", "Split"}, {"pattern", {{"Regex", "\\w+"}}}, {"behavior", "Isolated"}, {"invert", false}},
                               j["pre_tokenizer"]}}};
     },
     ErrorKind::kUnsupported, "Split regex \"\\\\w+\" is not supported"},
    {"SplitString",
     [](json& j) {
       j["pre_tokenizer"] = {{"type", "Sequence"},
                             {"pretokenizers",
                              {{{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Isolated"}, {"invert", false}},
                               j["pre_tokenizer"]}}};
     },
     ErrorKind::kUnsupported, "Split on the string"},
    {"SplitRemoved",
     [](json& j) {
       j["pre_tokenizer"] = {
           {"type", "Sequence"},
           {"pretokenizers",
            {{{"type", "Split"},
              {"pattern", {{"Regex", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"}}},
              {"behavior", "Removed"},
              {"invert", false}},
             j["pre_tokenizer"]}}};
     },
     ErrorKind::kUnsupported, "Split behavior 'Removed'"},
    {"AfterByteLevel",
     [](json& j) {
       j["pre_tokenizer"] = {{"type", "Sequence"},
                             {"pretokenizers", {j["pre_tokenizer"], {{"type", "Digits"}}}}};
     },
     ErrorKind::kUnsupported, "'Digits' after ByteLevel"},
    {"ByteLevelWithoutPrefixFlag", [](json& j) { j["pre_tokenizer"].erase("add_prefix_space"); },
     ErrorKind::kMalformedInput, "lacks 'add_prefix_space'"},
    {"MergeUnknownToken", [](json& j) { j["model"]["merges"] = {"a zz"}; },
     ErrorKind::kMalformedInput, "token \"zz\" is not in the vocabulary"},
    {"MergeResultUnknown", [](json& j) { j["model"]["merges"] = {"x y"}; },
     ErrorKind::kMalformedInput, "token \"xy\" is not in the vocabulary"},
    {"MergeThreeParts", [](json& j) { j["model"]["merges"] = {"a b c"}; },
     ErrorKind::kMalformedInput, "model.merges[0]"},
    {"MergeNotAString", [](json& j) { j["model"]["merges"] = {42}; }, ErrorKind::kMalformedInput,
     "model.merges[0] is 42"},
    {"MissingByteCharacter", [](json& j) { j["model"]["vocab"].erase(byte_chars(" ")); },
     ErrorKind::kUnsupported, "lacks the byte character U+0120 of byte 0x20"},
    {"NegativeId", [](json& j) { j["model"]["vocab"]["zz"] = -3; }, ErrorKind::kMalformedInput,
     "token \"zz\" has id -3"},
    {"DuplicateId", [](json& j) { j["model"]["vocab"]["zz"] = 5; }, ErrorKind::kMalformedInput,
     "id 5 is used by"},
    {"AddedLstrip",
     [](json& j) {
       json a = added_token(300, "<mask>", true, false);
       a["lstrip"] = true;
       j["added_tokens"] = {a};
     },
     ErrorKind::kUnsupported, "'lstrip': true"},
    {"AddedNoContent", [](json& j) { j["added_tokens"] = {{{"id", 300}}}; },
     ErrorKind::kMalformedInput, "added_tokens[0]"},
    {"BertProcessing", [](json& j) { j["post_processor"] = {{"type", "BertProcessing"}}; },
     ErrorKind::kUnsupported, "post_processor 'BertProcessing'"},
    {"TemplateWithEos",
     [](json& j) {
       j["post_processor"] = {{"type", "TemplateProcessing"},
                              {"single", {{{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                          {{"SpecialToken", {{"id", "a"}, {"type_id", 0}}}}}},
                              {"special_tokens", {{"a", {{"id", "a"}, {"ids", {97}}, {"tokens", {"a"}}}}}}};
     },
     ErrorKind::kUnsupported, "1 after the text"},
    {"TemplateUnknownToken",
     [](json& j) {
       j["post_processor"] = {{"type", "TemplateProcessing"},
                              {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                              {"special_tokens", json::object()}};
     },
     ErrorKind::kMalformedInput, "special token \"<s>\" has no 'ids'"},
    {"WordPieceDecoder", [](json& j) { j["decoder"] = {{"type", "WordPiece"}}; },
     ErrorKind::kUnsupported, "decoder 'WordPiece'"},
};

class BpeRefuses : public ::testing::TestWithParam<BadJson> {};

TEST_P(BpeRefuses, NamesFileAndPiece) {
  const BadJson& c = GetParam();
  TempDir dir;
  json j = tiny_tokenizer({{"a", "b"}});
  c.edit(j);
  write_file(dir.str("tokenizer.json"), j.dump());
  // Through load_tokenizer too: the directory has only tokenizer.json.
  for (int via_dir = 0; via_dir < 2; ++via_dir) {
    Error e = catch_error([&] {
      if (via_dir)
        load_tokenizer(dir.str());
      else
        BpeTokenizer::load(dir.str("tokenizer.json"));
    });
    EXPECT_EQ(e.kind(), c.kind) << e.what();
    EXPECT_EQ(e.where(), dir.str("tokenizer.json"));
    EXPECT_TRUE(Contains(e.what(), c.message));
  }
}

INSTANTIATE_TEST_SUITE_P(Malformed, BpeRefuses, ::testing::ValuesIn(kBadJson),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(BpeTokenizerFile, NotJson) {
  TempDir dir;
  write_file(dir.str("tokenizer.json"), "{\"model\": ");
  Error e = catch_error([&] { BpeTokenizer::load(dir.str("tokenizer.json")); });
  EXPECT_EQ(e.kind(), ErrorKind::kMalformedInput);
  EXPECT_EQ(e.where(), dir.str("tokenizer.json"));
  EXPECT_TRUE(Contains(e.what(), "invalid JSON"));
  write_file(dir.str("tokenizer.json"), "[1, 2]");
  e = catch_error([&] { BpeTokenizer::load(dir.str("tokenizer.json")); });
  EXPECT_TRUE(Contains(e.what(), "expected a JSON object, got array"));
  e = catch_error([&] { BpeTokenizer::load(dir.str("missing.json")); });
  EXPECT_EQ(e.kind(), ErrorKind::kIo);
  EXPECT_EQ(e.where(), dir.str("missing.json"));
  EXPECT_TRUE(Contains(e.what(), "cannot open"));
}

// ---- sentencepiece and load_tokenizer errors ---------------------------------------------

TEST(SentencePieceTokenizerFile, Errors) {
  TempDir dir;
  Error e = catch_error([&] { SentencePieceTokenizer::load(dir.str("none.model")); });
  EXPECT_EQ(e.kind(), ErrorKind::kIo);
  EXPECT_EQ(e.where(), dir.str("none.model"));
  write_file(dir.str("empty.model"), "");
  e = catch_error([&] { SentencePieceTokenizer::load(dir.str("empty.model")); });
  EXPECT_EQ(e.kind(), ErrorKind::kMalformedInput);
  EXPECT_EQ(e.where(), dir.str("empty.model"));
  EXPECT_TRUE(Contains(e.what(), "empty file"));
  write_file(dir.str("garbage.model"), "this is not a protobuf \xff\xff\xff\xff");
  e = catch_error([&] { SentencePieceTokenizer::load(dir.str("garbage.model")); });
  EXPECT_EQ(e.kind(), ErrorKind::kMalformedInput);
  EXPECT_EQ(e.where(), dir.str("garbage.model"));
  EXPECT_TRUE(Contains(e.what(), "not a valid sentencepiece model"));
}

TEST(SentencePieceTokenizer, DecodeRejectsBadIds) {
  const std::string model = test::data_path("models/stories260K/hf/tokenizer.model");
  if (!fs::exists(model)) GTEST_SKIP() << "shared data missing: " << model;
  auto t = SentencePieceTokenizer::load(model);
  Error e = catch_error([&] { t->decode({1, 512}); });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  EXPECT_EQ(e.where(), model);
  EXPECT_TRUE(Contains(e.what(), "id 512 at position 1"));
  EXPECT_EQ(t->id_to_piece(1), "<s>");
  e = catch_error([&] { t->id_to_piece(-1); });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
}

TEST(LoadTokenizer, Errors) {
  TempDir dir;
  // Missing directory.
  Error e = catch_error([&] { load_tokenizer(dir.str("nowhere")); });
  EXPECT_EQ(e.kind(), ErrorKind::kIo);
  EXPECT_EQ(e.where(), dir.str("nowhere"));
  EXPECT_TRUE(Contains(e.what(), "no such directory"));
  // A directory without either file: the message names both.
  e = catch_error([&] { load_tokenizer(dir.str()); });
  EXPECT_EQ(e.kind(), ErrorKind::kIo);
  EXPECT_EQ(e.where(), dir.str());
  EXPECT_TRUE(Contains(e.what(), "tokenizer.model"));
  EXPECT_TRUE(Contains(e.what(), "tokenizer.json"));
  // A file that is no tokenizer.
  write_file(dir.str("notes.txt"), "hello");
  e = catch_error([&] { load_tokenizer(dir.str("notes.txt")); });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  // tokenizer.model takes precedence: a broken one is an error even next to a valid json.
  write_file(dir.str("tokenizer.json"), tiny_tokenizer({}).dump());
  EXPECT_EQ(load_tokenizer(dir.str())->kind(), "bpe");
  write_file(dir.str("tokenizer.model"), "broken");
  e = catch_error([&] { load_tokenizer(dir.str()); });
  EXPECT_EQ(e.kind(), ErrorKind::kMalformedInput);
  EXPECT_EQ(e.where(), dir.str("tokenizer.model"));
}

}  // namespace
}  // namespace razerq::calib
