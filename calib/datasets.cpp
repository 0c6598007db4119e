// Evaluation texts, windows and calibration samples (see datasets.hpp). The references are
// IST-DASLab/gptq datautils.py (get_wikitext2, get_ptb, get_ptb_new, get_c4, get_c4_new) and
// llama.py (llama_eval), the Hugging Face dataset scripts they load (wikitext,
// ptb_text_only), and llama.cpp examples/perplexity/perplexity.cpp with common/arg.cpp (`-f`).
#include "calib/datasets.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "calib/python_random.hpp"
#include "calib/tokenizer.hpp"
#include "common/error.hpp"
#include "common/file.hpp"
#include "common/sha256.hpp"

namespace razerq::calib {
namespace {

std::string data_path(const std::string& data_dir, const char* rel) {
  return (std::filesystem::path(data_dir) / rel).string();
}

// The path of a file of the data directory; a missing file is an error that names the path
// and says how the directory is chosen (`what`, when given, says what the file is).
std::string data_file(const std::string& data_dir, const char* rel, const char* what = nullptr) {
  const std::string path = data_path(data_dir, rel);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    if (what)
      throw_error(ErrorKind::kIo, path,
                  "no such file: %s is not in the data directory '%s' (calibrate on c4 or "
                  "wikitext2-valid, or pass a .txt/.jsonl path)",
                  what, data_dir.c_str());
    throw_error(ErrorKind::kIo, path,
                "no such file (data directory '%s': set RAZERQ_DATA or pass data_dir)",
                data_dir.c_str());
  }
  return path;
}

std::string read_data_file(const std::string& data_dir, const char* rel) {
  return read_text_file(data_file(data_dir, rel));
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Python's str.isspace() for one code point.
bool is_python_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
         c == 0x202f || c == 0x205f || c == 0x3000;
}

// Decodes the UTF-8 code point starting at s[i]; sets `len` to its byte length. Invalid
// bytes decode as themselves with length 1 (they are never whitespace).
uint32_t decode_utf8(const std::string& s, size_t i, size_t& len) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  int n = b0 < 0x80 ? 1 : (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xe ? 3 : (b0 >> 3) == 0x1e ? 4 : 0;
  if (n == 0 || i + n > s.size()) {
    len = 1;
    return b0;
  }
  uint32_t c = n == 1 ? b0 : b0 & (0x7f >> n);
  for (int k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xc0) != 0x80) {
      len = 1;
      return b0;
    }
    c = (c << 6) | (b & 0x3f);
  }
  len = static_cast<size_t>(n);
  return c;
}

void check_seqlen(int seqlen, const char* what) {
  if (seqlen < 2)
    throw_error(ErrorKind::kInvalidArgument, what, "seqlen %d (expected at least 2)", seqlen);
}

std::vector<WindowOrigin> stream_origins(size_t n_windows, int seqlen) {
  std::vector<WindowOrigin> origins(n_windows);
  for (size_t w = 0; w < n_windows; ++w) origins[w] = {-1, static_cast<int64_t>(w) * seqlen};
  return origins;
}

std::vector<int32_t> concat(const std::vector<std::vector<int32_t>>& windows) {
  std::vector<int32_t> out;
  for (const auto& w : windows) out.insert(out.end(), w.begin(), w.end());
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------

std::string default_data_dir() {
  if (const char* env = std::getenv("RAZERQ_DATA"); env && *env) return env;
  return "../shared/data";
}

std::string read_text_file(const std::string& path) { return read_file(path); }

std::vector<std::string> read_jsonl_texts(const std::string& path) {
  const std::string contents = read_text_file(path);
  std::vector<std::string> texts;
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < contents.size()) {
    size_t end = contents.find('\n', pos);
    if (end == std::string::npos) end = contents.size();
    ++line_no;
    const std::string line = contents.substr(pos, end - pos);
    pos = end + 1;
    if (python_strip(line).empty()) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw_error(ErrorKind::kMalformedInput, where, "invalid JSON: %s", e.what());
    }
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
      throw_error(ErrorKind::kMalformedInput, where, "expected an object with a string \"text\" field");
    texts.push_back(j["text"].get<std::string>());
  }
  return texts;
}

std::string join_strings(const std::vector<std::string>& parts, const std::string& sep) {
  size_t n = parts.empty() ? 0 : sep.size() * (parts.size() - 1);
  for (const auto& p : parts) n += p.size();
  std::string out;
  out.reserve(n);
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

std::string python_strip(const std::string& s) {
  size_t begin = 0;
  while (begin < s.size()) {
    size_t len = 0;
    if (!is_python_space(decode_utf8(s, begin, len))) break;
    begin += len;
  }
  size_t end = s.size();
  while (end > begin) {
    size_t start = end - 1;  // back to the lead byte of the last code point
    while (start > begin && (static_cast<unsigned char>(s[start]) & 0xc0) == 0x80 && end - start < 4)
      --start;
    size_t len = 0;
    const uint32_t c = decode_utf8(s, start, len);
    // Not one well-formed code point (a stray byte) or not space: stop.
    if (start + len != end || !is_python_space(c)) break;
    end = start;
  }
  return s.substr(begin, end - begin);
}

std::vector<std::string> python_text_lines(const std::string& contents) {
  std::vector<std::string> lines;
  std::string line;
  for (size_t i = 0; i < contents.size(); ++i) {
    const char ch = contents[i];
    if (ch == '\r' || ch == '\n') {
      // Universal newlines: "\r\n" and "\r" read as "\n".
      if (ch == '\r' && i + 1 < contents.size() && contents[i + 1] == '\n') ++i;
      line += '\n';
      lines.push_back(std::move(line));
      line.clear();
    } else {
      line += ch;
    }
  }
  if (!line.empty()) lines.push_back(std::move(line));
  return lines;
}

std::string hf_wikitext_join(const std::string& raw) {
  // HF datasets wikitext.py _generate_examples: `if row.strip(): yield {"text": row}
  // else: yield {"text": ""}`; GPTQ get_wikitext2 joins the rows with "\n\n".
  std::vector<std::string> rows = python_text_lines(raw);
  for (auto& row : rows)
    if (python_strip(row).empty()) row.clear();
  return join_strings(rows, "\n\n");
}

std::vector<std::string> ptb_sentences(const std::string& raw) {
  // HF datasets ptb_text_only.py _generate_examples: `line = line.strip()`.
  std::vector<std::string> sentences = python_text_lines(raw);
  for (auto& s : sentences) s = python_strip(s);
  return sentences;
}

// ---------------------------------------------------------------------------------------

std::string wikitext2_text(const std::string& data_dir) {
  return hf_wikitext_join(read_data_file(data_dir, kWikitext2TestFile));
}

std::string wikitext2_valid_text(const std::string& data_dir) {
  return hf_wikitext_join(read_data_file(data_dir, kWikitext2ValidFile));
}

std::string wikitext2_raw_text(const std::string& data_dir) {
  return read_data_file(data_dir, kWikitext2TestFile);
}

std::string ptb_text(const std::string& data_dir) {
  // GPTQ get_ptb: "\n\n".join(valdata['sentence']).
  return join_strings(ptb_sentences(read_data_file(data_dir, kPtbValidFile)), "\n\n");
}

std::string ptb_new_text(const std::string& data_dir) {
  // GPTQ get_ptb_new: " ".join(testdata['sentence']).
  return join_strings(ptb_sentences(read_data_file(data_dir, kPtbTestFile)), " ");
}

std::vector<std::string> c4_validation_documents(const std::string& data_dir) {
  return read_jsonl_texts(data_file(data_dir, kC4ValidationFile));
}

std::vector<std::string> c4_train_documents(const std::string& data_dir) {
  return read_jsonl_texts(data_file(data_dir, kC4TrainFile));
}

std::string c4_new_text(const std::string& data_dir) {
  // GPTQ get_c4_new: ' '.join(valdata[:1100]['text']).
  std::vector<std::string> docs = c4_validation_documents(data_dir);
  if (docs.size() > static_cast<size_t>(kGptqC4NewDocuments)) docs.resize(kGptqC4NewDocuments);
  return join_strings(docs, " ");
}

std::string gptq_eval_text(const std::string& name, const std::string& data_dir) {
  if (name == "wikitext2") return wikitext2_text(data_dir);
  if (name == "ptb") return ptb_text(data_dir);
  if (name == "ptb-new") return ptb_new_text(data_dir);
  if (name == "c4-new") return c4_new_text(data_dir);
  if (name == "c4")
    throw_error(ErrorKind::kInvalidArgument, "c4",
                "GPTQ's c4 samples single documents and has no joined text "
                "(use c4_validation_documents or gptq_eval_set; the joined text is c4-new)");
  throw_error(ErrorKind::kInvalidArgument, name,
              "unknown GPTQ evaluation set (expected one of: wikitext2, ptb, ptb-new, c4, c4-new)");
}

// ---------------------------------------------------------------------------------------

std::string token_ids_sha256(const std::vector<int32_t>& ids) {
  Sha256 h;
  unsigned char buf[4096];
  size_t n = 0;
  for (int32_t id : ids) {
    const auto u = static_cast<uint32_t>(id);
    buf[n++] = static_cast<unsigned char>(u);
    buf[n++] = static_cast<unsigned char>(u >> 8);
    buf[n++] = static_cast<unsigned char>(u >> 16);
    buf[n++] = static_cast<unsigned char>(u >> 24);
    if (n == sizeof buf) {
      h.update(buf, n);
      n = 0;
    }
  }
  h.update(buf, n);
  return h.hex_digest();
}

std::vector<std::vector<int32_t>> gptq_windows(const std::vector<int32_t>& ids, int seqlen) {
  check_seqlen(seqlen, "gptq_windows");
  // llama.py llama_eval: nsamples = testenc.numel() // model.seqlen;
  // batch = testenc[:, (i * seqlen):((i + 1) * seqlen)].
  const size_t n_windows = ids.size() / static_cast<size_t>(seqlen);
  std::vector<std::vector<int32_t>> windows(n_windows);
  for (size_t w = 0; w < n_windows; ++w)
    windows[w].assign(ids.begin() + w * seqlen, ids.begin() + (w + 1) * seqlen);
  return windows;
}

std::vector<std::vector<int32_t>> llamacpp_chunks(const std::vector<int32_t>& ids, int n_ctx,
                                                  int32_t bos_id, int n_chunks) {
  if (n_ctx < 3)
    throw_error(ErrorKind::kInvalidArgument, "llamacpp_chunks",
                "n_ctx %d (expected at least 3: llama.cpp scores positions n_ctx/2 .. n_ctx-2)", n_ctx);
  // perplexity.cpp perplexity(): "you need at least %d tokens to evaluate perplexity with a
  // context of %d" when tokens.size() < 2*n_ctx.
  if (ids.size() < 2 * static_cast<size_t>(n_ctx))
    throw_error(ErrorKind::kInvalidArgument, "llamacpp_chunks",
                "the text tokenizes to only %zu tokens; a context of %d needs at least %d "
                "(llama.cpp's minimum of 2 * n_ctx)",
                ids.size(), n_ctx, 2 * n_ctx);
  // n_chunk_max = tokens.size() / n_ctx; n_chunk = n_chunks < 0 ? n_chunk_max : min(...).
  const size_t n_chunk_max = ids.size() / static_cast<size_t>(n_ctx);
  const size_t n_chunk =
      n_chunks < 0 ? n_chunk_max : std::min(static_cast<size_t>(n_chunks), n_chunk_max);
  std::vector<std::vector<int32_t>> chunks(n_chunk);
  for (size_t c = 0; c < n_chunk; ++c) {
    chunks[c].assign(ids.begin() + c * n_ctx, ids.begin() + (c + 1) * n_ctx);
    // "add BOS token for the first batch of each chunk" (when the vocabulary adds BOS).
    if (bos_id >= 0) chunks[c][0] = bos_id;
  }
  return chunks;
}

SampledWindows sample_document_windows(const std::vector<std::string>& documents,
                                       const Tokenizer& tokenizer, int n_samples, int seqlen,
                                       PythonRandom& rng, const std::string& where) {
  check_seqlen(seqlen, where.c_str());
  if (n_samples < 0)
    throw_error(ErrorKind::kInvalidArgument, where, "n_samples %d (expected >= 0)", n_samples);
  if (documents.empty()) throw_error(ErrorKind::kInvalidArgument, where, "no documents to sample from");
  const auto n_docs = static_cast<int64_t>(documents.size());
  std::vector<std::vector<int32_t>> ids(documents.size());  // memoized tokenizations
  std::vector<bool> tokenized(documents.size(), false);
  int64_t n_tokenized = 0, n_usable = 0;

  SampledWindows out;
  out.windows.reserve(n_samples);
  out.origins.reserve(n_samples);
  for (int s = 0; s < n_samples; ++s) {
    int64_t doc = 0;
    while (true) {
      // i = random.randint(0, len(traindata) - 1); tmp = tokenizer(text) (BOS included).
      doc = rng.randint(0, n_docs - 1);
      ++out.document_draws;
      if (!tokenized[doc]) {
        ids[doc] = tokenizer.encode(documents[doc], /*add_bos=*/true);
        tokenized[doc] = true;
        ++n_tokenized;
        if (static_cast<int64_t>(ids[doc].size()) > seqlen) ++n_usable;
      }
      // `if tmp.input_ids.shape[1] > seqlen: break` (see the header on `>=` vs `>`).
      if (static_cast<int64_t>(ids[doc].size()) > seqlen) break;
      if (n_tokenized == n_docs && n_usable == 0)
        throw_error(ErrorKind::kInvalidArgument, where,
                    "none of the %lld documents has more than %d tokens (a window of %d needs "
                    "at least %d)",
                    static_cast<long long>(n_docs), seqlen, seqlen, seqlen + 1);
    }
    const auto& d = ids[doc];
    // i = random.randint(0, tmp.input_ids.shape[1] - seqlen - 1); j = i + seqlen.
    const int64_t offset = rng.randint(0, static_cast<int64_t>(d.size()) - seqlen - 1);
    out.windows.emplace_back(d.begin() + offset, d.begin() + offset + seqlen);
    out.origins.push_back({doc, offset});
  }
  return out;
}

SampledWindows sample_stream_windows(const std::vector<int32_t>& ids, int n_samples, int seqlen,
                                     PythonRandom& rng, const std::string& where) {
  check_seqlen(seqlen, where.c_str());
  if (n_samples < 0)
    throw_error(ErrorKind::kInvalidArgument, where, "n_samples %d (expected >= 0)", n_samples);
  const auto n = static_cast<int64_t>(ids.size());
  if (n < static_cast<int64_t>(seqlen) + 1)
    throw_error(ErrorKind::kInvalidArgument, where,
                "the text has %lld tokens; random windows of %d need at least %d",
                static_cast<long long>(n), seqlen, seqlen + 1);
  SampledWindows out;
  out.windows.reserve(n_samples);
  out.origins.reserve(n_samples);
  for (int s = 0; s < n_samples; ++s) {
    // i = random.randint(0, trainenc.input_ids.shape[1] - seqlen - 1); j = i + seqlen.
    const int64_t offset = rng.randint(0, n - seqlen - 1);
    out.windows.emplace_back(ids.begin() + offset, ids.begin() + offset + seqlen);
    out.origins.push_back({-1, offset});
  }
  return out;
}

// ---------------------------------------------------------------------------------------

EvalSet gptq_eval_set(const std::string& name, const Tokenizer& tokenizer, int seqlen,
                      const std::string& data_dir) {
  check_seqlen(seqlen, name.c_str());
  EvalSet set;
  set.name = name;
  set.convention = "gptq";
  set.seqlen = seqlen;
  set.first_scored = 0;
  // llama_eval: loss over shift_logits[:, :-1] vs shift_labels[:, 1:] (seqlen - 1 targets);
  // the reference then weights each window's mean loss by seqlen, a quirk the perplexity
  // code reproduces.
  set.scored_tokens_per_window = seqlen - 1;

  if (name == "c4") {
    // datautils.get_c4: random.seed(0); 256 crops of random validation documents.
    // GPTQ samples from all 45576 documents of validation shard 0; only the first 1025 are
    // here, so the same generator picks other documents: a different (but equally built) set.
    const std::string path = data_file(data_dir, kC4ValidationFile);
    const std::vector<std::string> docs = read_jsonl_texts(path);
    PythonRandom rng(kGptqC4EvalSeed);
    SampledWindows s =
        sample_document_windows(docs, tokenizer, kGptqC4EvalSamples, seqlen, rng, path);
    set.windows = std::move(s.windows);
    set.origins = std::move(s.origins);
    const std::vector<int32_t> stream = concat(set.windows);  // torch.hstack(valenc)
    set.stream_tokens = static_cast<int64_t>(stream.size());
    set.stream_sha256 = token_ids_sha256(stream);
    set.note = strprintf(
        "c4 crops drawn (random.seed(0), GPTQ's get_c4 rules) from the %zu validation documents "
        "available; GPTQ draws from all %lld of shard 0, so the documents and crops differ and "
        "the perplexity is not comparable with published c4 numbers",
        docs.size(), static_cast<long long>(kC4ValidationShardDocuments));
    return set;
  }

  if (name == "c4-new") {
    // get_c4_new: ' '.join(valdata[:1100]['text']), tokenized once, then
    // valenc = valenc.input_ids[:, :(256 * seqlen)].
    std::vector<std::string> docs = c4_validation_documents(data_dir);
    const size_t n_docs = std::min(docs.size(), static_cast<size_t>(kGptqC4NewDocuments));
    docs.resize(n_docs);
    std::vector<int32_t> ids = tokenizer.encode(join_strings(docs, " "), /*add_bos=*/true);
    set.stream_tokens = static_cast<int64_t>(ids.size());
    set.stream_sha256 = token_ids_sha256(ids);
    const size_t keep = static_cast<size_t>(kGptqC4EvalSamples) * static_cast<size_t>(seqlen);
    if (n_docs == static_cast<size_t>(kGptqC4NewDocuments)) {
      // The reference text itself: no note.
    } else if (ids.size() < keep) {
      set.note = strprintf(
          "GPTQ joins the first %d validation documents; the %zu here give %zu tokens, fewer "
          "than 256 * seqlen = %zu, so there are %zu windows instead of 256",
          kGptqC4NewDocuments, n_docs, ids.size(), keep, ids.size() / static_cast<size_t>(seqlen));
    } else {
      set.note = strprintf(
          "GPTQ joins the first %d validation documents, %zu are here; their %zu tokens cover "
          "the 256 * seqlen = %zu kept, so at most the last tokens before the cut could differ",
          kGptqC4NewDocuments, n_docs, ids.size(), keep);
    }
    if (ids.size() > keep) ids.resize(keep);
    set.windows = gptq_windows(ids, seqlen);
  } else {
    const std::string text = gptq_eval_text(name, data_dir);  // throws on unknown names
    const std::vector<int32_t> ids = tokenizer.encode(text, /*add_bos=*/true);
    set.stream_tokens = static_cast<int64_t>(ids.size());
    set.stream_sha256 = token_ids_sha256(ids);
    set.windows = gptq_windows(ids, seqlen);
    if (name == "ptb" || name == "ptb-new")
      set.note =
          "PTB spells rare words \"<unk>\": Hugging Face Llama tokenizers map it to the unknown "
          "id, sentencepiece spells it out; published LLaMA PTB numbers used the former";
  }
  if (set.windows.empty())
    throw_error(ErrorKind::kInvalidArgument, name,
                "the text has %lld tokens, fewer than one window of %d",
                static_cast<long long>(set.stream_tokens), seqlen);
  set.origins = stream_origins(set.windows.size(), seqlen);
  return set;
}

EvalSet llamacpp_eval_set_file(const std::string& path, const Tokenizer& tokenizer, int n_ctx,
                               int n_chunks) {
  std::string text = read_text_file(path);
  // common/arg.cpp `-f`: "if (!params.prompt.empty() && params.prompt.back() == '\n')
  // params.prompt.pop_back();"
  if (!text.empty() && text.back() == '\n') text.pop_back();
  // perplexity.cpp: tokens = common_tokenize(ctx, params.prompt, true) (add BOS).
  const std::vector<int32_t> ids = tokenizer.encode(text, /*add_bos=*/true);
  EvalSet set;
  set.name = std::filesystem::path(path).filename().string();
  set.convention = "llamacpp";
  set.seqlen = n_ctx;
  try {
    set.windows = llamacpp_chunks(ids, n_ctx, tokenizer.bos_id(), n_chunks);
  } catch (const Error& e) {
    throw Error(e.kind(), path, e.message());
  }
  set.origins = stream_origins(set.windows.size(), n_ctx);
  // `const int first = n_ctx/2;` logits first .. n_ctx-2 against the next token:
  // process_logits(..., n_ctx - 1 - first, ...).
  set.first_scored = n_ctx / 2;
  set.scored_tokens_per_window = n_ctx - 1 - n_ctx / 2;
  set.stream_tokens = static_cast<int64_t>(ids.size());
  set.stream_sha256 = token_ids_sha256(ids);
  return set;
}

EvalSet llamacpp_eval_set(const Tokenizer& tokenizer, int n_ctx, int n_chunks,
                          const std::string& data_dir) {
  EvalSet set = llamacpp_eval_set_file(data_file(data_dir, kWikitext2TestFile), tokenizer, n_ctx,
                                       n_chunks);
  set.name = "wikitext2";
  return set;
}

// ---------------------------------------------------------------------------------------

CalibrationSet calibration_set(const std::string& source, int n_samples, int seqlen, int64_t seed,
                               const Tokenizer& tokenizer, const std::string& data_dir) {
  if (n_samples < 1)
    throw_error(ErrorKind::kInvalidArgument, source, "n_samples %d (expected at least 1)", n_samples);
  check_seqlen(seqlen, source.c_str());
  CalibrationSet set;
  set.source = source;
  set.seqlen = seqlen;
  set.seed = seed;
  PythonRandom rng(seed);  // random.seed(seed) before the sampling loop, as datautils does

  auto from_documents = [&](const std::vector<std::string>& docs, const std::string& where) {
    SampledWindows s = sample_document_windows(docs, tokenizer, n_samples, seqlen, rng, where);
    set.windows = std::move(s.windows);
    set.origins = std::move(s.origins);
  };
  auto from_text = [&](const std::string& text, const std::string& where) {
    // get_wikitext2 / get_ptb: trainenc = tokenizer(text) (BOS included), then crops.
    const std::vector<int32_t> ids = tokenizer.encode(text, /*add_bos=*/true);
    SampledWindows s = sample_stream_windows(ids, n_samples, seqlen, rng, where);
    set.windows = std::move(s.windows);
    set.origins = std::move(s.origins);
  };
  if (source == "c4") {
    // datautils.get_c4 train loop over en/c4-train.00000-of-01024.
    const std::string path = data_file(data_dir, kC4TrainFile);
    const std::vector<std::string> docs = read_jsonl_texts(path);
    from_documents(docs, path);
    set.note = strprintf(
        "sampled from the first %zu documents of C4 train shard 0; GPTQ samples the whole shard "
        "(356,317 documents), so the windows differ from GPTQ's",
        docs.size());
  } else if (source == "wikitext2-valid") {
    const std::string path = data_file(data_dir, kWikitext2ValidFile);
    from_text(hf_wikitext_join(read_text_file(path)), path);
    set.note = "WikiText-2 validation split; GPTQ calibrates on the train split";
  } else if (source == "wikitext2") {
    // get_wikitext2: "\n\n".join(train rows); the train split when a copy is provided.
    const std::string path = data_file(data_dir, "wikitext2/wiki.train.raw", "the WikiText-2 train split");
    from_text(hf_wikitext_join(read_text_file(path)), path);
  } else if (source == "ptb") {
    // get_ptb: "\n\n".join(train sentences).
    const std::string path = data_file(data_dir, "ptb/ptb.train.txt", "the PTB train split");
    from_text(join_strings(ptb_sentences(read_text_file(path)), "\n\n"), path);
  } else if (ends_with(source, ".txt")) {
    from_text(read_text_file(source), source);
  } else if (ends_with(source, ".jsonl")) {
    from_documents(read_jsonl_texts(source), source);
  } else {
    throw_error(ErrorKind::kInvalidArgument, source,
                "unknown calibration source (expected c4, wikitext2-valid, wikitext2, ptb, or a "
                "path ending in .txt or .jsonl)");
  }
  return set;
}

std::vector<std::vector<int32_t>> calibration_windows(const std::string& source, int n_samples,
                                                      int seqlen, int64_t seed,
                                                      const Tokenizer& tokenizer,
                                                      const std::string& data_dir) {
  return calibration_set(source, n_samples, seqlen, seed, tokenizer, data_dir).windows;
}

}  // namespace razerq::calib
