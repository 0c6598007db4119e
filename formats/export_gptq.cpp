// GPTQ v1 export. Layout as GPTQModel writes and reads it (ModelCloud/GPTQModel @ f4c327a,
// gptqmodel/nn_modules/qlinear/__init__.py: _register_gptq_buffers, pack_block; v1 zero - 1:
// gptqmodel/utils/model.py convert_gptq_v2_to_v1_format_module; config keys:
// gptqmodel/quantization/config.py):
//   <module>.qweight  int32 [K*b/32, N]   column n = the little-endian b-bit stream of row n's
//                                          codes along K (3 bits: 32 codes per 3 words, the
//                                          10-1-10-1-10 layout is exactly that stream)
//   <module>.qzeros   int32 [ceil(K/G), N*b/32]  per group, the zeros along N, stored zero - 1
//   <module>.scales   fp16  [ceil(K/G), N]
//   <module>.g_idx    int32 [K]            k / G (act-order checkpoints of razerq keep static groups)
// W[n, k] = scales[g, n] * (q - (qzeros[g, n] + 1)).
#include <algorithm>

#include "common/error.hpp"
#include "formats/export_quantized.hpp"
#include "formats/foreign_decoders.hpp"
#include "quantizer/pack.hpp"

namespace razerq::formats {
namespace {

using quantizer::FormatConfig;
using quantizer::FormatId;
using quantizer::QuantizedTensor;

constexpr const char* kAccepts = "int (symmetric or --asym) at 2, 3, 4 or 8 bits";

// Escapes a module name for GPTQModel's `dynamic` regular expressions.
std::string regex_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string("\\^$.|?*+()[]{}").find(c) != std::string::npos) out += '\\';
    out += c;
  }
  return out;
}

class GptqTarget : public ExportTarget {
 public:
  GptqTarget(const PackedCheckpoint& ckpt, const FormatConfig& cfg) : ckpt_(ckpt), cfg_(cfg) {}
  const char* name() const override { return "gptq"; }

  TensorMapping write(const TensorRecord& r, const QuantizedTensor& q, SafetensorsWriter& w) override {
    const int b = q.cfg.bits;
    const int64_t N = q.rows, K = q.cols, ng = q.groups_per_row, G = q.cfg.group;
    const int64_t qrows = K * b / 32, zcols = N * b / 32;
    const uint32_t maxq = (1u << b) - 1u;
    const std::string mod = module_of(r.name, ckpt_.dir());
    std::vector<uint8_t> codes(static_cast<size_t>(K));
    std::vector<uint32_t> qweight(static_cast<size_t>(qrows * N));
    std::vector<uint8_t> zero(static_cast<size_t>(ng * N));  // [g, n], v1 value (zero - 1)
    int64_t zero0_groups = 0, clamped = 0;
    std::vector<uint32_t> row_words(static_cast<size_t>(qrows));
    for (int64_t n = 0; n < N; ++n) {
      quantizer::unpack_row(&q.codes[static_cast<size_t>(n * q.code_words_per_row)], K, b, codes.data());
      for (int64_t g = 0; g < ng; ++g) {
        uint32_t z = 1u << (b - 1);  // symmetric: base = code - 2^(b-1)
        if (q.cfg.asym) z = quantizer::unpack_one(&q.zeros[static_cast<size_t>(n * q.zero_words_per_row())], g, b);
        if (z == 0) {
          // v1 stores zero - 1, so a zero point of 0 has no encoding that every v1 reader
          // decodes alike (per-field readers see 2^b, GPTQModel's word-wide +1 carries into the
          // next field). Re-encode the group with zero 1 and codes + 1; the top code clamps.
          ++zero0_groups;
          z = 1;
          for (int64_t k = g * G; k < std::min(K, (g + 1) * G); ++k) {
            if (codes[static_cast<size_t>(k)] == maxq) ++clamped;
            else ++codes[static_cast<size_t>(k)];
          }
        }
        zero[static_cast<size_t>(g * N + n)] = static_cast<uint8_t>(z - 1);
      }
      quantizer::pack_row(codes.data(), K, b, row_words.data());
      for (int64_t j = 0; j < qrows; ++j) qweight[static_cast<size_t>(j * N + n)] = row_words[static_cast<size_t>(j)];
    }
    std::vector<uint32_t> qzeros(static_cast<size_t>(ng * zcols));
    for (int64_t g = 0; g < ng; ++g)
      quantizer::pack_row(&zero[static_cast<size_t>(g * N)], N, b, &qzeros[static_cast<size_t>(g * zcols)]);
    std::vector<uint16_t> scales(static_cast<size_t>(ng * N));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t g = 0; g < ng; ++g) scales[static_cast<size_t>(g * N + n)] = q.scales16[static_cast<size_t>(n * ng + g)];
    std::vector<int32_t> g_idx(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; ++k) g_idx[static_cast<size_t>(k)] = static_cast<int32_t>(k / G);

    w.add(mod + ".qweight", DType::kI32, {qrows, N}, qweight.data(), qweight.size() * 4);
    w.add(mod + ".qzeros", DType::kI32, {ng, zcols}, qzeros.data(), qzeros.size() * 4);
    w.add(mod + ".scales", DType::kF16, {ng, N}, scales.data(), scales.size() * 2);
    w.add(mod + ".g_idx", DType::kI32, {K}, g_idx.data(), g_idx.size() * 4);
    TensorMapping m;
    m.target_name = mod + ".{qweight,qzeros,scales,g_idx}";
    m.target_type = strprintf("GPTQ v1 int%d %s g%lld", b, q.cfg.asym ? "asym" : "sym", static_cast<long long>(G));
    if (zero0_groups > 0)
      m.note = strprintf("%lld group(s) with zero point 0, not representable in v1, re-encoded with zero 1 "
                         "(%lld top code(s) clamped)",
                         static_cast<long long>(zero0_groups), static_cast<long long>(clamped));
    return m;
  }

  std::vector<double> decode(const SafetensorsFile& f, const TensorRecord& r) const override {
    return foreign::decode_gptq(f, module_of(r.name, f.path()), qconfig(), r.shape[0], r.shape[1]);
  }

  nlohmann::json qconfig() const {
    const nlohmann::json& quant = ckpt_.manifest().value("quantization", nlohmann::json::object());
    const nlohmann::json gptq = quant.value("gptq", nlohmann::json::object());
    const bool act_order = gptq.value("act_order", false);
    nlohmann::json c = {
        {"bits", cfg_.bits},
        {"group_size", cfg_.group},
        // razerq's act-order keeps the natural column groups (static groups), so g_idx is
        // k / G and a loader needs no reordering: desc_act false.
        {"desc_act", false},
        {"sym", !cfg_.asym},
        {"static_groups", act_order},
        {"true_sequential", true},
        {"damp_percent", gptq.value("damp", 0.01)},
        {"lm_head", false},
        {"quant_method", "gptq"},
        {"checkpoint_format", "gptq"},
        {"format", "gptq"},
        {"pack_dtype", "int32"},
        {"meta", {{"quantizer", {"razerq"}}, {"act_order", act_order}, {"rtn", !quant.contains("stages")}}},
    };
    nlohmann::json dynamic = nlohmann::json::object();
    for (const auto& m : unquantized_linear_modules(ckpt_))
      if (m != "lm_head") dynamic["-:^" + regex_escape(m) + "$"] = nlohmann::json::object();
    if (!dynamic.empty()) c["dynamic"] = dynamic;
    return c;
  }

  void finish(nlohmann::json& model_config, const StagedDir& out) const override {
    model_config["quantization_config"] = qconfig();
    write_json_file(out.path("quantize_config.json"), qconfig());
  }

 private:
  const PackedCheckpoint& ckpt_;
  FormatConfig cfg_;
};

}  // namespace

ExportReport export_gptq(const std::string& packed_dir, const std::string& out_dir, const ExportOptions& opt,
                         const ExportProgress& progress) {
  const PackedCheckpoint ckpt = PackedCheckpoint::open(packed_dir);
  const FormatConfig cfg = uniform_config(ckpt, "gptq");
  if (cfg.id != FormatId::kInt) refuse(ckpt, cfg, "gptq", "GPTQ stores integer codes only", kAccepts);
  const int b = cfg.bits;
  if (b != 2 && b != 3 && b != 4 && b != 8)
    refuse(ckpt, cfg, "gptq", strprintf("GPTQ v1 has no %d-bit layout (GPTQModel's 5-7 bits are its own gptq_p format)", b),
           kAccepts);
  for (const auto& r : ckpt.tensors()) {
    if (!r.quantized) continue;
    const int64_t N = r.shape[0], K = r.shape[1];
    const int64_t unit = b == 3 ? 32 : 32 / b;
    if (K % unit != 0 || N % unit != 0)
      refuse(ckpt, cfg, "gptq",
             strprintf("tensor '%s' is [%lld, %lld]: GPTQ packs %s along in_features (qweight) and out_features "
                       "(qzeros) into whole int32 words, so both must be multiples of %lld (quantize it with "
                       "--skip, or export to compressed-tensors)",
                       r.name.c_str(), static_cast<long long>(N), static_cast<long long>(K),
                       b == 3 ? "32 codes per 3 words" : "codes", static_cast<long long>(unit)),
             kAccepts);
    module_of(r.name, ckpt.dir());
  }
  GptqTarget t(ckpt, cfg);
  return run_export(ckpt, t, out_dir, opt.force, progress);
}

}  // namespace razerq::formats
