#pragma once
// GPTQ (Frantar et al. 2022; IST-DASLab/gptq) for every registry format, torch-free (Eigen).
//
// Given W [rows, cols] and the Hessian H = sum_x x x^T [cols, cols] of the layer's inputs, the
// columns are quantized left to right (or in decreasing diag(H) order with act_order), each
// column's rounding error fed back into the not-yet-quantized columns through the upper
// Cholesky factor of H^-1, in blocks of block_size columns (lazy batch updates).
//
// Formats: a group's parameters (scale, clip, special value, zero point: the same search as
// quantize_tensor, weighted by diag(H) of its columns) are chosen when GPTQ reaches the group's
// first column, on the error-updated weights, then frozen; the error feedback uses the format's
// own rounding (GroupQuantizer). With act_order the groups stay the natural column groups
// ("static groups"): their parameters are chosen up front on the original weights.
//
// Damping: damp x mean(diag H) is added to the diagonal; when the Cholesky factorisation fails
// the damping is multiplied by 10 (up to 1e3 x mean(diag H)) and the attempt repeated.
// Columns with H_ii = 0 (inputs always zero) are "dead": H_ii := 1, their weights quantized as 0.
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "quantizer/format.hpp"
#include "quantizer/quantize.hpp"

namespace razerq::quantizer {

// Where GPTQ's trailing-column updates run (the O(rows x cols^2) part): a GPU through calib/'s
// libtorch implementation. The weights live there between blocks; the host fetches the
// columns each block reads and sends back the block's error.
class GptqDevice {
 public:
  virtual ~GptqDevice() = default;
  // The Hessian may live on the device already (calib/ accumulates it there and hands it over
  // before calling gptq_quantize with h = nullptr): then the damping and the factorisation run
  // there too, and only diag(H) and U's diagonal blocks cross to the host.
  virtual bool has_hessian() const { return false; }
  // diag(H) [cols] (with has_hessian()).
  virtual void hessian_diagonal(double* d) { (void)d; }
  // U = upper Cholesky factor of (P (H + D) P^T + damp_abs I)^-1, kept on the device, where P is
  // the column order `perm` (null: natural order) and D sets H_jj = 1 for the `dead` columns.
  // Writes U's diagonal blocks of `block` columns (block k: U[kB:kB+B, kB:kB+B], row-major,
  // zero-padded to B x B) into ublocks [ceil(cols / B), B, B]; false when not positive definite.
  virtual bool factor(const int64_t* perm, const std::vector<int64_t>& dead, double damp_abs, int64_t block,
                      double* ublocks) {
    (void)perm, (void)dead, (void)damp_abs, (void)block, (void)ublocks;
    return false;
  }
  // One tensor: W [rows, cols] and U [cols, cols] (upper), row-major float64, permuted; u is null
  // when factor() made U on the device.
  virtual void begin(const double* w, int64_t rows, int64_t cols, const double* u) = 0;
  // W[:, c0:c1] with every update so far, into dst [rows, c1 - c0] row-major.
  virtual void columns(int64_t c0, int64_t c1, double* dst) = 0;
  // W[:, i2:] -= err [rows, i2 - i1] (row-major) x U[i1:i2, i2:].
  virtual void update(int64_t i1, int64_t i2, const double* err) = 0;
};

struct GptqOptions {
  double damp = 0.01;      // fraction of mean(diag H) added to the diagonal
  int block_size = 128;    // columns per lazy batch
  bool act_order = false;  // quantize columns by decreasing diag(H) (static groups)
  bool weighted_search = true;  // diag(H) as the group search's importance
  SearchOptions search;    // the group search (rule must be kSearch)
  int threads = 0;         // <= 0: OpenMP's default
  // Optional replacement of the O(n^3) factorisation (Eigen's LLT solves run on one core:
  // minutes for an 11008-column Hessian). Given the damped, permuted Hessian A [n, n]
  // (row-major, in `a`), it writes the upper Cholesky factor U of A^-1 (A^-1 = U^T U) into `a`
  // and returns true, or returns false when A is not positive definite (the damping is then
  // raised as for the built-in path). calib/ passes a libtorch one (LAPACK / cuSOLVER).
  std::function<bool(double* a, int64_t n)> inverse_cholesky;
  std::shared_ptr<GptqDevice> device;  // null: the updates run in Eigen on the host
};

struct GptqResult {
  QuantizedTensor q;
  double damp_used = 0;    // the damping fraction that made H + damp I positive definite
  double loss = 0;         // GPTQ's loss: sum over weights of (w - q)^2 / [U]_jj^2 / 2
  int64_t dead_columns = 0;
  double factor_seconds = 0;  // damping + the Cholesky factor of H^-1
  double sweep_seconds = 0;   // the column loop
};

// w: [rows, cols] row-major float; h: [cols, cols] row-major float64, symmetric positive
// semi-definite, or null when opt.device has_hessian(). Throws kInvalidArgument on bad sizes/values, kMalformedInput when H stays
// indefinite after the damping escalation.
GptqResult gptq_quantize(const float* w, int64_t rows, int64_t cols, const double* h, const FormatConfig& cfg,
                         const GptqOptions& opt = {});

}  // namespace razerq::quantizer
