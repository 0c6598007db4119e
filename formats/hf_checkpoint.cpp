#include "formats/hf_checkpoint.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/log.hpp"
#include "common/sha256.hpp"

namespace razerq::formats {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kConfigName = "config.json";
constexpr const char* kSingleName = "model.safetensors";
constexpr const char* kIndexName = "model.safetensors.index.json";

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// A JSON value for an error message: scalars dumped, containers only described (a
// recursive dump of a hostile, deeply nested value could exhaust the stack).
std::string brief(const json& j) {
  if (!j.is_primitive()) return strprintf("%s of %zu elements", j.type_name(), j.size());
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}


// The keys every consumer of a model needs; checked up front for a clear error.
void check_config(const json& config, const std::string& path) {
  if (!config.contains("model_type"))
    throw_error(ErrorKind::kMalformedInput, path, "missing required key 'model_type'");
  if (!config.at("model_type").is_string())
    throw_error(ErrorKind::kMalformedInput, path, "key 'model_type' must be a string, got %s",
                config.at("model_type").type_name());
  for (const char* key : {"hidden_size", "num_hidden_layers", "vocab_size"}) {
    if (!config.contains(key))
      throw_error(ErrorKind::kMalformedInput, path, "missing required key '%s'", key);
    const json& v = config.at(key);
    if (!v.is_number_integer() || v.get<int64_t>() <= 0)
      throw_error(ErrorKind::kMalformedInput, path, "key '%s' must be a positive integer, got %s",
                  key, brief(v).c_str());
  }
}

}  // namespace

HfCheckpoint HfCheckpoint::open(const std::string& dir) {
  const fs::path d(dir);
  std::error_code ec;
  const fs::file_status st = fs::status(d, ec);
  if (!fs::exists(st)) {
    if (ec && ec != std::errc::no_such_file_or_directory)
      throw_error(ErrorKind::kIo, dir, "cannot access: %s", ec.message().c_str());
    throw_error(ErrorKind::kIo, dir, "no such directory");
  }
  if (!fs::is_directory(st)) throw_error(ErrorKind::kIo, dir, "not a directory");

  HfCheckpoint ck;
  ck.dir = dir;

  const std::string config_path = (d / kConfigName).string();
  if (!is_file(config_path))
    throw_error(ErrorKind::kMalformedInput, dir, "no %s (a Hugging Face model directory needs one)",
                kConfigName);
  ck.config = read_json_object(config_path);
  check_config(ck.config, config_path);
  ck.source_files_.push_back(kConfigName);

  json weight_map;  // the index's tensor -> shard map, when sharded
  const fs::path single = d / kSingleName;
  const fs::path index = d / kIndexName;
  if (is_file(single)) {
    if (is_file(index))
      log::warn(dir + ": both " + kSingleName + " and " + kIndexName + " exist; using " +
                kSingleName);
    ck.shard_paths.push_back(single.string());
    ck.files_.push_back(SafetensorsFile::open(single.string()));
    ck.source_files_.push_back(kSingleName);
  } else if (is_file(index)) {
    ck.index_path = index.string();
    const std::string& ip = ck.index_path;
    const json idx = read_json_object(ip);
    ck.source_files_.push_back(kIndexName);
    if (!idx.contains("weight_map") || !idx.at("weight_map").is_object())
      throw_error(ErrorKind::kMalformedInput, ip,
                  "missing 'weight_map' object (tensor name -> shard file)");
    weight_map = idx.at("weight_map");

    // Shards in file-name order, with the tensors the index maps to each.
    std::map<std::string, std::vector<std::string>> listed;
    for (const auto& [tensor, shard] : weight_map.items()) {
      if (!shard.is_string() || shard.get_ref<const std::string&>().empty())
        throw_error(ErrorKind::kMalformedInput, ip,
                    "weight_map: tensor '%s' must map to a shard file name, got %s", tensor.c_str(),
                    brief(shard).c_str());
      const std::string& name = shard.get_ref<const std::string&>();
      if (fs::path(name).is_absolute())
        throw_error(ErrorKind::kMalformedInput, ip,
                    "weight_map: tensor '%s' maps to shard '%s', expected a file name relative to "
                    "the directory",
                    tensor.c_str(), name.c_str());
      listed[name].push_back(tensor);
    }
    if (listed.empty()) throw_error(ErrorKind::kMalformedInput, ip, "weight_map is empty");

    // Check every shard exists before opening any, so the error names the index.
    for (const auto& [shard, tensors] : listed) {
      if (!is_file(d / shard))
        throw_error(
            ErrorKind::kMalformedInput, ip, "shard '%s' does not exist (it holds tensor '%s'%s)",
            shard.c_str(), tensors.front().c_str(),
            tensors.size() > 1 ? strprintf(" and %zu more", tensors.size() - 1).c_str() : "");
    }
    for (const auto& [shard, tensors] : listed) {
      ck.shard_paths.push_back((d / shard).string());
      ck.files_.push_back(SafetensorsFile::open(ck.shard_paths.back()));
      ck.source_files_.push_back(shard);
    }
  } else if (is_file(d / "pytorch_model.bin") || is_file(d / "pytorch_model.bin.index.json")) {
    throw_error(ErrorKind::kUnsupported, dir,
                "only PyTorch pickle weights (pytorch_model.bin) found; .bin checkpoints are "
                "not supported, convert them to safetensors first");
  } else {
    throw_error(ErrorKind::kMalformedInput, dir,
                "no weights found: looked for %s (sharded) and %s (single file)", kIndexName,
                kSingleName);
  }

  // Map every tensor to its shard; a name in two shards is ambiguous.
  for (size_t i = 0; i < ck.files_.size(); ++i) {
    for (const TensorInfo& t : ck.files_[i].tensors()) {
      auto [it, inserted] = ck.shard_of_.emplace(t.name, i);
      if (!inserted)
        throw_error(ErrorKind::kMalformedInput, dir, "tensor '%s' is in two shards: '%s' and '%s'",
                    t.name.c_str(), ck.shard_paths[it->second].c_str(), ck.shard_paths[i].c_str());
      ck.tensor_names.push_back(t.name);
    }
  }

  // Every index entry must be found in the shard it names. Tensors a shard holds beyond its
  // index entries are kept (transformers loads them too) with a warning.
  if (!ck.index_path.empty()) {
    const json& wm = weight_map;
    for (const auto& [tensor, shard] : wm.items()) {
      const fs::path shard_path = d / shard.get_ref<const std::string&>();
      auto it = ck.shard_of_.find(tensor);
      if (it == ck.shard_of_.end())
        throw_error(ErrorKind::kMalformedInput, ck.index_path,
                    "tensor '%s' is mapped to shard '%s', which does not contain it",
                    tensor.c_str(), shard.get_ref<const std::string&>().c_str());
      if (ck.shard_paths[it->second] != shard_path.string())
        throw_error(
            ErrorKind::kMalformedInput, ck.index_path,
            "tensor '%s' is mapped to shard '%s', which does not contain it (it is in '%s')",
            tensor.c_str(), shard.get_ref<const std::string&>().c_str(),
            ck.shard_paths[it->second].c_str());
    }
    size_t unlisted = 0;
    std::string example;
    for (const std::string& name : ck.tensor_names) {
      if (!wm.contains(name)) {
        if (unlisted++ == 0) example = name;
      }
    }
    if (unlisted > 0)
      log::warn(
          strprintf("%s: %zu tensor(s) in the shards are not listed in the index (first: '%s'); "
                    "using them anyway",
                    ck.index_path.c_str(), unlisted, example.c_str()));
  }
  return ck;
}

bool HfCheckpoint::has(const std::string& tensor) const { return shard_of_.count(tensor) != 0; }

const SafetensorsFile& HfCheckpoint::file_of(const std::string& tensor) const {
  auto it = shard_of_.find(tensor);
  if (it == shard_of_.end())
    throw_error(ErrorKind::kMalformedInput, dir,
                "no tensor '%s' in this checkpoint (it has %zu tensors)", tensor.c_str(),
                tensor_names.size());
  return files_[it->second];
}

const TensorInfo& HfCheckpoint::info(const std::string& tensor) const {
  return file_of(tensor).info(tensor);
}

std::map<std::string, std::string> HfCheckpoint::source_checksums() const {
  std::map<std::string, std::string> sums;
  for (const std::string& rel : source_files_)
    sums[rel] = sha256_file((std::filesystem::path(dir) / rel).string());
  return sums;
}

}  // namespace razerq::formats
