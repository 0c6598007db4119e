#pragma once
// Sentencepiece models (tokenizer.model: Llama-1/2, tok512) through libsentencepiece, which
// is reached through the shim librazerq_sentencepiece opened with dlopen (sentencepiece_shim.h
// says why). The shim is looked for in $RAZERQ_SENTENCEPIECE_SHIM, next to the executable (and
// in ../lib from it), in the build tree, then on the loader's search path.
// Encoding follows the sentencepiece convention the golden ids were made with:
// [bos] + sp.Encode(text). The literal text "<unk>", "<s>" or "</s>" is spelled out as
// ordinary characters, unlike the transformers LlamaTokenizer, which splits such special
// tokens out first (see shared/data/README.md, "Tokenizer trap").
#include <memory>
#include <string>
#include <vector>

#include "calib/tokenizer.hpp"

struct razerq_spm;

namespace razerq::calib {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // Loads a serialized sentencepiece ModelProto; errors (razerq::Error) name the file.
  static std::unique_ptr<SentencePieceTokenizer> load(const std::string& model_path);
  ~SentencePieceTokenizer() override;

  std::vector<int32_t> encode(const std::string& text, bool add_bos) const override;
  // Pieces joined with the model's detokenization (U+2581 -> space, byte pieces -> bytes,
  // the leading dummy-prefix space removed); control tokens (bos/eos) decode to nothing.
  std::string decode(const std::vector<int32_t>& ids) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  int32_t unk_id() const { return unk_id_; }
  // The piece of an id ("▁the", "<0x0A>", "<s>"); throws for an id outside the vocabulary.
  std::string id_to_piece(int32_t id) const;
  std::string kind() const override { return "sentencepiece"; }
  const std::string& path() const { return path_; }
  // The shim's path once loaded (loads it; throws kUnsupported naming the places tried).
  static std::string shim_path();

 private:
  SentencePieceTokenizer() = default;

  std::string path_;
  razerq_spm* sp_ = nullptr;  // owned; destroyed through the shim
  int32_t vocab_size_ = 0;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  int32_t unk_id_ = -1;
};

}  // namespace razerq::calib
