// Fused-dequant GEMV / small-batch GEMM (gemv_cuda.hpp): one kernel template over the scale
// kinds of the registry's 4-bit formats.
//
// Work split. A block (8 warps) owns 16 output channels (rows n0 .. n0+15 of W) and all of K;
// its warps take the 128-column blocks of K round robin and their partial sums are added in
// shared memory at the end. Inside a warp, lane = 4 g + t holds rows n0 + g and n0 + g + 8,
// columns 32 t .. 32 t + 31 of each 128-block: one 16-byte load of 32 contiguous 4-bit codes per
// row, lane and block (whole 32-byte sectors). The same lane loads x[g][those 32 columns] (and
// x[g + 8]).
//
// Tensor cores: mma.sync.m16n8k16 computing y^T = W . x^T (A = 16 decoded weight rows, B = x^T
// with up to 8 rows of x, fp32 accumulators); M = 9..16 takes a second mma on the same A. So
// small M pads nothing. A k-step sums 16 products in any order, so the k-slots of a fragment may
// name any 16 columns as long as A and B agree: lane (g, t) puts columns 32 t + 4 s + {0, 1} in
// slots (2t, 2t+1) and 32 t + 4 s + {2, 3} in slots (2t+8, 2t+9) of step s = 0..7. Its A
// registers for step s are then byte s of each row's 16 code bytes read as two pairs of
// nibbles, and its B registers are x's half2 pairs as they lie in memory: no shuffles.
//
// Decoding: a nibble indexes a table of the format's values in shared memory (one 16-entry
// table per special value for the RaZeR kinds, the special code's slot holding that value; one
// table otherwise; fp16 entries, the four tables covering the 32 banks once), two lookups joined
// by one PRMT into a register; then HSUB2 of the zero point (asym int) and one HMUL2 by the
// group's fp16 inner scale.
// bench/gemv.md has the measurements and what was tried.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "common/error.hpp"
#include "kernels/cuda/cuda_check.cuh"
#include "common/half.hpp"
#include "kernels/cuda/gemv_cuda.hpp"

namespace razerq::kernels {

namespace {

using quantizer::ScaleKind;

constexpr int kWarps = 8;
constexpr int kRowsPerBlock = 16;
constexpr int kTables = 4;  // special-value tables (the plain grid four times without special values)

struct GemvArgs {
  const uint32_t* codes;     // [N, K/8]
  const uint16_t* scales16;  // fp16 kinds
  const uint8_t* scales8;    // 8-bit kinds
  const uint32_t* zeros;     // asym: 4-bit zero points, [N, zero_words]
  const uint8_t* sv_index;   // razer fallback: special-value index per group (else null)
  const uint16_t* x;         // [M, K]
  uint16_t* y;               // [M, N]
  int N, K, M;
  int group_shift, groups_per_row, zero_words;  // group = 1 << group_shift
  float outer;               // per-tensor factor applied to the fp32 sums (NV kinds), else 1
  uint16_t table[kTables * 16];  // fp16 value by table * 16 + code
};

__device__ __forceinline__ uint4 ld_stream(const void* p) {  // read once: do not keep in L1
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
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

__device__ __forceinline__ uint32_t h2u(__half2 h) { return *reinterpret_cast<uint32_t*>(&h); }
__device__ __forceinline__ __half2 u2h(uint32_t u) { return *reinterpret_cast<__half2*>(&u); }

// fp16 bits of 2^e, e in [-24, 15] (upload() checked the range).
__device__ __forceinline__ uint32_t pow2_half_bits(int e) {
  return e >= -14 ? static_cast<uint32_t>(e + 15) << 10 : 1u << (e + 24);
}
// fp16 bits of an E4M3 (OCP, bias 7) value: exact (E4M3 lies inside fp16's range).
__device__ __forceinline__ uint32_t e4m3_half_bits(uint32_t b) {
  const uint32_t e = (b >> 3) & 15, m = b & 7, sign = (b & 0x80u) << 8;
  if (e != 0) return sign | ((e + 8) << 10) | (m << 7);
  return sign | __half_as_ushort(__float2half_rn(static_cast<float>(m) * 0x1p-9f));  // subnormal E4M3
}
// fp16 bits of an E3M3 payload (razer.md 4.3: e >= 1: 2^(e-3)(1 + m/8); e = 0: m/32): exact.
__device__ __forceinline__ uint32_t e3m3_half_bits(uint32_t p) {
  const uint32_t e = (p >> 3) & 7, m = p & 7;
  if (e != 0) return ((e + 12) << 10) | (m << 7);
  return __half_as_ushort(__float2half_rn(static_cast<float>(m) * 0x1p-5f));
}

// A group's inner scale (fp16 bits) and special-value table (0..3).
struct Group {
  uint32_t scale;  // fp16 bits
  uint32_t table;  // byte offset of the value table in shared memory: 32 * special index
};

template <ScaleKind K>
__device__ __forceinline__ Group load_group(const GemvArgs& a, int64_t gi) {
  if constexpr (K == ScaleKind::kFp16) {
    return {a.scales16[gi], 0};
  } else if constexpr (K == ScaleKind::kFp16Razer) {
    const uint32_t enc = a.scales16[gi];
    if (a.sv_index) return {enc, 32u * a.sv_index[gi]};
    return {enc & 0x3fffu, 32u * (((enc >> 15) << 1) | ((enc >> 14) & 1))};
  } else if constexpr (K == ScaleKind::kE8M0) {
    return {pow2_half_bits(static_cast<int>(a.scales8[gi]) - 127), 0};
  } else if constexpr (K == ScaleKind::kE8M0Razer) {
    const uint32_t enc = a.scales8[gi];
    return {pow2_half_bits(static_cast<int>(enc & 63) - 31), 32u * (enc >> 6)};
  } else if constexpr (K == ScaleKind::kE4M3Tensor) {
    return {e4m3_half_bits(a.scales8[gi]), 0};
  } else {
    static_assert(K == ScaleKind::kE3M3RazerTensor, "a new scale kind needs a case here");
    const uint32_t enc = a.scales8[gi];
    return {e3m3_half_bits(enc & 63), 32u * (enc >> 6)};
  }
}

__device__ __forceinline__ uint32_t lds16(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.u16 %0, [%1];" : "=r"(v) : "r"(addr));
  return v;
}

// One A register: the two nibbles of byte `sh / 8` of q, looked up, joined, zero-shifted,
// scaled. `tb` is the shared-memory address of the group's 16-entry fp16 table (32-byte
// aligned, so the nibble's byte offset is OR-ed in): each lookup is one shift, one LOP3 and one
// LDS.U16; q2 = q << 1 saves the shift of the low nibble of byte 0. The four tables of the
// RaZeR kinds fill the 32 banks once, so lanes reading different tables never conflict.
template <bool ASYM>
__device__ __forceinline__ uint32_t decode_pair(uint32_t q, uint32_t q2, int sh, uint32_t tb, __half2 scale,
                                                __half2 zero) {
  const uint32_t lo = lds16(((q2 >> sh) & 0x1eu) | tb);
  const uint32_t hi = lds16(((q >> (sh + 3)) & 0x1eu) | tb);
  __half2 v = u2h(__byte_perm(lo, hi, 0x5410));
  if constexpr (ASYM) v = __hsub2(v, zero);
  return h2u(__hmul2(v, scale));
}

// Per lane and 128-column block: the decoded group parameters of one weight row.
struct RowGroup {
  __half2 scale[2];  // columns 0..15 and 16..31 of the lane's 32 (equal unless G16)
  __half2 zero[2];
  uint32_t tb[2];    // shared address of the value table
};

template <ScaleKind K, bool ASYM, bool G16>
__device__ __forceinline__ RowGroup row_group(const GemvArgs& a, const Group& g0, const Group& g1, int n, bool ok,
                                              int col, uint32_t lut_addr) {
  RowGroup r;
  r.scale[0] = u2h(g0.scale | (g0.scale << 16));
  r.scale[1] = G16 ? u2h(g1.scale | (g1.scale << 16)) : r.scale[0];
  r.tb[0] = lut_addr | g0.table;
  r.tb[1] = G16 ? (lut_addr | g1.table) : r.tb[0];
  r.zero[0] = r.zero[1] = __float2half2_rn(0.f);
  if constexpr (ASYM) {
    const int gl = col >> a.group_shift;
    const uint32_t zw = ok ? a.zeros[static_cast<int64_t>(n) * a.zero_words + (gl >> 3)] : 0u;
    r.zero[0] = r.zero[1] = __half2half2(__uint2half_rn((zw >> ((gl & 7) * 4)) & 15u));
  }
  return r;
}

// The tensor-core product is taken transposed, y^T = W . x^T: A = 16 weight rows (decoded),
// B = x^T (M <= 8 columns per mma; a second mma for rows 8..15 of x), so no operand is padded
// with zeros for small M. Lane = 4 g + t holds weight rows n0 + g and n0 + g + 8 and x row g
// (and g + 8), columns 32 t .. 32 t + 31 of each 128-block.
// MT = 1: M <= 8; MT = 2: M <= 16. G16: 16-column groups (two per lane and block).
template <ScaleKind K, bool ASYM, int MT, bool G16>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const __grid_constant__ GemvArgs a) {
  __shared__ __align__(128) uint16_t lut[kTables * 16];  // 4 tables x 32 bytes: the 32 banks once
  __shared__ float red[kWarps][4 * MT][32];  // partial sums: [warp][accumulator][lane]
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  if (tid < kTables * 16) lut[tid] = a.table[tid];
  __syncthreads();
  const uint32_t lut_addr = static_cast<uint32_t>(__cvta_generic_to_shared(lut));  // 128-byte aligned

  const int g = lane >> 2, t = lane & 3;
  const int nA = blockIdx.x * kRowsPerBlock + g, nB = nA + 8;
  const bool okA = nA < a.N, okB = nB < a.N;
  const int kblocks = a.K >> 7;
  const uint32_t* wA = a.codes + static_cast<int64_t>(okA ? nA : 0) * (a.K >> 3);
  const uint32_t* wB = a.codes + static_cast<int64_t>(okB ? nB : 0) * (a.K >> 3);
  const bool m0_ok = g < a.M, m1_ok = MT == 2 && g + 8 < a.M;
  const uint16_t* x0 = a.x + static_cast<int64_t>(m0_ok ? g : 0) * a.K;
  const uint16_t* x1 = a.x + static_cast<int64_t>(m1_ok ? g + 8 : 0) * a.K;

  float acc0[4] = {0.f, 0.f, 0.f, 0.f}, acc1[4] = {0.f, 0.f, 0.f, 0.f};
  // Software pipeline: the weights and group scales of the next block this warp takes are
  // loaded before the current block is decoded.
  auto load_q = [&](const uint32_t* w, bool ok, int kb) {
    return ok && kb < kblocks ? ld_stream(w + kb * 16 + t * 4) : make_uint4(0, 0, 0, 0);
  };
  auto load_g = [&](int n, bool ok, int kb, int second) {
    const int64_t gi = static_cast<int64_t>(n) * a.groups_per_row + ((kb * 128 + t * 32) >> a.group_shift) + second;
    return ok && kb < kblocks ? load_group<K>(a, gi) : Group{0, 0};
  };
  uint4 qA_next = load_q(wA, okA, warp), qB_next = load_q(wB, okB, warp);
  Group gA0n = load_g(nA, okA, warp, 0), gB0n = load_g(nB, okB, warp, 0);
  Group gA1n = G16 ? load_g(nA, okA, warp, 1) : gA0n, gB1n = G16 ? load_g(nB, okB, warp, 1) : gB0n;
  for (int kb = warp; kb < kblocks; kb += kWarps) {
    const uint4 qA = qA_next, qB = qB_next;
    const Group gA0 = gA0n, gA1 = gA1n, gB0 = gB0n, gB1 = gB1n;
    qA_next = load_q(wA, okA, kb + kWarps);
    qB_next = load_q(wB, okB, kb + kWarps);
    gA0n = load_g(nA, okA, kb + kWarps, 0);
    gB0n = load_g(nB, okB, kb + kWarps, 0);
    if constexpr (G16) {
      gA1n = load_g(nA, okA, kb + kWarps, 1);
      gB1n = load_g(nB, okB, kb + kWarps, 1);
    }
    const int col = kb * 128 + t * 32;  // first of this lane's 32 columns
    const RowGroup rA = row_group<K, ASYM, G16>(a, gA0, gA1, nA, okA, col, lut_addr);
    const RowGroup rB = row_group<K, ASYM, G16>(a, gB0, gB1, nB, okB, col, lut_addr);
    // x: 32 halves of row g (and g + 8) at these columns, as 16 half2 pairs.
    uint32_t xa[16], xb[16];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 v = m0_ok ? __ldg(reinterpret_cast<const uint4*>(x0 + col) + i) : make_uint4(0, 0, 0, 0);
      xa[4 * i] = v.x, xa[4 * i + 1] = v.y, xa[4 * i + 2] = v.z, xa[4 * i + 3] = v.w;
      if constexpr (MT == 2) {
        const uint4 u = m1_ok ? __ldg(reinterpret_cast<const uint4*>(x1 + col) + i) : make_uint4(0, 0, 0, 0);
        xb[4 * i] = u.x, xb[4 * i + 1] = u.y, xb[4 * i + 2] = u.z, xb[4 * i + 3] = u.w;
      }
    }
    const uint32_t wa[4] = {qA.x, qA.y, qA.z, qA.w}, wb[4] = {qB.x, qB.y, qB.z, qB.w};
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int hlf = G16 && w >= 2 ? 1 : 0;  // columns 16..31: the second group
      const uint32_t qa2 = wa[w] << 1, qb2 = wb[w] << 1;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int step = 2 * w + h;  // columns 4 step .. 4 step + 3 of the lane's 32
        const uint32_t a0 = decode_pair<ASYM>(wa[w], qa2, 16 * h, rA.tb[hlf], rA.scale[hlf], rA.zero[hlf]);
        const uint32_t a1 = decode_pair<ASYM>(wb[w], qb2, 16 * h, rB.tb[hlf], rB.scale[hlf], rB.zero[hlf]);
        const uint32_t a2 = decode_pair<ASYM>(wa[w], qa2, 16 * h + 8, rA.tb[hlf], rA.scale[hlf], rA.zero[hlf]);
        const uint32_t a3 = decode_pair<ASYM>(wb[w], qb2, 16 * h + 8, rB.tb[hlf], rB.scale[hlf], rB.zero[hlf]);
        mma16816(acc0, a0, a1, a2, a3, xa[2 * step], xa[2 * step + 1]);
        if constexpr (MT == 2) mma16816(acc1, a0, a1, a2, a3, xb[2 * step], xb[2 * step + 1]);
      }
    }
  }
  // Sum the warps' accumulators; warp 0 writes. c0, c1: weight row g, x rows 2t, 2t+1;
  // c2, c3: weight row g + 8. acc1: x rows 8 + 2t, 8 + 2t + 1.
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    red[warp][i][lane] = acc0[i];
    if constexpr (MT == 2) red[warp][4 + i][lane] = acc1[i];
  }
  __syncthreads();
  if (warp != 0) return;
#pragma unroll
  for (int i = 0; i < 4 * MT; ++i) {
    float sum = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += red[w][i][lane];
    const int n = blockIdx.x * kRowsPerBlock + g + ((i & 2) ? 8 : 0);
    const int m = 2 * t + (i & 1) + (i >= 4 ? 8 : 0);
    if (m < a.M && n < a.N) a.y[static_cast<int64_t>(m) * a.N + n] = __half_as_ushort(__float2half_rn(sum * a.outer));
  }
}

constexpr bool is_tensor_kind(ScaleKind k) { return k == ScaleKind::kE4M3Tensor || k == ScaleKind::kE3M3RazerTensor; }

template <ScaleKind K, bool ASYM>
void launch_k(const GemvArgs& a, cudaStream_t s) {
  const dim3 grid((a.N + kRowsPerBlock - 1) / kRowsPerBlock), block(kWarps * 32);
  const bool g16 = a.group_shift == 4;
  if constexpr (is_tensor_kind(K)) {  // NV kinds: the group is 16
    if (a.M <= 8) gemv_kernel<K, ASYM, 1, true><<<grid, block, 0, s>>>(a);
    else gemv_kernel<K, ASYM, 2, true><<<grid, block, 0, s>>>(a);
  } else {
    if (g16) throw_error(ErrorKind::kUnsupported, "gemv_fp16_cuda", "group 16 is supported for the NV kinds only");
    if (a.M <= 8) gemv_kernel<K, ASYM, 1, false><<<grid, block, 0, s>>>(a);
    else gemv_kernel<K, ASYM, 2, false><<<grid, block, 0, s>>>(a);
  }
  RAZERQ_CUDA(cudaGetLastError());
}

}  // namespace

bool gemv_supported(const DeviceTensor& w, std::string* why) {
  auto no = [&](const std::string& m) {
    if (why) *why = m;
    return false;
  };
  if (!w.storage || !w.codes) return no("tensor is not uploaded");
  if (w.cfg.bits != 4) return no(strprintf("%d-bit codes (the fused kernel takes 4-bit formats)", w.cfg.bits));
  if (w.cols % 128) return no(strprintf("K = %lld is not a multiple of 128", static_cast<long long>(w.cols)));
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

void gemv_fp16_cuda(const DeviceTensor& w, const uint16_t* x, int64_t M, uint16_t* y, void* stream) {
  const char* where = "gemv_fp16_cuda";
  std::string why;
  if (!gemv_supported(w, &why)) throw_error(ErrorKind::kUnsupported, where, "%s: %s", w.cfg.label().c_str(), why.c_str());
  if (M < 1 || M > kGemvMaxM)
    throw_error(ErrorKind::kInvalidArgument, where, "M = %lld (expected 1 .. %d)", static_cast<long long>(M), kGemvMaxM);
  if (!x || !y) throw_error(ErrorKind::kInvalidArgument, where, "null x or y");
  if (reinterpret_cast<uintptr_t>(x) % 16) throw_error(ErrorKind::kInvalidArgument, where, "x is not 16-byte aligned");
  if (reinterpret_cast<uintptr_t>(y) % 2) throw_error(ErrorKind::kInvalidArgument, where, "y is not 2-byte aligned");

  GemvArgs a{};
  a.codes = w.codes, a.scales16 = w.scales16, a.scales8 = w.scales8, a.zeros = w.zeros, a.sv_index = w.sv_index;
  a.x = x, a.y = y;
  a.N = static_cast<int>(w.rows), a.K = static_cast<int>(w.cols), a.M = static_cast<int>(M);
  a.group_shift = 0;
  while ((1 << a.group_shift) < w.cfg.group) ++a.group_shift;
  a.groups_per_row = static_cast<int>(w.groups_per_row);
  a.zero_words = static_cast<int>(w.zero_words_per_row);
  const quantizer::FormatSpec& spec = w.cfg.spec();
  a.outer = is_tensor_kind(spec.scale_kind) ? w.tensor_scale : 1.0f;
  // The value tables: the registry's grid in fp16; table i has the special code's slot set to
  // special value i (RaZeR kinds), else all four tables are the plain grid.
  const quantizer::Grid grid = quantizer::base_grid(w.cfg);
  if (grid.value.size() != 16) throw_error(ErrorKind::kInternal, where, "4-bit grid of %zu values", grid.value.size());
  for (int tbl = 0; tbl < kTables; ++tbl)
    for (int c = 0; c < 16; ++c) {
      double v = grid.value[c];
      if (spec.has_special && c == grid.special_code) v = w.cfg.special_values[tbl];
      a.table[tbl * 16 + c] = razerq::double_to_fp16(v);
    }
  cudaStream_t s = detail::as_stream(stream);
  switch (spec.scale_kind) {
    case ScaleKind::kFp16:
      return w.cfg.asym ? launch_k<ScaleKind::kFp16, true>(a, s) : launch_k<ScaleKind::kFp16, false>(a, s);
    case ScaleKind::kFp16Razer: return launch_k<ScaleKind::kFp16Razer, false>(a, s);
    case ScaleKind::kE8M0: return launch_k<ScaleKind::kE8M0, false>(a, s);
    case ScaleKind::kE8M0Razer: return launch_k<ScaleKind::kE8M0Razer, false>(a, s);
    case ScaleKind::kE4M3Tensor: return launch_k<ScaleKind::kE4M3Tensor, false>(a, s);
    case ScaleKind::kE3M3RazerTensor: return launch_k<ScaleKind::kE3M3RazerTensor, false>(a, s);
  }
  throw_error(ErrorKind::kUnsupported, where, "scale kind %d has no GEMV traits", static_cast<int>(spec.scale_kind));
}

}  // namespace razerq::kernels
