#include "calib/awq.hpp"

#include <torch/types.h>

#include <chrono>
#include <algorithm>
#include <cmath>

#include "calib/gptq_sequential.hpp"
#include "common/error.hpp"

namespace razerq::calib {

namespace {

struct ScaleGroup {
  std::string prev;                 // the norm's weight, or the previous linear's prefix
  bool prev_is_norm = true;
  std::vector<std::string> layers;  // linear prefixes
};

std::string role(const std::string& n) { return n.substr(n.rfind('.') + 1); }

// Gram matrix X^T X / N of inputs [N, cols]: float64, accumulated in chunks on X's device,
// returned on the CPU.
torch::Tensor gram(const torch::Tensor& x) {
  const int64_t n = x.size(0), cols = x.size(1);
  torch::Tensor g = torch::zeros({cols, cols}, x.options().dtype(torch::kFloat64));
  for (int64_t i = 0; i < n; i += 8192) {
    const torch::Tensor c = x.narrow(0, i, std::min<int64_t>(8192, n - i)).to(torch::kFloat64);
    g.addmm_(c.t(), c);
  }
  return (g / static_cast<double>(std::max<int64_t>(1, n))).cpu();
}

}  // namespace

torch::Tensor fake_quantize(const torch::Tensor& w, const quantizer::FormatConfig& cfg, const std::vector<float>& clip,
                            bool range_aware) {
  const torch::Tensor c = w.to(torch::kCPU, torch::kFloat32).contiguous();
  quantizer::SearchOptions so;
  so.clip_ratios = clip;
  so.range_aware = range_aware;
  const quantizer::QuantizedTensor q = quantizer::quantize_tensor(c.data_ptr<float>(), c.size(0), c.size(1), cfg, so);
  torch::Tensor out = torch::empty({c.size(0), c.size(1)}, torch::kFloat64);
  quantizer::dequantize_ref(q, out.data_ptr<double>());
  return out.to(w.device(), torch::kFloat32);
}

AwqResult awq_apply(eval::Model& model, const std::vector<std::vector<int32_t>>& windows, const quantizer::FormatConfig& cfg,
                    const AwqOptions& opt) {
  if (windows.empty()) throw_error(ErrorKind::kInvalidArgument, "awq", "no calibration windows");
  if (model.config().arch != eval::Arch::kLlama)
    throw_error(ErrorKind::kUnsupported, "awq", "%s is not supported (supported: the LLaMA family)", model.config().model_type.c_str());
  if (opt.n_grid <= 0) throw_error(ErrorKind::kInvalidArgument, "awq", "n_grid %d (expected > 0)", opt.n_grid);
  const auto t0 = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> hidden = embed_windows(model, windows, opt.batch, opt.offload);
  const std::vector<float> no_clip = {1.0f};
  AwqResult res;
  const int64_t L = model.num_layers();
  for (int64_t li = 0; li < L; ++li) {
    const std::vector<std::string> lin = model.layer_linears(li);
    std::map<std::string, std::string> by_role;
    for (const auto& n : lin) by_role[role(n)] = n;
    const std::string p = "model.layers." + std::to_string(li);

    // 1. Inputs of every linear and the full-precision block output.
    std::map<std::string, std::vector<torch::Tensor>> feats;
    const eval::LinearHook hook = [&](const std::string& name, const torch::Tensor& x) {
      const std::string r = role(name);
      if (r == "k_proj" || r == "v_proj" || r == "up_proj") return;  // the same input as q_proj / gate_proj
      feats[name].push_back(x.reshape({-1, x.size(-1)}).to(torch::kFloat32));
    };
    std::vector<torch::Tensor> fp_out;
    for (const torch::Tensor& h : hidden) fp_out.push_back(stash(model, model.layer(li, on_device(model, h), hook), opt.offload));
    std::map<std::string, torch::Tensor> X;
    for (auto& [n, v] : feats) X[n] = torch::cat(v, 0);
    feats.clear();
    X[by_role.at("k_proj")] = X[by_role.at("v_proj")] = X.at(by_role.at("q_proj"));
    X[by_role.at("up_proj")] = X.at(by_role.at("gate_proj"));

    std::vector<ScaleGroup> groups;
    groups.push_back({p + ".input_layernorm.weight", true, {by_role.at("q_proj"), by_role.at("k_proj"), by_role.at("v_proj")}});
    if (model.tensor(by_role.at("v_proj") + ".weight").sizes() == model.tensor(by_role.at("o_proj") + ".weight").sizes())
      groups.push_back({by_role.at("v_proj"), false, {by_role.at("o_proj")}});
    groups.push_back({p + ".post_attention_layernorm.weight", true, {by_role.at("gate_proj"), by_role.at("up_proj")}});
    if (!model.config().online_hadamard_down) groups.push_back({by_role.at("up_proj"), false, {by_role.at("down_proj")}});

    auto block_loss = [&]() {
      double sse = 0, n = 0;
      for (size_t b = 0; b < hidden.size(); ++b) {
        const torch::Tensor d = (model.layer(li, on_device(model, hidden[b])) - on_device(model, fp_out[b])).to(torch::kFloat64);
        sse += d.pow(2).sum().item<double>();
        n += static_cast<double>(d.numel());
      }
      return sse / n;
    };

    // 2. Scale search on the original block.
    std::vector<torch::Tensor> best_scales;
    for (const ScaleGroup& g : groups) {
      const torch::Tensor& x = X.at(g.layers[0]);
      const int64_t cols = x.size(1);
      const torch::Tensor x_mean = x.abs().mean(0).to(torch::kCPU, torch::kFloat32);
      std::vector<torch::Tensor> orig, ws;
      for (const auto& n : g.layers) orig.push_back(model.tensor(n + ".weight").clone());
      for (const auto& w : orig) ws.push_back(w.to(torch::kCPU, torch::kFloat32));
      const torch::Tensor wc = torch::cat(ws, 0).abs();
      std::vector<torch::Tensor> parts;
      for (int64_t k0 = 0; k0 < cols; k0 += cfg.group) {
        const torch::Tensor blk = wc.narrow(1, k0, std::min<int64_t>(cfg.group, cols - k0));
        parts.push_back(blk / (std::get<0>(blk.max(1, /*keepdim=*/true)) + 1e-6));
      }
      const torch::Tensor w_mean = torch::cat(parts, 1).mean(0);
      double best = INFINITY, best_r = 0, first = 0;
      torch::Tensor best_s;
      for (int r = 0; r < opt.n_grid; ++r) {
        const double ratio = static_cast<double>(r) / opt.n_grid;
        torch::Tensor s = opt.duo_scaling ? (x_mean.pow(ratio) / (w_mean.pow(1.0 - ratio) + 1e-4)).clamp_min(1e-4)
                                          : x_mean.pow(ratio).clamp_min(1e-4);
        s = s / std::sqrt((s.max() * s.min()).item<double>());
        s = torch::where(torch::isfinite(s), s, torch::ones_like(s));
        for (size_t i = 0; i < g.layers.size(); ++i) {
          const torch::Tensor q = fake_quantize(ws[i] * s.unsqueeze(0), cfg, no_clip, opt.range_aware) / s.unsqueeze(0);
          model.set_tensor(g.layers[i] + ".weight", q);
        }
        const double loss = block_loss();
        if (r == 0) first = loss;
        if (loss < best) best = loss, best_r = ratio, best_s = s;
        for (size_t i = 0; i < g.layers.size(); ++i) model.set_tensor(g.layers[i] + ".weight", orig[i]);
      }
      best_scales.push_back(best_s);
      res.scales[g.layers[0]] = std::vector<float>(best_s.data_ptr<float>(), best_s.data_ptr<float>() + best_s.numel());
      if (opt.progress) {
        AwqProgress pr;
        pr.layer = li, pr.layers = L;
        pr.group = role(g.prev_is_norm ? g.prev.substr(0, g.prev.size() - 7) : g.prev) + " -> ";
        for (size_t i = 0; i < g.layers.size(); ++i) pr.group += (i ? "," : "") + role(g.layers[i]);
        pr.ratio = best_r, pr.loss = best, pr.loss_first = first;
        pr.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        opt.progress(pr);
      }
    }
    // Fold the scales: W diag(s) for the group, 1/s into the previous op; inputs become x / s.
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      const ScaleGroup& g = groups[gi];
      const torch::Tensor s = best_scales[gi].to(model.device(), torch::kFloat32);
      for (const auto& n : g.layers) model.set_tensor(n + ".weight", model.tensor(n + ".weight").to(torch::kFloat32) * s.unsqueeze(0));
      if (g.prev_is_norm) {
        model.set_tensor(g.prev, model.tensor(g.prev).to(torch::kFloat32) / s);
      } else {
        model.set_tensor(g.prev + ".weight", model.tensor(g.prev + ".weight").to(torch::kFloat32) / s.unsqueeze(1));
        const auto names = model.tensor_names();
        if (std::find(names.begin(), names.end(), g.prev + ".bias") != names.end())
          model.set_tensor(g.prev + ".bias", model.tensor(g.prev + ".bias").to(torch::kFloat32) / s);
      }
      const torch::Tensor xs = X.at(g.layers[0]) / s.to(X.at(g.layers[0]).device()).unsqueeze(0);
      for (const auto& n : g.layers) X.at(n) = xs;
    }
    // 3. Clip search (not q/k).
    std::map<const void*, torch::Tensor> grams;  // by input (gate and up share theirs)
    if (opt.clip)
      for (const auto& n : lin) {
        const std::string r = role(n);
        if (r == "q_proj" || r == "k_proj") continue;
        const torch::Tensor W = model.tensor(n + ".weight").to(torch::kCPU, torch::kFloat32).contiguous();
        torch::Tensor& G = grams[X.at(n).data_ptr()];
        if (!G.defined()) G = gram(X.at(n)).contiguous();
        quantizer::AwqClipOptions co = opt.clip_opt;
        co.range_aware = opt.range_aware;
        quantizer::AwqClipResult cr =
            quantizer::awq_clip_search(W.data_ptr<float>(), W.size(0), W.size(1), G.data_ptr<double>(), cfg, co);
        model.set_tensor(n + ".weight", torch::from_blob(cr.clipped.data(), {W.size(0), W.size(1)}, torch::kFloat32).clone());
        res.clipped[n + ".weight"] = std::move(cr.q);
      }
    hidden = std::move(fp_out);  // the next block sees the full-precision output
  }
  return res;
}

}  // namespace razerq::calib
