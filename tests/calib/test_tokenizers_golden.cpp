// Tokenizer goldens of shared/data/golden (README "Golden values", "Tokenizers: Llama-2",
// "Tokenizers: GPT-2 byte-level BPE"):
//  * sentencepiece (Llama-2 tokenizer.model and tok512): counts, first ids and sha256 of
//    [bos] + sp.encode(text) on the four evaluation texts, the probe strings, the positions
//    where transformers differs, and the full tok512 WikiText-2 id file;
//  * GPT-2 byte-level BPE (tokenizer.json): counts, first 32 / last 8 ids and sha256 on the
//    four texts, and all 32 probes (ids, tokens, pre-tokens, decode).
// Every test skips, with the reason, when the shared data is missing.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "calib/tokenizer.hpp"
#include "calib/tokenizer_bpe.hpp"
#include "calib/tokenizer_sentencepiece.hpp"
#include "common/error.hpp"
#include "common/sha256.hpp"
#include "tests/test_util.hpp"

namespace razerq::calib {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- data --------------------------------------------------------------------------------

#define SKIP_WITHOUT(rel)                                                                  \
  do {                                                                                     \
    if (!fs::exists(test::data_path(rel)))                                                 \
      GTEST_SKIP() << "shared data missing: " << test::data_path(rel)                      \
                   << " (set RAZERQ_DATA to the shared/data directory)";                   \
  } while (0)

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const json& golden(const std::string& name) {
  static std::map<std::string, json> cache;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(name);
  if (it == cache.end())
    it = cache.emplace(name, json::parse(read_file(test::data_path("golden/" + name)))).first;
  return it->second;
}

// Python's str.strip() for these ASCII files (the README's texts contain no other
// whitespace at line ends; the text sha256 test below confirms the construction).
std::string py_strip(const std::string& s) {
  const char* ws = " \t\n\r\v\f\x1c\x1d\x1e\x1f";
  const size_t a = s.find_first_not_of(ws);
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(ws) - a + 1);
}

// Lines as Python's text mode yields them, each keeping its "\n" (the files have no "\r").
std::vector<std::string> py_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    const size_t nl = text.find('\n', start);
    const size_t end = nl == std::string::npos ? text.size() : nl + 1;
    lines.push_back(text.substr(start, end - start));
    start = end;
  }
  return lines;
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

// The evaluation texts as tools/device_golden.py builds them:
//   wikitext2: "\n\n".join(HF rows of wiki.test.raw)  (row = line with its "\n", or "" if blank)
//   ptb:       "\n\n".join(line.strip() for ptb.valid.txt)
//   ptb-new:   " ".join(line.strip() for ptb.test.txt)
//   c4:        " ".join(doc["text"] for the 1025 validation documents)
std::string build_text(const std::string& name) {
  if (name == "wikitext2") {
    std::vector<std::string> rows;
    for (const std::string& l : py_lines(read_file(test::data_path("wikitext2/wiki.test.raw"))))
      rows.push_back(py_strip(l).empty() ? std::string() : l);
    return join(rows, "\n\n");
  }
  if (name == "ptb" || name == "ptb-new") {
    const bool valid = name == "ptb";
    std::vector<std::string> sentences;
    for (const std::string& l :
         py_lines(read_file(test::data_path(valid ? "ptb/ptb.valid.txt" : "ptb/ptb.test.txt"))))
      sentences.push_back(py_strip(l));
    return join(sentences, valid ? "\n\n" : " ");
  }
  if (name == "c4") {
    std::vector<std::string> docs;
    for (const std::string& l : py_lines(
             read_file(test::data_path("c4/c4-validation.00000-of-00008.first1025.jsonl"))))
      if (!py_strip(l).empty()) docs.push_back(json::parse(l).at("text").get<std::string>());
    return join(docs, " ");
  }
  ADD_FAILURE() << "unknown text " << name;
  return "";
}

const std::string& eval_text(const std::string& name) {
  static std::map<std::string, std::string> cache;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(name);
  if (it == cache.end()) it = cache.emplace(name, build_text(name)).first;
  return it->second;
}

size_t count_code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// sha256 of the ids written as little-endian int32.
std::string sha256_ids(const std::vector<int32_t>& ids) {
  std::vector<uint8_t> bytes(ids.size() * 4);
  for (size_t i = 0; i < ids.size(); ++i) {
    const uint32_t v = static_cast<uint32_t>(ids[i]);
    for (int k = 0; k < 4; ++k) bytes[4 * i + k] = static_cast<uint8_t>(v >> (8 * k));
  }
  return sha256_hex(bytes.data(), bytes.size());
}

std::vector<int32_t> json_ids(const json& j) { return j.get<std::vector<int32_t>>(); }

// Tokenizers are loaded once per test binary.
const Tokenizer& tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(name);
  if (it == cache.end()) {
    std::unique_ptr<Tokenizer> t;
    if (name == "llama2")
      t = load_tokenizer(test::data_path("tokenizers/llama2"));
    else if (name == "tok512")
      t = load_tokenizer(test::data_path("models/stories260K/hf"));
    else
      t = load_tokenizer(test::data_path("tokenizers/gpt2"));
    it = cache.emplace(name, std::move(t)).first;
  }
  return *it->second;
}

const char* tokenizer_data(const std::string& name) {
  if (name == "llama2") return "tokenizers/llama2/tokenizer.model";
  if (name == "tok512") return "models/stories260K/hf/tokenizer.model";
  return "tokenizers/gpt2/tokenizer.json";
}

// Encodes a text (with BOS for sentencepiece, as the goldens do), once per binary, and says
// how long it took.
const std::vector<int32_t>& text_ids(const std::string& tok, const std::string& text) {
  static std::map<std::string, std::vector<int32_t>> cache;
  static std::mutex mu;
  const std::string key = tok + "/" + text;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  const std::string& s = eval_text(text);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> ids = tokenizer(tok).encode(s, /*add_bos=*/true);
  const double sec =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::testing::Test::RecordProperty("encode_seconds", std::to_string(sec));
  std::printf("[ timing   ] %s encode of %s (%zu bytes): %zu ids in %.3f s\n", tok.c_str(),
              text.c_str(), s.size(), ids.size(), sec);
  std::lock_guard<std::mutex> lock(mu);
  return cache.emplace(key, std::move(ids)).first->second;
}

const char* const kTexts[] = {"wikitext2", "ptb", "ptb-new", "c4"};

// ---- the texts themselves ------------------------------------------------------------------

class EvalText : public ::testing::TestWithParam<const char*> {};

TEST_P(EvalText, MatchesGoldenSha256AndLength) {
  SKIP_WITHOUT("golden/stories260K_and_tokenizers_golden_hf.json");
  SKIP_WITHOUT("golden/gpt2_tokenizer_golden.json");
  const std::string name = GetParam();
  const std::string& text = eval_text(name);
  const json& sp = golden("stories260K_and_tokenizers_golden_hf.json");
  const json& g2 = golden("gpt2_tokenizer_golden.json").at("texts").at(name);
  EXPECT_EQ(sha256_hex(text.data(), text.size()), sp.at("text_sha256").at(name).get<std::string>());
  EXPECT_EQ(count_code_points(text), sp.at("text_chars").at(name).get<size_t>());
  EXPECT_EQ(sha256_hex(text.data(), text.size()), g2.at("text_sha256").get<std::string>());
  EXPECT_EQ(text.size(), g2.at("text_utf8_bytes").get<size_t>());
}

INSTANTIATE_TEST_SUITE_P(Golden, EvalText, ::testing::ValuesIn(kTexts),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) if (c == '-') c = '_';
                           return n;
                         });

// ---- sentencepiece ---------------------------------------------------------------------------

struct SpCase {
  const char* tok;   // "llama2" or "tok512"
  const char* text;
};

class SentencePieceGoldenText : public ::testing::TestWithParam<SpCase> {};

// [bos] + sp.encode(text): count, first 16 ids, sha256 (golden "sentencepiece" values), and
// the count in hf_tokenizer_vs_sentencepiece.json.
TEST_P(SentencePieceGoldenText, IdsMatch) {
  const SpCase c = GetParam();
  SKIP_WITHOUT("golden/stories260K_and_tokenizers_golden_hf.json");
  SKIP_WITHOUT(tokenizer_data(c.tok));
  const json& g = golden("stories260K_and_tokenizers_golden_hf.json")
                      .at(std::string("tokenizer_") + c.tok)
                      .at(c.text);
  const std::vector<int32_t>& ids = text_ids(c.tok, c.text);
  EXPECT_EQ(ids.size(), g.at("n_ids_with_bos").get<size_t>());
  const std::vector<int32_t> first16 = json_ids(g.at("first16"));
  ASSERT_GE(ids.size(), first16.size());
  EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + first16.size()), first16);
  EXPECT_EQ(sha256_ids(ids), g.at("sha256_int32le").get<std::string>());

  const json& h = golden("hf_tokenizer_vs_sentencepiece.json").at(c.tok).at(c.text);
  EXPECT_EQ(ids.size(), h.at("sp_n").get<size_t>());
}

// Where transformers' tokenizer first differs, the sentencepiece pieces recorded in
// hf_tokenizer_vs_sentencepiece.json are ours.
TEST_P(SentencePieceGoldenText, PiecesAtTransformersMismatch) {
  const SpCase c = GetParam();
  SKIP_WITHOUT("golden/hf_tokenizer_vs_sentencepiece.json");
  SKIP_WITHOUT(tokenizer_data(c.tok));
  const json& h = golden("hf_tokenizer_vs_sentencepiece.json").at(c.tok).at(c.text);
  if (!h.contains("first_mismatch")) {  // transformers agrees with sentencepiece here
    EXPECT_EQ(h.at("hf_n"), h.at("sp_n"));
    return;
  }
  const auto& sp = dynamic_cast<const SentencePieceTokenizer&>(tokenizer(c.tok));
  const std::vector<int32_t>& ids = text_ids(c.tok, c.text);
  // tools/device_golden_hf_tok.py records ids[max(0, at - 4) : at + 6].
  const size_t at = h.at("first_mismatch").get<size_t>();
  const size_t from = at >= 4 ? at - 4 : 0;
  const std::vector<std::string> want = h.at("sp_pieces").get<std::vector<std::string>>();
  ASSERT_LE(from + want.size(), ids.size());
  std::vector<std::string> got;
  for (size_t i = 0; i < want.size(); ++i) got.push_back(sp.id_to_piece(ids[from + i]));
  EXPECT_EQ(got, want) << "at id " << at;
}

std::vector<SpCase> sp_cases() {
  std::vector<SpCase> v;
  for (const char* tok : {"llama2", "tok512"})
    for (const char* t : kTexts) v.push_back({tok, t});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Golden, SentencePieceGoldenText, ::testing::ValuesIn(sp_cases()),
                         [](const auto& info) {
                           std::string n = std::string(info.param.tok) + "_" + info.param.text;
                           for (char& c : n) if (c == '-') c = '_';
                           return n;
                         });

class SentencePieceGoldenModel : public ::testing::TestWithParam<const char*> {};

TEST_P(SentencePieceGoldenModel, PropertiesAndProbe) {
  const std::string tok = GetParam();
  SKIP_WITHOUT("golden/stories260K_and_tokenizers_golden_hf.json");
  SKIP_WITHOUT(tokenizer_data(tok));
  const json& g = golden("stories260K_and_tokenizers_golden_hf.json").at("tokenizer_" + tok);
  const Tokenizer& t = tokenizer(tok);
  ASSERT_EQ(t.kind(), "sentencepiece");
  EXPECT_EQ(t.vocab_size(), g.at("vocab").get<int32_t>());
  EXPECT_EQ(t.bos_id(), g.at("bos").get<int32_t>());
  EXPECT_EQ(t.eos_id(), g.at("eos").get<int32_t>());
  EXPECT_EQ(dynamic_cast<const SentencePieceTokenizer&>(t).unk_id(), g.at("unk").get<int32_t>());

  const std::string probe = g.at("probe_text").get<std::string>();
  const std::vector<int32_t> want = json_ids(g.at("probe_ids"));  // sp.encode: no BOS
  EXPECT_EQ(t.encode(probe, /*add_bos=*/false), want);
  std::vector<int32_t> with_bos = want;
  with_bos.insert(with_bos.begin(), t.bos_id());
  EXPECT_EQ(t.encode(probe, /*add_bos=*/true), with_bos);
  EXPECT_EQ(t.decode(want), g.at("probe_decoded").get<std::string>());
  EXPECT_EQ(t.decode(with_bos), g.at("probe_decoded").get<std::string>());  // BOS is a control token
}

INSTANTIATE_TEST_SUITE_P(Golden, SentencePieceGoldenModel, ::testing::Values("llama2", "tok512"));

// The full id array of the main model's tokenizer on GPTQ WikiText-2, element by element.
TEST(SentencePieceGolden, Tok512Wikitext2IdFileEqual) {
  SKIP_WITHOUT("golden/token_ids/tok512.wikitext2.sentencepiece.i32");
  SKIP_WITHOUT(tokenizer_data("tok512"));
  const std::string raw = read_file(test::data_path("golden/token_ids/tok512.wikitext2.sentencepiece.i32"));
  ASSERT_EQ(raw.size() % 4, 0u);
  std::vector<int32_t> want(raw.size() / 4);
  for (size_t i = 0; i < want.size(); ++i) {
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) v |= static_cast<uint32_t>(static_cast<uint8_t>(raw[4 * i + k])) << (8 * k);
    want[i] = static_cast<int32_t>(v);
  }
  const std::vector<int32_t>& ids = text_ids("tok512", "wikitext2");
  ASSERT_EQ(ids.size(), want.size());
  for (size_t i = 0; i < ids.size(); ++i)
    ASSERT_EQ(ids[i], want[i]) << "first difference at id " << i;
}

// The "<unk>" trap: sentencepiece spells the literal text out, it is not the unk id.
TEST(SentencePieceGolden, LiteralUnkIsSpelledOut) {
  SKIP_WITHOUT(tokenizer_data("llama2"));
  const Tokenizer& t = tokenizer("llama2");
  const std::vector<int32_t> ids = t.encode("<unk>", false);
  EXPECT_GT(ids.size(), 1u);
  for (int32_t id : ids) EXPECT_NE(id, 0);
  EXPECT_EQ(t.decode(ids), "<unk>");
}

// ---- GPT-2 byte-level BPE ------------------------------------------------------------------

TEST(Gpt2Golden, Properties) {
  SKIP_WITHOUT("golden/gpt2_tokenizer_golden.json");
  SKIP_WITHOUT(tokenizer_data("gpt2"));
  const json& g = golden("gpt2_tokenizer_golden.json").at("tokenizer");
  const Tokenizer& t = tokenizer("gpt2");
  EXPECT_EQ(t.kind(), "bpe");
  EXPECT_EQ(t.vocab_size(), g.at("vocab_size_with_added").get<int32_t>());
  EXPECT_EQ(t.bos_id(), -1);  // the post-processor adds nothing
  EXPECT_EQ(t.eos_id(), g.at("eot_id").get<int32_t>());  // config.json eos_token_id
  EXPECT_EQ(t.encode("Hello world", true), t.encode("Hello world", false));
  const auto& bpe = dynamic_cast<const BpeTokenizer&>(t);
  EXPECT_EQ(bpe.id_to_token(50256), "<|endoftext|>");
  EXPECT_EQ(bpe.token_to_id("\xc4\xa0the"), 262);  // "Ġthe"
}

class Gpt2GoldenText : public ::testing::TestWithParam<const char*> {};

TEST_P(Gpt2GoldenText, IdsMatch) {
  SKIP_WITHOUT("golden/gpt2_tokenizer_golden.json");
  SKIP_WITHOUT(tokenizer_data("gpt2"));
  const std::string name = GetParam();
  const json& g = golden("gpt2_tokenizer_golden.json").at("texts").at(name);
  const std::vector<int32_t>& ids = text_ids("gpt2", name);  // add_bos: GPT-2 has none
  ASSERT_EQ(ids.size(), g.at("n_ids").get<size_t>());
  const std::vector<int32_t> first = json_ids(g.at("first32"));
  const std::vector<int32_t> last = json_ids(g.at("last8"));
  EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + first.size()), first);
  EXPECT_EQ(std::vector<int32_t>(ids.end() - last.size(), ids.end()), last);
  EXPECT_EQ(sha256_ids(ids), g.at("ids_sha256_int32le").get<std::string>());
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 50256), g.at("n_eot_ids_in_text").get<long>());
}

TEST_P(Gpt2GoldenText, DecodeRoundTrip) {
  SKIP_WITHOUT(tokenizer_data("gpt2"));
  const std::string name = GetParam();
  EXPECT_TRUE(tokenizer("gpt2").decode(text_ids("gpt2", name)) == eval_text(name));
}

INSTANTIATE_TEST_SUITE_P(Golden, Gpt2GoldenText, ::testing::ValuesIn(kTexts),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) if (c == '-') c = '_';
                           return n;
                         });

// The 32 probes of gpt2_tokenizer_golden.json, by name.
const char* const kGpt2Probes[] = {
    "empty", "single_space", "hello", "leading_space", "leading_spaces3", "trailing_spaces",
    "multiple_spaces", "tabs", "newlines", "crlf", "mixed_whitespace_runs", "contractions",
    "contractions_upper", "apostrophes", "numbers", "punctuation_runs", "accented_latin",
    "combining_marks", "cjk", "emoji", "eot_inside_text", "eot_alone", "eot_with_spaces",
    "eot_incomplete", "unicode_spaces", "ascii_separators", "control_bytes", "wikitext_heading",
    "ptb_style", "long_word", "repeated_char", "code_indent"};

class Gpt2GoldenProbe : public ::testing::TestWithParam<const char*> {};

TEST_P(Gpt2GoldenProbe, Matches) {
  SKIP_WITHOUT("golden/gpt2_tokenizer_golden.json");
  SKIP_WITHOUT(tokenizer_data("gpt2"));
  const json* probe = nullptr;
  for (const json& p : golden("gpt2_tokenizer_golden.json").at("probes"))
    if (p.at("name") == GetParam()) probe = &p;
  ASSERT_NE(probe, nullptr) << "no probe named " << GetParam();
  const auto& t = dynamic_cast<const BpeTokenizer&>(tokenizer("gpt2"));
  const std::string text = probe->at("text").get<std::string>();
  const std::vector<int32_t> ids = t.encode(text, /*add_bos=*/false);
  EXPECT_EQ(ids, json_ids(probe->at("ids")));
  EXPECT_EQ(t.encode(text, /*add_bos=*/true), ids);
  std::vector<std::string> tokens;
  for (int32_t id : ids) tokens.push_back(t.id_to_token(id));
  EXPECT_EQ(tokens, probe->at("tokens").get<std::vector<std::string>>());
  EXPECT_EQ(t.pre_tokens(text), probe->at("pre_tokens").get<std::vector<std::string>>());
  EXPECT_EQ(t.decode(ids), probe->at("decoded").get<std::string>());
  EXPECT_EQ(t.decode(ids), text);  // every probe round-trips (roundtrip_exact)
}

INSTANTIATE_TEST_SUITE_P(Golden, Gpt2GoldenProbe, ::testing::ValuesIn(kGpt2Probes),
                         [](const auto& info) { return std::string(info.param); });

// ---- load_tokenizer on the real directories ------------------------------------------------

TEST(LoadTokenizerGolden, PicksByFile) {
  SKIP_WITHOUT("tokenizers/llama2/tokenizer.model");
  // Llama-2's directory has both files: tokenizer.model wins.
  EXPECT_EQ(load_tokenizer(test::data_path("tokenizers/llama2"))->kind(), "sentencepiece");
  EXPECT_EQ(load_tokenizer(test::data_path("tokenizers/gpt2"))->kind(), "bpe");
  EXPECT_EQ(load_tokenizer(test::data_path("models/llama-14m"))->vocab_size(), 512);
  // A tokenizer file is accepted as well.
  EXPECT_EQ(load_tokenizer(test::data_path("models/stories260K/llama2c/tok512.model"))->vocab_size(),
            512);
  EXPECT_EQ(load_tokenizer(test::data_path("tokenizers/gpt2/tokenizer.json"))->kind(), "bpe");
}

// Llama-2's tokenizer.json is a sentencepiece-style BPE (Prepend/Replace normalizer, no
// byte-level pre-tokenizer): refused, naming the file and the piece.
TEST(LoadTokenizerGolden, Llama2TokenizerJsonIsRefused) {
  SKIP_WITHOUT("tokenizers/llama2/tokenizer.json");
  const std::string path = test::data_path("tokenizers/llama2/tokenizer.json");
  try {
    BpeTokenizer::load(path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported) << e.what();
    EXPECT_EQ(e.where(), path);
    EXPECT_NE(std::string(e.what()).find("normalizer Sequence [Prepend, Replace]"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace razerq::calib
