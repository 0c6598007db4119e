#pragma once
// Where a model's tensors come from, torch-free: a Hugging Face directory (config.json +
// safetensors) or a razerq packed checkpoint (manifest.json + packed safetensors, with the
// source's config.json copied in). Every tensor is handed out as dense float32: quantized
// linears of a packed checkpoint through kernels::dequantize_to_float (exact: the float64
// reference dequantization rounded once), everything else converted from its stored dtype.
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "quantizer/quantize.hpp"

namespace razerq::eval {

class WeightSource {
 public:
  virtual ~WeightSource() = default;

  // The directory, for messages.
  virtual const std::string& dir() const = 0;
  // Parsed config.json.
  virtual const nlohmann::json& config() const = 0;
  // The path of config.json, for messages.
  std::string config_path() const { return dir() + "/config.json"; }
  // True for a packed checkpoint.
  virtual bool packed() const = 0;

  virtual bool has(const std::string& name) const = 0;
  // Logical shape (for a quantized tensor: [rows, cols] of the dense matrix).
  virtual std::vector<int64_t> shape(const std::string& name) const = 0;
  // "F16", "BF16", "F32", ...: the stored dtype; for a quantized tensor its format label
  // ("razer4/g128").
  virtual std::string stored_dtype(const std::string& name) const = 0;
  virtual bool quantized(const std::string& name) const = 0;
  // The file that holds the tensor, for messages.
  virtual std::string file_of(const std::string& name) const = 0;
  // Dense float32 into out[0, numel). threads <= 0: OpenMP's default (dequantization only).
  virtual void read_float(const std::string& name, float* out, int threads = 0) const = 0;
  // The stored bytes of an unquantized tensor (nullptr for a quantized one), valid while this
  // source lives; `dtype` receives the stored dtype ("F16", "BF16", "F32", ...). Lets a loader
  // copy a tensor stored in the model dtype without converting it.
  virtual const void* raw(const std::string& name, std::string* dtype) const = 0;
  // The packed tensor (packed sources only, quantized tensors only; else throws).
  virtual quantizer::QuantizedTensor load_quantized(const std::string& name) const = 0;
  // Every tensor name.
  virtual std::vector<std::string> names() const = 0;

  // Opens a packed checkpoint when `path` holds manifest.json, else a Hugging Face directory.
  static std::unique_ptr<WeightSource> open(const std::string& path);
  static std::unique_ptr<WeightSource> open_hf(const std::string& dir);
  static std::unique_ptr<WeightSource> open_packed(const std::string& dir);
};

// Whether `path` looks like a razerq packed checkpoint (has manifest.json).
bool is_packed_checkpoint(const std::string& path);

}  // namespace razerq::eval
