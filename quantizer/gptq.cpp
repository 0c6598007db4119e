#include "quantizer/gptq.hpp"

#include <omp.h>

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <vector>

#include "common/error.hpp"
#include "common/half.hpp"
#include "quantizer/pack.hpp"

namespace razerq::quantizer {

namespace {
using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
}  // namespace

namespace {

// Second-level quantization of one group column's values v[r] (a scale or a zero point per row),
// runs of qg rows, `bits`-bit codes (SPEC 3.2). Asymmetric: min-max over the run, value = min +
// code * step; symmetric (zero points): around `center`, value = center + (code - 2^(bits-1)) * step.
// step and min are fp16; the decoded values are exact in float64.
void qq_quantize_column(std::vector<double>& v, int64_t rows, int qg, int bits, bool sym, double center,
                        std::vector<uint8_t>& codes, std::vector<uint16_t>& params_out /* [runs][2] */) {
  const int maxq = (1 << bits) - 1;
  const int64_t runs = (rows + qg - 1) / qg;
  codes.assign(static_cast<size_t>(rows), 0);
  params_out.assign(static_cast<size_t>(runs * 2), 0);
  for (int64_t run = 0; run < runs; ++run) {
    const int64_t r0 = run * qg, r1 = std::min(rows, r0 + qg);
    uint16_t step16, min16 = 0;
    if (sym) {
      double m = 0;
      for (int64_t r = r0; r < r1; ++r) m = std::max(m, std::fabs(v[static_cast<size_t>(r)] - center));
      step16 = double_to_fp16(2 * m / maxq);
    } else {
      double lo = v[static_cast<size_t>(r0)], hi = lo;
      for (int64_t r = r0; r < r1; ++r) lo = std::min(lo, v[static_cast<size_t>(r)]), hi = std::max(hi, v[static_cast<size_t>(r)]);
      min16 = double_to_fp16(lo);
      step16 = double_to_fp16((hi - fp16_to_double(min16)) / maxq);
    }
    const double step = fp16_to_double(step16), mn = fp16_to_double(min16);
    const double half = std::ldexp(1.0, bits - 1);
    for (int64_t r = r0; r < r1; ++r) {
      double& x = v[static_cast<size_t>(r)];
      const double pos = step > 0 ? (sym ? (x - center) / step + half : (x - mn) / step) : (sym ? half : 0.0);
      int c = static_cast<int>(std::min<double>(std::max<double>(std::nearbyint(pos), 0), maxq));
      auto value = [&](int cc) { return sym ? center + (cc - half) * step : mn + cc * step; };
      // A positive scale must not decode to 0 or below (it would zero the group).
      if (!sym && x > 0) while (value(c) <= 0 && c < maxq) ++c;
      codes[static_cast<size_t>(r)] = static_cast<uint8_t>(c);
      x = value(c);
    }
    params_out[static_cast<size_t>(run * 2)] = step16;
    params_out[static_cast<size_t>(run * 2 + 1)] = min16;
  }
}

}  // namespace

GptqResult gptq_quantize(const float* w, int64_t rows, int64_t cols, const double* h, const FormatConfig& cfg_in,
                         const GptqOptions& opt) {
  const char* where = "gptq";
  validate_int_options(cfg_in);
  FormatConfig cfg = cfg_in;
  if (cfg.opts.per_out_dim) cfg.group = static_cast<int>(cols);  // one scale per output row
  const IntOptions& io = cfg.opts;
  if (io.outlier_block && opt.act_order)
    throw_error(ErrorKind::kInvalidArgument, "--outliers", "cannot be combined with --act-order (the outlier blocks are runs of natural columns)");
  if (rows <= 0 || cols <= 0) throw_error(ErrorKind::kInvalidArgument, where, "empty matrix [%lld, %lld]", (long long)rows, (long long)cols);
  if (opt.block_size <= 0) throw_error(ErrorKind::kInvalidArgument, where, "block size %d (expected > 0)", opt.block_size);
  if (!(opt.damp >= 0)) throw_error(ErrorKind::kInvalidArgument, where, "damp %g (expected >= 0)", opt.damp);
  const int nthreads = opt.threads > 0 ? opt.threads : omp_get_max_threads();
  const int64_t G = cfg.group, ngroups = (cols + G - 1) / G;

  MatD W(rows, cols);
  for (int64_t i = 0; i < rows * cols; ++i) {
    if (!std::isfinite(w[i])) throw_error(ErrorKind::kMalformedInput, where, "weight %lld is not finite", (long long)i);
    W.data()[i] = w[i];
  }
  GptqDevice* dev = opt.device.get();
  const bool dev_h = dev && dev->has_hessian();  // H lives on the device: no host copy of it
  if (!h && !dev_h) throw_error(ErrorKind::kInvalidArgument, where, "no Hessian given");
  MatD H;
  std::vector<double> hdiag(static_cast<size_t>(cols));
  if (dev_h) {
    dev->hessian_diagonal(hdiag.data());  // the caller checked the whole H (calib/ does, on the device)
    for (int64_t j = 0; j < cols; ++j)
      if (!std::isfinite(hdiag[static_cast<size_t>(j)]))
        throw_error(ErrorKind::kInvalidArgument, where, "Hessian entry %lld is not finite", (long long)(j * cols + j));
  } else {
    H = Eigen::Map<const MatD>(h, cols, cols);
    for (int64_t i = 0; i < cols * cols; ++i)
      if (!std::isfinite(h[i])) throw_error(ErrorKind::kInvalidArgument, where, "Hessian entry %lld is not finite", (long long)i);
    for (int64_t j = 0; j < cols; ++j) hdiag[static_cast<size_t>(j)] = H(j, j);
  }

  GptqResult res;
  // Dead columns: no input ever reaches them.
  std::vector<int64_t> dead;
  for (int64_t j = 0; j < cols; ++j)
    if (hdiag[static_cast<size_t>(j)] == 0.0) {
      hdiag[static_cast<size_t>(j)] = 1.0;
      if (!dev_h) H(j, j) = 1.0;
      W.col(j).setZero();
      dead.push_back(j);
    }
  res.dead_columns = static_cast<int64_t>(dead.size());
  const std::vector<float> wf(W.data(), W.data() + rows * cols);  // original (dead columns zeroed)
  GroupQuantizer gq(cfg, opt.search, wf.data(), rows * cols);
  std::vector<float> diag(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) diag[static_cast<size_t>(j)] = static_cast<float>(hdiag[static_cast<size_t>(j)]);

  // Column order.
  std::vector<int64_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), 0);
  if (opt.act_order)
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return hdiag[static_cast<size_t>(a)] > hdiag[static_cast<size_t>(b)]; });

  std::vector<GroupQuantizer::Params> params(static_cast<size_t>(rows * ngroups));
  // Outliers (OA-CIM): per (row, block) the in-block column kept in BF16, -1 for none.
  const int64_t OB = io.outlier_block, nblocks = OB ? (cols + OB - 1) / OB : 0;
  std::vector<int16_t> outlier(static_cast<size_t>(rows * nblocks), -1);
  std::vector<uint16_t> outlier_bf16(static_cast<size_t>(rows * nblocks), 0);
  // Second-level codes of the scales / zero points [rows, ngroups] and their fp16 (step, min) [runs, ngroups, 2].
  const int64_t runs = (rows + io.qq_group - 1) / io.qq_group;
  std::vector<uint8_t> qs_codes(io.qq_scale_bits ? static_cast<size_t>(rows * ngroups) : 0),
      qz_codes(io.qq_zero_bits ? static_cast<size_t>(rows * ngroups) : 0);
  std::vector<uint16_t> qs_params(io.qq_scale_bits ? static_cast<size_t>(runs * ngroups * 2) : 0),
      qz_params(io.qq_zero_bits ? static_cast<size_t>(runs * ngroups * 2) : 0);
  std::vector<double> zero_exact(io.qq_zero_bits ? static_cast<size_t>(rows * ngroups) : 0);
  auto is_outlier = [&](int64_t r, int64_t k) {
    return OB && outlier[static_cast<size_t>(r * nblocks + k / OB)] == static_cast<int16_t>(k % OB);
  };
  auto choose_group = [&](int64_t g, const MatD& src) {
    // Parameters of group g for every row, on src's columns of that group (natural order); the
    // outliers already chosen count as 0 (they are not coded).
    const int64_t k0 = g * G;
    const int n = static_cast<int>(std::min(G, cols - k0));
#pragma omp parallel num_threads(nthreads)
    {
      std::vector<float> x(static_cast<size_t>(n));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        for (int i = 0; i < n; ++i) x[static_cast<size_t>(i)] = is_outlier(r, k0 + i) ? 0.f : static_cast<float>(src(r, k0 + i));
        params[static_cast<size_t>(r * ngroups + g)] =
            gq.choose(x.data(), opt.weighted_search ? diag.data() + k0 : nullptr, n);
      }
    }
    // Second level: the group column's scales (and zero points) of runs of qq_group rows.
    std::vector<uint8_t> c;
    std::vector<uint16_t> pr;
    if (io.qq_scale_bits) {
      std::vector<double> v(static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) v[static_cast<size_t>(r)] = params[static_cast<size_t>(r * ngroups + g)].scale;
      qq_quantize_column(v, rows, io.qq_group, io.qq_scale_bits, false, 0.0, c, pr);
      for (int64_t r = 0; r < rows; ++r) {
        GroupQuantizer::Params& p = params[static_cast<size_t>(r * ngroups + g)];
        p.scale = v[static_cast<size_t>(r)];
        p.s = static_cast<float>(p.scale);
        qs_codes[static_cast<size_t>(r * ngroups + g)] = c[static_cast<size_t>(r)];
      }
      for (int64_t run = 0; run < runs; ++run)
        for (int k = 0; k < 2; ++k) qs_params[static_cast<size_t>((run * ngroups + g) * 2 + k)] = pr[static_cast<size_t>(run * 2 + k)];
    }
    if (io.qq_zero_bits) {
      std::vector<double> v(static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) v[static_cast<size_t>(r)] = params[static_cast<size_t>(r * ngroups + g)].z;
      qq_quantize_column(v, rows, io.qq_group, io.qq_zero_bits, io.qq_zero_sym, std::ldexp(1.0, cfg.bits - 1), c, pr);
      for (int64_t r = 0; r < rows; ++r) {
        params[static_cast<size_t>(r * ngroups + g)].z = static_cast<float>(v[static_cast<size_t>(r)]);
        zero_exact[static_cast<size_t>(r * ngroups + g)] = v[static_cast<size_t>(r)];
        qz_codes[static_cast<size_t>(r * ngroups + g)] = c[static_cast<size_t>(r)];
      }
      for (int64_t run = 0; run < runs; ++run)
        for (int k = 0; k < 2; ++k) qz_params[static_cast<size_t>((run * ngroups + g) * 2 + k)] = pr[static_cast<size_t>(run * 2 + k)];
    }
  };
  if (opt.act_order)
    for (int64_t g = 0; g < ngroups; ++g) choose_group(g, W);  // static groups, original weights

  // Permute, damp, factor: U = upper Cholesky factor of H^-1. The sweep reads only U's diagonal
  // blocks of B columns (ub); the trailing updates read the rest of U, on the host or the device.
  const int64_t B = opt.block_size, nblk = (cols + B - 1) / B;
  MatD Hp, Wp;
  if (opt.act_order) {
    Wp.resize(rows, cols);
    for (int64_t a = 0; a < cols; ++a) Wp.col(a) = W.col(perm[static_cast<size_t>(a)]);
    if (!dev_h) {
      Hp.resize(cols, cols);
      for (int64_t a = 0; a < cols; ++a)
        for (int64_t b = 0; b < cols; ++b) Hp(a, b) = H(perm[static_cast<size_t>(a)], perm[static_cast<size_t>(b)]);
    }
  } else {  // the identity: no copies (W and H are not read again)
    Hp.swap(H);
    Wp.swap(W);
  }
  const auto t_factor = std::chrono::steady_clock::now();
  const double mean_diag =
      dev_h ? std::accumulate(hdiag.begin(), hdiag.end(), 0.0) / static_cast<double>(cols) : Hp.diagonal().mean();
  MatD U;
  std::vector<double> ub(static_cast<size_t>(nblk * B * B), 0.0);
  auto try_factor = [&](double d) -> bool {
    if (dev_h) return dev->factor(opt.act_order ? perm.data() : nullptr, dead, d * mean_diag, B, ub.data());
    MatD Hd = Hp;
    Hd.diagonal().array() += d * mean_diag;
    if (opt.inverse_cholesky) {
      if (!opt.inverse_cholesky(Hd.data(), cols)) return false;
      Hd.triangularView<Eigen::StrictlyLower>().setZero();
      U.swap(Hd);
      return true;
    }
    Eigen::LLT<MatD> llt(Hd);
    if (llt.info() != Eigen::Success) return false;
    MatD Hinv = llt.solve(MatD::Identity(cols, cols));
    Hinv = 0.5 * (Hinv + Hinv.transpose());
    Eigen::LLT<MatD> llt2(Hinv);
    if (llt2.info() != Eigen::Success) return false;
    U = llt2.matrixU();
    return true;
  };
  double damp = opt.damp;
  while (!try_factor(damp)) {
    if (damp >= 1e3) throw_error(ErrorKind::kMalformedInput, where, "the Hessian stays indefinite with damping %g x mean(diag H)", damp);
    damp = damp > 0 ? damp * 10 : 1e-4;
  }
  res.damp_used = damp;
  if (!dev_h)
    for (int64_t k = 0; k < nblk; ++k)
      for (int64_t a = k * B; a < std::min(cols, k * B + B); ++a)
        for (int64_t b = k * B; b < std::min(cols, k * B + B); ++b) ub[static_cast<size_t>(a * B + (b - k * B))] = U(a, b);
  // Ud(k) = U(k, k); U(j, k) for j, k in the block starting at i1 is Urow(j, i1)[k].
  auto Urow = [&](int64_t j, int64_t i1) { return ub.data() + j * B - i1; };
  std::vector<double> udiag(static_cast<size_t>(cols));
  for (int64_t k = 0; k < cols; ++k) udiag[static_cast<size_t>(k)] = ub[static_cast<size_t>(k * B + k % B)];
  auto Ud = [&](int64_t k) { return udiag[static_cast<size_t>(k)]; };
  const auto t_sweep = std::chrono::steady_clock::now();
  res.factor_seconds = std::chrono::duration<double>(t_sweep - t_factor).count();

  // Outliers of the blocks beginning in [k0, k1) (natural order = permuted order here): per row
  // the column with the largest w^2 / U_kk^2 on the current (error-updated) weights, where
  // U_kk^2 = [H_F^-1]_kk of the columns F not yet quantized (the OBS saliency GPTQ's loss uses).
  auto choose_outliers = [&](int64_t k0, int64_t k1) {
    for (int64_t blk = (k0 + OB - 1) / OB; blk * OB < k1; ++blk) {
      const int64_t c0 = blk * OB, c1 = std::min(cols, c0 + OB);
#pragma omp parallel for num_threads(nthreads) schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        double best = 0;
        int16_t at = -1;
        for (int64_t k = c0; k < c1; ++k) {
          const double crit = Wp(r, k) * Wp(r, k) / (Ud(k) * Ud(k));
          if (crit > best) best = crit, at = static_cast<int16_t>(k - c0);
        }
        outlier[static_cast<size_t>(r * nblocks + blk)] = at;
      }
    }
  };

  // The column loop (permuted order), in blocks of B columns. Inside a block the rows are
  // independent (each row's error only feeds its own later columns), so one parallel loop over
  // rows runs the block's columns in order; the trailing columns get the block's error in one
  // product (GPTQ's lazy batch update), on opt.device when there is one.
  std::vector<uint8_t> codes(static_cast<size_t>(rows * cols));
  double loss = 0;
  if (dev) dev->begin(Wp.data(), rows, cols, dev_h ? nullptr : U.data());
  std::vector<double> fetched;
  for (int64_t i1 = 0; i1 < cols; i1 += B) {
    const int64_t i2 = std::min(i1 + B, cols), count = i2 - i1;
    if (dev) {
      // The columns the block reads, as they stand after the earlier blocks: its own and, without
      // act-order, every column of a group (and of an outlier block) that starts in it.
      int64_t need = i2;
      if (!opt.act_order)
        for (int64_t j = i1; j < i2; ++j)
          if (j % G == 0) {
            need = std::max(need, std::min(cols, j + G));
            if (OB) need = std::max(need, std::min(cols, (j + G + OB - 1) / OB * OB));
          }
      fetched.resize(static_cast<size_t>(rows * (need - i1)));
      dev->columns(i1, need, fetched.data());
      Wp.block(0, i1, rows, need - i1) = Eigen::Map<const MatD>(fetched.data(), rows, need - i1);
    }
    MatD Err(rows, count);
    // Segments of the block between group starts: a group's outliers and parameters are chosen
    // (over all rows: the second-level scales span rows) when GPTQ reaches its first column.
    for (int64_t s0 = i1; s0 < i2;) {
      int64_t s1 = s0 + 1;
      if (!opt.act_order) {
        const int64_t nat0 = perm[static_cast<size_t>(s0)];
        if (nat0 % G == 0) {
          if (OB) choose_outliers(nat0, std::min(cols, nat0 + G));
          choose_group(nat0 / G, Wp);
        }
        while (s1 < i2 && perm[static_cast<size_t>(s1)] % G != 0) ++s1;
      } else {
        s1 = i2;
      }
#pragma omp parallel for num_threads(nthreads) schedule(static) reduction(+ : loss)
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t j = s0; j < s1; ++j) {
          const int64_t i = j - i1, nat = perm[static_cast<size_t>(j)], g = nat / G;
          const float x = static_cast<float>(Wp(r, j));
          uint8_t c;
          double v;
          if (is_outlier(r, nat)) {  // kept in BF16: its slot is stored as 0, its error is BF16's rounding
            const uint16_t bf = float_to_bf16(x);
            outlier_bf16[static_cast<size_t>(r * nblocks + nat / OB)] = bf;
            c = 0;
            v = bf16_to_float(bf);
          } else {
            const GroupQuantizer::Params& p = params[static_cast<size_t>(r * ngroups + g)];
            gq.quantize(p, &x, 1, &c, &v);
            if (io.qq_zero_bits && p.s > 0.f) v = (double(c) - zero_exact[static_cast<size_t>(r * ngroups + g)]) * p.scale;
          }
          codes[static_cast<size_t>(r * cols + nat)] = c;
          const double e = (Wp(r, j) - v) / Ud(j);
          Err(r, i) = e;
          loss += 0.5 * e * e;
          const double* uj = Urow(j, i1);
          for (int64_t k = j + 1; k < i2; ++k) Wp(r, k) -= e * uj[k];  // the rest of the block
        }
      }
      s0 = s1;
    }
    if (i2 < cols) {
      if (dev)
        dev->update(i1, i2, Err.data());
      else
        Wp.rightCols(cols - i2).noalias() -= Err * U.block(i1, i2, count, cols - i2);
    }
  }
  res.sweep_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_sweep).count();
  res.loss = loss;
  res.q = gq.assemble(rows, cols, codes, params);
  QuantizedTensor& q = res.q;
  if (io.qq_scale_bits) {
    q.scales16.clear();
    q.qq_scales.assign(static_cast<size_t>(stream_words(rows * ngroups, io.qq_scale_bits)), 0);
    pack_row(qs_codes.data(), rows * ngroups, io.qq_scale_bits, q.qq_scales.data());
    q.qq_scale_params = std::move(qs_params);
  }
  if (io.qq_zero_bits) {
    q.qq_zeros.assign(static_cast<size_t>(stream_words(rows * ngroups, io.qq_zero_bits)), 0);
    pack_row(qz_codes.data(), rows * ngroups, io.qq_zero_bits, q.qq_zeros.data());
    q.qq_zero_params = std::move(qz_params);
  }
  if (OB) {
    std::vector<uint8_t> idx(outlier.size());
    for (size_t i = 0; i < outlier.size(); ++i) idx[i] = static_cast<uint8_t>(outlier[i] < 0 ? OB : outlier[i]);
    q.outlier_index.assign(static_cast<size_t>(stream_words(rows * nblocks, io.outlier_index_bits())), 0);
    pack_row(idx.data(), rows * nblocks, io.outlier_index_bits(), q.outlier_index.data());
    q.outlier_value = std::move(outlier_bf16);
  }
  if (io.offset) apply_code_offsets(q);
  validate(q, "gptq result");
  compute_stats(q, w, nthreads);  // against the weights given (not the error-updated ones)
  if (cfg.id == FormatId::kInt) count_code_ones(q);
  return res;
}

}  // namespace razerq::quantizer
