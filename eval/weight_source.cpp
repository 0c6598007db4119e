#include "eval/weight_source.hpp"

#include <filesystem>
#include <fstream>
#include <unordered_map>

#include "common/error.hpp"
#include "formats/hf_checkpoint.hpp"
#include "formats/packed_checkpoint.hpp"
#include "kernels/cpu/dequant.hpp"

namespace fs = std::filesystem;

namespace razerq::eval {

namespace {

class HfSource final : public WeightSource {
 public:
  explicit HfSource(formats::HfCheckpoint ckpt) : ckpt_(std::move(ckpt)) {}
  const std::string& dir() const override { return ckpt_.dir; }
  const nlohmann::json& config() const override { return ckpt_.config; }
  bool packed() const override { return false; }
  bool has(const std::string& name) const override { return ckpt_.has(name); }
  std::vector<int64_t> shape(const std::string& name) const override { return ckpt_.info(name).shape; }
  std::string stored_dtype(const std::string& name) const override { return formats::dtype_name(ckpt_.info(name).dtype); }
  bool quantized(const std::string&) const override { return false; }
  std::string file_of(const std::string& name) const override { return ckpt_.file_of(name).path(); }
  void read_float(const std::string& name, float* out, int) const override {
    const formats::SafetensorsFile& f = ckpt_.file_of(name);
    f.read_float(f.info(name), out);
  }
  const void* raw(const std::string& name, std::string* dtype) const override {
    const formats::SafetensorsFile& f = ckpt_.file_of(name);
    const formats::TensorInfo& t = f.info(name);
    *dtype = formats::dtype_name(t.dtype);
    return f.data(t);
  }
  quantizer::QuantizedTensor load_quantized(const std::string& name) const override {
    throw_error(ErrorKind::kInvalidArgument, ckpt_.file_of(name).path() + ": tensor '" + name + "'",
                "is not quantized (a Hugging Face checkpoint)");
  }
  std::vector<std::string> names() const override { return ckpt_.tensor_names; }

 private:
  formats::HfCheckpoint ckpt_;
};

class PackedSource final : public WeightSource {
 public:
  explicit PackedSource(const std::string& dir) : ckpt_(formats::PackedCheckpoint::open(dir)) {
    dir_ = ckpt_.dir();
    for (size_t i = 0; i < ckpt_.tensors().size(); ++i) index_[ckpt_.tensors()[i].name] = i;
    const std::string cpath = config_path();
    std::ifstream in(cpath);
    if (!in)
      throw_error(ErrorKind::kMalformedInput, cpath,
                  "missing: a packed checkpoint needs the source model's config.json to be evaluated");
    try {
      config_ = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw_error(ErrorKind::kMalformedInput, cpath, "invalid JSON: %s", e.what());
    }
  }
  const std::string& dir() const override { return dir_; }
  const nlohmann::json& config() const override { return config_; }
  bool packed() const override { return true; }
  bool has(const std::string& name) const override { return index_.count(name) != 0; }
  std::vector<int64_t> shape(const std::string& name) const override { return rec(name).shape; }
  std::string stored_dtype(const std::string& name) const override {
    const formats::TensorRecord& r = rec(name);
    return r.quantized ? r.cfg.label() : formats::dtype_name(ckpt_.weights().info(name).dtype);
  }
  bool quantized(const std::string& name) const override { return rec(name).quantized; }
  std::string file_of(const std::string&) const override { return ckpt_.weights().path(); }
  void read_float(const std::string& name, float* out, int threads) const override {
    const formats::TensorRecord& r = rec(name);
    if (r.quantized) {
      const quantizer::QuantizedTensor q = ckpt_.load_quantized(name);
      kernels::dequantize_to_float(q, out, threads);
    } else {
      const formats::SafetensorsFile& f = ckpt_.weights();
      f.read_float(f.info(name), out);
    }
  }
  const void* raw(const std::string& name, std::string* dtype) const override {
    const formats::TensorRecord& r = rec(name);
    if (r.quantized) {
      *dtype = r.cfg.label();
      return nullptr;
    }
    const formats::SafetensorsFile& f = ckpt_.weights();
    const formats::TensorInfo& t = f.info(name);
    *dtype = formats::dtype_name(t.dtype);
    return f.data(t);
  }
  quantizer::QuantizedTensor load_quantized(const std::string& name) const override {
    return ckpt_.load_quantized(name);
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (const auto& r : ckpt_.tensors()) out.push_back(r.name);
    return out;
  }

 private:
  const formats::TensorRecord& rec(const std::string& name) const {
    auto it = index_.find(name);
    if (it == index_.end())
      throw_error(ErrorKind::kMalformedInput, ckpt_.weights().path(), "no tensor '%s' in this checkpoint", name.c_str());
    return ckpt_.tensors()[it->second];
  }

  formats::PackedCheckpoint ckpt_;
  std::string dir_;
  nlohmann::json config_;
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace

bool is_packed_checkpoint(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(fs::path(path) / formats::kManifestFile, ec);
}

std::unique_ptr<WeightSource> WeightSource::open(const std::string& path) {
  return is_packed_checkpoint(path) ? open_packed(path) : open_hf(path);
}

std::unique_ptr<WeightSource> WeightSource::open_hf(const std::string& dir) {
  return std::make_unique<HfSource>(formats::HfCheckpoint::open(dir));
}

std::unique_ptr<WeightSource> WeightSource::open_packed(const std::string& dir) {
  return std::make_unique<PackedSource>(dir);
}

}  // namespace razerq::eval
