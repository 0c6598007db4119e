// razerq export OUT --to dequant -o DIR
// razerq export OUT --to gguf -o FILE.gguf [--requant Q4_K]
#include <cstdio>

#include "apps/commands.hpp"
#include "common/error.hpp"
#include "formats/export_dequant.hpp"
#include "formats/export_gguf.hpp"

#include <nlohmann/json.hpp>

namespace razerq::app {
namespace {

struct ExportArgs {
  std::string dir, to, out, dtype = "fp16", requant;
  bool force = false;
};

void run_export_gguf(const ExportArgs& a, const GlobalOptions& g) {
  formats::GgufExportOptions opt;
  opt.dtype = formats::parse_export_dtype(a.dtype);
  opt.requant = a.requant;
  opt.force = a.force;
  const formats::ExportReport r = formats::export_gguf(a.dir, a.out, opt, [&](const std::string& line) {
    if (!g.quiet) std::fprintf(stderr, "%s\n", line.c_str());
  });
  if (g.json) {
    nlohmann::json t = nlohmann::json::array();
    for (const auto& v : r.tensors)
      t.push_back({{"name", v.name}, {"target_name", v.target_name}, {"target_type", v.target_type}, {"lossless", v.lossless},
                   {"max_abs_err", v.max_abs_err}, {"rel_err", v.rel_err}, {"note", v.note}});
    std::printf("%s\n", nlohmann::json({{"out", r.out}, {"to", r.target}, {"bytes", r.bytes}, {"lossless", r.lossless_count()},
                                        {"tensors", t}})
                            .dump(1)
                            .c_str());
    return;
  }
  for (const auto& v : r.tensors) std::printf("%s\n", formats::format_verdict(v).c_str());
  std::printf("%s\n", formats::format_verdict_total(r).c_str());
  std::printf("wrote %s: GGUF v3, %zu tensors, %.1f MiB\n", r.out.c_str(), r.tensors.size(), double(r.bytes) / (1 << 20));
}

void run_export(const ExportArgs& a, const GlobalOptions& g) {
  if (a.to == "gguf") return run_export_gguf(a, g);
  formats::ExportOptions opt;
  opt.dtype = formats::parse_export_dtype(a.dtype);
  opt.force = a.force;
  const formats::ExportSummary s = formats::export_dequant(a.dir, a.out, opt, [&](const std::string& line) {
    if (!g.quiet) std::fprintf(stderr, "%s\n", line.c_str());
  });
  if (g.json) {
    std::printf("%s\n", nlohmann::json({{"out", a.out}, {"to", a.to}, {"tensors", s.tensors}, {"dequantized", s.dequantized},
                                        {"bytes", s.bytes}})
                            .dump(1)
                            .c_str());
    return;
  }
  std::printf("wrote %s: Hugging Face directory, %d tensors (%d dequantized to %s), %.1f MiB\n", a.out.c_str(), s.tensors,
              s.dequantized, a.dtype.c_str(), double(s.bytes) / (1 << 20));
}

}  // namespace

void set_export_command(CLI::App& app, GlobalOptions& g) {
  auto a = std::make_shared<ExportArgs>();
  CLI::App* c = app.add_subcommand("export", "Write a packed checkpoint in a format another runtime loads");
  c->add_option("OUT", a->dir, "Packed checkpoint directory")->required();
  c->add_option("--to", a->to,
                 "Target: dequant (a Hugging Face directory with dequantized weights); gguf (one GGUF v3 file for "
                 "llama.cpp, LLaMA family: exact Q4_0/Q4_1/MXFP4/NVFP4 blocks, re-read and verified tensor by tensor)")
      ->required()
      ->check(CLI::IsMember({"dequant", "gguf"}));
  c->add_option("-o,--out", a->out, "Output directory, or file for gguf (written as OUT.partial, renamed when complete)")
      ->required();
  c->add_option("--dtype", a->dtype, "dequant: fp16, bf16 or fp32; gguf: the type of unquantized 2-D tensors")
      ->capture_default_str();
  c->add_option("--requant", a->requant,
                "gguf: re-quantize formats without an exact GGUF type (razer, fp4, fp3, nf4, ...) to this type: Q4_K "
                "(Q5_0 where the width is not a multiple of 256, as llama-quantize does), Q4_0, Q4_1, Q5_0, Q8_0; "
                "lossy, the error is printed per tensor")
      ->check(CLI::IsMember(formats::gguf_requant_types()));
  c->add_flag("--force", a->force, "Replace the output directory if it exists");
  c->callback([a, &g] { run_export(*a, g); });
}

}  // namespace razerq::app
