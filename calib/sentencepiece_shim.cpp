// librazerq_sentencepiece: libsentencepiece behind a C interface (sentencepiece_shim.h says why).
// Built as a MODULE library: only calib/tokenizer_sentencepiece.cpp loads it, with dlopen.
#include "calib/sentencepiece_shim.h"

#include <sentencepiece_processor.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <vector>

struct razerq_spm {
  sentencepiece::SentencePieceProcessor sp;
};

namespace {

char* dup_bytes(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p) {
    std::memcpy(p, s.data(), s.size());
    p[s.size()] = '\0';
  }
  return p;
}

int fail(char** error, const std::string& msg) {
  if (error) *error = dup_bytes(msg);
  return 1;
}

}  // namespace

#define RAZERQ_SHIM_API extern "C" __attribute__((visibility("default")))

RAZERQ_SHIM_API int razerq_spm_abi(void) { return RAZERQ_SPM_SHIM_ABI; }

RAZERQ_SHIM_API int razerq_spm_load(const char* bytes, size_t size, razerq_spm** out, char** error) {
  try {
    auto* h = new razerq_spm();
    const auto st = h->sp.LoadFromSerializedProto(std::string(bytes, size));
    if (!st.ok()) {
      delete h;
      return fail(error, st.ToString());
    }
    *out = h;
    return 0;
  } catch (const std::exception& e) {
    return fail(error, e.what());
  }
}

RAZERQ_SHIM_API void razerq_spm_destroy(razerq_spm* sp) { delete sp; }

RAZERQ_SHIM_API void razerq_spm_info(const razerq_spm* sp, int32_t* vocab, int32_t* bos, int32_t* eos,
                                     int32_t* unk) {
  *vocab = sp->sp.GetPieceSize();
  *bos = sp->sp.bos_id();
  *eos = sp->sp.eos_id();
  *unk = sp->sp.unk_id();
}

RAZERQ_SHIM_API int razerq_spm_encode(const razerq_spm* sp, const char* text, size_t size, int32_t** ids,
                                      size_t* n, char** error) {
  try {
    std::vector<int> pieces;
    const auto st = sp->sp.Encode(std::string(text, size), &pieces);
    if (!st.ok()) return fail(error, st.ToString());
    *n = pieces.size();
    *ids = static_cast<int32_t*>(std::malloc(sizeof(int32_t) * (pieces.empty() ? 1 : pieces.size())));
    if (!*ids) return fail(error, "out of memory");
    for (size_t i = 0; i < pieces.size(); ++i) (*ids)[i] = pieces[i];
    return 0;
  } catch (const std::exception& e) {
    return fail(error, e.what());
  }
}

RAZERQ_SHIM_API int razerq_spm_decode(const razerq_spm* sp, const int32_t* ids, size_t n, char** text,
                                      size_t* size, char** error) {
  try {
    const std::vector<int> pieces(ids, ids + n);
    std::string out;
    const auto st = sp->sp.Decode(pieces, &out);
    if (!st.ok()) return fail(error, st.ToString());
    *text = dup_bytes(out);
    if (!*text) return fail(error, "out of memory");
    *size = out.size();
    return 0;
  } catch (const std::exception& e) {
    return fail(error, e.what());
  }
}

RAZERQ_SHIM_API int razerq_spm_id_to_piece(const razerq_spm* sp, int32_t id, char** piece, size_t* size,
                                           char** error) {
  try {
    const std::string p = sp->sp.IdToPiece(id);
    *piece = dup_bytes(p);
    if (!*piece) return fail(error, "out of memory");
    *size = p.size();
    return 0;
  } catch (const std::exception& e) {
    return fail(error, e.what());
  }
}

RAZERQ_SHIM_API void razerq_spm_free(void* p) { std::free(p); }
