// Exports to GPTQ v1, compressed-tensors and bitsandbytes NF4 (formats/export_quantized.hpp):
// - every pair the exporters accept, on stories260K and llama-14m quantized here, re-read by the
//   independent decoders: lossless (exact, or within the stated fp32 rounding for nvfp4);
//   every pair they do not accept is refused naming the targets that would take it;
// - packing checked against words computed by hand from each target's definition (3-bit
//   GPTQ stream straddling words, v1 zero - 1, compressed-tensors' signed offset and zero
//   points packed along N, bitsandbytes' high nibble first, NVFP4's low nibble first and
//   reciprocal global scale), through the writers and through the decoders alone;
// - the GPTQ v1 zero-point-0 case, g_idx and act-order, refusals and their messages.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/file.hpp"
#include "common/half.hpp"
#include "formats/export_quantized.hpp"
#include "formats/foreign_decoders.hpp"
#include "quantizer/pack.hpp"
#include "tests/formats/pack_test_util.hpp"
#include "tests/test_util.hpp"

namespace razerq::formats {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using quantizer::FormatConfig;
using quantizer::QuantizedTensor;
using test::catch_error;
using test::Contains;
using test::TempDir;

constexpr const char* kStories = "models/stories260K/hf";
constexpr const char* kLlama14m = "models/llama-14m";
constexpr const char* kTargets[] = {"gptq", "compressed-tensors", "bnb-nf4"};

ExportReport run_target(const std::string& target, const std::string& in, const std::string& out) {
  ExportOptions opt;
  if (target == "gptq") return export_gptq(in, out, opt, nullptr);
  if (target == "compressed-tensors") return export_compressed_tensors(in, out, opt, nullptr);
  return export_bnb_nf4(in, out, opt, nullptr);
}

json read_json(const std::string& path) { return json::parse(razerq::read_file(path)); }

// Which targets must accept a checkpoint of `cfg` (what formats/NOTES.md promises).
bool accepts(const std::string& target, const FormatConfig& cfg) {
  using quantizer::FormatId;
  if (target == "gptq") return cfg.id == FormatId::kInt && (cfg.bits == 2 || cfg.bits == 3 || cfg.bits == 4 || cfg.bits == 8);
  if (target == "compressed-tensors") return cfg.id == FormatId::kInt || cfg.id == FormatId::kNvfp4 || cfg.id == FormatId::kMxfp4;
  return cfg.id == FormatId::kNf4;
}

// ---- every pair on the real models ------------------------------------------------------

struct Case {
  const char* model;
  const char* format;
  int bits, group;
  bool asym;
  const char* skip;  // regex of tensors kept unquantized (shapes a target cannot take)
};

std::string case_name(const ::testing::TestParamInfo<Case>& i) {
  std::string s = std::string(i.param.model == kStories ? "stories260K_" : "llama14m_") + i.param.format +
                  std::to_string(i.param.bits) + (i.param.asym ? "_asym" : "") + "_g" + std::to_string(i.param.group);
  for (char& c : s)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

class ExportPairs : public ::testing::TestWithParam<Case> {};

TEST_P(ExportPairs, EveryAcceptingTargetIsLosslessTheOthersRefuse) {
  const Case& c = GetParam();
  if (!fs::exists(test::data_path(c.model))) GTEST_SKIP() << "no " << test::data_path(c.model);
  TempDir d;
  const quantizer::FormatConfig cfg = quantizer::make_format_config(c.format, c.bits, c.group, c.asym);
  test::quantize_packed(test::data_path(c.model), d.str("packed"), cfg,
                        *c.skip ? std::vector<std::string>{c.skip} : std::vector<std::string>{}, 2);
  const PackedCheckpoint ckpt = PackedCheckpoint::open(d.str("packed"));
  int quantized = 0;
  for (const auto& r : ckpt.tensors()) quantized += r.quantized;
  ASSERT_GT(quantized, 0);

  int accepted = 0;
  for (const std::string target : kTargets) {
    const std::string out = d.str(target);
    if (!accepts(target, cfg)) {
      const Error e = catch_error([&] { run_target(target, d.str("packed"), out); });
      EXPECT_EQ(e.kind(), ErrorKind::kUnsupported) << e.what();
      EXPECT_TRUE(Contains(e.what(), "cannot be exported to " + target));
      EXPECT_TRUE(Contains(e.what(), "can go to:"));
      EXPECT_FALSE(fs::exists(out)) << target;
      EXPECT_FALSE(fs::exists(out + ".partial")) << target;
      continue;
    }
    ++accepted;
    const ExportReport rep = run_target(target, d.str("packed"), out);
    ASSERT_EQ(static_cast<int>(rep.tensors.size()), quantized) << target;
    for (const auto& v : rep.tensors) {
      // The one lossy case of an accepted pair: GPTQ v1 cannot store an asymmetric zero point
      // of 0 (stories260K int2-asym has one such group); the verdict must say so.
      if (target == "gptq" && c.asym && v.note.find("with zero point 0") != std::string::npos) {
        EXPECT_FALSE(v.lossless) << v.name;
        EXPECT_GT(v.max_abs_err, 0.0) << v.name;
        continue;
      }
      EXPECT_TRUE(v.lossless) << target << " " << v.name << ": " << v.note << " rel " << v.rel_err;
      if (cfg.id == quantizer::FormatId::kNvfp4)
        EXPECT_LE(v.rel_err, std::ldexp(1.0, -24)) << v.name;  // only the fp32 reciprocal global scale
      else
        EXPECT_EQ(v.max_abs_err, 0.0) << target << " " << v.name;
    }
    // Unquantized tensors are copied byte for byte; the config names the method.
    const SafetensorsFile f = SafetensorsFile::open(out + "/model.safetensors");
    for (const auto& r : ckpt.tensors()) {
      if (r.quantized) continue;
      const TensorInfo& a = ckpt.weights().info(r.name);
      const TensorInfo& b = f.info(r.name);
      ASSERT_EQ(a.dtype, b.dtype);
      ASSERT_EQ(a.shape, b.shape);
      EXPECT_EQ(std::memcmp(ckpt.weights().data(a), f.data(b), a.nbytes()), 0) << r.name;
    }
    const json cfg = read_json(out + "/config.json");
    ASSERT_TRUE(cfg.contains("quantization_config")) << target;
    const json& qc = cfg["quantization_config"];
    EXPECT_EQ(cfg["model_type"], "llama");
    EXPECT_TRUE(fs::exists(out + "/tokenizer.model"));
    EXPECT_FALSE(fs::exists(out + "/manifest.json"));
    if (target == "gptq") {
      EXPECT_EQ(qc["quant_method"], "gptq");
      EXPECT_EQ(qc["checkpoint_format"], "gptq");
      EXPECT_EQ(qc["bits"], c.bits);
      EXPECT_EQ(qc["group_size"], c.group);
      EXPECT_EQ(qc["sym"], !c.asym);
      EXPECT_EQ(qc["desc_act"], false);
      EXPECT_EQ(read_json(out + "/quantize_config.json"), qc);
    } else if (target == "compressed-tensors") {
      EXPECT_EQ(qc["quant_method"], "compressed-tensors");
      EXPECT_EQ(qc["quantization_status"], "compressed");
      const json& w = qc["config_groups"]["group_0"]["weights"];
      EXPECT_EQ(w["group_size"], c.group);
      EXPECT_EQ(w["symmetric"], !c.asym);
      // lm_head (kept unquantized by default) and every --skip layer are ignored.
      const json ignore = qc["ignore"];
      for (const auto& r : ckpt.tensors()) {
        if (r.quantized || r.shape.size() != 2 || r.name.find("embed") != std::string::npos) continue;
        EXPECT_NE(std::find(ignore.begin(), ignore.end(), r.name.substr(0, r.name.size() - 7)), ignore.end()) << r.name;
      }
    } else {
      EXPECT_EQ(qc["quant_method"], "bitsandbytes");
      EXPECT_EQ(qc["bnb_4bit_quant_type"], "nf4");
      EXPECT_EQ(qc["load_in_4bit"], true);
    }
  }
  EXPECT_EQ(accepted, (cfg.id == quantizer::FormatId::kInt || cfg.id == quantizer::FormatId::kNvfp4 ||
                       cfg.id == quantizer::FormatId::kMxfp4 || cfg.id == quantizer::FormatId::kNf4)
                          ? (accepts("gptq", cfg) ? 2 : 1)
                          : 0);
}

// stories260K: hidden 64, intermediate 172, 4 KV heads of 8 (k/v_proj have 32 rows). 172 is
// no multiple of a group or of a GPTQ word, so the MLP (or its down_proj) is kept unquantized.
const Case kCases[] = {
    {kStories, "int", 4, 32, false, "mlp"},
    {kStories, "int", 3, 32, true, "mlp"},
    {kStories, "int", 2, 32, true, "mlp"},
    {kStories, "int", 8, 32, false, "mlp"},
    {kStories, "int", 4, 32, true, "mlp"},
    {kStories, "nvfp4", 4, 16, false, "down_proj"},
    {kStories, "mxfp4", 4, 32, false, "down_proj"},
    {kStories, "nf4", 4, 64, false, "down_proj"},
    {kStories, "razer", 4, 32, false, "down_proj"},
    {kLlama14m, "int", 2, 128, false, ""},
    {kLlama14m, "int", 2, 64, true, ""},
    {kLlama14m, "int", 3, 128, false, ""},
    {kLlama14m, "int", 3, 128, true, ""},
    {kLlama14m, "int", 4, 128, false, ""},
    {kLlama14m, "int", 4, 128, true, ""},
    {kLlama14m, "int", 8, 128, false, ""},
    {kLlama14m, "int", 8, 128, true, ""},
    {kLlama14m, "int", 5, 128, true, ""},
    {kLlama14m, "nvfp4", 4, 16, false, ""},
    {kLlama14m, "mxfp4", 4, 32, false, ""},
    {kLlama14m, "nf4", 4, 64, false, ""},
    {kLlama14m, "nf4", 4, 128, false, ""},
    {kLlama14m, "fp4", 4, 128, false, ""},
    {kLlama14m, "nvfp4-razer", 4, 16, false, ""},
};
INSTANTIATE_TEST_SUITE_P(RealModels, ExportPairs, ::testing::ValuesIn(kCases), case_name);

// The stories260K int4 asym case above exports to compressed-tensors but not to GPTQ: the
// refusal names the tensor, its shape and the rule.
TEST(ExportRefusals, ShapesGptqCannotPackNameTheTensor) {
  if (!fs::exists(test::data_path(kStories))) GTEST_SKIP() << "no stories260K";
  TempDir d;
  const quantizer::FormatConfig int4 = quantizer::make_format_config("int", 4, 32, false);
  test::quantize_packed(test::data_path(kStories), d.str("packed"), int4, {"down_proj"});
  const Error e = catch_error([&] { export_gptq(d.str("packed"), d.str("out"), {}, nullptr); });
  EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
  EXPECT_TRUE(Contains(e.what(), "mlp.gate_proj.weight' is [172, 64]")) << e.what();
  EXPECT_TRUE(Contains(e.what(), "multiples of 8"));
  // Without --skip, down_proj (172 input columns) is no whole number of groups for compressed-tensors.
  TempDir d2;
  test::quantize_packed(test::data_path(kStories), d2.str("packed"), int4);
  const Error e2 = catch_error([&] { export_compressed_tensors(d2.str("packed"), d2.str("out"), {}, nullptr); });
  EXPECT_TRUE(Contains(e2.what(), "down_proj.weight' has 172 input columns, not a multiple of the group size 32"))
      << e2.what();
  EXPECT_FALSE(fs::exists(d2.str("out.partial")));
}

// ---- hand-made checkpoints ----------------------------------------------------------------

constexpr const char* kW = "model.layers.0.mlp.up_proj.weight";
constexpr const char* kM = "model.layers.0.mlp.up_proj";

// A packed tensor from explicit codes [N, K] (row-major), one fp16 scale per group and, for
// asym, zeros [N, ng].
QuantizedTensor make_tensor(const FormatConfig& cfg, int64_t N, int64_t K, const std::vector<uint8_t>& codes,
                            const std::vector<float>& scales, const std::vector<uint8_t>& zeros = {}) {
  QuantizedTensor q;
  q.cfg = cfg;
  q.rows = N;
  q.cols = K;
  q.groups_per_row = (K + cfg.group - 1) / cfg.group;
  q.code_words_per_row = quantizer::words_per_row(K, cfg.bits);
  q.codes.resize(static_cast<size_t>(N * q.code_words_per_row));
  for (int64_t n = 0; n < N; ++n)
    quantizer::pack_row(&codes[static_cast<size_t>(n * K)], K, cfg.bits, &q.codes[static_cast<size_t>(n * q.code_words_per_row)]);
  for (float s : scales) q.scales16.push_back(float_to_fp16(s));
  if (cfg.asym) {
    q.zeros.resize(static_cast<size_t>(N * q.zero_words_per_row()));
    for (int64_t n = 0; n < N; ++n)
      quantizer::pack_row(&zeros[static_cast<size_t>(n * q.groups_per_row)], q.groups_per_row, cfg.bits,
                          &q.zeros[static_cast<size_t>(n * q.zero_words_per_row())]);
  }
  return q;
}

// A packed checkpoint holding `q` as layer 0's up_proj, with a minimal config.json.
std::string write_checkpoint(const TempDir& d, const QuantizedTensor& q, const json& quantization = json::object()) {
  fs::create_directories(d.path() / "src");
  std::ofstream(d.str("src/config.json")) << json({{"model_type", "llama"}}).dump();
  PackedWriter w(d.str("packed"), false);
  TensorRecord rec;
  rec.source_dtype = "F16";
  w.add_quantized(kW, q, rec);
  w.copy_file(d.str("src/config.json"));
  w.finish({{"quantization", quantization}});
  return d.str("packed");
}

std::vector<uint32_t> words_of(const SafetensorsFile& f, const std::string& name) {
  const TensorInfo& t = f.info(name);
  std::vector<uint32_t> v(static_cast<size_t>(t.nbytes() / 4));
  std::memcpy(v.data(), f.data(t), t.nbytes());
  return v;
}
std::vector<uint8_t> bytes_of(const SafetensorsFile& f, const std::string& name) {
  const TensorInfo& t = f.info(name);
  return std::vector<uint8_t>(f.data(t), f.data(t) + t.nbytes());
}

// Values v_i = i mod 8, i = 0..31, as one little-endian 96-bit stream (3 bits each): computed
// by hand as sum(v_i << 3i) and cut into words. Codes 10 and 21 straddle the words.
constexpr uint32_t kStream3[3] = {0x88fac688u, 0xc688fac6u, 0xfac688fau};
// Zero 4 of symmetric 3-bit stored as 3 (v1 zero - 1), 32 times: 0b011 repeated.
constexpr uint32_t kZeros3[3] = {0xdb6db6dbu, 0xb6db6db6u, 0x6db6db6du};

TEST(ExportGptq, ThreeBitStreamAndZeroMinusOneByHand) {
  TempDir d;
  const int64_t N = 32, K = 32;
  std::vector<uint8_t> codes(static_cast<size_t>(N * K));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) codes[static_cast<size_t>(n * K + k)] = static_cast<uint8_t>((k + n) & 7);
  std::vector<float> scales(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) scales[static_cast<size_t>(n)] = 0.5f + 0.125f * float(n);
  const QuantizedTensor q = make_tensor(quantizer::make_format_config("int", 3, 32, false), N, K, codes, scales);
  const ExportReport rep = export_gptq(write_checkpoint(d, q), d.str("gptq"), {}, nullptr);
  ASSERT_EQ(rep.tensors.size(), 1u);
  EXPECT_TRUE(rep.tensors[0].lossless);
  EXPECT_EQ(rep.tensors[0].max_abs_err, 0.0);
  const SafetensorsFile f = SafetensorsFile::open(d.str("gptq/model.safetensors"));
  EXPECT_EQ(f.info(std::string(kM) + ".qweight").shape, (std::vector<int64_t>{3, 32}));
  const auto qw = words_of(f, std::string(kM) + ".qweight");
  for (int j = 0; j < 3; ++j) EXPECT_EQ(qw[static_cast<size_t>(j * N + 0)], kStream3[j]) << "qweight word " << j << " of column 0";
  const auto qz = words_of(f, std::string(kM) + ".qzeros");
  ASSERT_EQ(qz.size(), 3u);
  for (int j = 0; j < 3; ++j) EXPECT_EQ(qz[static_cast<size_t>(j)], kZeros3[j]);
  const auto g_idx = words_of(f, std::string(kM) + ".g_idx");
  for (int k = 0; k < K; ++k) EXPECT_EQ(g_idx[static_cast<size_t>(k)], 0u);
  // Column 5 decodes to scale * (((k + 5) mod 8) - 4).
  const json qc = read_json(d.str("gptq/quantize_config.json"));
  const std::vector<double> w = foreign::decode_gptq(f, kM, qc, N, K);
  for (int64_t k = 0; k < K; ++k) EXPECT_EQ(w[static_cast<size_t>(5 * K + k)], (0.5 + 0.625) * (double((k + 5) & 7) - 4)) << k;
}

TEST(ExportGptq, FourBitSymmetricZerosAreSevens) {
  TempDir d;
  const int64_t N = 16, K = 64;
  std::vector<uint8_t> codes(static_cast<size_t>(N * K));
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>((i * 7) & 15);
  const QuantizedTensor q =
      make_tensor(quantizer::make_format_config("int", 4, 32, false), N, K, codes, std::vector<float>(N * 2, 0.25f));
  export_gptq(write_checkpoint(d, q), d.str("gptq"), {}, nullptr);
  const SafetensorsFile f = SafetensorsFile::open(d.str("gptq/model.safetensors"));
  const auto qz = words_of(f, std::string(kM) + ".qzeros");
  ASSERT_EQ(qz.size(), 4u);  // [2 groups, 16 * 4 / 32]
  for (uint32_t z : qz) EXPECT_EQ(z, 0x77777777u);
  // Row 0, codes 0, 7, 14, 5, 12, 3, 10, 1: one word, code k in nibble k.
  EXPECT_EQ(words_of(f, std::string(kM) + ".qweight")[0], 0x1a3c5e70u);
  const auto g_idx = words_of(f, std::string(kM) + ".g_idx");
  for (int k = 0; k < K; ++k) EXPECT_EQ(g_idx[static_cast<size_t>(k)], uint32_t(k / 32));
}

// Zero point 0 has no v1 encoding every reader decodes alike: the group is re-encoded with
// zero 1, exact unless the group uses the top code, which clamps (one step lower).
TEST(ExportGptq, ZeroPointZeroIsReencodedAndReported) {
  TempDir d;
  const int64_t N = 8, K = 64;
  std::vector<uint8_t> codes(static_cast<size_t>(N * K), 3), zeros(static_cast<size_t>(N * 2), 8);
  zeros[0] = 0;                                                         // row 0, group 0: codes 3 only
  zeros[2] = 0;                                                         // row 1, group 0
  codes[static_cast<size_t>(1 * K + 5)] = 15;                           // ... uses the top code once
  std::vector<float> scales(static_cast<size_t>(N * 2), 0.5f);
  scales[2] = 0.75f;
  const QuantizedTensor q = make_tensor(quantizer::make_format_config("int", 4, 32, true), N, K, codes, scales, zeros);
  const ExportReport rep = export_gptq(write_checkpoint(d, q), d.str("gptq"), {}, nullptr);
  ASSERT_EQ(rep.tensors.size(), 1u);
  const TensorVerdict& v = rep.tensors[0];
  EXPECT_FALSE(v.lossless);
  EXPECT_EQ(v.max_abs_err, 0.75);  // one step of row 1's scale, at one weight
  EXPECT_TRUE(Contains(v.note, "2 group(s) with zero point 0")) << v.note;
  EXPECT_TRUE(Contains(v.note, "1 top code(s) clamped")) << v.note;
  const SafetensorsFile f = SafetensorsFile::open(d.str("gptq/model.safetensors"));
  const std::vector<double> w = foreign::decode_gptq(f, kM, read_json(d.str("gptq/quantize_config.json")), N, K);
  for (int64_t k = 0; k < 32; ++k) EXPECT_EQ(w[static_cast<size_t>(k)], 3 * 0.5) << k;  // row 0 exact
  EXPECT_EQ(w[static_cast<size_t>(K + 5)], 14 * 0.75);                                    // clamped
  // qzeros of group 0: rows 0 and 1 store 0 (zero 1 - 1), the others 7 (zero 8 - 1).
  EXPECT_EQ(words_of(f, std::string(kM) + ".qzeros")[0], 0x77777700u);
}

TEST(ExportGptq, ActOrderKeepsStaticGroups) {
  TempDir d;
  const int64_t N = 8, K = 96;
  const QuantizedTensor q = make_tensor(quantizer::make_format_config("int", 4, 32, false), N, K,
                                        std::vector<uint8_t>(N * K, 9), std::vector<float>(N * 3, 1.0f));
  export_gptq(write_checkpoint(d, q, {{"gptq", {{"act_order", true}, {"damp", 0.02}}}}), d.str("gptq"), {}, nullptr);
  const json qc = read_json(d.str("gptq/config.json"))["quantization_config"];
  EXPECT_EQ(qc["desc_act"], false);  // g_idx = k / G: no reordering needed by a loader
  EXPECT_EQ(qc["static_groups"], true);
  EXPECT_EQ(qc["damp_percent"], 0.02);
  const SafetensorsFile f = SafetensorsFile::open(d.str("gptq/model.safetensors"));
  const auto g_idx = words_of(f, std::string(kM) + ".g_idx");
  for (int k = 0; k < K; ++k) EXPECT_EQ(g_idx[static_cast<size_t>(k)], uint32_t(k / 32));
  TempDir d2;
  export_compressed_tensors(write_checkpoint(d2, q, {{"gptq", {{"act_order", true}}}}), d2.str("ct"), {}, nullptr);
  EXPECT_EQ(read_json(d2.str("ct/config.json"))["quantization_config"]["config_groups"]["group_0"]["weights"]["actorder"],
            "weight");
}

TEST(ExportCompressedTensors, SignedOffsetAndZeroPointsPackedAlongN) {
  TempDir d;
  const int64_t N = 8, K = 64;
  std::vector<uint8_t> codes(static_cast<size_t>(N * K)), zeros(static_cast<size_t>(N * 2));
  for (int64_t k = 0; k < K; ++k) codes[static_cast<size_t>(k)] = static_cast<uint8_t>(k & 15);  // row 0: 0..15
  for (int64_t n = 0; n < N; ++n) {
    zeros[static_cast<size_t>(n * 2)] = static_cast<uint8_t>(n);           // group 0: zero n
    zeros[static_cast<size_t>(n * 2 + 1)] = static_cast<uint8_t>(15 - n);  // group 1: 15 - n
  }
  std::vector<float> scales(static_cast<size_t>(N * 2), 0.5f);
  const QuantizedTensor qa = make_tensor(quantizer::make_format_config("int", 4, 32, true), N, K, codes, scales, zeros);
  const ExportReport rep = export_compressed_tensors(write_checkpoint(d, qa), d.str("ct"), {}, nullptr);
  EXPECT_TRUE(rep.tensors.at(0).lossless);
  const SafetensorsFile f = SafetensorsFile::open(d.str("ct/model.safetensors"));
  // Stored value = signed value + 8 = our code: 0..7 -> 0x76543210.
  EXPECT_EQ(words_of(f, std::string(kM) + ".weight_packed")[0], 0x76543210u);
  // weight_zero_point [1, 2]: zeros of rows 0..7 (signed zero + 8 = ours) along N.
  EXPECT_EQ(f.info(std::string(kM) + ".weight_zero_point").shape, (std::vector<int64_t>{1, 2}));
  const auto zp = words_of(f, std::string(kM) + ".weight_zero_point");
  EXPECT_EQ(zp[0], 0x76543210u);
  EXPECT_EQ(zp[1], 0x89abcdefu);
  const json qc = read_json(d.str("ct/config.json"))["quantization_config"];
  const std::vector<double> w =
      foreign::decode_ct_pack_quantized(f, kM, qc["config_groups"]["group_0"]["weights"], N, K);
  EXPECT_EQ(w[15], (15 - 0) * 0.5);                       // row 0, group 0: code 15, zero 0
  EXPECT_EQ(w[static_cast<size_t>(7 * K + 40)], (0 - 8) * 0.5);  // row 7, group 1: code 0, zero 15 - 7
  // Symmetric: signed value = code - 8 (no zero point tensor).
  TempDir d2;
  const QuantizedTensor qs = make_tensor(quantizer::make_format_config("int", 4, 32, false), N, K, codes, scales);
  export_compressed_tensors(write_checkpoint(d2, qs), d2.str("ct"), {}, nullptr);
  const SafetensorsFile f2 = SafetensorsFile::open(d2.str("ct/model.safetensors"));
  EXPECT_FALSE(f2.has(std::string(kM) + ".weight_zero_point"));
  const std::vector<double> w2 = foreign::decode_ct_pack_quantized(
      f2, kM, read_json(d2.str("ct/config.json"))["quantization_config"]["config_groups"]["group_0"]["weights"], N, K);
  EXPECT_EQ(w2[0], -8 * 0.5);
  EXPECT_EQ(w2[15], 7 * 0.5);
}

// The decoders alone, on words written by hand: the 3-bit stream of kStream3 read by GPTQ's
// 10-1-10-1-10 rule (as a qweight column) and by compressed-tensors' dense rule (as a row).
TEST(ForeignDecoders, ThreeBitWordsByHand) {
  TempDir d;
  const int64_t N = 32, K = 32;
  {
    SafetensorsWriter w(d.str("x.safetensors"));
    std::vector<uint32_t> qweight(3 * N), qzeros(3, 0), packed(N * 3);
    for (int j = 0; j < 3; ++j)
      for (int64_t n = 0; n < N; ++n) qweight[static_cast<size_t>(j * N + n)] = kStream3[j];
    for (int j = 0; j < 3; ++j) qzeros[static_cast<size_t>(j)] = kZeros3[j];
    for (int64_t n = 0; n < N; ++n)
      for (int j = 0; j < 3; ++j) packed[static_cast<size_t>(n * 3 + j)] = kStream3[j];
    std::vector<uint16_t> scales(N, float_to_fp16(2.0f));
    std::vector<int32_t> g_idx(K, 0);
    const int32_t shape[2] = {int32_t(N), int32_t(K)};
    w.add("g.qweight", DType::kI32, {3, N}, qweight.data(), qweight.size() * 4);
    w.add("g.qzeros", DType::kI32, {1, 3}, qzeros.data(), 12);
    w.add("g.scales", DType::kF16, {1, N}, scales.data(), scales.size() * 2);
    w.add("g.g_idx", DType::kI32, {K}, g_idx.data(), g_idx.size() * 4);
    w.add("c.weight_packed", DType::kI32, {N, 3}, packed.data(), packed.size() * 4);
    w.add("c.weight_scale", DType::kF16, {N, 1}, scales.data(), scales.size() * 2);
    w.add("c.weight_shape", DType::kI32, {2}, shape, 8);
    w.finish();
  }
  const SafetensorsFile f = SafetensorsFile::open(d.str("x.safetensors"));
  const std::vector<double> g =
      foreign::decode_gptq(f, "g", {{"bits", 3}, {"group_size", 32}, {"checkpoint_format", "gptq"}}, N, K);
  const std::vector<double> c = foreign::decode_ct_pack_quantized(
      f, "c", {{"num_bits", 3}, {"type", "int"}, {"group_size", 32}, {"strategy", "group"}, {"symmetric", true}}, N, K);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      EXPECT_EQ(g[static_cast<size_t>(n * K + k)], 2.0 * (double(k & 7) - 4)) << n << "," << k;  // zero 3 + 1
      EXPECT_EQ(c[static_cast<size_t>(n * K + k)], 2.0 * (double(k & 7) - 4)) << n << "," << k;  // value - 2^2
    }
}

TEST(ExportBnb, HighNibbleFirstAndAbsmaxIsOurScale) {
  TempDir d;
  const int64_t N = 4, K = 64;
  std::vector<uint8_t> codes(static_cast<size_t>(N * K));
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>((i + 1) & 15);
  const std::vector<float> scales = {0.5f, 1.5f, 0.25f, 3.0f};
  const QuantizedTensor q = make_tensor(quantizer::make_format_config("nf4", 4, 64, false), N, K, codes, scales);
  const ExportReport rep = export_bnb_nf4(write_checkpoint(d, q), d.str("bnb"), {}, nullptr);
  EXPECT_TRUE(rep.tensors.at(0).lossless);
  EXPECT_EQ(rep.tensors.at(0).max_abs_err, 0.0);
  const SafetensorsFile f = SafetensorsFile::open(d.str("bnb/model.safetensors"));
  const auto data = bytes_of(f, kW);
  EXPECT_EQ(f.info(kW).shape, (std::vector<int64_t>{N * K / 2, 1}));
  EXPECT_EQ(data[0], 0x12);  // elements 0, 1 (codes 1, 2): the first in the high nibble
  EXPECT_EQ(data[1], 0x34);
  EXPECT_EQ(data[7], 0xf0);  // codes 15, 0
  const auto absmax = words_of(f, std::string(kW) + ".absmax");
  ASSERT_EQ(absmax.size(), 4u);
  float a3;
  std::memcpy(&a3, &absmax[3], 4);
  EXPECT_EQ(a3, 3.0f);
  const auto qs = bytes_of(f, std::string(kW) + ".quant_state.bitsandbytes__nf4");
  const json st = json::parse(std::string(qs.begin(), qs.end()));
  EXPECT_EQ(st["quant_type"], "nf4");
  EXPECT_EQ(st["blocksize"], 64);
  EXPECT_EQ(st["shape"], json({N, K}));
  EXPECT_EQ(st["dtype"], "float16");
  // NF4 table value of code 15 is 1.0, code 1 is -0.6961928009986877 (as float32).
  const std::vector<double> w = foreign::decode_bnb_4bit(f, kW, N, K);
  EXPECT_EQ(w[0], double(-0.6961928009986877f) * 0.5);
  EXPECT_EQ(w[static_cast<size_t>(3 * K + 14)], 1.0 * 3.0);  // i = 206: code 207 & 15 = 15
}

TEST(ExportBnb, RefusesBlockSizesBitsandbytesLacks) {
  TempDir d;
  const QuantizedTensor q = make_tensor(quantizer::make_format_config("nf4", 4, 48, false), 2, 96,
                                        std::vector<uint8_t>(192, 3), std::vector<float>(4, 1.0f));
  const Error e = catch_error([&] { export_bnb_nf4(write_checkpoint(d, q), d.str("bnb"), {}, nullptr); });
  EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
  EXPECT_TRUE(Contains(e.what(), "block sizes 32 ... 4096, powers of two, not 48")) << e.what();
  EXPECT_FALSE(fs::exists(d.str("bnb")));
}

// NVFP4: E2M1 codes low nibble first, the E4M3 bytes as they are, and the per-tensor scale as
// its fp32 reciprocal (compressed-tensors divides by weight_global_scale).
TEST(ExportCompressedTensors, Nvfp4LowNibbleFirstReciprocalGlobalScale) {
  if (!fs::exists(test::data_path(kLlama14m))) GTEST_SKIP() << "no llama-14m";
  TempDir d;
  test::quantize_packed(test::data_path(kLlama14m), d.str("packed"), quantizer::make_format_config("nvfp4"),
                        {"layers\\.[1-7]\\.", "mlp", "self_attn\\.[kvo]"});
  const PackedCheckpoint ckpt = PackedCheckpoint::open(d.str("packed"));
  const std::string name = "model.layers.0.self_attn.q_proj.weight";
  const QuantizedTensor q = ckpt.load_quantized(name);
  export_compressed_tensors(d.str("packed"), d.str("ct"), {}, nullptr);
  const SafetensorsFile f = SafetensorsFile::open(d.str("ct/model.safetensors"));
  const std::string m = "model.layers.0.self_attn.q_proj";
  const auto packed = bytes_of(f, m + ".weight_packed");
  std::vector<uint8_t> c(2);
  quantizer::unpack_row(q.codes.data(), 2, 4, c.data());
  EXPECT_EQ(packed[0], uint8_t(c[0] | (c[1] << 4)));
  EXPECT_EQ(f.info(m + ".weight_scale").dtype, DType::kF8E4M3);
  EXPECT_EQ(bytes_of(f, m + ".weight_scale"), q.scales8);
  float gs;
  std::memcpy(&gs, bytes_of(f, m + ".weight_global_scale").data(), 4);
  EXPECT_EQ(gs, static_cast<float>(1.0 / double(q.tensor_scale)));
  const json qc = read_json(d.str("ct/config.json"))["quantization_config"];
  EXPECT_EQ(qc["format"], "nvfp4-pack-quantized");
  EXPECT_EQ(qc["config_groups"]["group_0"]["weights"]["strategy"], "tensor_group");
}

TEST(ExportRefusals, RazerAndOtherFormatsNameTheTargetsThatTakeThem) {
  TempDir d;
  const QuantizedTensor q5 = make_tensor(quantizer::make_format_config("int", 5, 32, false), 32, 32,
                                         std::vector<uint8_t>(1024, 3), std::vector<float>(32, 1.0f));
  const std::string p = write_checkpoint(d, q5);
  const Error e = catch_error([&] { export_gptq(p, d.str("gptq"), {}, nullptr); });
  EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
  EXPECT_TRUE(Contains(e.what(), "int5-sym/g32 cannot be exported to gptq: GPTQ v1 has no 5-bit layout")) << e.what();
  EXPECT_TRUE(Contains(e.what(), "can go to: compressed-tensors (pack-quantized), dequant")) << e.what();
  EXPECT_TRUE(export_compressed_tensors(p, d.str("ct"), {}, nullptr).tensors.at(0).lossless);

  if (!fs::exists(test::data_path(kStories))) GTEST_SKIP() << "no stories260K";
  TempDir d2;
  test::quantize_packed(test::data_path(kStories), d2.str("packed"), quantizer::make_format_config("razer"));
  for (const std::string target : kTargets) {
    const Error r = catch_error([&] { run_target(target, d2.str("packed"), d2.str("out")); });
    EXPECT_EQ(r.kind(), ErrorKind::kUnsupported);
    EXPECT_TRUE(Contains(r.what(), "razer4/g128 cannot be exported to " + target)) << r.what();
    EXPECT_TRUE(Contains(r.what(), "razer4/g128 can go to: dequant")) << r.what();
  }
}

TEST(ExportRefusals, ExistingOutputNeedsForce) {
  TempDir d;
  const QuantizedTensor q = make_tensor(quantizer::make_format_config("int", 4, 32, false), 8, 32,
                                        std::vector<uint8_t>(256, 3), std::vector<float>(8, 1.0f));
  const std::string p = write_checkpoint(d, q);
  fs::create_directories(d.str("out"));
  const Error e = catch_error([&] { export_gptq(p, d.str("out"), {}, nullptr); });
  EXPECT_TRUE(Contains(e.what(), "already exists (pass --force to replace it)"));
  ExportOptions force;
  force.force = true;
  EXPECT_EQ(export_gptq(p, d.str("out"), force, nullptr).tensors.size(), 1u);
  EXPECT_TRUE(fs::exists(d.str("out/quantize_config.json")));
}

}  // namespace
}  // namespace razerq::formats
