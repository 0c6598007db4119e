#pragma once
// `razerq export OUT --to gguf -o FILE.gguf`: a complete GGUF v3 file for a LLaMA-family
// packed checkpoint, loadable by llama.cpp: architecture keys, tokenizer keys
// (formats/gguf_vocab.hpp), llama.cpp tensor names, the Q/K RoPE row permutation of
// convert_hf_to_gguf.py, and the quantized weights mapped to GGUF block types:
//
//   int, sym, bits <= 4, group a multiple of 32   -> Q4_0    d = our fp16 scale (repeated per 32)
//   int, asym, bits <= 4, group a multiple of 32  -> Q4_1    d = scale, m = fp16(-scale * zero)
//   mxfp4                                         -> MXFP4   same codes and E8M0 byte
//   nvfp4                                         -> NVFP4   same codes, E4M3 bytes as UE4M3;
//                                                            the fp32 tensor scale as "<name>.scale"
//   unquantized tensors                           -> F32 (1-D), --dtype (2-D, F16 by default)
//
// A quantized tensor whose width is not a multiple of the GGUF block (32, 64 for NVFP4) is
// written as F32 from the float64 reference dequantization. Formats without an exact type
// (razer, fp4, fp3, nf4, the RaZeR MX/NV variants, int with 5-8 bits) are refused unless
// `requant` names a GGUF type to re-quantize them to (lossy; the error is reported).
//
// The file is written as FILE.partial, re-read with the independent decoder of
// formats/gguf_reader.hpp tensor by tensor against our float64 dequantization, and renamed
// to FILE only when every exactly-mapped tensor decodes exactly.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "formats/export.hpp"
#include "formats/safetensors.hpp"
#include "quantizer/format.hpp"

namespace razerq::formats {

struct GgufExportOptions {
  std::string requant;        // "" (refuse formats without an exact type) or a type of requant_types()
  DType dtype = DType::kF16;  // unquantized 2-D tensors: kF16, kBF16 or kF32
  bool force = false;         // replace an existing output file
};

// The GGUF types --requant accepts.
const std::vector<std::string>& gguf_requant_types();

// The exact GGUF type of a quantized tensor of this format and width ("Q4_0", "Q4_1",
// "MXFP4", "NVFP4"), or "" when there is none.
std::string gguf_exact_type(const quantizer::FormatConfig& cfg);
// One sentence listing the exact mappings, used in refusals and --help.
std::string gguf_exact_types_help();

// llama.cpp's name of a Hugging Face LLaMA tensor ("model.layers.3.self_attn.q_proj.weight" ->
// "blk.3.attn_q.weight"); "" for tensors the converter drops (rotary inv_freq).
// Unknown names throw kUnsupported.
std::string gguf_tensor_name(const std::string& hf_name);

// The Q/K row order of convert_hf_to_gguf.py's LlamaModel.permute: GGUF row r holds Hugging
// Face row order[r], for a weight (or bias) of `rows` rows split into `n_head` heads.
std::vector<int64_t> gguf_rope_row_order(int64_t rows, int64_t n_head);

ExportReport export_gguf(const std::string& packed_dir, const std::string& out_path, const GgufExportOptions& opt,
                         const std::function<void(const std::string& line)>& progress);


}  // namespace razerq::formats
