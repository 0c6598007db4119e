#pragma once
// Byte-level BPE from a Hugging Face tokenizer.json (GPT-2/OPT style, Llama-3, Qwen2),
// reproducing the `tokenizers` library's encode:
//
//   1. added tokens (e.g. "<|endoftext|>") are cut out of the text first, leftmost-longest,
//      those with "normalized": false on the raw text, the others after normalization;
//   2. the normalizer: none, or NFC (Qwen2);
//   3. the pre-tokenizer: ByteLevel with GPT-2's regex, or a Split with the Llama-3 / Qwen2
//      regex followed by ByteLevel; the regexes are matched by hand (calib/unicode.hpp has
//      the \p{L}, \p{N} and \s classes);
//   4. each pre-token's UTF-8 bytes become GPT-2's 256 "byte characters", which BPE merges
//      lowest rank first (the `tokenizers` merge order, ignore_merges honoured);
//   5. the post-processor: nothing (ByteLevel), or a TemplateProcessing that puts one
//      special token (the BOS) before the text.
//
// Anything in tokenizer.json that this does not implement (another model type, normalizer,
// pre-tokenizer, regex, post-processor or decoder, dropout, truncation, added tokens with
// lstrip/rstrip/single_word, ...) is refused at load with an error naming the file and
// the piece, so that a tokenizer is never silently approximated.
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "calib/tokenizer.hpp"

namespace razerq::calib {

class BpeTokenizer final : public Tokenizer {
 public:
  // The pre-tokenizer regexes that are implemented (selected by their exact text).
  enum class Pattern {
    kGpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    kLlama3,  // (?i:'s|...|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|...
    kQwen2,   // the same with \p{N} (one digit per piece)
  };

  // Loads tokenizer.json. The EOS id comes from tokenizer_config.json ("eos_token") or
  // config.json ("eos_token_id") next to it, when present; the BOS id from the
  // post-processor (the token it adds before the text), else -1.
  static std::unique_ptr<BpeTokenizer> load(const std::string& json_path);

  // The UTF-8 text must be valid (razerq::Error kInvalidArgument otherwise). With add_bos,
  // the post-processor's BOS comes first when it has one (GPT-2 has none).
  std::vector<int32_t> encode(const std::string& text, bool add_bos) const override;
  // Each token's byte characters back to bytes (added tokens as their text), then UTF-8
  // with U+FFFD for invalid sequences, as the ByteLevel decoder does.
  std::string decode(const std::vector<int32_t>& ids) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(id_to_token_.size()); }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  std::string kind() const override { return "bpe"; }

  // The pre-tokens of `text` in byte-character spelling ("Ġworld"), added tokens cut out:
  // what the pre-tokenizer hands to BPE. For tests and diagnostics.
  std::vector<std::string> pre_tokens(const std::string& text) const;
  // The token of an id in byte-character spelling ("" when the id has none), and back.
  const std::string& id_to_token(int32_t id) const;
  int32_t token_to_id(const std::string& token) const;  // -1 when absent
  const std::string& path() const { return path_; }

  // One step of pre-tokenization: the end (in code points) of the piece that `pattern`
  // matches at position i of a text given as code points and their class flags
  // (kClassLetter, ...), or i when nothing matches there. Public for the unit tests.
  enum : uint8_t { kClassLetter = 1, kClassNumber = 2, kClassSpace = 4 };
  // The class flags of a code point, as match_pattern expects them.
  static uint8_t char_class(uint32_t cp);
  static size_t match_pattern(Pattern pattern, const uint32_t* cps, const uint8_t* classes,
                              size_t n, size_t i);

 private:
  BpeTokenizer() = default;

  // A stage of the pre-tokenizer pipeline: a Split with a regex, or the ByteLevel step
  // (optional prefix space, optional GPT-2 regex); ByteLevel is always last.
  struct PreStage {
    bool byte_level = false;
    bool has_pattern = false;
    Pattern pattern = Pattern::kGpt2;
    bool add_prefix_space = false;
  };
  struct AddedToken {
    std::string content;
    int32_t id = -1;
  };
  // Byte trie over added tokens' contents for leftmost-longest matching.
  struct Trie {
    struct Node {
      int32_t token = -1;  // index into added_, when a content ends here
      std::vector<std::pair<unsigned char, int32_t>> next;
    };
    std::vector<Node> nodes{Node{}};
    void insert(const std::string& s, int32_t token);
    // Longest content starting at text[i]: its length (0 if none) and token index.
    size_t longest_at(std::string_view text, size_t i, int32_t* token) const;
    bool empty() const { return nodes.size() == 1; }
  };
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  struct Piece;        // a segment of text or an added token (tokenizer_bpe.cpp)
  struct EncodeState;  // per-call buffers and cache (tokenizer_bpe.cpp)

  void parse(const std::string& text);
  void split_added(std::string_view text, const Trie& trie, std::vector<Piece>& out) const;
  // Added tokens, normalization and pre-tokenization of `text`; calls
  // on_token(id) for each added token and on_word(bytes) for each pre-token.
  template <typename OnToken, typename OnWord>
  void segment(const std::string& text, EncodeState& st, OnToken&& on_token,
               OnWord&& on_word) const;
  template <typename OnWord>
  void pre_tokenize(std::string_view text, size_t stage, EncodeState& st, OnWord&& on_word) const;
  void bpe(std::string_view word, std::vector<int32_t>& out) const;
  std::string to_byte_chars(std::string_view bytes) const;

  std::string path_;
  bool nfc_ = false;
  bool ignore_merges_ = false;
  std::vector<PreStage> stages_;
  std::unordered_map<std::string, int32_t> vocab_;  // token (byte characters) -> id
  std::vector<std::string> id_to_token_;            // "" where an id has no token
  std::vector<std::string> id_to_bytes_;            // what decode emits for each id
  std::array<int32_t, 256> byte_id_{};              // id of each byte's character
  std::array<std::string, 256> byte_char_;          // UTF-8 of each byte's character
  std::unordered_map<uint64_t, Merge> merges_;      // (left id << 32 | right id) -> merge
  std::vector<AddedToken> added_;
  Trie raw_trie_;         // added tokens matched before normalization
  Trie normalized_trie_;  // added tokens matched after it
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
};

}  // namespace razerq::calib
