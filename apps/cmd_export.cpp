// razerq export OUT --to dequant -o DIR
#include <cstdio>

#include "apps/commands.hpp"
#include "common/error.hpp"
#include "formats/export_dequant.hpp"

#include <nlohmann/json.hpp>

namespace razerq::app {
namespace {

struct ExportArgs {
  std::string dir, to, out, dtype = "fp16";
  bool force = false;
};

void run_export(const ExportArgs& a, const GlobalOptions& g) {
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
  c->add_option("--to", a->to, "Target: dequant (a Hugging Face directory with dequantized weights)")
      ->required()
      ->check(CLI::IsMember({"dequant"}));
  c->add_option("-o,--out", a->out, "Output directory (written as DIR.partial, renamed when complete)")->required();
  c->add_option("--dtype", a->dtype, "dequant: fp16, bf16 or fp32")->capture_default_str();
  c->add_flag("--force", a->force, "Replace the output directory if it exists");
  c->callback([a, &g] { run_export(*a, g); });
}

}  // namespace razerq::app
