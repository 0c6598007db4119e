#pragma once
// Sequential, layer-by-layer GPTQ over a libtorch model (issue: calibrated stages). Built only
// with libtorch (razerq_calib then links razerq_eval).
//
// Block by block: the calibration windows are run through the blocks already quantized (their
// weights replaced by the dequantized GPTQ result), so each block is calibrated on the inputs it
// will see. Inside a block, "true sequential" as GPTQ does: [q, k, v] -> [o] -> [gate, up] ->
// [down] (OPT: [q, k, v] -> [out] -> [fc1] -> [fc2]); each group's Hessian H = sum x x^T is
// accumulated (float64) from the inputs its linears receive after the earlier groups of the
// block were quantized. Activations stay on the model's device, one block's worth.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "eval/model.hpp"
#include "quantizer/gptq.hpp"

namespace razerq::calib {

struct SequentialProgress {
  int64_t layer = 0, layers = 0;
  std::string tensor;   // the linear just quantized
  double seconds = 0;   // since the start
  double damp_used = 0;
  double loss = 0;      // GPTQ's loss of this tensor
  double hessian_seconds = 0;  // the forward that captured its inputs (shared by q/k/v, gate/up)
  double factor_seconds = 0, sweep_seconds = 0;  // gptq_quantize's parts
};

struct SequentialOptions {
  quantizer::GptqOptions gptq;
  int64_t batch = 1;  // windows per forward
  bool offload = false;  // activations in host memory between forwards (embed_windows)
  std::function<void(const SequentialProgress&)> progress;
};

// GptqOptions::inverse_cholesky through libtorch on `device` (float64: cholesky, cholesky_inverse,
// upper cholesky, as IST-DASLab/gptq's fasterquant): LAPACK on the CPU, cuSOLVER on a GPU.
// gptq_sequential uses it (on the model's device) unless the caller set one.
std::function<bool(double*, int64_t)> torch_inverse_cholesky(torch::Device device);
// GptqOptions::device through libtorch: the weights and U on `device`, the trailing updates as
// float64 matmuls there (cuBLAS on a GPU). With set_hessian() the Hessian is there too, and the
// damping, permutation and factorisation (cuSOLVER) run there: gptq_quantize is then called
// with h = nullptr and only diag(H) and U's diagonal blocks reach the host. gptq_sequential
// uses it, Hessian included, when the model is on CUDA.
class TorchGptqDevice final : public quantizer::GptqDevice {
 public:
  explicit TorchGptqDevice(torch::Device d);
  // h: [cols, cols] float64 on the device (not modified); an undefined tensor drops it.
  void set_hessian(torch::Tensor h);
  bool has_hessian() const override { return H_.defined(); }
  void hessian_diagonal(double* d) override;
  bool factor(const int64_t* perm, const std::vector<int64_t>& dead, double damp_abs, int64_t block,
              double* ublocks) override;
  void begin(const double* w, int64_t rows, int64_t cols, const double* u) override;
  void columns(int64_t c0, int64_t c1, double* dst) override;
  void update(int64_t i1, int64_t i2, const double* err) override;

 private:
  torch::Device dev_;
  torch::Tensor H_, W_, U_;
};
std::shared_ptr<TorchGptqDevice> torch_gptq_device(torch::Device device);

// The hidden states entering block 0 for the calibration windows ([n][seqlen] token ids), one
// tensor [batch, seqlen, hidden] per `batch` windows (the last may hold fewer); no autograd.
// Shared by GPTQ, AWQ and learned clipping. offload: the activations are kept in host memory
// (pinned when the model is on CUDA: `razerq quantize --calib-offload`) and each batch visits
// the device only for its forward (see on_device / stash).
std::vector<torch::Tensor> embed_windows(const eval::Model& model, const std::vector<std::vector<int32_t>>& windows,
                                         int64_t batch, bool offload = false);
// A batch of activations on the model's device (a no-op when it is there already).
torch::Tensor on_device(const eval::Model& model, const torch::Tensor& h);
// Where the stages keep a batch between forwards: as it is, or in (pinned) host memory.
torch::Tensor stash(const eval::Model& model, const torch::Tensor& h, bool offload);

// Quantizes every linear of the model's decoder blocks; returns name + ".weight" -> packed
// tensor. The model's weights are left replaced by the dequantized results (so the model then
// evaluates as the quantized checkpoint would). windows: [n][seqlen] token ids.
std::map<std::string, quantizer::QuantizedTensor> gptq_sequential(eval::Model& model,
                                                                  const std::vector<std::vector<int32_t>>& windows,
                                                                  const quantizer::FormatConfig& cfg,
                                                                  const SequentialOptions& opt = {});

}  // namespace razerq::calib
