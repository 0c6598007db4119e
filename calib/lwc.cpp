#include "calib/lwc.hpp"

#include <torch/torch.h>

#include <chrono>

#include "calib/gptq_sequential.hpp"
#include "common/error.hpp"
#include "quantizer/awq_clip.hpp"

namespace razerq::calib {

namespace {

// One linear's learnable factors and what its fake quantization needs.
struct Factors {
  std::string name;       // ".weight" included
  torch::Tensor w;        // [rows, cols] float32, CPU (the values quantized)
  torch::Tensor gamma;    // [rows, ng] float32, requires grad
  torch::Tensor beta;     // [rows, ng] asym int only
  torch::Tensor col2grp;  // [cols] long: the group of each column
  torch::Tensor amax, mn, mx;  // [rows, ng] max|w|, min w, max w per group
};

torch::Tensor group_reduce(const torch::Tensor& w, int64_t G, int which) {  // 0 max|w|, 1 min, 2 max
  std::vector<torch::Tensor> parts;
  for (int64_t k0 = 0; k0 < w.size(1); k0 += G) {
    const torch::Tensor b = w.narrow(1, k0, std::min<int64_t>(G, w.size(1) - k0));
    parts.push_back(which == 0 ? std::get<0>(b.abs().max(1, true)) : which == 1 ? std::get<0>(b.min(1, true)) : std::get<0>(b.max(1, true)));
  }
  return torch::cat(parts, 1);
}

// The format's quantization at the current factors (no grad), and the straight-through
// fake-quantized weight (grad to gamma/beta). Also returns the packed tensor when asked.
torch::Tensor fake_quant(const Factors& f, const quantizer::FormatConfig& cfg, bool range_aware,
                         quantizer::QuantizedTensor* packed) {
  const int64_t rows = f.w.size(0), cols = f.w.size(1);
  const torch::Tensor hr = torch::sigmoid(f.gamma.detach()).contiguous();
  const torch::Tensor lr = cfg.asym ? torch::sigmoid(f.beta.detach()).contiguous() : torch::Tensor();
  quantizer::ClippedQuantization cq = quantizer::quantize_clipped(f.w.data_ptr<float>(), rows, cols, cfg, hr.data_ptr<float>(),
                                                                  cfg.asym ? lr.data_ptr<float>() : nullptr, range_aware);
  const int64_t ng = hr.size(1);
  const torch::Tensor values = torch::from_blob(cq.values.data(), {rows, cols}, torch::kFloat32).clone();
  const torch::Tensor sfmt = torch::from_blob(cq.scale.data(), {rows, ng}, torch::kFloat64).to(torch::kFloat32);
  if (packed) *packed = std::move(cq.q);
  // Differentiable bounds.
  const torch::Tensor hi = cfg.asym ? torch::sigmoid(f.gamma) * f.mx : torch::sigmoid(f.gamma) * f.amax;
  const torch::Tensor lo = cfg.asym ? torch::min(torch::sigmoid(f.beta) * f.mn, hi) : -hi;
  const torch::Tensor span = (hi - lo).clamp_min(1e-12);
  const torch::Tensor s = span * (sfmt / span).detach();  // value: the format's scale
  const torch::Tensor hi_e = hi.index_select(1, f.col2grp), lo_e = lo.index_select(1, f.col2grp);
  const torch::Tensor s_e = s.index_select(1, f.col2grp);
  const torch::Tensor wc = torch::max(torch::min(f.w, hi_e), lo_e);
  const torch::Tensor safe = torch::where(s_e > 0, s_e, torch::ones_like(s_e));
  const torch::Tensor c = (values / safe.detach());
  // q = wc + s * stopgrad(c - wc / s): equals values; an all-zero group (s = 0) gives wc = 0.
  return wc + s_e * (c - wc / safe).detach() * (s_e > 0).to(torch::kFloat32);
}

}  // namespace

std::map<std::string, quantizer::QuantizedTensor> lwc_apply(eval::Model& model, const std::vector<std::vector<int32_t>>& windows,
                                                            const quantizer::FormatConfig& cfg, const LwcOptions& opt) {
  if (windows.empty()) throw_error(ErrorKind::kInvalidArgument, "lwc", "no calibration windows");
  if (opt.epochs < 0 || !(opt.lr > 0)) throw_error(ErrorKind::kInvalidArgument, "lwc", "epochs %d, lr %g (expected >= 0, > 0)", opt.epochs, opt.lr);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<torch::Tensor> h_fp, h_q;
  {
    torch::NoGradGuard ng;
    h_fp = embed_windows(model, windows, opt.batch, opt.offload);
    h_q = h_fp;
  }
  std::map<std::string, quantizer::QuantizedTensor> out;
  const int64_t L = model.num_layers();
  for (int64_t li = 0; li < L; ++li) {
    std::vector<torch::Tensor> target;
    for (const torch::Tensor& h : h_fp) target.push_back(stash(model, model.layer(li, on_device(model, h)), opt.offload));
    std::vector<Factors> fs;
    std::vector<torch::Tensor> params;
    for (const std::string& n : model.layer_linears(li)) {
      Factors f;
      f.name = n + ".weight";
      f.w = model.tensor(f.name).to(torch::kCPU, torch::kFloat32).contiguous();
      const int64_t cols = f.w.size(1), ng = (cols + cfg.group - 1) / cfg.group;
      f.col2grp = torch::arange(cols, torch::kLong).div(cfg.group, "floor");
      f.amax = group_reduce(f.w, cfg.group, 0);
      f.mn = group_reduce(f.w, cfg.group, 1);
      f.mx = group_reduce(f.w, cfg.group, 2);
      torch::Tensor init = torch::full({f.w.size(0), ng}, opt.init, torch::kFloat32);
      if (opt.init_from_search) {
        quantizer::AwqClipOptions co;
        co.range_aware = opt.range_aware;
        const quantizer::AwqClipResult cr = quantizer::awq_clip_search(f.w.data_ptr<float>(), f.w.size(0), cols, nullptr, cfg, co);
        // logit of the ratio, kept off sigmoid's flat ends (1 -> 0.995)
        init = torch::logit(torch::from_blob(const_cast<float*>(cr.ratio.data()), {f.w.size(0), ng}, torch::kFloat32).clamp(0.01, 0.995));
      }
      f.gamma = init.clone().requires_grad_(true);
      params.push_back(f.gamma);
      if (cfg.asym) {
        f.beta = init.clone().requires_grad_(true);
        params.push_back(f.beta);
      }
      fs.push_back(std::move(f));
    }
    torch::optim::AdamW adam(params, torch::optim::AdamWOptions(opt.lr).weight_decay(0.0));
    for (int ep = 0; ep < opt.epochs; ++ep) {
      double sum = 0;
      for (size_t b = 0; b < h_q.size(); ++b) {
        std::map<std::string, torch::Tensor> wq;
        for (const Factors& f : fs) wq[f.name] = fake_quant(f, cfg, opt.range_aware, nullptr);
        const torch::Tensor y = model.layer_with(li, on_device(model, h_q[b]), wq);
        const torch::Tensor loss = (y.to(torch::kFloat32) - on_device(model, target[b]).to(torch::kFloat32)).pow(2).mean();
        adam.zero_grad();
        loss.backward();
        adam.step();
        sum += loss.item<double>();
      }
      if (opt.progress) {
        LwcProgress p;
        p.layer = li, p.layers = L, p.epoch = ep + 1, p.epochs = opt.epochs;
        p.loss = sum / static_cast<double>(h_q.size());
        p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        opt.progress(p);
      }
    }
    torch::NoGradGuard ng;
    for (const Factors& f : fs) {
      quantizer::QuantizedTensor q;
      fake_quant(f, cfg, opt.range_aware, &q);
      torch::Tensor deq = torch::empty({q.rows, q.cols}, torch::kFloat64);
      quantizer::dequantize_ref(q, deq.data_ptr<double>());
      model.set_tensor(f.name, deq);
      out.emplace(f.name, std::move(q));
    }
    for (torch::Tensor& h : h_q) h = stash(model, model.layer(li, on_device(model, h)), opt.offload);
    h_fp = std::move(target);
  }
  return out;
}

}  // namespace razerq::calib
