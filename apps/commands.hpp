#pragma once
// One set_*_command per subcommand (micromamba style): each registers its options on `app`
// and a callback that does the work; main() runs the parser and turns errors into exit codes.
#include <CLI/CLI.hpp>

namespace razerq::app {

struct GlobalOptions {
  bool quiet = false;  // no progress lines on stderr
  bool json = false;   // machine-readable result on stdout
};

void set_quantize_command(CLI::App& app, GlobalOptions& g);
void set_inspect_command(CLI::App& app, GlobalOptions& g);
void set_export_command(CLI::App& app, GlobalOptions& g);
#if defined(RAZERQ_HAS_EVAL)
void set_eval_command(CLI::App& app, GlobalOptions& g);   // built with libtorch only
void set_bench_command(CLI::App& app, GlobalOptions& g);  // built with libtorch only
#endif

}  // namespace razerq::app
