/* The C interface of librazerq_sentencepiece, the shim through which razerq uses
 * libsentencepiece.
 *
 * Why a shim: Debian's libsentencepiece 0.1.97 carries its own protobuf 3.14 and exports its
 * symbols, while libtorch loads the system libprotobuf 3.21. Linked into one binary they
 * collide (calib/NOTES.md). calib/tokenizer_sentencepiece.cpp therefore opens this shim with
 * dlopen(RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND): sentencepiece and its protobuf then resolve
 * against each other and stay out of the global symbol scope.
 *
 * Plain C types only across the boundary (no std::string, no exceptions). Every function that
 * can fail returns 0 on success and a nonzero value with a message in `*error`
 * (malloc'd; free with razerq_spm_free). Buffers returned are malloc'd likewise. */
#ifndef RAZERQ_SENTENCEPIECE_SHIM_H_
#define RAZERQ_SENTENCEPIECE_SHIM_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RAZERQ_SPM_SHIM_ABI 1

typedef struct razerq_spm razerq_spm;

int razerq_spm_abi(void);
/* Loads a serialized ModelProto of `size` bytes. */
int razerq_spm_load(const char* bytes, size_t size, razerq_spm** out, char** error);
void razerq_spm_destroy(razerq_spm* sp);
/* piece count, bos, eos, unk ids (-1 when absent) */
void razerq_spm_info(const razerq_spm* sp, int32_t* vocab, int32_t* bos, int32_t* eos, int32_t* unk);
int razerq_spm_encode(const razerq_spm* sp, const char* text, size_t size, int32_t** ids, size_t* n, char** error);
int razerq_spm_decode(const razerq_spm* sp, const int32_t* ids, size_t n, char** text, size_t* size, char** error);
/* The piece of `id` (caller checked the range). */
int razerq_spm_id_to_piece(const razerq_spm* sp, int32_t id, char** piece, size_t* size, char** error);
void razerq_spm_free(void* p);

#ifdef __cplusplus
}
#endif

#endif
