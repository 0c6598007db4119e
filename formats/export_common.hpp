#pragma once
// What the export targets share: the staged output directory, the check that a packed
// checkpoint maps onto a target (and the refusal naming the targets that would take it),
// the Hugging Face side files, and the verdict of re-reading an export.
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "formats/export.hpp"
#include "formats/packed_checkpoint.hpp"

namespace razerq::formats {

// An output directory built as DIR.partial and renamed to DIR by commit(); an existing DIR is
// kept unless `force`; destroying it before commit() removes DIR.partial.
class StagedDir {
 public:
  StagedDir(std::string out, bool force);
  ~StagedDir();
  StagedDir(const StagedDir&) = delete;
  StagedDir& operator=(const StagedDir&) = delete;
  std::string path(const std::string& name) const;
  void commit();

 private:
  std::string out_, partial_;
  bool done_ = false;
};

// Which export targets take a tensor of this format, as one phrase for messages and --help:
// "gptq, compressed-tensors (pack-quantized), dequant" / "dequant". Lists only the targets of
// this branch's exporters plus dequant.
std::string targets_accepting(const quantizer::FormatConfig& cfg);

// The one format configuration of the quantized tensors. A checkpoint mixing formats, or
// without any quantized tensor, is refused naming `target`.
const quantizer::FormatConfig& uniform_config(const PackedCheckpoint& ckpt, const char* target);

// Throws kUnsupported: "<dir>: <label> cannot be exported to <target>: <why>; <target>
// accepts <accepts>; <label> can go to: <targets_accepting>".
[[noreturn]] void refuse(const PackedCheckpoint& ckpt, const quantizer::FormatConfig& cfg, const char* target,
                         const std::string& why, const char* accepts);

// "model.layers.0.mlp.up_proj.weight" -> "model.layers.0.mlp.up_proj"; refuses other names.
std::string module_of(const std::string& weight_name, const std::string& where);

// Unquantized 2-D "*.weight" tensors that a Linear layer holds (everything 2-D but embeddings):
// the module names the target's config must list as not quantized (lm_head and --skip layers).
std::vector<std::string> unquantized_linear_modules(const PackedCheckpoint& ckpt);

// The source's config.json (copied into the checkpoint), parsed; refused when missing.
nlohmann::json read_model_config(const PackedCheckpoint& ckpt);
void write_json_file(const std::string& path, const nlohmann::json& j);
// Copies every file of the checkpoint except manifest.json, model.safetensors and `except`.
void copy_side_files(const PackedCheckpoint& ckpt, const StagedDir& out, const std::vector<std::string>& except);

// Compares a decoded tensor with the checkpoint's float64 reference, element by element.
// Lossless when every |decoded - ref| <= tol_rel * |ref| (tol_rel = 0: bit-equal doubles);
// `tol_note` states where a non-zero tolerance comes from.
TensorVerdict compare_decoded(const std::string& name, const std::string& target_name, const std::string& target_type,
                              const std::vector<double>& decoded, const std::vector<double>& ref, double tol_rel,
                              const std::string& tol_note);

// The float64 reference dequantization of a packed tensor, [rows * cols].
std::vector<double> reference_dequant(const quantizer::QuantizedTensor& q);

// One line per tensor and the total ("export: 56/56 tensors lossless ...").
std::string verdict_line(const TensorVerdict& v);
std::string verdict_total(const ExportReport& r);
nlohmann::json report_to_json(const ExportReport& r);

using ExportProgress = std::function<void(const std::string& line)>;

// What the writer of one tensor promises the verdict: the names and the rounding its mapping
// introduces (tol_rel = 0: the decoded export must equal our float64 dequantization exactly).
struct TensorMapping {
  std::string target_name, target_type;
  double tol_rel = 0;
  std::string note;  // why tol_rel is not 0, or what made the tensor lossy
};

// One export target: writes a quantized tensor's parts, decodes them back with the
// independent decoder (foreign_decoders.hpp), writes the config files.
class ExportTarget {
 public:
  virtual ~ExportTarget() = default;
  virtual const char* name() const = 0;
  virtual TensorMapping write(const TensorRecord& r, const quantizer::QuantizedTensor& q, SafetensorsWriter& w) = 0;
  virtual std::vector<double> decode(const SafetensorsFile& f, const TensorRecord& r) const = 0;
  // Adds the quantization block to the model's config.json and writes any other config file.
  virtual void finish(nlohmann::json& model_config, const StagedDir& out) const = 0;
};

// The driver every target shares: OUT.partial/model.safetensors with unquantized tensors
// copied and quantized ones written by `t`; the file re-read tensor by tensor with t.decode and
// compared with the float64 reference; config.json and the side files; rename to OUT.
ExportReport run_export(const PackedCheckpoint& ckpt, ExportTarget& t, const std::string& out_dir, bool force,
                        const ExportProgress& progress);

}  // namespace razerq::formats
