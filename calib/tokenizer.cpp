// load_tokenizer: picks the tokenizer of a model directory by the files it holds.
#include <filesystem>

#include "calib/tokenizer.hpp"
#include "calib/tokenizer_bpe.hpp"
#include "calib/tokenizer_sentencepiece.hpp"
#include "common/error.hpp"

namespace razerq::calib {

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path root(dir);
  if (!fs::exists(root, ec))
    throw_error(ErrorKind::kIo, dir,
                "no such directory (expected a model directory with tokenizer.model or "
                "tokenizer.json)");
  // A tokenizer file itself is accepted too (e.g. llama2.c's tok512.model).
  if (fs::is_regular_file(root, ec)) {
    const std::string ext = root.extension().string();
    if (ext == ".model") return SentencePieceTokenizer::load(dir);
    if (ext == ".json") return BpeTokenizer::load(dir);
    throw_error(ErrorKind::kInvalidArgument, dir,
                "not a tokenizer file (expected a directory, a sentencepiece .model or a "
                "tokenizer.json)");
  }
  if (!fs::is_directory(root, ec))
    throw_error(ErrorKind::kInvalidArgument, dir, "not a directory or a tokenizer file");

  // sentencepiece first: Llama directories carry both, and the golden ids (and the
  // published perplexities) come from the sentencepiece model.
  const fs::path sp = root / "tokenizer.model";
  if (fs::is_regular_file(sp, ec)) return SentencePieceTokenizer::load(sp.string());
  const fs::path hf = root / "tokenizer.json";
  if (fs::is_regular_file(hf, ec)) return BpeTokenizer::load(hf.string());
  throw_error(ErrorKind::kIo, dir,
              "no tokenizer found (looked for tokenizer.model (sentencepiece) and "
              "tokenizer.json (Hugging Face byte-level BPE))");
}

}  // namespace razerq::calib
