// The decode step's small operations on CUDA (decode_ops_cuda.hpp): RMSNorm (+ residual add),
// RoPE + K/V cache write, split-K attention of one query position, SiLU * up.
//
// Written to be plainly correct first: one thread per output element where the work is
// elementwise (RoPE, SiLU), one block per row where a row reduction is needed (RMSNorm), and for
// attention the flash-decoding split: block (split s, sequence b, kv head, group of <= 8 query
// heads) walks its key range in tiles of up to 64 keys staged in shared memory (the first before
// the programmatic-launch wait) with an online softmax kept there; the last block of a head group
// to finish combines the splits. Where the grid is large enough without splits (batch 3 and up on
// a 7B shape) and the keys fit, one block per head group takes them all in one tile (the single
// pass: single_pass_ok). In a CUDA graph each launch costs about 2 us whatever its size,
// so the number of launches matters more than their inner speed here; what does count is how
// many dependent global-memory round trips a kernel makes after its wait.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "common/error.hpp"
#include "kernels/cuda/cp_async.cuh"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/decode_ops_cuda.hpp"
#include "kernels/cuda/device_info.cuh"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/silu.cuh"

namespace razerq::kernels {

namespace {

// ---- element types ---------------------------------------------------------------------------

template <typename T>
struct Act;
template <>
struct Act<__half> {
  static __device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
  static __device__ __forceinline__ __half from_float(float f) { return __float2half_rn(f); }
};
template <>
struct Act<__nv_bfloat16> {
  static __device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 from_float(float f) { return __float2bfloat16_rn(f); }
};

template <typename T>
__device__ __forceinline__ float ld(const T* p) {
  return Act<T>::to_float(*p);
}
template <typename T>
__device__ __forceinline__ void st(T* p, float f) {
  *p = Act<T>::from_float(f);
}
// f rounded to T and back: where libtorch's fp16/bf16 ops round an intermediate.
template <typename T>
__device__ __forceinline__ float round_act(float f) {
  return Act<T>::to_float(Act<T>::from_float(f));
}

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
// red: 32 floats of shared memory. Called once per kernel (no second use of red).
__device__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < warps ? red[lane] : 0.f;
  return warp_sum(v);
}

// Every kernel here starts so (pdl_cuda.hpp): nothing is read or written before the kernel
// before this one has finished; then the next kernel on the stream may start its blocks (one
// kernel ahead at most: it cannot pass its own wait, and so cannot let the one after it start,
// before this one ends).
__device__ __forceinline__ void pdl_start() {
  pdl::wait();
  pdl::launch_dependents();
}

// ---- RMSNorm ---------------------------------------------------------------------------------

// One block per row. Pass 1: (kAdd: h = T(h + delta), written back) and the sum of squares in
// fp32; pass 2 re-reads the row (each thread its own elements, written by itself in pass 1) and
// writes y = T(w * T(h * rsqrt(mean + eps))).
template <typename T, bool kAdd>
__global__ void rms_norm_kernel(T* h, const T* __restrict__ delta, const T* __restrict__ w, int64_t n, float eps,
                                T* __restrict__ y) {
  __shared__ float red[32];
  pdl_start();
  const int64_t r = blockIdx.x;
  T* hr = h + r * n;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    float v = ld(hr + i);
    if (kAdd) {
      v = round_act<T>(v + ld(delta + r * n + i));
      st(hr + i, v);
    }
    ss += v * v;
  }
  const float inv = rsqrtf(block_sum(ss, red) / static_cast<float>(n) + eps);
  T* yr = y + r * n;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) st(yr + i, ld(w + i) * round_act<T>(ld(hr + i) * inv));
}

// The same row by 16-byte vectors (n % 8 == 0, rows 16-byte aligned, n <= 8 * 1024 * kNormVecs):
// each thread loads its up to kNormVecs vectors of h (and delta) once, keeps them in registers
// through the block reduction, and writes y from them: one read of each input instead of two,
// 8 elements per load. Same arithmetic and rounding points as rms_norm_kernel (the fp32 sum in
// another order).
constexpr int kNormVecs = 4;
template <typename T, bool kAdd>
__global__ void rms_norm_vec_kernel(T* h, const T* __restrict__ delta, const T* __restrict__ w, int64_t n, float eps,
                                    T* __restrict__ y) {
  __shared__ float red[32];
  const int64_t r = blockIdx.x, nv = n / 8;
  // w is a weight, never written by the kernel before: loaded before the wait, off the critical path.
  uint4 wv[kNormVecs];
#pragma unroll
  for (int c = 0; c < kNormVecs; ++c) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(c) * blockDim.x;
    wv[c] = i < nv ? reinterpret_cast<const uint4*>(w)[i] : make_uint4(0u, 0u, 0u, 0u);
  }
  pdl_start();
  uint4* hr = reinterpret_cast<uint4*>(h + r * n);
  float v[kNormVecs][8];
  float ss = 0.f;
#pragma unroll
  for (int c = 0; c < kNormVecs; ++c) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(c) * blockDim.x;
    if (i >= nv) continue;
    uint4 hv = hr[i];
    const T* he = reinterpret_cast<const T*>(&hv);
    if (kAdd) {
      const uint4 dv = reinterpret_cast<const uint4*>(delta + r * n)[i];
      const T* de = reinterpret_cast<const T*>(&dv);
      T* ho = reinterpret_cast<T*>(&hv);
#pragma unroll
      for (int k = 0; k < 8; ++k) ho[k] = Act<T>::from_float(ld(he + k) + ld(de + k));
      hr[i] = hv;
    }
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      v[c][k] = ld(he + k);
      ss += v[c][k] * v[c][k];
    }
  }
  const float inv = rsqrtf(block_sum(ss, red) / static_cast<float>(n) + eps);
  uint4* yr = reinterpret_cast<uint4*>(y + r * n);
#pragma unroll
  for (int c = 0; c < kNormVecs; ++c) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(c) * blockDim.x;
    if (i >= nv) continue;
    const T* we = reinterpret_cast<const T*>(&wv[c]);
    uint4 out;
    T* oe = reinterpret_cast<T*>(&out);
#pragma unroll
    for (int k = 0; k < 8; ++k) oe[k] = Act<T>::from_float(ld(we + k) * round_act<T>(v[c][k] * inv));
    yr[i] = out;
  }
}

// ---- RoPE + cache write ------------------------------------------------------------------------

struct RopeArgs {
  const void* q;
  const void* k;
  const void* v;
  int64_t q_stride, k_stride, v_stride;  // elements between rows b
  const void* cos;                       // [capacity, hd]
  const void* sin;
  const int64_t* pos;
  void* q_out;    // [B, nh, hd]
  void* k_cache;  // [B, nkv, capacity, hd]
  void* v_cache;
  int64_t nh, nkv, hd, capacity;
};

// rope(t)[d] of one head from t (the head's hd inputs) and the position's table rows, rotate_half
// form, rounded where libtorch's fp16/bf16 ops round, as a float (exactly a T value). The one
// formula of the RoPE kernel and of the attention kernel's kRope loads, so both agree bit for bit.
template <typename T>
__device__ __forceinline__ float rope_value(const T* t, const T* c, const T* s, int64_t d, int64_t half) {
  if (d < half) return round_act<T>(round_act<T>(ld(t + d) * ld(c + d)) + round_act<T>(-ld(t + d + half) * ld(s + d)));
  return round_act<T>(round_act<T>(ld(t + d) * ld(c + d)) + round_act<T>(ld(t + d - half) * ld(s + d)));
}

// out[d] and out[d + hd/2] of one head.
template <typename T>
__device__ __forceinline__ void rope_pair(const T* t, const T* c, const T* s, int64_t d, int64_t half, T* out) {
  st(out + d, rope_value(t, c, s, d, half));
  st(out + d + half, rope_value(t, c, s, d + half, half));
}

// Grid (ceil(items / blockDim), B). Items of row b: (nh + nkv) * hd/2 rotation pairs (the query
// heads', then the key heads'), then nkv * hd value copies.
template <typename T>
__global__ void rope_kv_kernel(RopeArgs a) {
  pdl_start();
  const int64_t b = blockIdx.y;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t half = a.hd / 2, n_rope = (a.nh + a.nkv) * half, n_v = a.nkv * a.hd;
  if (i >= n_rope + n_v) return;
  const int64_t p = *a.pos;
  const bool ok = p >= 0 && p < a.capacity;
  if (i < n_rope) {
    const int64_t head = i / half, d = i % half;
    if (head < a.nh) {
      const T* t = static_cast<const T*>(a.q) + b * a.q_stride + head * a.hd;
      T* o = static_cast<T*>(a.q_out) + (b * a.nh + head) * a.hd;
      if (!ok) {
        st(o + d, NAN);
        st(o + d + half, NAN);
        return;
      }
      rope_pair(t, static_cast<const T*>(a.cos) + p * a.hd, static_cast<const T*>(a.sin) + p * a.hd, d, half, o);
    } else if (ok) {
      const int64_t j = head - a.nh;
      const T* t = static_cast<const T*>(a.k) + b * a.k_stride + j * a.hd;
      T* o = static_cast<T*>(a.k_cache) + ((b * a.nkv + j) * a.capacity + p) * a.hd;
      rope_pair(t, static_cast<const T*>(a.cos) + p * a.hd, static_cast<const T*>(a.sin) + p * a.hd, d, half, o);
    }
  } else if (ok) {
    const int64_t e = i - n_rope, j = e / a.hd, d = e % a.hd;
    static_cast<T*>(a.v_cache)[((b * a.nkv + j) * a.capacity + p) * a.hd + d] =
        static_cast<const T*>(a.v)[b * a.v_stride + j * a.hd + d];
  }
}

// ---- attention ---------------------------------------------------------------------------------

constexpr int kAttnThreadsSplit = 128;   // 4 warps per split block
constexpr int kAttnThreadsSingle = 256;  // 8 warps per single-pass block
constexpr int kScoreRow = 64;       // a head's score row: a tile's keys, then the combine's split weights
constexpr int kHeadsPerBlock = 8;   // query heads of one kv head handled by one block (GQA)
constexpr int kDimsPerLane = static_cast<int>(kDecodeMaxHeadDim / 32);  // key elements a lane holds
constexpr int kTileBytes = 16384;   // the key tile's (and the value tile's) shared memory
constexpr int kKeysAtOnce = 4;      // keys a warp scores together (their shuffles interleaved)
static_assert(kScoreRow >= kDecodeMaxSplits, "the combine keeps a head's split weights in its score row");

// Keys per shared-memory tile: 64, or fewer where head_dim > 128 (32 at 256).
int tile_keys(int64_t hd) { return static_cast<int>(std::min<int64_t>(kScoreRow, kTileBytes / (2 * hd))); }

struct AttnArgs {
  const void* q;        // [B, nh, hd]
  const void* k;        // [B, nkv, capacity, hd]
  const void* v;
  const int64_t* pos;
  unsigned* done;       // [grid_y]: split blocks finished per (b, kv head, head block); 0 between calls
  float* part_o;        // [B * nh, splits, hd]: unnormalised partial outputs
  float* part_ml;       // [B * nh, splits, 2]: running max and sum of exponentials
  void* out;            // [B, nh, hd]
  int64_t nh, nkv, hd, capacity;
  int group;            // nh / nkv
  int heads_per_block;  // min(group, kHeadsPerBlock)
  int head_blocks;      // ceil(group / heads_per_block)
  int splits;
  int tile;             // keys per shared-memory tile (tile_keys, or the single pass's capacity)
  int score_row;        // sc's row: kScoreRow, or the single pass's tile
  int parts;            // output phase: 1, or 2 (single pass: two thread halves over even / odd keys)
  bool vec;             // the K/V tiles are staged by 16-byte cp.async (hd % 8 == 0, caches 16-byte aligned)
  float scale;          // 1 / sqrt(hd)
  // kRope (decode_rope_attention_cuda): q is the raw query row of sequence b at q + b q_stride,
  // rotated on loading; the new key (rotated) and value of position p, from k_new / v_new, are
  // written into the caches (k_cache_w / v_cache_w, the same memory as k / v) and used for key p.
  int64_t q_stride, k_stride, v_stride;
  const void* k_new;
  const void* v_new;
  const void* cos;  // [capacity, hd]
  const void* sin;
  void* k_cache_w;
  void* v_cache_w;
};

// The dynamic shared memory of a split block: the K and V tiles (T, first: 16-byte aligned), then
// qs / acc [hb, hd], sc [hb, kScoreRow], m / l / alpha [hb] (fp32), then kRope's new key and value
// (2 hd elements of T).
__host__ __device__ inline size_t tile_smem_bytes(int tile, int64_t hd) {
  return (static_cast<size_t>(2 * tile * hd) * 2 + 15) / 16 * 16;
}
// (score_row: kScoreRow, or the single pass's tile; then, for the single pass's second thread half,
// part [hb, hd] fp32 after kRope's new key and value.)
size_t split_smem_bytes(int heads_per_block, int64_t hd, int tile, int score_row, bool part) {
  return tile_smem_bytes(tile, hd) +
         sizeof(float) * static_cast<size_t>(2 * heads_per_block * hd + heads_per_block * score_row + 3 * heads_per_block) +
         static_cast<size_t>(2 * hd) * 2 + (part ? sizeof(float) * static_cast<size_t>(heads_per_block * hd) : 0);
}

// Keys [t0, t0 + tn) of the block's kv head into the tiles (row j - t0), key `skip` left out
// (-1: none): by 16-byte cp.async (a.vec; completed by cp_async_wait_all) or by plain loads.
template <int kAttnThreads, typename T>
__device__ void stage_tile(const AttnArgs& a, const T* kb, const T* vb, int64_t t0, int tn, int64_t skip, T* kt,
                           T* vt) {
  const int64_t hd = a.hd;
  if (a.vec) {
    const int cpr = static_cast<int>(hd / 8);  // 16-byte chunks per row
    for (int c = threadIdx.x; c < 2 * tn * cpr; c += kAttnThreads) {
      const int kv = c >= tn * cpr, r = (c - kv * tn * cpr) / cpr, x = c % cpr;
      if (t0 + r == skip) continue;
      const int64_t off = (t0 + r) * hd + 8 * x;
      cp_async16((kv ? vt : kt) + r * hd + 8 * x, (kv ? vb : kb) + off);
    }
  } else {
    for (int64_t e = threadIdx.x; e < 2 * tn * hd; e += kAttnThreads) {
      const int kv = e >= tn * hd;
      const int64_t i = e - kv * tn * hd;
      if (t0 + i / hd == skip) continue;
      (kv ? vt : kt)[i] = (kv ? vb : kb)[t0 * hd + i];
    }
  }
}

// Block (split s, (b, kv head, head block)). Keys [j0, j1) of split s of the p + 1 valid ones, in
// tiles of a.tile keys staged in shared memory (kt, vt). The first tile's keys other than p are
// staged before the programmatic-launch wait: slots before p were written by earlier steps, never
// by the kernel just before this one (decode_ops_cuda.hpp), so they are read while that kernel
// ends; key p (written just before, or kRope's new key) comes after the wait. Shared: qs [hb, hd]
// the queries (fp32), acc [hb, hd] the running unnormalised output, sc [hb, a.score_row] a tile's
// scores then exponentials, m / l / alpha [hb] the running max, the sum of exponentials and the
// tile's rescale factor.
template <typename T, bool kRope, int kAttnThreads>
__global__ void __launch_bounds__(kAttnThreads) attention_split_kernel(AttnArgs a) {
  constexpr int kAttnWarps = kAttnThreads / 32;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int hb = a.heads_per_block;
  const int64_t hd = a.hd;
  T* kt = reinterpret_cast<T*>(smem_raw);
  T* vt = kt + a.tile * hd;
  float* qs = reinterpret_cast<float*>(smem_raw + tile_smem_bytes(a.tile, hd));
  float* acc = qs + hb * hd;
  float* sc = acc + hb * hd;
  float* m = sc + hb * a.score_row;
  float* l = m + hb;
  float* alpha = l + hb;
  T* kv_new = reinterpret_cast<T*>(alpha + hb);  // kRope: [2, hd] the new key and value
  float* part = reinterpret_cast<float*>(reinterpret_cast<char*>(kv_new) + ((4 * hd + 3) & ~int64_t{3}));

  const int s = blockIdx.x;
  const int hblk = static_cast<int>(blockIdx.y % a.head_blocks);
  const int64_t bk = blockIdx.y / a.head_blocks;
  const int64_t kvh = bk % a.nkv, b = bk / a.nkv;
  const int64_t h0 = kvh * a.group + static_cast<int64_t>(hblk) * hb;  // first query head of the block
  const int nhb = min(hb, a.group - hblk * hb);                        // query heads in the block
  const T* kb = static_cast<const T*>(a.k) + (b * a.nkv + kvh) * a.capacity * hd;
  const T* vb = static_cast<const T*>(a.v) + (b * a.nkv + kvh) * a.capacity * hd;
  // The position is the step's, set before the step's first kernel (never by the one before).
  const int64_t p = *a.pos;
  const bool bad = p < 0 || p >= a.capacity;
  const int64_t n = p + 1, per = (n + a.splits - 1) / a.splits;
  const int64_t j0 = bad ? 0 : min64(n, s * per), j1 = bad ? 0 : min64(n, j0 + per);
  if (j0 < j1) stage_tile<kAttnThreads>(a, kb, vb, j0, static_cast<int>(min64(a.tile, j1 - j0)), p, kt, vt);
  pdl_start();
  if (bad) {  // NaN outputs, written by split 0; no partials, no count
    if (s == 0)
      for (int64_t e = threadIdx.x; e < nhb * hd; e += kAttnThreads)
        st(static_cast<T*>(a.out) + (b * a.nh + h0) * hd + e, NAN);
    cp_async_wait_all();
    return;
  }
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  if (kRope) {
    const T* cp = static_cast<const T*>(a.cos) + p * hd;
    const T* sp = static_cast<const T*>(a.sin) + p * hd;
    const int64_t half = hd / 2;
    const T* qr = static_cast<const T*>(a.q) + b * a.q_stride + h0 * hd;  // the block's heads, raw
    const bool has_p = j0 <= p && p < j1;  // this split holds key p: the new key and value, and the cache write
    const T* kn = static_cast<const T*>(a.k_new) + b * a.k_stride + kvh * hd;
    const T* vn = static_cast<const T*>(a.v_new) + b * a.v_stride + kvh * hd;
    const int64_t slot = ((b * a.nkv + kvh) * a.capacity + p) * hd;
    // One pass over the queries' and (has_p) the new key's and value's elements, so that all
    // their loads are in flight together.
    const int64_t nq = nhb * hd, total = nq + (has_p ? 2 * hd : 0);
    for (int64_t e = tid; e < total; e += kAttnThreads) {
      if (e < nq) {
        qs[e] = rope_value(qr + e / hd * hd, cp, sp, e % hd, half);
        acc[e] = 0.f;
      } else if (e < nq + hd) {
        const int64_t d = e - nq;
        const T kv = Act<T>::from_float(rope_value(kn, cp, sp, d, half));
        kv_new[d] = kv;
        if (hblk == 0) static_cast<T*>(a.k_cache_w)[slot + d] = kv;  // one block per kv head writes the cache
      } else {
        const int64_t d = e - nq - hd;
        const T vv = vn[d];
        kv_new[hd + d] = vv;
        if (hblk == 0) static_cast<T*>(a.v_cache_w)[slot + d] = vv;
      }
    }
  } else {
    const T* qb = static_cast<const T*>(a.q) + (b * a.nh + h0) * hd;  // the block's heads are consecutive
    for (int64_t e = tid; e < nhb * hd; e += kAttnThreads) {
      qs[e] = ld(qb + e);
      acc[e] = 0.f;
    }
    if (j0 <= p && p < j1 && p < j0 + a.tile) stage_tile<kAttnThreads>(a, kb, vb, p, 1, -1, kt + (p - j0) * hd, vt + (p - j0) * hd);
  }
  if (tid < nhb) {
    m[tid] = -INFINITY;
    l[tid] = 0.f;
  }

  for (int64_t t0 = j0; t0 < j1; t0 += a.tile) {
    const int tn = static_cast<int>(min64(a.tile, j1 - t0));
    if (t0 != j0) {  // later tiles (long key ranges): staged here, key p from the cache unless kRope
      __syncthreads();  // every thread is done with the previous tile
      stage_tile<kAttnThreads>(a, kb, vb, t0, tn, kRope ? p : -1, kt, vt);
    }
    cp_async_wait_all();
    __syncthreads();
    const int64_t pl = kRope ? p - t0 : -1;  // kRope: key p's row is kv_new, not the tile's
    // Scores: a warp per key, its lanes over the head dimension (lane + 32 t), one warp sum per
    // head; kKeysAtOnce keys per warp at a time (jj = jb + u kAttnWarps), their sums interleaved
    // (each the same butterfly as warp_sum, so the same bits as one key at a time).
    for (int jb = warp; jb < tn; jb += kAttnWarps * kKeysAtOnce) {
      float kreg[kKeysAtOnce][kDimsPerLane];
#pragma unroll
      for (int u = 0; u < kKeysAtOnce; ++u) {
        const int jj = jb + u * kAttnWarps;
        const T* kr = jj == pl ? kv_new : kt + (jj < tn ? jj : 0) * hd;  // (keys past tn: row 0, unused)
#pragma unroll
        for (int t = 0; t < kDimsPerLane; ++t) {
          const int64_t d = lane + 32 * t;
          kreg[u][t] = d < hd ? ld(kr + d) : 0.f;
        }
      }
      for (int i = 0; i < nhb; ++i) {
        float qv[kDimsPerLane];
#pragma unroll
        for (int t = 0; t < kDimsPerLane; ++t) {
          const int64_t d = lane + 32 * t;
          qv[t] = d < hd ? qs[i * hd + d] : 0.f;
        }
        float dot[kKeysAtOnce];
#pragma unroll
        for (int u = 0; u < kKeysAtOnce; ++u) {
          dot[u] = 0.f;
#pragma unroll
          for (int t = 0; t < kDimsPerLane; ++t)
            if (lane + 32 * t < hd) dot[u] += kreg[u][t] * qv[t];
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
#pragma unroll
          for (int u = 0; u < kKeysAtOnce; ++u) dot[u] += __shfl_xor_sync(0xffffffffu, dot[u], o);
        if (lane == 0)
#pragma unroll
          for (int u = 0; u < kKeysAtOnce; ++u)
            if (jb + u * kAttnWarps < tn) sc[i * a.score_row + jb + u * kAttnWarps] = dot[u] * a.scale;
      }
    }
    __syncthreads();
    // Online softmax: a warp per head.
    for (int i = warp; i < nhb; i += kAttnWarps) {
      float* si = sc + i * a.score_row;
      float mx = -INFINITY;
      for (int jj = lane; jj < tn; jj += 32) mx = fmaxf(mx, si[jj]);
      mx = warp_max(mx);
      const float m_old = m[i], m_new = fmaxf(m_old, mx);
      float sum = 0.f;
      for (int jj = lane; jj < tn; jj += 32) {
        const float e = expf(si[jj] - m_new);
        si[jj] = e;
        sum += e;
      }
      sum = warp_sum(sum);
      __syncwarp();  // every lane has read m[i] before lane 0 replaces it
      if (lane == 0) {
        const float al = expf(m_old - m_new);  // 0 for the first tile (m_old = -inf)
        alpha[i] = al;
        l[i] = l[i] * al + sum;
        m[i] = m_new;
      }
    }
    __syncthreads();
    // Output: a thread per (head, dimension), over the tile's keys; with a.parts == 2 (single
    // pass, nhb hd <= half the threads) the second half of the threads takes the odd keys into
    // part, added after. Two loops on purpose: one loop with a runtime key stride (parts) measured
    // slower in bench_decode_ops (batch 1, 8 splits 7.50 -> 7.82 us; batch 4, single pass 12.74 ->
    // 14.08; sixteenth session).
    const int64_t ne = nhb * hd;
    if (a.parts == 1) {
      for (int64_t e = tid; e < ne; e += kAttnThreads) {
        const int i = static_cast<int>(e / hd);
        const int64_t d = e % hd;
        const float* pi = sc + i * a.score_row;
        float o = acc[e] * alpha[i];
        for (int jj = 0; jj < tn; ++jj) o += pi[jj] * ld((jj == pl ? kv_new + hd : vt + jj * hd) + d);
        acc[e] = o;
      }
    } else {  // 2 ne <= kAttnThreads
      if (tid < 2 * ne) {
        const int half = static_cast<int>(tid / ne);
        const int64_t e = tid % ne, d = e % hd;
        const int i = static_cast<int>(e / hd);
        const float* pi = sc + i * a.score_row;
        float o = half ? 0.f : acc[e] * alpha[i];
        for (int jj = half; jj < tn; jj += 2) o += pi[jj] * ld((jj == pl ? kv_new + hd : vt + jj * hd) + d);
        if (half) part[e] = o;
        else acc[e] = o;
      }
      __syncthreads();
      for (int64_t e = tid; e < ne; e += kAttnThreads) acc[e] += part[e];
    }
  }
  __syncthreads();
  const int64_t bh0 = b * a.nh + h0;
  T* out = static_cast<T*>(a.out) + bh0 * hd;  // the block's heads' outputs, consecutive
  if (a.splits == 1) {  // the whole range: normalise and write
    for (int64_t e = tid; e < nhb * hd; e += kAttnThreads) st(out + e, acc[e] / l[e / hd]);
    return;
  }
  // Partials (an empty split writes m = -inf, l = 0, acc = 0; the combine skips it).
  for (int64_t e = tid; e < nhb * hd; e += kAttnThreads) {
    const int64_t i = e / hd, d = e % hd;
    a.part_o[((bh0 + i) * a.splits + s) * hd + d] = acc[e];
  }
  if (tid < nhb) {
    float* ml = a.part_ml + ((bh0 + tid) * a.splits + s) * 2;
    ml[0] = m[tid];
    ml[1] = l[tid];
  }
  // The last of the splits of this (b, kv head, head block) to finish combines them (the CUDA
  // threadFenceReduction pattern): out = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s, M = max_s
  // m_s, over s in order, so the result does not depend on which block is last. It resets the
  // count for the next call. The other blocks' partials are read from L2 (ld.global.cg: never a
  // stale L1 line), all of a thread's at once.
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (tid == 0) last = atomicAdd(a.done + blockIdx.y, 1u) == static_cast<unsigned>(a.splits - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  float* wgt = sc;  // [hb, a.score_row >= kDecodeMaxSplits]: the splits' weights per head
  for (int i = warp; i < nhb; i += kAttnWarps) {
    const float* ml = a.part_ml + (bh0 + i) * a.splits * 2;
    float ms[kDecodeMaxSplits / 32], ls[kDecodeMaxSplits / 32];
    float mx = -INFINITY;
#pragma unroll
    for (int k = 0; k < kDecodeMaxSplits / 32; ++k) {
      const int j = lane + 32 * k;
      ms[k] = j < a.splits ? __ldcg(ml + 2 * j) : -INFINITY;
      ls[k] = j < a.splits ? __ldcg(ml + 2 * j + 1) : 0.f;
      mx = fmaxf(mx, ms[k]);
    }
    mx = warp_max(mx);
    float lsum = 0.f;
#pragma unroll
    for (int k = 0; k < kDecodeMaxSplits / 32; ++k) {
      const int j = lane + 32 * k;
      const float wj = ms[k] == -INFINITY ? 0.f : expf(ms[k] - mx);  // empty split: no weight
      if (j < a.splits) wgt[i * a.score_row + j] = wj;
      lsum += wj * ls[k];
    }
    lsum = warp_sum(lsum);
    if (lane == 0) l[i] = lsum;
  }
  __syncthreads();
  for (int64_t e = tid; e < nhb * hd; e += kAttnThreads) {
    const int64_t i = e / hd, d = e % hd;
    const float* po = a.part_o + (bh0 + i) * a.splits * hd + d;
    const float* wi = wgt + i * a.score_row;
    float o = 0.f;
    // Every split wrote its partial (an empty one zeros), so all are loaded, 8 at a time.
    int j = 0;
    for (; j + 8 <= a.splits; j += 8) {
      float pv[8];
#pragma unroll
      for (int k = 0; k < 8; ++k) pv[k] = __ldcg(po + (j + k) * hd);
#pragma unroll
      for (int k = 0; k < 8; ++k)
        if (wi[j + k] != 0.f) o += wi[j + k] * pv[k];
    }
    for (; j < a.splits; ++j)
      if (wi[j] != 0.f) o += wi[j] * __ldcg(po + j * hd);
    st(out + e, o / l[i]);
  }
  if (tid == 0) a.done[blockIdx.y] = 0;
}

// ---- SiLU * up ---------------------------------------------------------------------------------

template <typename T>
__global__ void silu_mul_kernel(const T* __restrict__ gate, const T* __restrict__ up, int64_t in_stride, int64_t n,
                                int64_t total, T* __restrict__ out) {
  pdl_start();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t r = i / n, c = i % n;
  const float g = ld(gate + r * in_stride + c);
  const float act = round_act<T>(silu_f32(g));  // (gemv.cu's SiLU epilogue: the same expression)
  st(out + i, act * ld(up + r * in_stride + c));
}

// ---- host helpers ------------------------------------------------------------------------------

constexpr int kElemThreads = 256;  // elementwise kernels

void need(bool ok, const char* where, const char* what) {
  if (!ok) throw_error(ErrorKind::kInvalidArgument, where, "%s", what);
}

void need_ptr(const void* p, const char* where, const char* name) {
  if (!p) throw_error(ErrorKind::kInvalidArgument, where, "%s is null", name);
  if (reinterpret_cast<uintptr_t>(p) % 2)
    throw_error(ErrorKind::kInvalidArgument, where, "%s is not 2-byte aligned (fp16/bf16 elements)", name);
}

// The step's position: a device int64 (8-byte aligned).
void need_pos(const int64_t* pos, const char* where) {
  if (!pos || reinterpret_cast<uintptr_t>(pos) % 8)
    throw_error(ErrorKind::kInvalidArgument, where, "pos is null or not 8-byte aligned");
}

using detail::bytes_overlap;

void check_shape(const DecodeShape& s, const char* where) {
  if (s.batch < 1 || s.heads < 1 || s.kv_heads < 1 || s.head_dim < 1 || s.capacity < 1)
    throw_error(ErrorKind::kInvalidArgument, where,
                "batch %lld, heads %lld, kv_heads %lld, head_dim %lld, capacity %lld (expected all >= 1)",
                static_cast<long long>(s.batch), static_cast<long long>(s.heads), static_cast<long long>(s.kv_heads),
                static_cast<long long>(s.head_dim), static_cast<long long>(s.capacity));
  if (s.heads % s.kv_heads)
    throw_error(ErrorKind::kInvalidArgument, where, "heads %lld is not a multiple of kv_heads %lld",
                static_cast<long long>(s.heads), static_cast<long long>(s.kv_heads));
  if (s.head_dim > kDecodeMaxHeadDim)
    throw_error(ErrorKind::kUnsupported, where, "head_dim %lld (at most %lld)", static_cast<long long>(s.head_dim),
                static_cast<long long>(kDecodeMaxHeadDim));
  if (s.heads > INT_MAX / kDecodeMaxHeadDim)
    throw_error(ErrorKind::kUnsupported, where, "%lld heads", static_cast<long long>(s.heads));
}

template <typename T>
void launch_rms_norm(bool add, void* h, const void* delta, const void* w, int64_t rows, int64_t n, float eps, void* y,
                     cudaStream_t st) {
  const bool aligned = n % 8 == 0 && reinterpret_cast<uintptr_t>(h) % 16 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(y) % 16 == 0 && (!add || reinterpret_cast<uintptr_t>(delta) % 16 == 0);
  if (aligned && n / 8 <= 1024 * kNormVecs) {
    const int64_t nv = n / 8;
    // The fewest threads (a multiple of 32) that cover nv vectors in kNormVecs rounds.
    const int threads = static_cast<int>(std::min<int64_t>(1024, ((nv + kNormVecs - 1) / kNormVecs + 31) / 32 * 32));
    if (add)
      pdl::launch(rms_norm_vec_kernel<T, true>, dim3(static_cast<unsigned>(rows)), dim3(threads), 0, st,
                  static_cast<T*>(h), static_cast<const T*>(delta), static_cast<const T*>(w), n, eps, static_cast<T*>(y));
    else
      pdl::launch(rms_norm_vec_kernel<T, false>, dim3(static_cast<unsigned>(rows)), dim3(threads), 0, st,
                  static_cast<T*>(h), static_cast<const T*>(nullptr), static_cast<const T*>(w), n, eps,
                  static_cast<T*>(y));
    return;
  }
  const int threads = static_cast<int>(std::min<int64_t>(1024, (n + 31) / 32 * 32));
  if (add)
    pdl::launch(rms_norm_kernel<T, true>, dim3(static_cast<unsigned>(rows)), dim3(threads), 0, st, static_cast<T*>(h),
                static_cast<const T*>(delta), static_cast<const T*>(w), n, eps, static_cast<T*>(y));
  else
    pdl::launch(rms_norm_kernel<T, false>, dim3(static_cast<unsigned>(rows)), dim3(threads), 0, st, static_cast<T*>(h),
                static_cast<const T*>(nullptr), static_cast<const T*>(w), n, eps, static_cast<T*>(y));
}

void rms_norm_common(const char* where, ActDType dt, bool add, void* h, const void* delta, const void* w, int64_t rows,
                     int64_t n, float eps, void* y, void* stream) {
  need(rows >= 0 && n >= 1, where, "rows must be >= 0 and n >= 1");
  need(rows <= INT_MAX, where, "more than 2^31 - 1 rows");
  need(std::isfinite(eps) && eps >= 0.f, where, "eps must be finite and >= 0");
  if (rows == 0) return;
  need_ptr(h, where, add ? "h" : "x");
  need_ptr(w, where, "w");
  need_ptr(y, where, "y");
  const size_t bytes = static_cast<size_t>(rows * n) * 2;
  if (bytes_overlap(h, bytes, y, bytes)) throw_error(ErrorKind::kInvalidArgument, where, "y overlaps %s", add ? "h" : "x");
  if (add) {
    need_ptr(delta, where, "delta");
    if (bytes_overlap(h, bytes, delta, bytes)) throw_error(ErrorKind::kInvalidArgument, where, "delta overlaps h");
  }
  const cudaStream_t st = detail::as_stream(stream);
  if (dt == ActDType::kFp16)
    launch_rms_norm<__half>(add, h, delta, w, rows, n, eps, y, st);
  else
    launch_rms_norm<__nv_bfloat16>(add, h, delta, w, rows, n, eps, y, st);
  RAZERQ_CUDA(cudaGetLastError());
}

// RoPE's conditions: an even head_dim and rows at least heads x head_dim apart.
void check_rope(const DecodeShape& s, int64_t q_stride, int64_t k_stride, int64_t v_stride, const char* where) {
  if (s.head_dim % 2)
    throw_error(ErrorKind::kInvalidArgument, where, "head_dim %lld is odd (rotate_half needs two halves)",
                static_cast<long long>(s.head_dim));
  if (q_stride < s.heads * s.head_dim || k_stride < s.kv_heads * s.head_dim || v_stride < s.kv_heads * s.head_dim)
    throw_error(ErrorKind::kInvalidArgument, where,
                "row strides q %lld, k %lld, v %lld (expected at least %lld, %lld, %lld: heads x head_dim)",
                static_cast<long long>(q_stride), static_cast<long long>(k_stride), static_cast<long long>(v_stride),
                static_cast<long long>(s.heads * s.head_dim), static_cast<long long>(s.kv_heads * s.head_dim),
                static_cast<long long>(s.kv_heads * s.head_dim));
}

int heads_per_block(const DecodeShape& s) {
  return static_cast<int>(std::min<int64_t>(s.heads / s.kv_heads, kHeadsPerBlock));
}
int64_t head_blocks(const DecodeShape& s) {
  const int64_t g = s.heads / s.kv_heads, hb = heads_per_block(s);
  return (g + hb - 1) / hb;
}

// The single pass: one block of kAttnThreadsSingle threads per (sequence, kv head, head block),
// every slot of the capacity in one shared-memory tile staged before the wait, no split combine.
// Where that fits in 200 KB and the grid has at least half as many blocks as the device has SMs
// (g_single_pass 0; 1: wherever it fits, 2: never). Measured on the H100 (bench/decode.md,
// fifteenth session), the 7B-shaped model at capacity 264: the decode step at batch 4 (128
// blocks) 2.49 -> 2.37 ms (razer4), batch 16 3.86 -> 3.77; at batch 1 (32 blocks) the 8 splits
// stay ahead (bench_decode_ops: 7.5 us against 9.6 for the single pass). The rule takes it from
// batch 3 (96 blocks) on that shape; batch 3 was not measured.
int g_single_pass = 0;
bool single_pass_ok(const DecodeShape& s) {
  if (g_single_pass == 2 || s.capacity > 4096) return false;
  const int hb = heads_per_block(s), tile = static_cast<int>(s.capacity);
  if (split_smem_bytes(hb, s.head_dim, tile, std::max(kScoreRow, tile), true) > 200 * 1024) return false;
  return g_single_pass == 1 || 2 * s.batch * s.kv_heads * head_blocks(s) >= detail::current_device_sm_count();
}

}  // namespace

const char* act_dtype_name(ActDType dt) { return dt == ActDType::kFp16 ? "fp16" : "bf16"; }

void rms_norm_cuda(ActDType dt, const void* x, const void* w, int64_t rows, int64_t n, float eps, void* y,
                   void* stream) {
  // Never written (kAdd false): the const is dropped only to share the kernel.
  rms_norm_common("rms_norm_cuda", dt, false, const_cast<void*>(x), nullptr, w, rows, n, eps, y, stream);
}

void add_rms_norm_cuda(ActDType dt, void* h, const void* delta, const void* w, int64_t rows, int64_t n, float eps,
                       void* y, void* stream) {
  rms_norm_common("add_rms_norm_cuda", dt, true, h, delta, w, rows, n, eps, y, stream);
}

void rope_kv_write_cuda(ActDType dt, const DecodeShape& s, const void* q, int64_t q_stride, const void* k,
                        int64_t k_stride, const void* v, int64_t v_stride, const void* cos, const void* sin,
                        const int64_t* pos, void* q_out, void* k_cache, void* v_cache, void* stream) {
  const char* where = "rope_kv_write_cuda";
  check_shape(s, where);
  check_rope(s, q_stride, k_stride, v_stride, where);
  need(s.batch <= 65535, where, "batch above 65535");
  need_ptr(q, where, "q");
  need_ptr(k, where, "k");
  need_ptr(v, where, "v");
  need_ptr(cos, where, "cos");
  need_ptr(sin, where, "sin");
  need_ptr(q_out, where, "q_out");
  need_ptr(k_cache, where, "k_cache");
  need_ptr(v_cache, where, "v_cache");
  need_pos(pos, where);
  RopeArgs a{q, k, v, q_stride, k_stride, v_stride, cos, sin, pos, q_out, k_cache, v_cache,
             s.heads, s.kv_heads, s.head_dim, s.capacity};
  const int64_t items = (s.heads + s.kv_heads) * (s.head_dim / 2) + s.kv_heads * s.head_dim;
  const dim3 grid(static_cast<unsigned>((items + kElemThreads - 1) / kElemThreads), static_cast<unsigned>(s.batch));
  const cudaStream_t st = detail::as_stream(stream);
  if (dt == ActDType::kFp16)
    pdl::launch(rope_kv_kernel<__half>, grid, dim3(kElemThreads), 0, st, a);
  else
    pdl::launch(rope_kv_kernel<__nv_bfloat16>, grid, dim3(kElemThreads), 0, st, a);
}

int decode_attention_splits(const DecodeShape& s) {
  check_shape(s, "decode_attention_splits");
  if (single_pass_ok(s)) return 1;
  const int sms = detail::current_device_sm_count();
  const int64_t blocks = s.batch * s.kv_heads * head_blocks(s);
  int64_t splits = (4 * static_cast<int64_t>(sms) + blocks - 1) / blocks;
  // At least 32 slots per split: Llama-2-7B at batch 1 and capacity 264 (bench_decode_ops) took
  // 8.36 us with 16 splits of ~12 keys, 7.67 with 8 (one shared-memory tile each either way; the
  // combine and the blocks' fixed costs grow with the count).
  splits = std::min(splits, std::max<int64_t>(1, s.capacity / 32));
  return static_cast<int>(std::clamp<int64_t>(splits, 1, kDecodeMaxSplits));
}

size_t decode_attention_counter_bytes(const DecodeShape& s) {
  check_shape(s, "decode_attention_counter_bytes");
  return (sizeof(unsigned) * static_cast<size_t>(s.batch * s.kv_heads * head_blocks(s)) + 15) / 16 * 16;
}

size_t decode_attention_workspace_bytes(const DecodeShape& s, int splits) {
  check_shape(s, "decode_attention_workspace_bytes");
  if (splits < 1 || splits > kDecodeMaxSplits)
    throw_error(ErrorKind::kInvalidArgument, "decode_attention_workspace_bytes", "splits %d (expected 1 .. %d)", splits,
                kDecodeMaxSplits);
  return decode_attention_counter_bytes(s) + sizeof(float) * static_cast<size_t>(s.batch * s.heads) *
                                                 static_cast<size_t>(splits) * static_cast<size_t>(s.head_dim + 2);
}

namespace {
// The checks and the launch shared by decode_attention_cuda and decode_rope_attention_cuda: a
// holds the pointers (q, k, v, pos, out and the kRope ones); the rest is filled in here.
void launch_attention(const char* where, ActDType dt, const DecodeShape& s, AttnArgs a, bool rope, int splits,
                      void* workspace, size_t workspace_bytes, void* stream) {
  check_shape(s, where);
  if (splits < 1 || splits > kDecodeMaxSplits)
    throw_error(ErrorKind::kInvalidArgument, where, "splits %d (expected 1 .. %d)", splits, kDecodeMaxSplits);
  const size_t need_ws = decode_attention_workspace_bytes(s, splits);
  if (!workspace || workspace_bytes < need_ws)
    throw_error(ErrorKind::kInvalidArgument, where, "workspace of %zu bytes (expected at least %zu)",
                workspace ? workspace_bytes : size_t{0}, need_ws);
  if (reinterpret_cast<uintptr_t>(workspace) % 16)
    throw_error(ErrorKind::kInvalidArgument, where, "workspace is not 16-byte aligned");
  need_ptr(a.q, where, "q");
  need_ptr(a.k, where, "k_cache");
  need_ptr(a.v, where, "v_cache");
  need_ptr(a.out, where, "out");
  need_pos(a.pos, where);
  const size_t obytes = static_cast<size_t>(s.batch * s.heads * s.head_dim) * 2;
  const size_t qbytes = rope ? static_cast<size_t>((s.batch - 1) * a.q_stride + s.heads * s.head_dim) * 2 : obytes;
  if (bytes_overlap(a.q, qbytes, a.out, obytes)) throw_error(ErrorKind::kInvalidArgument, where, "out overlaps q");
  const int64_t grid_y = s.batch * s.kv_heads * head_blocks(s);
  if (grid_y > 65535 || s.batch * s.heads > INT_MAX)
    throw_error(ErrorKind::kUnsupported, where, "batch %lld x kv_heads %lld is too large for one launch",
                static_cast<long long>(s.batch), static_cast<long long>(s.kv_heads));

  a.done = static_cast<unsigned*>(workspace);
  a.part_o = reinterpret_cast<float*>(static_cast<char*>(workspace) + decode_attention_counter_bytes(s));
  a.part_ml = a.part_o + static_cast<size_t>(s.batch * s.heads) * static_cast<size_t>(splits) * static_cast<size_t>(s.head_dim);
  a.nh = s.heads, a.nkv = s.kv_heads, a.hd = s.head_dim, a.capacity = s.capacity;
  a.group = static_cast<int>(s.heads / s.kv_heads);
  a.heads_per_block = heads_per_block(s);
  a.head_blocks = static_cast<int>(head_blocks(s));
  a.splits = splits;
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.head_dim)));
  const bool single = splits == 1 && single_pass_ok(s);
  a.tile = single ? static_cast<int>(s.capacity) : tile_keys(s.head_dim);
  a.score_row = single ? std::max(kScoreRow, a.tile) : kScoreRow;
  a.parts = single && kAttnThreadsSingle >= 2 * a.heads_per_block * s.head_dim ? 2 : 1;
  a.vec = s.head_dim % 8 == 0 && reinterpret_cast<uintptr_t>(a.k) % 16 == 0 && reinterpret_cast<uintptr_t>(a.v) % 16 == 0;
  // Split blocks: 33 KB at head_dim 128 with one head per block, up to 51 KB (8 heads of 256); the
  // single pass up to 200 KB (single_pass_ok). Above 48 KB the kernel needs the opt-in.
  const size_t smem = split_smem_bytes(a.heads_per_block, s.head_dim, a.tile, a.score_row, a.parts == 2);
  const dim3 grid(static_cast<unsigned>(splits), static_cast<unsigned>(grid_y));
  const cudaStream_t st = detail::as_stream(stream);
  auto go = [&](auto kernel, int threads) {
    if (smem > 48 * 1024)
      RAZERQ_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    pdl::launch(kernel, grid, dim3(threads), smem, st, a);
  };
  auto pick = [&](auto t_tag, auto rope_tag) {
    using T = decltype(t_tag);
    constexpr bool kR = decltype(rope_tag)::value;
    if (single)
      go(attention_split_kernel<T, kR, kAttnThreadsSingle>, kAttnThreadsSingle);
    else
      go(attention_split_kernel<T, kR, kAttnThreadsSplit>, kAttnThreadsSplit);
  };
  if (dt == ActDType::kFp16) {
    if (rope)
      pick(__half{}, std::true_type{});
    else
      pick(__half{}, std::false_type{});
  } else {
    if (rope)
      pick(__nv_bfloat16{}, std::true_type{});
    else
      pick(__nv_bfloat16{}, std::false_type{});
  }
}
}  // namespace

void decode_attention_cuda(ActDType dt, const DecodeShape& s, const void* q, const void* k_cache, const void* v_cache,
                           const int64_t* pos, int splits, void* workspace, size_t workspace_bytes, void* out,
                           void* stream) {
  AttnArgs a{};
  a.q = q, a.k = k_cache, a.v = v_cache, a.pos = pos, a.out = out;
  launch_attention("decode_attention_cuda", dt, s, a, false, splits, workspace, workspace_bytes, stream);
}

void decode_rope_attention_cuda(ActDType dt, const DecodeShape& s, const void* q, int64_t q_stride, const void* k,
                                int64_t k_stride, const void* v, int64_t v_stride, const void* cos, const void* sin,
                                const int64_t* pos, void* k_cache, void* v_cache, int splits, void* workspace,
                                size_t workspace_bytes, void* out, void* stream) {
  const char* where = "decode_rope_attention_cuda";
  check_shape(s, where);
  check_rope(s, q_stride, k_stride, v_stride, where);
  need_ptr(k, where, "k");
  need_ptr(v, where, "v");
  need_ptr(cos, where, "cos");
  need_ptr(sin, where, "sin");
  AttnArgs a{};
  a.q = q, a.k = k_cache, a.v = v_cache, a.pos = pos, a.out = out;
  a.q_stride = q_stride, a.k_stride = k_stride, a.v_stride = v_stride;
  a.k_new = k, a.v_new = v, a.cos = cos, a.sin = sin, a.k_cache_w = k_cache, a.v_cache_w = v_cache;
  launch_attention(where, dt, s, a, true, splits, workspace, workspace_bytes, stream);
}

void silu_mul_cuda(ActDType dt, const void* gate, const void* up, int64_t in_stride, int64_t rows, int64_t n, void* out,
                   void* stream) {
  const char* where = "silu_mul_cuda";
  need(rows >= 0 && n >= 1, where, "rows must be >= 0 and n >= 1");
  if (in_stride < n)
    throw_error(ErrorKind::kInvalidArgument, where, "in_stride %lld is below n %lld", static_cast<long long>(in_stride),
                static_cast<long long>(n));
  if (rows == 0) return;
  need_ptr(gate, where, "gate");
  need_ptr(up, where, "up");
  need_ptr(out, where, "out");
  const int64_t total = rows * n, blocks = (total + kElemThreads - 1) / kElemThreads;
  need(blocks <= INT_MAX, where, "too many elements for one launch");
  const cudaStream_t st = detail::as_stream(stream);
  if (dt == ActDType::kFp16)
    pdl::launch(silu_mul_kernel<__half>, dim3(static_cast<unsigned>(blocks)), dim3(kElemThreads), 0, st,
                static_cast<const __half*>(gate), static_cast<const __half*>(up), in_stride, n, total,
                static_cast<__half*>(out));
  else
    pdl::launch(silu_mul_kernel<__nv_bfloat16>, dim3(static_cast<unsigned>(blocks)), dim3(kElemThreads), 0, st,
                static_cast<const __nv_bfloat16*>(gate), static_cast<const __nv_bfloat16*>(up), in_stride, n, total,
                static_cast<__nv_bfloat16*>(out));
}

void set_attention_single_pass(int mode) { g_single_pass = mode == 1 || mode == 2 ? mode : 0; }

}  // namespace razerq::kernels
