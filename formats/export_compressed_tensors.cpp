// compressed-tensors export. Layouts and config as compressed-tensors writes and reads them
// (vllm-project/compressed-tensors @ ac8e2ba, 2026-08-06, the 0.18 line):
//  pack-quantized (compressors/pack_quantized/{base,helpers}.py, quantization/quant_args.py):
//    <m>.weight_packed      int32 [N, ceil(K*b/32)]  values + 2^(b-1) (they are signed), one
//                                                     dense little-endian b-bit stream per row
//    <m>.weight_scale       fp16  [N, K/G]
//    <m>.weight_zero_point  int32 [ceil(N*b/32), K/G] (asym) zero + 2^(b-1), packed along N
//    <m>.weight_shape       int32 [2] = [N, K]
//    W = (x_q - zero_point) * scale. Our int codes c (sym base c - 2^(b-1); asym c - z) are
//    exactly the stored unsigned values, and our zero z is the stored zero-point value.
//    Before 0.18 (PR #732, "dense cross-element packing") b = 3, 5, 6, 7 packed 32//b values per
//    word; 2, 4, 8 bits are the same in both.
//  nvfp4-pack-quantized (compressors/nvfp4/{base,helpers}.py, lifecycle/forward.py):
//    <m>.weight_packed uint8 [N, K/2] (element 2j low nibble), <m>.weight_scale float8_e4m3fn
//    [N, K/16], <m>.weight_global_scale fp32 [1]; W = e2m1 * scale / global_scale. razerq's
//    tensor_scale multiplies, so global_scale = fp32(1 / tensor_scale) (SPEC.md 5.5).
//  mxfp4-pack-quantized (compressors/mxfp4/base.py, mx_utils.py): same packing, weight_scale
//    uint8 E8M0 [N, K/32], no global scale.
#include <cmath>

#include "common/error.hpp"
#include "formats/export_quantized.hpp"
#include "formats/foreign_decoders.hpp"
#include "quantizer/pack.hpp"

namespace razerq::formats {
namespace {

using quantizer::FormatConfig;
using quantizer::FormatId;
using quantizer::QuantizedTensor;

constexpr const char* kAccepts =
    "int (2-8 bits, symmetric or --asym) as pack-quantized, nvfp4 as nvfp4-pack-quantized, mxfp4 as "
    "mxfp4-pack-quantized";
// The release whose pack-quantized layout this writer follows (dense packing for every width).
constexpr const char* kCtVersion = "0.18.0";

const char* ct_format(const FormatConfig& cfg) {
  switch (cfg.id) {
    case FormatId::kInt: return "pack-quantized";
    case FormatId::kNvfp4: return "nvfp4-pack-quantized";
    case FormatId::kMxfp4: return "mxfp4-pack-quantized";
    default: return nullptr;
  }
}

class CtTarget : public ExportTarget {
 public:
  CtTarget(const PackedCheckpoint& ckpt, const FormatConfig& cfg) : ckpt_(ckpt), cfg_(cfg) {}
  const char* name() const override { return "compressed-tensors"; }

  TensorMapping write(const TensorRecord& r, const QuantizedTensor& q, SafetensorsWriter& w) override {
    const std::string mod = module_of(r.name, ckpt_.dir());
    const int64_t N = q.rows, K = q.cols, ng = q.groups_per_row;
    TensorMapping m;
    if (cfg_.id == FormatId::kInt) {
      const int b = q.cfg.bits;
      // Our row bitstream is the dense layout: the codes go as they are.
      w.add(mod + ".weight_packed", DType::kI32, {N, q.code_words_per_row}, q.codes.data(), q.codes.size() * 4);
      w.add(mod + ".weight_scale", DType::kF16, {N, ng}, q.scales16.data(), q.scales16.size() * 2);
      if (q.cfg.asym) {
        // Zero points packed along N: for each group g, the stream of zeros of rows 0..N-1.
        const int64_t zrows = (N * b + 31) / 32;
        std::vector<uint8_t> col(static_cast<size_t>(N));
        std::vector<uint32_t> words(static_cast<size_t>(zrows));
        std::vector<uint32_t> zp(static_cast<size_t>(zrows * ng));
        for (int64_t g = 0; g < ng; ++g) {
          for (int64_t n = 0; n < N; ++n)
            col[static_cast<size_t>(n)] = static_cast<uint8_t>(
                quantizer::unpack_one(&q.zeros[static_cast<size_t>(n * q.zero_words_per_row())], g, b));
          quantizer::pack_row(col.data(), N, b, words.data());
          for (int64_t j = 0; j < zrows; ++j) zp[static_cast<size_t>(j * ng + g)] = words[static_cast<size_t>(j)];
        }
        w.add(mod + ".weight_zero_point", DType::kI32, {zrows, ng}, zp.data(), zp.size() * 4);
      }
      const int32_t shape[2] = {static_cast<int32_t>(N), static_cast<int32_t>(K)};
      w.add(mod + ".weight_shape", DType::kI32, {2}, shape, sizeof shape);
      m.target_name = mod + ".weight_{packed,scale" + std::string(q.cfg.asym ? ",zero_point" : "") + ",shape}";
      m.target_type = strprintf("pack-quantized int%d %s g%d", b, q.cfg.asym ? "asym" : "sym", q.cfg.group);
      return m;
    }
    // FP4: our 4-bit row stream, read byte by byte, is "element 2j in the low nibble" (K is a
    // multiple of the group, so rows end on whole words: K/2 bytes).
    std::vector<uint8_t> packed(static_cast<size_t>(N * K / 2));
    for (int64_t n = 0; n < N; ++n) {
      const auto* src = reinterpret_cast<const uint8_t*>(&q.codes[static_cast<size_t>(n * q.code_words_per_row)]);
      std::copy(src, src + K / 2, packed.begin() + n * (K / 2));  // little-endian words
    }
    w.add(mod + ".weight_packed", DType::kU8, {N, K / 2}, packed.data(), packed.size());
    if (cfg_.id == FormatId::kNvfp4) {
      w.add(mod + ".weight_scale", DType::kF8E4M3, {N, ng}, q.scales8.data(), q.scales8.size());
      const float global = static_cast<float>(1.0 / double(q.tensor_scale));
      w.add(mod + ".weight_global_scale", DType::kF32, {1}, &global, sizeof global);
      m.target_name = mod + ".weight_{packed,scale,global_scale}";
      m.target_type = "nvfp4-pack-quantized";
      // scale / fp32(1/ts) against scale * ts: the reciprocal's fp32 rounding, |d| <= 2^-24
      // relative (plus the float64 division's own 2^-53).
      const double rel = std::fabs(double(q.tensor_scale) * double(global) - 1.0);
      m.tol_rel = std::ldexp(1.0, -24) * 1.0000001;
      m.note = strprintf("weight_global_scale = fp32(1/tensor_scale) = %.9g (reciprocal off by %.2e relative)",
                         double(global), rel);
    } else {
      w.add(mod + ".weight_scale", DType::kU8, {N, ng}, q.scales8.data(), q.scales8.size());
      m.target_name = mod + ".weight_{packed,scale}";
      m.target_type = "mxfp4-pack-quantized";
    }
    return m;
  }

  std::vector<double> decode(const SafetensorsFile& f, const TensorRecord& r) const override {
    const nlohmann::json qc = qconfig();
    const nlohmann::json& weights = qc["config_groups"]["group_0"]["weights"];
    const std::string fmt = qc["format"];
    const std::string mod = module_of(r.name, f.path());
    if (fmt == "pack-quantized") return foreign::decode_ct_pack_quantized(f, mod, weights, r.shape[0], r.shape[1]);
    return foreign::decode_ct_fp4(f, mod, fmt, weights, r.shape[0], r.shape[1]);
  }

  nlohmann::json qconfig() const {
    const nlohmann::json& quant = ckpt_.manifest().value("quantization", nlohmann::json::object());
    const bool act_order = quant.value("gptq", nlohmann::json::object()).value("act_order", false);
    nlohmann::json weights;
    if (cfg_.id == FormatId::kInt) {
      weights = {{"num_bits", cfg_.bits},
                 {"type", "int"},
                 {"symmetric", !cfg_.asym},
                 {"group_size", cfg_.group},
                 {"strategy", "group"},
                 {"block_structure", nullptr},
                 {"dynamic", false},
                 // razerq's GPTQ act-order keeps static groups: compressed-tensors' "weight" order.
                 {"actorder", act_order ? nlohmann::json("weight") : nlohmann::json(nullptr)},
                 {"scale_dtype", "torch.float16"},
                 {"zp_dtype", cfg_.asym ? nlohmann::json("torch.int8") : nlohmann::json(nullptr)},
                 {"observer", "minmax"},
                 {"observer_kwargs", nlohmann::json::object()}};
    } else {
      const bool nv = cfg_.id == FormatId::kNvfp4;
      weights = {{"num_bits", 4},
                 {"type", "float"},
                 {"symmetric", true},
                 {"group_size", nv ? 16 : 32},
                 {"strategy", nv ? "tensor_group" : "group"},
                 {"block_structure", nullptr},
                 {"dynamic", false},
                 {"actorder", nullptr},
                 {"scale_dtype", nv ? "torch.float8_e4m3fn" : "torch.uint8"},
                 {"zp_dtype", nullptr},
                 {"observer", nv ? "static_minmax" : "minmax"},
                 {"observer_kwargs", nlohmann::json::object()}};
    }
    const std::string fmt = ct_format(cfg_);
    nlohmann::json ignore = nlohmann::json::array();
    for (const auto& m : unquantized_linear_modules(ckpt_)) ignore.push_back(m);
    return {{"quant_method", "compressed-tensors"},
            {"format", fmt},
            {"quantization_status", "compressed"},
            {"config_groups",
             {{"group_0",
               {{"targets", {"Linear"}},
                {"weights", weights},
                {"input_activations", nullptr},
                {"output_activations", nullptr},
                {"format", fmt}}}}},
            {"ignore", ignore},
            {"kv_cache_scheme", nullptr},
            {"global_compression_ratio", nullptr},
            {"sparsity_config", nlohmann::json::object()},
            {"version", kCtVersion},
            {"producer", "razerq"}};
  }

  void finish(nlohmann::json& model_config, const StagedDir&) const override {
    model_config["quantization_config"] = qconfig();
  }

 private:
  const PackedCheckpoint& ckpt_;
  FormatConfig cfg_;
};

}  // namespace

ExportReport export_compressed_tensors(const std::string& packed_dir, const std::string& out_dir,
                                       const ExportOptions& opt, const ExportProgress& progress) {
  const PackedCheckpoint ckpt = PackedCheckpoint::open(packed_dir);
  const FormatConfig cfg = uniform_config(ckpt, "compressed-tensors");
  if (!ct_format(cfg))
    refuse(ckpt, cfg, "compressed-tensors",
           cfg.spec().has_special ? "its special-value code has no meaning there (a loader would decode it as -0)"
                                  : "compressed-tensors has no layout for this grid with this scale encoding",
           kAccepts);
  for (const auto& r : ckpt.tensors()) {
    if (!r.quantized) continue;
    const int64_t K = r.shape[1];
    if (K % cfg.group != 0)
      refuse(ckpt, cfg, "compressed-tensors",
             strprintf("tensor '%s' has %lld input columns, not a multiple of the group size %d (compressed-tensors "
                       "requires whole groups; quantize it with --skip or with a group that divides it)",
                       r.name.c_str(), static_cast<long long>(K), cfg.group),
             kAccepts);
    if (r.shape[0] > INT32_MAX || K > INT32_MAX)
      refuse(ckpt, cfg, "compressed-tensors", strprintf("tensor '%s' is too large for weight_shape (int32)", r.name.c_str()),
             kAccepts);
    module_of(r.name, ckpt.dir());
  }
  CtTarget t(ckpt, cfg);
  return run_export(ckpt, t, out_dir, opt.force, progress);
}

}  // namespace razerq::formats
