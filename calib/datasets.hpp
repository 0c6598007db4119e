#pragma once
// Evaluation texts, evaluation windows and calibration samples, built exactly as the
// reference tools build them, so that perplexities can be compared with published numbers
// (landscape.md section 3(d), razer.md section 7; the data and its checksums are described in
// shared/data/README.md).
//
// Two evaluation conventions:
//  * GPTQ (IST-DASLab/gptq datautils.py + llama.py llama_eval; copied by AWQ, OmniQuant,
//    QuaRot, SpinQuant, SqueezeLLM): one text tokenized once with BOS, cut into
//    n // seqlen non-overlapping windows; every shifted position is scored. "c4" instead
//    samples 256 random crops from random documents with Python's `random` seeded 0.
//  * llama.cpp (examples/perplexity/perplexity.cpp, `llama-perplexity -f wiki.test.raw`):
//    the raw file tokenized once with BOS, n_ctx-token chunks (512 by default) whose first
//    token is replaced by BOS, only the second half of each chunk scored.
//
// Everything that reads data takes a `data_dir` (default: default_data_dir()); a missing
// file is a razerq::Error (kIo) whose `where` is the full path.
#include <cstdint>
#include <string>
#include <vector>

namespace razerq::calib {

class Tokenizer;
class PythonRandom;

// ---------------------------------------------------------------------------------------
// Where the data lives
// ---------------------------------------------------------------------------------------

// $RAZERQ_DATA when set and non-empty, else "../shared/data" (relative to the current
// directory, i.e. the repository root's sibling when run from the repository).
std::string default_data_dir();

// Files inside the data directory (shared/data/README.md "Layout").
inline constexpr const char* kWikitext2TestFile = "wikitext2/wiki.test.raw";
inline constexpr const char* kWikitext2ValidFile = "wikitext2/wiki.valid.raw";
inline constexpr const char* kPtbValidFile = "ptb/ptb.valid.txt";
inline constexpr const char* kPtbTestFile = "ptb/ptb.test.txt";
inline constexpr const char* kC4ValidationFile = "c4/c4-validation.00000-of-00008.first1025.jsonl";
inline constexpr const char* kC4TrainFile = "c4/c4-train.00000-of-01024.first1041.jsonl";

// Reference constants.
inline constexpr int kGptqC4EvalSamples = 256;       // datautils.get_c4: `for _ in range(256)`
inline constexpr int kGptqC4NewDocuments = 1100;     // datautils.get_c4_new: valdata[:1100]
inline constexpr int kGptqC4EvalSeed = 0;            // get_c4 reseeds with 0 for validation
inline constexpr int64_t kC4ValidationShardDocuments = 45576;  // en/c4-validation.00000-of-00008
inline constexpr int kLlamaCppDefaultContext = 512;  // llama-perplexity `-c` default

// ---------------------------------------------------------------------------------------
// Files and the constructions of the Hugging Face dataset scripts
// ---------------------------------------------------------------------------------------

// The whole file, bytes as they are.
std::string read_text_file(const std::string& path);

// The "text" string of every JSON object of a .jsonl file (one object per line; blank lines
// are skipped). Errors name the file and line.
std::vector<std::string> read_jsonl_texts(const std::string& path);

// Python's `sep.join(parts)`.
std::string join_strings(const std::vector<std::string>& parts, const std::string& sep);

// Python's str.strip() on UTF-8 text: removes leading and trailing characters for which
// str.isspace() is true (ASCII whitespace, \x1c-\x1f, U+0085, U+00A0, U+1680, U+2000-U+200A,
// U+2028, U+2029, U+202F, U+205F, U+3000).
std::string python_strip(const std::string& s);

// The lines of a file as Python's text mode yields them: universal newlines ("\r\n" and
// "\r" become "\n"), each line keeping its final "\n" (the last one may have none).
std::vector<std::string> python_text_lines(const std::string& contents);

// HF `wikitext` rows of a wiki.*.raw file, "\n\n"-joined as GPTQ's get_wikitext2 does: each
// line is a row, kept with its "\n", except lines that are blank after strip(), which
// become "" (the dataset script yields {"text": ""} for them).
std::string hf_wikitext_join(const std::string& raw);

// HF `ptb_text_only` sentences of a ptb.*.txt file: `line.strip()` of every line.
std::vector<std::string> ptb_sentences(const std::string& raw);

// ---------------------------------------------------------------------------------------
// Evaluation texts (byte-exact; sha256 and character counts in shared/data/README.md)
// ---------------------------------------------------------------------------------------

// GPTQ "wikitext2": "\n\n".join(HF test rows). 1,294,336 characters.
std::string wikitext2_text(const std::string& data_dir = default_data_dir());
// The same construction on the validation split (a calibration source: no train split here).
std::string wikitext2_valid_text(const std::string& data_dir = default_data_dir());
// wiki.test.raw as it is: the file llama.cpp's `llama-perplexity -f` reads.
std::string wikitext2_raw_text(const std::string& data_dir = default_data_dir());
// GPTQ "ptb": "\n\n".join(validation sentences). 396,410 characters.
std::string ptb_text(const std::string& data_dir = default_data_dir());
// GPTQ "ptb-new": " ".join(test sentences). 442,422 characters.
std::string ptb_new_text(const std::string& data_dir = default_data_dir());
// The C4 validation documents (the first 1025 of shard 0; GPTQ's "c4" samples from them).
std::vector<std::string> c4_validation_documents(const std::string& data_dir = default_data_dir());
// The C4 train documents (the first 1041 of shard 0; the "c4" calibration source).
std::vector<std::string> c4_train_documents(const std::string& data_dir = default_data_dir());
// GPTQ "c4-new": " ".join(first 1100 validation documents); all 1025 here, which hold more
// than the 256 * seqlen tokens kept for Llama tokenizers up to seqlen 2048.
std::string c4_new_text(const std::string& data_dir = default_data_dir());

// The single text of a GPTQ evaluation set: "wikitext2", "ptb", "ptb-new" or "c4-new"
// ("c4" has no single text: it samples documents). Unknown names list the known ones.
std::string gptq_eval_text(const std::string& name, const std::string& data_dir = default_data_dir());

// ---------------------------------------------------------------------------------------
// Windows
// ---------------------------------------------------------------------------------------

// Where a window was cut from.
struct WindowOrigin {
  int64_t document = -1;  // index of the source document; -1 when cut from one token stream
  int64_t offset = 0;     // index of the window's first token in that document's / stream's ids
};

// An evaluation set: the windows a model is run on, and which of its predictions count.
// In window w, the logits at positions first_scored .. first_scored + scored_tokens_per_window - 1
// are scored against the next token (window[p + 1]).
struct EvalSet {
  std::string name;        // "wikitext2", "ptb", "ptb-new", "c4", "c4-new"; llama.cpp: "wikitext2" or the file name
  std::string convention;  // "gptq" or "llamacpp"
  int seqlen = 0;          // tokens per window (llama.cpp: n_ctx)
  std::vector<std::vector<int32_t>> windows;  // [n_windows][seqlen], fed to the model as they are
  std::vector<WindowOrigin> origins;          // [n_windows]
  int first_scored = 0;                       // GPTQ: 0; llama.cpp: n_ctx / 2
  int64_t scored_tokens_per_window = 0;       // GPTQ: seqlen - 1; llama.cpp: n_ctx - 1 - n_ctx / 2
  // The token stream the windows were cut from: the whole tokenized text (before c4-new's
  // truncation to 256 * seqlen), or for "c4" the concatenated crops (GPTQ's hstack). Its
  // sha256 is over the ids as int32 little-endian, comparable with the golden files'
  // "sha256_int32le".
  int64_t stream_tokens = 0;
  std::string stream_sha256;
  // Where this set differs from the reference tool's, or what to know when comparing
  // (empty when nothing).
  std::string note;

  int64_t n_windows() const { return static_cast<int64_t>(windows.size()); }
  int64_t scored_tokens() const { return n_windows() * scored_tokens_per_window; }
};

// sha256 of ids as int32 little-endian, hex.
std::string token_ids_sha256(const std::vector<int32_t>& ids);

// GPTQ llama.py llama_eval: nsamples = ids.size() // seqlen windows
// ids[i*seqlen : (i+1)*seqlen]; the tail is dropped.
std::vector<std::vector<int32_t>> gptq_windows(const std::vector<int32_t>& ids, int seqlen);

// llama.cpp perplexity(): n_chunk = min(n_chunks, ids.size() / n_ctx) chunks
// ids[i*n_ctx : (i+1)*n_ctx] (n_chunks < 0: all), each with its first token replaced by
// bos_id (when bos_id >= 0, i.e. the vocabulary adds BOS). Like llama.cpp, fewer than
// 2 * n_ctx ids is an error.
std::vector<std::vector<int32_t>> llamacpp_chunks(const std::vector<int32_t>& ids, int n_ctx,
                                                  int32_t bos_id, int n_chunks = -1);

// Random crops as GPTQ cuts them, drawn from `rng` (already seeded by the caller).
struct SampledWindows {
  std::vector<std::vector<int32_t>> windows;  // [n_samples][seqlen]
  std::vector<WindowOrigin> origins;          // [n_samples]
  int64_t document_draws = 0;                 // randint calls that picked a document
};

// GPTQ datautils.get_c4 (train and validation loops), per sample:
//   while True: i = randint(0, len(docs) - 1); ids = tokenize(docs[i]) (with BOS);
//               if len(ids) > seqlen: break
//   i = randint(0, len(ids) - seqlen - 1); window = ids[i : i + seqlen]
// IST-DASLab/gptq writes `>= seqlen`, its forks (OmniQuant, AWQ, QuaRot, ...) `> seqlen`.
// They differ only on a document of exactly seqlen ids, where GPTQ's next
// randint(0, -1) raises ValueError; `>` skips it, so every run GPTQ completes draws the same
// windows here. Each document is tokenized at most once (memoized). When every document has
// been tokenized and none has more than seqlen ids, this throws (Python would loop forever).
SampledWindows sample_document_windows(const std::vector<std::string>& documents,
                                       const Tokenizer& tokenizer, int n_samples, int seqlen,
                                       PythonRandom& rng, const std::string& where);

// GPTQ datautils.get_wikitext2 / get_ptb train loops: per sample
//   i = randint(0, len(ids) - seqlen - 1); window = ids[i : i + seqlen]
// Needs len(ids) >= seqlen + 1; errors name `where`.
SampledWindows sample_stream_windows(const std::vector<int32_t>& ids, int n_samples, int seqlen,
                                     PythonRandom& rng, const std::string& where);

// ---------------------------------------------------------------------------------------
// Evaluation sets
// ---------------------------------------------------------------------------------------

// A GPTQ-convention set: "wikitext2", "ptb", "ptb-new" (whole text, n // seqlen windows),
// "c4-new" (" ".join(docs), truncated to 256 * seqlen tokens, then windows) or "c4"
// (256 crops sampled with random.seed(0) from the validation documents; here only 1025 of
// the shard's 45576 documents exist, so the crops differ from GPTQ's: see `note`).
EvalSet gptq_eval_set(const std::string& name, const Tokenizer& tokenizer, int seqlen = 2048,
                      const std::string& data_dir = default_data_dir());

// The llama.cpp-convention set of an arbitrary text file (what `llama-perplexity -f FILE`
// evaluates): like llama.cpp's `-f` handling, one trailing "\n" is dropped; the text is
// tokenized with BOS and cut by llamacpp_chunks().
EvalSet llamacpp_eval_set_file(const std::string& path, const Tokenizer& tokenizer,
                               int n_ctx = kLlamaCppDefaultContext, int n_chunks = -1);

// llamacpp_eval_set_file() on wiki.test.raw, named "wikitext2": llama.cpp's usual number.
EvalSet llamacpp_eval_set(const Tokenizer& tokenizer, int n_ctx = kLlamaCppDefaultContext,
                          int n_chunks = -1, const std::string& data_dir = default_data_dir());

// ---------------------------------------------------------------------------------------
// Calibration
// ---------------------------------------------------------------------------------------

struct CalibrationSet {
  std::string source;                         // as requested
  int seqlen = 0;
  int64_t seed = 0;
  std::vector<std::vector<int32_t>> windows;  // [n_samples][seqlen]
  std::vector<WindowOrigin> origins;          // [n_samples]
  std::string note;                           // how it differs from the reference's set
};

// n_samples windows of seqlen tokens, sampled with Python's random seeded `seed`:
//  "c4"               the C4 train excerpt, as GPTQ's get_c4 train loop (random documents
//                     with more than seqlen tokens, one random crop each). GPTQ draws from the
//                     whole shard (356,317 documents), this from its first 1041: not the same set.
//  "wikitext2-valid"  the WikiText-2 validation split joined as the test split, tokenized once,
//                     random crops (GPTQ's get_wikitext2 loop; GPTQ uses the train split,
//                     which is not available here).
//  PATH.txt           the whole file as it is, tokenized once, random crops.
//  PATH.jsonl         objects with a "text" field, sampled like "c4".
// Errors: unknown source, missing file, a text with fewer than seqlen + 1 tokens, or no
// document with more than seqlen tokens.
CalibrationSet calibration_set(const std::string& source, int n_samples, int seqlen, int64_t seed,
                               const Tokenizer& tokenizer,
                               const std::string& data_dir = default_data_dir());

// calibration_set(...).windows.
std::vector<std::vector<int32_t>> calibration_windows(const std::string& source, int n_samples,
                                                      int seqlen, int64_t seed,
                                                      const Tokenizer& tokenizer,
                                                      const std::string& data_dir = default_data_dir());

}  // namespace razerq::calib
