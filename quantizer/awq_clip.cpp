#include "quantizer/awq_clip.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "common/error.hpp"

namespace razerq::quantizer {

AwqClipResult awq_clip_search(const float* w, int64_t rows, int64_t cols, const double* gram, const FormatConfig& cfg,
                              const AwqClipOptions& opt) {
  const char* where = "awq_clip_search";
  if (rows <= 0 || cols <= 0) throw_error(ErrorKind::kInvalidArgument, where, "empty matrix");
  if (opt.n_grid <= 0 || !(opt.max_shrink >= 0 && opt.max_shrink < 1))
    throw_error(ErrorKind::kInvalidArgument, where, "n_grid %d, max_shrink %g (expected > 0 and in [0, 1))", opt.n_grid,
                opt.max_shrink);
  const int nthreads = opt.threads > 0 ? opt.threads : omp_get_max_threads();
  const int64_t G = cfg.group, ng = (cols + G - 1) / G;
  const int nr = std::max(1, static_cast<int>(opt.max_shrink * opt.n_grid));
  SearchOptions so;
  so.clip_ratios = {1.0f};
  so.range_aware = opt.range_aware;
  GroupQuantizer gq(cfg, so, w, rows * cols);

  AwqClipResult res;
  res.clipped.assign(w, w + rows * cols);
  res.ratio.assign(static_cast<size_t>(rows * ng), 1.0f);
  std::vector<uint8_t> codes(static_cast<size_t>(rows * cols));
  std::vector<GroupQuantizer::Params> params(static_cast<size_t>(rows * ng));
  double before = 0, after = 0;
#pragma omp parallel num_threads(nthreads) reduction(+ : before, after)
  {
    std::vector<float> xc(static_cast<size_t>(G));
    std::vector<double> val(static_cast<size_t>(G)), d(static_cast<size_t>(G));
    std::vector<uint8_t> cc(static_cast<size_t>(G));
#pragma omp for schedule(dynamic, 4)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < ng; ++g) {
        const int64_t k0 = g * G;
        const int n = static_cast<int>(std::min(G, cols - k0));
        const float* x = w + r * cols + k0;
        float amax = 0;
        for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
        double best = INFINITY;
        for (int s = 0; s < nr; ++s) {
          const float ratio = 1.0f - static_cast<float>(s) / static_cast<float>(opt.n_grid);
          const float mv = amax * ratio;
          for (int i = 0; i < n; ++i) xc[static_cast<size_t>(i)] = std::min(std::max(x[i], -mv), mv);
          const GroupQuantizer::Params p = gq.choose(xc.data(), nullptr, n);
          gq.quantize(p, xc.data(), n, cc.data(), val.data());
          for (int i = 0; i < n; ++i) d[static_cast<size_t>(i)] = val[static_cast<size_t>(i)] - double(x[i]);
          double e = 0;  // d^T G_gg d
          for (int i = 0; i < n; ++i) {
            if (!gram) {
              e += d[static_cast<size_t>(i)] * d[static_cast<size_t>(i)];
              continue;
            }
            const double* gr = gram + (k0 + i) * cols + k0;
            double t = 0;
            for (int j = 0; j < n; ++j) t += gr[j] * d[static_cast<size_t>(j)];
            e += d[static_cast<size_t>(i)] * t;
          }
          if (s == 0) before += e;
          if (e < best) {
            best = e;
            const size_t gi = static_cast<size_t>(r * ng + g);
            params[gi] = p;
            res.ratio[gi] = ratio;
            std::copy(cc.begin(), cc.begin() + n, codes.begin() + r * cols + k0);
            std::copy(xc.begin(), xc.begin() + n, res.clipped.begin() + r * cols + k0);
          }
        }
        after += best;
      }
  }
  res.err_before = before;
  res.err_after = after;
  res.q = gq.assemble(rows, cols, codes, params);
  compute_stats(res.q, w, nthreads);  // error against the unclipped weights
  return res;
}

}  // namespace razerq::quantizer

namespace razerq::quantizer {

ClippedQuantization quantize_clipped(const float* w, int64_t rows, int64_t cols, const FormatConfig& cfg,
                                     const float* hi_ratio, const float* lo_ratio, bool range_aware, int threads) {
  if (rows <= 0 || cols <= 0) throw_error(ErrorKind::kInvalidArgument, "quantize_clipped", "empty matrix");
  if (cfg.asym && !lo_ratio) throw_error(ErrorKind::kInvalidArgument, "quantize_clipped", "asym int needs lo_ratio");
  const int nthreads = threads > 0 ? threads : omp_get_max_threads();
  const int64_t G = cfg.group, ng = (cols + G - 1) / G;
  SearchOptions so;
  so.clip_ratios = {1.0f};
  so.range_aware = range_aware;
  GroupQuantizer gq(cfg, so, w, rows * cols);
  ClippedQuantization res;
  res.values.resize(static_cast<size_t>(rows * cols));
  res.scale.resize(static_cast<size_t>(rows * ng));
  res.lo.resize(static_cast<size_t>(rows * ng));
  res.hi.resize(static_cast<size_t>(rows * ng));
  std::vector<uint8_t> codes(static_cast<size_t>(rows * cols));
  std::vector<GroupQuantizer::Params> params(static_cast<size_t>(rows * ng));
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<float> xc(static_cast<size_t>(G));
    std::vector<double> val(static_cast<size_t>(G));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < ng; ++g) {
        const size_t gi = static_cast<size_t>(r * ng + g);
        const int64_t k0 = g * G;
        const int n = static_cast<int>(std::min(G, cols - k0));
        const float* x = w + r * cols + k0;
        float lo, hi;
        if (cfg.asym) {
          float mn = x[0], mx = x[0];
          for (int i = 1; i < n; ++i) mn = std::min(mn, x[i]), mx = std::max(mx, x[i]);
          hi = hi_ratio[gi] * mx;
          lo = std::min(lo_ratio[gi] * mn, hi);
        } else {
          float amax = 0;
          for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
          hi = hi_ratio[gi] * amax;
          lo = -hi;
        }
        for (int i = 0; i < n; ++i) xc[static_cast<size_t>(i)] = std::min(std::max(x[i], lo), hi);
        params[gi] = gq.choose(xc.data(), nullptr, n);
        gq.quantize(params[gi], xc.data(), n, codes.data() + r * cols + k0, val.data());
        for (int i = 0; i < n; ++i) res.values[static_cast<size_t>(r * cols + k0 + i)] = static_cast<float>(val[static_cast<size_t>(i)]);
        res.scale[gi] = params[gi].s > 0.f ? params[gi].scale : 0.0;
        res.lo[gi] = lo;
        res.hi[gi] = hi;
      }
  }
  res.q = gq.assemble(rows, cols, codes, params);
  compute_stats(res.q, w, nthreads);
  return res;
}

}  // namespace razerq::quantizer
