#pragma once
// Decoders of other projects' quantized checkpoints, written from each target's own
// definition (the peer file is cited in foreign_decoders.cpp) and sharing no packing code with
// razerq's writers (quantizer/pack.hpp, formats/export_*.cpp): `razerq export` re-reads every
// export with them, and the tests check them on hand-packed words. Each returns the weight of
// one linear layer as the target's loader computes it, in float64, [N, K] row-major
// (N = out_features, K = in_features). Malformed input throws kMalformedInput naming the
// file and the tensor.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "formats/safetensors.hpp"

namespace razerq::formats::foreign {

// GPTQ, checkpoint_format "gptq" (v1): `module`.qweight int32 [K*b/32, N] packed along K,
// .qzeros int32 [ceil(K/G), N*b/32] packed along N storing zero - 1, .scales fp16
// [ceil(K/G), N], .g_idx int32 [K]. `qcfg` is the quantization_config (bits, group_size,
// checkpoint_format). W[n, k] = scales[g, n] * (q[k, n] - (qzeros[g, n] + 1)), g = g_idx[k].
std::vector<double> decode_gptq(const SafetensorsFile& f, const std::string& module, const nlohmann::json& qcfg,
                                int64_t N, int64_t K);

// compressed-tensors, format "pack-quantized" (compressed-tensors >= 0.18 dense packing):
// .weight_packed int32 [N, ceil(K*b/32)], .weight_scale [N, K/G] (F16/BF16/F32),
// .weight_zero_point int32 [ceil(N*b/32), K/G] (asymmetric only), .weight_shape int32 [2].
// `weights` is config_groups.group_0.weights.
std::vector<double> decode_ct_pack_quantized(const SafetensorsFile& f, const std::string& module,
                                             const nlohmann::json& weights, int64_t N, int64_t K);

// compressed-tensors "nvfp4-pack-quantized" (.weight_packed uint8 [N, K/2], .weight_scale
// float8_e4m3fn [N, K/16], .weight_global_scale fp32 [1]; W = e2m1 * scale / global_scale) and
// "mxfp4-pack-quantized" (.weight_scale uint8 E8M0 [N, K/32]; W = e2m1 * 2^(e - 127)).
std::vector<double> decode_ct_fp4(const SafetensorsFile& f, const std::string& module, const std::string& format,
                                  const nlohmann::json& weights, int64_t N, int64_t K);

// bitsandbytes 4-bit (Params4bit serialized): `weight` uint8 (two codes per byte, the first in
// the high nibble, over the flattened [N, K] tensor), `weight`.absmax fp32 per block,
// `weight`.quant_map fp32 [16], `weight`.quant_state.bitsandbytes__nf4 uint8 JSON
// (quant_type, blocksize, dtype, shape). W_flat[i] = quant_map[code_i] * absmax[i / blocksize].
std::vector<double> decode_bnb_4bit(const SafetensorsFile& f, const std::string& weight, int64_t N, int64_t K);

}  // namespace razerq::formats::foreign
