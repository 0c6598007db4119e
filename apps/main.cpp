// razerq: quantize Hugging Face checkpoints to RaZeR and the formats users compare it with,
// inspect the packed result, export it for other runtimes.
#include <cstdio>
#include <string>

#include "apps/commands.hpp"
#include "common/error.hpp"
#include "common/log.hpp"
#include "quantizer/format.hpp"

namespace {

// Exit codes by error kind; usage errors found by CLI11 keep its own codes (100 and up).
int exit_code(razerq::ErrorKind k) {
  switch (k) {
    case razerq::ErrorKind::kInvalidArgument: return 2;
    case razerq::ErrorKind::kMalformedInput: return 3;
    case razerq::ErrorKind::kIo: return 4;
    case razerq::ErrorKind::kUnsupported: return 5;
    case razerq::ErrorKind::kInternal: return 70;
  }
  return 1;
}

std::string formats_help() {
  std::string s = "Formats (--format):\n";
  for (const auto& f : razerq::quantizer::all_formats()) {
    std::string bits = f.min_bits == f.max_bits ? std::to_string(f.min_bits)
                                                : std::to_string(f.min_bits) + "-" + std::to_string(f.max_bits);
    s += razerq::strprintf("  %-12s bits %-4s group %-4d %s\n", f.name, bits.c_str(), f.default_group, f.description);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"razerq: offline LLM weight quantization (RaZeR, INT, FP4/FP3, NF4, MXFP4, NVFP4)"};
  app.require_subcommand(1);
  app.footer(formats_help());
  razerq::app::GlobalOptions g;
  app.add_flag("-q,--quiet", g.quiet, "No progress on stderr");
  app.add_flag("--json", g.json, "Print the result as JSON on stdout");
  razerq::app::set_quantize_command(app, g);
  razerq::app::set_inspect_command(app, g);
  razerq::app::set_export_command(app, g);
#if defined(RAZERQ_HAS_EVAL)
  razerq::app::set_eval_command(app, g);
  razerq::app::set_bench_command(app, g);
#endif
  for (CLI::App* sub : app.get_subcommands({})) sub->fallthrough();  // -q/--json after the subcommand too
  try {
    app.parse(argc, argv);  // runs the chosen subcommand's callback
  } catch (const CLI::Error& e) {
    return app.exit(e);
  } catch (const razerq::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return exit_code(e.kind());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 70;
  }
  return 0;
}
