#include "calib/sensitivity.hpp"

#include <torch/torch.h>

#include <chrono>

#include "common/error.hpp"

namespace razerq::calib {

namespace {

torch::Tensor window_ids(const std::vector<int32_t>& w, torch::Device device) {
  if (w.size() < 2) throw_error(ErrorKind::kInvalidArgument, "sensitivity", "a calibration window of %zu tokens", w.size());
  return torch::tensor(std::vector<int64_t>(w.begin(), w.end())).unsqueeze(0).to(device);
}

// libtorch's failures (e.g. an op without a kernel for the dtype on this device) as razerq errors.
template <class F>
auto guarded(const eval::Model& model, const char* what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::Error& e) {
    std::string m = e.what_without_backtrace();
    m = m.substr(0, m.find('\n'));
    const char* hint = model.dtype() == torch::kFloat16 && model.device().is_cpu()
                           ? " (this libtorch may lack fp16 kernels on the CPU: use --calib-dtype bf16 or fp32, or --device cuda)"
                           : "";
    throw_error(ErrorKind::kInternal, model.path(), "libtorch failed computing the %s sensitivity (%s on %s): %s%s", what,
                eval::dtype_label(model.dtype()), model.device().str().c_str(), m.c_str(), hint);
  }
}

SensitivityTensor to_host(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kCPU, torch::kFloat32).contiguous();
  SensitivityTensor s;
  s.shape = c.sizes().vec();
  s.data.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return s;
}

}  // namespace

void check_fisher_dtype(torch::ScalarType dtype, const std::string& where) {
  if (dtype == torch::kFloat32 || dtype == torch::kBFloat16) return;
  if (dtype == torch::kFloat16)
    throw_error(ErrorKind::kInvalidArgument, where,
                "--sensitivity fisher needs fp32 or bf16: fp16 gradients of the LM loss underflow without loss scaling "
                "(per-weight gradients of one window's loss can be below fp16's smallest subnormal, 6e-8, and the "
                "backward's intermediate gradients flush to 0 likewise), and razerq does no loss scaling; SqueezeLLM "
                "computes its gradients in bf16. Use --calib-dtype bf16 or fp32 (act2 accepts fp16)");
  throw_error(ErrorKind::kInvalidArgument, where, "the Fisher diagonal runs the model in fp32 or bf16, not %s",
              eval::dtype_label(dtype));
}

std::map<std::string, SensitivityTensor> fisher_diagonal(const eval::Model& model,
                                                         const std::vector<std::vector<int32_t>>& windows,
                                                         const std::function<void(const SensitivityProgress&)>& progress) {
  if (windows.empty()) throw_error(ErrorKind::kInvalidArgument, "fisher_diagonal", "no calibration windows");
  check_fisher_dtype(model.dtype(), "fisher_diagonal");
  return guarded(model, "fisher", [&] {
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t L = model.num_layers();
    // One leaf per linear weight (a float32 copy: gradients in float32 whatever the model dtype).
    std::vector<std::map<std::string, torch::Tensor>> leaves(static_cast<size_t>(L));
    std::map<std::string, torch::Tensor> acc;
    for (int64_t i = 0; i < L; ++i)
      for (const std::string& lin : model.layer_linears(i)) {
        const std::string name = lin + ".weight";
        torch::Tensor w = model.tensor(name).detach().to(torch::kFloat32).clone().requires_grad_(true);
        leaves[static_cast<size_t>(i)][name] = w;
        acc[name] = torch::zeros_like(w, torch::TensorOptions().requires_grad(false));
      }
    const bool f32 = model.dtype() == torch::kFloat32;
    for (size_t wi = 0; wi < windows.size(); ++wi) {
      const torch::Tensor ids = window_ids(windows[wi], model.device());
      torch::Tensor h = model.embed(ids);
      for (int64_t i = 0; i < L; ++i) {
        std::map<std::string, torch::Tensor> ws;
        for (const auto& [n, w] : leaves[static_cast<size_t>(i)]) ws[n] = f32 ? w : w.to(model.dtype());
        h = model.layer_with(i, h, ws);
      }
      const torch::Tensor logits = model.head_with_grad(h);  // [1, T, V] float32
      const int64_t T = logits.size(1);
      const torch::Tensor loss = torch::nn::functional::cross_entropy(
          logits.slice(1, 0, T - 1).reshape({T - 1, logits.size(2)}), ids.slice(1, 1, T).reshape({T - 1}));
      for (auto& layer : leaves)
        for (auto& [n, w] : layer) w.mutable_grad() = torch::Tensor();
      loss.backward();
      {
        torch::NoGradGuard ng;
        for (auto& layer : leaves)
          for (auto& [n, w] : layer) {
            const torch::Tensor g = w.grad();
            if (!g.defined()) throw_error(ErrorKind::kInternal, "fisher_diagonal", "no gradient reached '%s'", n.c_str());
            acc[n].add_(g * g);
          }
      }
      if (progress) {
        SensitivityProgress p;
        p.window = static_cast<int64_t>(wi) + 1;
        p.windows = static_cast<int64_t>(windows.size());
        p.loss = loss.item<double>();
        p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        progress(p);
      }
    }
    std::map<std::string, SensitivityTensor> out;
    for (auto& [n, a] : acc) out[n] = to_host(a / static_cast<double>(windows.size()));
    return out;
  });
}

std::map<std::string, SensitivityTensor> activation_second_moments(
    const eval::Model& model, const std::vector<std::vector<int32_t>>& windows,
    const std::function<void(const SensitivityProgress&)>& progress) {
  if (windows.empty()) throw_error(ErrorKind::kInvalidArgument, "activation_second_moments", "no calibration windows");
  return guarded(model, "act2", [&] {
    torch::NoGradGuard no_grad;
    const auto t0 = std::chrono::steady_clock::now();
    std::map<std::string, torch::Tensor> sum;
    int64_t tokens = 0;
    for (size_t wi = 0; wi < windows.size(); ++wi) {
      const torch::Tensor ids = window_ids(windows[wi], model.device());
      tokens += ids.size(1);
      torch::Tensor h = model.embed(ids);
      const eval::LinearHook hook = [&](const std::string& name, const torch::Tensor& x) {
        const torch::Tensor x2 = x.to(torch::kFloat32).reshape({-1, x.size(-1)}).square().sum(0);
        auto it = sum.find(name + ".weight");
        if (it == sum.end())
          sum.emplace(name + ".weight", x2);
        else
          it->second.add_(x2);
      };
      for (int64_t i = 0; i < model.num_layers(); ++i) h = model.layer(i, h, hook);
      if (progress) {
        SensitivityProgress p;
        p.window = static_cast<int64_t>(wi) + 1;
        p.windows = static_cast<int64_t>(windows.size());
        p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        progress(p);
      }
    }
    std::map<std::string, SensitivityTensor> out;
    for (auto& [n, s] : sum) out[n] = to_host(s / static_cast<double>(tokens));
    return out;
  });
}

}  // namespace razerq::calib
