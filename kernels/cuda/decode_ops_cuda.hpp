#pragma once
// The small operations of one decode step on CUDA (kernels/cuda/decode_ops.cu), each one launch
// where libtorch needs several: RMSNorm (optionally fused with the residual add before it), RoPE
// with the write of the new key and value into a static KV cache, attention of one query
// position over the cache (split over the key axis, flash-decoding style), and SiLU(gate) * up.
// eval::Model's static decode step (Model::forward_static, CUDA graphs) runs them on CUDA
// fp16/bf16 models. Host API on raw device pointers; includes no CUDA header. Link
// razerq::kernels_cuda.
//
// Activations are 2-byte floats, fp16 or bf16 (ActDType), row-major and dense unless a stride is
// given; math is fp32 inside. Where libtorch's ops (eval/model.cpp) round an intermediate to the
// model dtype, these kernels round it at the same place, so both paths compute the same
// arithmetic up to fp32 summation order and the last bit of exp / rsqrt; each function says
// which. Positions are read on the device (an int64 scalar), so a launch stays valid inside a
// CUDA graph replayed at every step. Every call is asynchronous on `stream` (a cudaStream_t;
// nullptr = the legacy default stream); bad arguments throw razerq::Error (kInvalidArgument,
// kUnsupported) before anything is launched, launch failures kInternal.
#include <cstddef>
#include <cstdint>

namespace razerq::kernels {

enum class ActDType { kFp16, kBf16 };
const char* act_dtype_name(ActDType dt);  // "fp16", "bf16"

// The attention geometry of a decode step: `batch` sequences, one query position each; the KV
// cache of a layer is [batch, kv_heads, capacity, head_dim] (eval::StaticKVCache's k[l] / v[l]).
// heads % kv_heads == 0: query head h reads kv head h / (heads / kv_heads) (GQA; MHA when equal).
struct DecodeShape {
  int64_t batch = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t capacity = 0;
};

// Largest head_dim the RoPE and attention kernels take.
inline constexpr int64_t kDecodeMaxHeadDim = 256;

// ---- RMSNorm ----------------------------------------------------------------------------------
// y[r, :] = w * T(x[r, :] * rsqrt(mean(x[r, :]^2) + eps)) for rows r < rows of n elements: the
// statistics and the normalised value in fp32, the normalised value rounded to T, then the
// product with w (T) rounded to T (transformers' LlamaRMSNorm, eval's rms_norm). x, w, y: [rows, n]
// / [n] / [rows, n], dense; y must not overlap x.
void rms_norm_cuda(ActDType dt, const void* x, const void* w, int64_t rows, int64_t n, float eps, void* y,
                   void* stream = nullptr);
// The residual add first: h = T(h + delta) written back into h (in place), then y = rms_norm(h)
// as above. One launch for libtorch's `h = h + delta; y = rms_norm(h)`. delta and y must not
// overlap h.
void add_rms_norm_cuda(ActDType dt, void* h, const void* delta, const void* w, int64_t rows, int64_t n, float eps,
                       void* y, void* stream = nullptr);
// Both read w before waiting for the kernel launched just before them (programmatic dependent
// launch, pdl_cuda.hpp): w must not be that kernel's output (a model's norm weight never is).

// ---- RoPE and the cache write -----------------------------------------------------------------
// For the new position p = *pos (device int64): q_out[b, h, :] = rope(q[b, h, :]) for h < heads,
// k_cache[b, j, p, :] = rope(k[b, j, :]) and v_cache[b, j, p, :] = v[b, j, :] for j < kv_heads.
// rope(t)[d] = T(T(t[d] * cos[p, d]) + T(rot(t)[d] * sin[p, d])), rot(t) = (-t[d + hd/2] for
// d < hd/2, t[d - hd/2] after): HF's rotate_half form, rounded where libtorch's fp16/bf16 ops
// round. cos / sin: [capacity, head_dim] tables in T (eval's, with any rope scaling already in
// them). q, k, v: row b of each at q + b * q_stride (elements; the heads contiguous inside a row),
// e.g. the three column blocks of the fused q/k/v product [batch, (heads + 2 kv_heads) head_dim]
// with all three strides (heads + 2 kv_heads) head_dim. q_out: [batch, heads, head_dim] dense.
// head_dim even and <= kDecodeMaxHeadDim. A position outside [0, capacity) writes nothing into the
// caches and NaN into q_out (the step's result is then NaN instead of memory being overwritten).
void rope_kv_write_cuda(ActDType dt, const DecodeShape& s, const void* q, int64_t q_stride, const void* k,
                        int64_t k_stride, const void* v, int64_t v_stride, const void* cos, const void* sin,
                        const int64_t* pos, void* q_out, void* k_cache, void* v_cache, void* stream = nullptr);

// ---- Attention of one query position -----------------------------------------------------------
// out[b, h, :] = sum_{j <= p} softmax_j(q[b, h, :] . k_cache[b, kvh, j, :] / sqrt(head_dim))
//                v_cache[b, kvh, j, :], p = *pos (device int64), kvh = h / (heads / kv_heads):
// scores, softmax and sums in fp32, out rounded once to T. q, out: [batch, heads, head_dim] dense
// (out may not overlap q). Slots after p are never read. The keys 0 .. p are split into `splits`
// nearly equal ranges (computed on the device from p), one block per range, kv head and group of
// up to 8 of its query heads; each writes its unnormalised partial output with its running max
// and sum into `workspace`, and the last block of a (sequence, kv head, head group) to finish
// combines them (in split order, whichever block it is): one launch. splits >= 1 (more splits
// than keys leaves some empty, which is allowed); decode_attention_splits gives the automatic
// choice. workspace: device memory of at least decode_attention_workspace_bytes(s, splits),
// 16-byte aligned; its first decode_attention_counter_bytes(s) bytes are the blocks' counters,
// which must be zero before the first call (e.g. zeroed memory) and which every completed call
// leaves zero again; the rest may hold anything (every entry read is written first). A position
// outside [0, capacity) gives NaN outputs. head_dim <= kDecodeMaxHeadDim.
// Launched with programmatic dependent launch (pdl_cuda.hpp), a block reads *pos and the first
// tile of its cache slots other than p before waiting for the kernel launched just before it on
// the stream: that kernel must not write them (the decode step's does not: slot p is the only
// one written within a step, and pos is set before the step).
void decode_attention_cuda(ActDType dt, const DecodeShape& s, const void* q, const void* k_cache, const void* v_cache,
                           const int64_t* pos, int splits, void* workspace, size_t workspace_bytes, void* out,
                           void* stream = nullptr);
// rope_kv_write_cuda and decode_attention_cuda in one launch (the decode step's form): q, k, v are
// the step's raw rows as rope_kv_write_cuda takes them; each attention block rotates its query
// heads as it loads them, the block whose key range holds p rotates the new key, uses it and the
// new value for key p and (one block per kv head) writes both into k_cache / v_cache at slot p.
// out, the caches and every other slot are as after the two calls (out equal bit for bit); no
// q_out. A position outside [0, capacity) writes nothing into the caches and NaN into out. The
// conditions of both functions hold; workspace as for decode_attention_cuda.
void decode_rope_attention_cuda(ActDType dt, const DecodeShape& s, const void* q, int64_t q_stride, const void* k,
                                int64_t k_stride, const void* v, int64_t v_stride, const void* cos, const void* sin,
                                const int64_t* pos, void* k_cache, void* v_cache, int splits, void* workspace,
                                size_t workspace_bytes, void* out, void* stream = nullptr);
// Splits for s on the current device: 1 where the single pass applies (below), else enough blocks
// for about 4 per SM, at most one per 32 slots of the capacity and at most kDecodeMaxSplits.
// The single pass: at splits 1, when every slot of the capacity fits in one 200 KB shared-memory
// tile (K and V) and batch x kv_heads x head blocks is at least half the SM count, one block of 8
// warps per (sequence, kv head, head group) stages all of its keys before the programmatic-launch
// wait and needs no combine (the 7B shape at capacity 264: batch 3 and up). Otherwise splits 1
// walks the keys in 64-key tiles with 4 warps. Both give the same results up to fp32 summation
// order.
inline constexpr int kDecodeMaxSplits = 64;
int decode_attention_splits(const DecodeShape& s);
// For tests and measurements: 0 the automatic single-pass rule above, 1 the single pass at splits 1
// wherever its tile fits, 2 never. Process-wide; not thread-safe against concurrent launches.
void set_attention_single_pass(int mode);
size_t decode_attention_workspace_bytes(const DecodeShape& s, int splits);
size_t decode_attention_counter_bytes(const DecodeShape& s);  // a multiple of 16

// ---- SiLU * up ---------------------------------------------------------------------------------
// out[r, i] = T(T(silu(gate[r, i])) * up[r, i]) for r < rows, i < n, silu(x) = x / (1 + exp(-x))
// in fp32 (libtorch's silu, then its product, each rounded to T). Row r of gate and of up start at
// gate + r * in_stride and up + r * in_stride (elements): the fused gate/up product [rows, 2 n] is
// gate = its start, up = gate + n, in_stride = 2 n. out: [rows, n] dense.
void silu_mul_cuda(ActDType dt, const void* gate, const void* up, int64_t in_stride, int64_t rows, int64_t n,
                   void* out, void* stream = nullptr);

}  // namespace razerq::kernels
