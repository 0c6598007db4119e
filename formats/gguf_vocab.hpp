#pragma once
// The tokenizer metadata a GGUF file carries (tokenizer.ggml.*), read from a model
// directory the way llama.cpp's convert_hf_to_gguf.py reads it:
//   tokenizer.model (sentencepiece)  -> model "llama", pre "default", tokens, scores, token_type
//   tokenizer.json (byte-level BPE)  -> model "gpt2", pre from the pre-tokenizer regex
//                                       ("gpt-2", "llama-bpe", "qwen2"), tokens, token_type, merges
// plus the special-token ids (config.json *_token_id) and add_bos/add_eos
// (tokenizer_config.json), as gguf-py's SpecialVocab does.
#include <cstdint>
#include <string>
#include <vector>

namespace razerq::formats {

// llama.cpp token types (llama_token_type; sentencepiece's piece types use the same numbers).
enum GgufTokenType : int32_t {
  kTokNormal = 1,
  kTokUnknown = 2,
  kTokControl = 3,
  kTokUserDefined = 4,
  kTokUnused = 5,
  kTokByte = 6,
};

struct GgufVocab {
  std::string model;  // "llama" or "gpt2"
  std::string pre;    // "default", "gpt-2", "llama-bpe", "qwen2"
  std::vector<std::string> tokens;
  std::vector<float> scores;  // sentencepiece only
  std::vector<int32_t> types;
  std::vector<std::string> merges;  // BPE only: "a b"
  int64_t bos = -1, eos = -1, unk = -1, pad = -1;  // -1: not written
  int add_bos = -1, add_eos = -1;                  // -1: not written, else 0/1
  std::string chat_template;                       // empty: not written
};

// Reads the vocabulary of `model_dir` padded to `vocab_size` entries ([PAD<i>] tokens, as
// the converter pads). Errors name the file and what was expected.
GgufVocab read_gguf_vocab(const std::string& model_dir, int64_t vocab_size);

// A sentencepiece ModelProto's pieces (exposed for the tests).
struct SentencePiece {
  std::string piece;
  float score = 0;
  int32_t type = kTokNormal;
};
struct SentencePieceModel {
  std::vector<SentencePiece> pieces;
  int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;  // TrainerSpec defaults
};
SentencePieceModel parse_sentencepiece_model(const std::string& bytes, const std::string& where);

}  // namespace razerq::formats
