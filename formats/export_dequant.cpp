#include "formats/export_dequant.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/error.hpp"
#include "common/file.hpp"
#include "common/half.hpp"
#include "common/log.hpp"
#include "formats/export_common.hpp"
#include "formats/packed_checkpoint.hpp"
#include "quantizer/hadamard.hpp"

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
  // A rotated checkpoint (razerq quantize --rotate) runs an online Hadamard Q before down_proj
  // (config.json "razerq_online_hadamard"): the export folds it back, W_down Q^T, so that the
  // exported model is a plain Hugging Face model (the residual rotation is in the weights).
  nlohmann::json config;
  bool unrotate_down = false;
  {
    std::ifstream in(fs::path(ckpt.dir()) / "config.json");
    if (in) {
      try {
        config = nlohmann::json::parse(in);
      } catch (const nlohmann::json::exception& e) {
        throw_error(ErrorKind::kMalformedInput, (fs::path(ckpt.dir()) / "config.json").string(), "invalid JSON: %s", e.what());
      }
      if (config.is_object() && config.contains("razerq_online_hadamard")) {
        for (const auto& e : config["razerq_online_hadamard"])
          if (e.is_string() && e.get<std::string>() == "down_proj") unrotate_down = true;
          else
            throw_error(ErrorKind::kUnsupported, (fs::path(ckpt.dir()) / "config.json").string(),
                        "razerq_online_hadamard: %s cannot be exported (supported: \"down_proj\")", e.dump().c_str());
        config.erase("razerq_online_hadamard");
      }
    }
  }
  auto is_down = [](const std::string& n) {
    static const std::string suf = ".mlp.down_proj.weight";
    return n.size() >= suf.size() && n.compare(n.size() - suf.size(), suf.size(), suf) == 0;
  };
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
      if (!r.quantized && !(unrotate_down && is_down(r.name))) {
        const TensorInfo& ti = ckpt.weights().info(r.name);
        w.add(r.name, ti.dtype, ti.shape, ckpt.weights().data(ti), ti.nbytes());
        ++sum.tensors;
        continue;
      }
      if (!r.quantized) {  // an unquantized rotated down_proj: fold Q^T, keep its dtype
        const TensorInfo& ti = ckpt.weights().info(r.name);
        const int64_t rows = ti.shape[0], cols = ti.shape[1];
        std::vector<float> f(static_cast<size_t>(rows * cols));
        ckpt.weights().read_float(ti, f.data());
        std::vector<double> d(f.begin(), f.end());
        quantizer::apply_right(quantizer::hadamard_plan(cols), d.data(), rows, /*transpose=*/true);
        std::vector<uint8_t> b(static_cast<size_t>(rows * cols) * dtype_size(ti.dtype));
        for (int64_t k = 0; k < rows * cols; ++k) {
          if (ti.dtype == DType::kF32) {
            const float x = static_cast<float>(d[static_cast<size_t>(k)]);
            std::memcpy(b.data() + k * 4, &x, 4);
          } else {
            const uint16_t h = ti.dtype == DType::kF16 ? double_to_fp16(d[static_cast<size_t>(k)]) : double_to_bf16(d[static_cast<size_t>(k)]);
            std::memcpy(b.data() + k * 2, &h, 2);
          }
        }
        w.add(r.name, ti.dtype, ti.shape, b.data(), b.size());
        ++sum.tensors;
        continue;
      }
      const quantizer::QuantizedTensor q = ckpt.load_quantized(r.name);
      const size_t esz = dtype_size(opt.dtype);
      bytes.resize(static_cast<size_t>(q.rows * q.cols) * esz);
      row.resize(static_cast<size_t>(q.cols));
      const bool fold = unrotate_down && is_down(r.name);
      const quantizer::HadamardPlan plan = quantizer::hadamard_plan(fold ? q.cols : 1);
      for (int64_t rr = 0; rr < q.rows; ++rr) {
        quantizer::dequantize_row_ref(q, rr, row.data());
        if (fold) quantizer::apply_right(plan, row.data(), 1, /*transpose=*/true);
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
    if (name == "config.json" && unrotate_down) {
      std::ofstream cf(out.path(name), std::ios::trunc);
      cf << config.dump(2) << "\n";
      if (!cf) throw_error(ErrorKind::kIo, out.path(name), "cannot write");
      continue;
    }
    std::error_code ec;
    fs::copy_file(entry.path(), out.path(name), ec);
    if (ec) throw_error(ErrorKind::kIo, entry.path().string(), "cannot copy: %s", ec.message().c_str());
    fs::permissions(out.path(name), fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::add, ec);
  }
  out.commit();
  return sum;
}

}  // namespace razerq::formats
