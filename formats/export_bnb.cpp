// bitsandbytes NF4 export, as Params4bit serializes itself and transformers' bnb 4-bit loader
// reads it back (bitsandbytes-foundation/bitsandbytes @ 95f9af3: functional.py QuantState
// as_dict(packed=True), quantize_4bit's block sizes 32 ... 4096, get_4bit_type("nf4");
// backends/default/ops.py quantize_4bit (first code of a byte in the high nibble);
// huggingface/transformers src/transformers/quantizers/quantizer_bnb_4bit.py: pre-quantized
// weights need "<weight>.quant_state.bitsandbytes__nf4" and the other "<weight>.*" keys):
//   <m>.weight                                  uint8 [N*K/2, 1] codes of the flattened [N, K]
//   <m>.weight.absmax                           fp32 [N*K/G]     one per block of G
//   <m>.weight.quant_map                        fp32 [16]        the NF4 table
//   <m>.weight.quant_state.bitsandbytes__nf4    uint8 JSON {quant_type, blocksize, dtype, shape}
// W = quant_map[code] * absmax. Our nf4 group = a block when G divides K, and our searched fp16
// group scale is the absmax (exact in fp32), so the codes and scales go over unchanged.
#include "common/error.hpp"
#include "common/half.hpp"
#include "formats/export_quantized.hpp"
#include "formats/foreign_decoders.hpp"
#include "quantizer/pack.hpp"

namespace razerq::formats {
namespace {

using quantizer::FormatConfig;
using quantizer::FormatId;
using quantizer::QuantizedTensor;

constexpr const char* kAccepts = "nf4 with a group size of 32, 64, ..., 4096 (a power of two)";

// bitsandbytes' NF4 table (functional.py get_4bit_type("nf4")), as float32.
constexpr float kNf4[16] = {-1.0f,
                            -0.6961928009986877f,
                            -0.5250730514526367f,
                            -0.39491748809814453f,
                            -0.28444138169288635f,
                            -0.18477343022823334f,
                            -0.09105003625154495f,
                            0.0f,
                            0.07958029955625534f,
                            0.16093020141124725f,
                            0.24611230194568634f,
                            0.33791524171829224f,
                            0.44070982933044434f,
                            0.5626170039176941f,
                            0.7229568362236023f,
                            1.0f};

// torch's dtype names as QuantState writes them (str(dtype) without "torch.").
const char* torch_dtype(const std::string& safetensors_dtype) {
  if (safetensors_dtype == "BF16") return "bfloat16";
  if (safetensors_dtype == "F32") return "float32";
  return "float16";
}

class BnbTarget : public ExportTarget {
 public:
  BnbTarget(const PackedCheckpoint& ckpt, const FormatConfig& cfg) : ckpt_(ckpt), cfg_(cfg) {}
  const char* name() const override { return "bnb-nf4"; }

  TensorMapping write(const TensorRecord& r, const QuantizedTensor& q, SafetensorsWriter& w) override {
    const int64_t N = q.rows, K = q.cols, n = N * K, G = q.cfg.group;
    std::vector<uint8_t> codes(static_cast<size_t>(K));
    std::vector<uint8_t> data(static_cast<size_t>(n / 2));
    for (int64_t row = 0; row < N; ++row) {
      quantizer::unpack_row(&q.codes[static_cast<size_t>(row * q.code_words_per_row)], K, 4, codes.data());
      for (int64_t k = 0; k < K; k += 2)  // K is a multiple of G >= 32: pairs stay inside a row
        data[static_cast<size_t>((row * K + k) / 2)] =
            static_cast<uint8_t>((codes[static_cast<size_t>(k)] << 4) | codes[static_cast<size_t>(k + 1)]);
    }
    std::vector<float> absmax(q.scales16.size());
    for (size_t i = 0; i < absmax.size(); ++i) absmax[i] = fp16_to_float(q.scales16[i]);  // exact
    const nlohmann::json qs = {{"quant_type", "nf4"},
                               {"blocksize", G},
                               {"dtype", torch_dtype(r.source_dtype)},
                               {"shape", {N, K}}};
    const std::string js = qs.dump();
    w.add(r.name, DType::kU8, {n / 2, 1}, data.data(), data.size());
    w.add(r.name + ".absmax", DType::kF32, {static_cast<int64_t>(absmax.size())}, absmax.data(), absmax.size() * 4);
    w.add(r.name + ".quant_map", DType::kF32, {16}, kNf4, sizeof kNf4);
    w.add(r.name + ".quant_state.bitsandbytes__nf4", DType::kU8, {static_cast<int64_t>(js.size())}, js.data(), js.size());
    TensorMapping m;
    m.target_name = r.name + "{,.absmax,.quant_map,.quant_state.bitsandbytes__nf4}";
    m.target_type = strprintf("bnb nf4 blocksize %lld", static_cast<long long>(G));
    return m;
  }

  std::vector<double> decode(const SafetensorsFile& f, const TensorRecord& r) const override {
    return foreign::decode_bnb_4bit(f, r.name, r.shape[0], r.shape[1]);
  }

  void finish(nlohmann::json& model_config, const StagedDir&) const override {
    std::string dtype = "float16";
    for (const auto& r : ckpt_.tensors())
      if (r.quantized) dtype = torch_dtype(r.source_dtype);
    nlohmann::json skip = nlohmann::json::array();
    for (const auto& m : unquantized_linear_modules(ckpt_)) skip.push_back(m);
    model_config["quantization_config"] = {{"quant_method", "bitsandbytes"},
                                           {"load_in_4bit", true},
                                           {"load_in_8bit", false},
                                           {"bnb_4bit_quant_type", "nf4"},
                                           {"bnb_4bit_use_double_quant", false},
                                           {"bnb_4bit_compute_dtype", dtype},
                                           {"bnb_4bit_quant_storage", "uint8"},
                                           {"llm_int8_skip_modules", skip},
                                           {"llm_int8_threshold", 6.0},
                                           {"llm_int8_has_fp16_weight", false},
                                           {"llm_int8_enable_fp32_cpu_offload", false},
                                           {"producer", "razerq"}};
  }

 private:
  const PackedCheckpoint& ckpt_;
  FormatConfig cfg_;
};

}  // namespace

ExportReport export_bnb_nf4(const std::string& packed_dir, const std::string& out_dir, const ExportOptions& opt,
                            const ExportProgress& progress) {
  const PackedCheckpoint ckpt = PackedCheckpoint::open(packed_dir);
  const FormatConfig cfg = uniform_config(ckpt, "bnb-nf4");
  if (cfg.id != FormatId::kNf4) refuse(ckpt, cfg, "bnb-nf4", "bitsandbytes' 4-bit grid is the NF4 table", kAccepts);
  const int G = cfg.group;
  if (G < 32 || G > 4096 || (G & (G - 1)) != 0)
    refuse(ckpt, cfg, "bnb-nf4", strprintf("bitsandbytes takes block sizes 32 ... 4096, powers of two, not %d", G),
           kAccepts);
  // Our grid must be bitsandbytes' table in float32 for the codes to carry over unchanged.
  const quantizer::Grid grid = quantizer::base_grid(cfg);
  for (int c = 0; c < 16; ++c)
    if (grid.value[static_cast<size_t>(c)] != double(kNf4[c]))
      throw_error(ErrorKind::kInternal, "quantizer nf4 grid", "code %d is %.17g, bitsandbytes has %.17g", c,
                  grid.value[static_cast<size_t>(c)], double(kNf4[c]));
  for (const auto& r : ckpt.tensors()) {
    if (!r.quantized) continue;
    if (r.shape[1] % G != 0)
      refuse(ckpt, cfg, "bnb-nf4",
             strprintf("tensor '%s' has %lld input columns, not a multiple of %d: bitsandbytes' blocks run over the "
                       "flattened tensor, so a row's last, shorter group would straddle two rows",
                       r.name.c_str(), static_cast<long long>(r.shape[1]), G),
             kAccepts);
  }
  BnbTarget t(ckpt, cfg);
  return run_export(ckpt, t, out_dir, opt.force, progress);
}

}  // namespace razerq::formats
