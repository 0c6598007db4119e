// Fused-dequant GEMV / small-batch GEMM (gemv_cuda.hpp): one kernel template over the scale
// kinds of the registry's 4-bit formats and the 3-bit ones with fp16 scales (BITS = 3: a
// lane's 32 codes are 12 bytes, cut into four 24-bit words of 8 codes, gemv_bits3.cuh).
//
// Work split. A block (8 warps) owns 16 output channels (rows n0 .. n0+15 of W) and all of K; its
// warps take the 128-column blocks of K round robin and their partial sums are added in shared
// memory at the end (the split tail, split_plan: a cluster pair of blocks takes the two halves of K
// of one tile, the second adding its sums into the first's shared memory). Inside a warp,
// lane = 4 g + t holds rows n0 + g and n0 + g + 8, columns 32 t .. 32 t + 31 of each 128-block: one
// 16-byte load of 32 contiguous 4-bit codes per row, lane and block (whole 32-byte sectors); with
// tiled rows (DeviceTensor::tiled) the warp's load of rows n0 .. n0 + 7 is 512 contiguous bytes
// (3-bit: three loads of 128, the tile's planes). The same lane loads x[g][those 32 columns] (and
// x[g + 8]). Permuted codes (gemv_layout.hpp: group % 128 == 0, or the NV kinds' kPair) hold other
// columns in those 16 bytes (kQuad: 32 w + 8 t .. + 7, w = 0..3; kPair: 64 (w >> 1) + 16 t +
// 8 (w & 1) .. + 7), so that the four lanes of an x row read one 128-byte line per load instead of
// two.
//
// Tensor cores: mma.sync.m16n8k16 computing y^T = W . x^T (A = 16 decoded weight rows, B = x^T
// with up to 8 rows of x, fp32 accumulators); M = 9..16 takes a second mma on the same A. So
// small M pads nothing. A k-step sums 16 products in any order, so the k-slots of a fragment may
// name any 16 columns as long as A and B agree: the decoders produce pairs of codes (i, i + 4)
// of each 8-code word, which upload() stores in pair order (gemv_layout.hpp pair_chunk: fields
// i, i + 4 are columns 2i, 2i + 1), so each pair meets x's half2 word i as loaded.
//
// Decoding (decode_pair): by bits where the grid allows (int4 / int3: the 0x6400 magic and its kin;
// E2M1 formats and fp3: sign and exponent/magnitude bits placed into an fp16, E2M1 four codes at a
// time as high bytes, RaZeR's -0 code patched there to the group's special value; 4-bit RaZeR
// (razer4, mxfp4-razer, nvfp4-razer) re-encoded at upload (DeviceTensor::razer_xor): two PRMT
// lookups in 8-byte tables per four codes, XORed, special value included; razer3, fp3 and int3
// stored as nibbles: a PRMT lookup in an 8-byte table held in registers, razer3's special value in
// it, int3 asym's zero point by the table's choice; nf4, whose grid no bit decoder takes, kept in
// column order at upload (DeviceTensor::pair_table): each byte of two codes loads its half2 from a
// 256-entry table in shared memory, 32 copies, one per bank), else through a 16-entry fp16 table
// of the format's values in shared memory (one per special value for the RaZeR kinds); then the zero point
// (asym int) and one HMUL2 by the group's fp16 inner scale (the nibbles and razer4 at M <= 8 and
// K > 4096: the scale on each 128-column block's fp32 sums instead, POST: post_scaled). The nibbles at M = 1 in
// the bulk ring: int8 tensor-core products instead (kNib3I8, gemv_body's I8): the codes looked up
// as int8 values, x split per block into two int8 parts of a 16-bit fixed point. razer4 at M = 1
// likewise in the register pipeline (kE2M1XorI8, gemv_body's I8X): the two lookups' int8 tables,
// x's two parts of a 15-bit fixed point in two columns of one product.
// bench/gemv.md has the measurements and what was tried.
#include <cooperative_groups.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "common/error.hpp"
#include "kernels/cuda/bulk_copy.cuh"
#include "kernels/cuda/cp_async.cuh"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/device_info.cuh"
#include "common/half.hpp"
#include "kernels/cuda/gemv_bits3.cuh"
#include "kernels/cuda/gemv_e2m1.cuh"
#include "kernels/cuda/gemv_cuda.hpp"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/silu.cuh"

namespace razerq::kernels {

namespace {

using quantizer::ScaleKind;

constexpr int kWarps = 8;
constexpr int kRowsPerBlock = 16;
static_assert(kRowsPerBlock == kTileRows, "a block's tile is a tile of the tiled rows (gemv_layout.hpp)");
// The stage count that selects the bulk ring (gemv_body's BULK; 3-bit codes, set_gemv_stages(3)) and
// the ring's depth in steps of the block's 8 warps (a step: 8 blocks of K).
constexpr int kBulkStages = 3;
constexpr int kBulkDepth = 4;
constexpr int kTables = 4;  // special-value tables (the plain grid four times without special values)

struct GemvArgs {
  const uint32_t* codes;     // [N, K/8]
  const uint16_t* scales16;  // fp16 kinds
  const uint8_t* scales8;    // 8-bit kinds
  const uint32_t* zeros;     // asym: 4-bit zero points, [N, zero_words]
  const uint8_t* sv_index;   // razer fallback: special-value index per group (else null)
  const uint8_t* zero_bytes;  // asym nib3: the zero points as bytes, laid out like scales16 (DeviceTensor)
  const uint16_t* x;         // [M, K]
  uint16_t* y;               // [M, N]
  int N, K, M;
  int code_words;                               // per row: K / 8 (4-bit) or 3 K / 32 (3-bit)
  int row_stride, kb_stride;  // words from a row of a tile to the next and from a 128-column block of a
                              // row to the next: code_words and 4 BITS row-major, 4 BITS and 64 BITS tiled
                              // (3-bit tiled: 4, the rows' words in planes, gemv_layout.hpp tiled_block_word)
  int q_lane_words, q_plane;  // 3-bit: lane t's first code word at t q_lane_words from its row's block, its
                              // three words q_plane apart: 3 and 1 row-major, 1 and kTilePlaneWords tiled
  // Group entries (scales, sv_index): row r of a tile at g_row_stride r from the tile's first
  // row's; its group gl at ((gl >> g_unit_shift) << g_block_shift) + (gl & (2^g_unit_shift - 1)):
  // row-major groups_per_row, 0, 0; tiled (gemv_layout.hpp tiled_group) 2^u, u, u + 4.
  int g_row_stride, g_unit_shift, g_block_shift;
  int group_shift, groups_per_row, zero_words;  // group = 1 << group_shift
  float outer;               // per-tensor factor applied to the fp32 sums (NV kinds), else 1
  int tiles;                 // host side: 16-row tiles per block, 0 = two_tiles_pay decides
  int layout;                // host side: CodeLayout of the codes (gemv_layout.hpp; the LAYOUT kernels)
  uint32_t razer_scale_mask;  // the RaZeR kinds' scale bits (razer_xor: sign included): kFp16Razer the
                              // word's (0xbfff signed, 0x3fff), kE3M3RazerTensor both bytes' (0xbfbf
                              // signed, 0x3f3f), kE8M0Razer the byte's sign bit (0x80 signed, 0)
  int razer_xor;              // the codes re-encoded (DeviceTensor::razer_xor): kE2M1Xor or the table
  int nib3;                   // 3-bit codes as nibbles (DeviceTensor::nib3): kNib3 or the table
  int pair_table;             // 4-bit codes in column order for kPairLut (DeviceTensor::pair_table): it or the table
  uint32_t nib_t0;            // kNib3: the high bytes of codes 0..3's values x 2^-14 (gemv3::nib3_tables);
                             // kNib3I8: their int8 values x 2^i8_shift (gemv3::nib3_i8_tables)
  int i8_shift;               // kNib3I8: the tables' values are the grid's x 2^i8_shift
  uint32_t nib_z[2][8];       // kNib3 asym (ZB): per zero point z, the tables of codes 0..3 and 4..7
                              // of the values c - z (in place of nib_t0 and special[]; x 2^-14, high
                              // bytes: gemv3::nib3_zero_tables)
  int split_from;            // one-tile blocks from this (even) index on take half of a tile's K each,
                             // in clusters of two (split_plan); INT_MAX: none
  int pair_rows;             // the SiLU epilogue (PAIR, gemv_silu_mul_fp16_cuda): F, W = [gate; up] of
                             // N = 2 F rows, y = act [M, F]; 0: the plain product
  uint16_t table[kTables * 16];  // fp16 value by table * 16 + code
  uint32_t special[kTables];     // per table: kE2M1 RaZeR: the high byte of special value x 2^-14,
                                 // XOR 0x80, in all four bytes (gemv_e2m1.cuh); kE2M1Xor: the
                                 // second table's high word, kXorT2Hi | |S|'s byte << 24;
                                 // kNib3: the high bytes of codes 4..7's values x 2^-14;
                                 // kNib3I8: their int8 values x 2^i8_shift
  // The norm epilogues (NORM, gemv_add_norm_fp16_cuda / gemv_normed_fp16_cuda; norm_mode 0: none).
  // 1 (add + norm): y is not stored; h = fp16(h + y), norm_x = fp16(h norm_w norm_scale), and each
  // 16-row tile j writes its rows' sum of h^2 per x row m to norm_slots_out[m norm_tiles + j] (the
  // last tile also zeroes the padding up to norm_tiles). 2 (normed): the x rows' factors
  // rsqrt(sum of norm_slots_in[m norm_tiles ..] / norm_n + norm_eps) norm_scale multiply the fp32 sums.
  int norm_mode;
  int norm_vec;               // 1: the tiles' h rows and norm weights by 16-byte copies (N a multiple
                              // of 16, h and norm_w 16-byte aligned)
  int norm_tiles;             // slots per x row: the producer's tiles rounded up to a multiple of 4
  int norm_n;                 // 2: the normed length (K, the producer's N)
  float norm_eps;             // 2
  float norm_scale;           // 1: x_scale; 2: 1 / x_scale
  uint16_t* norm_h;           // 1: the residual stream [M, N]
  const uint16_t* norm_w;     // 1: the norm's weight [N]
  uint16_t* norm_x;           // 1: [M, N]
  float* norm_slots_out;      // 1
  const float* norm_slots_in;  // 2
};

__device__ __forceinline__ uint4 ld_stream(const void* p) {  // read once: do not keep in L1
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// The cluster barrier in two halves (every thread of the cluster's blocks arrives once, then waits).
__device__ __forceinline__ void cluster_arrive_relaxed() { asm volatile("barrier.cluster.arrive.relaxed;" ::: "memory"); }
__device__ __forceinline__ void cluster_wait() { asm volatile("barrier.cluster.wait;" ::: "memory"); }

__device__ __forceinline__ uint32_t ld_stream32(const void* p) {
  uint32_t v;
  asm("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
}

__device__ __forceinline__ void mma16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// int8 tensor-core products (kNib3I8): A 16 x 32 int8 weights, B 32 x 8 int8 (S8) or uint8 parts of
// x, int32 accumulators (exact).
template <bool S8>
__device__ __forceinline__ void mma16832(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
  if constexpr (S8)
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  else
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.u8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t h2u(__half2 h) { return *reinterpret_cast<uint32_t*>(&h); }
__device__ __forceinline__ __half2 u2h(uint32_t u) { return *reinterpret_cast<__half2*>(&u); }

// fp16 bits of 2^e, e in [-24, 15] (upload() checked the range).
__device__ __forceinline__ uint32_t pow2_half_bits(int e) {
  return e >= -14 ? static_cast<uint32_t>(e + 15) << 10 : 1u << (e + 24);
}
// The half2 bits of two E4M3 (OCP, bias 7) bytes, byte 0 in the low half and byte 1 in the
// high: exact (E4M3 lies inside fp16's range), by one cvt.rn.f16x2.e4m3x2 (sm_89+; this file
// needs sm_90 for its clusters anyway). An E3M3 payload p (razer.md 4.3: e >= 1: 2^(e-3)(1 + m/8);
// e = 0: m/32) read as the E4M3 byte 0eeemmm is its value times 2^-4 exactly (bias 7 instead of
// 3; the subnormals m 2^-9 against m 2^-5), so the NV kinds' scales both take this one
// conversion (the 2^4 goes into the fp32 tensor factor: gemv_fp16_cuda).
__device__ __forceinline__ uint32_t e4m3x2_half2_bits(uint32_t b2) {
  uint32_t r;
  asm("{\n .reg .b16 t;\n cvt.u16.u32 t, %1;\n cvt.rn.f16x2.e4m3x2 %0, t;\n}" : "=r"(r) : "r"(b2));
  return r;
}

// The int8 products' x per 128-column block (block_i8, block_x8; every lane of the warp holds four
// of the block's values, xv): E, the biased fp16 exponent of the block's largest |x| (at least 1),
// and f[i], the bits of the float x_i 2^(B - E) + bias rounded to an integer (bias 1.5 2^23 + c:
// the integer's two's complement plus c in the low 16 bits, for |x_i 2^(B - E)| + c below 2^22).
struct XFixed {
  int E;
  uint32_t f[4];
};
template <int B>
__device__ __forceinline__ XFixed x_fixed(const uint2& xv, float bias) {
  const uint32_t m2 = __vmaxu2(xv.x & 0x7fff7fffu, xv.y & 0x7fff7fffu);  // |x| orders like its bits
  const uint32_t mx = __reduce_max_sync(0xffffffffu, max(m2 & 0xffffu, m2 >> 16));
  XFixed r;
  r.E = max(static_cast<int>(mx >> 10), 1);
  const float up = __uint_as_float(static_cast<uint32_t>(127 + B - r.E) << 23);  // 2^(B - E)
  const __half2 x01 = u2h(xv.x), x23 = u2h(xv.y);
  r.f[0] = __float_as_uint(fmaf(__low2float(x01), up, bias));
  r.f[1] = __float_as_uint(fmaf(__high2float(x01), up, bias));
  r.f[2] = __float_as_uint(fmaf(__low2float(x23), up, bias));
  r.f[3] = __float_as_uint(fmaf(__high2float(x23), up, bias));
  return r;
}

// A group's entries as loaded (GroupRaw) and decoded (decode_group: the inner scale and
// special-value table). The kernel keeps one of the two per row and block in flight: the NV
// kinds their raw bytes (one or two registers per row), decoded at use a block later; the
// others the decoded group, decoded at the load. Measured (bench/gemv.md, seventh session): the
// NV kinds so, with one 16-bit load and one cvt for both groups, took nvfp4 M = 1 1.10-1.23x
// faster than two byte loads decoded at the load; decoding at use for the other kinds made
// mxfp4 1-4 % and razer4 up to 3 % slower and gained nothing that a second call confirmed.
struct GroupRaw {
  uint32_t a, b;  // the scale entry (NV kinds: the lane's two groups' bytes, kPair: the block's 8
                  // bytes in a, b); b: razer's separate special-value index + 1 (SV), else 0
};
// Decoded: the inner scale's fp16 bits and the value table's byte offset in shared memory
// (32 * special index); NV kinds (G16): the two groups' scales as a half2 (the first in the low
// half; E3M3 scales times 2^-4: e4m3x2_half2_bits) and table offsets (the first in bits 0..15).
struct Group {
  uint32_t scale;
  uint32_t table;
};

// One weight row's per-group arrays (scales16 or scales8, and razer's separate special-value
// indices), offset to the row (row-major) or to the row's first entry in its tile (tiled): the
// main loop adds a 32-bit offset per block of K, no 64-bit index arithmetic.
struct GroupRow {
  const uint16_t* s16;
  const uint8_t* s8;
  const uint8_t* sv;
  const uint8_t* zb;  // zero_bytes (ZB)
};

// SV: the kernel reads razer's separate special-value indices where the tensor has them (the
// table decoder; choose_decoder gives such tensors no bit decoder, so theirs skip the check).
// NV kinds (16-column groups, two per lane and block): off is the first group's; under kDisk the
// lane's two (2 t, 2 t + 1 of the block's 8) are one 16-bit load (off even: rows and tile units
// start at multiples of 8 entries); under kPair (NVPAIR: groups t, t + 4) off is the block's
// first group and its 8 bytes one 64-bit load.
// ZB (asym nib3, fp16 scales): the group's zero point in the scale entry's bits 16..23 (one register
// per row and stage; the scale's users read the low 16 bits).
template <ScaleKind K, bool SV, bool NVPAIR, bool ZB = false>
__device__ __forceinline__ GroupRaw load_group(const GroupRow& r, int off) {
  if constexpr (ZB) {
    static_assert(K == ScaleKind::kFp16, "zero point bytes come with plain fp16 scales");
    return {r.s16[off] | static_cast<uint32_t>(r.zb[off]) << 16, 0u};
  } else if constexpr (K == ScaleKind::kFp16 || K == ScaleKind::kFp16Razer) {
    if constexpr (K == ScaleKind::kFp16Razer && SV) return {r.s16[off], r.sv ? r.sv[off] + 1u : 0u};
    return {r.s16[off], 0u};
  } else if constexpr (K == ScaleKind::kE8M0 || K == ScaleKind::kE8M0Razer) {
    return {r.s8[off], 0u};
  } else {
    static_assert(K == ScaleKind::kE4M3Tensor || K == ScaleKind::kE3M3RazerTensor, "a new scale kind needs a case here");
    if constexpr (NVPAIR) {
      const uint2 v = __ldg(reinterpret_cast<const uint2*>(r.s8 + off));
      return {v.x, v.y};
    }
    return {*reinterpret_cast<const uint16_t*>(r.s8 + off), 0u};
  }
}

// nv_sel: the PRMT selector of the lane's two bytes of the 8 (NVPAIR).
template <ScaleKind K, bool SV, bool NVPAIR>
__device__ __forceinline__ Group decode_group(GroupRaw g, uint32_t nv_sel, uint32_t scale_mask) {
  if constexpr (K == ScaleKind::kFp16) {
    return {g.a, 0u};  // (ZB: the zero point stays in bits 16..23)
  } else if constexpr (K == ScaleKind::kFp16Razer) {
    if (SV && g.b) return {g.a, 32u * (g.b - 1u)};
    return {g.a & scale_mask, 32u * (g.a >> 14)};  // bits 15, 14: the index's high and low bit
                                                   // (razer_xor: bit 15 also the scale's sign)
  } else if constexpr (K == ScaleKind::kE8M0) {
    return {pow2_half_bits(static_cast<int>(g.a) - 127), 0u};
  } else if constexpr (K == ScaleKind::kE8M0Razer) {  // (razer_xor: bit 7 the sign, fp16's bit 15)
    return {pow2_half_bits(static_cast<int>(g.a & 63u) - 31) | ((g.a & scale_mask) << 8), 32u * (g.a >> 6)};
  } else {
    const uint32_t raw = NVPAIR ? bits::prmt(g.a, g.b, nv_sel) : g.a;
    if constexpr (K == ScaleKind::kE4M3Tensor) return {e4m3x2_half2_bits(raw), 0u};
    // E3M3 payloads in bits 0..5 of each byte, the special-value index in bits 6, 7 (razer_xor:
    // bit 7 also the sign, E4M3's).
    return {e4m3x2_half2_bits(raw & scale_mask), (32u * ((raw >> 6) & 3u)) | ((32u * ((raw >> 14) & 3u)) << 16)};
  }
}

__device__ __forceinline__ uint32_t lds16(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.u16 %0, [%1];" : "=r"(v) : "r"(addr));
  return v;
}
__device__ __forceinline__ uint32_t lds32(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(addr));
  return v;
}

// Per lane and 128-column block: the decoded group parameters of one weight row.
struct RowGroup {
  __half2 scale[2];  // columns 0..15 and 16..31 of the lane's 32 (equal unless G16)
  __half2 zero[3];   // kLut asym: zero[0] = the zero point; kInt4: zero[0] = 1024 + 8 (sym) or
                     // 1024 + zero (asym); kInt3: per magic m (gemv3::int3_pair) m + 4 or m + zero
  uint32_t tb[2];    // kLut: shared address of the value table; kE2M1 RaZeR: special[] (the byte);
                     // kNib3: the byte table of codes 4..7 (razer3: the special value's in byte 0)
  uint32_t t0;       // kNib3 asym (ZB): the byte table of codes 0..3 (else nib_t0 serves every group)
  float post;        // POST (post_scaled): the inner scale as fp32
};

// Pair i (0..3) of a code word q holds codes i and i + 4 (columns 8w + i and 8w + i + 4 of
// the word's 8), as one half2 of decoded, scaled weights. The decoders:
//  kLut:  each code indexes the group's 16-entry fp16 table in shared memory (any grid).
//  kInt4: (q >> 4i) & 0x000f000f | 0x6400 6400 is the half2 (1024 + c_i, 1024 + c_i+4); minus
//         1024 + 8 (sym) or 1024 + zero (asym) is the exact integer, times the scale.
//  kE2M1: every E2M1 value times 2^-14 is an fp16 with a zero low byte and the high byte
//         sign << 7 | magnitude << 1 (subnormals included, exactly): built byte-wise for the
//         word's even and odd codes once (four codes per operation; RaZeR: the -0 code's byte
//         replaced by the group's special value's by one masked XOR per four codes), then one
//         PRMT or one mask per pair (gemv_e2m1.cuh). The 2^14 is folded into the scale (PRE,
//         when every scale is below 4) or applied by one more exact HMUL2.
//  3-bit (gemv_bits3.cuh has the bit layouts and instruction counts), per word of 8 codes:
//  kInt3: codes 4..7 moved to the high half once; then pairs 0..2 are one LOP3 each with the
//         magics 1024, 128 and 16 (each code field lands in that magic's units) and pair 3 a
//         shift more; minus magic + 4 (sym) or magic + zero (asym), times the scale.
//  kFp3:  fp3's sign to bit 15 and its 2 exponent bits to bits 11..10 is exactly value x 2^-14
//         ({0, 1, 2, 4}); after a per-word move of the signs, one shift and one LOP3 per pair.
//         The 2^14 as for kE2M1.
//  kE2M1Xor: RaZeR 4-bit re-encoded at upload (DeviceTensor::razer_xor): two PRMT lookups in
//         8-byte tables per four codes, XORed, give the high bytes (special value included), then
//         one PRMT per pair (gemv_e2m1.cuh). The 2^14 as for kE2M1; razer4 (fp16 scales) under POST:
//         no HMUL2, the scale and 2^14 on the block's sums.
//  kNib3: 3-bit codes stored as nibbles at upload (DeviceTensor::nib3, gemv_bits3.cuh): per word
//         of 8 codes two PRMT lookups in the 8-byte table of the grid's high bytes (per group for
//         razer3: codes 4..7 hold the special value) and one PRMT per pair; razer3, fp3 and int3
//         sym (upload's nib3_applies: any symmetric grid gemv3::nib3_tables takes). The word's
//         codes are in column order (pair i = fields 2 i, 2 i + 1). The 2^14 as for kE2M1.
//  kNib3I8: the nib3 codes looked up in int8 tables (the grid's values x 2^i8_shift,
//         gemv3::nib3_i8_tables: four weights per PRMT, no spreading into half2s) and multiplied by
//         int8 tensor-core products (mma.m16n8k32) against x split in two int8 parts per 128-column
//         block (gemv_body's I8): M = 1, the bulk ring only.
//  kE2M1XorI8: razer4 (kE2M1Xor's tensors, fp16 scales, groups of 128 or more) by int8 tensor-core
//         products at M = 1 (gemv_body's I8X): the two lookups with int8 tables give the weights -2 v
//         (gemv_e2m1.cuh kXorI8*), four per instruction, an A register as they stand; x split per
//         128-column block in two int8 parts of a 15-bit fixed point, one for column 0 of the mma's
//         B and one for column 1, so one m16n8k32 per 8 codes of a row pair takes both.
//  kPairLut: 4-bit codes in column order (DeviceTensor::pair_table: grids no bit decoder takes,
//         nf4), so byte i of a word is pair i (codes 2i, 2i + 1): one 32-bit shared-memory load of
//         the half2 (value(low nibble), value(high nibble)) from a 256-entry table, which gemv_body
//         builds per block from the grid's fp16 values in 32 copies, word 32 e + lane for entry e,
//         so that every lane reads its own bank (no conflicts). Per word of 8 codes: 4 byte
//         extractions, 4 address computations and 4 loads, against the table decoder's 8 loads
//         and 20 ALU-pipe instructions; the same fp16 values, so the same y bit for bit.
enum class Decode { kLut, kInt4, kE2M1, kInt3, kFp3, kE2M1Xor, kNib3, kNib3I8, kPairLut, kE2M1XorI8 };

// The decoders that take an asym tensor's zero points as bytes (DeviceTensor::zero_bytes; gemv_body's ZB).
__host__ __device__ constexpr bool takes_zero_bytes(bool asym, Decode d) {
  return asym && (d == Decode::kNib3 || d == Decode::kNib3I8);
}
__host__ __device__ constexpr bool is_3bit_decoder(Decode d) {
  return d == Decode::kInt3 || d == Decode::kFp3 || d == Decode::kNib3 || d == Decode::kNib3I8;
}
__host__ __device__ constexpr bool is_tensor_kind(ScaleKind k) { return k == ScaleKind::kE4M3Tensor || k == ScaleKind::kE3M3RazerTensor; }
// The E2M1 byte decoder with RaZeR's special-value patch (gemv_e2m1.cuh): a RaZeR scale kind.
__host__ __device__ constexpr bool e2m1_special(Decode d, ScaleKind k) { return d == Decode::kE2M1 && is_razer_kind(k); }

// Decoders whose values come out x 2^-14 (the scale carries 2^14 under PRE; nvfp4: pre_factor).
__host__ __device__ constexpr bool times_2m14(Decode d) {
  return d == Decode::kE2M1 || d == Decode::kFp3 || d == Decode::kE2M1Xor || d == Decode::kNib3;
}
// What PRE multiplies the inner scale by: 2^14 (then the decoded weight is exactly
// fp16(value x scale), as long as scale x 2^14 is an fp16: inner scales below 4), or for nvfp4
// (E4M3 scales) 2^7, always, the other 2^7 going into the fp32 tensor factor (gemv_fp16_cuda):
// every E4M3 scale (2^-9 .. 448) times 2^7 is an exact fp16, and every E2M1 value v times such a
// scale s gives v s 2^-7, a multiple of 2^-17 below 29 with at most 6 significant bits: exact in
// fp16. So the weights are the table's times exactly 2^-7, the fp32 sums too (no product comes
// near fp32's range ends), and y is the same bit for bit. nvfp4-razer's E3M3 scales s come out of
// e4m3x2_half2_bits as s 2^-4 (the 2^4 into the tensor factor), so PRE always holds there too:
// s 2^-4 2^14 <= 30 2^10 is an exact fp16, and a value v of at most 3 significant bits (E2M1, and
// the special values the byte decoder takes: v 2^-14 an fp16 with a zero low byte, so v a
// multiple of 2^-2) times s 2^-4 (a multiple of 2^-9) is a multiple of 2^-11 with at most 7
// significant bits: exact below fp16's range end (|v| < 2^14 keeps it under 30720).
__host__ __device__ constexpr float pre_factor(ScaleKind k) { return k == ScaleKind::kE4M3Tensor ? 128.f : 16384.f; }
// POST (the 3-bit x 2^-14 decoders kNib3 and kFp3 without PRE): the decoded weights stay value x
// 2^-14 (exact fp16s) and the scale is applied to each 128-column block's fp32 sums instead, one
// FFMA per accumulator and block, the 2^14 to the final sums (GemvArgs::outer): no HMUL2 per pair.
// A k-step sums the columns of all four lanes t of a row, so a row's block must have one scale:
// groups of 128 columns or more (choose_plan checks). Any fp16 scale (no range condition, unlike PRE).
// Since the thirty-third session razer4's two-table decoder too (kE2M1Xor with fp16 razer scales,
// whose values come out x 2^-14 like the nibbles'; choose_plan).
__host__ __device__ constexpr bool post_scaled(Decode d, bool pre, ScaleKind k) {
  return !pre && (d == Decode::kNib3 || d == Decode::kFp3 || (d == Decode::kE2M1Xor && k == ScaleKind::kFp16Razer));
}

// A word of 8 codes as its decoder takes it, prepared once for the word's 4 pairs: the codes, or
// kE2M1's high bytes of its even and odd codes (gemv_e2m1.cuh), or the 3-bit bit decoders' forms
// of gemv_bits3.cuh. tb: the row group's tb (kE2M1 RaZeR: the special value's byte mask; kNib3
// the table of codes 4..7, t0 that of codes 0..3).
struct Word {
  uint32_t a, b;
};

template <Decode DEC, bool SPECIAL>
__device__ __forceinline__ Word prep_word(uint32_t q, uint32_t tb, uint32_t t0) {
  if constexpr (DEC == Decode::kNib3) {
    const gemv3::Nib3Bytes b = gemv3::nib3_lookup(q, t0, tb);
    return {b.lo, b.hi};
  } else if constexpr (DEC == Decode::kInt3) {
    return {gemv3::spread<0>(q), 0u};
  } else if constexpr (DEC == Decode::kFp3) {
    return {gemv3::fp3_word(gemv3::spread<1>(q)), 0u};
  } else if constexpr (DEC == Decode::kE2M1) {
    const gemv4::E2m1Bytes b = gemv4::e2m1_bytes<SPECIAL>(q, tb);
    return {b.e, b.o};
  } else if constexpr (DEC == Decode::kE2M1Xor) {
    const gemv4::E2m1Bytes b = gemv4::xor_bytes(q, tb);
    return {b.e, b.o};
  } else {
    return {q, 0u};
  }
}

// BITS = 3, kLut: q holds 8 codes of 3 bits in its low 24 bits, code j at bit 3j; or with
// col_order (a nib3 tensor's) 8 nibbles, code j in bits 4j .. 4j + 2, pair i = nibbles 2i, 2i + 1.
// col_order (kLut, 4-bit): the word's codes in column order (a razer_xor tensor's), so pair i is
// fields (2 i, 2 i + 1), not (i, i + 4).
template <ScaleKind K, Decode DEC, bool ASYM, bool SPECIAL, bool PRE, int BITS>
__device__ __forceinline__ uint32_t decode_pair(Word wd, int i, const RowGroup& r, int hlf, bool col_order) {
  const uint32_t q = wd.a, tb = r.tb[hlf];
  __half2 v;
  if constexpr (DEC == Decode::kLut && BITS == 3) {
    const int s0 = col_order ? 8 * i : 3 * i, s1 = col_order ? 8 * i + 4 : 3 * i + 12;
    const uint32_t lo = lds16((s0 == 0 ? (q << 1) & 0xeu : (q >> (s0 - 1)) & 0xeu) | tb);
    const uint32_t hi = lds16(((q >> (s1 - 1)) & 0xeu) | tb);
    v = u2h(__byte_perm(lo, hi, 0x5410));
    if constexpr (ASYM) v = __hsub2(v, r.zero[0]);
  } else if constexpr (DEC == Decode::kLut) {
    const int f0 = col_order ? 2 * i : i, f1 = col_order ? 2 * i + 1 : i + 4;
    const uint32_t lo = lds16((f0 == 0 ? (q << 1) & 0x1eu : (q >> (4 * f0 - 1)) & 0x1eu) | tb);
    const uint32_t hi = lds16(((q >> (4 * f1 - 1)) & 0x1eu) | tb);
    v = u2h(__byte_perm(lo, hi, 0x5410));
    if constexpr (ASYM) v = __hsub2(v, r.zero[0]);
  } else if constexpr (DEC == Decode::kPairLut) {  // byte i = codes (2i, 2i + 1); tb: the lane's copy
    const uint32_t b = i == 0 ? q & 0xffu : i == 3 ? q >> 24 : bits::prmt(q, 0u, 0x4440u | static_cast<uint32_t>(i));
    v = u2h(lds32(tb + (b << 7)));
  } else if constexpr (DEC == Decode::kInt4) {
    v = __hsub2(u2h(gemv3::and_or(q >> (4 * i), 0x000f000fu, 0x64006400u)), r.zero[0]);
  } else if constexpr (DEC == Decode::kInt3) {
    v = __hsub2(u2h(gemv3::int3_pair(q, i)), r.zero[gemv3::int3_magic_index(i)]);
  } else if constexpr (DEC == Decode::kFp3 || DEC == Decode::kNib3) {
    v = u2h(DEC == Decode::kFp3 ? gemv3::fp3_pair(q, i) : gemv3::nib3_pair({wd.a, wd.b}, i));
  } else {  // kE2M1 / kE2M1Xor: the high bytes prepared per word (special value included)
    v = u2h(DEC == Decode::kE2M1 ? gemv4::e2m1_pair({wd.a, wd.b}, i) : gemv4::xor_pair({wd.a, wd.b}, i));
    if constexpr (!PRE && !post_scaled(DEC, PRE, K)) v = __hmul2(v, __float2half2_rn(16384.f));
  }
  if constexpr (post_scaled(DEC, PRE, K)) return h2u(v);  // the scale goes to the block's sums
  return h2u(__hmul2(v, r.scale[hlf]));
}

template <ScaleKind K, bool ASYM, bool G16, Decode DEC, bool PRE, int BITS>
__device__ __forceinline__ RowGroup row_group(const GemvArgs& a, const Group& g0, int n, bool ok,
                                              int col, uint32_t lut_addr) {
  static_assert(G16 == is_tensor_kind(K), "16-column groups are the NV kinds'");
  RowGroup r;
  if constexpr (G16) {  // two groups per lane (decode_group)
    __half2 s = u2h(g0.scale);
    if constexpr (times_2m14(DEC) && PRE) s = __hmul2(s, __float2half2_rn(pre_factor(K)));
    r.scale[0] = __low2half2(s);
    r.scale[1] = __high2half2(s);
    const uint32_t t0 = g0.table & 0xffffu, t1 = g0.table >> 16;
    if constexpr (DEC == Decode::kE2M1 || DEC == Decode::kE2M1Xor || DEC == Decode::kNib3) {
      r.tb[0] = a.special[t0 >> 5], r.tb[1] = a.special[t1 >> 5];
    } else {
      r.tb[0] = lut_addr | t0, r.tb[1] = lut_addr | t1;
    }
  } else {
    if constexpr (post_scaled(DEC, PRE, K) || DEC == Decode::kE2M1XorI8)
      r.post = __half2float(__ushort_as_half(static_cast<unsigned short>(g0.scale)));
    __half2 s0 = u2h(bits::prmt(g0.scale, 0u, 0x1010u));  // the low 16 bits in both halves
    if constexpr (times_2m14(DEC) && PRE) s0 = __hmul2(s0, __float2half2_rn(pre_factor(K)));
    r.scale[0] = r.scale[1] = s0;
    r.tb[0] = r.tb[1] = DEC == Decode::kE2M1 || DEC == Decode::kE2M1Xor || DEC == Decode::kNib3 || DEC == Decode::kE2M1XorI8
                            ? a.special[g0.table >> 5]
                            : lut_addr | g0.table;
    if constexpr (ASYM && DEC == Decode::kNib3) {  // (ZB: the zero point in the scale entry's high half)
      // nib_z as gemv_body copied it to shared memory (lut_addr), not indexed parameter loads
      // (which serialize over a warp's distinct addresses): M = 2..8 on the three largest shapes
      // 0.5-1.8 points of the floor faster (bench/gemv.md, twenty-ninth session).
      const uint32_t z4 = (g0.scale >> 16) * 4u;
      r.t0 = lds32(lut_addr + z4);
      r.tb[0] = r.tb[1] = lds32(lut_addr + 32u + z4);
    }
  }
  if constexpr (DEC == Decode::kInt3) {
#pragma unroll
    for (int k = 0; k < 3; ++k) r.zero[k] = u2h((gemv3::int3_magic(k) | (4u << (3 * k))) * 0x10001u);
  } else {
    r.zero[0] = r.zero[1] = r.zero[2] = DEC == Decode::kInt4 ? u2h(0x64086408u) : __float2half2_rn(0.f);
  }
  if constexpr (ASYM && DEC != Decode::kNib3) {  // (kNib3: the zero point is in its tables)
    const int gl = col >> a.group_shift;
    uint32_t z;
    if constexpr (BITS == 4) {
      const uint32_t zw = ok ? a.zeros[static_cast<int64_t>(n) * a.zero_words + (gl >> 3)] : 0u;
      z = (zw >> ((gl & 7) * 4)) & 15u;
    } else {  // 3-bit zero points: a row bitstream like the codes; one may straddle two words
      const uint32_t* zr = a.zeros + static_cast<int64_t>(n) * a.zero_words;
      const int bit = 3 * gl, w = bit >> 5;
      const uint32_t lo = ok ? zr[w] : 0u, hi = ok && w + 1 < a.zero_words ? zr[w + 1] : 0u;
      z = __funnelshift_r(lo, hi, bit & 31) & 7u;
    }
    if constexpr (DEC == Decode::kInt3) {
      const uint32_t zz = z * 0x10001u;
#pragma unroll
      for (int k = 0; k < 3; ++k) r.zero[k] = u2h((gemv3::int3_magic(k) * 0x10001u) | (zz << (3 * k)));
    } else {
      r.zero[0] = DEC == Decode::kInt4 ? u2h((0x6400u | z) * 0x10001u) : __half2half2(__uint2half_rn(z));
    }
  }
  return r;
}

// The tensor-core product is taken transposed, y^T = W . x^T: A = 16 weight rows (decoded),
// B = x^T (M <= 8 columns per mma; a second mma for rows 8..15 of x), so no operand is padded
// with zeros for small M. Lane = 4 g + t holds weight rows n0 + g and n0 + g + 8 and x row g
// (and g + 8), columns 32 t .. 32 t + 31 of each 128-block. Step s = 2 w + h of the block
// takes pairs 2h, 2h + 1 of code word w (in pair order columns 8w + {4h, 4h + 1} in k-slots 2t,
// 2t + 1 and 8w + {4h + 2, 4h + 3} in slots 2t + 8, 2t + 9): x's half2 words 4w + 2h, 4w + 2h + 1.
// MT = 1: M <= 8; MT = 2: M <= 16. G16: 16-column groups (two per lane and block).
// Pipeline: each warp keeps kStages (1 or 2) blocks of codes and group parameters in flight.
// BITS = 3: a lane's 32 codes of a row and block are 12 bytes (three 32-bit loads: row-major at
// words 12 kb + 3 t + j of the row; tiled at word 64 j + 4 r + t of the tile's block, planes that
// make each load of a warp one 128-byte line per 8 rows), split into four 24-bit words of 8 codes
// (gemv3::words).
// LAYOUT (CodeLayout, gemv_layout.hpp): where the lane's code word w lies, 32 t + 8 w (kDisk),
// 32 w + 8 t (kQuad) or 64 (w >> 1) + 16 t + 8 (w & 1) (kPair) in the block; its x load w follows.
// The group is the block's for the permuted layouts with group % 128 == 0; the NV kinds under
// kPair (G16) have words 0, 1 in the block's group t and 2, 3 in group t + 4 (of 8).
// SPLIT (one tile per block): blocks from a.split_from on are the split tail's cluster pairs. A
// template parameter: the runtime range and the exchange cost registers in every kernel otherwise
// (nvfp4-razer 80 -> 93, one resident block less per SM).
// The M = 16 kernels (MT = 2) of the bit decoders keep at least four blocks resident per SM
// (registers <= 64): after the loop's diet (no zero fills) int4 / int3 took 70 registers there and
// three blocks, 0.87-0.93x on the large shapes. razer4's two-table ones (kE2M1Xor) are bounded to
// three blocks instead: ptxas gives them 78-80 registers, against 64 under the four-block bound or
// with no bound at all (mxfp4-razer's and nvfp4-razer's two-table kernels too: 77-80 registers;
// nvfp4-razer's spills 16 bytes at 64 unbounded; at four blocks, measured in the nineteenth
// session, 11 of 14 rows at M = 16 were slower, mxfp4-razer 8192x28672 / 16384x16384 faster).
// Measured (bench/gemv.md, eighteenth session, two calls): 5-12 % faster at four of the issue's
// seven shapes (4096x11008 18.5 -> 16.3 us), 3-4 % slower at 11008x4096 and 14336x4096, where they
// stay within 5 % of int4. The same bound on razer4's M <= 8 kernels lost (up to 1.23x at
// 4096x11008, 1.15x at 8192x28672). Not bounded: the table decoder, 3-bit asym, two stages and the
// NV kinds other than the two-table ones (they spill at 64; most had more than 64 registers before
// too), and the M <= 8 kernels (bounded, ptxas gives every one all 64 registers, so four blocks:
// that gives up the fifth where it pays, occupancy_cap; a bound of one block per SM gives them
// 72-84 registers, so the attribute's minimum is 0 for them).
// The scale kinds and decoders of gemv_body's BULK (the tensor must also be tiled, permuted, with
// groups of 128: bulk_applies).
__host__ __device__ constexpr bool bulk_kind(ScaleKind k, Decode d) {
  return (k == ScaleKind::kFp16 || k == ScaleKind::kFp16Razer) && d != Decode::kLut;
}
// Whether gemv_body takes the bulk ring (BULK, below): then the block has a ninth warp, the producer.
// 3-bit bit decoders, fp16 scales, tiled permuted rows, one tile (the int8 products: two too).
__host__ __device__ constexpr bool bulk_body(ScaleKind k, bool g16, Decode dec, int stages, int bits, int tiles,
                                             int layout, bool pair) {
  return stages == kBulkStages && bits == 3 && (tiles == 1 || (tiles == 2 && dec == Decode::kNib3I8)) &&
         layout != static_cast<int>(CodeLayout::kDisk) && !g16 && !pair && bulk_kind(k, dec);
}
__host__ __device__ constexpr int block_threads(bool bulk) { return (kWarps + (bulk ? 1 : 0)) * 32; }

constexpr int kMinBlocksPerSm = 4;
__host__ __device__ constexpr int min_blocks_per_sm(int mt, Decode dec, bool asym, int bits, int stages, bool g16,
                                                   int tiles = 1) {
  // The bulk ring's 9 warps: 56 registers at 4 blocks; its two-tile int8 products 72 at 3.
  if (stages == kBulkStages) return dec == Decode::kNib3I8 && tiles == 2 ? 3 : kMinBlocksPerSm;
  // int3 asym's nibble decoder at M <= 8: 78 registers unbounded where split (the zero point's
  // tables), 64 as its sym twin at four blocks.
  if (mt == 1 && stages == 1 && dec == Decode::kNib3 && asym) return kMinBlocksPerSm;
  if (mt != 2 || stages != 1) return 0;
  if (dec == Decode::kE2M1Xor || dec == Decode::kPairLut) return 3;
  return dec != Decode::kLut && !(asym && bits == 3) && !g16 ? kMinBlocksPerSm : 0;
}

// Two accumulator sets per warp (gemv_body's kChains): the block's even code words' products go
// into acc0, the odd ones' into acc0b, added together after the loop (M <= 8, so acc1 is unused;
// no POST decoder has these kinds). A warp's eight tensor-core products per block
// are otherwise one dependent chain, which is what int4's loop waits on where the grid leaves few
// warps per SM. The rule depends on the tensor only (scale kind, sym, bits) and on MT, so that
// every decoder of a tensor sums in the same order (BitDecodersEqualTheTableBitForBit). Measured
// (bench/gemv.md, thirty-fourth session): two chains for every kind made int4 6-12 % faster on
// the 4096-row shapes at M <= 8 and razer4 slower in 29 of 35 rows; at M = 16 int4 was
// 1.02-1.07x slower; on an H200, the non-RaZeR kinds at M <= 8 gained for int4 sym, fp4 and nf4
// and were mixed for int4 asym, int3, mxfp4 and nvfp4. Hence the 4-bit sym fp16-scale kinds (int4
// sym, fp4, nf4) at M <= 8. Against one chain on the H100 (two rounds, M = 1..8, the issue's seven
// shapes): int4 sym 0-12 % faster (14336x4096 within 0.4 % either way), fp4 1-13 % faster but
// 2.2-2.6 % slower at 28672x8192 M = 1..4, nf4 mixed (4096x4096, 8192x28672 and 16384x16384 2-4 %
// faster, 4096x11008 within 1.3 %, 28672x8192 0.5 % faster to 3.6 % slower, 11008x4096 and
// 14336x4096 1-6 % slower).
__host__ __device__ constexpr bool two_chains(ScaleKind k, bool asym, int bits, int mt) {
  return mt == 1 && bits == 4 && !asym && k == ScaleKind::kFp16;
}

// PAIR: the SiLU epilogue (gemv_silu_mul_fp16_cuda; one tile per block and one stage): tile j
// takes gate rows 8 j .. 8 j + 7 (as rows g) and their up rows F + 8 j + g (as rows g + 8), so each
// lane ends with both sums of its outputs and writes act = silu(gate) * up. A row's sums take the
// same warps, blocks of K and order as in the plain kernel, so the same bits, unless the split tail
// splits the row's tile in one mode and not in the other. The body is gemv_body; gemv_kernel
// (plain) and gemv_pair_m8_kernel / gemv_pair_m16_kernel (PAIR) are its kernels. A compile-time
// choice: as a runtime branch in one kernel it moved 280 of the 600 kernels' register counts
// (48 <-> 64 both ways, ptxas -v, 2026-11-25).
//
// NORM (GemvArgs::norm_mode; gemv_norm_kernel, gemv_norm_pair_kernel): the decode step's residual
// add + RMSNorm split over its products. 1 (o, down): the epilogue adds y into the residual stream
// and writes the next product's x unnormalised, with each tile's sums of squares; 2 (q/k/v,
// gate/up; PAIR too): warp m copies x row m's sums into shared memory right after the wait (off the
// critical path), reduces them after its own loop, and the block scales its fp32 sums by each x
// row's rsqrt. Compile-time, as PAIR, and only with one stage, M <= 8 and one tile (2, plain: two too).
template <ScaleKind K, bool ASYM, int MT, bool G16, Decode DEC, bool PRE, int kStages, int BITS, int TILES, int LAYOUT,
          bool SPLIT, bool PAIR, int NORM = 0>
__device__ __forceinline__ void gemv_body(const GemvArgs& a) {
  static_assert(BITS == 4 ? !is_3bit_decoder(DEC) : BITS == 3 && (DEC == Decode::kLut || is_3bit_decoder(DEC)),
                "3-bit codes take the table or a 3-bit decoder, 4-bit codes no 3-bit decoder");
  // BULK (bulk_body; choose_stages says when): the tile's codes and scales come into a ring of kD
  // shared-memory stages, one stage per step of the block's 8 warps (8 consecutive blocks of K,
  // contiguous in the tiled layout), by one bulk copy of codes and one of scales (bulk_copy.cuh),
  // issued by a ninth warp (the producer; its lane 0) once every consumer lane has read the
  // stage's previous use (the empty barriers). The consumers take the same blocks of K in the same
  // order as the register pipeline, so y is the same bit for bit. TILES == 2 (kWarpTiles, the int8
  // products only): a stage holds the 8 blocks of K of each of the block's two tiles (a copy of
  // codes and one of scales per tile), and each warp takes its block of K of both tiles (32 rows).
  constexpr bool BULK = bulk_body(K, G16, DEC, kStages, BITS, TILES, LAYOUT, PAIR);
  static_assert(BULK == (kStages == kBulkStages), "kBulkStages only where the ring applies (launch_s, launch_t)");
  static_assert(!BULK || (BITS == 3 && kTilePlaneWords == 64), "the ring's lane words are the 3-bit planes'");
  constexpr int kBlkWords = kRowsPerBlock * block_words(BITS);  // a tile's 128-column block of codes
  // TILES == 2 in the ring (the int8 products only): each warp takes its block of K of both tiles.
  constexpr bool kWarpTiles = BULK && TILES == 2;
  constexpr int kPairs = kWarpTiles ? 2 : 1;  // the ring's row pairs per warp and block (block_i8)
  // ZB (asym int3 on nibbles): each group's zero point byte comes with its scale (load_group: in
  // the scale entry's high half), for kNib3 selecting the group's tables (nib_z), for kNib3I8 the
  // term z sum q (block_i8); the ring stages them after the scales.
  constexpr bool ZB = takes_zero_bytes(ASYM, DEC);
  constexpr int kStageBlocks = kWarps * (kWarpTiles ? 2 : 1);  // tile-blocks per stage
  // + their 16 fp16 scales each (and ZB 16 zero point bytes)
  constexpr int kStageWords = kStageBlocks * (kBlkWords + kRowsPerBlock / 2 + (ZB ? kRowsPerBlock / 4 : 0));
  constexpr int kDMax = 40960 / (4 * kStageWords);  // (48 KB of static shared memory in all)
  constexpr int kD = BULK ? (kBulkDepth < kDMax ? kBulkDepth : kDMax) : 1;
  static_assert(!BULK || kD >= 2, "the bulk ring needs two stages");
  __shared__ __align__(128) uint32_t bulk_buf[kD][BULK ? kStageWords : 1];
  __shared__ __align__(8) uint64_t bulk_bar[2 * kD];  // full[kD], empty[kD]
  constexpr bool SPECIAL = e2m1_special(DEC, K);
  constexpr bool kPost = post_scaled(DEC, PRE, K);
  static_assert(!kPost || !G16, "POST takes one group per lane and block");
  constexpr bool I8 = DEC == Decode::kNib3I8;
  static_assert(!I8 || (BULK && !PAIR), "the int8 products run in the bulk ring only");
  // I8X (kE2M1XorI8): razer4's int8 products, M = 1, in the register pipeline (block_x8); the
  // epilogues (PAIR, NORM) read x row 0's sums where the fp16 products leave them.
  constexpr bool I8X = DEC == Decode::kE2M1XorI8;
  static_assert(!I8X || (K == ScaleKind::kFp16Razer && BITS == 4 && MT == 1 && kStages == 1 && !BULK),
                "razer4's int8 products: fp16 razer scales, M = 1, one stage");
  static_assert(!two_chains(K, ASYM, BITS, MT) || (MT == 1 && !kPost && !I8),
                "two chains only beside acc0: M <= 8, no POST, no int8 products");
  static_assert(NORM == 0 || (MT == 1 && (TILES == 1 || (NORM == 2 && !PAIR)) && kStages == 1 && !BULK),
                "the norm epilogues: M <= 8, one stage, one tile (the plain normed product: two too)");
  static_assert(NORM != 1 || !PAIR, "add + norm writes the residual stream of a plain product");
  // NORM == 2: the producer's sums of squares [M][norm_tiles] (cp.async), then each x row's factor.
  __shared__ __align__(16) float norm_sl[NORM == 2 ? kGemvNormSlots : 4];
  __shared__ float norm_rs[NORM == 2 ? kWarps : 1];
  // NORM == 1 with norm_vec: the tile's h rows [m][16] and norm weights [16], copied by warp 0 (the
  // epilogue's) while the loop runs, so that the epilogue only stores.
  __shared__ __align__(16) uint16_t norm_hs[NORM == 1 ? kGemvNormMaxM * kRowsPerBlock : 8];
  __shared__ __align__(16) uint16_t norm_ws[NORM == 1 ? kRowsPerBlock : 8];
  // I8: each warp's x block split in two int8 parts (hi, lo) for its lanes' B operands, two blocks
  // (the one being multiplied and the next) so that one __syncwarp per block orders the writes.
  __shared__ __align__(16) uint2 xsplit[I8 ? kWarps : 1][2][32];
  // I8X: each warp's x block as 16 chunks of 8 columns, chunk c at words 4 c .. 4 c + 3: the hi
  // parts of its columns 0..3 and 4..7, then the lo parts; two blocks (block_x8).
  __shared__ __align__(16) uint32_t xs8[I8X ? kWarps : 1][2][64];
  // The table decoder on a razer_xor tensor (codes in column order; only the RaZeR kinds have them)
  // or a pair_table tensor (plain fp16 scales, sym). The table decoder on a nib3 tensor: nibbles, in
  // column order too.
  const bool col_order =
      DEC == Decode::kLut && (BITS == 4 ? (is_razer_kind(K) && a.razer_xor) || (K == ScaleKind::kFp16 && !ASYM && a.pair_table)
                                        : a.nib3 != 0);
  // kPairLut: the pair table, entry e's 32 copies at words 32 e .. 32 e + 31 (built below).
  __shared__ __align__(16) uint32_t ptab[DEC == Decode::kPairLut ? 256 * 32 : 1];
  __shared__ __align__(128) uint16_t lut[kTables * 16];  // 4 tables x 32 bytes: the 32 banks once
  // Partial sums: [warp][accumulator][lane]; kPairLut: in the pair table's place (dead after the
  // main loop; a barrier first), so that its blocks' shared memory leaves L1 room for x.
  constexpr bool kRedInTable = DEC == Decode::kPairLut;
  static_assert(!kRedInTable || kWarps * 4 * MT * 32 <= 256 * 32, "the partial sums fit in the pair table");
  __shared__ float red_own[kRedInTable ? 1 : kWarps][4 * MT][32];
  using RedWarp = float[4 * MT][32];
  RedWarp* red = kRedInTable ? reinterpret_cast<RedWarp*>(ptab) : red_own;
  __shared__ float xfer[4 * MT][32];          // split tail: the second half's sums, written by its block
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  if (DEC == Decode::kLut || DEC == Decode::kPairLut) {  // (kPairLut: the pair table is built from it)
    if (tid < kTables * 16) lut[tid] = a.table[tid];
    __syncthreads();
  }
  if constexpr (ZB && DEC == Decode::kNib3) {  // the tables per zero point, nib_z, in lut's place
    if (tid < 16) reinterpret_cast<uint32_t*>(lut)[tid] = a.nib_z[tid >> 3][tid & 7];
    __syncthreads();
  }
  const uint32_t lut_addr = static_cast<uint32_t>(__cvta_generic_to_shared(lut));  // 128-byte aligned
  // The value table's shared address as row_group hands it to decode_pair (kPairLut: the lane's copy).
  const uint32_t tab_addr =
      DEC == Decode::kPairLut ? static_cast<uint32_t>(__cvta_generic_to_shared(ptab)) + 4u * static_cast<uint32_t>(tid & 31)
                              : lut_addr;
  const uint32_t nib_t0 = a.nib_t0;

  const int g = lane >> 2, t = lane & 3;
  // TILES == 2 (the register pipeline): warps 0..3 take the block's first 16 rows, 4..7 the next
  // 16, both groups the same blocks of K in the same order, so each x load of one group is an L1
  // hit for the other. (kWarpTiles: every warp takes both tiles, tile 0.)
  constexpr int kw = kWarpTiles ? kWarps : kWarps / TILES;
  const bool producer = BULK && warp == kWarps;  // (the bulk pipeline's ninth warp)
  // (The producer has no k-blocks of its own; wk 1 keeps it out of the sums and stores below.)
  const int tile = producer ? 0 : warp / kw, wk = producer ? 1 : warp % kw;
  const int kblocks = a.K >> 7;
  // Split tail (split_plan; blocks of one tile, or the int8 products' two): block split_from + 2 i + h
  // (h = its rank in the cluster) takes the 128-column blocks [h kblocks / 2, (h + 1) kblocks / 2) of
  // the block's tiles split_from + i. The peer's shared memory is written at the end only after both
  // blocks have arrived at the cluster barrier here (compute-sanitizer's racecheck flagged the write
  // without it: the programming guide asks that the target block be known to run).
  int block_tile = blockIdx.x, kb_begin = 0, kb_end = kblocks, half = -1;
  if (SPLIT && static_cast<int>(blockIdx.x) >= a.split_from) {
    const int u = static_cast<int>(blockIdx.x) - a.split_from;
    block_tile = a.split_from + (u >> 1);
    half = u & 1;
    cluster_arrive_relaxed();
    kb_begin = half ? kblocks >> 1 : 0;
    kb_end = half ? kblocks : kblocks >> 1;
  }
  static_assert(!PAIR || (TILES == 1 && kStages == 1), "the SiLU epilogue's kernels have one tile and one stage");
  const int n0 = (block_tile * TILES + tile) * kRowsPerBlock;
  const int nA = PAIR ? n0 / 2 + g : n0 + g, nB = PAIR ? a.pair_rows + nA : nA + 8;
  const bool okA = nA < (PAIR ? a.pair_rows : a.N), okB = nB < a.N;
  // Rows nA, nB (row-major or tiled: DeviceTensor::tiled): a tile starts at its first row's
  // row-major offset either way.
  auto tile_start = [&](int r) { return a.codes + static_cast<int64_t>(r & ~(kRowsPerBlock - 1)) * a.code_words; };
  const uint32_t* wT = a.codes + static_cast<int64_t>(n0) * a.code_words;
  const uint32_t* wA = !okA ? a.codes : PAIR ? tile_start(nA) + (nA & (kRowsPerBlock - 1)) * a.row_stride : wT + g * a.row_stride;
  const uint32_t* wB = !okB ? a.codes : PAIR ? tile_start(nB) + (nB & (kRowsPerBlock - 1)) * a.row_stride : wT + (g + 8) * a.row_stride;
  const bool m0_ok = g < a.M, m1_ok = MT == 2 && g + 8 < a.M;
  const uint16_t* x0 = a.x + static_cast<int64_t>(m0_ok ? g : 0) * a.K;
  const uint16_t* x1 = a.x + static_cast<int64_t>(m1_ok ? g + 8 : 0) * a.K;

  float acc0[4] = {0.f, 0.f, 0.f, 0.f}, acc1[4] = {0.f, 0.f, 0.f, 0.f};
  constexpr int kChains = two_chains(K, ASYM, BITS, MT) ? 2 : 1;  // (acc0b: the second chain)
  float acc0b[4] = {0.f, 0.f, 0.f, 0.f};
  // Every load is unconditional, from a valid address, and nothing is zero-filled (a zero fill
  // costs a register-clearing instruction per two registers and a predicate per load in every
  // step): rows past N read row 0 (wA, wB, group_row), x rows past M read row 0 (x0, x1), and
  // the blocks after the last (the prefetch) are clamped to the last (kb_clamp). What they load
  // only reaches products whose output row or column is never stored: an mma's output element
  // (n, m) takes weight row n and x row m only. Measured with the rest of the diet below (32-bit
  // code offsets, the permuted layouts' group index by two shifts, the scale's half2 by one PRMT):
  // razer4's loop 276 -> 256 SASS instructions per block, int4 189 -> 171 (bench/gemv.md).
  auto load_q = [&](const uint32_t* w, uint32_t off) {
    if constexpr (BITS == 4) return ld_stream(w + off);
    const uint32_t* p = w + off;
    return make_uint4(ld_stream32(p), ld_stream32(p + a.q_plane), ld_stream32(p + 2 * a.q_plane), 0u);
  };
  // The word offset of the lane's codes in block kb of its rows (32 bits: within one tile).
  auto q_off = [&](int kbc) {
    const uint32_t lane_words = static_cast<uint32_t>(t) * (BITS == 4 ? 4u : static_cast<uint32_t>(a.q_lane_words));
    return static_cast<uint32_t>(kbc) * static_cast<uint32_t>(a.kb_stride) + lane_words;
  };
  // (A split tile's first half is empty where K is one block: it clamps to block 0.)
  const int kb_last = max(kb_end - 1, 0);
  auto kb_clamp = [&](int kb) { return min(kb, kb_last); };
  // Group entries of rows nA, nB (rows past N read row 0's: their sums are never stored).
  auto group_row = [&](int r, bool ok) {  // r: the row in the tile (PAIR: the row)
    int64_t at = ok ? static_cast<int64_t>(n0) * a.groups_per_row + static_cast<int64_t>(r) * a.g_row_stride : 0;
    if constexpr (PAIR)
      at = ok ? static_cast<int64_t>(r & ~(kRowsPerBlock - 1)) * a.groups_per_row +
                    static_cast<int64_t>(r & (kRowsPerBlock - 1)) * a.g_row_stride
              : 0;
    return GroupRow{a.scales16 ? a.scales16 + at : nullptr, a.scales8 ? a.scales8 + at : nullptr,
                    a.sv_index ? a.sv_index + at : nullptr, ZB ? a.zero_bytes + at : nullptr};
  };
  const GroupRow grA = group_row(PAIR ? nA : g, okA), grB = group_row(PAIR ? nB : g + 8, okB);
  constexpr bool kSv = DEC == Decode::kLut;  // (choose_decoder: separate indices take the table)
  // Blocks past kb_end (the prefetch after the last) read the last one's groups, never used.
  // G16 (NV kinds): the lane's two groups 2 t, 2 t + 1 of the block's 8 (kDisk), or t, t + 4
  // (kPair: load_group reads the block's 8, decode_group picks the two).
  constexpr bool kNvPair = G16 && LAYOUT == static_cast<int>(CodeLayout::kPair);
  const uint32_t nv_sel = static_cast<uint32_t>(t) | (static_cast<uint32_t>(t + 4) << 4);
  using Staged = std::conditional_t<G16, GroupRaw, Group>;  // what a stage holds (GroupRaw's comment)
  // The permuted layouts come with groups of 128 columns or more (one group per block, unit
  // shift 0): the entry of block kbc is then (kbc >> (group_shift - 7)) << g_block_shift.
  constexpr bool kWholeBlockGroups = LAYOUT != static_cast<int>(CodeLayout::kDisk) && !G16;
  const int kb_group_shift = a.group_shift - 7;
  auto load_g = [&](const GroupRow& r, int kbc) -> Staged {  // kbc: clamped (kb_clamp)
    int off;
    if constexpr (kWholeBlockGroups) {
      off = (kbc >> kb_group_shift) << a.g_block_shift;
    } else {
      const int gl = (kbc * 128 + (kNvPair ? 0 : t * 32)) >> a.group_shift;
      off = ((gl >> a.g_unit_shift) << a.g_block_shift) + (gl & ((1 << a.g_unit_shift) - 1));
    }
    const GroupRaw g = load_group<K, kSv, kNvPair, ZB>(r, off);
    if constexpr (G16) return g;
    else return decode_group<K, kSv, false>(g, 0u, a.razer_scale_mask);
  };
  auto use_g = [&](const Staged& g) -> Group {
    if constexpr (G16) return decode_group<K, kSv, kNvPair>(g, nv_sel, a.razer_scale_mask);
    else return g;
  };
  // One 128-column block kb of the warp's rows: x loaded, codes qA / qB (rows nA, nB) and groups
  // decoded and multiplied into acc0 / acc1.
  auto block = [&](int kb, const uint4& qA, const uint4& qB, const Staged& gA0, const Staged& gB0) {
    const int col = kb * 128 + t * 32;  // first of this lane's 32 columns on disk (its group)
    // x: 32 halves of row g (and g + 8) at the columns of the lane's 4 code words (8 each), as
    // 16 half2 words: word i's columns start at xcol + 8 xoff(i).
    constexpr int kQuad = static_cast<int>(CodeLayout::kQuad), kPair = static_cast<int>(CodeLayout::kPair);
    const int xcol = LAYOUT == kQuad ? kb * 128 + t * 8 : LAYOUT == kPair ? kb * 128 + t * 16 : col;
    auto xoff = [](int i) { return LAYOUT == kQuad ? 4 * i : LAYOUT == kPair ? 8 * (i >> 1) + (i & 1) : i; };
    uint32_t xa[16], xb[16];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(x0 + xcol) + xoff(i));
      xa[4 * i] = v.x, xa[4 * i + 1] = v.y, xa[4 * i + 2] = v.z, xa[4 * i + 3] = v.w;
      if constexpr (MT == 2) {
        const uint4 u = __ldg(reinterpret_cast<const uint4*>(x1 + xcol) + xoff(i));
        xb[4 * i] = u.x, xb[4 * i + 1] = u.y, xb[4 * i + 2] = u.z, xb[4 * i + 3] = u.w;
      }
    }
    const RowGroup rA = row_group<K, ASYM, G16, DEC, PRE, BITS>(a, use_g(gA0), nA, okA, col, tab_addr);
    const RowGroup rB = row_group<K, ASYM, G16, DEC, PRE, BITS>(a, use_g(gB0), nB, okB, col, tab_addr);
    uint32_t wa[4], wb[4];  // 8 codes each (columns 8w .. 8w + 7 of the lane's 32)
    if constexpr (BITS == 4) {
      wa[0] = qA.x, wa[1] = qA.y, wa[2] = qA.z, wa[3] = qA.w;
      wb[0] = qB.x, wb[1] = qB.y, wb[2] = qB.z, wb[3] = qB.w;
    } else if (DEC == Decode::kNib3 || (DEC == Decode::kLut && col_order)) {  // nibbles: words 0..2, 3 gathered
      gemv3::nib3_words(qA.x, qA.y, qA.z, wa);
      gemv3::nib3_words(qB.x, qB.y, qB.z, wb);
    } else {  // code j of a word at bit 3j + P
      constexpr int P = DEC == Decode::kFp3 ? 1 : 0;
      gemv3::words<P>(qA.x, qA.y, qA.z, wa);
      gemv3::words<P>(qB.x, qB.y, qB.z, wb);
    }
    // POST: the block's sums in fresh accumulators, scaled into acc0 / acc1 after the block.
    float blk0[4] = {0.f, 0.f, 0.f, 0.f}, blk1[4] = {0.f, 0.f, 0.f, 0.f};
    float(&c1)[4] = kPost ? blk1 : acc1;
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int hlf = G16 && w >= 2 ? 1 : 0;  // columns 16..31: the second group
      const Word pa = prep_word<DEC, SPECIAL>(wa[w], rA.tb[hlf], ZB ? rA.t0 : nib_t0);
      const Word pb = prep_word<DEC, SPECIAL>(wb[w], rB.tb[hlf], ZB ? rB.t0 : nib_t0);
      // The word's codes are in pair order (DeviceTensor::pair_order): pair i (fields i, i + 4)
      // is columns 8w + 2i, 8w + 2i + 1, the x half2 word 4w + i as loaded; razer_xor and nib3:
      // in column order, pair i (fields 2i, 2i + 1) the same columns.
      const uint32_t* xp = xa + 4 * w;
      const uint32_t* xq = xb + 4 * w;
      float(&c0)[4] = kPost ? blk0 : kChains == 2 && (w & 1) ? acc0b : acc0;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const uint32_t a0 = decode_pair<K, DEC, ASYM, SPECIAL, PRE, BITS>(pa, 2 * h, rA, hlf, col_order);
        const uint32_t a1 = decode_pair<K, DEC, ASYM, SPECIAL, PRE, BITS>(pb, 2 * h, rB, hlf, col_order);
        const uint32_t a2 = decode_pair<K, DEC, ASYM, SPECIAL, PRE, BITS>(pa, 2 * h + 1, rA, hlf, col_order);
        const uint32_t a3 = decode_pair<K, DEC, ASYM, SPECIAL, PRE, BITS>(pb, 2 * h + 1, rB, hlf, col_order);
        mma16816(c0, a0, a1, a2, a3, xp[2 * h], xp[2 * h + 1]);
        if constexpr (MT == 2) mma16816(c1, a0, a1, a2, a3, xq[2 * h], xq[2 * h + 1]);
      }
    }
    if constexpr (kPost) {  // c0, c1: weight row g (rA), c2, c3: row g + 8 (rB)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float sc = i < 2 ? rA.post : rB.post;
        acc0[i] = fmaf(sc, blk0[i], acc0[i]);
        if constexpr (MT == 2) acc1[i] = fmaf(sc, blk1[i], acc1[i]);
      }
    }
  };
  // I8X (kE2M1XorI8, M = 1): one 128-column block kb of the warp's rows by int8 tensor-core
  // products, the weights by the two lookups' int8 tables (gemv_e2m1.cuh: w = -2 v, so the block's
  // sums are multiplied by -scale / 2). x (xv: lane L's columns 4 L .. 4 L + 3, loaded a block ahead
  // by the loop): the block's largest |x| (biased fp16 exponent E >= 1) fixes q = round(x 2^(28 - E)),
  // |q| <= 2^14, which splits exactly into q = 256 hi + lo with hi in [-64, 64] and lo in [-128, 127]
  // (hi = (q + 128) >> 8: byte 1 of q + 128; lo: byte 0 of q + 128, minus 128), both int8. The B
  // operand's column g of lane (g, t) is hi for even g and lo for odd g (columns 2..7 repeat them,
  // never read), so one m16n8k32 per code word of the lane's row pair gives the hi sums in c0 / c2 and
  // the lo sums in c1 / c3 of lane t = 0: sum = 256 c0 + c1, exact in int32. So each x is used as
  // q 2^-(28 - E): exact where |x| >= 2^(E - 18) (a binade at most 3 below the largest one's), else off
  // by at most 2^(E - 29) <= 2^-14 max |x| of the block. x with an inf or NaN (E = 31) gives NaN.
  // Only x row 0's sums (acc0[0], acc0[2] of lanes t = 0) are stored.
  auto block_x8 = [&](const uint2& xv, const uint4& qA, const uint4& qB, const Staged& gA0, const Staged& gB0,
                      int kb, int buf) {
    if constexpr (I8X) {
      // x 2^(28 - E) + 1.5 2^23 + 128: q + 128 in the low 16 bits (rounded to nearest).
      const XFixed xf = x_fixed<28>(xv, 12583040.f);
      const int E = xf.E;
      const uint32_t p01 = bits::prmt(xf.f[0], xf.f[1], 0x5410u), p23 = bits::prmt(xf.f[2], xf.f[3], 0x5410u);
      uint32_t* xs = xs8[warp][buf];
      xs[4 * (lane >> 1) + (lane & 1)] = bits::prmt(p01, p23, 0x7531u);                      // hi
      xs[4 * (lane >> 1) + 2 + (lane & 1)] = bits::prmt(p01, p23, 0x6420u) ^ 0x80808080u;  // lo
      __syncwarp();
      const int col = kb * 128 + t * 32;
      const RowGroup rA = row_group<K, ASYM, G16, DEC, PRE, BITS>(a, use_g(gA0), nA, okA, col, tab_addr);
      const RowGroup rB = row_group<K, ASYM, G16, DEC, PRE, BITS>(a, use_g(gB0), nB, okB, col, tab_addr);
      const uint32_t wa[4] = {qA.x, qA.y, qA.z, qA.w}, wb[4] = {qB.x, qB.y, qB.z, qB.w};
      int c[4] = {0, 0, 0, 0};
      constexpr int kQuad = static_cast<int>(CodeLayout::kQuad), kPair = static_cast<int>(CodeLayout::kPair);
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        // Word w's chunk of 8 columns in the block (the layouts of gemv_layout.hpp) and the lane's part.
        const int ch = LAYOUT == kQuad ? 4 * w + t : LAYOUT == kPair ? 8 * (w >> 1) + 2 * t + (w & 1) : 4 * t + w;
        const uint2 xb = *reinterpret_cast<const uint2*>(xs + 4 * ch + 2 * (g & 1));
        const gemv4::E2m1Bytes ba = gemv4::xor_bytes<true>(wa[w], rA.tb[0]);
        const gemv4::E2m1Bytes bb = gemv4::xor_bytes<true>(wb[w], rB.tb[0]);
        mma16832<true>(c, ba.e, bb.e, ba.o, bb.o, xb.x, xb.y);
      }
      // -2^-(29 - E): the weights' -2 and x's 2^(28 - E).
      const float down = E == 31 ? __int_as_float(0x7fc00000) : __uint_as_float(0x80000000u | (static_cast<uint32_t>(98 + E) << 23));
      acc0[0] = fmaf(rA.post * down, static_cast<float>(c[0] * 256 + c[1]), acc0[0]);
      acc0[2] = fmaf(rB.post * down, static_cast<float>(c[2] * 256 + c[3]), acc0[2]);
    }
  };
  // I8 (kNib3I8, M = 1): one 128-column block kb of the warp's rows by int8 tensor-core products.
  // x: lane L holds columns 4 L .. 4 L + 3 of the block; the block's largest |x| (the biased fp16
  // exponent E of it, E >= 1) fixes q = round(x 2^(29 - E)), |q| < 2^15, which splits exactly into
  // q = 256 hi + lo (hi int8, lo uint8). Lane L stores its four (hi, lo) bytes at xsplit[.][L]; a lane
  // of code chunk j then reads the 8 columns of its chunk as {hi, lo, hi, lo} of columns 0..3 and 4..7
  // (the k-slots 4 t .. 4 t + 3 and 16 + 4 t .. of the m16n8k32 B operand; every g the same x row).
  // Weights: nib3_lookup on the int8 tables gives the A operand directly (chunk j's lo bytes are
  // k-slots 4 t .., its hi bytes 16 + 4 t ..). Per chunk one s8 x s8 product on hi and one s8 x u8 on
  // lo; the block's exact int32 sums 256 hi + lo, converted once, times scale 2^-(29 - E) 2^-i8_shift.
  // So each x is used as q 2^-(29 - E): exact where |x| >= 2^(E - 19) (a binade at most 4 below the
  // largest one's: its fp16 ulp 2^(E' - 25) is a multiple of 2^(E - 29)), else off by at most
  // 2^(E - 30) <= 2^-15 max |x| of the block.
  // ZB (int3 asym): the tables hold the codes c (0..7); the zero point z enters as sum (c - z) q =
  // sum c q - z sum q, sum q by one warp reduction per block (all 32 rows), z per row and block.
  // x with an inf or NaN (E = 31) gives NaN sums. Only the sums of x row 0 (acc0[0], acc0[2]) are kept.
  // Row pairs: pair 0 is rows g, g + 8 (q[0], gr[0]; into acc0[0], acc0[2]); kWarpTiles adds pair 1,
  // rows g + 16, g + 24 (into acc1[0], acc1[2]), with the same x split, so each split serves 32 rows.
  // xv: the lane's four x of the block (loaded a block ahead by the loop: x_lane; block_x8's too).
  auto x_lane = [&](int kbc) { return __ldg(reinterpret_cast<const uint2*>(a.x + static_cast<int64_t>(kbc) * 128) + lane); };
  auto block_i8 = [&](const uint2& xv, const uint4 (&q)[kPairs][2], const Group (&gr)[kPairs][2], int buf) {
    if constexpr (I8) {
      // x 2^(29 - E) + 1.5 2^23: q in the low 16 bits, two's complement (|q| < 2^15), rounded to nearest.
      const XFixed xf = x_fixed<29>(xv, 12582912.f);
      const int E = xf.E;
      const uint32_t* f = xf.f;
      const uint32_t p01 = bits::prmt(f[0], f[1], 0x5410u), p23 = bits::prmt(f[2], f[3], 0x5410u);
      // ZB: the block's sum of q (f's bits are 0x4b400000 + q), for the zero points' term.
      int qsum = 0;
      if constexpr (ZB)
        qsum = __reduce_add_sync(0xffffffffu, static_cast<int>(f[0] + f[1] + f[2] + f[3] - 4u * 0x4b400000u));
      xsplit[warp][buf][lane] = make_uint2(bits::prmt(p01, p23, 0x7531u), bits::prmt(p01, p23, 0x6420u));
      __syncwarp();
      uint32_t w[kPairs][2][4], tb[kPairs][2];
#pragma unroll
      for (int p = 0; p < kPairs; ++p)
#pragma unroll
        for (int r = 0; r < 2; ++r) gemv3::nib3_words(q[p][r].x, q[p][r].y, q[p][r].z, w[p][r]);
#pragma unroll
      for (int p = 0; p < kPairs; ++p)
#pragma unroll
        for (int r = 0; r < 2; ++r) tb[p][r] = a.special[gr[p][r].table >> 5];  // (ZB: table 0)
      int hi[kPairs][4] = {}, lo[kPairs][4] = {};
      constexpr int kQuad = static_cast<int>(CodeLayout::kQuad);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        // Chunk j's first column in the block (kQuad: 32 j + 8 t; kPair: 64 (j >> 1) + 16 t + 8 (j & 1)).
        const int c = LAYOUT == kQuad ? 32 * j + 8 * t : 64 * (j >> 1) + 16 * t + 8 * (j & 1);
        const uint4 xb = *reinterpret_cast<const uint4*>(&xsplit[warp][buf][c >> 2]);
#pragma unroll
        for (int p = 0; p < kPairs; ++p) {
          const gemv3::Nib3Bytes b0 = gemv3::nib3_lookup(w[p][0][j], nib_t0, tb[p][0]);
          const gemv3::Nib3Bytes b1 = gemv3::nib3_lookup(w[p][1][j], nib_t0, tb[p][1]);
          mma16832<true>(hi[p], b0.lo, b1.lo, b0.hi, b1.hi, xb.x, xb.z);
          mma16832<false>(lo[p], b0.lo, b1.lo, b0.hi, b1.hi, xb.y, xb.w);
        }
      }
      const float down = E == 31 ? __int_as_float(0x7fc00000)
                                 : __uint_as_float(static_cast<uint32_t>(98 + E - a.i8_shift) << 23);  // 2^-(29 - E + shift)
      auto scale_of = [&](const Group& g_) { return __half2float(__ushort_as_half(static_cast<unsigned short>(g_.scale))) * down; };
      // ZB: the codes c went in as they are; sum (c - z) q = sum c q - z sum q (exact in int32).
      auto sum_of = [&](int s, const Group& g_) { return ZB ? s - static_cast<int>(g_.scale >> 16) * qsum : s; };
#pragma unroll
      for (int p = 0; p < kPairs; ++p) {
        float(&acc)[4] = p == 0 ? acc0 : acc1;
        acc[0] = fmaf(scale_of(gr[p][0]), __int2float_rn(sum_of(hi[p][0] * 256 + lo[p][0], gr[p][0])), acc[0]);
        acc[2] = fmaf(scale_of(gr[p][1]), __int2float_rn(sum_of(hi[p][2] * 256 + lo[p][2], gr[p][1])), acc[2]);
      }
    }
  };
  if constexpr (BULK) {
    // full[j] (bulk_bar[j]): one arrival (the producer's expect_tx) and the stage's bytes;
    // empty[j] (bulk_bar[kD + j]): every consumer lane once it has read its words of the stage.
    const uint32_t bar0 = static_cast<uint32_t>(__cvta_generic_to_shared(&bulk_bar[0]));
    const uint32_t ebar0 = bar0 + 8u * kD;
    if (tid == 0) {
#pragma unroll
      for (int j = 0; j < kD; ++j) bulk::init(bar0 + 8u * j, 1u), bulk::init(ebar0 + 8u * j, kWarps * 32u);
      bulk::fence_init();
    }
    __syncthreads();  // the barriers are initialised
    if (producer) {
      if (lane == 0) {  // lane 0 issues every copy of the block; the other lanes idle
        const uint32_t buf0 = static_cast<uint32_t>(__cvta_generic_to_shared(&bulk_buf[0][0]));
        const uint64_t policy = bulk::evict_first_policy();
        // Step i (blocks kb_begin + kw i ..) goes to stage i % kD; from the second round on, it waits
        // until every consumer lane has read the stage's previous use (use u: empty phase u - 1).
        // The stage: the tiles' codes (tile j's kw blocks at word j kw kBlkWords), then their scales
        // (tile j's at fp16 j kw 16), then (ZB) their zero point bytes (tile j's at byte j kw 16).
        // A tile past N reads row 0's (never stored).
        int slot = 0;
        uint32_t phase = 0;
        for (int c0 = kb_begin, i = 0; c0 < kb_end; c0 += kw, ++i) {
          if (i >= kD) bulk::wait(ebar0 + 8u * slot, phase);
          const int nb = min(kw, kb_end - c0);
          const uint32_t bar = bar0 + 8u * slot, dst = buf0 + 4u * kStageWords * slot;
          bulk::expect_tx(bar, TILES * nb * (4u * kBlkWords + (ZB ? 3u : 2u) * kRowsPerBlock));
#pragma unroll
          for (int j = 0; j < TILES; ++j) {
            const int r = n0 + j * kRowsPerBlock;
            const int64_t row = r < a.N ? r : 0;
            bulk::copy(dst + 4u * j * kw * kBlkWords, a.codes + row * a.code_words + static_cast<int64_t>(c0) * kBlkWords,
                       nb * 4u * kBlkWords, bar, policy);
            bulk::copy(dst + 4u * kStageBlocks * kBlkWords + 2u * j * kw * kRowsPerBlock,
                       a.scales16 + row * a.groups_per_row + c0 * kRowsPerBlock, nb * 2u * kRowsPerBlock, bar, policy);
            if constexpr (ZB)  // (after every tile's scales)
              bulk::copy(dst + 4u * kStageBlocks * kBlkWords + 2u * kStageBlocks * kRowsPerBlock + j * kw * kRowsPerBlock,
                         a.zero_bytes + row * a.groups_per_row + c0 * kRowsPerBlock, nb * kRowsPerBlock, bar, policy);
          }
          if (++slot == kD) {
            slot = 0;
            if (i >= kD) phase ^= 1u;
          }
        }
      }
      __syncwarp();
    } else {
      pdl::wait();
      int slot = 0;
      uint32_t phase = 0;
      // The lane's words in the warp's block of a stage (tiled rows, gemv_layout.hpp): word j of
      // row r at plane j, 4 r + t (rows g, g + 8: 4 g + t and 32 more), as load_q reads them.
      // (kWarpTiles: the second tile's block wk kw blocks on, its scales kw 16 on.)
      const uint32_t lane_word = wk * kBlkWords + 4u * g + t;
      const uint16_t* scale0 = reinterpret_cast<const uint16_t*>(&bulk_buf[0][kStageBlocks * kBlkWords]) + wk * kRowsPerBlock;
      const uint8_t* zero0 =  // (ZB)
          reinterpret_cast<const uint8_t*>(&bulk_buf[0][kStageBlocks * (kBlkWords + kRowsPerBlock / 2)]) + wk * kRowsPerBlock;
      auto lane_q = [&](const uint32_t* p) { return make_uint4(p[0], p[kTilePlaneWords], p[2 * kTilePlaneWords], 0u); };
      uint2 x_next{};  // I8: the next block's x (clamped to the last block), loaded a block ahead
      if constexpr (I8) x_next = x_lane(kb_clamp(kb_begin + wk));
      for (int c0 = kb_begin, it = 0; c0 + wk < kb_end; c0 += kw, ++it) {
        const int kb = c0 + wk;
        bulk::wait(bar0 + 8u * slot, phase);
        const uint32_t* ps = &bulk_buf[0][0] + kStageWords * slot + lane_word;
        const uint16_t* sc = scale0 + 2 * kStageWords * slot;
        const uint8_t* zs = zero0 + 4 * kStageWords * slot;
        // Row pair p (rows g + 16 p, g + 16 p + 8: tile p's under kWarpTiles): codes, scales, zero points.
        uint4 q[kPairs][2];
        uint32_t se[kPairs][2];  // the scale entry (ZB: the zero point in bits 16..23)
#pragma unroll
        for (int p = 0; p < kPairs; ++p)
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            q[p][r] = lane_q(ps + p * kw * kBlkWords + 32 * r);
            const int e = p * kw * kRowsPerBlock + g + 8 * r;
            se[p][r] = sc[e] | (ZB ? static_cast<uint32_t>(zs[e]) << 16 : 0u);
          }
        bulk::arrive(ebar0 + 8u * slot);  // the producer may refill the stage
        Group gr[kPairs][2];
#pragma unroll
        for (int p = 0; p < kPairs; ++p)
#pragma unroll
          for (int r = 0; r < 2; ++r) gr[p][r] = decode_group<K, false, false>(GroupRaw{se[p][r], 0u}, 0u, a.razer_scale_mask);
        if (++slot == kD) slot = 0, phase ^= 1u;
        if constexpr (I8) {
          const uint2 xv = x_next;
          x_next = x_lane(kb_clamp(kb + kw));
          block_i8(xv, q, gr, it & 1);
        } else {
          block(kb, q[0][0], q[0][1], gr[0][0], gr[0][1]);
        }
      }
    }
  } else {
    uint4 qa[kStages], qb[kStages];
    Staged ga0[kStages], gb0[kStages];
#pragma unroll
    for (int s = 0; s < kStages; ++s) {
      const int kbc = kb_clamp(kb_begin + wk + s * kw);
      const uint32_t off = q_off(kbc);
      qa[s] = load_q(wA, off), qb[s] = load_q(wB, off);
      ga0[s] = load_g(grA, kbc), gb0[s] = load_g(grB, kbc);
    }
    if constexpr (DEC == Decode::kPairLut) {  // the pair table (lut: table 0), while the loads fly
      // Thread tid writes 16-byte pieces j = tid + 256 i (4 copies of entry e = j / 8): e's low nibble
      // is the thread's, (tid / 8) % 16; its high nibble tid / 128 + 2 i is the warp's (one load).
      static_assert(kWarps * 32 == 256, "the pair table's build assumes 256 threads");
      const uint32_t lo = lut[(tid >> 3) & 15];
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const uint32_t v = lo | static_cast<uint32_t>(lut[(tid >> 7) + 2 * i]) << 16;
        reinterpret_cast<uint4*>(ptab)[tid + 256 * i] = make_uint4(v, v, v, v);
      }
      __syncthreads();
    }
    // Programmatic dependent launch (pdl_cuda.hpp): the loads above are weights; x (written by the
    // kernel before, possibly still running) and y (possibly still read by it) wait until it is done.
    if constexpr (NORM == 1) {  // the norm's weights (never written by a kernel): before the wait
      if (a.norm_vec && warp == 0 && lane >= 16 && lane < 18)
        cp_async16(norm_ws + 8 * (lane - 16), a.norm_w + n0 + 8 * (lane - 16));
    }
    pdl::wait();
    if constexpr (NORM == 1) {  // h rows n0 .. n0 + 15 of x row m = lane / 2
      if (a.norm_vec && warp == 0 && lane < 2 * a.M)
        cp_async16(norm_hs + 8 * lane, a.norm_h + static_cast<int64_t>(lane >> 1) * a.N + n0 + 8 * (lane & 1));
    }
    if constexpr (NORM == 2) {  // warp m copies x row m's sums (completed by it after the loop)
      if (warp < a.M) {
        const int chunks = a.norm_tiles >> 2, at = warp * a.norm_tiles;
        for (int c = lane; c < chunks; c += 32) cp_async16(norm_sl + at + 4 * c, a.norm_slots_in + at + 4 * c);
      }
    }
    // I8X: the lane's x of the next block (clamped to the last), loaded a block ahead (x_lane).
    uint2 x8_next{};
    if constexpr (I8X) x8_next = x_lane(kb_clamp(kb_begin + wk));
    int x8_buf = 0;
    for (int kb0 = kb_begin + wk; kb0 < kb_end; kb0 += kStages * kw) {
#pragma unroll
      for (int s = 0; s < kStages; ++s) {
        const int kb = kb0 + s * kw;
        if (kb >= kb_end) break;
        const uint4 qA = qa[s], qB = qb[s];
        const Staged gA0 = ga0[s], gB0 = gb0[s];
        const int kn = kb_clamp(kb + kStages * kw);
        const uint32_t off = q_off(kn);
        qa[s] = load_q(wA, off), qb[s] = load_q(wB, off);
        ga0[s] = load_g(grA, kn), gb0[s] = load_g(grB, kn);
        if constexpr (I8X) {
          const uint2 xv = x8_next;
          x8_next = x_lane(kn);
          block_x8(xv, qA, qB, gA0, gB0, kb, x8_buf);
          x8_buf ^= 1;
        } else {
          block(kb, qA, qB, gA0, gB0);
        }
      }
    }
  }
  // The next kernel may start its blocks once every block here is past its main loop. Earlier
  // (before or right after the wait above) was slower for razer4 at 4096 x 11008 (25.8 vs 21.3 us
  // serial: the next product's blocks, resident and waiting, crowd the running ones) and within
  // 1 % of this on the large shapes (bench/gemv.md, 2026-11-24 third session).
  // (The CTA's first call counts: the bulk producer, done early, leaves it to the consumers.)
  if (!producer) pdl::launch_dependents();
  if constexpr (kChains == 2) {
#pragma unroll
    for (int i = 0; i < 4; ++i) acc0[i] += acc0b[i];
  }
  // NORM == 2: warp m, as soon as its own loop is done, sums x row m's slots (which it copied) in a
  // fixed order, four independent chains per lane; the reduction's barrier below publishes the
  // factor. (Until the thirty-sixth session every thread copied slots, and a block barrier here
  // waited for every warp's loop before warp m's sum, which then delayed the reduction's barrier.)
  if constexpr (NORM == 2) {
    if (warp < a.M) {
      cp_async_wait_all();
      __syncwarp();
      const float* sl = norm_sl + warp * a.norm_tiles;
      const int tiles = (a.norm_n + kRowsPerBlock - 1) / kRowsPerBlock;
      float s4[4] = {0.f, 0.f, 0.f, 0.f};
      int j = lane;
      for (; j + 96 < tiles; j += 128) {
#pragma unroll
        for (int u = 0; u < 4; ++u) s4[u] += sl[j + 32 * u];
      }
      for (; j < tiles; j += 32) s4[0] += sl[j];
      float ss = (s4[0] + s4[1]) + (s4[2] + s4[3]);
#pragma unroll
      for (int o = 16; o; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
      if (lane == 0) norm_rs[warp] = rsqrtf(ss / static_cast<float>(a.norm_n) + a.norm_eps) * a.norm_scale;
    }
  }
  // Sum the warps' accumulators; warp 0 writes. c0, c1: weight row g, x rows 2t, 2t+1;
  // c2, c3: weight row g + 8. acc1: x rows 8 + 2t, 8 + 2t + 1. kWarpTiles (M = 1): rows g + 16,
  // g + 24 of x row 0 go into the x row 1 places (c1, c3), never stored otherwise.
  if constexpr (kWarpTiles) acc0[1] = acc1[0], acc0[3] = acc1[2];
  if constexpr (kRedInTable) __syncthreads();  // every warp is done with the table
  if (!producer) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      red[warp][i][lane] = acc0[i];
      if constexpr (MT == 2) red[warp][4 + i][lane] = acc1[i];
    }
  }
  __syncthreads();
  float sum[4 * MT];  // the first warp of each tile sums its tile's warps
  if (wk == 0) {
#pragma unroll
    for (int i = 0; i < 4 * MT; ++i) {
      sum[i] = 0.f;
#pragma unroll
      for (int w = 0; w < kw; ++w) sum[i] += red[warp + w][i][lane];
    }
  }
  if (SPLIT && half >= 0) {  // split tail: the second half's sums go to the first's block,
    namespace cg = cooperative_groups;  // which adds them after its own (a fixed order)
    cg::cluster_group cluster = cg::this_cluster();
    cluster_wait();  // (the arrival at the top: both blocks run)
    if (half == 1 && wk == 0) {
      float* dst = cluster.map_shared_rank(&xfer[0][0], 0);
#pragma unroll
      for (int i = 0; i < 4 * MT; ++i) dst[i * 32 + lane] = sum[i];
    }
    cluster.sync();  // every thread of both blocks; the writes above are visible after it
    if (half == 1) return;
    if (wk == 0) {
#pragma unroll
      for (int i = 0; i < 4 * MT; ++i) sum[i] += xfer[i][lane];
    }
  }
  if (wk != 0) return;
  if constexpr (PAIR) {  // act[m][nA] from gate (sum i, i & 2 == 0) and up (sum i + 2): silu_mul_kernel's arithmetic
    if (!okA) return;
#pragma unroll
    for (int i = 0; i < 4 * MT; ++i) {
      if (i & 2) continue;
      const int m = 2 * t + (i & 1) + (i >= 4 ? 8 : 0);
      if (m >= a.M) continue;
      const float r = NORM == 2 ? norm_rs[m] : 1.f;
      const float gt = __half2float(__float2half_rn(sum[i] * a.outer * r));
      const float up = __half2float(__float2half_rn(sum[i + 2] * a.outer * r));
      const float act = __half2float(__float2half_rn(silu_f32(gt)));
      a.y[static_cast<int64_t>(m) * a.pair_rows + nA] = __half_as_ushort(__float2half_rn(act * up));
    }
  } else if constexpr (NORM == 1) {  // add_rms_norm's arithmetic up to the sums of squares
    // h and the norm's weights: from the copies (norm_vec), else loaded here, all before any store.
    uint16_t hb[4], wb[2];
    if (a.norm_vec) {
      cp_async_wait_all();
      __syncwarp();
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int m = 2 * t + (i & 1);
        hb[i] = norm_hs[(m < a.M ? m : 0) * kRowsPerBlock + g + ((i & 2) ? 8 : 0)];
      }
      wb[0] = norm_ws[g], wb[1] = norm_ws[g + 8];
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int n = n0 + g + ((i & 2) ? 8 : 0), m = 2 * t + (i & 1);
        hb[i] = m < a.M && n < a.N ? a.norm_h[static_cast<int64_t>(m) * a.N + n] : 0;
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) wb[r] = n0 + g + 8 * r < a.N ? a.norm_w[n0 + g + 8 * r] : 0;
    }
    float ss[2] = {0.f, 0.f};  // x rows 2 t, 2 t + 1
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int n = n0 + g + ((i & 2) ? 8 : 0), m = 2 * t + (i & 1);
      if (m >= a.M || n >= a.N) continue;
      const int64_t at = static_cast<int64_t>(m) * a.N + n;
      const float yv = __half2float(__float2half_rn(sum[i] * a.outer));
      const __half hn = __float2half_rn(__half2float(__ushort_as_half(hb[i])) + yv);
      const float hv = __half2float(hn);
      a.norm_h[at] = __half_as_ushort(hn);
      a.norm_x[at] = __half_as_ushort(__float2half_rn(hv * __half2float(__ushort_as_half(wb[i >> 1])) * a.norm_scale));
      ss[i & 1] += hv * hv;
    }
#pragma unroll
    for (int o = 4; o < 32; o <<= 1) {  // over the 8 lanes g of each t: the tile's 16 rows
      ss[0] += __shfl_xor_sync(0xffffffffu, ss[0], o);
      ss[1] += __shfl_xor_sync(0xffffffffu, ss[1], o);
    }
    const int j = n0 / kRowsPerBlock, last = (a.N - 1) / kRowsPerBlock;
    if (g == 0) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int m = 2 * t + r;
        if (m >= a.M) continue;
        float* row = a.norm_slots_out + static_cast<int64_t>(m) * a.norm_tiles;
        row[j] = ss[r];
        if (j == last)
          for (int p = last + 1; p < a.norm_tiles; ++p) row[p] = 0.f;
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < 4 * MT; ++i) {
      const int n = n0 + g + ((i & 2) ? 8 : 0) + (kWarpTiles && (i & 1) ? 16 : 0);
      const int m = kWarpTiles ? 2 * t : 2 * t + (i & 1) + (i >= 4 ? 8 : 0);
      if (m < a.M && n < a.N) {
        float v = sum[i] * a.outer;
        if constexpr (NORM == 2) v *= norm_rs[m];
        a.y[static_cast<int64_t>(m) * a.N + n] = __half_as_ushort(__float2half_rn(v));
      }
    }
  }
}

template <ScaleKind K, bool ASYM, int MT, bool G16, Decode DEC, bool PRE, int kStages, int BITS, int TILES, int LAYOUT,
          bool SPLIT>
__global__ void __launch_bounds__(block_threads(bulk_body(K, G16, DEC, kStages, BITS, TILES, LAYOUT, false)),
                                  min_blocks_per_sm(MT, DEC, ASYM, BITS, kStages, G16, TILES))
    gemv_kernel(const __grid_constant__ GemvArgs a) {
  gemv_body<K, ASYM, MT, G16, DEC, PRE, kStages, BITS, TILES, LAYOUT, SPLIT, false>(a);
}

// The SiLU epilogue's kernels. For M <= 8 they get 64 registers: left alone, ptxas gave the razer4
// ones 48 where their plain twins have 64 (any of the small differences in the row indices or the
// epilogue flipped it, 2026-11-25), and razer4's loop at 48 registers ran the gate/up product
// 1.5 us slower at M = 1 and 2.9 at M = 4 than at 64 (bench_gemv :silu, in one call). __maxnreg__
// (which excludes __launch_bounds__) lets ptxas use registers up to 64. (Any __maxnreg__ on
// gemv_kernel, even 255, changed most plain kernels' counts: hence a kernel of its own.) M = 16:
// the plain kernels' bounds.
template <ScaleKind K, bool ASYM, bool G16, Decode DEC, bool PRE, int BITS, int LAYOUT, bool SPLIT>
__global__ void __maxnreg__(64) gemv_pair_m8_kernel(const __grid_constant__ GemvArgs a) {
  gemv_body<K, ASYM, 1, G16, DEC, PRE, 1, BITS, 1, LAYOUT, SPLIT, true>(a);
}
template <ScaleKind K, bool ASYM, bool G16, Decode DEC, bool PRE, int BITS, int LAYOUT, bool SPLIT>
__global__ void __launch_bounds__(kWarps * 32, min_blocks_per_sm(2, DEC, ASYM, BITS, 1, G16))
    gemv_pair_m16_kernel(const __grid_constant__ GemvArgs a) {
  gemv_body<K, ASYM, 2, G16, DEC, PRE, 1, BITS, 1, LAYOUT, SPLIT, true>(a);
}

// The norm epilogues' kernels (NORM 1, 2: M <= 8, one stage; one tile in the split-tail build,
// which runs unsplit where split_from is INT_MAX; the plain normed product also two tiles, as
// two_tiles_pay picks for the plain product). 64 registers, as the SiLU kernels: left alone, ptxas
// gave razer4's add + norm kernel 48 and its loop ran the 4096x4096 product 2.1 us longer than
// the plain one under ncu (thirty-sixth session).
template <ScaleKind K, bool ASYM, bool G16, Decode DEC, bool PRE, int BITS, int LAYOUT, int NORM, int TILES>
__global__ void __maxnreg__(64) gemv_norm_kernel(const __grid_constant__ GemvArgs a) {
  gemv_body<K, ASYM, 1, G16, DEC, PRE, 1, BITS, TILES, LAYOUT, TILES == 1, false, NORM>(a);
}
template <ScaleKind K, bool ASYM, bool G16, Decode DEC, bool PRE, int BITS, int LAYOUT>
__global__ void __maxnreg__(64) gemv_norm_pair_kernel(const __grid_constant__ GemvArgs a) {
  gemv_body<K, ASYM, 1, G16, DEC, PRE, 1, BITS, 1, LAYOUT, true, true, 2>(a);
}

// The kernel of a launch: plain or PAIR, M <= 8 (MT = 1) or M <= 16 (MT = 2).
template <ScaleKind K, bool ASYM, int MT, bool G16, Decode DEC, bool PRE, int S, int BITS, int TILES, int LAYOUT, bool SPLIT,
          bool PAIR>
constexpr auto gemv_kernel_for() {
  if constexpr (!PAIR) return gemv_kernel<K, ASYM, MT, G16, DEC, PRE, S, BITS, TILES, LAYOUT, SPLIT>;
  else if constexpr (MT == 1) return gemv_pair_m8_kernel<K, ASYM, G16, DEC, PRE, BITS, LAYOUT, SPLIT>;
  else return gemv_pair_m16_kernel<K, ASYM, G16, DEC, PRE, BITS, LAYOUT, SPLIT>;
}

// Permuted codes come with group % 128 == 0, which only the fp16-scale kinds allow (MX: 32, NV: 16).
constexpr bool can_permute(ScaleKind k) { return k == ScaleKind::kFp16 || k == ScaleKind::kFp16Razer; }

int g_split = 0;  // set_gemv_split: 0 split_plan, 1 never, 2 every tile

// A grid of at most two 16-row tiles per SM (N <= 4224 on the H100): split_plan splits it whole.
bool underfilled(int64_t rows) { return few_rows_per_sm(rows, detail::current_device_sm_count()); }

// The split tail: the first block index whose tile is split in two halves of K (INT_MAX: none).
// With one tile per block, a grid of more than one wave of resident blocks whose last, partial
// wave holds at most half a wave of tiles leaves most SMs idle while that wave runs (28672x8192:
// 1792 tiles on 528 slots at M <= 8 for int4 are 3 waves + 208 tiles). Splitting those tiles
// (rounded to an even first block: the halves are cluster pairs) runs the tail as 2 x 208 blocks
// of half the length. Rows of fewer than 16 blocks of K are not split. Measured at 28672x8192
// (bench/gemv.md, 2026-11-24 fourth session, split against not in one call): int3 1.05-1.07x at
// every M, fp4 1.06x and int4 1.01x at M = 8, but int4 0.97x at M = 1..4 (the block scheduler
// already back-fills most of the tail there; the halves pay their start-up latency twice). Hence
// 4-bit codes split only for M > 4. (razer4 / razer3 keep 3 blocks per SM: 208 tiles are more
// than half of 396 slots, so they never split at that shape.)
// Under-filled grids are split whole: at most two tiles per SM (N <= 4224 on the H100) with
// long rows (K >= 8192) and M <= 8 leave each SM 8-16 warps, too few loads in flight; splitting
// every tile doubles them. 4096x11008 in two calls (bench/gemv.md, sixth session): 1.04-1.44x
// for every format at M = 1..8 except int4 at M = 1, 2 (1.00-1.31x); at M = 16 mostly slower
// (0.85-0.99x; int4-asym and int3 faster), and at K = 4096 mixed by format (0.78-1.49x at
// 4096x4096), hence the bounds.
// One partial wave of razer4 tiles (more than half the slots) with long rows is split whole too
// (whole_wave; razer4 on the byte patch only: the two-table decoder, eleventh session, ran 0.94-0.95x
// split there at M = 1 / 8): 8192x28672 (512 tiles on 528 slots) 1.03-1.04x at M = 1..4, 1.11x at M = 8, 1.03x
// at M = 16 (bench/gemv.md, tenth session). The same split made the other kinds 0.85-0.99x there
// at most M (their loops wait on DRAM, razer4's on issue; the 3-bit ones lost most), except
// nvfp4 (1.01-1.03x at M = 4 / 8, 1.29x at M = 16: not understood, one run, left alone).
// (Counted in blocks of tiles_per_block tiles: the int8 products' two-tile blocks split like tiles.)
int split_plan(const GemvArgs& a, int per_sm, int bits, bool whole_wave, int tiles_per_block) {
  const int64_t tiles = (a.N + kRowsPerBlock * tiles_per_block - 1) / (kRowsPerBlock * tiles_per_block);
  if (g_split == 1) return INT_MAX;
  if (g_split == 2) return 0;
  if (a.M <= 8 && (a.K >> 7) >= 64 && underfilled(a.N)) return 0;
  const int64_t slots = static_cast<int64_t>(per_sm) * detail::current_device_sm_count();
  if (whole_wave && (a.K >> 7) >= 64 && tiles <= slots && 2 * tiles > slots) return 0;
  if ((a.K >> 7) < 16 || (bits == 4 && a.M <= 4)) return INT_MAX;
  if (slots <= 0 || tiles <= slots || tiles % slots == 0) return INT_MAX;
  int64_t from = tiles - tiles % slots;
  from -= from & 1;
  return 2 * (tiles - from) <= slots ? static_cast<int>(from) : INT_MAX;
}

template <class Kernel>
int resident_blocks_per_sm(Kernel k, int threads = kWarps * 32) {
  int n = 0;
  RAZERQ_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, k, threads, 0));
  return n;
}

// Wave efficiency of `blocks` blocks at `per_sm` resident blocks per SM: the share of the slots
// of the waves they take that hold a block.
double wave_efficiency(int64_t blocks, int per_sm, int sms) {
  const int64_t slots = static_cast<int64_t>(per_sm) * sms;
  return static_cast<double>(blocks) / static_cast<double>((blocks + slots - 1) / slots * slots);
}

// Whether `blocks` blocks fill their waves by 3 % more at `more` resident blocks per SM than at
// `fewer`: the rule by which a launch takes the larger count (cap_smem, pair_table_carveout).
bool fills_waves_better(int64_t blocks, int more, int fewer) {
  const int sms = detail::current_device_sm_count();
  return wave_efficiency(blocks, more, sms) >= wave_efficiency(blocks, fewer, sms) + 0.03;
}

// A kernel's resident blocks per SM (`natural`) and the dynamic shared memory that caps it at
// kMinBlocksPerSm where its registers would let more in (`smem`, 0: none possible; the kernels use
// none, it only takes room). Asked once per kernel, on the first device (launch_m's statics).
struct OccupancyCap {
  int natural = 0;
  size_t smem = 0;
  int wide = 0;         // pair table: the blocks its registers allow (> natural), in wide_pct's configuration
  int wide_pct = -1;    // pair table: the carveout for them (-1: no such configuration)
};
// The carveout percentage that gets the smallest sm_90 shared-memory configuration of 64 KB or
// more (64, 100, 132, 164, 196, 228 KB) holding `bytes`. Which configuration a percentage gets
// was measured, not derived (bench/carveout_probe.cu and a first version of it, on the H100 with
// CUDA 13; bench/gemv.md, thirty-second session): for a 33 KB block the resident blocks changed
// at 29, 44, 58, 72 and 86 %, as the occupancy calculator says (pct x 228 KB rounded up to a
// configuration); for a 32 KB block at 57, 71 and 85 % already (ncu: 164 KB at 57 %, 196 at 71),
// where the calculator counted one block fewer. The launch attribute maps as the kernel attribute.
// So the percentages below sit at least two points from every boundary seen. (Until the
// thirty-second session the pair table asked for ceil(100 x 164 / 228) = 72 % for 164 KB and got
// 196: its M <= 8 kernels ran five blocks, not the four that the thirty-first session's notes say.)
int carveout_pct_for(long long bytes) {
  static constexpr struct {
    long long kb;
    int pct;
  } kConfigs[] = {{64, 20}, {100, 36}, {132, 48}, {164, 60}, {196, 74}, {228, 100}};
  for (const auto& c : kConfigs)
    if (c.kb * 1024 >= bytes) return c.pct;
  return 100;
}

// The pair table's kernels (kPairLut, 34 KB of shared memory each) run in the smallest
// shared-memory configuration that holds kPairLutBlocks of them, or as many as their registers
// allow if fewer (M <= 8: 164 KB, four blocks; M = 16, 80 registers: three, 100 or 132 KB), so
// that L1 (the x loads) keeps the rest. Where the registers allow more blocks (the M <= 8
// kernels: 48 registers, five), a launch at M <= kPairLutWideMaxM takes the configuration for
// those (196 KB) when its grid fills their waves by 3 % more (pair_table_carveout): of the
// benchmarked shapes, 28672x8192 (1792 tiles: 2.72 waves of five against 3.39 of four).
// Measured on the H100 (bench/gemv.md, thirty-second session, nf4, two rounds per call), us:
// - M = 1 / 8 at 28672x8192, 8192x28672, 16384x16384, the whole launch in one configuration:
//   164 KB, four blocks: 47.1 / 44.7 / 50.1 and 53.3 / 50.8 / 59.1;
//   196 KB, five:        45.2 / 48.7 / 57.5 and 54.0 / 59.2 / 59.2;
//   228 KB, five:        46.7 / 50.0 / 54.3 and 57.6 / 61.9 / 69.0.
//   Four blocks fill 1024 and 512 tiles' waves (1.94, 0.97); L1's 92 KB holds x at M = 1 where 60
//   KB does not (K = 28672: 57 KB).
// - 28672x8192, the wide launch against none (four rounds in one call): M = 1 47.2-47.3 against
//   48.4-48.7, M = 2 47.4-47.7 against 49.5-50.0, M = 4 48.7-49.3 against 52.1-52.5; at M = 8
//   (another call, two rounds) 52.8-53.9 against 52.6-54.8: it pays to M = 4.
// - M = 16 at 100 or 132 KB (this rule), at 132 and at 164 KB: within 4 % of each other on every
//   shape, each the fastest somewhere.
constexpr int kPairLutBlocks = 4;
constexpr int kPairLutWideMaxM = 4;

// pair_table: a kPairLut kernel (named by the caller, not told by its shared memory: the int8
// products' two-tile ring kernels also have more than 32 KB and keep the rules below).
template <class Kernel>
OccupancyCap occupancy_cap(Kernel k, int threads, bool pair_table) {
  OccupancyCap cap;
  cudaFuncAttributes attr{};
  RAZERQ_CUDA(cudaFuncGetAttributes(&attr, k));
  if (attr.sharedSizeBytes > 12 * 1024)  // the bulk ring's kernels (31 KB): room for four blocks
    RAZERQ_CUDA(cudaFuncSetAttribute(k, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
  if (pair_table) {  // (the occupancy calculator counts the kernel's carveout)
    const long long per_block = static_cast<long long>(attr.sharedSizeBytes) + 1024;  // (+1 KB: the system's)
    const int regs_bound = resident_blocks_per_sm(k, threads);  // (at 100 %, just set)
    if (regs_bound > kPairLutBlocks) {
      cap.wide_pct = carveout_pct_for(regs_bound * per_block);
      RAZERQ_CUDA(cudaFuncSetAttribute(k, cudaFuncAttributePreferredSharedMemoryCarveout, cap.wide_pct));
      cap.wide = resident_blocks_per_sm(k, threads);
    }
    const int blocks = std::min(regs_bound, kPairLutBlocks);
    RAZERQ_CUDA(cudaFuncSetAttribute(k, cudaFuncAttributePreferredSharedMemoryCarveout, carveout_pct_for(blocks * per_block)));
    cap.natural = resident_blocks_per_sm(k, threads);
    if (cap.wide <= cap.natural) cap.wide = 0, cap.wide_pct = -1;
    return cap;
  }
  cap.natural = resident_blocks_per_sm(k, threads);
  if (cap.natural <= kMinBlocksPerSm) return cap;
  int dev = 0, optin = 0;
  RAZERQ_CUDA(cudaGetDevice(&dev));
  RAZERQ_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  const int max_dyn = optin - static_cast<int>(attr.sharedSizeBytes);
  RAZERQ_CUDA(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, max_dyn));
  // Keep the 64 KB shared-memory configuration the kernels run under without the cap (and so
  // L1's size: the x loads go through it): the padding then only has to keep a fifth block out
  // of 64 KB, not out of the largest configuration, which cost M = 8 5-7 % on the large shapes
  // (L1 shrunk to ~60 KB).
  RAZERQ_CUDA(cudaFuncSetAttribute(k, cudaFuncAttributePreferredSharedMemoryCarveout, 25));
  for (size_t s = 1024; static_cast<int>(s) <= max_dyn; s += 1024) {  // the least that leaves the cap
    int m = 0;
    RAZERQ_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&m, k, threads, s));
    if (m <= kMinBlocksPerSm) {
      cap.smem = m == kMinBlocksPerSm ? s : 0;
      break;
    }
  }
  return cap;
}

// The dynamic shared memory to launch `blocks` blocks with: the cap's where the grid does not fill
// its waves at the natural count by 3 % more than at the cap, else 0. Measured (bench/gemv.md,
// ninth session): when the loop's diet took fp4 / mxfp4 / razer4 (M <= 8) from 54-62 registers
// to 48 (five blocks per SM instead of four), 16384x16384 (1024 tiles: 1.55 waves of 660 slots
// against 1.94 of 528) and 8192x28672 (512 tiles: one partial wave either way, spread less
// evenly at five) ran 0.87-0.97x, while 28672x8192 (1792 tiles: 2.72 against 3.39 waves) ran
// 1.0-1.1x.
size_t cap_smem(const OccupancyCap& cap, int64_t blocks) {
  if (cap.smem == 0) return 0;
  return fills_waves_better(blocks, cap.natural, kMinBlocksPerSm) ? 0 : cap.smem;
}

// A pair-table launch's carveout (pdl::LaunchExtras): the wide configuration's where occupancy_cap
// found one, M <= kPairLutWideMaxM and the grid fills its waves by 3 % more; else -1 (the kernel's).
int pair_table_carveout(const OccupancyCap& cap, int64_t blocks, int M) {
  if (cap.wide_pct < 0 || M > kPairLutWideMaxM) return -1;
  return fills_waves_better(blocks, cap.wide, cap.natural) ? cap.wide_pct : -1;
}

// A norm epilogue kernel's occupancy_cap, in the 64 KB shared-memory configuration of the plain
// kernels (but the pair table's, which occupancy_cap sets). The normed products' 4 KB of slots
// took their static shared memory to 8.2-8.7 KB, and the driver, which sizes the configuration for
// eight such blocks though the registers allow four, to 100 KB (ncu): L1 156 KB instead of 192.
// razer4's normed gate/up product of the 7B shape at M = 1, ncu: 28.7-29.2 us at 100 KB, 28.6-28.7 at
// 64 KB (two calls), the plain one 26.9-27.8. What is left of that gap is not explained
// (thirty-sixth session: not the split-tail build either).
OccupancyCap norm_occupancy_cap(void (*k)(GemvArgs), bool pair_table) {
  const OccupancyCap cap = occupancy_cap(k, kWarps * 32, pair_table);
  if (!pair_table) RAZERQ_CUDA(cudaFuncSetAttribute(k, cudaFuncAttributePreferredSharedMemoryCarveout, carveout_pct_for(64 * 1024)));
  return cap;
}

// The norm epilogues' launch (a.norm_mode 1 or 2; PAIR: 2 only; TILES 2: 2 and not PAIR only): the
// split tail as launch_p's (one tile).
template <ScaleKind K, bool ASYM, bool G16, Decode DEC, bool PRE, int BITS, CodeLayout L, bool PAIR, int TILES>
void launch_norm(const GemvArgs& a0, dim3 grid, dim3 block, cudaStream_t s) {
  constexpr int kL = static_cast<int>(L);
  constexpr bool kPt = DEC == Decode::kPairLut;
  block.x = kWarps * 32;
  GemvArgs a = a0;
  a.split_from = INT_MAX;
  // The kernel and its occupancy (asked once per kernel, on the first device).
  void (*k)(GemvArgs) = nullptr;
  const OccupancyCap* capp = nullptr;
  if constexpr (PAIR) {
    static_assert(TILES == 1, "the normed SiLU epilogue: one tile");
    k = gemv_norm_pair_kernel<K, ASYM, G16, DEC, PRE, BITS, kL>;
    static const OccupancyCap cap = norm_occupancy_cap(k, kPt);
    capp = &cap;
  } else if (a.norm_mode == 2) {
    k = gemv_norm_kernel<K, ASYM, G16, DEC, PRE, BITS, kL, 2, TILES>;
    static const OccupancyCap cap = norm_occupancy_cap(k, kPt);
    capp = &cap;
  } else if constexpr (TILES == 1) {
    k = gemv_norm_kernel<K, ASYM, G16, DEC, PRE, BITS, kL, 1, 1>;
    static const OccupancyCap cap = norm_occupancy_cap(k, kPt);
    capp = &cap;
  } else {
    throw_error(ErrorKind::kInternal, "gemv_add_norm_fp16_cuda", "add + norm with %d tiles per block", TILES);
  }
  const OccupancyCap& cap = *capp;
  const int from =
      TILES == 1 ? split_plan(a, cap.natural, BITS, K == ScaleKind::kFp16Razer && DEC == Decode::kE2M1, 1) : INT_MAX;
  if (from != INT_MAX) {
    a.split_from = from;
    grid.x = static_cast<unsigned>(from + 2 * (static_cast<int64_t>(grid.x) - from));
  }
  pdl::launch_ex(k, grid, block, cap_smem(cap, grid.x), s,
                 pdl::LaunchExtras{from != INT_MAX ? 2u : 1u, pair_table_carveout(cap, grid.x, a.M)}, a);
}

template <ScaleKind K, bool ASYM, bool G16, Decode DEC, bool PRE, int S, int BITS, int TILES, CodeLayout L, bool PAIR>
void launch_p(const GemvArgs& a0, dim3 grid, dim3 block, cudaStream_t s) {
  if (a0.norm_mode) {  // (gemv_launch asks for one stage, M <= 8 and one tile, or two for the plain normed product)
    if constexpr ((TILES == 1 || (TILES == 2 && !PAIR)) && S == 1 && DEC != Decode::kNib3I8)
      return launch_norm<K, ASYM, G16, DEC, PRE, BITS, L, PAIR, TILES>(a0, grid, block, s);
    else
      throw_error(ErrorKind::kInternal, "gemv_fp16_cuda", "%d tiles and %d stages have no norm epilogue", TILES, S);
  }
  constexpr int kL = static_cast<int>(L);
  constexpr int kThreads = block_threads(bulk_body(K, G16, DEC, S, BITS, TILES, kL, PAIR));
  block.x = kThreads;
  constexpr bool kInt8 = DEC == Decode::kNib3I8 || DEC == Decode::kE2M1XorI8;
  constexpr int kMt2 = kInt8 ? 1 : 2;  // the M <= 16 kernel's MT (the int8 products: M = 1 only)
  constexpr bool kPt = DEC == Decode::kPairLut;
  GemvArgs a = a0;
  a.split_from = INT_MAX;
  if constexpr ((TILES == 1 || DEC == Decode::kNib3I8) && (S == 1 || S == kBulkStages)) {
    auto* k1 = gemv_kernel_for<K, ASYM, 1, G16, DEC, PRE, S, BITS, TILES, kL, true, PAIR>();
    auto* k2 = gemv_kernel_for<K, ASYM, kMt2, G16, DEC, PRE, S, BITS, TILES, kL, true, PAIR>();
    // Resident blocks per SM of each split kernel and their caps (asked on the first device;
    // registers differ by MT).
    static const OccupancyCap cap1 = occupancy_cap(k1, kThreads, kPt), cap2 = occupancy_cap(k2, kThreads, kPt);
    const OccupancyCap& cap = a.M <= 8 ? cap1 : cap2;
    const int from = split_plan(a, cap.natural, BITS, K == ScaleKind::kFp16Razer && DEC == Decode::kE2M1, TILES);
    if (from != INT_MAX) {
      a.split_from = from;
      grid.x = static_cast<unsigned>(from + 2 * (static_cast<int64_t>(grid.x) - from));
      return pdl::launch_ex(a.M <= 8 ? k1 : k2, grid, block, cap_smem(cap, grid.x), s,
                            pdl::LaunchExtras{2u, pair_table_carveout(cap, grid.x, a.M)}, a);
    }
  }
  auto* k1 = gemv_kernel_for<K, ASYM, 1, G16, DEC, PRE, S, BITS, TILES, kL, false, PAIR>();
  auto* k2 = gemv_kernel_for<K, ASYM, kMt2, G16, DEC, PRE, S, BITS, TILES, kL, false, PAIR>();
  static const OccupancyCap cap1 = occupancy_cap(k1, kThreads, kPt), cap2 = occupancy_cap(k2, kThreads, kPt);
  const OccupancyCap& cap = a.M <= 8 ? cap1 : cap2;
  pdl::launch_ex(a.M <= 8 ? k1 : k2, grid, block, cap_smem(cap, grid.x), s,
                 pdl::LaunchExtras{1u, pair_table_carveout(cap, grid.x, a.M)}, a);
}

// The SiLU epilogue's kernels (a.pair_rows) exist for one tile and one stage (gemv_launch asks for them).
template <ScaleKind K, bool ASYM, bool G16, Decode DEC, bool PRE, int S, int BITS, int TILES, CodeLayout L>
void launch_m(const GemvArgs& a, dim3 grid, dim3 block, cudaStream_t s) {
  if constexpr (TILES == 1 && S == 1) {
    if (a.pair_rows) return launch_p<K, ASYM, G16, DEC, PRE, S, BITS, TILES, L, true>(a, grid, block, s);
  } else {
    if (a.pair_rows)
      throw_error(ErrorKind::kInternal, "gemv_silu_mul_fp16_cuda", "%d tiles and %d stages have no SiLU epilogue", TILES, S);
  }
  launch_p<K, ASYM, G16, DEC, PRE, S, BITS, TILES, L, false>(a, grid, block, s);
}

template <ScaleKind K, bool ASYM, Decode DEC, bool PRE, int S, int BITS, int TILES>
void launch_t(const GemvArgs& a, cudaStream_t s) {
  const int rows = kRowsPerBlock * TILES;
  const dim3 grid((a.N + rows - 1) / rows), block(kWarps * 32);
  const char* where = "gemv_fp16_cuda";
  const bool nv_pair = is_tensor_kind(K) && a.layout == static_cast<int>(CodeLayout::kPair);
  if (a.layout != 0 && !nv_pair && (!can_permute(K) || a.group_shift < 7))  // (upload's layout_for never does this)
    throw_error(ErrorKind::kInternal, where, "code layout %d with scale kind %d and group %d", a.layout,
                static_cast<int>(K), 1 << a.group_shift);
  if constexpr (is_tensor_kind(K)) {  // NV kinds: the group is 16
    if (nv_pair) return launch_m<K, ASYM, true, DEC, PRE, S, BITS, TILES, CodeLayout::kPair>(a, grid, block, s);
    return launch_m<K, ASYM, true, DEC, PRE, S, BITS, TILES, CodeLayout::kDisk>(a, grid, block, s);
  } else {
    if (a.group_shift == 4) throw_error(ErrorKind::kUnsupported, where, "group 16 is supported for the NV kinds only");
    if constexpr (can_permute(K)) {
      if (a.layout == static_cast<int>(CodeLayout::kQuad))
        return launch_m<K, ASYM, false, DEC, PRE, S, BITS, TILES, CodeLayout::kQuad>(a, grid, block, s);
      if (a.layout == static_cast<int>(CodeLayout::kPair))
        return launch_m<K, ASYM, false, DEC, PRE, S, BITS, TILES, CodeLayout::kPair>(a, grid, block, s);
    }
    // (Disk-order codes have no bulk ring: bulk_applies never picks it for them, nor the int8 products.)
    if constexpr (DEC == Decode::kNib3I8) {
      throw_error(ErrorKind::kInternal, where, "int8 products on codes in disk order");
    } else {
      constexpr int kSDisk = S == kBulkStages ? 1 : S;
      launch_m<K, ASYM, false, DEC, PRE, kSDisk, BITS, TILES, CodeLayout::kDisk>(a, grid, block, s);
    }
  }
}

// Two 16-row tiles per block (a.tiles == 0: automatic) when M <= 8, rows are short (K <= 4096: each
// warp of a one-tile block streams only 4 blocks of K, so its start-up latency is a large share)
// and one tile per block would take between one and two waves of resident blocks (so the halved
// grid still fills the SMs); the two tiles' warps also share each x load through L1. Measured on
// the H100 (bench/gemv.md, 2026-11-24 third session): int4 11008x4096 M = 1 / 8 13.9 -> 12.3 / 17.8
// -> 14.6 us, 14336x4096 6-11 % faster, razer4 / razer3 11008x4096 2-7 %. Elsewhere two tiles were
// slower: 4096-row grids leave SMs idle (0.68-0.75x), long rows lose the parallelism (razer4
// 8192x28672 0.83-0.87x), M = 16 up to 0.73x. Since the tiled rows (sixth session, 11008x4096 and
// 14336x4096, M = 1..8) one tile is the faster for the E2M1 decoder with special values (razer4
// 1.02-1.13x, nvfp4-razer 1.01-1.09x; mxfp4-razer, not measured, follows them; all three now take
// the two tables and the rule below) and int4-asym (1.00-1.05x), while two stay ahead for int4,
// fp4, razer3 and int3 (by 1.01-1.19x) and for mxfp4 in 5 of 6 rows; nvfp4 is mixed (0.93-1.05x)
// and keeps two. Since the 3-bit planes (twentieth session, two runs of both shapes at M = 1, 2, 4,
// 8) one tile was the faster for razer3's bitstream decoder (kFp3Prmt, 1.02-1.09x at every row);
// int3, fp3 and int3-asym keep two (two faster by 1.00-1.18x at 11008x4096, one by 0.97-1.07x at
// 14336x4096). razer3 on the nibbles (kNib3, twenty-first session, one run at M = 1, 8) is mixed
// like int3 (two faster by 1.04-1.07x at 11008x4096, one by 1.02-1.04x at 14336x4096), so it
// follows the rule.
template <ScaleKind K, bool ASYM, Decode DEC, bool PRE, int BITS>
bool two_tiles_pay(const GemvArgs& a) {
  if constexpr (e2m1_special(DEC, K) || (ASYM && DEC == Decode::kInt4)) return false;
  if (a.M > 8 || a.K > 4096) return false;
  // Resident one-tile blocks per SM (asked on the first device).
  static const int per_sm =
      resident_blocks_per_sm(gemv_kernel<K, ASYM, 1, is_tensor_kind(K), DEC, PRE, 1, BITS, 1, 0, false>);
  const int64_t slots = static_cast<int64_t>(per_sm) * detail::current_device_sm_count();
  const int64_t blocks = (a.N + kRowsPerBlock - 1) / kRowsPerBlock;
  return slots > 0 && blocks > slots && blocks < 2 * slots;
}

template <ScaleKind K, bool ASYM, Decode DEC, bool PRE, int S, int BITS>
void launch_s(const GemvArgs& a, cudaStream_t s) {
  if constexpr (S == 1 || S == kBulkStages)  // (two stages are for measurements only: one tile per block)
    if (a.tiles == 2 || (a.tiles == 0 && two_tiles_pay<K, ASYM, DEC, PRE, BITS>(a)))
      return launch_t<K, ASYM, DEC, PRE, 1, BITS, 2>(a, s);  // (two tiles: the register pipeline)
  launch_t<K, ASYM, DEC, PRE, S, BITS, 1>(a, s);
}

template <ScaleKind K, bool ASYM, Decode DEC, bool PRE, int BITS = 4>
void launch_d(const GemvArgs& a, cudaStream_t s, int stages) {
  if constexpr (DEC == Decode::kE2M1XorI8) {  // (the register pipeline, at M = 1: choose_plan)
    if (stages != 1 || a.M != 1)
      throw_error(ErrorKind::kInternal, "gemv_fp16_cuda", "razer4's int8 products at M = %d, %d stages", a.M, stages);
    return launch_s<K, ASYM, DEC, PRE, 1, BITS>(a, s);
  } else if constexpr (DEC == Decode::kNib3I8) {  // (the bulk ring only, at M = 1: choose_plan)
    if (stages != kBulkStages || a.M != 1)
      throw_error(ErrorKind::kInternal, "gemv_fp16_cuda", "int8 products at M = %d, %d stages", a.M, stages);
    if (a.tiles == 1) return launch_t<K, ASYM, DEC, PRE, kBulkStages, BITS, 1>(a, s);
    return launch_t<K, ASYM, DEC, PRE, kBulkStages, BITS, 2>(a, s);  // (32 rows per warp: kWarpTiles)
  } else {
    if (stages == 2) return launch_s<K, ASYM, DEC, PRE, 2, BITS>(a, s);
    if constexpr (BITS == 3 && bulk_kind(K, DEC))
      if (stages == kBulkStages) return launch_s<K, ASYM, DEC, PRE, kBulkStages, BITS>(a, s);
    launch_s<K, ASYM, DEC, PRE, 1, BITS>(a, s);
  }
}

template <ScaleKind K, bool ASYM>
void launch_k(const GemvArgs& a, cudaStream_t s, Decode dec, bool pre, int stages, int bits) {
  if (bits == 3) {  // the 3-bit formats (int, fp3, razer) have fp16 scales
    if constexpr (K == ScaleKind::kFp16 || K == ScaleKind::kFp16Razer) {
      if (dec == Decode::kLut) return launch_d<K, ASYM, Decode::kLut, false, 3>(a, s, stages);
      if constexpr (K == ScaleKind::kFp16) {
        if (dec == Decode::kInt3) return launch_d<K, ASYM, Decode::kInt3, false, 3>(a, s, stages);
        if constexpr (!ASYM)
          if (dec == Decode::kFp3)
            return pre ? launch_d<K, false, Decode::kFp3, true, 3>(a, s, stages)
                       : launch_d<K, false, Decode::kFp3, false, 3>(a, s, stages);
      }
      if constexpr (!ASYM || K == ScaleKind::kFp16) {  // (upload's nib3_applies: razer3, fp3 and int3)
        if (dec == Decode::kNib3)
          return pre ? launch_d<K, ASYM, Decode::kNib3, true, 3>(a, s, stages)
                     : launch_d<K, ASYM, Decode::kNib3, false, 3>(a, s, stages);
        if (dec == Decode::kNib3I8) return launch_d<K, ASYM, Decode::kNib3I8, false, 3>(a, s, stages);
      }
    }
    throw_error(ErrorKind::kInternal, "gemv_fp16_cuda", "3-bit codes with scale kind %d and decoder %d",
                static_cast<int>(K), static_cast<int>(dec));
  }
  if (dec == Decode::kLut) return launch_d<K, ASYM, Decode::kLut, false>(a, s, stages);
  if constexpr (K == ScaleKind::kFp16)
    if (dec == Decode::kInt4) return launch_d<K, ASYM, Decode::kInt4, false>(a, s, stages);
  if constexpr (K == ScaleKind::kFp16 && !ASYM)
    if (dec == Decode::kPairLut) return launch_d<K, false, Decode::kPairLut, false>(a, s, stages);
  if constexpr (!ASYM)
    if (dec == Decode::kE2M1)
      return pre ? launch_d<K, false, Decode::kE2M1, true>(a, s, stages)
                 : launch_d<K, false, Decode::kE2M1, false>(a, s, stages);
  if constexpr (K == ScaleKind::kFp16Razer && !ASYM) {
    if (dec == Decode::kE2M1Xor)  // (without PRE: POST, choose_plan)
      return pre ? launch_d<K, false, Decode::kE2M1Xor, true>(a, s, stages)
                 : launch_d<K, false, Decode::kE2M1Xor, false>(a, s, stages);
    if (dec == Decode::kE2M1XorI8) return launch_d<K, false, Decode::kE2M1XorI8, false>(a, s, stages);
  }
  if constexpr (K == ScaleKind::kE3M3RazerTensor && !ASYM)  // (PRE always: pre_factor)
    if (dec == Decode::kE2M1Xor) return launch_d<K, false, Decode::kE2M1Xor, true>(a, s, stages);
  if constexpr (K == ScaleKind::kE8M0Razer && !ASYM)
    if (dec == Decode::kE2M1Xor)
      return pre ? launch_d<K, false, Decode::kE2M1Xor, true>(a, s, stages)
                 : launch_d<K, false, Decode::kE2M1Xor, false>(a, s, stages);
  throw_error(ErrorKind::kInternal, "gemv_fp16_cuda", "decoder %d has no kernel for this scale kind", static_cast<int>(dec));
}

GemvDecoder g_decoder = GemvDecoder::kAuto;
int g_stages = 0;
int g_tiles = 0;  // 0: two_tiles_pay
int g_post = 0;   // set_gemv_post: 0 automatic (choose_plan), 1 never, 2 always
int g_int8 = 0;   // set_gemv_int8: 0 automatic (choose_plan), 1 never

// 3-bit: kNib3 for the nibble-encoded codes (DeviceTensor::nib3: razer3 whose special values x
// 2^-14 are exact fp16 with a zero low byte, at most 3 significant bits: the defaults +-3, +-6 are;
// fp3; int3, asym with a table per zero point); on the bitstream (set_upload_nib3(false)) kInt3 for
// int (sym codes c - 4, asym c), kFp3 for the fp3 grid without special values, else the table
// (razer3 on the bitstream, or special values the nibble tables cannot hold).
Decode choose_decoder3(const DeviceTensor& w, const quantizer::Grid& grid, uint32_t (&special)[kTables], uint32_t* t0) {
  if (w.nib3) {  // (upload checked the grid: nib3_applies)
    gemv3::Nib3Tables t;
    if (!gemv3::nib3_tables(grid.value, grid.special_code, w.cfg.special_values, &t))
      throw_error(ErrorKind::kInternal, "gemv_fp16_cuda", "nib3 tensor %s without lookup tables", w.cfg.label().c_str());
    *t0 = t.t0;
    for (int i = 0; i < kTables; ++i) special[i] = t.t1[i];
    return Decode::kNib3;
  }
  if (w.cfg.id == quantizer::FormatId::kInt) {
    for (int c = 0; c < 8; ++c)
      if (grid.value[c] != (w.cfg.asym ? c : c - 4)) return Decode::kLut;
    return Decode::kInt3;
  }
  if (w.cfg.asym) return Decode::kLut;
  static constexpr double kFp3[4] = {0, 1, 2, 4};
  for (int c = 0; c < 8; ++c)
    if (c != grid.special_code && grid.value[c] != (c & 4 ? -1 : 1) * kFp3[c & 3]) return Decode::kLut;
  return !w.cfg.spec().has_special && grid.special_code < 0 ? Decode::kFp3 : Decode::kLut;
}

// The bit decoder the tensor's grid allows (kInt4: int 4-bit; kE2M1: the E2M1 sign-magnitude
// grid, the special code 8 if any, special values exact as fp16 x 2^-14; 3-bit:
// choose_decoder3), else the table. (nvfp4-razer kept the table under kAuto until the byte
// decoder: the bit decoder's special-value patch was slower there; bytes are 4-17 % faster than
// the table at every shape and M, bench/gemv.md 2026-11-24.)
Decode choose_decoder(const DeviceTensor& w, const quantizer::Grid& grid, uint32_t (&special)[kTables], uint32_t* t0) {
  std::memset(special, 0, sizeof(special));
  *t0 = 0;
  if (g_decoder == GemvDecoder::kTable) return Decode::kLut;
  if (w.pair_table) return Decode::kPairLut;  // (upload checked the grid: pair_table_applies)
  if (w.razer_xor) {  // (upload checked the grid and the special values: razer_xor_applies)
    for (int i = 0; i < kTables; ++i)
      special[i] = gemv4::kXorT2Hi |
                   (static_cast<uint32_t>(gemv4::fp16_high_byte_2m14(std::fabs(w.cfg.special_values[static_cast<size_t>(i)]))) << 24);
    return Decode::kE2M1Xor;
  }
  // razer's fallback with separate special-value indices (scales of 2 and above): the table only
  // (the bit decoders' kernels do not read the indices: load_group's SV).
  if (w.sv_index) return Decode::kLut;
  if (w.cfg.bits == 3) return choose_decoder3(w, grid, special, t0);
  const quantizer::FormatSpec& spec = w.cfg.spec();
  if (w.cfg.id == quantizer::FormatId::kInt) return spec.scale_kind == ScaleKind::kFp16 ? Decode::kInt4 : Decode::kLut;
  if (w.cfg.asym) return Decode::kLut;
  if (!gemv4::is_e2m1_grid(grid.value, grid.special_code)) return Decode::kLut;
  if (spec.has_special) {
    if (grid.special_code != 8 || w.cfg.special_values.size() < kTables) return Decode::kLut;
    for (int i = 0; i < kTables; ++i) {  // gemv_e2m1.cuh: the value must live in the high byte
      const int b = gemv4::fp16_high_byte_2m14(w.cfg.special_values[i]);
      if (b < 0) return Decode::kLut;
      special[i] = (static_cast<uint32_t>(b) ^ 0x80u) * 0x01010101u;
    }
  } else if (grid.special_code >= 0) {
    return Decode::kLut;
  }
  return Decode::kE2M1;
}

// What a launch takes from the tensor's grid and encoding, not from its shape or M: choose_decoder's
// decoder and byte tables, the int8 tables (kNib3), the per-zero-point tables (int3 asym on
// nibbles) and the table decoder's fp16 values. Building them is host time of the order of a
// small product's kernel: int3 asym's nib3_zero_tables (256 fp16 conversions) about 9 us per
// launch on the H100 machine's CPU, which made every int3-asym launch at 4096x4096 host-bound
// (9.3 us at every M; thirtieth session, bench/gemv.md); the fp16 table 0.5-1.5 us for every
// format. So grid_tables keeps the last few per thread, keyed by what they are computed from
// (set_gemv_table_cache(false): rebuilt at every launch, for the benchmark's comparison).
struct GridTables {
  Decode dec = Decode::kLut;
  uint32_t special[kTables] = {0, 0, 0, 0}, t0 = 0;
  bool has_i8 = false;  // kNib3: gemv3::nib3_i8_tables holds for the grid
  gemv3::Nib3I8Tables i8;
  bool has_xor_i8 = false;  // kE2M1Xor with fp16 scales: every special value has int8 weights
  uint32_t xor_i8[kTables] = {0, 0, 0, 0};  // then kXorI8T2Hi | xor_i8_special_byte << 24 per table
  uint32_t nib_z[2][8] = {};  // kNib3 on an asym tensor: gemv3::nib3_zero_tables
  uint16_t table[kTables * 16] = {};
};
struct GridKey {
  std::vector<double> value;
  int special_code;
  std::vector<float> special_values;
  quantizer::FormatId id;
  int bits;
  bool asym, razer_xor, nib3, pair_table, sv_index;
  GemvDecoder decoder;
  bool matches(const DeviceTensor& w, const quantizer::Grid& grid) const {
    return special_code == grid.special_code && id == w.cfg.id && bits == w.cfg.bits && asym == w.cfg.asym &&
           razer_xor == w.razer_xor && nib3 == w.nib3 && pair_table == w.pair_table &&
           sv_index == (w.sv_index != nullptr) && decoder == g_decoder &&
           value == grid.value && special_values == w.cfg.special_values;
  }
};
bool g_table_cache = true;

GridTables build_grid_tables(const DeviceTensor& w, const quantizer::Grid& grid) {
  GridTables gt;
  gt.dec = choose_decoder(w, grid, gt.special, &gt.t0);
  if (gt.dec == Decode::kE2M1Xor && w.cfg.spec().scale_kind == ScaleKind::kFp16Razer) {
    gt.has_xor_i8 = true;
    for (int i = 0; i < kTables; ++i) {
      const int b = gemv4::xor_i8_special_byte(std::fabs(w.cfg.special_values[static_cast<size_t>(i)]));
      gt.has_xor_i8 = gt.has_xor_i8 && b >= 0;
      gt.xor_i8[i] = gemv4::kXorI8T2Hi | (static_cast<uint32_t>(b < 0 ? 0 : b) << 24);
    }
  }
  if (gt.dec == Decode::kNib3) {
    gt.has_i8 = gemv3::nib3_i8_tables(grid.value, grid.special_code, w.cfg.special_values, &gt.i8);
    if (w.cfg.asym && !gemv3::nib3_zero_tables(grid.value, gt.nib_z[0], gt.nib_z[1]))
      throw_error(ErrorKind::kInternal, "gemv_fp16_cuda", "asym nib3 tensor %s: no tables for its grid", w.cfg.label().c_str());
  }
  // The value tables: the registry's grid in fp16; table i has the special code's slot set to
  // special value i (RaZeR kinds), else all four tables are the plain grid.
  // (3-bit grids: the first 8 entries of each 16-entry table.)
  const quantizer::FormatSpec& spec = w.cfg.spec();
  const int codes = 1 << w.cfg.bits;
  if (static_cast<int>(grid.value.size()) != codes)
    throw_error(ErrorKind::kInternal, "gemv_fp16_cuda", "%d-bit grid of %zu values", w.cfg.bits, grid.value.size());
  for (int tbl = 0; tbl < kTables; ++tbl)
    for (int c = 0; c < codes; ++c) {
      double v = grid.value[c];
      if (spec.has_special && c == grid.special_code) v = w.cfg.special_values[tbl];
      if (w.razer_xor)  // the re-encoded codes (gemv_e2m1.cuh); zero as +0 (the products are the same)
        v = c == 15 ? std::fabs(w.cfg.special_values[tbl]) : c == 0 ? 0.0 : gemv4::kXorValue[c];
      gt.table[tbl * 16 + c] = razerq::double_to_fp16(v);
    }
  return gt;
}

GridTables grid_tables(const DeviceTensor& w, const quantizer::Grid& grid) {
  constexpr int kSlots = 4;  // a model's few formats (evaluation alternates between them)
  thread_local std::pair<GridKey, GridTables> memo[kSlots];
  thread_local int filled = 0, next = 0;
  if (g_table_cache)
    for (int i = 0; i < filled; ++i)
      if (memo[i].first.matches(w, grid)) return memo[i].second;
  GridTables gt = build_grid_tables(w, grid);
  if (g_table_cache) {
    memo[next] = {GridKey{grid.value, grid.special_code, w.cfg.special_values, w.cfg.id, w.cfg.bits, w.cfg.asym,
                          w.razer_xor, w.nib3, w.pair_table, w.sv_index != nullptr, g_decoder},
                  gt};
    next = (next + 1) % kSlots;
    filled = std::min(filled + 1, kSlots);
  }
  return gt;
}

// One block of codes in flight per warp (prefetched while the current one is decoded) is the
// fastest at every measured shape once the decode is by bits: two or more take registers that
// cost more resident warps than they hide latency (bench/gemv.md). (nvfp4-razer on under-filled
// grids took two from the sixth session until its scales were decoded at use, seventh: then one
// with the whole split was 1.00-1.07x faster at 4096x4096 and 1.16-1.19x at 4096x11008, M <= 8.)
// set_gemv_stages(1 or 2) forces one (measurements, tests).
//
// The bulk ring (gemv_body's BULK, kBulkStages) for the 3-bit bit decoders at M = 1, K >= 8192, on
// grids that are not split whole (2026-11-25, twenty-fifth session, bench/gemv.md; kernels/NOTES.md
// has the design and the profile): a producer warp keeps four steps of the block's codes in flight,
// so the consumers no longer wait on their loads. Measured on the H100 in four calls, M = 1,
// stages 1's time over the ring's on 28672x8192, 8192x28672 and 16384x16384: razer3 1.01-1.07x,
// int3 1.00-1.05x, fp3 1.00-1.04x. Not taken where it lost: 4096x11008 (split whole; 0.80-0.83x),
// K = 4096 (0.92-1.01x), M >= 2 (0.93-1.02x at M = 2, 4; 0.83-1.01x at M = 8), where a block's few
// steps leave the ring's start-up unpaid or the x loads grow; the 4-bit formats (int4 0.96-1.01x,
// razer4 0.94-0.99x at M = 1, not instantiated). set_gemv_stages(3) takes it wherever the tensor
// allows (tests).
bool bulk_applies(const DeviceTensor& w, Decode dec) {
  return w.cfg.bits == 3 && w.tiled && w.cfg.group == 128 && w.layout != CodeLayout::kDisk && w.scales16 &&
         reinterpret_cast<uintptr_t>(w.scales16) % 16 == 0 && reinterpret_cast<uintptr_t>(w.codes) % 16 == 0 &&
         (!takes_zero_bytes(w.cfg.asym, dec) || (w.zero_bytes && reinterpret_cast<uintptr_t>(w.zero_bytes) % 16 == 0)) &&
         bulk_kind(w.cfg.spec().scale_kind, dec);
}
int choose_stages(const DeviceTensor& w, Decode dec, int64_t M) {
  if (g_stages == 1 || g_stages == 2) return g_stages;
  if (bulk_applies(w, dec) && (g_stages == 3 || (M == 1 && w.cols >= 8192 && !underfilled(w.rows)))) return kBulkStages;
  return 1;
}

// The decoder and where the inner scale goes (PRE) for M rows of x: choose_decoder's, then PRE
// where scale x 2^14 stays an exact fp16 (inner scales below 4); nvfp4: scale x 2^7 always, the
// other 2^7 applied to the fp32 sums; nvfp4-razer: always, its scales being taken x 2^-4
// (pre_factor, e4m3x2_half2_bits). The 3-bit x 2^-14 decoders (kNib3, kFp3) without PRE are POST
// (post_scaled), for groups of 128 or more: by default the nibbles' (kNib3: razer3, and since the
// twenty-eighth session fp3 and int3 sym) at M <= 8 and K > 4096, and either wherever PRE cannot
// hold; set_gemv_post(1) never, (2) at every M and K. Where neither can hold (groups below 128 with
// inner scales of 4 or more, or set_gemv_post(1)) they give way to the table. Measured
// (bench/gemv.md, twenty-second session, one build, four calls on the H100, one on an H200): POST
// took razer3 1.02-1.03x faster at M = 1 on the three largest shapes and 1.01-1.05x at M = 8 (H200:
// 1.03-1.07x at M = 1..8); 4096x11008 within 1-2 %; at K = 4096 mixed (11008x4096 0.95-0.97x on
// both devices), hence K > 4096. 32 SASS instructions fewer per kernel (the HMUL2 per pair). fp3's
// bit decoder (kFp3, on the bitstream) was mixed (0.98-1.04x at M = 1), so it keeps PRE. The M = 16
// POST kernels (a second set of block accumulators) spill at the four-block bound of 64 registers,
// hence M <= 8.
// razer4's two-table decoder (kE2M1Xor on razer_xor tensors with fp16 scales, thirty-third session)
// takes POST by the same rule (M <= 8, K > 4096, groups of 128 or more): 32 HMUL2 fewer per
// 128-column block (the loop's 195 SASS instructions against int4's 173). Measured (bench/gemv.md,
// thirty-third session, one process per setting, two rounds, us, PRE -> POST): 4096x11008 M = 1 / 2
// / 4 / 8 12.46 -> 12.01, 12.39 -> 11.93, 12.06 -> 11.68, 12.22 -> 11.92; 28672x8192 M = 8 48.68
// -> 47.48; 16384x16384 M = 1 / 8 51.72 -> 51.33, 55.06 -> 54.01; 28672x8192 M = 1..4 and
// 8192x28672 M = 1..8 within 0.6 % either way; K = 4096 0.99-1.01x at M <= 8 (4096x4096 up to 1.02x
// slower), so not there; M = 16 mixed (8192x28672 60.30 -> 57.60, 16384x16384 68.14 -> 69.90,
// 4096x11008 16.22 -> 16.96), so not there either.
struct Plan {
  Decode dec;
  bool pre;
};
//
// The int8 products (kNib3I8, gemv_body's I8) replace kNib3 wherever it would run in the bulk ring
// at M = 1 (choose_stages) and the grid's values have int8 tables (gemv3::nib3_i8_tables: razer3's
// defaults, fp3 and int3 do); set_gemv_int8(1) never. Measured (bench/gemv.md, twenty-sixth
// session, H100, two runs in one call, M = 1, razer3): 28672x8192 39.1 -> 38.0 us (78.3 -> 80.6 %
// of the floor), 8192x28672 38.1 -> 37.7 (80.4 -> 81.3 %), 16384x16384 43.4 -> 42.3 (80.7 ->
// 82.8 %). A probe that only dropped kNib3's four spreading PRMTs per 8 codes (what the int8 weights
// save; garbage y) reached 87-89.5 %: the x split (about 35 instructions per warp and block, ncu:
// 178 per block against the probe's 140) takes most of the gain back. Hence, by default, two tiles
// per block with each warp taking its block of K of both (kWarpTiles: one x split per 32 rows;
// set_gemv_tiles(1): one tile). Measured (bench/gemv.md, twenty-seventh session, two runs in one
// call, M = 1, against one tile in the same runs): 28672x8192 38.8-39.2 -> 36.5-36.7 us (83.5-85.0
// % of the floor), 8192x28672 38.0-38.2 -> 33.8-33.9 (90.4-91.8 %), 16384x16384 42.9-43.0 ->
// 41.6-41.7 (83.9-85.3 %); with x loaded a block ahead (two runs) 36.2-36.3 (84.1-84.5 %),
// 33.5-33.8 (90.4-91.1 %), 40.7-40.8 (85.6 %). Its blocks take 72 registers (3 per SM): the split
// tail still pays (16384x16384 unsplit 47.3 us).
// Warp pairs sharing one split through shared memory instead (warps w, w + 4 on the two tiles,
// taking turns, named barriers) gained nothing: 80-82 %, barrier stalls.
// fp3 and int3 sym as nibbles (twenty-eighth session, upload's nib3_applies; one call, against
// their bit decoders on the bitstream in the same binary): M = 1 on the three largest shapes int3
// 34.98 / 33.08 / 41.04 us (87.2 / 92.2 / 84.9 % of the floor; on the bitstream 79.0 / 79.4 /
// 80.0 %), fp3 the same within 0.1 us. At M = 2..8 the nibble decoder's speed over the bit
// decoders' was 1.00-1.07x at 11008x4096, 4096x11008 and the three largest, 0.94-0.98x at
// 14336x4096 (every M); M = 16 0.92-1.03x; 4096x4096 noise (int3 and fp3 ran the same kernel in
// 7.03 and 5.48 us at M = 1).
// int3 asym as nibbles (twenty-ninth session: the int8 products take the codes 0..7 and subtract
// z sum q per row and block, the ring stages the zero point bytes; kNib3 a table per zero point;
// one call against the bit decoder on the bitstream in the same binary): M = 1 on the three
// largest shapes 36.0 / 33.8 / 40.4 us (85.4 / 91.0 / 87.0 % of the floor; bitstream 63.7 / 63.3 /
// 66.8 %); M = 2..8 there 1.19-1.24x the bit decoder's speed, 14336x4096 1.18-1.20x, 4096x11008
// 1.37-1.41x, 11008x4096 1.00-1.01x; M = 16 0.95-1.29x. At 4096x4096 (9.2-9.4 us at every M
// then) the launches were host-bound on the per-zero-point tables (grid_tables): since the
// thirtieth session 6.15-6.43 us at M = 1..8, 0.99-1.02x the bit decoder's speed.
// (one_stage: the epilogues' kernels, which have one stage and no ring: no nibble int8 products.)
Plan choose_plan(const DeviceTensor& w, const GridTables& gt, int64_t M, uint32_t (&special)[kTables], uint32_t* t0,
                 int* i8_shift = nullptr, bool one_stage = false) {
  const Decode dec = gt.dec;
  std::memcpy(special, gt.special, sizeof(special));
  *t0 = gt.t0;
  const ScaleKind k = w.cfg.spec().scale_kind;
  if (dec == Decode::kNib3 && !one_stage && g_int8 != 1 && M == 1 && choose_stages(w, dec, M) == kBulkStages && gt.has_i8) {
    *t0 = gt.i8.t0;
    for (int i = 0; i < kTables; ++i) special[i] = gt.i8.t1[i];
    if (i8_shift) *i8_shift = gt.i8.shift;
    return {Decode::kNib3I8, false};
  }
  // razer4's int8 products (the register pipeline: the epilogues' kernels too, so that they sum as
  // the plain product does). Measured (bench/gemv.md, thirty-seventh session, H100, one binary, three
  // rounds, M = 1, against set_gemv_int8(1)'s fp16 products): 0.935-0.983x the time on eight of nine
  // shapes (14336x4096 14.52 -> 13.57 us, 8192x28672 47.07 -> 44.87, 16384x16384 51.42 -> 49.34,
  // 28672x8192 45.67 -> 44.21), 1.019x at 11008x4096 (11.44 -> 11.65); taken at every shape.
  if (dec == Decode::kE2M1Xor && g_int8 != 1 && M == 1 && gt.has_xor_i8 && w.cfg.group % 128 == 0 &&
      (one_stage || choose_stages(w, dec, M) == 1)) {
    std::memcpy(special, gt.xor_i8, sizeof(special));
    return {Decode::kE2M1XorI8, false};
  }
  const bool pre_fits = w.max_inner_scale < 3.99;
  // POST where a decoder can take it (post_scaled without PRE), the group allows it and it is
  // wanted: set_gemv_post(2), or by default at M <= 8 and K > 4096 for the nibbles and razer4.
  if (post_scaled(dec, false, k)) {
    const bool post_fits = w.cfg.group % 128 == 0 && g_post != 1;
    const bool by_default = (dec == Decode::kNib3 || dec == Decode::kE2M1Xor) && M <= 8 && w.cols > 4096;
    const bool wanted = g_post == 2 || (g_post == 0 && by_default);
    if (post_fits && (wanted || !pre_fits)) return {dec, false};
    if (pre_fits) return {dec, true};  // (always for razer4: its 14-bit scales are below 2)
    return {Decode::kLut, false};
  }
  return {dec, (k == ScaleKind::kE4M3Tensor && times_2m14(dec)) || k == ScaleKind::kE3M3RazerTensor || pre_fits};
}



}  // namespace

bool gemv_supported(const DeviceTensor& w, std::string* why) {
  auto no = [&](const std::string& m) {
    if (why) *why = m;
    return false;
  };
  if (!w.codes) return no("tensor is not uploaded");
  if (w.cfg.opts.has_side_parts()) return no("outliers, second-level scales or code offsets (OA-CIM int options)");
  if (w.cfg.bits != 4 && w.cfg.bits != 3)
    return no(strprintf("%d-bit codes (the fused kernel takes 3- and 4-bit formats)", w.cfg.bits));
  if (w.cfg.bits == 3 && w.cfg.spec().scale_kind != ScaleKind::kFp16 && w.cfg.spec().scale_kind != ScaleKind::kFp16Razer)
    return no("3-bit codes with a scale kind other than fp16");
  if (w.cols % 128) return no(strprintf("K = %lld is not a multiple of 128", static_cast<long long>(w.cols)));
  if (!w.pair_order && !w.razer_xor && !w.nib3 && !w.pair_table)
    return no("codes neither in pair order nor re-encoded (upload() gives one to every tensor the kernel takes)");
  const int g = w.cfg.group;
  if (g < 16 || (g & (g - 1)) != 0)
    return no(strprintf("group %d (the kernel takes powers of two from 16)", g));
  if (w.cfg.asym && w.cfg.id != quantizer::FormatId::kInt) return no("asymmetric non-int format");
  if (!w.scales_fit_fp16) return no("a group scale is outside the fp16 range");
  if (w.rows > INT_MAX || w.cols > INT_MAX) return no("more than 2^31 rows or columns");
  if (g == 16 && w.cfg.spec().scale_kind != ScaleKind::kE4M3Tensor &&
      w.cfg.spec().scale_kind != ScaleKind::kE3M3RazerTensor)
    return no("group 16 outside the NV kinds");
  return true;
}

namespace {

// The norm epilogues' arguments (GemvArgs::norm_mode), checked by the callers.
struct NormEpi {
  int mode = 0;  // 1: add + norm (y null), 2: normed
  uint16_t* h = nullptr;
  const uint16_t* w = nullptr;
  uint16_t* x_out = nullptr;
  float* slots_out = nullptr;
  const float* slots_in = nullptr;
  float eps = 0.f, x_scale = 1.f;
};

// gemv_fp16_cuda (pair_rows 0), gemv_silu_mul_fp16_cuda (pair_rows F, checked by the caller) and
// the norm epilogues (ne).
void gemv_launch(const char* where, const DeviceTensor& w, const uint16_t* x, int64_t M, uint16_t* y, int pair_rows,
                 void* stream, const NormEpi* ne = nullptr) {
  std::string why;
  if (!gemv_supported(w, &why)) throw_error(ErrorKind::kUnsupported, where, "%s: %s", w.cfg.label().c_str(), why.c_str());
  if (M < 1 || M > kGemvMaxM)
    throw_error(ErrorKind::kInvalidArgument, where, "M = %lld (expected 1 .. %d)", static_cast<long long>(M), kGemvMaxM);
  const bool add_norm = ne && ne->mode == 1;
  if (!x || (!y && !add_norm)) throw_error(ErrorKind::kInvalidArgument, where, "null x or y");
  if (reinterpret_cast<uintptr_t>(x) % 16) throw_error(ErrorKind::kInvalidArgument, where, "x is not 16-byte aligned");
  if (reinterpret_cast<uintptr_t>(y) % 2) throw_error(ErrorKind::kInvalidArgument, where, "y is not 2-byte aligned");

  GemvArgs a{};
  a.codes = w.codes, a.scales16 = w.scales16, a.scales8 = w.scales8, a.zeros = w.zeros, a.sv_index = w.sv_index;
  a.zero_bytes = w.zero_bytes;
  a.x = x, a.y = y;
  a.N = static_cast<int>(w.rows), a.K = static_cast<int>(w.cols), a.M = static_cast<int>(M);
  a.code_words = static_cast<int>(w.code_words_per_row);
  const bool planes = w.tiled && w.cfg.bits == 3;  // gemv_layout.hpp tiled_block_word
  a.q_lane_words = planes ? 1 : 3, a.q_plane = planes ? kTilePlaneWords : 1;
  a.row_stride = planes ? 4 : w.tiled ? block_words(w.cfg.bits) : a.code_words;
  a.kb_stride = w.tiled ? kTileRows * block_words(w.cfg.bits) : block_words(w.cfg.bits);
  const int us = group_unit_shift(w.cfg.group);
  a.g_row_stride = w.tiled ? 1 << us : static_cast<int>(w.groups_per_row);
  a.g_unit_shift = w.tiled ? us : 0;
  a.g_block_shift = w.tiled ? us + 4 : 0;
  a.group_shift = 0;
  while ((1 << a.group_shift) < w.cfg.group) ++a.group_shift;
  a.groups_per_row = static_cast<int>(w.groups_per_row);
  a.zero_words = static_cast<int>(w.zero_words_per_row);
  const quantizer::FormatSpec& spec = w.cfg.spec();
  a.outer = is_tensor_kind(spec.scale_kind) ? w.tensor_scale : 1.0f;
  const GridTables gt = grid_tables(w, quantizer::base_grid(w.cfg));
  std::memcpy(a.table, gt.table, sizeof(a.table));
  a.razer_scale_mask = spec.scale_kind == ScaleKind::kE3M3RazerTensor ? (w.razer_xor ? 0xbfbfu : 0x3f3fu)
                       : spec.scale_kind == ScaleKind::kE8M0Razer   ? (w.razer_xor ? 0x80u : 0u)
                                                                    : (w.razer_xor ? 0xbfffu : 0x3fffu);
  a.razer_xor = w.razer_xor ? 1 : 0;
  a.nib3 = w.nib3 ? 1 : 0;
  a.pair_table = w.pair_table ? 1 : 0;
  const bool one_stage = pair_rows != 0 || ne != nullptr;  // (the epilogues' kernels: one stage; tiles below)
  const Plan plan = choose_plan(w, gt, M, a.special, &a.nib_t0, &a.i8_shift, one_stage);
  const Decode dec = plan.dec;
  if (takes_zero_bytes(w.cfg.asym, dec)) {
    if (!w.zero_bytes) throw_error(ErrorKind::kInternal, where, "asym nib3 tensor %s without zero_bytes", w.cfg.label().c_str());
    // kNib3: a table per zero point (grid_tables checked that the grid has them); kNib3I8: the
    // codes themselves (i8_shift 0), the zero point applied to the block sums.
    if (dec == Decode::kNib3) {
      std::memcpy(a.nib_z, gt.nib_z, sizeof(a.nib_z));
    } else if (a.i8_shift != 0 || a.nib_t0 != 0x03020100u || a.special[0] != 0x07060504u) {
      throw_error(ErrorKind::kInternal, where, "asym nib3 tensor %s: no int8 tables for its grid", w.cfg.label().c_str());
    }
  }
  const bool pre = plan.pre;
  const bool e4m3_pre = spec.scale_kind == ScaleKind::kE4M3Tensor && times_2m14(dec);
  const bool e3m3 = spec.scale_kind == ScaleKind::kE3M3RazerTensor;
  if (post_scaled(dec, pre, spec.scale_kind)) a.outer *= 16384.f;
  if (e4m3_pre) a.outer *= 16384.f / pre_factor(spec.scale_kind);
  if (e3m3) a.outer *= 16.f;  // every decoder: the kernel's E3M3 scales are s 2^-4
  // (The SiLU and norm epilogues' kernels have one stage and one tile per block, but the plain
  // normed product, which takes two_tiles_pay's choice as the plain product does.)
  const int stages = one_stage ? 1 : choose_stages(w, dec, M);
  a.tiles = one_stage && !(ne && ne->mode == 2 && pair_rows == 0) ? 1 : g_tiles;  // 0: two_tiles_pay decides
  a.layout = static_cast<int>(w.layout);
  a.pair_rows = pair_rows;
  if (ne) {
    a.norm_mode = ne->mode;
    a.norm_eps = ne->eps;
    if (ne->mode == 1) {
      a.norm_tiles = static_cast<int>(gemv_norm_slot_stride(w.rows));
      a.norm_scale = ne->x_scale;
      a.norm_h = ne->h, a.norm_w = ne->w, a.norm_x = ne->x_out, a.norm_slots_out = ne->slots_out;
      a.norm_vec = w.rows % 16 == 0 && reinterpret_cast<uintptr_t>(ne->h) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(ne->w) % 16 == 0;
    } else {
      a.norm_tiles = static_cast<int>(gemv_norm_slot_stride(w.cols));
      a.norm_n = static_cast<int>(w.cols);
      a.norm_scale = 1.f / ne->x_scale;
      a.norm_slots_in = ne->slots_in;
    }
  }
  cudaStream_t s = detail::as_stream(stream);
  switch (spec.scale_kind) {
    case ScaleKind::kFp16:
      return w.cfg.asym ? launch_k<ScaleKind::kFp16, true>(a, s, dec, pre, stages, w.cfg.bits) : launch_k<ScaleKind::kFp16, false>(a, s, dec, pre, stages, w.cfg.bits);
    case ScaleKind::kFp16Razer: return launch_k<ScaleKind::kFp16Razer, false>(a, s, dec, pre, stages, w.cfg.bits);
    case ScaleKind::kE8M0: return launch_k<ScaleKind::kE8M0, false>(a, s, dec, pre, stages, w.cfg.bits);
    case ScaleKind::kE8M0Razer: return launch_k<ScaleKind::kE8M0Razer, false>(a, s, dec, pre, stages, w.cfg.bits);
    case ScaleKind::kE4M3Tensor: return launch_k<ScaleKind::kE4M3Tensor, false>(a, s, dec, pre, stages, w.cfg.bits);
    case ScaleKind::kE3M3RazerTensor: return launch_k<ScaleKind::kE3M3RazerTensor, false>(a, s, dec, pre, stages, w.cfg.bits);
    case ScaleKind::kLutRow: break;  // never uploaded as a DeviceTensor
  }
  throw_error(ErrorKind::kUnsupported, where, "scale kind %d has no GEMV traits", static_cast<int>(spec.scale_kind));
}

}  // namespace

void gemv_fp16_cuda(const DeviceTensor& w, const uint16_t* x, int64_t M, uint16_t* y, void* stream) {
  gemv_launch("gemv_fp16_cuda", w, x, M, y, 0, stream);
}

int64_t gemv_norm_slot_stride(int64_t n) { return ((n + 15) / 16 + 3) / 4 * 4; }

bool gemv_norm_supported(const DeviceTensor& w, int64_t M, int64_t n, std::string* why) {
  if (!gemv_supported(w, why)) return false;
  auto no = [&](const std::string& m) {
    if (why) *why = m;
    return false;
  };
  if (M < 1 || M > kGemvNormMaxM) return no(strprintf("M = %lld (the norm epilogues take 1 .. %d)", static_cast<long long>(M), kGemvNormMaxM));
  if (M * gemv_norm_slot_stride(n) > kGemvNormSlots)
    return no(strprintf("M = %lld rows of %lld elements need %lld slots (at most %d)", static_cast<long long>(M),
                        static_cast<long long>(n), static_cast<long long>(M * gemv_norm_slot_stride(n)), kGemvNormSlots));
  return true;
}

namespace {
bool is_pow2_scale(float s) {
  int e = 0;
  return std::isfinite(s) && s > 0.f && std::frexp(s, &e) == 0.5f;
}
void check_norm(const char* where, const DeviceTensor& w, int64_t M, int64_t n, float x_scale) {
  std::string why;
  if (!gemv_norm_supported(w, M, n, &why)) throw_error(ErrorKind::kUnsupported, where, "%s: %s", w.cfg.label().c_str(), why.c_str());
  if (!is_pow2_scale(x_scale)) throw_error(ErrorKind::kInvalidArgument, where, "x_scale %g is not a power of two", x_scale);
}
}  // namespace

void gemv_add_norm_fp16_cuda(const DeviceTensor& w, const uint16_t* x, int64_t M, uint16_t* h, const uint16_t* norm_w,
                             float x_scale, uint16_t* x_out, float* slots, void* stream) {
  const char* where = "gemv_add_norm_fp16_cuda";
  check_norm(where, w, M, w.rows, x_scale);
  if (!h || !norm_w || !x_out || !slots) throw_error(ErrorKind::kInvalidArgument, where, "null h, norm_w, x_out or slots");
  if (reinterpret_cast<uintptr_t>(slots) % 16) throw_error(ErrorKind::kInvalidArgument, where, "slots are not 16-byte aligned");
  const size_t bytes = static_cast<size_t>(M * w.rows) * 2;
  const size_t x_bytes = static_cast<size_t>(M * w.cols) * 2;
  if (detail::bytes_overlap(h, bytes, x_out, bytes) || detail::bytes_overlap(h, bytes, x, x_bytes) ||
      detail::bytes_overlap(x_out, bytes, x, x_bytes))
    throw_error(ErrorKind::kInvalidArgument, where, "h, x_out and x overlap");
  NormEpi ne;
  ne.mode = 1, ne.h = h, ne.w = norm_w, ne.x_out = x_out, ne.slots_out = slots, ne.x_scale = x_scale;
  gemv_launch(where, w, x, M, nullptr, 0, stream, &ne);
}

namespace {
// The normed products (pair_rows 0: gemv_normed_fp16_cuda; F: the SiLU epilogue, checked by the caller).
void normed_launch(const char* where, const DeviceTensor& w, const uint16_t* x, int64_t M, const float* slots, float eps,
                   float x_scale, uint16_t* y, int pair_rows, void* stream) {
  check_norm(where, w, M, w.cols, x_scale);
  if (!slots || reinterpret_cast<uintptr_t>(slots) % 16) throw_error(ErrorKind::kInvalidArgument, where, "slots null or not 16-byte aligned");
  if (!std::isfinite(eps) || eps < 0.f) throw_error(ErrorKind::kInvalidArgument, where, "eps %g (expected finite, >= 0)", eps);
  NormEpi ne;
  ne.mode = 2, ne.slots_in = slots, ne.eps = eps, ne.x_scale = x_scale;
  gemv_launch(where, w, x, M, y, pair_rows, stream, &ne);
}
}  // namespace

void gemv_normed_fp16_cuda(const DeviceTensor& w, const uint16_t* x, int64_t M, const float* slots, float eps,
                           float x_scale, uint16_t* y, void* stream) {
  normed_launch("gemv_normed_fp16_cuda", w, x, M, slots, eps, x_scale, y, 0, stream);
}

void gemv_normed_silu_mul_fp16_cuda(const DeviceTensor& w, const uint16_t* x, int64_t M, const float* slots, float eps,
                                    float x_scale, uint16_t* act, void* stream) {
  const char* where = "gemv_normed_silu_mul_fp16_cuda";
  std::string why;
  if (!gemv_silu_mul_supported(w, &why)) throw_error(ErrorKind::kUnsupported, where, "%s: %s", w.cfg.label().c_str(), why.c_str());
  normed_launch(where, w, x, M, slots, eps, x_scale, act, static_cast<int>(w.rows / 2), stream);
}

bool gemv_silu_mul_supported(const DeviceTensor& w, std::string* why) {
  if (!gemv_supported(w, why)) return false;
  if (w.rows % 16) {
    if (why)
      *why = strprintf("%lld rows (a [gate; up] tensor of 2 F rows with F a multiple of 8 expected)",
                       static_cast<long long>(w.rows));
    return false;
  }
  return true;
}

void gemv_silu_mul_fp16_cuda(const DeviceTensor& w, const uint16_t* x, int64_t M, uint16_t* act, void* stream) {
  const char* where = "gemv_silu_mul_fp16_cuda";
  std::string why;
  if (!gemv_silu_mul_supported(w, &why)) throw_error(ErrorKind::kUnsupported, where, "%s: %s", w.cfg.label().c_str(), why.c_str());
  gemv_launch(where, w, x, M, act, static_cast<int>(w.rows / 2), stream);
}

void set_gemv_decoder(GemvDecoder d) { g_decoder = d; }
void set_gemv_stages(int stages) { g_stages = stages; }
void set_gemv_tiles(int tiles) { g_tiles = tiles == 1 || tiles == 2 ? tiles : 0; }
void set_gemv_split(int mode) { g_split = mode == 1 || mode == 2 ? mode : 0; }
void set_gemv_post(int mode) { g_post = mode == 1 || mode == 2 ? mode : 0; }
void set_gemv_int8(int mode) { g_int8 = mode == 1 ? 1 : 0; }
void set_gemv_table_cache(bool on) { g_table_cache = on; }

namespace {
// The plan gemv_fp16_cuda(w, x, M, ...) would take now (w supported), for the queries below.
Plan plan_of(const DeviceTensor& w, int64_t M) {
  uint32_t special[kTables], t0;
  return choose_plan(w, grid_tables(w, quantizer::base_grid(w.cfg)), M, special, &t0);
}
}  // namespace

bool gemv_post_scaled(const DeviceTensor& w, int64_t M) {
  if (!gemv_supported(w)) return false;
  const Plan p = plan_of(w, M);
  return post_scaled(p.dec, p.pre, w.cfg.spec().scale_kind) || p.dec == Decode::kNib3I8 || p.dec == Decode::kE2M1XorI8;
}

bool gemv_int8_products(const DeviceTensor& w, int64_t M) { return gemv_int8_x_bits(w, M) != 0; }

int gemv_int8_x_bits(const DeviceTensor& w, int64_t M) {
  if (!gemv_supported(w)) return 0;
  const Decode dec = plan_of(w, M).dec;
  return dec == Decode::kNib3I8 ? 16 : dec == Decode::kE2M1XorI8 ? 15 : 0;
}

const char* gemv_decoder_name(const DeviceTensor& w, int64_t M) {
  if (!gemv_supported(w)) return "unsupported";
  const Decode dec = plan_of(w, M).dec;
  const int stages = choose_stages(w, dec, M);
  if (dec == Decode::kNib3I8) return "nib3-i8/bulk";
  if (dec == Decode::kE2M1XorI8) return "e2m1-xor-i8/1";
  if (stages == kBulkStages) return dec == Decode::kNib3 ? "nib3/bulk" : dec == Decode::kFp3 ? "fp3-bits/bulk" : "int3-bits/bulk";
  const bool two = stages == 2;
  switch (dec) {
    case Decode::kInt4: return two ? "int4-bits/2" : "int4-bits/1";
    case Decode::kE2M1: return two ? "e2m1-bits/2" : "e2m1-bits/1";
    case Decode::kInt3: return two ? "int3-bits/2" : "int3-bits/1";
    case Decode::kFp3: return two ? "fp3-bits/2" : "fp3-bits/1";
    case Decode::kE2M1Xor: return two ? "e2m1-xor/2" : "e2m1-xor/1";
    case Decode::kNib3: return two ? "nib3/2" : "nib3/1";
    case Decode::kPairLut: return two ? "pair-table/2" : "pair-table/1";
    case Decode::kNib3I8: break;  // (above)
    case Decode::kE2M1XorI8: break;
    case Decode::kLut: break;
  }
  return two ? "table/2" : "table/1";
}

}  // namespace razerq::kernels
