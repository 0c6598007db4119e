#include "formats/export_dequant.hpp"

#include <cstring>
#include <filesystem>
#include <vector>

#include "common/error.hpp"
#include "common/file.hpp"
#include "common/half.hpp"
#include "common/log.hpp"
#include "formats/export_common.hpp"
#include "formats/packed_checkpoint.hpp"

namespace fs = std::filesystem;

namespace razerq::formats {

DType parse_export_dtype(const std::string& s) {
  if (s == "fp16" || s == "f16" || s == "float16") return DType::kF16;
  if (s == "bf16" || s == "bfloat16") return DType::kBF16;
  if (s == "fp32" || s == "f32" || s == "float32") return DType::kF32;
  throw_error(ErrorKind::kInvalidArgument, "--dtype", "unknown dtype '%s' (expected fp16, bf16 or fp32)", s.c_str());
}

ExportSummary export_dequant(const std::string& packed_dir, const std::string& out_dir, const ExportOptions& opt,
                             const std::function<void(const std::string&)>& progress) {
  if (opt.dtype != DType::kF16 && opt.dtype != DType::kBF16 && opt.dtype != DType::kF32)
    throw_error(ErrorKind::kInvalidArgument, "--dtype", "export writes fp16, bf16 or fp32");
  const PackedCheckpoint ckpt = PackedCheckpoint::open(packed_dir);
  StagedDir out(out_dir, opt.force);
  ExportSummary sum;
  {
    SafetensorsWriter w(out.path(kWeightsFile));
    w.set_metadata({{"format", "pt"}, {"razerq_source", kPackedFormatName}});
    std::vector<double> row;
    std::vector<uint8_t> bytes;
    const int total = static_cast<int>(ckpt.tensors().size());
    for (int i = 0; i < total; ++i) {
      const TensorRecord& r = ckpt.tensors()[static_cast<size_t>(i)];
      if (!r.quantized) {
        const TensorInfo& ti = ckpt.weights().info(r.name);
        w.add(r.name, ti.dtype, ti.shape, ckpt.weights().data(ti), ti.nbytes());
        ++sum.tensors;
        continue;
      }
      const quantizer::QuantizedTensor q = ckpt.load_quantized(r.name);
      const size_t esz = dtype_size(opt.dtype);
      bytes.resize(static_cast<size_t>(q.rows * q.cols) * esz);
      row.resize(static_cast<size_t>(q.cols));
      for (int64_t rr = 0; rr < q.rows; ++rr) {
        quantizer::dequantize_row_ref(q, rr, row.data());
        uint8_t* dst = bytes.data() + static_cast<size_t>(rr * q.cols) * esz;
        for (int64_t k = 0; k < q.cols; ++k) {
          const double v = row[static_cast<size_t>(k)];
          if (opt.dtype == DType::kF32) {
            const float f = static_cast<float>(v);
            std::memcpy(dst + k * 4, &f, 4);
          } else {
            const uint16_t h = opt.dtype == DType::kF16 ? double_to_fp16(v) : double_to_bf16(v);  // one rounding
            std::memcpy(dst + k * 2, &h, 2);
          }
        }
      }
      w.add(r.name, opt.dtype, r.shape, bytes.data(), bytes.size());
      ++sum.tensors;
      ++sum.dequantized;
      if (progress)
        progress(strprintf("[%d/%d] %s %s %s -> %s", i + 1, total, r.name.c_str(), shape_string(r.shape).c_str(),
                           r.cfg.label().c_str(), dtype_name(opt.dtype)));
    }
    w.finish();
  }
  sum.bytes = fs::file_size(out.path(kWeightsFile));
  for (const auto& entry : fs::directory_iterator(ckpt.dir())) {
    const std::string name = entry.path().filename().string();
    if (name == kManifestFile || name == kWeightsFile || !entry.is_regular_file()) continue;
    std::error_code ec;
    fs::copy_file(entry.path(), out.path(name), ec);
    if (ec) throw_error(ErrorKind::kIo, entry.path().string(), "cannot copy: %s", ec.message().c_str());
    fs::permissions(out.path(name), fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::add, ec);
  }
  out.commit();
  return sum;
}

}  // namespace razerq::formats
