// quantize_model -> PackedCheckpoint -> export_dequant on llama-14m (sharded fp16, K = 384/1024)
// and stories260K (fp32, K = 64/172: ragged groups), for every registry format.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "common/half.hpp"
#include "common/sha256.hpp"
#include "formats/export_dequant.hpp"
#include "formats/hf_checkpoint.hpp"
#include "formats/packed_checkpoint.hpp"
#include "formats/quantize_model.hpp"
#include "quantizer/reference_rules.hpp"
#include "tests/test_util.hpp"

namespace fs = std::filesystem;
using namespace razerq;
using namespace razerq::formats;

namespace {

struct Fmt {
  const char* name;
  int bits, group;
  bool asym;
};
const Fmt kAll[] = {{"razer", 4, 128, false}, {"razer", 3, 128, false}, {"int", 4, 128, false},
                    {"int", 4, 128, true},    {"int", 3, 128, false},   {"fp4", 4, 128, false},
                    {"fp3", 3, 128, false},   {"nf4", 4, 64, false},    {"mxfp4", 4, 32, false},
                    {"mxfp4-razer", 4, 32, false}, {"nvfp4", 4, 16, false}, {"nvfp4-razer", 4, 16, false}};

std::string name_of(const Fmt& f) {
  std::string s = quantizer::make_format_config(f.name, f.bits, f.group, f.asym).label();
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

bool have_model(const std::string& rel) { return fs::exists(test::data_path(rel) + "/config.json"); }

QuantizeSummary run(const std::string& model, const std::string& out, const Fmt& f, bool compare = true) {
  QuantizeJob job;
  job.model_dir = test::data_path(model);
  job.out_dir = out;
  job.cfg = quantizer::make_format_config(f.name, f.bits, f.group, f.asym);
  job.compare_reference = compare;
  job.checksums = false;
  return quantize_model(job, nullptr);
}

// Every quantized tensor of `out` decodes (validated) to the recorded error against the source,
// the export holds exactly the fp16 rounding of the float64 reference dequantization, and
// unquantized tensors are byte-identical.
void check_round_trip(const std::string& model, const std::string& out, const std::string& exported) {
  const HfCheckpoint src = HfCheckpoint::open(test::data_path(model));
  const PackedCheckpoint pk = PackedCheckpoint::open(out);
  ExportOptions eo;
  export_dequant(out, exported, eo, nullptr);
  const HfCheckpoint ex = HfCheckpoint::open(exported);
  ASSERT_EQ(ex.tensor_names.size(), src.tensor_names.size());
  int quantized = 0;
  for (const TensorRecord& r : pk.tensors()) {
    const TensorInfo& si = src.info(r.name);
    const TensorInfo& ei = ex.info(r.name);
    ASSERT_EQ(ei.shape, si.shape) << r.name;
    if (!r.quantized) {
      ASSERT_EQ(ei.dtype, si.dtype);
      ASSERT_EQ(0, std::memcmp(ex.file_of(r.name).data(ei), src.file_of(r.name).data(si), si.nbytes())) << r.name;
      continue;
    }
    ++quantized;
    const quantizer::QuantizedTensor q = pk.load_quantized(r.name);
    std::vector<double> ref(static_cast<size_t>(q.rows * q.cols));
    quantizer::dequantize_ref(q, ref.data());
    const std::vector<float> w = src.file_of(r.name).read_float(r.name);
    double e = 0, n = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      e += (ref[i] - w[i]) * (ref[i] - w[i]);
      n += double(w[i]) * w[i];
    }
    EXPECT_NEAR(std::sqrt(e / n), r.rel_error, 1e-12) << r.name;
    ASSERT_EQ(ei.dtype, DType::kF16) << r.name;
    const auto* h = reinterpret_cast<const uint16_t*>(ex.file_of(r.name).data(ei));
    for (size_t i = 0; i < ref.size(); ++i) {
      uint16_t hi;
      std::memcpy(&hi, h + i, 2);
      ASSERT_EQ(hi, double_to_fp16(ref[i])) << r.name << " element " << i;
    }
  }
  EXPECT_GT(quantized, 0);
}

class Llama14m : public ::testing::TestWithParam<Fmt> {};
class Stories260K : public ::testing::TestWithParam<Fmt> {};

}  // namespace

TEST_P(Llama14m, QuantizeInspectExport) {
  if (!have_model("models/llama-14m")) GTEST_SKIP() << "no " << test::data_path("models/llama-14m");
  const Fmt f = GetParam();
  test::TempDir tmp;
  const QuantizeSummary s = run("models/llama-14m", tmp.str("out"), f);
  EXPECT_EQ(s.tensors, 75);
  EXPECT_EQ(s.quantized, 56);  // 8 layers x 7 linears; embeddings, norms and lm_head kept
  // Our search is at least as good as the authors' rule on every tensor.
  EXPECT_EQ(s.worse_than_reference, 0);
  const PackedCheckpoint pk = PackedCheckpoint::open(tmp.str("out"));
  const quantizer::FormatConfig cfg = quantizer::make_format_config(f.name, f.bits, f.group, f.asym);
  for (const auto& r : pk.tensors()) {
    if (!r.quantized) continue;
    EXPECT_DOUBLE_EQ(r.bits_per_weight, quantizer::bits_per_weight(cfg, r.shape[0], r.shape[1])) << r.name;
    EXPECT_LE(r.rel_error, r.reference_rel_error) << r.name;
    EXPECT_GT(r.rel_error, 0) << r.name;
  }
  if (std::string(f.name) == "razer" || std::string(f.name) == "fp4") {
    EXPECT_DOUBLE_EQ(s.bits_per_weight, f.bits + 16.0 / 128);  // 4.125 / 3.125: the index rides in the scale
  }
  check_round_trip("models/llama-14m", tmp.str("out"), tmp.str("exported"));
  for (const char* side : {"config.json", "tokenizer.model", "generation_config.json"})
    EXPECT_TRUE(fs::exists(tmp.path() / "exported" / side)) << side;
}

TEST_P(Stories260K, RaggedGroupsRoundTrip) {
  if (!have_model("models/stories260K/hf")) GTEST_SKIP() << "no " << test::data_path("models/stories260K/hf");
  const Fmt f = GetParam();
  test::TempDir tmp;
  const QuantizeSummary s = run("models/stories260K/hf", tmp.str("out"), f);
  EXPECT_EQ(s.quantized, 35);  // 5 layers x 7 linears; the tied embedding is kept
  EXPECT_EQ(s.worse_than_reference, 0);
  const PackedCheckpoint pk = PackedCheckpoint::open(tmp.str("out"));
  bool saw_ragged = false;
  for (const auto& r : pk.tensors())
    if (r.quantized && r.shape[1] % r.cfg.group) saw_ragged = true;
  EXPECT_TRUE(saw_ragged) << "K = 172 leaves a short last group for every group size here";
  check_round_trip("models/stories260K/hf", tmp.str("out"), tmp.str("exported"));
}

INSTANTIATE_TEST_SUITE_P(Formats, Llama14m, ::testing::ValuesIn(kAll), [](const auto& p) { return name_of(p.param); });
INSTANTIATE_TEST_SUITE_P(Formats, Stories260K, ::testing::ValuesIn(kAll), [](const auto& p) { return name_of(p.param); });

TEST(Pipeline, ReferenceRuleRecordsTheAuthorsChoices) {
  if (!have_model("models/llama-14m")) GTEST_SKIP() << "no llama-14m";
  test::TempDir tmp;
  QuantizeJob job;
  job.model_dir = test::data_path("models/llama-14m");
  job.out_dir = tmp.str("ref");
  job.cfg = quantizer::make_format_config("razer", 4, 128);
  job.search.rule = quantizer::Rule::kReference;
  job.checksums = false;
  quantize_model(job, nullptr);
  const PackedCheckpoint pk = PackedCheckpoint::open(tmp.str("ref"));
  EXPECT_EQ(pk.manifest()["quantization"]["rule"], "reference");
  const HfCheckpoint src = HfCheckpoint::open(job.model_dir);
  const std::string name = "model.layers.3.mlp.up_proj.weight";
  const auto w = src.file_of(name).read_float(name);
  const auto r = quantizer::reference_quantize(w.data(), 1024, 384, job.cfg);
  EXPECT_EQ(pk.record(name).sv_groups, r.sv_groups);
}

TEST(Pipeline, ManifestRecordsSettingsAndChecksums) {
  if (!have_model("models/stories260K/hf")) GTEST_SKIP() << "no stories260K";
  test::TempDir tmp;
  QuantizeJob job;
  job.model_dir = test::data_path("models/stories260K/hf");
  job.out_dir = tmp.str("o");
  job.cfg = quantizer::make_format_config("razer", 4, 128);
  job.skip = {"layers\\.4\\."};
  quantize_model(job, nullptr);
  const PackedCheckpoint pk = PackedCheckpoint::open(tmp.str("o"));
  const auto& m = pk.manifest();
  EXPECT_EQ(m["format"], "razerq-packed");
  EXPECT_EQ(m["quantization"]["format"], "razer");
  EXPECT_EQ(m["quantization"]["special_values"], std::vector<float>({5, 8, -5, -8}));
  // ../shared/data/SHA256SUMS publishes these.
  EXPECT_EQ(m["source"]["sha256"]["model.safetensors"], "7fe20d74ed0c9325c818c61ad972080a09b1d862dea4d4868f25afdff0ac6f98");
  EXPECT_EQ(m["source"]["sha256"]["config.json"], "c68b51ee8b0ced4a5988937554571029e76334c847ad5037cfd54f9e9e9aa2b2");
  EXPECT_EQ(m["weights_sha256"], sha256_file(tmp.str("o/model.safetensors")));
  EXPECT_FALSE(pk.record("model.layers.4.mlp.up_proj.weight").quantized);  // --skip
  EXPECT_TRUE(pk.record("model.layers.3.mlp.up_proj.weight").quantized);
}

TEST(Pipeline, ExistingOutputIsKeptUnlessForced) {
  if (!have_model("models/stories260K/hf")) GTEST_SKIP() << "no stories260K";
  test::TempDir tmp;
  fs::create_directories(tmp.path() / "o");
  std::ofstream(tmp.str("o/keep.txt")) << "precious";
  QuantizeJob job;
  job.model_dir = test::data_path("models/stories260K/hf");
  job.out_dir = tmp.str("o");
  job.cfg = quantizer::make_format_config("razer");
  try {
    quantize_model(job, nullptr);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("--force"), std::string::npos);
  }
  EXPECT_TRUE(fs::exists(tmp.path() / "o/keep.txt"));
  job.force = true;
  quantize_model(job, nullptr);
  EXPECT_FALSE(fs::exists(tmp.path() / "o/keep.txt"));
  EXPECT_TRUE(fs::exists(tmp.path() / "o/manifest.json"));
  EXPECT_FALSE(fs::exists(tmp.path() / "o.partial"));
  EXPECT_FALSE(fs::exists(tmp.path() / "o.old"));
}

TEST(Pipeline, BadSourceLeavesNothingBehind) {
  if (!have_model("models/llama-14m")) GTEST_SKIP() << "no llama-14m";
  test::TempDir tmp;
  // A copy of llama-14m whose last shard is truncated: the error names it, no output appears.
  const fs::path src = test::data_path("models/llama-14m");
  fs::create_directories(tmp.path() / "model");
  for (const auto& e : fs::directory_iterator(src)) fs::copy_file(e.path(), tmp.path() / "model" / e.path().filename());
  const fs::path shard = tmp.path() / "model" / "model-00003-of-00003.safetensors";
  fs::permissions(shard, fs::perms::owner_write, fs::perm_options::add);
  fs::resize_file(shard, fs::file_size(shard) - 1000);
  QuantizeJob job;
  job.model_dir = (tmp.path() / "model").string();
  job.out_dir = tmp.str("o");
  job.cfg = quantizer::make_format_config("razer");
  try {
    quantize_model(job, nullptr);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kMalformedInput);
    EXPECT_NE(std::string(e.what()).find("model-00003-of-00003.safetensors"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(tmp.path() / "o"));
  EXPECT_FALSE(fs::exists(tmp.path() / "o.partial"));
}

TEST(Pipeline, NanWeightIsReportedWithItsTensor) {
  if (!have_model("models/stories260K/hf")) GTEST_SKIP() << "no stories260K";
  test::TempDir tmp;
  const HfCheckpoint src = HfCheckpoint::open(test::data_path("models/stories260K/hf"));
  fs::create_directories(tmp.path() / "model");
  fs::copy_file(test::data_path("models/stories260K/hf/config.json"), tmp.path() / "model/config.json");
  {
    SafetensorsWriter w((tmp.path() / "model/model.safetensors").string());
    for (const auto& name : src.tensor_names) {
      const TensorInfo& ti = src.info(name);
      std::vector<uint8_t> bytes(src.file_of(name).data(ti), src.file_of(name).data(ti) + ti.nbytes());
      if (name == "model.layers.2.mlp.up_proj.weight") {
        const float nan = NAN;
        std::memcpy(bytes.data() + 4 * 77, &nan, 4);
      }
      w.add(name, ti.dtype, ti.shape, bytes.data(), bytes.size());
    }
    w.finish();
  }
  QuantizeJob job;
  job.model_dir = (tmp.path() / "model").string();
  job.out_dir = tmp.str("o");
  job.cfg = quantizer::make_format_config("razer");
  try {
    quantize_model(job, nullptr);
    FAIL();
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("model.layers.2.mlp.up_proj.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("NaN"), std::string::npos) << m;
  }
  EXPECT_FALSE(fs::exists(tmp.path() / "o.partial"));
}

TEST(PackedCheckpoint, CorruptionIsLocated) {
  if (!have_model("models/stories260K/hf")) GTEST_SKIP() << "no stories260K";
  test::TempDir tmp;
  QuantizeJob job;
  job.model_dir = test::data_path("models/stories260K/hf");
  job.out_dir = tmp.str("o");
  job.cfg = quantizer::make_format_config("int", 4, 32, true);
  job.checksums = false;
  quantize_model(job, nullptr);
  const std::string mpath = tmp.str("o/manifest.json");
  nlohmann::json m;
  std::ifstream(mpath) >> m;
  auto expect_open_error = [&](const nlohmann::json& mm, const std::string& needle) {
    std::ofstream(mpath) << mm.dump();
    try {
      PackedCheckpoint::open(tmp.str("o"));
      FAIL() << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto bad = m;
  bad["version"] = 99;
  expect_open_error(bad, "version 99");
  bad = m;
  bad["tensors"][3].erase("bits");
  expect_open_error(bad, "missing key \"bits\"");
  bad = m;
  bad["tensors"][3]["format"] = "razr";
  expect_open_error(bad, "unknown format 'razr'");
  bad = m;
  bad["tensors"][3]["shape"] = {64, 65};  // parts no longer match
  std::ofstream(mpath) << bad.dump();
  const PackedCheckpoint pk = PackedCheckpoint::open(tmp.str("o"));
  try {
    pk.load_quantized(bad["tensors"][3]["name"]);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(".qcodes"), std::string::npos) << e.what();
  }
  std::ofstream(mpath) << "{not json";
  EXPECT_THROW(PackedCheckpoint::open(tmp.str("o")), Error);
  try {
    PackedCheckpoint::open(test::data_path("models/stories260K/hf"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Hugging Face model directory"), std::string::npos);
  }
}

TEST(Pipeline, Bf16SourceIsReadAsItsValues) {
  // stories260K rewritten with BF16 weights: the quantizer sees exactly the bf16 values, and
  // the unquantized tensors stay BF16, byte for byte.
  if (!have_model("models/stories260K/hf")) GTEST_SKIP() << "no stories260K";
  test::TempDir tmp;
  const HfCheckpoint src = HfCheckpoint::open(test::data_path("models/stories260K/hf"));
  fs::create_directories(tmp.path() / "model");
  fs::copy_file(test::data_path("models/stories260K/hf/config.json"), tmp.path() / "model/config.json");
  {
    SafetensorsWriter w((tmp.path() / "model/model.safetensors").string());
    for (const auto& name : src.tensor_names) {
      const std::vector<float> f = src.file_of(name).read_float(name);
      std::vector<uint16_t> b(f.size());
      for (size_t i = 0; i < f.size(); ++i) b[i] = float_to_bf16(f[i]);
      w.add(name, DType::kBF16, src.info(name).shape, b.data(), b.size() * 2);
    }
    w.finish();
  }
  QuantizeJob job;
  job.model_dir = (tmp.path() / "model").string();
  job.out_dir = tmp.str("o");
  job.cfg = quantizer::make_format_config("razer");
  job.compare_reference = true;
  const QuantizeSummary s = quantize_model(job, nullptr);
  EXPECT_EQ(s.quantized, 35);
  EXPECT_EQ(s.worse_than_reference, 0);
  const PackedCheckpoint pk = PackedCheckpoint::open(tmp.str("o"));
  const HfCheckpoint bf = HfCheckpoint::open(job.model_dir);
  for (const auto& r : pk.tensors()) {
    if (!r.quantized) {
      EXPECT_EQ(pk.weights().info(r.name).dtype, DType::kBF16) << r.name;
      continue;
    }
    EXPECT_EQ(r.source_dtype, "BF16");
    // The recorded error is measured against the bf16 values the file holds.
    const std::vector<float> w = bf.file_of(r.name).read_float(r.name);
    const quantizer::QuantizedTensor q = pk.load_quantized(r.name);
    std::vector<double> out(w.size());
    quantizer::dequantize_ref(q, out.data());
    double e = 0, n = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      e += (out[i] - w[i]) * (out[i] - w[i]);
      n += double(w[i]) * w[i];
    }
    EXPECT_NEAR(std::sqrt(e / n), r.rel_error, 1e-12) << r.name;
  }
}
