#pragma once
// The quantize pipeline: a Hugging Face checkpoint in, a packed checkpoint out, streamed
// tensor by tensor (peak memory about one tensor in float32 plus its packed output).
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "formats/hf_checkpoint.hpp"
#include "formats/packed_checkpoint.hpp"
#include "quantizer/quantize.hpp"

namespace razerq::formats {

// A dense tensor held in memory, float32 row-major; dtype: how to store it ("F32", "F16",
// "BF16"; empty = the source tensor's dtype).
struct FloatTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
  std::string dtype;
};

struct QuantizeJob {
  std::string model_dir;
  std::string out_dir;
  quantizer::FormatConfig cfg;
  quantizer::SearchOptions search;
  std::vector<std::string> skip;     // extra regexes (ECMAScript, matched anywhere in the name)
  bool quantize_lm_head = false;     // lm_head / output projection (kept by default, as every peer does)
  bool compare_reference = false;    // also run the authors' rule per tensor and record its error
  bool force = false;                // replace an existing output directory
  int threads = 0;                   // <= 0: all cores
  bool checksums = true;             // SHA-256 of the source files in the manifest
  // Tensors quantized beforehand (e.g. by GPTQ), by name: stored as they are instead of being
  // searched (shape and format must match the job's); the others are quantized as usual.
  const std::map<std::string, quantizer::QuantizedTensor>* precomputed = nullptr;
  // Merged into the manifest's "quantization" object (e.g. "stages", "calibration").
  nlohmann::json extra_quantization = nlohmann::json::object();
  // Tensors whose values a calibrated stage changed (AWQ's folded scales, a rotation), by
  // name: used instead of the source's values, whether the tensor is then quantized or stored
  // (in the source's dtype). Names the source lacks (a rotation unties the LM head) are stored
  // after the source's tensors, in their own dtype.
  const std::map<std::string, FloatTensor>* replaced = nullptr;
  // RFC 7386 merge patch applied to the copied config.json (e.g. the online Hadamard op).
  nlohmann::json config_patch = nlohmann::json::object();
};

// Which tensors are quantized: 2-D floating-point "*.weight" tensors of linear layers; never
// embeddings, norms, or (unless asked) the LM head; never a name matching a --skip regex.
// Returns "" when the tensor is quantized, else why not (for the log).
std::string skip_reason(const std::string& name, const TensorInfo& info, bool quantize_lm_head,
                        const std::vector<std::regex>& skip);

struct TensorProgress {
  int index = 0, total = 0;  // 1-based position among all tensors
  const TensorRecord* record = nullptr;
  size_t bytes_in = 0, bytes_out = 0;
  double seconds = 0;        // this tensor
  double eta_seconds = 0;    // remaining, extrapolated from the weights done so far
  std::string skip_reason;   // non-empty for tensors stored as they are
};

struct QuantizeSummary {
  int tensors = 0, quantized = 0;
  int64_t quantized_weights = 0;
  double bits_per_weight = 0;  // over the quantized tensors
  double seconds = 0;
  double worst_rel_error = 0;
  std::string worst_tensor;
  int worse_than_reference = 0;  // tensors where the search lost to the reference rule (should be 0)
};

// Runs the job; calls `progress` after every tensor (quantized or stored as it is).
QuantizeSummary quantize_model(const QuantizeJob& job, const std::function<void(const TensorProgress&)>& progress);

// One progress line in the style of llama.cpp's quantize log:
// [ 12/ 75] model.layers.1.self_attn.q_proj.weight [384, 384] F16 -> razer4/g128 rel_err 9.31e-02 (ref 9.78e-02) 288.0 KiB -> 74.2 KiB 0.01 s eta 1.2 s
std::string format_progress(const TensorProgress& p);

}  // namespace razerq::formats
