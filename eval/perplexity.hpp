#pragma once
// Perplexity and KL-divergence over token windows.
//
// GPTQ convention (IST-DASLab/gptq llama_eval): each window of seqlen tokens is one forward;
// its loss is the mean cross-entropy over the seqlen-1 shifted positions; nll_sum +=
// loss * seqlen; ppl = exp(nll_sum / (nsamples * seqlen)). The "exact" perplexity is
// exp(total NLL / total predicted tokens); with equal windows both are the same number up to
// rounding. llama.cpp convention: the logits of positions [first_scored, seqlen-1) are
// scored (first_scored = n_ctx / 2 there), i.e. the tokens first_scored+1 .. seqlen-1;
// first_scored = 0 is GPTQ's. The GPTQ formula then uses the per-window mean over the scored
// positions.
//
// Per-token NLL is computed in float32 from the float32 logits (log-sum-exp minus the target
// logit), summed per window in float64. Nothing stores more than one batch of logits.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eval/model.hpp"

namespace razerq::eval {

using Windows = std::vector<std::vector<int32_t>>;

struct EvalProgress {
  int64_t windows_done = 0, windows_total = 0;
  int64_t tokens_done = 0;     // tokens forwarded (per model)
  double seconds = 0;          // since the start
  double tokens_per_s = 0;     // forwarded tokens per second so far
  double eta_seconds = 0;      // remaining, extrapolated
  double running_ppl = 0;      // exact perplexity over the windows done (the model's)
};

struct EvalOptions {
  int64_t batch_size = 1;    // windows per forward
  int64_t first_scored = 0;  // first logit position scored in each window (llama.cpp: n_ctx / 2)
  // Called after every batch.
  std::function<void(const EvalProgress&)> progress;
};

struct PerplexityResult {
  int64_t windows = 0;
  int64_t seqlen = 0;
  int64_t first_scored = 0;
  int64_t scored_tokens = 0;  // windows * (seqlen - 1 - first_scored)
  double nll_sum = 0;         // GPTQ: sum over windows of mean loss * seqlen
  double total_nll = 0;       // sum of every scored token's NLL
  double ppl = 0;             // GPTQ: exp(nll_sum / (windows * seqlen))
  double exact_ppl = 0;       // exp(total_nll / scored_tokens)
  double seconds = 0;
  double tokens_per_s = 0;    // forwarded tokens (windows * seqlen) per second
};

struct KlResult {
  int64_t windows = 0;
  int64_t scored_tokens = 0;
  double mean_kl = 0;         // mean over scored tokens of KL(P_base || P_model), nats
  double max_kl = 0;          // largest per-token KL
  double top1_agreement = 0;  // fraction of scored tokens where both argmaxes agree
  PerplexityResult base;      // perplexities of the two models on the same windows
  PerplexityResult model;
  double seconds = 0;
};

// Perplexity of `model` on `windows` (all of the same length >= 2; ids in [0, vocab)).
// Throws kInvalidArgument on empty/ragged windows or a bad first_scored / batch_size.
PerplexityResult perplexity(const Model& model, const Windows& windows, const EvalOptions& opt = {});

// KL(base || model) per scored token, top-1 agreement and both perplexities, computed window
// batch by window batch (only one batch of logits of each model is alive). The models must
// share the vocabulary size.
KlResult kl_divergence(const Model& base, const Model& model, const Windows& windows, const EvalOptions& opt = {});

// GPTQ windows: the first n = ids.size() / seqlen non-overlapping windows (at most
// max_windows when >= 0).
Windows split_windows(const std::vector<int32_t>& ids, int64_t seqlen, int64_t max_windows = -1);

// "wikitext2 ppl 10.1502 (exact 10.1502) 397 x 2048, 812,412 scored tokens, 512.3 s, 1592 tok/s"
std::string format_result(const PerplexityResult& r);
std::string format_result(const KlResult& r);

}  // namespace razerq::eval
