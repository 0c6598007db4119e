// Independent decoders of the export targets. Each is written from the target project's own
// loader code (cited per decoder; checked against the snapshot named there), deliberately
// without quantizer/pack.hpp or anything in formats/export_*.cpp.
#include "formats/foreign_decoders.hpp"

#include <cmath>
#include <cstring>

#include "common/error.hpp"
#include "common/half.hpp"

namespace razerq::formats::foreign {
namespace {

using nlohmann::json;

std::string where_of(const SafetensorsFile& f, const std::string& tensor) { return f.path() + ": tensor '" + tensor + "'"; }

// The tensor's info after checking its dtype and shape.
const TensorInfo& expect(const SafetensorsFile& f, const std::string& name, DType dtype, const std::vector<int64_t>& shape) {
  if (!f.has(name)) throw_error(ErrorKind::kMalformedInput, f.path(), "tensor '%s' is missing", name.c_str());
  const TensorInfo& t = f.info(name);
  if (t.dtype != dtype || t.shape != shape)
    throw_error(ErrorKind::kMalformedInput, where_of(f, name), "is %s %s, expected %s %s", dtype_name(t.dtype),
                shape_string(t.shape).c_str(), dtype_name(dtype), shape_string(shape).c_str());
  return t;
}

template <class T>
std::vector<T> read_as(const SafetensorsFile& f, const TensorInfo& t) {
  std::vector<T> v(static_cast<size_t>(t.nbytes() / sizeof(T)));
  std::memcpy(v.data(), f.data(t), v.size() * sizeof(T));
  return v;
}

// A float tensor of any of the float dtypes a config may use for scales, as double.
std::vector<double> read_floats(const SafetensorsFile& f, const std::string& name, const std::vector<int64_t>& shape) {
  if (!f.has(name)) throw_error(ErrorKind::kMalformedInput, f.path(), "tensor '%s' is missing", name.c_str());
  const TensorInfo& t = f.info(name);
  if (t.shape != shape)
    throw_error(ErrorKind::kMalformedInput, where_of(f, name), "has shape %s, expected %s", shape_string(t.shape).c_str(),
                shape_string(shape).c_str());
  std::vector<double> out(static_cast<size_t>(t.numel()));
  f.read_double(t, out.data());
  return out;
}

int json_int(const json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number_integer())
    throw_error(ErrorKind::kMalformedInput, where, "quantization config needs an integer \"%s\"", key);
  return j[key].get<int>();
}

// E2M1 (OCP MX spec; compressed-tensors kE2M1ToFloat): bit 3 sign, bits 0-2 index.
double e2m1(unsigned nibble) {
  static const double mag[8] = {0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0};
  return (nibble & 8u) ? -mag[nibble & 7u] : mag[nibble & 7u];
}

// float8_e4m3fn (OCP FP8: 1 sign, 4 exponent bits bias 7, 3 mantissa bits, no infinities,
// S.1111.111 NaN), decoded by the definition.
double fp8_e4m3fn(uint8_t b, const std::string& where) {
  const int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
  if (e == 15 && m == 7) throw_error(ErrorKind::kMalformedInput, where, "float8_e4m3fn NaN scale (0x%02x)", b);
  const double v = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return s ? -v : v;
}

}  // namespace

// ---- GPTQ v1 --------------------------------------------------------------------------------
// ModelCloud/GPTQModel @ f4c327a (2026-08-23): gptqmodel/nn_modules/qlinear/__init__.py
// (_register_gptq_buffers for the shapes; PackableQuantLinear.dequantize_weight for the bit
// layout: 2/4/8 bits take field j of a word at bits [b*j, b*j+b); 3 bits use blocks of three
// words per 32 values with the shift table [0,3,...,30 | 1,4,...,28 | 2,5,...,29] and the two
// values 10 and 21 split across words) and gptqmodel/utils/model.py
// convert_gptq_v1_to_v2_format_module (a "gptq" (v1) checkpoint stores zero - 1; v2 = field + 1).
namespace {

// Value i (0..31) of a 3-bit block of three words, as dequantize_weight assembles it.
uint32_t gptq3_value(uint32_t w0, uint32_t w1, uint32_t w2, int i) {
  if (i < 10) return (w0 >> (3 * i)) & 7u;
  if (i == 10) return ((w0 >> 30) & 3u) | ((w1 << 2) & 4u);
  if (i < 21) return (w1 >> (3 * (i - 11) + 1)) & 7u;
  if (i == 21) return ((w1 >> 31) & 1u) | ((w2 << 1) & 6u);
  return (w2 >> (3 * (i - 22) + 2)) & 7u;
}

// Field `i` along the packed dimension of a GPTQ int32 array, `word(j)` giving word j of
// that line (qweight: row j of column n; qzeros: column j of row g).
template <class Word>
uint32_t gptq_field(const Word& word, int bits, int64_t i) {
  if (bits == 3) {
    const int64_t blk = i / 32;
    return gptq3_value(word(3 * blk), word(3 * blk + 1), word(3 * blk + 2), static_cast<int>(i % 32));
  }
  const int pf = 32 / bits;
  return (word(i / pf) >> (bits * (i % pf))) & ((1u << bits) - 1u);
}

}  // namespace

std::vector<double> decode_gptq(const SafetensorsFile& f, const std::string& module, const json& qcfg, int64_t N,
                                int64_t K) {
  const std::string where = f.path() + ": " + module;
  const int bits = json_int(qcfg, "bits", where);
  const int G = json_int(qcfg, "group_size", where);
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    throw_error(ErrorKind::kUnsupported, where, "GPTQ v1 bits %d (2, 3, 4 or 8)", bits);
  const std::string fmt = qcfg.value("checkpoint_format", qcfg.value("format", std::string("gptq")));
  if (fmt != "gptq") throw_error(ErrorKind::kUnsupported, where, "checkpoint_format \"%s\" (this decoder reads \"gptq\", v1)", fmt.c_str());
  const int64_t gs = G > 0 ? G : K;
  const int64_t ng = (K + gs - 1) / gs;
  if ((K * bits) % 32 != 0 || (N * bits) % 32 != 0 || (bits == 3 && (K % 32 != 0 || N % 32 != 0)))
    throw_error(ErrorKind::kMalformedInput, where, "[%lld, %lld] does not fill whole int32 words at %d bits",
                static_cast<long long>(N), static_cast<long long>(K), bits);
  const int64_t qrows = K * bits / 32, zcols = N * bits / 32;
  const auto qweight = read_as<uint32_t>(f, expect(f, module + ".qweight", DType::kI32, {qrows, N}));
  const auto qzeros = read_as<uint32_t>(f, expect(f, module + ".qzeros", DType::kI32, {ng, zcols}));
  const auto scales = read_floats(f, module + ".scales", {ng, N});
  if (f.info(module + ".scales").dtype != DType::kF16)
    throw_error(ErrorKind::kMalformedInput, where_of(f, module + ".scales"), "GPTQ scales are F16");
  const auto g_idx = read_as<int32_t>(f, expect(f, module + ".g_idx", DType::kI32, {K}));
  std::vector<double> w(static_cast<size_t>(N * K));
  std::vector<double> zero(static_cast<size_t>(ng * N));
  for (int64_t g = 0; g < ng; ++g)
    for (int64_t n = 0; n < N; ++n)
      zero[static_cast<size_t>(g * N + n)] =
          double(gptq_field([&](int64_t j) { return qzeros[static_cast<size_t>(g * zcols + j)]; }, bits, n)) + 1.0;
  for (int64_t n = 0; n < N; ++n) {
    auto col = [&](int64_t j) { return qweight[static_cast<size_t>(j * N + n)]; };
    for (int64_t k = 0; k < K; ++k) {
      const int32_t g = g_idx[static_cast<size_t>(k)];
      if (g < 0 || g >= ng)
        throw_error(ErrorKind::kMalformedInput, where_of(f, module + ".g_idx"), "g_idx[%lld] = %d outside [0, %lld)",
                    static_cast<long long>(k), g, static_cast<long long>(ng));
      const double q = gptq_field(col, bits, k);
      w[static_cast<size_t>(n * K + k)] =
          scales[static_cast<size_t>(g * N + n)] * (q - zero[static_cast<size_t>(g * N + n)]);
    }
  }
  return w;
}

// ---- compressed-tensors pack-quantized -----------------------------------------------------
// vllm-project/compressed-tensors @ ac8e2ba (2026-08-06, release 0.18 line):
// src/compressed_tensors/compressors/pack_quantized/{base.py,helpers.py}: unpack_from_int32
// takes element i of a packed line from global bit i*b (low part from word i*b/32 at offset
// i*b%32, the rest from the next word), subtracts 2^(b-1) (values are signed), and the zero
// point is packed the same way along dim 0 (N); lifecycle/forward.py _dequantize:
// (x_q - zero_point) * scale, groups of group_size consecutive columns.
namespace {

template <class Word>
uint32_t dense_field(const Word& word, int bits, int64_t i) {
  const int64_t start = i * bits;
  const int64_t wi = start / 32;
  const int off = static_cast<int>(start % 32);
  const int lo_bits = 32 - off < bits ? 32 - off : bits;
  uint32_t v = (word(wi) >> off) & ((1u << lo_bits) - 1u);
  if (lo_bits < bits) v |= (word(wi + 1) & ((1u << (bits - lo_bits)) - 1u)) << lo_bits;
  return v;
}

}  // namespace

std::vector<double> decode_ct_pack_quantized(const SafetensorsFile& f, const std::string& module, const json& weights,
                                             int64_t N, int64_t K) {
  const std::string where = f.path() + ": " + module;
  const int bits = json_int(weights, "num_bits", where);
  const int G = json_int(weights, "group_size", where);
  if (bits < 1 || bits > 8) throw_error(ErrorKind::kMalformedInput, where, "num_bits %d", bits);
  if (weights.value("type", std::string()) != "int" || weights.value("strategy", std::string()) != "group")
    throw_error(ErrorKind::kUnsupported, where, "pack-quantized decoder reads int weights with the group strategy");
  if (G <= 0 || K % G != 0)
    throw_error(ErrorKind::kMalformedInput, where, "group_size %d does not divide %lld columns", G, static_cast<long long>(K));
  const bool sym = weights.value("symmetric", true);
  const int64_t ng = K / G, wpr = (K * bits + 31) / 32, zrows = (N * bits + 31) / 32;
  const auto shape = read_as<int32_t>(f, expect(f, module + ".weight_shape", DType::kI32, {2}));
  if (shape[0] != N || shape[1] != K)
    throw_error(ErrorKind::kMalformedInput, where_of(f, module + ".weight_shape"), "is [%d, %d], expected [%lld, %lld]",
                shape[0], shape[1], static_cast<long long>(N), static_cast<long long>(K));
  const auto packed = read_as<uint32_t>(f, expect(f, module + ".weight_packed", DType::kI32, {N, wpr}));
  const auto scale = read_floats(f, module + ".weight_scale", {N, ng});
  std::vector<uint32_t> zp;
  if (!sym) zp = read_as<uint32_t>(f, expect(f, module + ".weight_zero_point", DType::kI32, {zrows, ng}));
  const double offset = double(1 << (bits - 1));
  std::vector<double> w(static_cast<size_t>(N * K));
  for (int64_t n = 0; n < N; ++n) {
    auto row = [&](int64_t j) { return packed[static_cast<size_t>(n * wpr + j)]; };
    for (int64_t k = 0; k < K; ++k) {
      const int64_t g = k / G;
      const double xq = double(dense_field(row, bits, k)) - offset;
      double z = 0;
      if (!sym) {
        auto zcol = [&](int64_t j) { return zp[static_cast<size_t>(j * ng + g)]; };
        z = double(dense_field(zcol, bits, n)) - offset;
      }
      w[static_cast<size_t>(n * K + k)] = (xq - z) * scale[static_cast<size_t>(n * ng + g)];
    }
  }
  return w;
}

// ---- compressed-tensors nvfp4 / mxfp4 -------------------------------------------------------
// vllm-project/compressed-tensors @ ac8e2ba: compressors/nvfp4/helpers.py unpack_fp4_from_uint8
// (low nibble first: element 2j = byte j & 0x0F, 2j+1 = byte j >> 4; bit 3 sign, bits 0-2 index
// of [0, .5, 1, 1.5, 2, 3, 4, 6]); compressors/nvfp4/base.py (weight_scale as float8_e4m3fn,
// weight_global_scale) and lifecycle/forward.py _dequantize (scale / global_scale);
// compressors/mxfp4/base.py + mx_utils.py decompress_mx_scale (2^(e - 127), no global scale).
std::vector<double> decode_ct_fp4(const SafetensorsFile& f, const std::string& module, const std::string& format,
                                  const json& weights, int64_t N, int64_t K) {
  const std::string where = f.path() + ": " + module;
  const int G = json_int(weights, "group_size", where);
  const bool nv = format == "nvfp4-pack-quantized";
  if (!nv && format != "mxfp4-pack-quantized") throw_error(ErrorKind::kUnsupported, where, "format \"%s\"", format.c_str());
  if (json_int(weights, "num_bits", where) != 4 || weights.value("type", std::string()) != "float")
    throw_error(ErrorKind::kMalformedInput, where, "%s needs num_bits 4 and type float", format.c_str());
  if (G != (nv ? 16 : 32) || K % G != 0)
    throw_error(ErrorKind::kMalformedInput, where, "%s with group_size %d over %lld columns", format.c_str(), G,
                static_cast<long long>(K));
  const int64_t ng = K / G;
  const auto packed = read_as<uint8_t>(f, expect(f, module + ".weight_packed", DType::kU8, {N, K / 2}));
  const auto scale_raw =
      read_as<uint8_t>(f, expect(f, module + ".weight_scale", nv ? DType::kF8E4M3 : DType::kU8, {N, ng}));
  double global = 1;
  if (nv) {
    const auto gs = read_as<float>(f, expect(f, module + ".weight_global_scale", DType::kF32, {1}));
    global = gs[0];
    if (!(global > 0) || std::isinf(global))
      throw_error(ErrorKind::kMalformedInput, where_of(f, module + ".weight_global_scale"), "is %g", global);
  }
  std::vector<double> w(static_cast<size_t>(N * K));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < ng; ++g) {
      const uint8_t s = scale_raw[static_cast<size_t>(n * ng + g)];
      double scale;
      if (nv) {
        scale = fp8_e4m3fn(s, where_of(f, module + ".weight_scale")) / global;
      } else {
        scale = std::ldexp(1.0, int(s) - 127);
      }
      for (int64_t k = g * G; k < (g + 1) * G; ++k) {
        const uint8_t byte = packed[static_cast<size_t>(n * (K / 2) + k / 2)];
        const unsigned nib = (k % 2 == 0) ? (byte & 0x0Fu) : (byte >> 4);
        w[static_cast<size_t>(n * K + k)] = e2m1(nib) * scale;
      }
    }
  return w;
}

// ---- bitsandbytes 4-bit ----------------------------------------------------------------------
// bitsandbytes-foundation/bitsandbytes @ 95f9af3 (2026-08-19): bitsandbytes/functional.py
// QuantState.from_dict (keys absmax, quant_map, packed quant_state.bitsandbytes__<type> JSON via
// utils.py unpack_tensor_to_dict) and backends/default/ops.py _dequantize_4bit_compute
// (out[2i] = code[byte_i >> 4], out[2i+1] = code[byte_i & 0xF], times absmax of block
// i / blocksize, over the flattened tensor).
std::vector<double> decode_bnb_4bit(const SafetensorsFile& f, const std::string& weight, int64_t N, int64_t K) {
  const std::string where = f.path() + ": " + weight;
  const std::string qs_name = weight + ".quant_state.bitsandbytes__nf4";
  if (!f.has(qs_name))
    throw_error(ErrorKind::kMalformedInput, f.path(), "tensor '%s' is missing (an nf4 Params4bit stores it)", qs_name.c_str());
  const TensorInfo& qsi = f.info(qs_name);
  if (qsi.dtype != DType::kU8 || qsi.shape.size() != 1)
    throw_error(ErrorKind::kMalformedInput, where_of(f, qs_name), "must be a 1-D U8 tensor of JSON bytes");
  const auto qs_bytes = read_as<uint8_t>(f, qsi);
  json qs;
  try {
    qs = json::parse(std::string(qs_bytes.begin(), qs_bytes.end()));
  } catch (const json::exception& e) {
    throw_error(ErrorKind::kMalformedInput, where_of(f, qs_name), "invalid JSON: %s", e.what());
  }
  if (qs.value("quant_type", std::string()) != "nf4")
    throw_error(ErrorKind::kMalformedInput, where_of(f, qs_name), "quant_type is not \"nf4\"");
  const int64_t bs = json_int(qs, "blocksize", where_of(f, qs_name));
  if (!qs.contains("shape") || qs["shape"] != json({N, K}))
    throw_error(ErrorKind::kMalformedInput, where_of(f, qs_name), "shape %s, expected [%lld, %lld]",
                qs.value("shape", json()).dump().c_str(), static_cast<long long>(N), static_cast<long long>(K));
  if (qs.contains("nested_absmax") || f.has(weight + ".nested_absmax"))
    throw_error(ErrorKind::kUnsupported, where, "nested (double-quantized) absmax is not read here");
  const int64_t n = N * K, nblocks = (n + bs - 1) / bs;
  const auto data = read_as<uint8_t>(f, expect(f, weight, DType::kU8, {(n + 1) / 2, 1}));
  const auto absmax = read_as<float>(f, expect(f, weight + ".absmax", DType::kF32, {nblocks}));
  const auto qmap = read_as<float>(f, expect(f, weight + ".quant_map", DType::kF32, {16}));
  std::vector<double> w(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t byte = data[static_cast<size_t>(i / 2)];
    const unsigned code = (i % 2 == 0) ? (byte >> 4) : (byte & 0x0Fu);
    w[static_cast<size_t>(i)] = double(qmap[code]) * double(absmax[static_cast<size_t>(i / bs)]);
  }
  return w;
}

}  // namespace razerq::formats::foreign
