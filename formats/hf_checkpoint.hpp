#pragma once
// A Hugging Face model directory: config.json plus safetensors weights, either one
// model.safetensors or shards listed by model.safetensors.index.json ("weight_map":
// tensor -> shard file). Every shard is opened (memory-mapped) and cross-checked against
// the index up front; errors throw razerq::Error naming the file and tensor at fault.
// PyTorch pickle checkpoints (pytorch_model.bin) are not supported.
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "formats/safetensors.hpp"

namespace razerq::formats {

struct HfCheckpoint {
  // Opens `dir`: a missing directory throws kIo; a missing or invalid config.json, a
  // config.json without model_type / hidden_size / num_hidden_layers / vocab_size, missing
  // weights, or an index inconsistent with its shards throw kMalformedInput; a directory
  // with only pytorch_model.bin weights throws kUnsupported. When both model.safetensors and
  // the index exist, model.safetensors is used (as transformers does).
  static HfCheckpoint open(const std::string& dir);

  // Movable, not copyable (it owns the mappings of its shards).
  HfCheckpoint(HfCheckpoint&&) = default;
  HfCheckpoint& operator=(HfCheckpoint&&) = default;
  HfCheckpoint(const HfCheckpoint&) = delete;
  HfCheckpoint& operator=(const HfCheckpoint&) = delete;

  std::string dir;
  nlohmann::json config;                  // parsed config.json
  std::string index_path;                 // dir-joined path of the index; empty for a single file
  std::vector<std::string> shard_paths;   // dir-joined paths, sorted by file name
  std::vector<std::string> tensor_names;  // every tensor: in shard order, then data-offset order

  // Whether some shard holds the tensor.
  bool has(const std::string& tensor) const;
  // The opened shard that holds the tensor; an unknown tensor throws kMalformedInput naming it.
  const SafetensorsFile& file_of(const std::string& tensor) const;
  // The tensor's info, from its shard.
  const TensorInfo& info(const std::string& tensor) const;
  // The opened shards, parallel to shard_paths.
  const std::vector<SafetensorsFile>& shards() const { return files_; }

  // SHA-256 of every source file (config.json, the index when sharded, every shard), keyed
  // by the file name relative to dir, as lower-case hex. Computed on each call by reading the
  // files in full: slow for big models.
  std::map<std::string, std::string> source_checksums() const;

 private:
  HfCheckpoint() = default;

  std::vector<SafetensorsFile> files_;                // parallel to shard_paths
  std::unordered_map<std::string, size_t> shard_of_;  // tensor -> index into files_
  std::vector<std::string> source_files_;             // relative to dir, for source_checksums()
};

}  // namespace razerq::formats
