// razerq export OUT --to dequant|gptq|compressed-tensors|bnb-nf4 -o DIR
// razerq export OUT --to gguf -o FILE.gguf [--requant Q4_K]
#include <cstdio>

#include "apps/commands.hpp"
#include "common/error.hpp"
#include "formats/export_common.hpp"
#include "formats/export_dequant.hpp"
#include "formats/export_gguf.hpp"
#include "formats/export_quantized.hpp"

#include <nlohmann/json.hpp>

namespace razerq::app {
namespace {

struct ExportArgs {
  std::string dir, to, out, dtype = "fp16", requant;
  bool force = false;
};

// The verdict of re-reading an export: one line per converted tensor and the total on stdout,
// or the report with --json.
void print_report(const formats::ExportReport& r, const GlobalOptions& g) {
  if (g.json) {
    std::printf("%s\n", formats::report_to_json(r).dump(1).c_str());
    return;
  }
  for (const auto& t : r.tensors) std::printf("%s\n", formats::verdict_line(t).c_str());
  std::printf("%s\n", formats::verdict_total(r).c_str());
}

// gptq, compressed-tensors, bnb-nf4: progress on stderr, then the verdict of re-reading the
// export (one line per converted tensor and the total) on stdout, or the report with --json.
void run_quantized_export(const ExportArgs& a, const GlobalOptions& g, const formats::ExportOptions& opt) {
  const auto progress = [&](const std::string& line) {
    if (!g.quiet) std::fprintf(stderr, "%s\n", line.c_str());
  };
  formats::ExportReport r;
  if (a.to == "gptq") r = formats::export_gptq(a.dir, a.out, opt, progress);
  else if (a.to == "compressed-tensors") r = formats::export_compressed_tensors(a.dir, a.out, opt, progress);
  else r = formats::export_bnb_nf4(a.dir, a.out, opt, progress);
  print_report(r, g);
}

void run_export_gguf(const ExportArgs& a, const GlobalOptions& g) {
  formats::GgufExportOptions opt;
  opt.dtype = formats::parse_export_dtype(a.dtype);
  opt.requant = a.requant;
  opt.force = a.force;
  const formats::ExportReport r = formats::export_gguf(a.dir, a.out, opt, [&](const std::string& line) {
    if (!g.quiet) std::fprintf(stderr, "%s\n", line.c_str());
  });
  print_report(r, g);
}

void run_export(const ExportArgs& a, const GlobalOptions& g) {
  if (a.to == "gguf") return run_export_gguf(a, g);
  formats::ExportOptions opt;
  opt.dtype = formats::parse_export_dtype(a.dtype);
  opt.force = a.force;
  if (a.to != "dequant") return run_quantized_export(a, g, opt);
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
                 "Target: dequant (a Hugging Face directory with dequantized weights; any format), gptq (GPTQ v1: "
                 "int sym/asym at 2/3/4/8 bits), compressed-tensors (int 2-8 bits -> pack-quantized, nvfp4, mxfp4), "
                 "bnb-nf4 (nf4, group 32..4096), gguf (one GGUF v3 file for llama.cpp, LLaMA family: exact "
                 "Q4_0/Q4_1/MXFP4/NVFP4 blocks, --requant for the rest). The quantized targets re-read the export "
                 "with an independent decoder and print, per tensor, whether it equals razerq's dequantization "
                 "(lossless) or the error")
      ->required()
      ->check(CLI::IsMember({"dequant", "gptq", "compressed-tensors", "bnb-nf4", "gguf"}));
  c->add_option("-o,--out", a->out, "Output directory, or file for gguf (written as OUT.partial, renamed when complete)")
      ->required();
  CLI::Option* dtype =
      c->add_option("--dtype", a->dtype, "dequant: fp16, bf16 or fp32; gguf: the type of unquantized 2-D tensors")
          ->capture_default_str();
  c->add_option("--requant", a->requant,
                "gguf: re-quantize formats without an exact GGUF type (razer, fp4, fp3, nf4, ...) to this type: Q4_K "
                "(Q5_0 where the width is not a multiple of 256, as llama-quantize does), Q4_0, Q4_1, Q5_0, Q8_0; "
                "lossy, the error is printed per tensor")
      ->check(CLI::IsMember(formats::gguf_requant_types()));
  c->add_flag("--force", a->force, "Replace the output directory if it exists");
  c->callback([a, &g, dtype] {
    if (a->to != "dequant" && a->to != "gguf" && dtype->count() > 0)
      throw_error(ErrorKind::kInvalidArgument, "--dtype",
                  "applies to --to dequant and gguf only (%s keeps the codes and the target's own scale types)", a->to.c_str());
    run_export(*a, g);
  });
}

}  // namespace razerq::app
