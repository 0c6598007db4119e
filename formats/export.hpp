#pragma once
// Exports of a packed checkpoint to files other runtimes load (`razerq export OUT --to ...`)
// and the verdict of re-reading each export, tensor by tensor, with a decoder written from
// the target's specification independently of the writer.
#include <cstdint>
#include <string>
#include <vector>

namespace razerq::formats {

// One tensor of an export, decoded back and compared with the packed checkpoint's float64
// reference dequantization.
struct TensorVerdict {
  std::string name;         // tensor name in the packed checkpoint
  std::string target_name;  // name in the export ("blk.0.attn_q.weight", "...qweight")
  std::string target_type;  // what it was written as ("Q4_0", "F16", "int4 pack-quantized")
  bool lossless = false;    // decoded export == our dequant (up to the rounding stated in note)
  double max_abs_err = 0;   // max |decoded - reference|
  double rel_err = 0;       // ||decoded - reference||_F / ||reference||_F
  std::string note;         // e.g. "m = -d*z rounded to fp16", "re-quantized to Q4_K (lossy)"
};

struct ExportReport {
  std::string target;  // "gguf", "gptq", "compressed-tensors", "bnb-nf4", "dequant"
  std::string out;     // file or directory written
  uint64_t bytes = 0;
  std::vector<TensorVerdict> tensors;

  int lossless_count() const {
    int n = 0;
    for (const auto& t : tensors) n += t.lossless;
    return n;
  }
};

}  // namespace razerq::formats
