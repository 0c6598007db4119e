// HfCheckpoint: the real test models of shared/data, and every directory-level error on
// synthetic model directories built in a temp dir.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "formats/hf_checkpoint.hpp"
#include "tests/test_util.hpp"

namespace razerq::formats {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::TempDir;

// ---- helpers ---------------------------------------------------------------------------

using test::catch_error;
using test::Contains;

// Opening `dir` must fail with `kind`, and the message must contain every string of `parts`.
void expect_open_error(const std::string& dir, ErrorKind kind,
                       const std::vector<std::string>& parts) {
  Error e = catch_error([&] { HfCheckpoint::open(dir); });
  EXPECT_EQ(e.kind(), kind) << e.what();
  for (const auto& p : parts) EXPECT_TRUE(Contains(e.what(), p));
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  ASSERT_TRUE(out.good()) << p;
}

json tiny_config() {
  return {{"model_type", "llama"}, {"hidden_size", 4}, {"num_hidden_layers", 1}, {"vocab_size", 8}};
}

// One F32 shard; tensor values are i * 0.25 + the tensor's position.
void write_shard(const fs::path& p,
                 const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors) {
  SafetensorsWriter w(p.string());
  w.set_metadata({{"format", "pt"}});
  int k = 0;
  for (const auto& [name, shape] : tensors) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      v[static_cast<size_t>(i)] = static_cast<float>(i) * 0.25f + static_cast<float>(k);
    w.add(name, DType::kF32, shape, v.data(), v.size() * 4);
    ++k;
  }
  w.finish();
}

// A valid two-shard model: shard 1 holds embed + layer 0, shard 2 holds norm + lm_head.
// Returns the index's weight_map, which callers may edit and rewrite.
json make_sharded(const fs::path& dir) {
  write_text(dir / "config.json", tiny_config().dump(2));
  write_shard(
      dir / "model-00001-of-00002.safetensors",
      {{"model.embed_tokens.weight", {8, 4}}, {"model.layers.0.mlp.up_proj.weight", {6, 4}}});
  write_shard(dir / "model-00002-of-00002.safetensors",
              {{"model.norm.weight", {4}}, {"lm_head.weight", {8, 4}}});
  json wm = {{"model.embed_tokens.weight", "model-00001-of-00002.safetensors"},
             {"model.layers.0.mlp.up_proj.weight", "model-00001-of-00002.safetensors"},
             {"model.norm.weight", "model-00002-of-00002.safetensors"},
             {"lm_head.weight", "model-00002-of-00002.safetensors"}};
  write_text(dir / "model.safetensors.index.json",
             json({{"metadata", {{"total_size", 336}}}, {"weight_map", wm}}).dump(2));
  return wm;
}

void write_index(const fs::path& dir, const json& weight_map) {
  write_text(dir / "model.safetensors.index.json", json({{"weight_map", weight_map}}).dump(2));
}

// `sha256  size  path` lines of shared/data/SHA256SUMS, path -> sha256.
std::map<std::string, std::string> published_sums() {
  std::map<std::string, std::string> sums;
  std::ifstream in(test::data_path("SHA256SUMS"));
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string sha, size, path;
    if (ls >> sha >> size >> path) sums[path] = sha;
  }
  return sums;
}

// ---- real data: llama-14m (fp16, 3 shards + index) -------------------------------------

class Llama14m : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::data_path("models/llama-14m");
    if (!fs::exists(dir_)) GTEST_SKIP() << "no test data at " << dir_;
  }
  std::string dir_;
};

TEST_F(Llama14m, OpensAllShardsAndEveryIndexEntryResolves) {
  HfCheckpoint ck = HfCheckpoint::open(dir_);
  EXPECT_EQ(ck.dir, dir_);
  EXPECT_EQ(ck.config.at("model_type"), "llama");
  EXPECT_EQ(ck.index_path, (fs::path(dir_) / "model.safetensors.index.json").string());
  ASSERT_EQ(ck.shard_paths.size(), 3u);
  EXPECT_EQ(fs::path(ck.shard_paths[0]).filename(), "model-00001-of-00003.safetensors");
  EXPECT_EQ(fs::path(ck.shard_paths[1]).filename(), "model-00002-of-00003.safetensors");
  EXPECT_EQ(fs::path(ck.shard_paths[2]).filename(), "model-00003-of-00003.safetensors");
  EXPECT_EQ(ck.shards().size(), 3u);
  EXPECT_EQ(ck.shards()[0].tensors().size(), 34u);
  EXPECT_EQ(ck.shards()[1].tensors().size(), 35u);
  EXPECT_EQ(ck.shards()[2].tensors().size(), 6u);
  // 8 layers x 9 tensors + embed + final norm + untied lm_head.
  ASSERT_EQ(ck.tensor_names.size(), 75u);

  std::ifstream in(fs::path(dir_) / "model.safetensors.index.json");
  const json index = json::parse(in);
  const json& wm = index.at("weight_map");
  ASSERT_EQ(wm.size(), 75u);
  uint64_t total = 0;
  for (const auto& [tensor, shard] : wm.items()) {
    SCOPED_TRACE(tensor);
    ASSERT_TRUE(ck.has(tensor));
    EXPECT_EQ(fs::path(ck.file_of(tensor).path()).filename(), shard.get<std::string>());
    EXPECT_EQ(ck.info(tensor).dtype, DType::kF16);
    total += ck.info(tensor).nbytes();
  }
  EXPECT_EQ(total, index.at("metadata").at("total_size").get<uint64_t>());

  // tensor_names: shard order, then data-offset order within a shard.
  size_t k = 0;
  for (const SafetensorsFile& f : ck.shards())
    for (const TensorInfo& t : f.tensors()) EXPECT_EQ(ck.tensor_names[k++], t.name);
}

TEST_F(Llama14m, ShapesFollowConfig) {
  HfCheckpoint ck = HfCheckpoint::open(dir_);
  const int64_t hidden = ck.config.at("hidden_size");
  const int64_t inter = ck.config.at("intermediate_size");
  const int64_t layers = ck.config.at("num_hidden_layers");
  const int64_t vocab = ck.config.at("vocab_size");
  const int64_t heads = ck.config.at("num_attention_heads");
  const int64_t kv_heads = ck.config.at("num_key_value_heads");
  const int64_t head_dim = ck.config.at("head_dim");
  EXPECT_EQ(hidden, 384);
  EXPECT_EQ(layers, 8);

  using Shape = std::vector<int64_t>;
  EXPECT_EQ(ck.info("model.embed_tokens.weight").shape, (Shape{vocab, hidden}));
  EXPECT_EQ(ck.info("lm_head.weight").shape, (Shape{vocab, hidden}));
  EXPECT_EQ(ck.info("model.norm.weight").shape, (Shape{hidden}));
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    SCOPED_TRACE(p);
    EXPECT_EQ(ck.info(p + "self_attn.q_proj.weight").shape, (Shape{heads * head_dim, hidden}));
    EXPECT_EQ(ck.info(p + "self_attn.k_proj.weight").shape, (Shape{kv_heads * head_dim, hidden}));
    EXPECT_EQ(ck.info(p + "self_attn.v_proj.weight").shape, (Shape{kv_heads * head_dim, hidden}));
    EXPECT_EQ(ck.info(p + "self_attn.o_proj.weight").shape, (Shape{hidden, heads * head_dim}));
    EXPECT_EQ(ck.info(p + "mlp.gate_proj.weight").shape, (Shape{inter, hidden}));
    EXPECT_EQ(ck.info(p + "mlp.up_proj.weight").shape, (Shape{inter, hidden}));
    EXPECT_EQ(ck.info(p + "mlp.down_proj.weight").shape, (Shape{hidden, inter}));
    EXPECT_EQ(ck.info(p + "input_layernorm.weight").shape, (Shape{hidden}));
    EXPECT_EQ(ck.info(p + "post_attention_layernorm.weight").shape, (Shape{hidden}));
  }
}

TEST_F(Llama14m, F16ValuesReadAsFiniteFloats) {
  HfCheckpoint ck = HfCheckpoint::open(dir_);
  size_t total = 0;
  for (const std::string& name : ck.tensor_names) {
    SCOPED_TRACE(name);
    const SafetensorsFile& f = ck.file_of(name);
    const std::vector<float> v = f.read_float(name);
    ASSERT_EQ(static_cast<int64_t>(v.size()), ck.info(name).numel());
    float max_abs = 0.0f;
    size_t non_finite = 0;
    for (float x : v) {
      if (!std::isfinite(x)) ++non_finite;
      max_abs = std::max(max_abs, std::fabs(x));
    }
    EXPECT_EQ(non_finite, 0u);
    EXPECT_GT(max_abs, 0.0f);     // trained weights, not zeros
    EXPECT_LT(max_abs, 1000.0f);  // and not garbage bytes read as fp16
    f.release(ck.info(name));
    total += v.size();
  }
  EXPECT_EQ(total, 14555520u);  // the index's total_parameters
}

TEST_F(Llama14m, SourceChecksumsMatchPublishedSums) {
  HfCheckpoint ck = HfCheckpoint::open(dir_);
  const auto sums = ck.source_checksums();
  const auto published = published_sums();
  ASSERT_FALSE(published.empty());
  EXPECT_EQ(sums.size(), 5u);  // config, index, 3 shards
  for (const char* name :
       {"config.json", "model.safetensors.index.json", "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"}) {
    SCOPED_TRACE(name);
    ASSERT_EQ(sums.count(name), 1u);
    EXPECT_EQ(sums.at(name), published.at(std::string("models/llama-14m/") + name));
  }
}

// ---- real data: stories260K (fp32, single file) ----------------------------------------

TEST(Stories260K, SingleFileCheckpoint) {
  const std::string dir = test::data_path("models/stories260K/hf");
  if (!fs::exists(dir)) GTEST_SKIP() << "no test data at " << dir;
  HfCheckpoint ck = HfCheckpoint::open(dir);
  EXPECT_TRUE(ck.index_path.empty());
  ASSERT_EQ(ck.shard_paths.size(), 1u);
  EXPECT_EQ(fs::path(ck.shard_paths[0]).filename(), "model.safetensors");
  const int64_t layers = ck.config.at("num_hidden_layers");
  const int64_t hidden = ck.config.at("hidden_size");
  const int64_t head_dim = ck.config.at("head_dim");
  const int64_t kv_heads = ck.config.at("num_key_value_heads");
  const int64_t inter = ck.config.at("intermediate_size");
  const int64_t vocab = ck.config.at("vocab_size");
  // 9 tensors per layer + embed + norm; lm_head is tied to the embedding.
  EXPECT_TRUE(ck.config.at("tie_word_embeddings").get<bool>());
  EXPECT_EQ(ck.tensor_names.size(), static_cast<size_t>(layers * 9 + 2));
  EXPECT_EQ(ck.tensor_names.size(), 47u);
  EXPECT_FALSE(ck.has("lm_head.weight"));

  using Shape = std::vector<int64_t>;
  EXPECT_EQ(ck.info("model.embed_tokens.weight").shape, (Shape{vocab, hidden}));
  EXPECT_EQ(ck.info("model.layers.4.self_attn.k_proj.weight").shape,
            (Shape{kv_heads * head_dim, hidden}));
  EXPECT_EQ(ck.info("model.layers.0.mlp.down_proj.weight").shape, (Shape{hidden, inter}));
  for (const std::string& name : ck.tensor_names) {
    const TensorInfo& t = ck.info(name);
    EXPECT_EQ(t.dtype, DType::kF32) << name;
    // F32 -> float is a plain copy of the bytes.
    const std::vector<float> v = ck.file_of(name).read_float(name);
    ASSERT_EQ(v.size() * 4, t.nbytes());
    EXPECT_EQ(std::memcmp(v.data(), ck.file_of(name).data(t), t.nbytes()), 0) << name;
  }

  const auto sums = ck.source_checksums();
  const auto published = published_sums();
  ASSERT_EQ(sums.size(), 2u);
  EXPECT_EQ(sums.at("config.json"), published.at("models/stories260K/hf/config.json"));
  EXPECT_EQ(sums.at("model.safetensors"), published.at("models/stories260K/hf/model.safetensors"));
}

// ---- synthetic directories -------------------------------------------------------------

TEST(HfCheckpoint, SyntheticShardedOrderAndLookups) {
  TempDir td;
  make_sharded(td.path());
  HfCheckpoint ck = HfCheckpoint::open(td.str());
  ASSERT_EQ(ck.shard_paths.size(), 2u);
  EXPECT_EQ(ck.tensor_names, (std::vector<std::string>{"model.embed_tokens.weight",
                                                       "model.layers.0.mlp.up_proj.weight",
                                                       "model.norm.weight", "lm_head.weight"}));
  EXPECT_EQ(ck.file_of("lm_head.weight").path(), ck.shard_paths[1]);
  EXPECT_EQ(ck.info("model.layers.0.mlp.up_proj.weight").shape, (std::vector<int64_t>{6, 4}));
  EXPECT_EQ(ck.file_of("lm_head.weight").read_float("lm_head.weight")[3], 0.75f + 1.0f);
  EXPECT_EQ(ck.source_checksums().size(), 4u);

  Error e = catch_error([&] { ck.file_of("model.layers.9.mlp.up_proj.weight"); });
  EXPECT_EQ(e.kind(), ErrorKind::kMalformedInput);
  EXPECT_TRUE(Contains(e.what(), "'model.layers.9.mlp.up_proj.weight'"));
  e = catch_error([&] { ck.info("nope"); });
  EXPECT_TRUE(Contains(e.what(), "'nope'"));
}

TEST(HfCheckpoint, ShardTensorMissingFromIndexIsKept) {
  TempDir td;
  json wm = make_sharded(td.path());
  wm.erase("model.norm.weight");
  write_index(td.path(), wm);
  HfCheckpoint ck = HfCheckpoint::open(td.str());  // warns, does not fail
  EXPECT_EQ(ck.tensor_names.size(), 4u);
  EXPECT_TRUE(ck.has("model.norm.weight"));
  EXPECT_EQ(ck.file_of("model.norm.weight").path(), ck.shard_paths[1]);
}

TEST(HfCheckpoint, MissingDirectoryIsIoError) {
  TempDir td;
  expect_open_error(td.str("no-such-model"), ErrorKind::kIo,
                    {td.str("no-such-model"), "no such directory"});
  write_text(td.path() / "file", "x");
  expect_open_error(td.str("file"), ErrorKind::kIo, {"not a directory"});
}

TEST(HfCheckpoint, ConfigMissingOrInvalid) {
  TempDir td;
  make_sharded(td.path());
  fs::remove(td.path() / "config.json");
  expect_open_error(td.str(), ErrorKind::kMalformedInput, {td.str(), "config.json"});
  write_text(td.path() / "config.json", "{\"model_type\": \"llama\",");
  expect_open_error(td.str(), ErrorKind::kMalformedInput, {"config.json", "invalid JSON"});
  write_text(td.path() / "config.json", "[1, 2]");
  expect_open_error(td.str(), ErrorKind::kMalformedInput,
                    {"config.json", "expected a JSON object"});
}

TEST(HfCheckpoint, ConfigMissingRequiredKey) {
  TempDir td;
  make_sharded(td.path());
  for (const char* key : {"model_type", "hidden_size", "num_hidden_layers", "vocab_size"}) {
    SCOPED_TRACE(key);
    json config = tiny_config();
    config.erase(key);
    write_text(td.path() / "config.json", config.dump());
    expect_open_error(td.str(), ErrorKind::kMalformedInput,
                      {"config.json", std::string("missing required key '") + key + "'"});
  }
  json config = tiny_config();
  config["hidden_size"] = "384";
  write_text(td.path() / "config.json", config.dump());
  expect_open_error(td.str(), ErrorKind::kMalformedInput,
                    {"config.json", "'hidden_size' must be a positive integer"});
}

TEST(HfCheckpoint, NoWeightsSaysWhatWasLookedFor) {
  TempDir td;
  write_text(td.path() / "config.json", tiny_config().dump());
  expect_open_error(td.str(), ErrorKind::kMalformedInput,
                    {td.str(), "model.safetensors.index.json", "model.safetensors (single file)"});
}

TEST(HfCheckpoint, OnlyPytorchBinIsUnsupported) {
  TempDir td;
  write_text(td.path() / "config.json", tiny_config().dump());
  write_text(td.path() / "pytorch_model.bin", "PK\x03\x04 not really a pickle");
  expect_open_error(td.str(), ErrorKind::kUnsupported,
                    {td.str(), "pytorch_model.bin", "not supported"});
}

TEST(HfCheckpoint, IndexNamesMissingShard) {
  TempDir td;
  json wm = make_sharded(td.path());
  wm["lm_head.weight"] = "model-00003-of-00002.safetensors";
  write_index(td.path(), wm);
  expect_open_error(
      td.str(), ErrorKind::kMalformedInput,
      {"model.safetensors.index.json", "shard 'model-00003-of-00002.safetensors' does not exist",
       "'lm_head.weight'"});
}

TEST(HfCheckpoint, IndexNamesTensorAbsentFromItsShard) {
  TempDir td;
  json wm = make_sharded(td.path());
  wm["model.layers.0.mlp.gate_proj.weight"] = "model-00001-of-00002.safetensors";
  write_index(td.path(), wm);
  expect_open_error(td.str(), ErrorKind::kMalformedInput,
                    {"model.safetensors.index.json", "'model.layers.0.mlp.gate_proj.weight'",
                     "'model-00001-of-00002.safetensors'", "does not contain it"});

  // Mapped to the wrong shard: the message also says where the tensor really is.
  wm = make_sharded(td.path());
  wm["lm_head.weight"] = "model-00001-of-00002.safetensors";
  write_index(td.path(), wm);
  expect_open_error(td.str(), ErrorKind::kMalformedInput,
                    {"'lm_head.weight'", "'model-00001-of-00002.safetensors'",
                     "model-00002-of-00002.safetensors"});
}

TEST(HfCheckpoint, SameTensorInTwoShards) {
  TempDir td;
  make_sharded(td.path());
  write_shard(td.path() / "model-00002-of-00002.safetensors",
              {{"model.norm.weight", {4}},
               {"lm_head.weight", {8, 4}},
               {"model.embed_tokens.weight", {8, 4}}});
  expect_open_error(td.str(), ErrorKind::kMalformedInput,
                    {"'model.embed_tokens.weight'", "two shards",
                     "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"});
}

TEST(HfCheckpoint, IndexWithoutWeightMapOrWithBadEntries) {
  TempDir td;
  make_sharded(td.path());
  write_text(td.path() / "model.safetensors.index.json", R"({"metadata": {}})");
  expect_open_error(td.str(), ErrorKind::kMalformedInput,
                    {"model.safetensors.index.json", "'weight_map'"});
  write_text(td.path() / "model.safetensors.index.json",
             R"({"weight_map": {"lm_head.weight": 3}})");
  expect_open_error(td.str(), ErrorKind::kMalformedInput,
                    {"model.safetensors.index.json", "'lm_head.weight'"});
  write_text(td.path() / "model.safetensors.index.json", R"({"weight_map": )");
  expect_open_error(td.str(), ErrorKind::kMalformedInput,
                    {"model.safetensors.index.json", "invalid JSON"});
}

TEST(HfCheckpoint, CorruptShardErrorNamesTheShard) {
  TempDir td;
  make_sharded(td.path());
  const fs::path shard = td.path() / "model-00002-of-00002.safetensors";
  fs::resize_file(shard, fs::file_size(shard) - 1);
  expect_open_error(td.str(), ErrorKind::kMalformedInput,
                    {shard.string(), "'lm_head.weight'", "data ends at byte"});
}

TEST(HfCheckpoint, SingleFilePreferredOverIndex) {
  TempDir td;
  make_sharded(td.path());
  write_shard(td.path() / "model.safetensors", {{"model.embed_tokens.weight", {8, 4}}});
  HfCheckpoint ck = HfCheckpoint::open(td.str());
  EXPECT_TRUE(ck.index_path.empty());
  ASSERT_EQ(ck.shard_paths.size(), 1u);
  EXPECT_EQ(ck.tensor_names, (std::vector<std::string>{"model.embed_tokens.weight"}));
}

}  // namespace
}  // namespace razerq::formats
