#pragma once
// `razerq export OUT --to gptq|compressed-tensors|bnb-nf4 -o DIR`: a Hugging Face directory
// whose quantized linear layers keep their codes and scales in another project's layout, so
// that its loaders run them without re-quantizing. Which razerq formats map, and how exactly,
// is in formats/NOTES.md; a format that does not map is refused naming the targets that take it.
// Every export is re-read tensor by tensor by the independent decoders of foreign_decoders.hpp
// and compared with the packed checkpoint's float64 dequantization: the report holds the
// verdict (lossless, or the error) per tensor.
#include <string>

#include "formats/export_common.hpp"
#include "formats/export_dequant.hpp"

namespace razerq::formats {

// GPTQ v1 (checkpoint_format "gptq"): int sym/asym at 2, 3, 4, 8 bits; in/out features must fill
// whole int32 words (multiples of 32 at 3 bits). config.json gets quantization_config and
// quantize_config.json is written.
ExportReport export_gptq(const std::string& packed_dir, const std::string& out_dir, const ExportOptions& opt,
                         const ExportProgress& progress);

// compressed-tensors: int (2..8 bits, sym/asym) -> pack-quantized, nvfp4 -> nvfp4-pack-quantized,
// mxfp4 -> mxfp4-pack-quantized; the group size must divide the input width.
ExportReport export_compressed_tensors(const std::string& packed_dir, const std::string& out_dir,
                                       const ExportOptions& opt, const ExportProgress& progress);

// bitsandbytes NF4 (Params4bit serialization, not double-quantized): nf4 with a group size of
// 32 ... 4096 (a power of two) dividing the input width; our fp16 group scale is the block absmax.
ExportReport export_bnb_nf4(const std::string& packed_dir, const std::string& out_dir, const ExportOptions& opt,
                            const ExportProgress& progress);

}  // namespace razerq::formats
