// Perplexity / KL-divergence loops. The second translation unit of razerq_eval that includes
// torch (see model.cpp).
#include "eval/perplexity.hpp"

#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "common/error.hpp"

namespace razerq::eval {

namespace {

using torch::indexing::Slice;
using Clock = std::chrono::steady_clock;

constexpr const char* kWhere = "eval";

int64_t check_windows(const Windows& windows, const EvalOptions& opt) {
  if (windows.empty()) throw_error(ErrorKind::kInvalidArgument, kWhere, "no windows to evaluate");
  const int64_t T = static_cast<int64_t>(windows[0].size());
  if (T < 2) throw_error(ErrorKind::kInvalidArgument, kWhere, "windows of %lld tokens (need at least 2)", static_cast<long long>(T));
  for (size_t i = 0; i < windows.size(); ++i)
    if (static_cast<int64_t>(windows[i].size()) != T)
      throw_error(ErrorKind::kInvalidArgument, kWhere, "window %zu has %zu tokens, window 0 has %lld (all must be equal)", i,
                  windows[i].size(), static_cast<long long>(T));
  if (opt.first_scored < 0 || opt.first_scored >= T - 1)
    throw_error(ErrorKind::kInvalidArgument, kWhere, "first scored position %lld outside [0, %lld) for windows of %lld",
                static_cast<long long>(opt.first_scored), static_cast<long long>(T - 1), static_cast<long long>(T));
  if (opt.batch_size < 1)
    throw_error(ErrorKind::kInvalidArgument, kWhere, "batch size %lld (expected >= 1)", static_cast<long long>(opt.batch_size));
  return T;
}

// Windows [i0, i0 + n) as an int64 [n, T] tensor on `device`.
torch::Tensor make_batch(const Windows& windows, size_t i0, int64_t n, int64_t T, const torch::Device& device) {
  torch::Tensor ids = torch::empty({n, T}, torch::TensorOptions().dtype(torch::kLong));
  int64_t* p = ids.data_ptr<int64_t>();
  for (int64_t b = 0; b < n; ++b)
    std::copy(windows[i0 + static_cast<size_t>(b)].begin(), windows[i0 + static_cast<size_t>(b)].end(), p + b * T);
  return ids.to(device);
}

struct Accum {
  int64_t windows = 0, scored = 0;
  double nll_sum = 0, total_nll = 0;

  // nll: [B, S] per-token NLL (any float dtype, any device); T: window length.
  void add(const torch::Tensor& nll, int64_t T) {
    torch::Tensor per_window = nll.to(torch::kFloat64).sum(1).cpu().contiguous();
    const int64_t B = nll.size(0), S = nll.size(1);
    const double* w = per_window.data_ptr<double>();
    for (int64_t b = 0; b < B; ++b) {
      nll_sum += w[b] / static_cast<double>(S) * static_cast<double>(T);
      total_nll += w[b];
    }
    windows += B;
    scored += B * S;
  }
  PerplexityResult result(int64_t T, int64_t first, double seconds) const {
    PerplexityResult r;
    r.windows = windows;
    r.seqlen = T;
    r.first_scored = first;
    r.scored_tokens = scored;
    r.nll_sum = nll_sum;
    r.total_nll = total_nll;
    r.ppl = std::exp(nll_sum / (static_cast<double>(windows) * static_cast<double>(T)));
    r.exact_ppl = std::exp(total_nll / static_cast<double>(scored));
    r.seconds = seconds;
    r.tokens_per_s = seconds > 0 ? static_cast<double>(windows * T) / seconds : 0;
    return r;
  }
};

// Scored slices: logits of positions [first, T-1) and their targets (tokens first+1 .. T-1).
torch::Tensor scored_logits(const torch::Tensor& logits, int64_t first) {
  const int64_t T = logits.size(1);
  return logits.index({Slice(), Slice(first, T - 1)});
}
torch::Tensor targets(const torch::Tensor& ids, int64_t first) {
  const int64_t T = ids.size(1);
  return ids.index({Slice(), Slice(first + 1, T)}).unsqueeze(-1);
}

void report(const EvalOptions& opt, const Accum& acc, int64_t total_windows, int64_t T, Clock::time_point t0) {
  if (!opt.progress) return;
  EvalProgress p;
  p.windows_done = acc.windows;
  p.windows_total = total_windows;
  p.tokens_done = acc.windows * T;
  p.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  p.tokens_per_s = p.seconds > 0 ? static_cast<double>(p.tokens_done) / p.seconds : 0;
  p.eta_seconds = acc.windows > 0 ? p.seconds / static_cast<double>(acc.windows) * static_cast<double>(total_windows - acc.windows) : 0;
  p.running_ppl = std::exp(acc.total_nll / static_cast<double>(acc.scored));
  opt.progress(p);
}

std::string c10_message(const c10::Error& e) {
  std::string m = e.what_without_backtrace();
  const size_t nl = m.find('\n');
  return nl == std::string::npos ? m : m.substr(0, nl);
}

}  // namespace

PerplexityResult perplexity(const Model& model, const Windows& windows, const EvalOptions& opt) {
  const int64_t T = check_windows(windows, opt);
  const int64_t N = static_cast<int64_t>(windows.size());
  torch::NoGradGuard no_grad;
  const auto t0 = Clock::now();
  Accum acc;
  try {
    for (int64_t i = 0; i < N; i += opt.batch_size) {
      const int64_t n = std::min(opt.batch_size, N - i);
      torch::Tensor ids = make_batch(windows, static_cast<size_t>(i), n, T, model.device());
      torch::Tensor lg = scored_logits(model.forward(ids), opt.first_scored);  // [n, S, V] float32
      torch::Tensor nll = torch::logsumexp(lg, -1) - lg.gather(-1, targets(ids, opt.first_scored)).squeeze(-1);
      acc.add(nll, T);
      report(opt, acc, N, T, t0);
    }
  } catch (const c10::Error& e) {
    throw_error(ErrorKind::kInternal, model.path(), "libtorch failed in perplexity: %s", c10_message(e).c_str());
  }
  return acc.result(T, opt.first_scored, std::chrono::duration<double>(Clock::now() - t0).count());
}

KlResult kl_divergence(const Model& base, const Model& model, const Windows& windows, const EvalOptions& opt) {
  const int64_t T = check_windows(windows, opt);
  const int64_t N = static_cast<int64_t>(windows.size());
  if (base.config().vocab_size != model.config().vocab_size)
    throw_error(ErrorKind::kInvalidArgument, kWhere, "vocabularies differ: base %lld, model %lld",
                static_cast<long long>(base.config().vocab_size), static_cast<long long>(model.config().vocab_size));
  torch::NoGradGuard no_grad;
  const auto t0 = Clock::now();
  Accum acc_base, acc_model;
  double kl_sum = 0, kl_max = 0;
  int64_t agree = 0;
  try {
    for (int64_t i = 0; i < N; i += opt.batch_size) {
      const int64_t n = std::min(opt.batch_size, N - i);
      torch::Tensor ids_b = make_batch(windows, static_cast<size_t>(i), n, T, base.device());
      torch::Tensor lp_b = torch::log_softmax(scored_logits(base.forward(ids_b), opt.first_scored), -1);
      torch::Tensor ids_m = ids_b.to(model.device());
      torch::Tensor lp_m = torch::log_softmax(scored_logits(model.forward(ids_m), opt.first_scored), -1).to(lp_b.device());
      torch::Tensor tgt = targets(ids_b, opt.first_scored);
      acc_base.add(-lp_b.gather(-1, tgt).squeeze(-1), T);
      acc_model.add(-lp_m.gather(-1, tgt).squeeze(-1), T);
      torch::Tensor kl = (lp_b.exp() * (lp_b - lp_m)).sum(-1).to(torch::kFloat64);  // [n, S]
      kl_sum += kl.sum().item<double>();
      kl_max = std::max(kl_max, kl.max().item<double>());
      agree += (lp_b.argmax(-1) == lp_m.argmax(-1)).sum().item<int64_t>();
      report(opt, acc_model, N, T, t0);
    }
  } catch (const c10::Error& e) {
    throw_error(ErrorKind::kInternal, model.path(), "libtorch failed in kl_divergence: %s", c10_message(e).c_str());
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  KlResult r;
  r.windows = acc_model.windows;
  r.scored_tokens = acc_model.scored;
  r.mean_kl = kl_sum / static_cast<double>(r.scored_tokens);
  r.max_kl = kl_max;
  r.top1_agreement = static_cast<double>(agree) / static_cast<double>(r.scored_tokens);
  r.base = acc_base.result(T, opt.first_scored, secs);
  r.model = acc_model.result(T, opt.first_scored, secs);
  r.seconds = secs;
  return r;
}

Windows split_windows(const std::vector<int32_t>& ids, int64_t seqlen, int64_t max_windows) {
  if (seqlen < 2) throw_error(ErrorKind::kInvalidArgument, kWhere, "seqlen %lld (expected >= 2)", static_cast<long long>(seqlen));
  int64_t n = static_cast<int64_t>(ids.size()) / seqlen;
  if (max_windows >= 0) n = std::min(n, max_windows);
  Windows w(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) w[static_cast<size_t>(i)].assign(ids.begin() + i * seqlen, ids.begin() + (i + 1) * seqlen);
  return w;
}

std::string format_result(const PerplexityResult& r) {
  return strprintf("ppl %.6f (exact %.6f), %lld windows x %lld%s, %lld scored tokens, %.1f s, %.0f tok/s", r.ppl, r.exact_ppl,
                   static_cast<long long>(r.windows), static_cast<long long>(r.seqlen),
                   r.first_scored > 0 ? strprintf(" from position %lld", static_cast<long long>(r.first_scored)).c_str() : "",
                   static_cast<long long>(r.scored_tokens), r.seconds, r.tokens_per_s);
}

std::string format_result(const KlResult& r) {
  return strprintf("mean KL %.6g (max %.4g), top-1 agreement %.4f, ppl %.6f vs base %.6f (%+.3f %%), %lld windows, %lld tokens, %.1f s",
                   r.mean_kl, r.max_kl, r.top1_agreement, r.model.ppl, r.base.ppl, 100.0 * (r.model.ppl / r.base.ppl - 1.0),
                   static_cast<long long>(r.windows), static_cast<long long>(r.scored_tokens), r.seconds);
}

}  // namespace razerq::eval
