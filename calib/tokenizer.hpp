#pragma once
// Tokenizers: text -> token ids, as the model's own tokenizer does, so that perplexities and
// calibration windows match the reference implementations (razer.md section 7, landscape.md 3(d)).
// Two kinds: sentencepiece models (Llama-1/2, tok512: libsentencepiece) and Hugging Face
// tokenizer.json byte-level BPE (GPT-2/OPT, Llama-3, Qwen2).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace razerq::calib {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Token ids of `text`; with add_bos, the BOS id first when the tokenizer has one and its
  // convention adds it (sentencepiece Llama: yes; GPT-2: no BOS exists).
  virtual std::vector<int32_t> encode(const std::string& text, bool add_bos) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 when none
  virtual int32_t eos_id() const = 0;  // -1 when none
  virtual std::string kind() const = 0;  // "sentencepiece" or "bpe"
};

// Loads the tokenizer of a model directory (or a packed checkpoint, which carries copies):
// tokenizer.model (sentencepiece) when present, else tokenizer.json (byte-level BPE).
// Errors name the file and what was expected.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir);

}  // namespace razerq::calib
