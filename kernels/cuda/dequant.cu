// Host side of the CUDA dequantization: upload, the per-tensor grid table, the dispatch of
// the one kernel template (dequant.cuh) over (ScaleKind, bits), and checked CUDA calls.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <climits>
#include <cstring>
#include <utility>

#include "common/error.hpp"
#include "common/half.hpp"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/dequant_cuda.hpp"
#include "kernels/cuda/device_info.cuh"
#include "kernels/cuda/gemv_bits3.cuh"
#include "kernels/cuda/gemv_e2m1.cuh"
#include "kernels/cuda/gemv_layout.hpp"
#include "quantizer/pack.hpp"

namespace razerq::kernels {

namespace {

using detail::as_stream;
using quantizer::ScaleKind;

// --- the registry, at compile time: which (scale kind, bits) pairs exist ------------------
struct KindBits {
  ScaleKind kind;
  int min_bits, max_bits;
};
constexpr KindBits kRegistry[] = {
#define RAZERQ_FORMAT(id, name, minb, maxb, defb, defg, fixg, scale, special, asym, desc) \
  {ScaleKind::scale, minb, maxb},
#include "quantizer/formats.def"
#undef RAZERQ_FORMAT
};
constexpr bool registry_uses(ScaleKind k, int bits) {
  for (const KindBits& e : kRegistry)
    if (e.kind == k && bits >= e.min_bits && bits <= e.max_bits) return true;
  return false;
}

struct Launch {
  dim3 grid, block;
};

// Whether upload() re-encodes a tensor's codes for the GEMV's two-table RaZeR decoder
// (DeviceTensor::razer_xor, gemv_e2m1.cuh): 4-bit RaZeR (fp16 scales with the index in the scale
// word, or mxfp4-razer's / nvfp4-razer's scale bytes with the index in bits 7, 6), the E2M1 grid
// with the special code 8, special values 0, 1 positive and 2, 3 negative (the index's high bit is
// then the sign of the group's special value), each x 2^-14 an fp16 with a zero low byte (its high
// byte goes into the table), whole 128-column blocks and groups of whole 8-code words
// (razer_xor_codes).
bool razer_xor_applies(const quantizer::QuantizedTensor& q) {
  const quantizer::FormatConfig& c = q.cfg;
  if (!is_razer_kind(c.spec().scale_kind) || c.bits != 4 || c.asym || !q.sv_index.empty()) return false;
  if (!pair_order_applies(c.bits, q.cols) || c.group % 8 != 0 || c.special_values.size() != 4) return false;
  const quantizer::Grid grid = quantizer::base_grid(c);
  if (grid.special_code != 8 || !gemv4::is_e2m1_grid(grid.value, grid.special_code)) return false;
  for (int i = 0; i < 4; ++i) {
    const double v = c.special_values[static_cast<size_t>(i)];
    if ((i < 2) != (v > 0) || v == 0 || gemv4::fp16_high_byte_2m14(std::fabs(v)) < 0) return false;
  }
  return true;
}

// The codes of q (row bitstreams, on-disk order) re-encoded by gemv4::xor_code: a group whose
// special-value index is 2 or 3 (negative special value: the scale entry's top bit, bit 15 of
// an fp16 razer word or bit 7 of an MX / NV razer byte) negated. A word's 8 codes share one
// group (razer_xor_applies: groups of whole words), so a byte (two codes) goes through one of two
// 256-entry tables.
std::vector<uint32_t> razer_xor_codes(const quantizer::QuantizedTensor& q) {
  uint8_t table[2][256];
  for (int flip = 0; flip < 2; ++flip)
    for (uint32_t b = 0; b < 256; ++b)
      table[flip][b] = static_cast<uint8_t>(gemv4::xor_code(b & 15u, flip != 0) | (gemv4::xor_code(b >> 4, flip != 0) << 4));
  std::vector<uint32_t> out(q.codes.size());
  const int64_t group = q.cfg.group;
  const bool s16 = q.cfg.spec().scale_kind == ScaleKind::kFp16Razer;
  for (int64_t r = 0; r < q.rows; ++r) {
    const uint32_t* src = q.codes.data() + r * q.code_words_per_row;
    uint32_t* dst = out.data() + r * q.code_words_per_row;
    const int64_t g0 = r * q.groups_per_row;
    for (int64_t w = 0; w < q.code_words_per_row; ++w) {
      const int64_t gi = g0 + (w * 8) / group;
      const uint8_t* t = table[s16 ? q.scales16[static_cast<size_t>(gi)] >> 15 : q.scales8[static_cast<size_t>(gi)] >> 7];
      const uint32_t v = src[w];
      dst[w] = t[v & 0xffu] | (static_cast<uint32_t>(t[(v >> 8) & 0xffu]) << 8) |
               (static_cast<uint32_t>(t[(v >> 16) & 0xffu]) << 16) | (static_cast<uint32_t>(t[v >> 24]) << 24);
    }
  }
  return out;
}

// Whether upload() stores a tensor's 3-bit codes as nibbles (DeviceTensor::nib3, gemv_bits3.cuh)
// for the GEMV's lookup decoder and its int8 products: a 3-bit grid with fp16 scales (razer3: a
// special value, its index in the scale word; fp3, int3 sym: none; int3 asym: the codes 0..7,
// its zero points then also as bytes, DeviceTensor::zero_bytes) whose values (and special values)
// x 2^-14 are fp16 with a zero low byte (gemv3::nib3_tables; the defaults are), whole 128-column
// blocks. (fp3 and int3 sym kept the bitstream until the int8 products: the lookup decoder alone
// was no faster than their bit decoders, bench/gemv.md twenty-first session; since the
// twenty-eighth they take the int8 products at M = 1 like razer3, and int3 asym since the
// twenty-ninth.)
bool nib3_applies(const quantizer::QuantizedTensor& q) {
  const quantizer::FormatConfig& c = q.cfg;
  const ScaleKind k = c.spec().scale_kind;
  if (c.bits != 3 || !q.sv_index.empty() || !pair_order_applies(c.bits, q.cols)) return false;
  if (c.asym && (c.id != quantizer::FormatId::kInt || q.zeros.empty())) return false;  // (int: grid 0..7)
  if (k != ScaleKind::kFp16Razer && k != ScaleKind::kFp16) return false;
  const quantizer::Grid grid = quantizer::base_grid(c);
  if ((k == ScaleKind::kFp16Razer) != (grid.special_code >= 0)) return false;
  gemv3::Nib3Tables t;
  return gemv3::nib3_tables(grid.value, grid.special_code, c.special_values, &t);
}

// Whether upload() keeps a tensor's 4-bit codes in column order for the GEMV's pair-table
// decoder (DeviceTensor::pair_table): plain fp16 scales, symmetric, a grid of 16 values without
// a special code that no bit decoder takes (not int, not E2M1: nf4), whole 128-column blocks.
bool pair_table_applies(const quantizer::QuantizedTensor& q) {
  const quantizer::FormatConfig& c = q.cfg;
  if (c.bits != 4 || c.asym || c.id == quantizer::FormatId::kInt || c.spec().scale_kind != ScaleKind::kFp16) return false;
  if (!pair_order_applies(c.bits, q.cols)) return false;
  const quantizer::Grid grid = quantizer::base_grid(c);
  return grid.special_code < 0 && grid.value.size() == 16 && !gemv4::is_e2m1_grid(grid.value, -1);
}

// `rows` rows of 3-bit codes (`words_per_row` words, whole 128-column blocks of 12 words, the
// chunks in column order) with each lane's 12 bytes (words 3 t .. 3 t + 2 of a block: chunks
// 4 t .. 4 t + 3) as gemv3::nib3_pack stores them.
std::vector<uint32_t> nib3_codes(const uint32_t* words, int64_t rows, int64_t words_per_row) {
  std::vector<uint32_t> out(static_cast<size_t>(rows * words_per_row));
  for (int64_t i = 0; i + 3 <= rows * words_per_row; i += 3) {  // a row is whole lanes' words
    const uint64_t lo = words[i] | static_cast<uint64_t>(words[i + 1]) << 32;
    const uint64_t hi = words[i + 1] >> 16 | static_cast<uint64_t>(words[i + 2]) << 16;  // bits 48..95
    const uint32_t c[4] = {static_cast<uint32_t>(lo & 0xffffffu), static_cast<uint32_t>((lo >> 24) & 0xffffffu),
                           static_cast<uint32_t>(hi & 0xffffffu), static_cast<uint32_t>((hi >> 24) & 0xffffffu)};
    uint32_t w[3];
    gemv3::nib3_pack(c, w);
    out[static_cast<size_t>(i)] = w[0], out[static_cast<size_t>(i + 1)] = w[1], out[static_cast<size_t>(i + 2)] = w[2];
  }
  return out;
}

Launch launch_shape(const detail::KernelArgs& a) {
  // x: chunks of 8 codes along the row (a warp multiple, up to the block); y: rows.
  const int chunks = a.chunks_per_row;
  const int bx = std::min(detail::kBlockThreads, (chunks + 31) / 32 * 32);
  const int by = detail::kBlockThreads / bx;
  Launch l;
  l.block = dim3(static_cast<unsigned>(bx), static_cast<unsigned>(by));
  const int64_t gx = (chunks + bx - 1) / bx;
  const int64_t gy = std::min<int64_t>((a.rows + by - 1) / by, 65535);  // the kernel loops over further rows
  l.grid = dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
  return l;
}

template <ScaleKind K, int BITS>
void launch_kb(const detail::KernelArgs& a, cudaStream_t s) {
  if constexpr (registry_uses(K, BITS)) {
    const Launch l = launch_shape(a);
    detail::dequant_fp16_kernel<K, BITS><<<l.grid, l.block, 0, s>>>(a);
    RAZERQ_CUDA(cudaGetLastError());
  } else {
    throw_error(ErrorKind::kUnsupported, "dequantize_fp16_cuda", "no registry format has scale kind %d at %d bits",
                static_cast<int>(K), BITS);
  }
}

template <ScaleKind K>
void launch_kind(const detail::KernelArgs& a, int bits, cudaStream_t s) {
  switch (bits) {
    case 2: return launch_kb<K, 2>(a, s);
    case 3: return launch_kb<K, 3>(a, s);
    case 4: return launch_kb<K, 4>(a, s);
    case 5: return launch_kb<K, 5>(a, s);
    case 6: return launch_kb<K, 6>(a, s);
    case 7: return launch_kb<K, 7>(a, s);
    case 8: return launch_kb<K, 8>(a, s);
    default:
      throw_error(ErrorKind::kUnsupported, "dequantize_fp16_cuda", "%d-bit codes are not supported (2..8)", bits);
  }
}

void launch(const detail::KernelArgs& a, ScaleKind kind, int bits, cudaStream_t s) {
  switch (kind) {
    case ScaleKind::kFp16: return launch_kind<ScaleKind::kFp16>(a, bits, s);
    case ScaleKind::kFp16Razer: return launch_kind<ScaleKind::kFp16Razer>(a, bits, s);
    case ScaleKind::kE8M0: return launch_kind<ScaleKind::kE8M0>(a, bits, s);
    case ScaleKind::kE8M0Razer: return launch_kind<ScaleKind::kE8M0Razer>(a, bits, s);
    case ScaleKind::kE4M3Tensor: return launch_kind<ScaleKind::kE4M3Tensor>(a, bits, s);
    case ScaleKind::kE3M3RazerTensor: return launch_kind<ScaleKind::kE3M3RazerTensor>(a, bits, s);
    case ScaleKind::kLutRow: break;  // refused by upload()
  }
  throw_error(ErrorKind::kUnsupported, "dequantize_fp16_cuda", "scale kind %d has no kernel traits",
              static_cast<int>(kind));
}

CodeLayout g_upload_layout = CodeLayout::kAuto;
bool g_upload_tiling = true;
bool g_upload_razer_xor = true;
bool g_upload_nib3 = true;
bool g_upload_pair_table = true;

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

// A DeviceTensor's one allocation: its kArrays arrays in the order codes, scales16, scales8, zeros,
// sv_index, zero_bytes, each at a 256-byte aligned offset (bytes[i] == 0: absent, its pointer null).
// Sets t.storage, t.storage_bytes and the pointers (the addresses to copy into).
constexpr int kArrays = 6;
void allocate_arrays(DeviceTensor& t, const size_t (&bytes)[kArrays]) {
  size_t offset[kArrays], total = 0;
  for (int i = 0; i < kArrays; ++i) {
    offset[i] = total;
    total += align256(bytes[i]);
  }
  RAZERQ_CUDA(cudaMalloc(&t.storage, std::max<size_t>(total, 256)));
  t.storage_bytes = total;
  char* base = static_cast<char*>(t.storage);
  auto at = [&](int i) -> void* { return bytes[i] ? base + offset[i] : nullptr; };
  t.codes = static_cast<const uint32_t*>(at(0));
  t.scales16 = static_cast<const uint16_t*>(at(1));
  t.scales8 = static_cast<const uint8_t*>(at(2));
  t.zeros = static_cast<const uint32_t*>(at(3));
  t.sv_index = static_cast<const uint8_t*>(at(4));
  t.zero_bytes = static_cast<const uint8_t*>(at(5));
}
// The arrays in that order.
std::array<const void*, kArrays> arrays(const DeviceTensor& t) {
  return {t.codes, t.scales16, t.scales8, t.zeros, t.sv_index, t.zero_bytes};
}
void clear_arrays(DeviceTensor& t) {
  t.codes = nullptr, t.scales16 = nullptr, t.scales8 = nullptr, t.zeros = nullptr, t.sv_index = nullptr;
  t.zero_bytes = nullptr;
}

}  // namespace

// --- device queries ---------------------------------------------------------------------
bool cuda_device_available(std::string* why) {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    if (why) *why = strprintf("no usable CUDA device: cudaGetDeviceCount: %s", cudaGetErrorString(err));
    (void)cudaGetLastError();
    return false;
  }
  if (n == 0) {
    if (why) *why = "no CUDA device present";
    return false;
  }
  // Is there code for this device (sm_90 SASS, or PTX the driver can compile)?
  cudaFuncAttributes attr;
  err = cudaFuncGetAttributes(&attr, detail::dequant_fp16_kernel<ScaleKind::kFp16, 4>);
  if (err != cudaSuccess) {
    if (why) *why = strprintf("the kernels cannot run on this device: %s", cudaGetErrorString(err));
    (void)cudaGetLastError();
    return false;
  }
  return true;
}

std::string cuda_device_description() {
  int dev = 0;
  RAZERQ_CUDA(cudaGetDevice(&dev));
  cudaDeviceProp p;
  RAZERQ_CUDA(cudaGetDeviceProperties(&p, dev));
  int drv = 0, rt = 0;
  RAZERQ_CUDA(cudaDriverGetVersion(&drv));
  RAZERQ_CUDA(cudaRuntimeGetVersion(&rt));
  return strprintf("%s (sm_%d%d, %d SMs, %.1f GiB, driver %d.%d, runtime %d.%d)", p.name, p.major, p.minor,
                   p.multiProcessorCount, p.totalGlobalMem / 1073741824.0, drv / 1000, (drv % 1000) / 10,
                   rt / 1000, (rt % 1000) / 10);
}

void cuda_synchronize(void* stream) { RAZERQ_CUDA(cudaStreamSynchronize(as_stream(stream))); }

// --- DeviceTensor -------------------------------------------------------------------------
DeviceTensor::DeviceTensor(DeviceTensor&& o) noexcept { *this = std::move(o); }

DeviceTensor& DeviceTensor::operator=(DeviceTensor&& o) noexcept {
  if (this != &o) {
    if (storage) (void)cudaFree(storage);
    cfg = std::move(o.cfg);
    rows = o.rows, cols = o.cols;
    groups_per_row = o.groups_per_row, code_words_per_row = o.code_words_per_row,
    zero_words_per_row = o.zero_words_per_row;
    codes = o.codes, scales16 = o.scales16, scales8 = o.scales8, zeros = o.zeros, sv_index = o.sv_index;
    zero_bytes = o.zero_bytes;
    tensor_scale = o.tensor_scale;
    scales_fit_fp16 = o.scales_fit_fp16;
    max_inner_scale = o.max_inner_scale;
    layout = o.layout;
    tiled = o.tiled;
    pair_order = o.pair_order;
    razer_xor = o.razer_xor;
    nib3 = o.nib3;
    pair_table = o.pair_table;
    storage = o.storage, storage_bytes = o.storage_bytes;
    o.storage = nullptr, o.storage_bytes = 0;
    clear_arrays(o);
  }
  return *this;
}

DeviceTensor::~DeviceTensor() {
  if (storage) (void)cudaFree(storage);  // no throwing from a destructor
}

void free(DeviceTensor& t) {
  if (t.storage) RAZERQ_CUDA(cudaFree(t.storage));
  t.storage = nullptr, t.storage_bytes = 0;
  clear_arrays(t);
}

DeviceTensor concat_rows(const std::vector<const DeviceTensor*>& parts, void* stream) {
  const char* where = "concat_rows";
  if (parts.empty()) throw_error(ErrorKind::kInvalidArgument, where, "no tensors");
  const DeviceTensor& f = *parts.front();
  int64_t rows = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const DeviceTensor& p = *parts[i];
    if (!p.codes) throw_error(ErrorKind::kInvalidArgument, where, "tensor %zu is not uploaded", i);
    auto bad = [&](const char* what) {
      throw_error(ErrorKind::kInvalidArgument, where, "tensor %zu (%s, %lld x %lld) differs from tensor 0 (%s, %lld x %lld) in %s",
                  i, p.cfg.label().c_str(), static_cast<long long>(p.rows), static_cast<long long>(p.cols),
                  f.cfg.label().c_str(), static_cast<long long>(f.rows), static_cast<long long>(f.cols), what);
    };
    if (p.cfg.label() != f.cfg.label() || p.cfg.special_values != f.cfg.special_values || p.cfg.opts != f.cfg.opts) bad("format");
    if (p.cols != f.cols || p.code_words_per_row != f.code_words_per_row) bad("columns");
    if (p.tensor_scale != f.tensor_scale) bad("tensor scale");
    if ((p.sv_index == nullptr) != (f.sv_index == nullptr)) bad("special-value index layout");
    if (p.layout != f.layout)
      bad("code layout (set_upload_layout changed between the uploads, or NV-kind parts on both sides of "
          "upload's row bound for kPair: gemv_layout.hpp layout_for)");
    if (p.tiled != f.tiled) bad("row tiling (rows a multiple of 16 in one, not in the other, or set_upload_tiling)");
    if (p.pair_order != f.pair_order || p.razer_xor != f.razer_xor || p.nib3 != f.nib3 || p.pair_table != f.pair_table)
      bad("pair order, RaZeR or nibble encoding of the codes, or pair-table encoding");
    if (p.tiled && p.rows % kTileRows) bad("whole 16-row tiles (a tiled row_view that ends inside a tile)");
    rows += p.rows;
  }
  // The arrays in upload()'s order (arrays()); bytes per row.
  auto array = [](const DeviceTensor& t, int i) { return arrays(t)[static_cast<size_t>(i)]; };
  const size_t row_bytes[kArrays] = {static_cast<size_t>(f.code_words_per_row) * 4, static_cast<size_t>(f.groups_per_row) * 2,
                                     static_cast<size_t>(f.groups_per_row), static_cast<size_t>(f.zero_words_per_row) * 4,
                                     static_cast<size_t>(f.groups_per_row), static_cast<size_t>(f.groups_per_row)};
  size_t bytes[kArrays];
  for (int i = 0; i < kArrays; ++i) bytes[i] = array(f, i) ? row_bytes[i] * static_cast<size_t>(rows) : 0;
  DeviceTensor t;
  allocate_arrays(t, bytes);
  cudaStream_t s = as_stream(stream);
  for (int i = 0; i < kArrays; ++i) {
    char* dst = static_cast<char*>(const_cast<void*>(array(t, i)));
    if (!dst) continue;
    for (const DeviceTensor* p : parts) {
      const size_t n = row_bytes[i] * static_cast<size_t>(p->rows);
      if (n) RAZERQ_CUDA(cudaMemcpyAsync(dst, array(*p, i), n, cudaMemcpyDeviceToDevice, s));
      dst += n;
    }
  }
  RAZERQ_CUDA(cudaStreamSynchronize(s));
  t.cfg = f.cfg;
  t.rows = rows, t.cols = f.cols;
  t.groups_per_row = f.groups_per_row, t.code_words_per_row = f.code_words_per_row;
  t.zero_words_per_row = f.zero_words_per_row;
  t.tensor_scale = f.tensor_scale;
  t.layout = f.layout;
  t.tiled = f.tiled;
  t.pair_order = f.pair_order;
  t.razer_xor = f.razer_xor;
  t.nib3 = f.nib3;
  t.pair_table = f.pair_table;
  t.scales_fit_fp16 = true;
  t.max_inner_scale = 0;
  for (const DeviceTensor* p : parts) {
    t.scales_fit_fp16 = t.scales_fit_fp16 && p->scales_fit_fp16;
    t.max_inner_scale = std::max(t.max_inner_scale, p->max_inner_scale);
  }
  return t;
}

DeviceTensor row_view(const DeviceTensor& t, int64_t row0, int64_t rows) {
  if (!t.codes) throw_error(ErrorKind::kInvalidArgument, "row_view", "tensor is not uploaded");
  if (row0 < 0 || rows < 1 || row0 + rows > t.rows)
    throw_error(ErrorKind::kInvalidArgument, "row_view", "rows [%lld, %lld) of a tensor of %lld rows",
                static_cast<long long>(row0), static_cast<long long>(row0 + rows), static_cast<long long>(t.rows));
  if (t.tiled && row0 % kTileRows)
    throw_error(ErrorKind::kInvalidArgument, "row_view",
                "first row %lld of a tiled tensor: must be a multiple of %d (its rows are stored in tiles of %d)",
                static_cast<long long>(row0), kTileRows, kTileRows);
  DeviceTensor v;
  v.cfg = t.cfg;
  v.rows = rows, v.cols = t.cols;
  v.groups_per_row = t.groups_per_row, v.code_words_per_row = t.code_words_per_row;
  v.zero_words_per_row = t.zero_words_per_row;
  auto at = [&](auto* p, int64_t per_row) { return p ? p + row0 * per_row : p; };
  v.codes = at(t.codes, t.code_words_per_row);
  v.scales16 = at(t.scales16, t.groups_per_row);
  v.scales8 = at(t.scales8, t.groups_per_row);
  v.zeros = at(t.zeros, t.zero_words_per_row);
  v.sv_index = at(t.sv_index, t.groups_per_row);
  v.zero_bytes = at(t.zero_bytes, t.groups_per_row);
  v.tensor_scale = t.tensor_scale;
  v.scales_fit_fp16 = t.scales_fit_fp16;  // (over all of t's rows: a superset)
  v.max_inner_scale = t.max_inner_scale;
  v.layout = t.layout;
  v.tiled = t.tiled;
  v.pair_order = t.pair_order;
  v.razer_xor = t.razer_xor;
  v.nib3 = t.nib3;
  v.pair_table = t.pair_table;
  return v;
}

DeviceTensor upload(const quantizer::QuantizedTensor& q, void* stream) {
  quantizer::validate(q, "upload " + q.cfg.label());
  if (q.cfg.opts.has_side_parts())
    throw_error(ErrorKind::kUnsupported, "upload " + q.cfg.label(),
                "BF16 outliers, second-level scales and code offsets (OA-CIM int options) have no CUDA kernel: "
                "dequantize on the CPU (kernels::dequantize_to_float)");
  const quantizer::FormatSpec& spec = q.cfg.spec();
  if (spec.scale_kind == ScaleKind::kLutRow)
    throw_error(ErrorKind::kUnsupported, "upload " + q.cfg.label(),
                "lut tensors have their own device layout and kernels (kernels/cuda/lut_gemv_cuda.hpp: upload_lut)");
  if (spec.has_special != is_razer_kind(spec.scale_kind))
    throw_error(ErrorKind::kInternal, "upload", "format %s: has_special does not match its scale kind", spec.name);
  if (q.cols > INT_MAX - (1 << 21) || q.groups_per_row > INT_MAX || q.code_words_per_row > INT_MAX)
    throw_error(ErrorKind::kUnsupported, "upload", "%lld columns: the kernel indexes a row with 32-bit integers",
                static_cast<long long>(q.cols));

  // The fused GEMV's layout (gemv_layout.hpp) where it applies.
  const CodeLayout layout =
      layout_for(q.cfg, q.cols, g_upload_layout, few_rows_per_sm(q.rows, detail::current_device_sm_count()));
  // RaZeR 4-bit for the two-table decoder: re-encoded, in column order; nf4 (pair_table_applies) in
  // column order as on disk; the others in pair order. 3-bit codes the lookup decoder takes: as
  // nibbles (after the chunk permutation, column order).
  const bool razer_xor = g_upload_razer_xor && razer_xor_applies(q);
  const bool nib3 = g_upload_nib3 && nib3_applies(q);
  const bool pair_table = g_upload_pair_table && pair_table_applies(q);
  const bool pair_order = !razer_xor && !nib3 && !pair_table && pair_order_applies(q.cfg.bits, q.cols);
  std::vector<uint32_t> xor_codes = razer_xor ? razer_xor_codes(q) : std::vector<uint32_t>();
  const uint32_t* codes = razer_xor ? xor_codes.data() : q.codes.data();
  std::vector<uint32_t> permuted =
      layout != CodeLayout::kDisk || pair_order
          ? retile_codes(codes, q.rows, q.code_words_per_row, q.cols, q.cfg.bits, layout, pair_order)
          : std::move(xor_codes);  // (empty unless razer_xor: then the re-encoded codes as they are)
  if (nib3) permuted = nib3_codes(permuted.empty() ? q.codes.data() : permuted.data(), q.rows, q.code_words_per_row);
  // Rows in 16-row tiles (gemv_layout.hpp): the codes, and alike the per-group arrays the GEMV
  // reads beside them (scales, razer's separate special-value indices, zero_bytes; not the zero
  // points' bitstream).
  const bool tiled = g_upload_tiling && tiling_applies(q.cfg.bits, q.cfg.group, q.rows, q.cols);
  std::vector<uint16_t> scales16;
  std::vector<uint8_t> scales8, sv_index, zero_bytes;
  if (nib3 && q.cfg.asym) {
    zero_bytes.resize(static_cast<size_t>(q.rows * q.groups_per_row));
    for (int64_t r = 0; r < q.rows; ++r)
      quantizer::unpack_row(q.zeros.data() + r * q.zero_words_per_row(), q.groups_per_row, q.cfg.bits,
                            zero_bytes.data() + r * q.groups_per_row);
  }
  if (tiled) {
    permuted = tile_rows(permuted.empty() ? q.codes.data() : permuted.data(), q.rows, q.code_words_per_row, q.cfg.bits);
    auto tile = [&](const auto& v, auto& out) {
      if (!v.empty()) out = tile_groups(v.data(), q.rows, q.groups_per_row, q.cfg.group);
    };
    tile(q.scales16, scales16);
    tile(q.scales8, scales8);
    tile(q.sv_index, sv_index);
    if (!zero_bytes.empty()) zero_bytes = tile_groups(zero_bytes.data(), q.rows, q.groups_per_row, q.cfg.group);
  }
  const void* src[kArrays] = {permuted.empty() ? q.codes.data() : permuted.data(),
                              tiled ? scales16.data() : q.scales16.data(),
                              tiled ? scales8.data() : q.scales8.data(),
                              q.zeros.data(),
                              tiled ? sv_index.data() : q.sv_index.data(),
                              zero_bytes.data()};
  const size_t bytes[kArrays] = {q.codes.size() * sizeof(uint32_t), q.scales16.size() * sizeof(uint16_t),
                                 q.scales8.size() * sizeof(uint8_t), q.zeros.size() * sizeof(uint32_t),
                                 q.sv_index.size() * sizeof(uint8_t), zero_bytes.size()};
  DeviceTensor t;
  allocate_arrays(t, bytes);
  cudaStream_t s = as_stream(stream);
  const std::array<const void*, kArrays> dst = arrays(t);
  for (int i = 0; i < kArrays; ++i)
    if (bytes[i]) RAZERQ_CUDA(cudaMemcpyAsync(const_cast<void*>(dst[i]), src[i], bytes[i], cudaMemcpyHostToDevice, s));
  RAZERQ_CUDA(cudaStreamSynchronize(s));  // the host vectors may go away after we return
  t.cfg = q.cfg;
  t.rows = q.rows, t.cols = q.cols;
  t.groups_per_row = q.groups_per_row, t.code_words_per_row = q.code_words_per_row;
  t.zero_words_per_row = q.zero_words_per_row();
  t.tensor_scale = q.tensor_scale;
  t.layout = layout;
  t.tiled = tiled;
  t.pair_order = pair_order;
  t.razer_xor = razer_xor;
  t.nib3 = nib3;
  t.pair_table = pair_table;
  double mx = 0;
  switch (spec.scale_kind) {
    case ScaleKind::kFp16:
      for (uint16_t h : q.scales16) mx = std::max(mx, std::fabs(fp16_to_double(h)));
      break;
    case ScaleKind::kFp16Razer:
      for (uint16_t h : q.scales16)  // 14-bit scales beside the special-value index, unless separate
        mx = std::max(mx, std::fabs(fp16_to_double(static_cast<uint16_t>(q.sv_index.empty() ? h & 0x3fffu : h))));
      break;
    case ScaleKind::kE8M0:
      for (uint8_t b : q.scales8) mx = std::max(mx, b == 255 ? HUGE_VAL : std::ldexp(1.0, b - 127));
      break;
    case ScaleKind::kE8M0Razer:
      for (uint8_t b : q.scales8) mx = std::max(mx, std::ldexp(1.0, static_cast<int>(b & 63) - 31));
      break;
    case ScaleKind::kE4M3Tensor:
      for (uint8_t b : q.scales8) mx = std::max(mx, std::fabs(quantizer::e4m3_to_double(b)));
      break;
    case ScaleKind::kE3M3RazerTensor:
      for (uint8_t b : q.scales8) mx = std::max(mx, quantizer::e3m3_to_double(static_cast<uint8_t>(b & 63)));
      break;
    case ScaleKind::kLutRow: break;  // refused above
  }
  t.max_inner_scale = mx;
  if (spec.scale_kind == ScaleKind::kE8M0 || spec.scale_kind == ScaleKind::kE8M0Razer) {
    const bool razer = spec.scale_kind == ScaleKind::kE8M0Razer;
    for (uint8_t b : q.scales8) {
      const int e = razer ? static_cast<int>(b & 63) - 31 : static_cast<int>(b) - 127;
      if ((!razer && b == 255) || e < -24 || e > 15) {
        t.scales_fit_fp16 = false;
        break;
      }
    }
  }
  return t;
}

void set_upload_layout(CodeLayout layout) { g_upload_layout = layout; }
void set_upload_tiling(bool tiled) { g_upload_tiling = tiled; }
void set_upload_razer_xor(bool on) { g_upload_razer_xor = on; }
void set_upload_nib3(bool on) { g_upload_nib3 = on; }
void set_upload_pair_table(bool on) { g_upload_pair_table = on; }

void dequantize_fp16_cuda(const DeviceTensor& t, uint16_t* d_out, void* stream) {
  const char* where = "dequantize_fp16_cuda";
  if (!t.codes) throw_error(ErrorKind::kInvalidArgument, where, "tensor is not uploaded");
  if (!d_out) throw_error(ErrorKind::kInvalidArgument, where, "output pointer is null");
  if (t.rows <= 0 || t.cols <= 0) throw_error(ErrorKind::kInvalidArgument, where, "empty tensor");
  if (reinterpret_cast<uintptr_t>(d_out) % 2)
    throw_error(ErrorKind::kInvalidArgument, where, "output pointer is not 2-byte aligned");
  const quantizer::FormatSpec& spec = t.cfg.spec();
  const bool s16 = spec.scale_kind == ScaleKind::kFp16 || spec.scale_kind == ScaleKind::kFp16Razer;
  if (s16 ? !t.scales16 : !t.scales8) throw_error(ErrorKind::kInvalidArgument, where, "scales are missing");
  if (t.cfg.asym && !t.zeros) throw_error(ErrorKind::kInvalidArgument, where, "zero points are missing");

  // The per-tensor table: base value by code and the special values, from the registry.
  const quantizer::Grid grid = quantizer::base_grid(t.cfg);
  detail::KernelArgs a;
  std::memset(&a, 0, sizeof(a));
  RAZERQ_CHECK(grid.value.size() <= static_cast<size_t>(detail::kMaxCodes), "grid of %zu codes", grid.value.size());
  std::copy(grid.value.begin(), grid.value.end(), a.grid);
  if (spec.has_special) {
    RAZERQ_CHECK(t.cfg.special_values.size() == 4, "%zu special values", t.cfg.special_values.size());
    for (int i = 0; i < 4; ++i) a.special[i] = static_cast<double>(t.cfg.special_values[static_cast<size_t>(i)]);
  }
  a.special_code = grid.special_code;
  a.razer_scale_mask = spec.scale_kind == ScaleKind::kFp16Razer ? 0x3fffu : 0u;
  a.plus_zero_code = -1;
  if (t.razer_xor) {  // the re-encoded codes (gemv_e2m1.cuh): code 15 is |S|, the scale signed
    std::copy(std::begin(gemv4::kXorValue), std::end(gemv4::kXorValue), a.grid);
    a.special_code = 15;
    for (int i = 0; i < 4; ++i) a.special[i] = std::fabs(a.special[i]);
    a.razer_scale_mask = spec.scale_kind == ScaleKind::kFp16Razer ? 0xbfffu : 0x80u;
    // Code 0 (the on-disk +0, stored as -0 in a group of either sign) gives +0 as the reference's
    // +0 x scale; every other code's value times the signed scale is the reference's product,
    // zero signs included (a zero scale: the negated value times -0).
    a.plus_zero_code = 0;
  }
  a.codes = t.codes;
  a.scales16 = t.scales16;
  a.scales8 = t.scales8;
  a.zeros = t.zeros;
  a.sv_index = t.sv_index;
  a.out = d_out;
  a.rows = t.rows;
  a.cols = static_cast<int>(t.cols);
  a.group = t.cfg.group;
  a.groups_per_row = static_cast<int>(t.groups_per_row);
  a.code_words_per_row = static_cast<int>(t.code_words_per_row);
  a.zero_words_per_row = static_cast<int>(t.zero_words_per_row);
  a.chunks_per_row = static_cast<int>((t.cols + detail::kCodesPerThread - 1) / detail::kCodesPerThread);
  a.asym = t.cfg.asym ? 1 : 0;
  a.layout = static_cast<int>(t.layout);
  a.tiled = t.tiled ? 1 : 0;
  a.pair_order = t.pair_order ? 1 : 0;
  a.nib3 = t.nib3 ? 1 : 0;
  a.group_unit_shift = group_unit_shift(t.cfg.group);
  a.vector_store = (t.cols % 8 == 0 && reinterpret_cast<uintptr_t>(d_out) % 16 == 0) ? 1 : 0;
  a.tensor_scale = static_cast<double>(t.tensor_scale);
  launch(a, spec.scale_kind, t.cfg.bits, as_stream(stream));
}

// --- DeviceBuffer -------------------------------------------------------------------------
DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes) RAZERQ_CUDA(cudaMalloc(&ptr_, bytes));
}
DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
  o.ptr_ = nullptr, o.bytes_ = 0;
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) (void)cudaFree(ptr_);
    ptr_ = o.ptr_, bytes_ = o.bytes_;
    o.ptr_ = nullptr, o.bytes_ = 0;
  }
  return *this;
}
DeviceBuffer::~DeviceBuffer() {
  if (ptr_) (void)cudaFree(ptr_);
}
void DeviceBuffer::fill_bytes(int byte_value, void* stream) {
  if (bytes_) RAZERQ_CUDA(cudaMemsetAsync(ptr_, byte_value, bytes_, as_stream(stream)));
}
void DeviceBuffer::copy_from_host(const void* src, size_t bytes, void* stream) {
  RAZERQ_CHECK(bytes <= bytes_, "copy of %zu bytes into a buffer of %zu", bytes, bytes_);
  if (!bytes) return;
  RAZERQ_CUDA(cudaMemcpyAsync(ptr_, src, bytes, cudaMemcpyHostToDevice, as_stream(stream)));
  RAZERQ_CUDA(cudaStreamSynchronize(as_stream(stream)));
}
void DeviceBuffer::copy_to_host(void* dst, size_t bytes, void* stream) const {
  RAZERQ_CHECK(bytes <= bytes_, "copy of %zu bytes out of a buffer of %zu", bytes, bytes_);
  if (!bytes) return;
  RAZERQ_CUDA(cudaMemcpyAsync(dst, ptr_, bytes, cudaMemcpyDeviceToHost, as_stream(stream)));
  RAZERQ_CUDA(cudaStreamSynchronize(as_stream(stream)));
}

}  // namespace razerq::kernels
