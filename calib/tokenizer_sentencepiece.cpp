#include "calib/tokenizer_sentencepiece.hpp"

#include <dlfcn.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "calib/sentencepiece_shim.h"
#include "common/error.hpp"

namespace razerq::calib {

namespace {

// The shim's functions, resolved once per process.
struct Shim {
  std::string path;
  decltype(&razerq_spm_load) load = nullptr;
  decltype(&razerq_spm_destroy) destroy = nullptr;
  decltype(&razerq_spm_info) info = nullptr;
  decltype(&razerq_spm_encode) encode = nullptr;
  decltype(&razerq_spm_decode) decode = nullptr;
  decltype(&razerq_spm_id_to_piece) id_to_piece = nullptr;
  decltype(&razerq_spm_free) free = nullptr;
};

constexpr const char* kShimName = "librazerq_sentencepiece.so";

std::vector<std::string> shim_candidates() {
  std::vector<std::string> c;
  if (const char* env = std::getenv("RAZERQ_SENTENCEPIECE_SHIM"); env && *env) c.push_back(env);
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    c.push_back((exe.parent_path() / kShimName).string());
    c.push_back((exe.parent_path().parent_path() / "lib" / kShimName).string());
  }
#ifdef RAZERQ_SENTENCEPIECE_SHIM_BUILD_PATH
  c.push_back(RAZERQ_SENTENCEPIECE_SHIM_BUILD_PATH);
#endif
  c.push_back(kShimName);  // the dynamic loader's search path (an installed razerq)
  return c;
}

template <typename F>
void resolve(void* h, const std::string& path, const char* name, F* out) {
  dlerror();
  void* sym = dlsym(h, name);
  if (!sym)
    throw_error(ErrorKind::kUnsupported, path, "the sentencepiece shim lacks %s (a stale build?)", name);
  *out = reinterpret_cast<F>(sym);
}

const Shim& shim() {
  static std::once_flag once;
  static Shim s;
  static std::string failure;
  std::call_once(once, [] {
    std::string tried;
    for (const std::string& p : shim_candidates()) {
      const bool bare = p.find('/') == std::string::npos;
      std::error_code ec;
      if (!bare && !std::filesystem::exists(p, ec)) {
        tried += "\n  " + p + ": not found";
        continue;
      }
      // RTLD_LOCAL keeps sentencepiece's protobuf out of the global scope; RTLD_DEEPBIND makes
      // the shim's libraries prefer their own symbols to those of libtorch's libprotobuf.
      void* h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (!h) {
        const char* e = dlerror();
        tried += "\n  " + p + ": " + (e ? e : "dlopen failed");
        continue;
      }
      int (*abi)() = nullptr;
      resolve(h, p, "razerq_spm_abi", &abi);
      if (abi() != RAZERQ_SPM_SHIM_ABI) {
        tried += "\n  " + p + ": ABI " + std::to_string(abi()) + ", expected " + std::to_string(RAZERQ_SPM_SHIM_ABI);
        continue;
      }
      resolve(h, p, "razerq_spm_load", &s.load);
      resolve(h, p, "razerq_spm_destroy", &s.destroy);
      resolve(h, p, "razerq_spm_info", &s.info);
      resolve(h, p, "razerq_spm_encode", &s.encode);
      resolve(h, p, "razerq_spm_decode", &s.decode);
      resolve(h, p, "razerq_spm_id_to_piece", &s.id_to_piece);
      resolve(h, p, "razerq_spm_free", &s.free);
      s.path = p;
      return;
    }
    failure = tried;
  });
  if (!s.load)
    throw_error(ErrorKind::kUnsupported, kShimName,
                "cannot load the sentencepiece shim (needed for tokenizer.model; set "
                "RAZERQ_SENTENCEPIECE_SHIM to its path). Tried:%s",
                failure.c_str());
  return s;
}

// Takes ownership of a shim error message.
std::string take(char* msg) {
  std::string s = msg ? msg : "unknown error";
  if (msg) shim().free(msg);
  return s;
}

}  // namespace

std::string SentencePieceTokenizer::shim_path() { return shim().path; }

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

  const Shim& s = shim();
  std::unique_ptr<SentencePieceTokenizer> tok(new SentencePieceTokenizer());
  tok->path_ = model_path;
  char* err = nullptr;
  if (s.load(bytes.data(), bytes.size(), &tok->sp_, &err) != 0)
    throw_error(ErrorKind::kMalformedInput, model_path,
                "not a valid sentencepiece model (expected a serialized ModelProto): %s",
                take(err).c_str());
  s.info(tok->sp_, &tok->vocab_size_, &tok->bos_id_, &tok->eos_id_, &tok->unk_id_);
  if (tok->vocab_size_ <= 0)
    throw_error(ErrorKind::kMalformedInput, model_path, "sentencepiece model has no pieces");
  return tok;
}

SentencePieceTokenizer::~SentencePieceTokenizer() {
  if (sp_) shim().destroy(sp_);
}

std::vector<int32_t> SentencePieceTokenizer::encode(const std::string& text, bool add_bos) const {
  const Shim& s = shim();
  int32_t* pieces = nullptr;
  size_t n = 0;
  char* err = nullptr;
  if (s.encode(sp_, text.data(), text.size(), &pieces, &n, &err) != 0)
    throw_error(ErrorKind::kInternal, path_, "sentencepiece encode failed: %s", take(err).c_str());
  std::vector<int32_t> ids;
  ids.reserve(n + 1);
  if (add_bos && bos_id_ >= 0) ids.push_back(bos_id_);
  ids.insert(ids.end(), pieces, pieces + n);
  s.free(pieces);
  return ids;
}

std::string SentencePieceTokenizer::decode(const std::vector<int32_t>& ids) const {
  // libsentencepiece does not range-check ids in every version: check them here.
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab_size_)
      throw_error(ErrorKind::kInvalidArgument, path_,
                  "cannot decode id %d at position %zu (expected 0 <= id < %d)", ids[i], i,
                  vocab_size_);
  const Shim& s = shim();
  char* text = nullptr;
  size_t size = 0;
  char* err = nullptr;
  if (s.decode(sp_, ids.data(), ids.size(), &text, &size, &err) != 0)
    throw_error(ErrorKind::kInternal, path_, "sentencepiece decode failed: %s", take(err).c_str());
  std::string out(text, size);
  s.free(text);
  return out;
}

std::string SentencePieceTokenizer::id_to_piece(int32_t id) const {
  if (id < 0 || id >= vocab_size_)
    throw_error(ErrorKind::kInvalidArgument, path_, "id %d is not a piece (expected 0 <= id < %d)",
                id, vocab_size_);
  const Shim& s = shim();
  char* piece = nullptr;
  size_t size = 0;
  char* err = nullptr;
  if (s.id_to_piece(sp_, id, &piece, &size, &err) != 0)
    throw_error(ErrorKind::kInternal, path_, "sentencepiece IdToPiece failed: %s", take(err).c_str());
  std::string out(piece, size);
  s.free(piece);
  return out;
}

}  // namespace razerq::calib
