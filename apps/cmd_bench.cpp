// razerq bench decode MODEL [--baseline DIR] [--batch 1,4,16] [--prompt 128] [--tokens 128]
//                     [--mode eager|static|graph] [--decode-ops fused|norm-epilogue|separate-silu|libtorch] [--device cuda]
//                     [--dtype fp16]
//                     [--seed 0] [--json]
// Greedy token-by-token decoding with the KV cache: time to first token (the prompt's prefill)
// and decode tokens/s per batch size, for MODEL and, with --baseline, a second model (e.g. the
// fp16 source of a packed checkpoint) with the ratio. Prompts are random token ids (seeded):
// the time does not depend on the text. A packed checkpoint on CUDA fp16 decodes through the
// fused GEMV (eval::ModelOptions::fused_gemv); the line says how many products took it.
// --mode: eager = Model::forward with the growing KVCache, one libtorch call sequence per token;
// static = eval::StaticDecoder stepped eagerly (preallocated cache, no host synchronisation);
// graph = StaticDecoder with the step captured in one CUDA graph and replayed per token (the
// default on CUDA; eager on CPU). TTFT is the prompt's prefill in every mode; the warm-up steps
// and the graph capture are untimed; the decode steps are timed from the end of the prefill to
// one synchronisation after the last. --decode-ops: the static step's norms, RoPE, cache writes,
// attention and SiLU through our CUDA kernels (fused, the default where the model takes them:
// eval::ModelOptions::fused_decode_ops; a packed model's gate/up product then writes SiLU * up
// itself, ModelOptions::silu_epilogue), the same with the residual add + RMSNorm in the products'
// epilogues where the batch allows (norm-epilogue, ModelOptions::norm_epilogue: `ops` reads
// norm-epilogue where they ran, fused where not), the same with SiLU * up as its own kernel (separate-silu)
// or libtorch's ops; the `ops` column says which ran.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "apps/commands.hpp"
#include "common/error.hpp"
#include "eval/decode.hpp"
#include "eval/model.hpp"

namespace razerq::app {
namespace {

struct BenchArgs {
  std::string model, baseline, device = "cuda", dtype = "fp16", mode, decode_ops = "fused";
  std::vector<int> batches = {1, 4, 16};
  int prompt = 128, tokens = 128, warmup = 8;
  uint64_t seed = 0;
};

struct DecodeRow {
  std::string model;
  int batch = 0;
  double ttft_ms = 0, ms_per_step = 0, tokens_per_s = 0;
  int64_t fused_calls = 0;
  bool norm_epilogue = false;  // the static step ran the norm epilogues
  std::string ops;  // the static step's small operations: --decode-ops (decode kernels) or "libtorch"
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Waits for the device: a scalar copied to the host.
void sync(const torch::Tensor& t) { (void)t.sum().item<double>(); }

// --mode static / graph: eval::StaticDecoder with capacity prompt + warmup + tokens. Warm-up
// (untimed): a prefill of the prompt, one eager step (counting its fused-GEMV products, which a
// graph replay does not pass through the host to count), the capture, warmup - 1 more steps.
DecodeRow run_decode_static(const eval::Model& m, const std::string& label, int B, const BenchArgs& a, bool graph) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(a.seed);
  const int64_t V = m.config().vocab_size;
  const torch::Tensor prompt = torch::randint(V, {B, a.prompt}, torch::kLong).to(m.device());
  eval::StaticDecoder d(m, B, int64_t{a.prompt} + a.warmup + a.tokens, graph);
  (void)d.prefill(prompt);
  const int64_t calls0 = eval::Model::fused_gemv_calls(), norms0 = eval::Model::norm_epilogue_calls();
  (void)d.step();
  const int64_t per_step = eval::Model::fused_gemv_calls() - calls0;
  const bool norm_epilogue = eval::Model::norm_epilogue_calls() > norms0;
  d.capture();
  d.replay(std::max(0, a.warmup - 1));
  sync(d.logits());
  DecodeRow r;
  r.model = label, r.batch = B;
  r.norm_epilogue = norm_epilogue;
  const double t0 = now_s();
  sync(d.prefill(prompt));
  const double t1 = now_s();
  d.replay(a.tokens);
  sync(d.logits());
  const double t2 = now_s();
  r.fused_calls = per_step * a.tokens;
  r.ttft_ms = 1e3 * (t1 - t0);
  r.ms_per_step = 1e3 * (t2 - t1) / a.tokens;
  r.tokens_per_s = B * a.tokens / (t2 - t1);
  return r;
}

DecodeRow run_decode(const eval::Model& m, const std::string& label, int B, const BenchArgs& a) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(a.seed);
  const int64_t V = m.config().vocab_size;
  const torch::Tensor prompt = torch::randint(V, {B, a.prompt}, torch::kLong).to(m.device());
  auto greedy = [](const torch::Tensor& logits) { return logits.select(1, logits.size(1) - 1).argmax(-1, true); };
  {  // warm-up: allocator, cuBLAS handles, kernels' first launches
    eval::KVCache c;
    torch::Tensor next = greedy(m.forward(prompt.slice(1, 0, std::min(a.prompt, 16)), &c));
    for (int i = 0; i < a.warmup; ++i) next = greedy(m.forward(next, &c));
    sync(next);
  }
  DecodeRow r;
  r.model = label, r.batch = B;
  eval::KVCache cache;
  const double t0 = now_s();
  torch::Tensor next = greedy(m.forward(prompt, &cache));
  sync(next);
  const double t1 = now_s();
  const int64_t calls0 = eval::Model::fused_gemv_calls();
  for (int i = 0; i < a.tokens; ++i) next = greedy(m.forward(next, &cache));
  sync(next);
  const double t2 = now_s();
  r.fused_calls = eval::Model::fused_gemv_calls() - calls0;
  r.ttft_ms = 1e3 * (t1 - t0);
  r.ms_per_step = 1e3 * (t2 - t1) / a.tokens;
  r.tokens_per_s = B * a.tokens / (t2 - t1);
  return r;
}

void run_bench_decode(const BenchArgs& a, const GlobalOptions& g) {
  if (a.prompt < 1 || a.tokens < 1) throw_error(ErrorKind::kInvalidArgument, "bench decode", "--prompt and --tokens must be >= 1");
  if (a.warmup < 0) throw_error(ErrorKind::kInvalidArgument, "bench decode", "--warmup %d (expected >= 0)", a.warmup);
  for (int b : a.batches)
    if (b < 1) throw_error(ErrorKind::kInvalidArgument, "bench decode", "--batch %d (expected >= 1)", b);
  if (a.decode_ops != "fused" && a.decode_ops != "norm-epilogue" && a.decode_ops != "separate-silu" &&
      a.decode_ops != "libtorch")
    throw_error(ErrorKind::kInvalidArgument, "--decode-ops",
                "\"%s\" (expected fused, norm-epilogue, separate-silu or libtorch)", a.decode_ops.c_str());
  eval::ModelOptions opt;
  opt.device = eval::parse_device(a.device);
  opt.dtype = eval::parse_dtype(a.dtype);
  opt.fused_decode_ops = a.decode_ops != "libtorch";
  opt.silu_epilogue = a.decode_ops == "fused" || a.decode_ops == "norm-epilogue";
  opt.norm_epilogue = a.decode_ops == "norm-epilogue";
  const std::string mode = a.mode.empty() ? (opt.device.is_cuda() ? "graph" : "eager") : a.mode;
  if (mode != "eager" && mode != "static" && mode != "graph")
    throw_error(ErrorKind::kInvalidArgument, "--mode", "\"%s\" (expected eager, static or graph)", mode.c_str());
  if (mode == "graph" && !opt.device.is_cuda())
    throw_error(ErrorKind::kInvalidArgument, "--mode", "graph needs --device cuda (CUDA graphs); use static or eager on %s",
                opt.device.str().c_str());
  std::vector<std::pair<std::string, std::string>> models = {{"model", a.model}};
  if (!a.baseline.empty()) models.insert(models.begin(), {"baseline", a.baseline});
  std::vector<DecodeRow> rows;
  for (const auto& [label, path] : models) {
    const eval::Model m = eval::Model::load(path, opt);
    if (!g.quiet) std::fprintf(stderr, "%s: %s\n", label.c_str(), m.describe().c_str());
    for (int B : a.batches) {
      rows.push_back(mode == "eager" ? run_decode(m, label, B, a) : run_decode_static(m, label, B, a, mode == "graph"));
      // (norm-epilogue where the step ran them, else fused: a batch or model they do not take)
      rows.back().ops = !(mode != "eager" && m.decode_kernels())                       ? "libtorch"
                        : a.decode_ops == "norm-epilogue" && !rows.back().norm_epilogue ? "fused"
                                                                                        : a.decode_ops;
      const DecodeRow& r = rows.back();
      if (!g.quiet)
        std::fprintf(stderr, "  %s (%s ops) batch %2d: ttft %.1f ms, %.2f ms/step, %.0f tokens/s%s\n", mode.c_str(),
                     r.ops.c_str(), B, r.ttft_ms, r.ms_per_step, r.tokens_per_s,
                     r.fused_calls ? strprintf(" (%lld fused GEMV products)", static_cast<long long>(r.fused_calls)).c_str()
                                   : "");
    }
  }
  auto base_of = [&](const DecodeRow& r) -> const DecodeRow* {
    for (const DecodeRow& b : rows)
      if (b.model == "baseline" && b.batch == r.batch) return &b;
    return nullptr;
  };
  if (g.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const DecodeRow& r : rows) {
      nlohmann::json o = {{"model", r.model == "model" ? a.model : a.baseline}, {"role", r.model}, {"mode", mode}, {"ops", r.ops}, {"batch", r.batch},
                          {"prompt", a.prompt}, {"tokens", a.tokens}, {"ttft_ms", r.ttft_ms},
                          {"ms_per_step", r.ms_per_step}, {"tokens_per_s", r.tokens_per_s}, {"fused_gemv_products", r.fused_calls}};
      if (const DecodeRow* b = r.model == "model" ? base_of(r) : nullptr) o["speedup_vs_baseline"] = r.tokens_per_s / b->tokens_per_s;
      j.push_back(o);
    }
    std::printf("%s\n", j.dump(1).c_str());
    return;
  }
  std::printf("| model | mode | ops | batch | prompt | ttft ms | ms / step | tokens/s | vs baseline |\n"
              "|---|---|---|---:|---:|---:|---:|---:|---:|\n");
  for (const DecodeRow& r : rows) {
    const DecodeRow* b = r.model == "model" ? base_of(r) : nullptr;
    std::printf("| %s | %s | %s | %d | %d | %.1f | %.3f | %.0f | %s |\n",
                r.model == "model" ? a.model.c_str() : a.baseline.c_str(), mode.c_str(), r.ops.c_str(), r.batch, a.prompt, r.ttft_ms, r.ms_per_step, r.tokens_per_s,
                b ? strprintf("%.2fx", r.tokens_per_s / b->tokens_per_s).c_str() : "");
  }
}

}  // namespace

void set_bench_command(CLI::App& app, GlobalOptions& g) {
  CLI::App* bench = app.add_subcommand("bench", "Measure speed");
  bench->require_subcommand(1);
  auto a = std::make_shared<BenchArgs>();
  CLI::App* c = bench->add_subcommand(
      "decode",
      "Greedy token-by-token decoding with the KV cache: time to first token and tokens/s per batch size "
      "(random prompts; a packed checkpoint on CUDA fp16 runs the fused GEMV)");
  c->add_option("MODEL", a->model, "Packed checkpoint or Hugging Face directory")->required();
  c->add_option("--baseline", a->baseline, "A second model measured first (e.g. the fp16 source); adds the ratio");
  c->add_option("--batch", a->batches, "Batch sizes")->delimiter(',')->capture_default_str();
  c->add_option("--prompt", a->prompt, "Prompt tokens (prefill, timed as time to first token)")->capture_default_str();
  c->add_option("--tokens", a->tokens, "Tokens decoded after the prompt")->capture_default_str();
  c->add_option("--warmup", a->warmup, "Untimed decode steps first")->capture_default_str();
  c->add_option("--mode", a->mode,
                "eager (Model::forward, growing KV cache), static (preallocated cache, eager steps) or graph (the static "
                "step captured in one CUDA graph, replayed per token); default: graph on CUDA, eager on CPU");
  c->add_option("--decode-ops", a->decode_ops,
                "The static step's norms, RoPE, cache writes, attention and SiLU: fused (our CUDA kernels, on CUDA "
                "fp16/bf16 models; a packed model's gate/up product writes SiLU * up itself), norm-epilogue (the same, and "
                "where the batch allows a packed fp16 model's products run the residual add + RMSNorm in their "
                "epilogues; the ops column says where they ran), separate-silu (SiLU * up as its own kernel) or libtorch "
                "(libtorch's ops, as on CPU and in eager mode)")
      ->capture_default_str();
  c->add_option("--device", a->device, "cpu, cuda or cuda:N")->capture_default_str();
  c->add_option("--dtype", a->dtype, "fp32, fp16 or bf16")->capture_default_str();
  c->add_option("--seed", a->seed, "Seed of the random prompts")->capture_default_str();
  c->callback([a, &g] { run_bench_decode(*a, g); });
}

}  // namespace razerq::app
