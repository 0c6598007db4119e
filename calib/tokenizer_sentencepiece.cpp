#include "calib/tokenizer_sentencepiece.hpp"

#include <sentencepiece_processor.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/error.hpp"

namespace razerq::calib {

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::load(
    const std::string& model_path) {
  // Read the file ourselves: an I/O failure then says why, and a parse failure is told
  // apart from a missing file.
  std::ifstream in(model_path, std::ios::binary);
  if (!in) throw_error(ErrorKind::kIo, model_path, "cannot open: %s", std::strerror(errno));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) throw_error(ErrorKind::kIo, model_path, "cannot read: %s", std::strerror(errno));
  const std::string bytes = buf.str();
  if (bytes.empty())
    throw_error(ErrorKind::kMalformedInput, model_path,
                "empty file (expected a serialized sentencepiece model)");

  std::unique_ptr<SentencePieceTokenizer> tok(new SentencePieceTokenizer());
  tok->path_ = model_path;
  tok->sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const sentencepiece::util::Status status = tok->sp_->LoadFromSerializedProto(bytes);
  if (!status.ok())
    throw_error(ErrorKind::kMalformedInput, model_path,
                "not a valid sentencepiece model (expected a serialized ModelProto): %s",
                status.ToString().c_str());
  tok->vocab_size_ = tok->sp_->GetPieceSize();
  if (tok->vocab_size_ <= 0)
    throw_error(ErrorKind::kMalformedInput, model_path, "sentencepiece model has no pieces");
  tok->bos_id_ = tok->sp_->bos_id();
  tok->eos_id_ = tok->sp_->eos_id();
  tok->unk_id_ = tok->sp_->unk_id();
  return tok;
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::vector<int32_t> SentencePieceTokenizer::encode(const std::string& text, bool add_bos) const {
  std::vector<int> pieces;
  const sentencepiece::util::Status status = sp_->Encode(text, &pieces);
  if (!status.ok())
    throw_error(ErrorKind::kInternal, path_, "sentencepiece encode failed: %s",
                status.ToString().c_str());
  std::vector<int32_t> ids;
  ids.reserve(pieces.size() + 1);
  if (add_bos && bos_id_ >= 0) ids.push_back(bos_id_);
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  return ids;
}

std::string SentencePieceTokenizer::decode(const std::vector<int32_t>& ids) const {
  // libsentencepiece does not range-check ids in every version: check them here.
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab_size_)
      throw_error(ErrorKind::kInvalidArgument, path_,
                  "cannot decode id %d at position %zu (expected 0 <= id < %d)", ids[i], i,
                  vocab_size_);
  const std::vector<int> pieces(ids.begin(), ids.end());
  std::string text;
  const sentencepiece::util::Status status = sp_->Decode(pieces, &text);
  if (!status.ok())
    throw_error(ErrorKind::kInternal, path_, "sentencepiece decode failed: %s",
                status.ToString().c_str());
  return text;
}

std::string SentencePieceTokenizer::id_to_piece(int32_t id) const {
  if (id < 0 || id >= vocab_size_)
    throw_error(ErrorKind::kInvalidArgument, path_, "id %d is not a piece (expected 0 <= id < %d)",
                id, vocab_size_);
  return sp_->IdToPiece(id);
}

}  // namespace razerq::calib
