#pragma once
// Device side of the dequantization kernel: ONE kernel template for every format, driven by
//   - ScaleTraits<ScaleKind>: how a group's stored scale byte/half decodes to a scale and a
//     special-value index (one specialisation per ScaleKind of quantizer/format.hpp), and
//   - BITS: the code width (unpacking, table size).
// The format itself (grid values, special code, special values) is data: a per-tensor table
// built on the host from quantizer::base_grid(cfg) and cfg.special_values, passed in the
// kernel arguments and staged in shared memory. A new format with an existing scale kind is
// therefore only its registry row (formats.def) plus its base_grid(); the (kind, bits) pairs
// instantiated are read from formats.def at compile time (dequant.cu).
//
// Arithmetic: float64 throughout, with the reference's expression (base - zero) * scale and
// exactly decoded scales, then one rounding to fp16 (__double2half = cvt.rn.f16.f64). The
// kernel is memory-bound (a few bytes per element against one DMUL), so the float64 math costs
// nothing measurable and makes the output equal fp16(dequantize_ref) bit for bit for every
// kind, including NF4 (24-bit grid values x fp16 scale: not exact in float32) and the
// E4M3/E3M3 x fp32 tensor-scale kinds (28-bit scales: not exact in float32).
#include <cuda_fp16.h>
#include <cstdint>

#include "quantizer/format.hpp"
#include "kernels/cuda/gemv_bits3.cuh"
#include "kernels/cuda/gemv_layout.hpp"

namespace razerq::kernels::detail {

using quantizer::ScaleKind;

constexpr int kMaxCodes = 256;  // 2^8: the widest registry format
constexpr int kBlockThreads = 256;
constexpr int kCodesPerThread = 8;  // one chunk = 8 codes = BITS bytes of the row bitstream

struct KernelArgs {
  const uint32_t* codes;
  const uint16_t* scales16;
  const uint8_t* scales8;
  const uint32_t* zeros;
  const uint8_t* sv_index;  // null unless the razer fallback is used
  uint16_t* out;            // fp16 bits [rows, cols]
  int64_t rows;
  int cols;
  int group;
  int groups_per_row;
  int code_words_per_row;
  int zero_words_per_row;
  int chunks_per_row;  // ceil(cols / 8)
  int asym;
  int layout;          // CodeLayout (gemv_layout.hpp): chunk j is at retile_chunk(j, layout)
  int tiled;           // rows stored in 16-row tiles (gemv_layout.hpp tiled_word, tiled_group; BITS 3 / 4 only)
  int group_unit_shift;  // gemv_layout.hpp group_unit_shift(group)
  int pair_order;      // each chunk's codes in pair order (gemv_layout.hpp pair_field; BITS 3 / 4 only)
  int nib3;            // 3-bit codes as nibbles (DeviceTensor::nib3, gemv_bits3.cuh nib3_pack; column order)
  int vector_store;    // cols % 8 == 0 and out 16-byte aligned
  int special_code;    // -1: none
  double tensor_scale;
  uint32_t razer_scale_mask;  // kFp16Razer: the scale's bits in its word (0xbfff: signed, DeviceTensor::razer_xor);
                              // kE8M0Razer / kE3M3RazerTensor: the byte's sign bit (0x80 under razer_xor, else 0)
  int plus_zero_code;         // a code whose weight is +0 whatever the group (razer_xor's code 0), else -1
  double grid[kMaxCodes];  // base value by code (the special code's slot unused)
  double special[4];       // special values by stored index
};

// --- exact decoders (all results are exact doubles) -----------------------------------------
__device__ __forceinline__ double pow2(int e) {  // 2^e, e in the normal double range
  return __longlong_as_double(static_cast<long long>(e + 1023) << 52);
}
__device__ __forceinline__ double fp16_bits_to_double(uint32_t h) {
  return static_cast<double>(__half2float(__ushort_as_half(static_cast<unsigned short>(h))));
}
__device__ __forceinline__ double e4m3_to_double(uint32_t b) {  // OCP E4M3FN, as quantizer::e4m3_to_double
  const int e = (b >> 3) & 15, m = b & 7;
  if (e == 15 && m == 7) return __longlong_as_double(0x7ff8000000000000LL);
  const double v = e == 0 ? m * pow2(-9) : (8 + m) * pow2(e - 10);
  return (b & 0x80) ? -v : v;
}
__device__ __forceinline__ double e3m3_to_double(uint32_t p) {  // as quantizer::e3m3_to_double
  const int e = (p >> 3) & 7, m = p & 7;
  return e == 0 ? m * pow2(-5) : (8 + m) * pow2(e - 6);
}

struct GroupScale {
  double scale;
  int sv;  // special-value index 0..3 (0 when the kind has none)
};

// --- scale traits: one per ScaleKind ------------------------------------------------------
// kSpecial: the kind carries a special-value index; k16: reads scales16 (else scales8).
template <ScaleKind K>
struct ScaleTraits;  // a new ScaleKind needs a specialisation here (and in the host dispatch)

template <>
struct ScaleTraits<ScaleKind::kFp16> {
  static constexpr bool kSpecial = false, k16 = true;
  __device__ static GroupScale decode(const KernelArgs& a, int64_t gi) {
    return {fp16_bits_to_double(a.scales16[gi]), 0};
  }
};
template <>
struct ScaleTraits<ScaleKind::kFp16Razer> {  // bits 15,14 = index, 13..0 = fp16 scale (< 2)
  static constexpr bool kSpecial = true, k16 = true;
  __device__ static GroupScale decode(const KernelArgs& a, int64_t gi) {
    const uint32_t enc = a.scales16[gi];
    if (a.sv_index) return {fp16_bits_to_double(enc), a.sv_index[gi]};  // fallback: plain fp16 + separate index
    return {fp16_bits_to_double(enc & a.razer_scale_mask), static_cast<int>(((enc >> 15) << 1) | ((enc >> 14) & 1))};
  }
};
template <>
struct ScaleTraits<ScaleKind::kE8M0> {  // 2^(e-127), 255 = NaN
  static constexpr bool kSpecial = false, k16 = false;
  __device__ static GroupScale decode(const KernelArgs& a, int64_t gi) {
    const uint32_t e = a.scales8[gi];
    return {e == 255 ? __longlong_as_double(0x7ff8000000000000LL) : pow2(static_cast<int>(e) - 127), 0};
  }
};
template <>
struct ScaleTraits<ScaleKind::kE8M0Razer> {  // bits 7,6 = index, 5..0 = p: 2^(p-31) (razer_xor: bit 7 its sign)
  static constexpr bool kSpecial = true, k16 = false;
  __device__ static GroupScale decode(const KernelArgs& a, int64_t gi) {
    const uint32_t enc = a.scales8[gi];
    const double s = pow2(static_cast<int>(enc & 63) - 31);
    return {enc & a.razer_scale_mask ? -s : s, static_cast<int>(enc >> 6)};
  }
};
template <>
struct ScaleTraits<ScaleKind::kE4M3Tensor> {  // E4M3 x fp32 tensor scale (product exact in double)
  static constexpr bool kSpecial = false, k16 = false;
  __device__ static GroupScale decode(const KernelArgs& a, int64_t gi) {
    return {e4m3_to_double(a.scales8[gi]) * a.tensor_scale, 0};
  }
};
template <>
struct ScaleTraits<ScaleKind::kE3M3RazerTensor> {  // bits 7,6 = index, 5..0 = E3M3, x fp32 tensor scale
  static constexpr bool kSpecial = true, k16 = false;  // (razer_xor: bit 7 the scale's sign)
  __device__ static GroupScale decode(const KernelArgs& a, int64_t gi) {
    const uint32_t enc = a.scales8[gi];
    const double s = e3m3_to_double(enc & 63) * a.tensor_scale;
    return {enc & a.razer_scale_mask ? -s : s, static_cast<int>(enc >> 6)};
  }
};

// One b-bit code of a little-endian row bitstream (as quantizer::unpack_one).
template <int BITS>
__device__ __forceinline__ uint32_t unpack_one(const uint32_t* words, int k) {
  const int pos = k * BITS, w = pos >> 5, off = pos & 31;
  uint64_t v = words[w] >> off;
  if (off + BITS > 32) v |= static_cast<uint64_t>(words[w + 1]) << (32 - off);
  return static_cast<uint32_t>(v) & ((1u << BITS) - 1u);
}

// Codes 8j .. 8j+7 of a row: exactly BITS bytes at byte offset j*BITS of the bitstream (the
// words are little-endian, so the bitstream is a little-endian byte stream). Reads only words
// of this row.
template <int BITS>
__device__ __forceinline__ uint64_t load_chunk(const uint32_t* words, int n_words, int j) {
  const int byte = j * BITS, w = byte >> 2, shift = (byte & 3) * 8;
  const uint64_t lo = words[w] | (w + 1 < n_words ? static_cast<uint64_t>(words[w + 1]) << 32 : 0ull);
  uint64_t v = lo >> shift;
  // BITS bytes from byte offset (byte & 3) exceed 8 bytes only for BITS = 7 (offsets 2, 3).
  if (BITS > 5 && shift > 0 && (shift / 8) + BITS > 8 && w + 2 < n_words)
    v |= static_cast<uint64_t>(words[w + 2]) << (64 - shift);
  return v;
}

struct GroupState {
  double scale, zero, special;
};

template <ScaleKind K, int BITS>
__device__ __forceinline__ GroupState load_group(const KernelArgs& a, const double* s_special,
                                      int64_t row, int g) {
  using T = ScaleTraits<K>;
  const GroupScale gs =
      T::decode(a, a.tiled ? tiled_group(row, g, a.groups_per_row, a.group_unit_shift) : row * a.groups_per_row + g);
  GroupState st;
  st.scale = gs.scale;
  st.zero = a.asym ? static_cast<double>(unpack_one<BITS>(a.zeros + row * a.zero_words_per_row, g)) : 0.0;
  st.special = T::kSpecial ? s_special[gs.sv & 3] : 0.0;
  return st;
}

// Grid: x over 8-code chunks of a row, y over rows (looped when rows exceed the grid).
template <ScaleKind K, int BITS>
__global__ void __launch_bounds__(kBlockThreads) dequant_fp16_kernel(const __grid_constant__ KernelArgs a) {
  using T = ScaleTraits<K>;
  constexpr int kCodes = 1 << BITS;
  constexpr uint32_t kMask = kCodes - 1;
  __shared__ double s_grid[kCodes];
  __shared__ double s_special[4];
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  for (int i = tid; i < kCodes; i += blockDim.x * blockDim.y) s_grid[i] = a.grid[i];
  if (tid < 4) s_special[tid] = a.special[tid];
  __syncthreads();

  const int j = blockIdx.x * blockDim.x + threadIdx.x;  // chunk within the row
  if (j >= a.chunks_per_row) return;                     // (no barrier below)
  const int k0 = j * kCodesPerThread;
  for (int64_t row = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y; row < a.rows;
       row += static_cast<int64_t>(gridDim.y) * blockDim.y) {
    const int pos = retile_chunk(j, static_cast<CodeLayout>(a.layout));
    uint64_t codes;
    if (BITS == 3 && a.nib3) {  // the lane's three words (chunks 4 t .. 4 t + 3 of the block)
      constexpr int bw = block_words(3);
      const int64_t w0 = (pos >> 4) * bw + 3 * ((pos & 15) >> 2);
      uint32_t v[3];
#pragma unroll
      for (int i = 0; i < 3; ++i)
        v[i] = a.codes[a.tiled ? tiled_word(row, w0 + i, a.code_words_per_row, BITS) : row * a.code_words_per_row + w0 + i];
      codes = gemv3::nib3_chunk(v[0], v[1], v[2], pos & 3);
    } else if (BITS == 4 && a.tiled) {  // the chunk inside its row's 128-column block, whose words are contiguous
      constexpr int bw = block_words(4);
      codes = load_chunk<BITS>(a.codes + tiled_word(row, (pos >> 4) * bw, a.code_words_per_row, BITS), bw, pos & 15);
    } else if (BITS == 3 && a.tiled) {  // the block's words in planes (tiled_block_word): the chunk's
      constexpr int bw = block_words(3);  // 24 bits from its one or two words
      const int64_t w0 = (pos >> 4) * bw;
      const int c = pos & 15, w = (3 * c) >> 2;  // the chunk's first word in the block
      const uint32_t v[2] = {a.codes[tiled_word(row, w0 + w, a.code_words_per_row, BITS)],
                             w + 1 < bw ? a.codes[tiled_word(row, w0 + w + 1, a.code_words_per_row, BITS)] : 0u};
      codes = (v[0] | static_cast<uint64_t>(v[1]) << 32) >> (((3 * c) & 3) * 8);
    } else {
      codes = load_chunk<BITS>(a.codes + row * a.code_words_per_row, a.code_words_per_row, pos);
    }
    int g = k0 / a.group;
    int next = (g + 1) * a.group;  // first column of the next group
    GroupState st = load_group<K, BITS>(a, s_special, row, g);
    uint16_t h[kCodesPerThread];
#pragma unroll
    for (int i = 0; i < kCodesPerThread; ++i) {
      const int k = k0 + i;
      if (k == next && k < a.cols) {  // group boundary inside the chunk (k steps by 1: hits next exactly)
        ++g;
        next += a.group;
        st = load_group<K, BITS>(a, s_special, row, g);
      }
      const int field = a.pair_order ? pair_field(i) : i;
      const int code = static_cast<int>((codes >> (field * BITS)) & kMask);
      const double base = (T::kSpecial && code == a.special_code) ? st.special : s_grid[code];
      h[i] = code == a.plus_zero_code ? 0 : __half_as_ushort(__double2half((base - st.zero) * st.scale));
    }
    uint16_t* o = a.out + row * a.cols + k0;
    if (a.vector_store) {  // cols % 8 == 0: the chunk is whole and 16-byte aligned
      uint4 v;
      v.x = h[0] | (static_cast<uint32_t>(h[1]) << 16);
      v.y = h[2] | (static_cast<uint32_t>(h[3]) << 16);
      v.z = h[4] | (static_cast<uint32_t>(h[5]) << 16);
      v.w = h[6] | (static_cast<uint32_t>(h[7]) << 16);
      *reinterpret_cast<uint4*>(o) = v;
    } else {
#pragma unroll
      for (int i = 0; i < kCodesPerThread; ++i)
        if (k0 + i < a.cols) o[i] = h[i];
    }
  }
}

}  // namespace razerq::kernels::detail
