// calib/datasets: evaluation texts (byte-exact, against shared/data/README.md and
// golden/stories260K_and_tokenizers_golden_hf.json), GPTQ and llama.cpp windows, and
// calibration sampling.
//
// Sampling references: every expected hash / origin below was printed by a Python script
// that runs IST-DASLab/gptq datautils.py's loops (get_c4 validation and train loops,
// get_wikitext2's train loop) with CPython 3.11.7's `random`, on ids from either
//  * a byte tokenizer, ids = [1] + [b + 3 for b in text.encode("utf-8")] (ByteTokenizer here),
//    which needs no sentencepiece, or
//  * libsentencepiece on tok512 ([bos] + Encode(text)); that helper reproduces the four
//    golden tok512 id hashes of the golden JSON, so its ids are the reference's.
// Window hashes are sha256 of the concatenated windows as int32 little-endian, as in
//   hashlib.sha256(struct.pack('<%di' % len(ids), *ids)).hexdigest().
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "calib/datasets.hpp"
#include "calib/python_random.hpp"
#include "calib/tokenizer.hpp"
#include "common/error.hpp"
#include "common/sha256.hpp"
#include "tests/test_util.hpp"

using namespace razerq;
using namespace razerq::calib;

namespace {

namespace fs = std::filesystem;

bool have_data() { return fs::is_directory(test::data_dir()); }

#define REQUIRE_DATA()                                                                     \
  do {                                                                                     \
    if (!have_data())                                                                      \
      GTEST_SKIP() << "no shared data at " << test::data_dir() << " (set RAZERQ_DATA)"; \
  } while (0)

// Python's len(str): UTF-8 code points.
size_t utf8_chars(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n;
}

std::string sha_of(const std::string& s) { return sha256_hex(s.data(), s.size()); }

std::vector<int32_t> concat(const std::vector<std::vector<int32_t>>& windows) {
  std::vector<int32_t> out;
  for (const auto& w : windows) out.insert(out.end(), w.begin(), w.end());
  return out;
}

void write_file(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out << contents;
}

nlohmann::json golden(const std::string& name) {
  std::ifstream in(test::data_path("golden/" + name));
  if (!in) throw std::runtime_error("missing golden file " + name);
  return nlohmann::json::parse(in);
}

// ids = [1] + [b + 3 for b in text.encode("utf-8")]: a tokenizer whose Python twin is one line.
class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> encode(const std::string& text, bool add_bos) const override {
    std::vector<int32_t> ids;
    if (add_bos) ids.push_back(1);
    for (unsigned char c : text) ids.push_back(static_cast<int32_t>(c) + 3);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string s;
    for (int32_t id : ids)
      if (id >= 3) s += static_cast<char>(id - 3);
    return s;
  }
  int32_t vocab_size() const override { return 259; }
  int32_t bos_id() const override { return 1; }
  int32_t eos_id() const override { return 2; }
  std::string kind() const override { return "bytes"; }
};

const Tokenizer& tok512() {
  static const std::unique_ptr<Tokenizer> tok = load_tokenizer(test::data_path("models/stories260K/hf"));
  return *tok;
}

// Saves and restores RAZERQ_DATA around a test that changes it.
class ScopedDataEnv {
 public:
  ScopedDataEnv() {
    if (const char* v = std::getenv("RAZERQ_DATA")) saved_ = v, had_ = true;
  }
  ~ScopedDataEnv() {
    if (had_) setenv("RAZERQ_DATA", saved_.c_str(), 1);
    else unsetenv("RAZERQ_DATA");
  }

 private:
  std::string saved_;
  bool had_ = false;
};

}  // namespace

// ---------------------------------------------------------------------------------------
// Texts
// ---------------------------------------------------------------------------------------

TEST(DatasetTexts, DefaultDataDir) {
  ScopedDataEnv keep;
  setenv("RAZERQ_DATA", "/some/where", 1);
  EXPECT_EQ(default_data_dir(), "/some/where");
  setenv("RAZERQ_DATA", "", 1);
  EXPECT_EQ(default_data_dir(), "../shared/data");
  unsetenv("RAZERQ_DATA");
  EXPECT_EQ(default_data_dir(), "../shared/data");
}

TEST(DatasetTexts, GptqTextsMatchReadmeAndGolden) {
  REQUIRE_DATA();
  const auto g = golden("stories260K_and_tokenizers_golden_hf.json");
  struct Case {
    const char* name;        // gptq_eval_text name
    const char* golden_key;  // key in text_sha256 / text_chars
    const char* sha256;      // shared/data/README.md and the golden JSON
    size_t chars;            // Python len()
  };
  const Case cases[] = {
      {"wikitext2", "wikitext2", "696cca6b65a171b0a358a4be6732cdfdf2dd6164a32e20fd70e3c13fc4dfae83", 1294336},
      {"ptb", "ptb", "352a9351af725c5d5d6ccdd38357a35ebfef8c79916364fdf458fa72a4fb91c3", 396410},
      {"ptb-new", "ptb-new", "900cfc61a7a63afcd086c5e1cce90554764eae65cb2ca9f5d4cac47be5f0f394", 442422},
      {"c4-new", "c4", "d264eb7fe3c3714c9186c82c97e3aecd7598eb397f9147ce74c869f43e1c56f5", 2261633},
  };
  for (const auto& c : cases) {
    const std::string text = gptq_eval_text(c.name, test::data_dir());
    EXPECT_EQ(sha_of(text), c.sha256) << c.name;
    EXPECT_EQ(sha_of(text), g["text_sha256"][c.golden_key].get<std::string>()) << c.name;
    EXPECT_EQ(utf8_chars(text), c.chars) << c.name;
    EXPECT_EQ(utf8_chars(text), g["text_chars"][c.golden_key].get<size_t>()) << c.name;
  }
  // The named builders are the same texts.
  EXPECT_EQ(wikitext2_text(test::data_dir()), gptq_eval_text("wikitext2", test::data_dir()));
  EXPECT_EQ(ptb_text(test::data_dir()), gptq_eval_text("ptb", test::data_dir()));
  EXPECT_EQ(ptb_new_text(test::data_dir()), gptq_eval_text("ptb-new", test::data_dir()));
  EXPECT_EQ(c4_new_text(test::data_dir()), gptq_eval_text("c4-new", test::data_dir()));
}

TEST(DatasetTexts, RawWikitextIsTheFileLlamaCppReads) {
  REQUIRE_DATA();
  const std::string raw = wikitext2_raw_text(test::data_dir());
  // README: wiki.test.raw, 1,290,590 bytes, sha256 173c87a5...
  EXPECT_EQ(raw.size(), 1290590u);
  EXPECT_EQ(sha_of(raw), "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08");
  EXPECT_EQ(raw.rfind(" \n = Robert Boulter = \n", 0), 0u);
}

TEST(DatasetTexts, WikitextValidationJoin) {
  REQUIRE_DATA();
  // python3 -c "import hashlib; raw=open('wikitext2/wiki.valid.raw',encoding='utf-8',newline='').read();
  //   t='\n\n'.join('' if l.strip()=='' else l for l in raw.splitlines(keepends=True));
  //   print(hashlib.sha256(t.encode()).hexdigest(), len(t))"
  const std::string text = wikitext2_valid_text(test::data_dir());
  EXPECT_EQ(sha_of(text), "b44fb967f92b525731216a507d1fbc44b97446b7ef0a2b4d1a893f81f1bbc29e");
  EXPECT_EQ(utf8_chars(text), 1149668u);
}

TEST(DatasetTexts, C4Documents) {
  REQUIRE_DATA();
  // README: file checksums, 1025 / 1041 documents and the opening of document 0.
  EXPECT_EQ(sha256_file(test::data_path(kC4ValidationFile)),
            "c428660681e457469d2ff57bfd62636d52e6002e06c8cafe3aea714033787f78");
  EXPECT_EQ(sha256_file(test::data_path(kC4TrainFile)),
            "7cb5c1c8008c9d5ecd83509bb078c698a6f7fd17a8085a764cb6129b22869b08");
  const auto val = c4_validation_documents(test::data_dir());
  const auto train = c4_train_documents(test::data_dir());
  ASSERT_EQ(val.size(), 1025u);
  ASSERT_EQ(train.size(), 1041u);
  EXPECT_EQ(val[0].rfind("The woman who died after falling from a bridge over the A21", 0), 0u);
  EXPECT_EQ(train[0].rfind("Beginners BBQ Class Taking Place in Missoula!", 0), 0u);
  EXPECT_EQ(join_strings(val, " "), c4_new_text(test::data_dir()));
}

TEST(DatasetTexts, UnknownAndDocumentOnlyNames) {
  try {
    gptq_eval_text("wikitext3", "/nonexistent");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("wikitext2, ptb, ptb-new, c4, c4-new"), std::string::npos);
  }
  EXPECT_THROW(gptq_eval_text("c4", "/nonexistent"), Error);
}

TEST(DatasetTexts, MissingFilesNameThePath) {
  const std::string dir = "/nonexistent/razerq-data";
  auto expect_io = [&](auto&& f, const std::string& rel) {
    try {
      f();
      FAIL() << "expected an error for " << rel;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kIo) << rel;
      EXPECT_EQ(e.where(), dir + "/" + rel);
      EXPECT_NE(std::string(e.what()).find("RAZERQ_DATA"), std::string::npos) << e.what();
    }
  };
  expect_io([&] { wikitext2_text(dir); }, kWikitext2TestFile);
  expect_io([&] { wikitext2_raw_text(dir); }, kWikitext2TestFile);
  expect_io([&] { wikitext2_valid_text(dir); }, kWikitext2ValidFile);
  expect_io([&] { ptb_text(dir); }, kPtbValidFile);
  expect_io([&] { ptb_new_text(dir); }, kPtbTestFile);
  expect_io([&] { c4_validation_documents(dir); }, kC4ValidationFile);
  expect_io([&] { c4_train_documents(dir); }, kC4TrainFile);
  expect_io([&] { c4_new_text(dir); }, kC4ValidationFile);
  const ByteTokenizer bytes;
  expect_io([&] { gptq_eval_set("c4", bytes, 16, dir); }, kC4ValidationFile);
  expect_io([&] { llamacpp_eval_set(bytes, 512, -1, dir); }, kWikitext2TestFile);
  expect_io([&] { calibration_set("c4", 4, 16, 0, bytes, dir); }, kC4TrainFile);
  try {
    read_text_file("/nonexistent/file.txt");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), "/nonexistent/file.txt");
  }
}

// ---------------------------------------------------------------------------------------
// The Hugging Face dataset-script constructions on small inputs
// ---------------------------------------------------------------------------------------

TEST(DatasetHelpers, PythonStrip) {
  // python3 -c "print(repr('\u00a0 x\u3000\u2029'.strip()), repr('\t\n x \x1c'.strip()))" -> 'x' 'x'
  EXPECT_EQ(python_strip("\xc2\xa0 x\xe3\x80\x80\xe2\x80\xa9"), "x");
  EXPECT_EQ(python_strip("\t\n x \x1c"), "x");
  EXPECT_EQ(python_strip(" \xc3\xa9t\xc3\xa9 "), "\xc3\xa9t\xc3\xa9");  // "été": not space
  EXPECT_EQ(python_strip("  "), "");
  EXPECT_EQ(python_strip(""), "");
  EXPECT_EQ(python_strip(" a b "), "a b");
  EXPECT_EQ(python_strip("\xff \x80"), "\xff \x80");  // stray bytes are never space
}

TEST(DatasetHelpers, TextLinesUseUniversalNewlines) {
  EXPECT_EQ(python_text_lines("a\r\nb\rc\nd"), (std::vector<std::string>{"a\n", "b\n", "c\n", "d"}));
  EXPECT_EQ(python_text_lines("x\n"), (std::vector<std::string>{"x\n"}));
  EXPECT_TRUE(python_text_lines("").empty());
}

TEST(DatasetHelpers, WikitextRowsAndPtbSentences) {
  // python3 -c "raw=' \n = T = \n \n x \n';
  //   print(repr('\n\n'.join('' if l.strip()=='' else l for l in raw.splitlines(keepends=True))))"
  EXPECT_EQ(hf_wikitext_join(" \n = T = \n \n x \n"), "\n\n = T = \n\n\n\n\n x \n");
  EXPECT_EQ(ptb_sentences(" a b \n c <unk> \n"), (std::vector<std::string>{"a b", "c <unk>"}));
  EXPECT_EQ(join_strings({"a", "", "b"}, "\n\n"), "a\n\n\n\nb");
  EXPECT_EQ(join_strings({}, " "), "");
}

TEST(DatasetHelpers, ReadJsonlTexts) {
  test::TempDir tmp;
  const std::string path = tmp.str("docs.jsonl");
  write_file(path, "{\"text\": \"caf\\u00e9\", \"url\": \"x\"}\n\n{\"text\": \"\xe2\x82\xac 2\"}\n");
  EXPECT_EQ(read_jsonl_texts(path), (std::vector<std::string>{"caf\xc3\xa9", "\xe2\x82\xac 2"}));
  write_file(path, "{\"text\": \"a\"}\n{\"txt\": \"b\"}\n");
  try {
    read_jsonl_texts(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kMalformedInput);
    EXPECT_EQ(e.where(), path + ":2");
  }
  write_file(path, "{\"text\": \"a\"\n");
  EXPECT_THROW(read_jsonl_texts(path), Error);
}

// ---------------------------------------------------------------------------------------
// Windows
// ---------------------------------------------------------------------------------------

TEST(DatasetWindows, TokenIdsSha256) {
  // python3 -c "import hashlib,struct; print(hashlib.sha256(struct.pack('<3i',1,-2,70000)).hexdigest())"
  EXPECT_EQ(token_ids_sha256({1, -2, 70000}), "abb19db5eea990b951334da75d85f7dce355b2025e520e3f88ef8a4b199ff3cd");
  EXPECT_EQ(token_ids_sha256({}), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(DatasetWindows, GptqWindowsDropTheTail) {
  std::vector<int32_t> ids(11);
  for (int i = 0; i < 11; ++i) ids[i] = i;
  const auto w = gptq_windows(ids, 4);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0], (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(w[1], (std::vector<int32_t>{4, 5, 6, 7}));
  EXPECT_TRUE(gptq_windows({1, 2, 3}, 4).empty());
  EXPECT_THROW(gptq_windows(ids, 1), Error);
}

TEST(DatasetWindows, LlamaCppChunksReplaceTheFirstTokenByBos) {
  std::vector<int32_t> ids(13);
  for (int i = 0; i < 13; ++i) ids[i] = 100 + i;
  const auto c = llamacpp_chunks(ids, 5, 1);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0], (std::vector<int32_t>{1, 101, 102, 103, 104}));
  EXPECT_EQ(c[1], (std::vector<int32_t>{1, 106, 107, 108, 109}));
  EXPECT_EQ(llamacpp_chunks(ids, 5, 1, 1).size(), 1u);   // --chunks 1
  EXPECT_EQ(llamacpp_chunks(ids, 5, 1, 99).size(), 2u);  // capped at n_chunk_max
  EXPECT_EQ(llamacpp_chunks(ids, 5, -1)[1][0], 105);     // no BOS in the vocabulary: kept
  // llama.cpp refuses fewer than 2 * n_ctx tokens.
  EXPECT_THROW(llamacpp_chunks(ids, 7, 1), Error);
  EXPECT_EQ(llamacpp_chunks(ids, 6, 1).size(), 2u);
}

TEST(DatasetWindows, StreamSamplingNeedsSeqlenPlusOneTokens) {
  PythonRandom rng(0);
  std::vector<int32_t> ids(17);
  for (int i = 0; i < 17; ++i) ids[i] = i;
  // randint(0, 17 - 16 - 1) = randint(0, 0): always offset 0.
  const auto s = sample_stream_windows(ids, 3, 16, rng, "t");
  ASSERT_EQ(s.windows.size(), 3u);
  for (const auto& o : s.origins) EXPECT_EQ(o.offset, 0);
  try {
    sample_stream_windows(ids, 1, 17, rng, "short.txt");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), "short.txt");
    EXPECT_NE(std::string(e.what()).find("17 tokens"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------
// Sampling against the Python reference (byte tokenizer: no sentencepiece needed)
// ---------------------------------------------------------------------------------------

TEST(DatasetSampling, GptqC4EvalWithByteTokenizer) {
  REQUIRE_DATA();
  const ByteTokenizer bytes;
  // GPTQ get_c4 validation loop, random.seed(0), 256 x 2048 over the 1025 documents:
  // sha caf250a0..., first origins [(621, 488), (447, 8), (202, 47830), (906, 221)], 830 draws.
  const EvalSet set = gptq_eval_set("c4", bytes, 2048, test::data_dir());
  ASSERT_EQ(set.n_windows(), 256);
  EXPECT_EQ(set.stream_tokens, 256 * 2048);
  EXPECT_EQ(set.stream_sha256, "caf250a01a958844aa92ddaa516297458b88a478dca362918053e50346d0ad93");
  EXPECT_EQ(token_ids_sha256(concat(set.windows)), set.stream_sha256);
  const int64_t expected[4][2] = {{621, 488}, {447, 8}, {202, 47830}, {906, 221}};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(set.origins[i].document, expected[i][0]);
    EXPECT_EQ(set.origins[i].offset, expected[i][1]);
  }
  EXPECT_EQ(set.convention, "gptq");
  EXPECT_EQ(set.first_scored, 0);
  EXPECT_EQ(set.scored_tokens_per_window, 2047);
  EXPECT_NE(set.note.find("45576"), std::string::npos) << set.note;

  PythonRandom rng(0);
  const auto docs = c4_validation_documents(test::data_dir());
  const SampledWindows s = sample_document_windows(docs, bytes, 256, 2048, rng, "c4");
  EXPECT_EQ(s.document_draws, 830);
  EXPECT_EQ(s.windows, set.windows);
}

TEST(DatasetSampling, CalibrationWithByteTokenizer) {
  REQUIRE_DATA();
  const ByteTokenizer bytes;
  // get_c4 train loop, random.seed(0), 128 x 2048: sha 374bde69..., first origins
  // [(861, 165), (1033, 1), (577, 1144), (513, 58)].
  const CalibrationSet c4 = calibration_set("c4", 128, 2048, 0, bytes, test::data_dir());
  ASSERT_EQ(c4.windows.size(), 128u);
  for (const auto& w : c4.windows) ASSERT_EQ(w.size(), 2048u);
  EXPECT_EQ(token_ids_sha256(concat(c4.windows)),
            "374bde693b00cb47122576e220f7aaab23283e3ea75333cc2f116c2955b4882f");
  EXPECT_EQ(c4.origins[1].document, 1033);
  EXPECT_EQ(c4.origins[1].offset, 1);
  EXPECT_EQ(c4.origins[3].document, 513);
  EXPECT_EQ(c4.origins[3].offset, 58);
  EXPECT_FALSE(c4.note.empty());

  // Only 5 of the 1041 documents exceed 20000 bytes: many rejected draws (1659 in all).
  // random.seed(5), 8 x 20000: sha ff7602c2..., first origins [(411, 11711), (411, 4968), (63, 29)].
  const CalibrationSet rare = calibration_set("c4", 8, 20000, 5, bytes, test::data_dir());
  EXPECT_EQ(token_ids_sha256(concat(rare.windows)),
            "ff7602c220a8560965630915b1c35101bbab3a6e6cc00da9ab72b00c96591afa");
  EXPECT_EQ(rare.origins[0].document, 411);
  EXPECT_EQ(rare.origins[0].offset, 11711);
  EXPECT_EQ(rare.origins[2].document, 63);

  // get_wikitext2's train loop on the validation text, random.seed(7), 64 x 1024:
  // sha 339ed637..., first offsets [679126, 316353, 828004, 101263].
  const CalibrationSet wv = calibration_set("wikitext2-valid", 64, 1024, 7, bytes, test::data_dir());
  EXPECT_EQ(token_ids_sha256(concat(wv.windows)),
            "339ed637fc23e424c8d3f9b57b05aa94e4707f475718ac57a414e02170f5041f");
  EXPECT_EQ(wv.origins[0].document, -1);
  EXPECT_EQ(wv.origins[0].offset, 679126);
  EXPECT_EQ(wv.origins[3].offset, 101263);
}

TEST(DatasetSampling, TxtAndJsonlSourcesSampleLikeTheBuiltIns) {
  REQUIRE_DATA();
  const ByteTokenizer bytes;
  test::TempDir tmp;
  // A .txt is read as it is: the joined validation text gives wikitext2-valid's windows.
  write_file(tmp.str("valid.txt"), wikitext2_valid_text(test::data_dir()));
  EXPECT_EQ(calibration_windows(tmp.str("valid.txt"), 16, 512, 3, bytes, test::data_dir()),
            calibration_windows("wikitext2-valid", 16, 512, 3, bytes, test::data_dir()));
  // A .jsonl of the train documents gives c4's windows.
  std::string jsonl;
  for (const auto& d : c4_train_documents(test::data_dir())) jsonl += nlohmann::json{{"text", d}}.dump() + "\n";
  write_file(tmp.str("train.jsonl"), jsonl);
  EXPECT_EQ(calibration_windows(tmp.str("train.jsonl"), 16, 512, 3, bytes, test::data_dir()),
            calibration_windows("c4", 16, 512, 3, bytes, test::data_dir()));
}

TEST(DatasetSampling, DeterministicPerSeed) {
  REQUIRE_DATA();
  const ByteTokenizer bytes;
  const auto a = calibration_windows("c4", 8, 256, 11, bytes, test::data_dir());
  const auto b = calibration_windows("c4", 8, 256, 11, bytes, test::data_dir());
  const auto c = calibration_windows("c4", 8, 256, 12, bytes, test::data_dir());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(DatasetSampling, CalibrationErrors) {
  const ByteTokenizer bytes;
  test::TempDir tmp;
  auto expect_error = [](auto&& f, ErrorKind kind, const std::string& where, const std::string& text) {
    try {
      f();
      FAIL() << "expected an error mentioning '" << text << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
      EXPECT_EQ(e.where(), where) << e.what();
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  // Missing user files name the path.
  expect_error([&] { calibration_set(tmp.str("none.txt"), 4, 16, 0, bytes); }, ErrorKind::kIo,
               tmp.str("none.txt"), "cannot open");
  expect_error([&] { calibration_set(tmp.str("none.jsonl"), 4, 16, 0, bytes); }, ErrorKind::kIo,
               tmp.str("none.jsonl"), "cannot open");
  // A text too short for one window: 1 + 5 byte ids < 16 + 1.
  write_file(tmp.str("short.txt"), "hello");
  expect_error([&] { calibration_set(tmp.str("short.txt"), 4, 16, 0, bytes); },
               ErrorKind::kInvalidArgument, tmp.str("short.txt"), "6 tokens");
  // No document long enough (Python would loop forever).
  write_file(tmp.str("short.jsonl"), "{\"text\": \"a\"}\n{\"text\": \"bb\"}\n{\"text\": \"ccc\"}\n");
  expect_error([&] { calibration_set(tmp.str("short.jsonl"), 4, 16, 0, bytes); },
               ErrorKind::kInvalidArgument, tmp.str("short.jsonl"), "none of the 3 documents");
  // One usable document is enough: GPTQ samples with replacement.
  write_file(tmp.str("one.jsonl"), "{\"text\": \"a\"}\n{\"text\": \"" + std::string(40, 'x') + "\"}\n");
  const CalibrationSet one = calibration_set(tmp.str("one.jsonl"), 5, 16, 0, bytes);
  ASSERT_EQ(one.windows.size(), 5u);
  for (const auto& o : one.origins) EXPECT_EQ(o.document, 1);
  write_file(tmp.str("empty.jsonl"), "\n");
  expect_error([&] { calibration_set(tmp.str("empty.jsonl"), 4, 16, 0, bytes); },
               ErrorKind::kInvalidArgument, tmp.str("empty.jsonl"), "no documents");
  // Unknown sources and bad sizes.
  expect_error([&] { calibration_set("pile", 4, 16, 0, bytes); }, ErrorKind::kInvalidArgument, "pile",
               "unknown calibration source");
  expect_error([&] { calibration_set("c4", 0, 16, 0, bytes); }, ErrorKind::kInvalidArgument, "c4",
               "n_samples 0");
  expect_error([&] { calibration_set("c4", 4, 1, 0, bytes); }, ErrorKind::kInvalidArgument, "c4",
               "seqlen 1");
  // Train splits that the data directory does not have say what to use instead.
  expect_error([&] { calibration_set("wikitext2", 4, 16, 0, bytes, tmp.str()); }, ErrorKind::kIo,
               tmp.str("wikitext2/wiki.train.raw"), "wikitext2-valid");
  expect_error([&] { calibration_set("ptb", 4, 16, 0, bytes, tmp.str()); }, ErrorKind::kIo,
               tmp.str("ptb/ptb.train.txt"), "c4");
}

TEST(DatasetSampling, EvalSetErrors) {
  REQUIRE_DATA();
  const ByteTokenizer bytes;
  EXPECT_THROW(gptq_eval_set("c5", bytes, 2048, test::data_dir()), Error);
  EXPECT_THROW(gptq_eval_set("wikitext2", bytes, 1, test::data_dir()), Error);
  // More than the text: no window at all is an error, not an empty set.
  EXPECT_THROW(gptq_eval_set("ptb", bytes, 1 << 30, test::data_dir()), Error);
  // llama.cpp's minimum of 2 * n_ctx tokens; the error names the file.
  try {
    llamacpp_eval_set(bytes, 1 << 20, -1, test::data_dir());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), test::data_path(kWikitext2TestFile));
  }
}

// ---------------------------------------------------------------------------------------
// The real tokenizer: tok512 (models/stories260K/hf/tokenizer.model)
// ---------------------------------------------------------------------------------------

TEST(DatasetTok512, GptqSetsMatchGoldenCountsHashesAndWindows) {
  REQUIRE_DATA();
  const auto g = golden("stories260K_and_tokenizers_golden_hf.json")["tokenizer_tok512"];
  const auto g14 = golden("llama-14m.golden_hf.json");
  struct Case {
    const char* name;
    const char* golden_key;
    int64_t tokens;  // README "Token counts (with BOS)", sentencepiece, tok512
  };
  const Case cases[] = {{"wikitext2", "wikitext2", 815066},
                        {"ptb", "ptb", 239493},
                        {"ptb-new", "ptb-new", 262372},
                        {"c4-new", "c4", 1385079}};
  for (const auto& c : cases) {
    for (int seqlen : {2048, 512}) {
      SCOPED_TRACE(std::string(c.name) + " @ " + std::to_string(seqlen));
      const EvalSet set = gptq_eval_set(c.name, tok512(), seqlen, test::data_dir());
      EXPECT_EQ(set.stream_tokens, c.tokens);
      EXPECT_EQ(set.stream_tokens, g[c.golden_key]["n_ids_with_bos"].get<int64_t>());
      EXPECT_EQ(set.stream_sha256, g[c.golden_key]["sha256_int32le"].get<std::string>());
      const auto& p = g14["ppl"]["float32/" + std::string(c.name) + "/" + std::to_string(seqlen)];
      EXPECT_EQ(set.n_windows(), p["windows"].get<int64_t>());
      if (std::string(c.name) == "c4-new")  // the tokens kept: 256 * seqlen
        EXPECT_EQ(set.n_windows() * seqlen, p["tokens"].get<int64_t>());
      else
        EXPECT_EQ(set.stream_tokens, p["tokens"].get<int64_t>());
      ASSERT_FALSE(set.windows.empty());
      const auto first16 = g[c.golden_key]["first16"].get<std::vector<int32_t>>();
      EXPECT_EQ(std::vector<int32_t>(set.windows[0].begin(), set.windows[0].begin() + 16), first16);
      EXPECT_EQ(set.scored_tokens_per_window, seqlen - 1);
      for (size_t w = 0; w < set.windows.size(); ++w) {
        ASSERT_EQ(set.windows[w].size(), static_cast<size_t>(seqlen));
        ASSERT_EQ(set.origins[w].offset, static_cast<int64_t>(w) * seqlen);
      }
    }
  }
  // README: wikitext2 at 2048 is 397 windows, c4-new at 2048 is 256.
  EXPECT_EQ(gptq_eval_set("c4-new", tok512(), 2048, test::data_dir()).n_windows(), 256);
}

TEST(DatasetTok512, WikitextWindowsMatchTheGoldenIdArray) {
  REQUIRE_DATA();
  // golden/token_ids/tok512.wikitext2.sentencepiece.i32: the full id array, int32 LE.
  const std::string bytes = read_text_file(test::data_path("golden/token_ids/tok512.wikitext2.sentencepiece.i32"));
  ASSERT_EQ(bytes.size(), 815066u * 4);
  std::vector<int32_t> ids(bytes.size() / 4);
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto* b = reinterpret_cast<const unsigned char*>(bytes.data() + 4 * i);
    ids[i] = static_cast<int32_t>(b[0] | (b[1] << 8) | (b[2] << 16) | (uint32_t(b[3]) << 24));
  }
  const EvalSet set = gptq_eval_set("wikitext2", tok512(), 2048, test::data_dir());
  EXPECT_EQ(set.windows, gptq_windows(ids, 2048));
}

TEST(DatasetTok512, GptqC4SampledSet) {
  REQUIRE_DATA();
  // Python reference (get_c4 validation loop, random.seed(0), tok512 ids):
  //   2048: sha 1aefbd53..., first origins [(202, 4832), (499, 373), (917, 373), (1002, 893)],
  //         last (340, 364); 1629 draws; 161 of the 1025 documents have more than 2048 ids.
  //   512:  sha d812aaba..., first origins [(861, 41), (995, 207), ...], last (44, 61).
  const EvalSet s2048 = gptq_eval_set("c4", tok512(), 2048, test::data_dir());
  ASSERT_EQ(s2048.n_windows(), 256);
  EXPECT_EQ(s2048.stream_sha256, "1aefbd53a37aeda735ab30af1858c0bc8146cb1bc6797423a8ff631ca45ac0b3");
  EXPECT_EQ(s2048.origins[0].document, 202);
  EXPECT_EQ(s2048.origins[0].offset, 4832);
  EXPECT_EQ(s2048.origins[3].document, 1002);
  EXPECT_EQ(s2048.origins[3].offset, 893);
  EXPECT_EQ(s2048.origins[255].document, 340);
  EXPECT_EQ(s2048.origins[255].offset, 364);
  // Each window is its document's ids (BOS first) from the recorded offset.
  const auto docs = c4_validation_documents(test::data_dir());
  for (int w : {0, 100, 255}) {
    const auto ids = tok512().encode(docs[s2048.origins[w].document], true);
    const auto off = s2048.origins[w].offset;
    EXPECT_EQ(s2048.windows[w], std::vector<int32_t>(ids.begin() + off, ids.begin() + off + 2048));
  }
  const EvalSet s512 = gptq_eval_set("c4", tok512(), 512, test::data_dir());
  EXPECT_EQ(s512.stream_sha256, "d812aaba7b57205ed5588c2732865d91883fbaef3aaebf3aa6e114321af49482");
  EXPECT_EQ(s512.origins[0].document, 861);
  EXPECT_EQ(s512.origins[0].offset, 41);
  EXPECT_EQ(s512.origins[255].document, 44);
  EXPECT_EQ(s512.origins[255].offset, 61);
}

TEST(DatasetTok512, LlamaCppChunks) {
  REQUIRE_DATA();
  // wiki.test.raw without its last "\n" (llama.cpp's -f), [bos] + sentencepiece: 809,283 ids
  // (sha 2fd9cce6...); 809283 // 512 = 1580 chunks, // 2048 = 395.
  const EvalSet set = llamacpp_eval_set(tok512(), 512, -1, test::data_dir());
  EXPECT_EQ(set.convention, "llamacpp");
  EXPECT_EQ(set.name, "wikitext2");
  EXPECT_EQ(set.stream_tokens, 809283);
  EXPECT_EQ(set.stream_sha256, "2fd9cce6c4ab453b11742271d1b5c9ea70c9ba7873100d71894731d0ce4d0207");
  EXPECT_EQ(set.n_windows(), 1580);
  EXPECT_EQ(set.first_scored, 256);
  EXPECT_EQ(set.scored_tokens_per_window, 255);
  EXPECT_EQ(set.scored_tokens(), 1580 * 255);
  for (const auto& w : set.windows) {
    ASSERT_EQ(w.size(), 512u);
    ASSERT_EQ(w[0], tok512().bos_id());
  }
  EXPECT_EQ(llamacpp_eval_set(tok512(), 2048, -1, test::data_dir()).n_windows(), 395);
  EXPECT_EQ(llamacpp_eval_set(tok512(), 512, 10, test::data_dir()).n_windows(), 10);
  // Any file: the name is the file name.
  EXPECT_EQ(llamacpp_eval_set_file(test::data_path(kWikitext2TestFile), tok512(), 512).name, "wiki.test.raw");
}

TEST(DatasetTok512, Calibration) {
  REQUIRE_DATA();
  // get_c4 train loop, random.seed(0), 128 x 2048: sha d4172e73..., first origins
  // [(861, 165), (577, 572), (647, 625), (454, 3909)].
  const CalibrationSet c4 = calibration_set("c4", 128, 2048, 0, tok512(), test::data_dir());
  ASSERT_EQ(c4.windows.size(), 128u);
  EXPECT_EQ(token_ids_sha256(concat(c4.windows)),
            "d4172e732e57b066f4f46ac2293c91377632b09469df743365bf2f537b535aae");
  EXPECT_EQ(c4.origins[0].document, 861);
  EXPECT_EQ(c4.origins[0].offset, 165);
  EXPECT_EQ(c4.origins[3].document, 454);
  EXPECT_EQ(c4.origins[3].offset, 3909);
  // random.seed(3), 16 x 512: sha 840a36be...
  EXPECT_EQ(token_ids_sha256(concat(calibration_windows("c4", 16, 512, 3, tok512(), test::data_dir()))),
            "840a36be1ed50d2364fdf1709001c2588a55d1352ea04637687785abbc8bb798");
  // get_wikitext2's train loop on the validation text, random.seed(0), 128 x 2048:
  // sha 6deb7108..., first offsets [403958, 441001, 42450, 271493].
  const CalibrationSet wv = calibration_set("wikitext2-valid", 128, 2048, 0, tok512(), test::data_dir());
  EXPECT_EQ(token_ids_sha256(concat(wv.windows)),
            "6deb7108206f983421b80799b610b6aa771e36f75ab871815b68fae1b6788096");
  EXPECT_EQ(wv.origins[1].offset, 441001);
  EXPECT_EQ(wv.origins[3].offset, 271493);
}
