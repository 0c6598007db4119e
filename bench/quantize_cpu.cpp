// bench_quantize_cpu: CPU throughput of quantizer::quantize_tensor (the default search,
// Rule::kSearch) for every registry format at its default group, on synthetic weight
// matrices shaped like a 7B model's projections. Prints a Markdown table; run it through
// bench/quantize_cpu.sh, which records the machine next to the table.
//
//   bench_quantize_cpu [--quick] [--formats razer4,nvfp4,...]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "quantizer/quantize.hpp"
#include "quantizer/reference_rules.hpp"

namespace qz = razerq::quantizer;

namespace {

constexpr double kGoalWeightsPerSec = 100e6;  // razer4, all threads
constexpr double k7bWeights = 6.5e9;          // quantized weights of a 7B model

struct Matrix {
  int64_t rows, cols;
  std::vector<float> w;
};

// N(0, 0.02^2) weights with 4 outliers of N(0, 0.15^2) per row at random columns.
Matrix make_matrix(int64_t rows, int64_t cols, uint64_t seed) {
  Matrix m{rows, cols, std::vector<float>(static_cast<size_t>(rows * cols))};
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> body(0.f, 0.02f), outlier(0.f, 0.15f);
  std::uniform_int_distribution<int64_t> col(0, cols - 1);
  for (float& x : m.w) x = body(rng);
  for (int64_t r = 0; r < rows; ++r)
    for (int i = 0; i < 4; ++i) m.w[static_cast<size_t>(r * cols + col(rng))] = outlier(rng);
  return m;
}

// Every registry format at its default group; int at 4 bits (sym, asym) and 3 bits, razer at 4 and 3.
std::vector<qz::FormatConfig> benchmark_configs() {
  std::vector<qz::FormatConfig> out;
  for (const qz::FormatSpec& s : qz::all_formats()) {
    if (s.id == qz::FormatId::kInt) {
      out.push_back(qz::make_format_config(s.name, 4));
      out.push_back(qz::make_format_config(s.name, 4, 0, true));
      out.push_back(qz::make_format_config(s.name, 3));
    } else if (s.id == qz::FormatId::kRazer) {
      out.push_back(qz::make_format_config(s.name, 4));
      out.push_back(qz::make_format_config(s.name, 3));
    } else {
      out.push_back(qz::make_format_config(s.name));
    }
  }
  return out;
}

// The --formats name of a config: its label without the group ("int4-asym", "razer4", "nvfp4").
std::string short_name(const qz::FormatConfig& c) {
  const std::string l = c.label();
  return l.substr(0, l.find('/'));
}

struct Timing {
  double median_s;
  double rel_error;
};

// `warmup` untimed runs, then the median wall time of `runs` timed runs.
Timing time_quantize(const Matrix& m, const qz::FormatConfig& cfg, int threads, int warmup, int runs) {
  double rel_error = 0;
  auto once = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    const qz::QuantizedTensor q = qz::quantize_tensor(m.w.data(), m.rows, m.cols, cfg, {}, nullptr, threads);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rel_error = q.stats.rel_error();
    return s;
  };
  for (int i = 0; i < warmup; ++i) once();
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) t.push_back(once());
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], rel_error};
}

int run(int argc, char** argv) {
  bool quick = false;
  std::vector<std::string> only;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) {
      quick = true;
    } else if (!std::strcmp(argv[i], "--formats") && i + 1 < argc) {
      std::stringstream ss(argv[++i]);
      for (std::string f; std::getline(ss, f, ',');) only.push_back(f);
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--formats a,b,...]\n", argv[0]);
      return 2;
    }
  }
  std::vector<qz::FormatConfig> cfgs;
  std::string names;
  for (const qz::FormatConfig& c : benchmark_configs()) {
    names += (names.empty() ? "" : ", ") + short_name(c);
    if (only.empty() || std::find(only.begin(), only.end(), short_name(c)) != only.end()) cfgs.push_back(c);
  }
  for (const std::string& f : only)
    if (std::none_of(cfgs.begin(), cfgs.end(), [&](const qz::FormatConfig& c) { return short_name(c) == f; })) {
      std::fprintf(stderr, "--formats: unknown format '%s' (expected one of: %s)\n", f.c_str(), names.c_str());
      return 2;
    }

  const int warmup = quick ? 0 : 1, runs = quick ? 1 : 3;
  const int64_t div = quick ? 8 : 1;  // --quick: 1/8 of the rows
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{4096 / div, 4096}, {11008 / div, 4096}};
  // quantize_tensor(threads = 1) calls omp_set_num_threads(1), which outlives the call:
  // restore the default after each single-thread run so that threads = 0 still means all.
  const int all_threads = omp_get_max_threads();

  std::printf("quantize_tensor (Rule::kSearch, default clip ratios), %s; %d OpenMP threads by default\n\n",
              quick ? "--quick: 1 run, no warm-up" : "warm-up + median of 3 runs", all_threads);
  std::printf("| format | shape | threads | median s | M weights/s | rel error | reference rel error | ours/reference |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|---:|\n");
  std::fflush(stdout);
  double razer4_weights = 0, razer4_seconds = 0;
  for (size_t si = 0; si < shapes.size(); ++si) {
    const Matrix m = make_matrix(shapes[si].first, shapes[si].second, 1234 + si);
    const double n = double(m.rows) * double(m.cols);
    for (const qz::FormatConfig& cfg : cfgs) {
      const double ref = qz::reference_quantize(m.w.data(), m.rows, m.cols, cfg).rel_error;
      const bool razer4 = short_name(cfg) == "razer4";
      for (int threads : razer4 ? std::vector<int>{0, 1} : std::vector<int>{0}) {
        const Timing t = time_quantize(m, cfg, threads, warmup, runs);
        if (threads == 1) omp_set_num_threads(all_threads);
        if (razer4 && threads == 0) razer4_weights += n, razer4_seconds += t.median_s;
        std::printf("| %s | %lldx%lld | %d | %.3f | %.1f | %.5f | %.5f | %.3f |\n", cfg.label().c_str(),
                    static_cast<long long>(m.rows), static_cast<long long>(m.cols),
                    threads ? threads : all_threads, t.median_s, n / t.median_s / 1e6, t.rel_error, ref,
                    t.rel_error / ref);
        std::fflush(stdout);
      }
    }
  }
  if (razer4_seconds > 0) {
    const double rate = razer4_weights / razer4_seconds;
    std::printf("\nrazer4/g128, %d threads: %.1f M weights/s over both shapes -> a 7B model (%.1e weights) "
                "in %.0f s (%.1f min)\n",
                all_threads, rate / 1e6, k7bWeights, k7bWeights / rate, k7bWeights / rate / 60);
    std::printf("goal >= %.0f M weights/s for razer4: %s\n", kGoalWeightsPerSec / 1e6,
                rate >= kGoalWeightsPerSec ? "GOAL MET" : "GOAL MISSED");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const razerq::Error& e) {
    std::fprintf(stderr, "bench_quantize_cpu: %s\n", e.what());
    return 1;
  }
}
