#include "calib/gptq_sequential.hpp"

#include <torch/types.h>

#include <chrono>
#include <cstring>

#include "common/error.hpp"

namespace razerq::calib {

namespace {

// The groups of a block's linears, in GPTQ's true-sequential order (by the linears' role).
std::vector<std::vector<std::string>> sequential_groups(const std::vector<std::string>& lin) {
  auto role = [](const std::string& n) { return n.substr(n.rfind('.') + 1); };
  std::vector<std::vector<std::string>> g;
  std::vector<std::string> qkv;
  for (const auto& n : lin) {
    const std::string r = role(n);
    if (r == "q_proj" || r == "k_proj" || r == "v_proj") qkv.push_back(n);
  }
  if (!qkv.empty()) g.push_back(qkv);
  for (const char* one : {"o_proj", "out_proj"})
    for (const auto& n : lin)
      if (role(n) == one) g.push_back({n});
  std::vector<std::string> gu;
  for (const auto& n : lin)
    if (role(n) == "gate_proj" || role(n) == "up_proj") gu.push_back(n);
  if (!gu.empty()) g.push_back(gu);
  for (const char* one : {"down_proj", "fc1", "fc2"})
    for (const auto& n : lin)
      if (role(n) == one) g.push_back({n});
  size_t count = 0;
  for (const auto& x : g) count += x.size();
  if (count != lin.size()) throw_error(ErrorKind::kInternal, "gptq_sequential", "unexpected linear names in a block");
  return g;
}

}  // namespace

std::function<bool(double*, int64_t)> torch_inverse_cholesky(torch::Device device) {
  return [device](double* a, int64_t n) {
    torch::NoGradGuard no_grad;
    const torch::Tensor A = torch::from_blob(a, {n, n}, torch::kFloat64).to(device);
    auto [L, info] = torch::linalg_cholesky_ex(A);
    if (info.item<int64_t>() != 0) return false;
    auto [U, info2] = torch::linalg_cholesky_ex(torch::cholesky_inverse(L), /*upper=*/true);
    if (info2.item<int64_t>() != 0) return false;
    const torch::Tensor Uc = U.to(torch::kCPU).contiguous();
    std::memcpy(a, Uc.data_ptr<double>(), static_cast<size_t>(n * n) * sizeof(double));
    return true;
  };
}

TorchGptqDevice::TorchGptqDevice(torch::Device d) : dev_(d) {}

void TorchGptqDevice::set_hessian(torch::Tensor h) {
  if (h.defined() && (h.dim() != 2 || h.size(0) != h.size(1) || h.scalar_type() != torch::kFloat64 ||
                      h.device().type() != dev_.type() || (dev_.has_index() && h.device().index() != dev_.index())))
    throw_error(ErrorKind::kInternal, "gptq", "set_hessian: expected a square float64 tensor on the device");
  H_ = std::move(h);
}

void TorchGptqDevice::hessian_diagonal(double* d) {
  torch::NoGradGuard no_grad;
  const torch::Tensor diag = H_.diagonal().contiguous().to(torch::kCPU);
  std::memcpy(d, diag.data_ptr<double>(), static_cast<size_t>(diag.numel()) * sizeof(double));
}

bool TorchGptqDevice::factor(const int64_t* perm, const std::vector<int64_t>& dead, double damp_abs, int64_t block,
                             double* ublocks) {
  torch::NoGradGuard no_grad;
  const int64_t n = H_.size(0);
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor A = H_.clone();
  if (!dead.empty()) {
    const torch::Tensor idx = torch::from_blob(const_cast<int64_t*>(dead.data()), {static_cast<int64_t>(dead.size())}, i64).to(dev_);
    A.index_put_({idx, idx}, 1.0);
  }
  if (perm) {
    const torch::Tensor p = torch::from_blob(const_cast<int64_t*>(perm), {n}, i64).to(dev_);
    A = A.index_select(0, p).index_select(1, p);
  }
  A.diagonal().add_(damp_abs);
  auto [L, info] = torch::linalg_cholesky_ex(A);
  if (info.item<int64_t>() != 0) return false;
  A = torch::Tensor();
  auto [U, info2] = torch::linalg_cholesky_ex(torch::cholesky_inverse(L), /*upper=*/true);
  if (info2.item<int64_t>() != 0) return false;
  U_ = U.contiguous();
  const int64_t nblk = (n + block - 1) / block;
  torch::Tensor blocks = torch::zeros({nblk, block, block}, U_.options());
  for (int64_t k = 0; k < nblk; ++k) {
    const int64_t c0 = k * block, c = std::min(block, n - c0);
    blocks[k].narrow(0, 0, c).narrow(1, 0, c).copy_(U_.narrow(0, c0, c).narrow(1, c0, c));
  }
  blocks = blocks.to(torch::kCPU);
  std::memcpy(ublocks, blocks.data_ptr<double>(), static_cast<size_t>(blocks.numel()) * sizeof(double));
  return true;
}

void TorchGptqDevice::begin(const double* w, int64_t rows, int64_t cols, const double* u) {
  torch::NoGradGuard no_grad;
  W_ = torch::from_blob(const_cast<double*>(w), {rows, cols}, torch::kFloat64).to(dev_, torch::kFloat64, false, true);
  if (u)
    U_ = torch::from_blob(const_cast<double*>(u), {cols, cols}, torch::kFloat64).to(dev_, torch::kFloat64, false, true);
  else if (!U_.defined() || U_.size(0) != cols)
    throw_error(ErrorKind::kInternal, "gptq", "begin without U before factor()");
}

void TorchGptqDevice::columns(int64_t c0, int64_t c1, double* dst) {
  torch::NoGradGuard no_grad;
  const torch::Tensor c = W_.narrow(1, c0, c1 - c0).contiguous().to(torch::kCPU);
  std::memcpy(dst, c.data_ptr<double>(), static_cast<size_t>(c.numel()) * sizeof(double));
}

void TorchGptqDevice::update(int64_t i1, int64_t i2, const double* err) {
  torch::NoGradGuard no_grad;
  const int64_t rows = W_.size(0), cols = W_.size(1);
  const torch::Tensor e = torch::from_blob(const_cast<double*>(err), {rows, i2 - i1}, torch::kFloat64).to(dev_);
  W_.narrow(1, i2, cols - i2).sub_(e.mm(U_.narrow(0, i1, i2 - i1).narrow(1, i2, cols - i2)));
}

std::shared_ptr<TorchGptqDevice> torch_gptq_device(torch::Device device) {
  return std::make_shared<TorchGptqDevice>(device);
}

torch::Tensor on_device(const eval::Model& model, const torch::Tensor& h) {
  return h.to(model.device(), /*non_blocking=*/true);  // h itself when it is there
}

torch::Tensor stash(const eval::Model& model, const torch::Tensor& h, bool offload) {
  if (!offload || !h.is_cuda()) return h;
  torch::Tensor host = torch::empty(h.sizes(), h.options().device(torch::kCPU).pinned_memory(model.device().is_cuda()));
  host.copy_(h);
  return host;
}

std::vector<torch::Tensor> embed_windows(const eval::Model& model, const std::vector<std::vector<int32_t>>& windows,
                                         int64_t batch, bool offload) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> hidden;
  const size_t B = static_cast<size_t>(std::max<int64_t>(1, batch));
  for (size_t i = 0; i < windows.size(); i += B) {
    std::vector<torch::Tensor> rows;
    for (size_t j = i; j < std::min(windows.size(), i + B); ++j)
      rows.push_back(torch::tensor(std::vector<int64_t>(windows[j].begin(), windows[j].end())));
    hidden.push_back(stash(model, model.embed(torch::stack(rows)), offload));
  }
  return hidden;
}

std::map<std::string, quantizer::QuantizedTensor> gptq_sequential(eval::Model& model,
                                                                  const std::vector<std::vector<int32_t>>& windows,
                                                                  const quantizer::FormatConfig& cfg,
                                                                  const SequentialOptions& opt) {
  if (windows.empty()) throw_error(ErrorKind::kInvalidArgument, "gptq_sequential", "no calibration windows");
  const auto t0 = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> hidden = embed_windows(model, windows, opt.batch, opt.offload);

  quantizer::GptqOptions gopt = opt.gptq;
  if (!gopt.inverse_cholesky) gopt.inverse_cholesky = torch_inverse_cholesky(model.device());
  // On a GPU the Hessians stay there: damping, factorisation and the trailing updates too.
  std::shared_ptr<TorchGptqDevice> tdev;
  if (!gopt.device && model.device().is_cuda()) gopt.device = tdev = torch_gptq_device(model.device());
  std::map<std::string, quantizer::QuantizedTensor> out;
  const int64_t L = model.num_layers();
  for (int64_t li = 0; li < L; ++li) {
    for (const std::vector<std::string>& group : sequential_groups(model.layer_linears(li))) {
      // The linears of a group share their input (q/k/v, gate/up): one Hessian, from the first.
      torch::Tensor H;
      const eval::LinearHook hook = [&](const std::string& name, const torch::Tensor& x) {
        if (name != group.front()) return;
        torch::Tensor x2 = x.reshape({-1, x.size(-1)}).to(torch::kFloat64);
        if (!H.defined()) H = torch::zeros({x2.size(1), x2.size(1)}, x2.options());
        H.addmm_(x2.t(), x2);
      };
      const auto th = std::chrono::steady_clock::now();
      for (const torch::Tensor& h : hidden) model.layer(li, on_device(model, h), hook);
      if (!H.defined()) throw_error(ErrorKind::kInternal, "gptq_sequential", "no input reached %s", group.front().c_str());
      if (!torch::isfinite(H).all().item<bool>())
        throw_error(ErrorKind::kMalformedInput, "gptq_sequential",
                    "the Hessian of %s has non-finite entries (the calibration forward overflowed: try --calib-dtype fp32 or bf16)",
                    group.front().c_str());
      if (tdev)
        tdev->set_hessian(H);
      else
        H = H.cpu().contiguous();
      double hessian_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - th).count();
      for (const std::string& name : group) {
        const std::string wname = name + ".weight";
        const torch::Tensor W = model.tensor(wname).to(torch::kCPU, torch::kFloat32).contiguous();
        if (H.size(0) != W.size(1))
          throw_error(ErrorKind::kInternal, "gptq_sequential", "%s: %lld inputs, Hessian of %lld", wname.c_str(),
                      (long long)W.size(1), (long long)H.size(0));
        quantizer::GptqResult r = quantizer::gptq_quantize(W.data_ptr<float>(), W.size(0), W.size(1),
                                                           tdev ? nullptr : H.data_ptr<double>(), cfg, gopt);
        torch::Tensor deq = torch::empty({W.size(0), W.size(1)}, torch::kFloat64);
        quantizer::dequantize_ref(r.q, deq.data_ptr<double>());
        model.set_tensor(wname, deq);
        if (opt.progress) {
          SequentialProgress p;
          p.layer = li, p.layers = L, p.tensor = wname;
          p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          p.damp_used = r.damp_used, p.loss = r.loss;
          p.hessian_seconds = hessian_seconds, p.factor_seconds = r.factor_seconds, p.sweep_seconds = r.sweep_seconds;
          hessian_seconds = 0;
          opt.progress(p);
        }
        out.emplace(wname, std::move(r.q));
      }
      if (tdev) tdev->set_hessian(torch::Tensor());
    }
    // The next block's inputs: this block's outputs with its quantized weights.
    for (torch::Tensor& h : hidden) h = stash(model, model.layer(li, on_device(model, h)), opt.offload);
  }
  return out;
}

}  // namespace razerq::calib
