#include "quantizer/quantize.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include "common/error.hpp"
#include "common/half.hpp"
#include "quantizer/lut.hpp"
#include "quantizer/pack.hpp"
#include "quantizer/reference_rules.hpp"

namespace razerq::quantizer {

const char* rule_name(Rule r) { return r == Rule::kSearch ? "search" : "reference"; }

Rule parse_rule(const std::string& s) {
  if (s == "search") return Rule::kSearch;
  if (s == "reference") return Rule::kReference;
  throw_error(ErrorKind::kInvalidArgument, "--razer-rule", "unknown rule '%s' (expected search or reference)",
              s.c_str());
}

std::vector<float> default_clip_ratios(int bits) {
  std::vector<float> r;
  if (bits >= 4) {
    for (int i = 0; i <= 7; ++i) r.push_back(1.0f - 0.03f * static_cast<float>(i));  // 1.00 .. 0.79
  } else {
    for (int i = 0; i <= 12; ++i) r.push_back(1.0f - 0.04f * static_cast<float>(i));  // 1.00 .. 0.52
  }
  return r;
}

int64_t QuantizedTensor::group_size(int64_t g) const {
  return std::min<int64_t>(cfg.group, cols - g * cfg.group);
}

double QuantizedTensor::bits_per_weight() const {
  return quantizer::bits_per_weight(cfg, rows, cols, separate_sv()) + sparse.bits() / (double(rows) * double(cols));
}

namespace {

constexpr int kMaxSv = 4;
// Clipped candidate scales closer than this (relative) to one already tried are skipped.
constexpr float kMinScaleStep = 0.015f;

// Branch-free helpers the vectoriser turns into single instructions (std::fmin/std::nearbyint
// may become libm calls that block vectorisation).
inline float min_f(float a, float b) { return a < b ? a : b; }
inline float max_f(float a, float b) { return a > b ? a : b; }
inline float round_even(float v) { return __builtin_rintf(v); }  // current mode: nearest even

// Everything the per-group search needs, derived once per tensor.
struct Ctx {
  FormatConfig cfg;
  ScaleKind kind;
  Grid grid;
  Rule rule;
  std::vector<float> clip;
  bool range_aware;
  // Sign-symmetric grids (E2M1, FP3): magnitudes, thresholds (midpoints) and steps.
  bool sym_grid = false;
  int n_mag = 0;
  float mag[8]{};
  float thr[8]{};
  float step[8]{};
  uint8_t sign_bit = 0;
  // Signed tables (NF4): sorted values, thresholds, steps, codes.
  int n_val = 0;
  float val[16]{};
  float vthr[16]{};
  float vstep[16]{};
  uint8_t val_code[16]{};
  // Special values (RaZeR family), in stored-index order.
  int n_sv = 0;
  float sv[kMaxSv]{};
  float grid_max = 0;   // max |base value| without the special code
  float tensor_scale = 1;
};

Ctx make_ctx(const FormatConfig& cfg, const SearchOptions& opt) {
  Ctx c;
  c.cfg = cfg;
  c.kind = cfg.spec().scale_kind;
  c.grid = base_grid(cfg);
  c.rule = opt.rule;
  c.clip = opt.clip_ratios.empty() ? default_clip_ratios(cfg.bits) : opt.clip_ratios;
  for (float r : c.clip)
    if (!(r > 0.f && r <= 1.f))
      throw_error(ErrorKind::kInvalidArgument, "--clip", "clip ratio %g is outside (0, 1]", r);
  c.range_aware = opt.range_aware;
  c.grid_max = static_cast<float>(c.grid.max_abs);
  if (cfg.spec().has_special) {
    c.n_sv = 4;
    for (int i = 0; i < 4; ++i) c.sv[i] = cfg.special_values[i];
  }
  const int n = static_cast<int>(c.grid.value.size());
  if (cfg.id == FormatId::kNf4) {
    // The tables hold at most 16 entries (4 bits); saying so also lets GCC 13 see the bound.
    RAZERQ_CHECK(n <= 16, "nf4 grid of %d values", n);
    std::vector<std::pair<double, int>> v;
    for (int code = 0; code < n; ++code) v.push_back({c.grid.value[code], code});
    std::sort(v.begin(), v.end());
    c.n_val = n;
    for (int i = 0; i < n; ++i) {
      c.val[i] = static_cast<float>(v[i].first);
      c.val_code[i] = static_cast<uint8_t>(v[i].second);
    }
    for (int i = 0; i + 1 < n; ++i) {
      c.vthr[i] = 0.5f * (c.val[i] + c.val[i + 1]);
      c.vstep[i] = c.val[i + 1] - c.val[i];
    }
  } else if (cfg.id != FormatId::kInt) {
    // Sign-magnitude grid: codes [0, n/2) are the non-negative magnitudes, the top bit is the sign.
    c.sym_grid = true;
    c.n_mag = n / 2;
    c.sign_bit = static_cast<uint8_t>(n / 2);
    for (int i = 0; i < c.n_mag; ++i) {
      c.mag[i] = static_cast<float>(c.grid.value[i]);
    }
    for (int i = 0; i + 1 < c.n_mag; ++i) {
      RAZERQ_CHECK(c.mag[i + 1] > c.mag[i], "grid magnitudes must increase");
      c.thr[i] = 0.5f * (c.mag[i] + c.mag[i + 1]);
      c.step[i] = c.mag[i + 1] - c.mag[i];
    }
  }
  return c;
}

// ---- candidate evaluation -------------------------------------------------------------
// Each evaluator returns the (weighted) squared error of a group quantized with the
// effective scale s, in the original units, for "no special value" (err[0]) and for each
// special value k (err[1 + k]); the codes follow the same float arithmetic in finalize_*.

template <int NT, bool W>
void eval_sym(const Ctx& c, const float* x, const float* h, int n, float s, float* err) {
  const float inv = s > 0.f ? 1.0f / s : 0.0f;
  const float s0 = c.sv[0] * s, s1 = c.sv[1] * s, s2 = c.sv[2] * s, s3 = c.sv[3] * s;
  float thr[NT > 0 ? NT : 1], step[NT > 0 ? NT : 1];
  for (int t = 0; t < NT; ++t) {
    thr[t] = c.thr[t];
    step[t] = c.step[t];
  }
  float e0 = 0, e1 = 0, e2 = 0, e3 = 0, e4 = 0;
#pragma omp simd reduction(+ : e0, e1, e2, e3, e4)
  for (int i = 0; i < n; ++i) {
    const float xi = x[i];
    const float a = std::fabs(xi * inv);
    float m = 0.f;
    for (int t = 0; t < NT; ++t) m += a > thr[t] ? step[t] : 0.f;
    const float q = std::copysign(m * s, xi);
    const float d = xi - q;
    const float wt = W ? h[i] : 1.0f;
    const float ed = wt * d * d;
    e0 += ed;
    const float d0 = xi - s0, d1 = xi - s1, d2 = xi - s2, d3 = xi - s3;
    e1 += min_f(ed, wt * d0 * d0);
    e2 += min_f(ed, wt * d1 * d1);
    e3 += min_f(ed, wt * d2 * d2);
    e4 += min_f(ed, wt * d3 * d3);
  }
  err[0] = e0;
  err[1] = e1;
  err[2] = e2;
  err[3] = e3;
  err[4] = e4;
}

// E2M1 nearest magnitude with ties to even: below 2 a step of 0.5 (a + 2^22 - 2^22 rounds to a
// multiple of 0.5, the ulp at 2^22), above one mantissa bit (round the float's bits at bit 22),
// saturating at 6. Exact ties may differ from the threshold count of finalize_sym; both
// choices have the same error there.
inline float e2m1_round(float a) {
  const float lo = (a + 4194304.0f) - 4194304.0f;
  uint32_t b;
  std::memcpy(&b, &a, 4);
  b = (b + 0x1FFFFFu + ((b >> 22) & 1u)) & 0xFFC00000u;
  float hi;
  std::memcpy(&hi, &b, 4);
  return min_f(a < 2.0f ? lo : hi, 6.0f);
}

// eval_sym for the E2M1 family, in the scaled domain (errors times s^2 at the end). A special
// value of the other sign than the weight never beats the grid (0 is closer), so its gain is
// max(0, e - (|y| - |sv|)^2) on weights of its sign. PAIRED: the list is {+a, +b, -a, -b}, so
// two magnitudes serve the four values.
template <bool W, bool PAIRED>
void eval_e2m1(const Ctx& c, const float* x, const float* h, int n, float s, float* err) {
  const float inv = s > 0.f ? 1.0f / s : 0.0f;
  const float m0 = std::fabs(c.sv[0]), m1 = std::fabs(c.sv[1]), m2 = std::fabs(c.sv[2]), m3 = std::fabs(c.sv[3]);
  const float p0 = c.sv[0] > 0 ? 1.f : -1.f, p1 = c.sv[1] > 0 ? 1.f : -1.f, p2 = c.sv[2] > 0 ? 1.f : -1.f,
              p3 = c.sv[3] > 0 ? 1.f : -1.f;
  float e0 = 0, g0 = 0, g1 = 0, g2 = 0, g3 = 0;
#pragma omp simd reduction(+ : e0, g0, g1, g2, g3)
  for (int i = 0; i < n; ++i) {
    const float y = x[i] * inv;
    const float a = std::fabs(y);
    const float da = a - e2m1_round(a);
    const float wt = W ? h[i] : 1.0f;
    const float ed = wt * da * da;
    e0 += ed;
    const float d0 = a - m0, d1 = a - m1;
    const float gain0 = max_f(ed - wt * d0 * d0, 0.f), gain1 = max_f(ed - wt * d1 * d1, 0.f);
    if (PAIRED) {
      g0 += y > 0.f ? gain0 : 0.f;
      g1 += y > 0.f ? gain1 : 0.f;
      g2 += y < 0.f ? gain0 : 0.f;
      g3 += y < 0.f ? gain1 : 0.f;
    } else {
      const float d2 = a - m2, d3 = a - m3;
      const float gain2 = max_f(ed - wt * d2 * d2, 0.f), gain3 = max_f(ed - wt * d3 * d3, 0.f);
      g0 += y * p0 > 0.f ? gain0 : 0.f;
      g1 += y * p1 > 0.f ? gain1 : 0.f;
      g2 += y * p2 > 0.f ? gain2 : 0.f;
      g3 += y * p3 > 0.f ? gain3 : 0.f;
    }
  }
  const float s2 = s * s;
  err[0] = s2 * e0;
  err[1] = s2 * (e0 - g0);
  err[2] = s2 * (e0 - g1);
  err[3] = s2 * (e0 - g2);
  err[4] = s2 * (e0 - g3);
}

// Signed table (NF4): value = val[0] + sum of steps over passed thresholds.
template <bool W>
float eval_table(const Ctx& c, const float* x, const float* h, int n, float s) {
  const float inv = s > 0.f ? 1.0f / s : 0.0f;
  float thr[15], step[15];
  for (int t = 0; t < 15; ++t) {
    thr[t] = c.vthr[t];
    step[t] = c.vstep[t];
  }
  const float v0 = c.val[0];
  float e = 0;
#pragma omp simd reduction(+ : e)
  for (int i = 0; i < n; ++i) {
    const float y = x[i] * inv;
    float v = v0;
    for (int t = 0; t < 15; ++t) v += y > thr[t] ? step[t] : 0.f;
    const float d = x[i] - v * s;
    e += (W ? h[i] : 1.0f) * d * d;
  }
  return e;
}

// Uniform integer grid: q = clamp(round(x/s) + z, 0, qmax), value (q - z) s.
template <bool W>
float eval_int(const float* x, const float* h, int n, float s, float z, float qmax) {
  const float inv = s > 0.f ? 1.0f / s : 0.0f;
  float e = 0;
#pragma omp simd reduction(+ : e)
  for (int i = 0; i < n; ++i) {
    const float q = min_f(max_f(round_even(x[i] * inv) + z, 0.f), qmax);
    const float d = x[i] - (q - z) * s;
    e += (W ? h[i] : 1.0f) * d * d;
  }
  return e;
}

// ---- the per-group search ----------------------------------------------------------------

struct GroupChoice {
  float err = std::numeric_limits<float>::infinity();
  float s = 0;       // effective scale (tensor scale included)
  uint32_t enc = 0;  // fp16 bits of the scale, or the 8-bit scale code
  int sv = 0;        // stored special-value index
  float z = 0;       // asym zero point
};

struct GroupStats {
  float xmin, xmax, absmax;
};

GroupStats group_stats(const float* x, int n) {
  float lo = x[0], hi = x[0];
#pragma omp simd reduction(min : lo) reduction(max : hi)
  for (int i = 1; i < n; ++i) {
    lo = min_f(lo, x[i]);
    hi = max_f(hi, x[i]);
  }
  return {lo, hi, max_f(std::fabs(lo), std::fabs(hi))};
}

class Searcher {
 public:
  explicit Searcher(const Ctx& c)
      : c_(c), paired_(c.n_sv == 4 && c.sv[0] == -c.sv[2] && c.sv[1] == -c.sv[3] && c.sv[0] > 0 && c.sv[1] > 0) {}

  GroupChoice search(const float* x, const float* h, int n) const {
    const GroupStats st = group_stats(x, n);
    GroupChoice best;
    switch (c_.kind) {
      case ScaleKind::kFp16:
      case ScaleKind::kFp16Razer: search_fp16(x, h, n, st, best); break;
      case ScaleKind::kE8M0:
      case ScaleKind::kE8M0Razer: search_e8m0(x, h, n, st, best); break;
      case ScaleKind::kE4M3Tensor:
      case ScaleKind::kE3M3RazerTensor: search_block8(x, h, n, st, best); break;
      case ScaleKind::kLutRow: break;  // never searched: quantize_tensor sends lut to lut_quantize
    }
    if (!std::isfinite(best.err)) {  // an all-zero group: scale code 0, every code 0, every value 0
      best = GroupChoice{};
      best.err = 0;
    }
    return best;
  }

 private:
  // Evaluates one effective scale; updates best with every special value.
  void try_scale(const float* x, const float* h, int n, float s, uint32_t enc, GroupChoice& best,
                 float z = 0) const {
    if (!(s > 0.f) || !std::isfinite(s)) return;
    if (c_.sym_grid) {
      float err[5];
      const int nt = c_.n_mag - 1;
      if (nt == 7) {
        if (h) {
          if (paired_) eval_e2m1<true, true>(c_, x, h, n, s, err); else eval_e2m1<true, false>(c_, x, h, n, s, err);
        } else {
          if (paired_) eval_e2m1<false, true>(c_, x, h, n, s, err); else eval_e2m1<false, false>(c_, x, h, n, s, err);
        }
      } else {
        if (h) eval_sym<3, true>(c_, x, h, n, s, err); else eval_sym<3, false>(c_, x, h, n, s, err);
      }
      if (c_.n_sv == 0) {
        update(best, err[0], s, enc, 0, z);
      } else {
        for (int k = 0; k < c_.n_sv; ++k) update(best, err[1 + k], s, enc, k, z);
      }
    } else if (c_.n_val) {
      update(best, h ? eval_table<true>(c_, x, h, n, s) : eval_table<false>(c_, x, h, n, s), s, enc, 0, z);
    } else {
      const float qmax = static_cast<float>((1 << c_.cfg.bits) - 1);
      const float zz = c_.cfg.asym ? z : static_cast<float>(1 << (c_.cfg.bits - 1));
      update(best, h ? eval_int<true>(x, h, n, s, zz, qmax) : eval_int<false>(x, h, n, s, zz, qmax), s, enc,
             0, zz);
    }
  }

  static void update(GroupChoice& best, float err, float s, uint32_t enc, int sv, float z) {
    if (err < best.err) best = GroupChoice{err, s, enc, sv, z};
  }

  // fp16 scale kinds: base scales x clip ratios, each rounded to fp16 before evaluation.
  void search_fp16(const float* x, const float* h, int n, const GroupStats& st, GroupChoice& best) const {
    if (st.absmax == 0.f) return;
    float bases[8];
    int nb = 0;
    auto add_base = [&](float b) {
      for (int i = 0; i < nb; ++i)
        if (bases[i] == b) return;
      if (b > 0.f && std::isfinite(b)) bases[nb++] = b;
    };
    const bool search = c_.rule == Rule::kSearch;
    if (c_.cfg.id == FormatId::kInt) {
      const int b = c_.cfg.bits;
      const float qmax = static_cast<float>((1 << b) - 1);
      if (c_.cfg.asym) {
        // Shrink both ends of the range by r (GPTQ's MSE grid); zero point from the rounded scale.
        for (float r : c_.clip) {
          // The range keeps 0 inside it (as GPTQ does) so the b-bit zero point lies in [0, 2^b-1].
          const float lo = std::fmin(st.xmin * r, 0.f), hi = std::fmax(st.xmax * r, 0.f);
          const float raw = (hi - lo) / qmax;
          uint16_t bits = float_to_fp16(raw);
          // At r = 1 also the fp16 value just above the exact scale, so the range always fits:
          // at 8 bits the fp16 rounding of the scale is as large as the quantization error.
          for (int up = 0; up < (r == 1.0f ? 2 : 1); ++up) {
            if (up) {
              if (fp16_to_float(bits) >= raw) break;
              ++bits;
            }
            const float s = fp16_to_float(bits);
            if (!(s > 0.f)) continue;
            const float z = std::fmin(std::fmax(std::nearbyint(-lo / s), 0.f), qmax);
            try_scale(x, h, n, s, bits, best, z);
          }
          if (!search) break;
        }
        return;
      }
      const float hi_q = static_cast<float>((1 << (b - 1)) - 1), lo_q = static_cast<float>(1 << (b - 1));
      add_base(st.absmax / hi_q);
      add_base(2.0f * st.absmax / qmax);  // GPTQ's symmetric rule: the extremes land inside [-2^(b-1), 2^(b-1)-1]
      if (c_.range_aware) add_base(std::fmax(st.xmax / hi_q, -st.xmin / lo_q));
    } else if (c_.n_sv == 0) {
      add_base(st.absmax / c_.grid_max);
    } else {
      // RaZeR: absmax / qmax(sv) for every special value (razer.md 3.1) and the range-aware
      // rule of the kernel path (3.2): the SV's side may reach |sv|, the other side stops at grid_max.
      for (int k = 0; k < c_.n_sv; ++k) {
        const float m = std::fabs(c_.sv[k]);
        const float qm = std::fmax(m, c_.grid_max);
        add_base(st.absmax / qm);
        if (c_.range_aware && m > c_.grid_max) {
          add_base(c_.sv[k] > 0 ? std::fmax(st.xmax / m, -st.xmin / c_.grid_max)
                                : std::fmax(st.xmax / c_.grid_max, -st.xmin / m));
        }
      }
    }
    // Candidates: every base at r = 1 (so the search contains the plain rules), then the
    // clipped scales, skipping any within kMinScaleStep (1.5 %) of one already listed: RaZeR's
    // bases overlap once clipped (absmax/6 x 0.75 = absmax/8), and near-equal scales give
    // near-equal errors. Coarse to fine: the bases and every other candidate in scale order
    // first, then the untried neighbours of the best one (the error is close to unimodal in s).
    struct Cand {
      float s;
      uint16_t bits;
      bool exact;
      bool tried;
    };
    Cand cand[64];
    int nc = 0;
    auto add = [&](float raw, bool exact) {
      const uint16_t bits = float_to_fp16(raw);
      const float sc = fp16_to_float(bits);
      if (!(sc > 0.f) || nc == 64) return;
      for (int i = 0; i < nc; ++i)
        if (exact ? cand[i].s == sc : std::fabs(cand[i].s - sc) <= kMinScaleStep * sc) return;
      cand[nc++] = Cand{sc, bits, exact, false};
    };
    for (int i = 0; i < nb; ++i) add(bases[i], true);
    if (search)
      for (int i = 0; i < nb; ++i)
        for (float r : c_.clip)
          if (r != 1.0f) add(bases[i] * r, false);
    std::sort(cand, cand + nc, [](const Cand& a, const Cand& b) { return a.s > b.s; });
    int best_i = -1;
    auto run = [&](int i) {
      if (i < 0 || i >= nc || cand[i].tried) return;
      cand[i].tried = true;
      const float before = best.err;
      try_scale(x, h, n, cand[i].s, cand[i].bits, best);
      if (best.err < before) best_i = i;
    };
    for (int i = 0; i < nc; ++i)
      if (cand[i].exact || i % 2 == 0) run(i);
    if (best_i >= 0) {
      const int b = best_i;
      run(b - 1);
      run(b + 1);
    }
  }

  // Power-of-two scales (MX): the no-clip exponent ceil(log2(absmax / 6)) and one below.
  void search_e8m0(const float* x, const float* h, int n, const GroupStats& st, GroupChoice& best) const {
    if (st.absmax == 0.f) return;
    const bool razer = c_.kind == ScaleKind::kE8M0Razer;
    const int lo = razer ? -31 : -127, hi = razer ? 32 : 127;
    const int e0 = static_cast<int>(std::ceil(std::log2(static_cast<double>(st.absmax) / c_.grid_max)));
    for (int e = e0; e >= e0 - 1; --e) {
      const int ec = std::min(std::max(e, lo), hi);
      const float s = static_cast<float>(std::ldexp(1.0, ec));
      try_scale(x, h, n, s, static_cast<uint32_t>(razer ? ec + 31 : ec + 127), best);
      if (c_.rule != Rule::kSearch) break;
    }
  }

  // 8-bit block scales times the fp32 tensor scale (NVFP4 E4M3, NVFP4-RaZeR E3M3). The codes
  // are monotonic in value, so the candidates are one contiguous code range: from the code of
  // the deepest clip (smallest ratio, largest qmax) to one above the no-clip code of qmax = grid max.
  void search_block8(const float* x, const float* h, int n, const GroupStats& st, GroupChoice& best) const {
    if (st.absmax == 0.f) return;
    const bool e3m3 = c_.kind == ScaleKind::kE3M3RazerTensor;
    const double g = c_.tensor_scale;
    float qmax_hi = c_.grid_max;
    for (int k = 0; k < c_.n_sv; ++k) qmax_hi = std::max(qmax_hi, std::fabs(c_.sv[k]));
    float rmin = 1.f;
    for (float r : c_.clip) rmin = std::min(rmin, r);
    auto encode = [&](double v) { return static_cast<int>(e3m3 ? double_to_e3m3(v) : double_to_e4m3(v)); };
    const int top = e3m3 ? 63 : 126;
    const int c_hi = std::min(encode(st.absmax / (c_.grid_max * g)) + 1, top);
    const int c_lo = std::max(encode(st.absmax * rmin / (qmax_hi * g)), 1);
    for (int code = c_hi; code >= c_lo; --code) {
      const double dec = e3m3 ? e3m3_to_double(static_cast<uint8_t>(code)) : e4m3_to_double(static_cast<uint8_t>(code));
      try_scale(x, h, n, static_cast<float>(dec * g), static_cast<uint32_t>(code), best);
    }
  }

  const Ctx& c_;
  const bool paired_;  // special values {+a, +b, -a, -b}
};

// Sign-magnitude grids: codes [0, n_mag) are the magnitudes in order, so the code is the
// threshold count plus the sign bit (never on a zero: the negative-zero code is RaZeR's
// special code). Same float arithmetic as eval_sym.
template <int NT, bool W>
void finalize_sym(const Ctx& c, const float* x, const float* h, int n, const GroupChoice& ch, uint8_t* codes) {
  const float s = ch.s;
  const float inv = s > 0.f ? 1.0f / s : 0.0f;
  const float svs = c.n_sv ? c.sv[ch.sv] * s : 0.f;
  const bool use_sv = c.n_sv > 0;
  const float sign_code = c.sign_bit, special = static_cast<float>(c.grid.special_code);
  float thr[NT], step[NT];
  for (int t = 0; t < NT; ++t) {
    thr[t] = c.thr[t];
    step[t] = c.step[t];
  }
#pragma omp simd
  for (int i = 0; i < n; ++i) {
    const float xi = x[i];
    const float a = std::fabs(xi * inv);
    float m = 0.f, idx = 0.f;
    for (int t = 0; t < NT; ++t) {
      m += a > thr[t] ? step[t] : 0.f;
      idx += a > thr[t] ? 1.f : 0.f;
    }
    const float q = std::copysign(m * s, xi);
    const float d = xi - q;
    float code = idx + ((idx > 0.f && xi < 0.f) ? sign_code : 0.f);
    const float wt = W ? h[i] : 1.0f;
    const float ds = xi - svs;
    code = (use_sv && wt * ds * ds < wt * d * d) ? special : code;
    codes[i] = static_cast<uint8_t>(code);
  }
}

// Codes of one group for a chosen scale, with the same float arithmetic as the evaluators.
void finalize_codes(const Ctx& c, const float* x, const float* h, int n, const GroupChoice& ch, uint8_t* codes) {
  const float s = ch.s;
  const float inv = s > 0.f ? 1.0f / s : 0.0f;
  if (c.sym_grid) {
    if (c.n_mag == 8) {
      if (h) finalize_sym<7, true>(c, x, h, n, ch, codes); else finalize_sym<7, false>(c, x, h, n, ch, codes);
    } else {
      if (h) finalize_sym<3, true>(c, x, h, n, ch, codes); else finalize_sym<3, false>(c, x, h, n, ch, codes);
    }
  } else if (c.n_val) {
    for (int i = 0; i < n; ++i) {
      const float y = x[i] * inv;
      int idx = 0;
      for (int t = 0; t < c.n_val - 1; ++t) idx += y > c.vthr[t];
      codes[i] = c.val_code[idx];
    }
  } else {
    const float qmax = static_cast<float>((1 << c.cfg.bits) - 1);
    if (ch.z != std::nearbyint(ch.z)) {  // a second-level quantized zero point (OA-CIM --qq-zero-bits)
      for (int i = 0; i < n; ++i) codes[i] = static_cast<uint8_t>(std::fmin(std::fmax(std::nearbyint(x[i] * inv + ch.z), 0.f), qmax));
      return;
    }
    for (int i = 0; i < n; ++i)
      codes[i] = static_cast<uint8_t>(std::fmin(std::fmax(std::nearbyint(x[i] * inv) + ch.z, 0.f), qmax));
  }
}

float tensor_scale_for(const Ctx& c, const float* w, int64_t count) {
  if (c.kind != ScaleKind::kE4M3Tensor && c.kind != ScaleKind::kE3M3RazerTensor) return 1.0f;
  float amax = 0;
  for (int64_t i = 0; i < count; ++i) amax = std::fmax(amax, std::fabs(w[i]));
  if (!(amax > 0.f)) return 1.0f;
  // NVFP4 convention (ModelOpt / compressed-tensors): amax / (6 * 448) so that the largest block
  // scale is E4M3's max. NVFP4-RaZeR uses E3M3, whose largest code the quantizer targets is 28 (razer.md 3.8).
  return c.kind == ScaleKind::kE4M3Tensor ? amax / (6.0f * 448.0f) : amax / (6.0f * 28.0f);
}

void check_finite(const float* w, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < cols; ++k)
      if (!std::isfinite(w[r * cols + k]))
        throw_error(ErrorKind::kMalformedInput, "", "weight [%lld, %lld] is %s: cannot quantize a non-finite weight",
                    static_cast<long long>(r), static_cast<long long>(k),
                    std::isnan(w[r * cols + k]) ? "NaN" : "infinite");
}

// The effective multiplier of a stored scale encoding (special-value bits excluded).
double decode_scale(ScaleKind kind, uint32_t enc, float tensor_scale) {
  switch (kind) {
    case ScaleKind::kFp16: return fp16_to_double(static_cast<uint16_t>(enc));
    case ScaleKind::kFp16Razer: return fp16_to_double(static_cast<uint16_t>(enc & 0x3fffu));
    case ScaleKind::kE8M0: return e8m0_to_double(static_cast<uint8_t>(enc));
    case ScaleKind::kE8M0Razer: return std::ldexp(1.0, int(enc & 63) - 31);
    case ScaleKind::kE4M3Tensor: return e4m3_to_double(static_cast<uint8_t>(enc)) * double(tensor_scale);
    case ScaleKind::kE3M3RazerTensor: return e3m3_to_double(static_cast<uint8_t>(enc & 63)) * double(tensor_scale);
    case ScaleKind::kLutRow: break;  // no scale
  }
  return 0;
}

// Statistics of one packed group against the source weights, in float64.
struct StatsAcc {
  double sse = 0, ssq = 0;
  int64_t sv_weights = 0;
  std::array<int64_t, 4> sv_groups{};
};

void add_group_stats(const Grid& grid, const uint8_t* codes, const float* x, int n, double scale, double zero,
                     double sv_value, StatsAcc& acc) {
  for (int i = 0; i < n; ++i) {
    const int code = codes[i];
    const bool special = code == grid.special_code;
    const double base = special ? sv_value : grid.value[static_cast<size_t>(code)];
    const double d = (base - zero) * scale - double(x[i]);
    acc.sse += d * d;
    acc.ssq += double(x[i]) * x[i];
    acc.sv_weights += special;
  }
}

// A packed tensor of the given shape with every part allocated and zeroed (codes, the scale
// array of the format's kind, zero points when asym).
QuantizedTensor zeroed_tensor(const FormatConfig& cfg, int64_t rows, int64_t cols) {
  QuantizedTensor q;
  q.cfg = cfg;
  q.rows = rows;
  q.cols = cols;
  q.groups_per_row = (cols + cfg.group - 1) / cfg.group;
  q.code_words_per_row = words_per_row(cols, cfg.bits);
  q.codes.assign(static_cast<size_t>(rows * q.code_words_per_row), 0);
  const ScaleKind kind = cfg.spec().scale_kind;
  const size_t ng = static_cast<size_t>(rows * q.groups_per_row);
  if (kind == ScaleKind::kFp16 || kind == ScaleKind::kFp16Razer) q.scales16.assign(ng, 0); else q.scales8.assign(ng, 0);
  if (cfg.asym) q.zeros.assign(static_cast<size_t>(rows * q.zero_words_per_row()), 0);
  return q;
}

// Stores the special-value index: inside the scale when every scale leaves bits 15 and 14
// free (fp16 < 2, sign 0), else in the separate per-group byte array (formats/SPEC.md).
void place_sv_index(QuantizedTensor& q, const std::vector<uint8_t>& sv_of_group) {
  const ScaleKind kind = q.cfg.spec().scale_kind;
  const size_t ng = sv_of_group.size();
  if (kind == ScaleKind::kFp16Razer) {
    bool fits = true;
    for (uint16_t s : q.scales16) fits &= (s & 0xC000u) == 0;
    if (fits) {
      for (size_t i = 0; i < ng; ++i)
        q.scales16[i] |= static_cast<uint16_t>(((sv_of_group[i] >> 1) << 15) | ((sv_of_group[i] & 1) << 14));
    } else {
      q.sv_index = sv_of_group;
    }
  } else if (kind == ScaleKind::kE8M0Razer || kind == ScaleKind::kE3M3RazerTensor) {
    for (size_t i = 0; i < ng; ++i) q.scales8[i] |= static_cast<uint8_t>(sv_of_group[i] << 6);
  }
}

}  // namespace

QuantizedTensor quantize_tensor(const float* w, int64_t rows, int64_t cols, const FormatConfig& cfg,
                                const SearchOptions& opt, const float* importance, int threads) {
  if (rows <= 0 || cols <= 0)
    throw_error(ErrorKind::kInvalidArgument, "", "cannot quantize an empty matrix [%lld, %lld]",
                static_cast<long long>(rows), static_cast<long long>(cols));
  if (cfg.id == FormatId::kLut) {
    if (opt.rule != Rule::kSearch)
      throw_error(ErrorKind::kInvalidArgument, "--razer-rule", "lut has no reference rule (its tables come from k-means)");
    return lut_quantize(w, rows, cols, cfg, opt.lut, Sensitivity{importance, false}, threads);
  }
  check_finite(w, rows, cols);
  if (importance)
    for (int64_t k = 0; k < cols; ++k)
      if (!(importance[k] >= 0.f) || !std::isfinite(importance[k]))
        throw_error(ErrorKind::kInvalidArgument, "importance", "entry %lld is %g (expected finite and >= 0)",
                    static_cast<long long>(k), importance[k]);

  validate_int_options(cfg);
  if (cfg.opts.outlier_block || cfg.opts.qq_scale_bits || cfg.opts.qq_zero_bits)
    throw_error(ErrorKind::kUnsupported, cfg.opts.outlier_block ? "--outliers" : "--qq-scale-bits/--qq-zero-bits",
                "outliers and second-level scales are chosen inside GPTQ (they need its Hessian and column order): add --gptq");
  if (cfg.opts.per_out_dim && cfg.group != cols) {
    FormatConfig c = cfg;
    c.group = static_cast<int>(cols);
    return quantize_tensor(w, rows, cols, c, opt, importance, threads);
  }
  // A num_threads clause, not omp_set_num_threads: the caller's setting stays as it was.
  const int nthreads = threads > 0 ? threads : omp_get_max_threads();
  QuantizedTensor q = zeroed_tensor(cfg, rows, cols);
  const ScaleKind kind = cfg.spec().scale_kind;
  const bool s16 = kind == ScaleKind::kFp16 || kind == ScaleKind::kFp16Razer;
  const size_t ng = static_cast<size_t>(rows * q.groups_per_row);

  if (opt.rule == Rule::kReference) {
    reference_pack(w, rows, cols, cfg, q);
  } else {
    Ctx ctx = make_ctx(cfg, opt);
    ctx.tensor_scale = tensor_scale_for(ctx, w, rows * cols);
    q.tensor_scale = ctx.tensor_scale;
    Searcher searcher(ctx);
    std::vector<uint8_t> sv_of_group(cfg.spec().has_special ? ng : 0);
    const Grid& grid = ctx.grid;
    StatsAcc total;
#pragma omp parallel num_threads(nthreads)
    {
      StatsAcc acc;
      std::vector<uint8_t> codes(static_cast<size_t>(cols));
      std::vector<uint32_t> zrow(static_cast<size_t>(q.groups_per_row));
#pragma omp for schedule(dynamic, 4)
      for (int64_t r = 0; r < rows; ++r) {
        const float* row = w + r * cols;
        for (int64_t g = 0; g < q.groups_per_row; ++g) {
          const int64_t k0 = g * cfg.group;
          const int n = static_cast<int>(std::min<int64_t>(cfg.group, cols - k0));
          const float* hh = importance ? importance + k0 : nullptr;
          const GroupChoice ch = searcher.search(row + k0, hh, n);
          finalize_codes(ctx, row + k0, hh, n, ch, codes.data() + k0);
          const size_t gi = static_cast<size_t>(r * q.groups_per_row + g);
          if (s16) q.scales16[gi] = static_cast<uint16_t>(ch.enc); else q.scales8[gi] = static_cast<uint8_t>(ch.enc);
          if (!sv_of_group.empty()) sv_of_group[gi] = static_cast<uint8_t>(ch.sv);
          if (cfg.asym) zrow[static_cast<size_t>(g)] = static_cast<uint32_t>(ch.z);
          const double sv_value = ctx.n_sv ? double(ctx.sv[ch.sv]) : 0.0;
          // ch.enc of kFp16Razer is still the plain fp16 scale: the index bits are added below.
          const ScaleKind plain = kind == ScaleKind::kFp16Razer ? ScaleKind::kFp16 : kind;
          add_group_stats(grid, codes.data() + k0, row + k0, n, decode_scale(plain, ch.enc, ctx.tensor_scale),
                          cfg.asym ? double(ch.z) : 0.0, sv_value, acc);
          if (ctx.n_sv) ++acc.sv_groups[static_cast<size_t>(ch.sv)];
        }
        pack_row(codes.data(), cols, cfg.bits, q.codes.data() + r * q.code_words_per_row);
        if (cfg.asym) {
          std::vector<uint8_t> z8(zrow.begin(), zrow.end());
          pack_row(z8.data(), q.groups_per_row, cfg.bits, q.zeros.data() + r * q.zero_words_per_row());
        }
      }
#pragma omp critical
      {
        total.sse += acc.sse;
        total.ssq += acc.ssq;
        total.sv_weights += acc.sv_weights;
        for (size_t i = 0; i < 4; ++i) total.sv_groups[i] += acc.sv_groups[i];
      }
    }
    q.stats.sse = total.sse;
    q.stats.ssq = total.ssq;
    q.stats.sv_groups = total.sv_groups;
    q.stats.sv_weights = total.sv_weights;
    place_sv_index(q, sv_of_group);
  }

  // Reference rule: statistics from the packed tensor itself, in float64.
  if (opt.rule != Rule::kSearch) compute_stats(q, w, nthreads);
  if (cfg.opts.offset) apply_code_offsets(q);  // relabels the codes: values and statistics unchanged
  if (cfg.id == FormatId::kInt) count_code_ones(q);
  return q;
}

int best_code_offset(const uint8_t* codes, const uint8_t* skip, int64_t n, int bits) {
  const int nc = 1 << bits;
  int64_t hist[256] = {};
  for (int64_t i = 0; i < n; ++i)
    if (!skip || !skip[i]) ++hist[codes[i]];
  int best = 0;
  int64_t best_ones = -1;
  for (int o = 0; o < nc; ++o) {
    int64_t ones = 0;
    for (int c = 0; c < nc; ++c) ones += hist[c] * __builtin_popcount(static_cast<unsigned>((c + o) & (nc - 1)));
    if (best_ones < 0 || ones < best_ones) best_ones = ones, best = o;
  }
  return best;
}

void apply_code_offsets(QuantizedTensor& q) {
  RAZERQ_CHECK(q.cfg.opts.offset && !q.cfg.asym, "apply_code_offsets: offset mode needs sym int");
  const int b = q.cfg.bits, mask = (1 << b) - 1;
  const int64_t B = q.cfg.opts.outlier_block;
  std::vector<uint8_t> off(static_cast<size_t>(q.rows));
#pragma omp parallel
  {
    std::vector<uint8_t> codes(static_cast<size_t>(q.cols)), skip(static_cast<size_t>(q.cols));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < q.rows; ++r) {
      uint32_t* words = q.codes.data() + r * q.code_words_per_row;
      unpack_row(words, q.cols, b, codes.data());
      std::fill(skip.begin(), skip.end(), uint8_t(0));
      for (int64_t blk = 0; blk < q.outlier_blocks_per_row(); ++blk) {
        const int c = q.outlier_at(r, blk);
        if (c >= 0) skip[static_cast<size_t>(blk * B + c)] = 1;
      }
      const int o = best_code_offset(codes.data(), skip.data(), q.cols, b);
      for (int64_t k = 0; k < q.cols; ++k)
        codes[static_cast<size_t>(k)] = skip[static_cast<size_t>(k)] ? 0 : static_cast<uint8_t>((codes[static_cast<size_t>(k)] + o) & mask);
      pack_row(codes.data(), q.cols, b, words);
      off[static_cast<size_t>(r)] = static_cast<uint8_t>(o);
    }
  }
  q.offsets.assign(static_cast<size_t>(stream_words(q.rows, b)), 0);
  pack_row(off.data(), q.rows, b, q.offsets.data());
}

void count_code_ones(QuantizedTensor& q) {
  const int b = q.cfg.bits, mask = (1 << b) - 1;
  int64_t ones = 0, plain = 0;
#pragma omp parallel reduction(+ : ones, plain)
  {
    std::vector<uint8_t> codes(static_cast<size_t>(q.cols)), is_outlier;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < q.rows; ++r) {
      unpack_row(q.codes.data() + r * q.code_words_per_row, q.cols, b, codes.data());
      const int o = q.cfg.opts.offset ? static_cast<int>(unpack_one(q.offsets.data(), r, b)) : 0;
      if (q.cfg.opts.outlier_block) {
        is_outlier.assign(static_cast<size_t>(q.cols), 0);
        for (int64_t blk = 0; blk < q.outlier_blocks_per_row(); ++blk) {
          const int c = q.outlier_at(r, blk);
          if (c >= 0) is_outlier[static_cast<size_t>(blk * q.cfg.opts.outlier_block + c)] = 1;
        }
      }
      for (int64_t k = 0; k < q.cols; ++k) {
        const int stored = codes[static_cast<size_t>(k)];
        ones += __builtin_popcount(static_cast<unsigned>(stored));
        // Without offsets the outlier's slot would be stored as 0 as well.
        const bool ol = !is_outlier.empty() && is_outlier[static_cast<size_t>(k)];
        plain += ol ? 0 : __builtin_popcount(static_cast<unsigned>((stored - o) & mask));
      }
    }
  }
  q.stats.code_ones = ones;
  q.stats.code_ones_no_offset = plain;
}

void compute_stats(QuantizedTensor& q, const float* w, int threads) {
  const int64_t rows = q.rows, cols = q.cols;
  const FormatConfig& cfg = q.cfg;
  const ScaleKind kind = cfg.spec().scale_kind;
  const int nthreads = threads > 0 ? threads : omp_get_max_threads();
  double sse = 0, ssq = 0;
  std::array<int64_t, 4> hist{};
  int64_t sv_w = 0;
  const int special = base_grid(cfg).special_code;
#pragma omp parallel num_threads(nthreads) reduction(+ : sse, ssq, sv_w)
  {
    std::vector<double> out(static_cast<size_t>(cols));
    std::vector<uint8_t> row_codes(static_cast<size_t>(cols));
    std::array<int64_t, 4> h{};
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row_ref(q, r, out.data());
      const float* row = w + r * cols;
      for (int64_t k = 0; k < cols; ++k) {
        const double d = out[static_cast<size_t>(k)] - row[k];
        sse += d * d;
        ssq += double(row[k]) * row[k];
      }
      if (special >= 0) {
        for (int64_t g = 0; g < q.groups_per_row; ++g) {
          const size_t gi = static_cast<size_t>(r * q.groups_per_row + g);
          int idx;
          if (q.separate_sv()) idx = q.sv_index[gi];
          else if (kind == ScaleKind::kFp16Razer) idx = ((q.scales16[gi] >> 15) << 1) | ((q.scales16[gi] >> 14) & 1);
          else idx = q.scales8[gi] >> 6;
          ++h[static_cast<size_t>(idx)];
        }
        unpack_row(q.codes.data() + r * q.code_words_per_row, cols, cfg.bits, row_codes.data());
        for (int64_t k = 0; k < cols; ++k) sv_w += row_codes[static_cast<size_t>(k)] == special;
      }
    }
#pragma omp critical
    for (int i = 0; i < 4; ++i) hist[static_cast<size_t>(i)] += h[static_cast<size_t>(i)];
  }
  q.stats.sse = sse;
  q.stats.ssq = ssq;
  q.stats.sv_groups = hist;
  q.stats.sv_weights = sv_w;
  int64_t nol = 0;
  for (int64_t r = 0; r < q.rows; ++r)
    for (int64_t blk = 0; blk < q.outlier_blocks_per_row(); ++blk) nol += q.outlier_at(r, blk) >= 0;
  q.stats.outliers = nol;
}

// --- GroupQuantizer -------------------------------------------------------------------

struct GroupQuantizer::Impl {
  Ctx ctx;
  Searcher searcher;
  ScaleKind plain;  // the scale kind without index bits (decode_scale of a Params::enc)
  Impl(const FormatConfig& cfg, const SearchOptions& opt) : ctx(make_ctx(cfg, opt)), searcher(ctx) {}
};

GroupQuantizer::GroupQuantizer(const FormatConfig& cfg, const SearchOptions& opt, const float* w, int64_t count)
    : impl_(nullptr) {
  if (opt.rule != Rule::kSearch)
    throw_error(ErrorKind::kUnsupported, "GroupQuantizer", "only the search rule chooses parameters per group");
  if (cfg.spec().scale_kind == ScaleKind::kLutRow)
    throw_error(ErrorKind::kUnsupported, "GroupQuantizer", "lut has no group parameters (one k-means table per row)");
  std::unique_ptr<Impl> p(new Impl(cfg, opt));
  p->ctx.tensor_scale = tensor_scale_for(p->ctx, w, count);
  const ScaleKind kind = cfg.spec().scale_kind;
  p->plain = kind == ScaleKind::kFp16Razer ? ScaleKind::kFp16 : kind;
  impl_ = p.release();
}

GroupQuantizer::~GroupQuantizer() { delete impl_; }

float GroupQuantizer::tensor_scale() const { return impl_->ctx.tensor_scale; }

GroupQuantizer::Params GroupQuantizer::choose(const float* x, const float* h, int n) const {
  const GroupChoice ch = impl_->searcher.search(x, h, n);
  Params p;
  p.enc = ch.enc;
  p.sv = ch.sv;
  p.z = ch.z;
  p.s = ch.s;
  p.scale = decode_scale(impl_->plain, ch.enc, impl_->ctx.tensor_scale);
  return p;
}

void GroupQuantizer::quantize(const Params& p, const float* x, int n, uint8_t* codes, double* values) const {
  const Ctx& c = impl_->ctx;
  GroupChoice ch;
  ch.s = p.s;
  ch.enc = p.enc;
  ch.sv = p.sv;
  ch.z = p.z;
  if (!(p.s > 0.f)) {  // an all-zero group: every code 0 (value 0)
    const Grid& g = c.grid;
    int zero_code = 0;
    for (int k = 0; k < static_cast<int>(g.value.size()); ++k)
      if (g.value[static_cast<size_t>(k)] == 0.0 && k != g.special_code) {
        zero_code = k;
        break;
      }
    for (int i = 0; i < n; ++i) {
      codes[i] = static_cast<uint8_t>(c.cfg.asym ? 0 : zero_code);
      if (values) values[i] = 0.0;
    }
    return;
  }
  finalize_codes(c, x, nullptr, n, ch, codes);
  if (!values) return;
  const double sv_value = c.n_sv ? double(c.sv[p.sv]) : 0.0;
  for (int i = 0; i < n; ++i) {
    const double base = codes[i] == c.grid.special_code ? sv_value : c.grid.value[codes[i]];
    values[i] = (base - (c.cfg.asym ? double(p.z) : 0.0)) * p.scale;
  }
}

QuantizedTensor GroupQuantizer::assemble(int64_t rows, int64_t cols, const std::vector<uint8_t>& codes,
                                         const std::vector<Params>& params) const {
  const FormatConfig& cfg = impl_->ctx.cfg;
  QuantizedTensor q = zeroed_tensor(cfg, rows, cols);
  const size_t ng = static_cast<size_t>(rows * q.groups_per_row);
  RAZERQ_CHECK(codes.size() == static_cast<size_t>(rows * cols) && params.size() == ng, "assemble: sizes");
  q.tensor_scale = impl_->ctx.tensor_scale;
  const ScaleKind kind = cfg.spec().scale_kind;
  const bool s16 = kind == ScaleKind::kFp16 || kind == ScaleKind::kFp16Razer;
  std::vector<uint8_t> sv_of_group(cfg.spec().has_special ? ng : 0);
  std::vector<uint8_t> z8(static_cast<size_t>(q.groups_per_row));
  for (int64_t r = 0; r < rows; ++r) {
    pack_row(codes.data() + r * cols, cols, cfg.bits, q.codes.data() + r * q.code_words_per_row);
    for (int64_t g = 0; g < q.groups_per_row; ++g) {
      const size_t gi = static_cast<size_t>(r * q.groups_per_row + g);
      if (s16) q.scales16[gi] = static_cast<uint16_t>(params[gi].enc); else q.scales8[gi] = static_cast<uint8_t>(params[gi].enc);
      if (!sv_of_group.empty()) sv_of_group[gi] = static_cast<uint8_t>(params[gi].sv);
      z8[static_cast<size_t>(g)] = static_cast<uint8_t>(params[gi].z);
    }
    if (cfg.asym && !cfg.opts.qq_zero_bits)
      pack_row(z8.data(), q.groups_per_row, cfg.bits, q.zeros.data() + r * q.zero_words_per_row());
  }
  place_sv_index(q, sv_of_group);
  return q;
}

// A second-level quantized value (scale or zero point) of group (row, group): SPEC 3.2.
static double qq_decode(const QuantizedTensor& q, const std::vector<uint32_t>& stream, const std::vector<uint16_t>& params,
                 int bits, int64_t row, int64_t group, bool sym_zero) {
  const uint32_t c = unpack_one(stream.data(), row * q.groups_per_row + group, bits);
  const size_t pi = static_cast<size_t>(((row / q.cfg.opts.qq_group) * q.groups_per_row + group) * 2);
  const double step = fp16_to_double(params[pi]), mn = fp16_to_double(params[pi + 1]);
  if (sym_zero) return std::ldexp(1.0, q.cfg.bits - 1) + (double(c) - std::ldexp(1.0, bits - 1)) * step;
  return mn + double(c) * step;
}

GroupParams group_params(const QuantizedTensor& q, int64_t row, int64_t group) {
  const size_t gi = static_cast<size_t>(row * q.groups_per_row + group);
  const ScaleKind kind = q.cfg.spec().scale_kind;
  if (kind == ScaleKind::kLutRow)
    throw_error(ErrorKind::kUnsupported, "group_params", "lut has a table per row, not group scales");
  const bool s16 = kind == ScaleKind::kFp16 || kind == ScaleKind::kFp16Razer;
  const uint32_t enc = q.cfg.opts.qq_scale_bits ? 0u : s16 ? q.scales16[gi] : q.scales8[gi];  // qq: decoded below
  GroupParams p{0, 0, 0};
  int sv_idx = -1;
  if (kind == ScaleKind::kFp16Razer && q.separate_sv()) {
    p.scale = fp16_to_double(q.scales16[gi]);  // plain fp16: the index lives in sv_index
    sv_idx = q.sv_index[gi];
  } else {
    p.scale = decode_scale(kind, enc, q.tensor_scale);
    if (kind == ScaleKind::kFp16Razer) sv_idx = static_cast<int>(((enc >> 15) << 1) | ((enc >> 14) & 1));
    if (kind == ScaleKind::kE8M0Razer || kind == ScaleKind::kE3M3RazerTensor) sv_idx = static_cast<int>(enc >> 6);
  }
  if (sv_idx >= 0) p.special_value = q.cfg.special_values[static_cast<size_t>(sv_idx)];
  const IntOptions& o = q.cfg.opts;
  if (o.qq_scale_bits) p.scale = qq_decode(q, q.qq_scales, q.qq_scale_params, o.qq_scale_bits, row, group, false);
  if (q.cfg.asym) {
    p.zero = o.qq_zero_bits ? qq_decode(q, q.qq_zeros, q.qq_zero_params, o.qq_zero_bits, row, group, o.qq_zero_sym)
                            : unpack_one(q.zeros.data() + row * q.zero_words_per_row(), group, q.cfg.bits);
  }
  return p;
}

int QuantizedTensor::outlier_at(int64_t r, int64_t blk) const {
  const int B = cfg.opts.outlier_block;
  if (!B) return -1;
  const int c = static_cast<int>(unpack_one(outlier_index.data(), r * outlier_blocks_per_row() + blk, cfg.opts.outlier_index_bits()));
  return c >= B ? -1 : c;
}

void dequantize_row_ref(const QuantizedTensor& q, int64_t row, double* out, bool with_sparse) {
  const uint32_t* words = q.codes.data() + row * q.code_words_per_row;
  if (with_sparse && q.sparse.present()) {
    dequantize_row_ref(q, row, out, false);
    for (int32_t i = q.sparse.row_ptr[static_cast<size_t>(row)]; i < q.sparse.row_ptr[static_cast<size_t>(row + 1)]; ++i)
      out[q.sparse.col[static_cast<size_t>(i)]] += fp16_to_double(q.sparse.val[static_cast<size_t>(i)]);
    return;
  }
  if (q.cfg.spec().scale_kind == ScaleKind::kLutRow) {
    const uint16_t* table = q.lut.data() + row * (int64_t(1) << q.cfg.bits);
    for (int64_t k = 0; k < q.cols; ++k) out[k] = fp16_to_double(table[unpack_one(words, k, q.cfg.bits)]);
    return;
  }
  const Grid grid = base_grid(q.cfg);
  const int mask = (1 << q.cfg.bits) - 1;
  const int offset = q.cfg.opts.offset ? static_cast<int>(unpack_one(q.offsets.data(), row, q.cfg.bits)) : 0;
  for (int64_t g = 0; g < q.groups_per_row; ++g) {
    const GroupParams p = group_params(q, row, g);
    const int64_t k0 = g * q.cfg.group, k1 = std::min(q.cols, k0 + q.cfg.group);
    for (int64_t k = k0; k < k1; ++k) {
      const int code = (static_cast<int>(unpack_one(words, k, q.cfg.bits)) - offset) & mask;
      const double base = code == grid.special_code ? p.special_value : grid.value[static_cast<size_t>(code)];
      out[k] = (base - p.zero) * p.scale;
    }
  }
  const int B = q.cfg.opts.outlier_block;
  for (int64_t blk = 0; blk < q.outlier_blocks_per_row(); ++blk) {
    const int c = q.outlier_at(row, blk);
    if (c >= 0) out[blk * B + c] = bf16_to_float(q.outlier_value[static_cast<size_t>(row * q.outlier_blocks_per_row() + blk)]);
  }
}

void dequantize_ref(const QuantizedTensor& q, double* out) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < q.rows; ++r) dequantize_row_ref(q, r, out + r * q.cols);
}

namespace {

// The bits after the last value of a flat stream must be zero.
bool stream_padding_clear(const std::vector<uint32_t>& w, int64_t n, int bits) {
  const int64_t used = n * bits;
  return used % 32 == 0 || w.empty() || (w.back() >> (used % 32)) == 0;
}

template <class Fail>
void validate_side_parts(const QuantizedTensor& q, const Fail& fail) {
  const IntOptions& o = q.cfg.opts;
  const int64_t ng = q.rows * q.groups_per_row;
  auto check_qq = [&](const char* what, const std::vector<uint32_t>& stream, const std::vector<uint16_t>& params,
                      int bits, bool sym) {
    if (stream.size() != static_cast<size_t>(stream_words(ng, bits)))
      fail(strprintf("second-level %s codes hold %zu words, expected %lld", what, stream.size(),
                     static_cast<long long>(stream_words(ng, bits))));
    if (!stream_padding_clear(stream, ng, bits)) fail(strprintf("second-level %s codes have nonzero padding bits", what));
    const size_t np = static_cast<size_t>(q.qq_runs() * q.groups_per_row * 2);
    if (params.size() != np) fail(strprintf("%zu second-level %s parameters, expected %zu", params.size(), what, np));
    for (size_t i = 0; i < np; i += 2) {
      const double step = fp16_to_double(params[i]), mn = fp16_to_double(params[i + 1]);
      if (!std::isfinite(step) || step < 0 || !std::isfinite(mn) || (sym ? mn != 0 : mn < 0))
        fail(strprintf("second-level %s parameters (step %g, min %g) of run %zu, group %zu are invalid", what, step, mn,
                       i / 2 / static_cast<size_t>(q.groups_per_row), i / 2 % static_cast<size_t>(q.groups_per_row)));
    }
  };
  if (o.qq_scale_bits) check_qq("scale", q.qq_scales, q.qq_scale_params, o.qq_scale_bits, false);
  else if (!q.qq_scales.empty() || !q.qq_scale_params.empty()) fail("second-level scales without qq_scale_bits");
  if (o.qq_zero_bits) check_qq("zero", q.qq_zeros, q.qq_zero_params, o.qq_zero_bits, o.qq_zero_sym);
  else if (!q.qq_zeros.empty() || !q.qq_zero_params.empty()) fail("second-level zero points without qq_zero_bits");
  if (o.outlier_block) {
    const int64_t nb = q.outlier_blocks_per_row(), n = q.rows * nb;
    const int ib = o.outlier_index_bits(), B = o.outlier_block;
    if (q.outlier_index.size() != static_cast<size_t>(stream_words(n, ib)) || q.outlier_value.size() != static_cast<size_t>(n))
      fail(strprintf("outlier parts hold %zu index words and %zu values, expected %lld and %lld", q.outlier_index.size(),
                     q.outlier_value.size(), static_cast<long long>(stream_words(n, ib)), static_cast<long long>(n)));
    if (!stream_padding_clear(q.outlier_index, n, ib)) fail("outlier index stream has nonzero padding bits");
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = i / nb, blk = i % nb;
      const int c = static_cast<int>(unpack_one(q.outlier_index.data(), i, ib));
      const uint16_t v = q.outlier_value[static_cast<size_t>(i)];
      if (c > B || (c < B && blk * B + c >= q.cols))
        fail(strprintf("outlier index %d of row %lld, block %lld is outside the block", c, static_cast<long long>(r),
                       static_cast<long long>(blk)));
      if (c == B && v != 0)
        fail(strprintf("row %lld, block %lld has no outlier but a nonzero value", static_cast<long long>(r), static_cast<long long>(blk)));
      if (!std::isfinite(bf16_to_float(v)))
        fail(strprintf("outlier value of row %lld, block %lld is not finite", static_cast<long long>(r), static_cast<long long>(blk)));
    }
  } else if (!q.outlier_index.empty() || !q.outlier_value.empty()) {
    fail("outliers without outlier_block");
  }
  if (o.offset) {
    if (q.offsets.size() != static_cast<size_t>(stream_words(q.rows, q.cfg.bits)))
      fail(strprintf("%zu offset words, expected %lld", q.offsets.size(), static_cast<long long>(stream_words(q.rows, q.cfg.bits))));
    if (!stream_padding_clear(q.offsets, q.rows, q.cfg.bits)) fail("offset stream has nonzero padding bits");
  } else if (!q.offsets.empty()) {
    fail("offsets without offset mode");
  }
}

template <class Fail>
void check_padding(const QuantizedTensor& q, const Fail& fail) {
  // Padding bits beyond the last code of each row must be zero (writers zero them).
  const int64_t used = q.cols * q.cfg.bits;
  if (used % 32)
    for (int64_t r = 0; r < q.rows; ++r) {
      const uint32_t last = q.codes[static_cast<size_t>((r + 1) * q.code_words_per_row - 1)];
      if (last >> (used % 32)) fail(strprintf("row %lld has nonzero padding bits", static_cast<long long>(r)));
    }
}

template <class Fail>
void validate_sparse(const QuantizedTensor& q, const Fail& fail) {
  const SparsePart& s = q.sparse;
  if (!s.present()) {
    if (!s.col.empty() || !s.val.empty()) fail("sparse entries without row pointers");
    return;
  }
  if (q.cfg.spec().scale_kind != ScaleKind::kLutRow) fail("a sparse part is only defined for lut");
  if (s.row_ptr.size() != static_cast<size_t>(q.rows + 1))
    fail(strprintf("sparse part has %zu row pointers, expected %lld", s.row_ptr.size(), static_cast<long long>(q.rows + 1)));
  if (s.val.size() != s.col.size())
    fail(strprintf("sparse part has %zu values for %zu column indices", s.val.size(), s.col.size()));
  if (s.row_ptr[0] != 0 || static_cast<size_t>(s.row_ptr.back()) != s.col.size())
    fail(strprintf("sparse row pointers run from %d to %d, expected 0 to %zu", s.row_ptr[0], s.row_ptr.back(), s.col.size()));
  for (int64_t r = 0; r < q.rows; ++r) {
    const int32_t b = s.row_ptr[static_cast<size_t>(r)], e = s.row_ptr[static_cast<size_t>(r + 1)];
    if (e < b) fail(strprintf("sparse row pointers decrease at row %lld", static_cast<long long>(r)));
    for (int32_t i = b; i < e; ++i) {
      const int32_t c = s.col[static_cast<size_t>(i)];
      if (c < 0 || c >= q.cols || (i > b && c <= s.col[static_cast<size_t>(i - 1)]))
        fail(strprintf("sparse entry %d (row %lld) has column %d (expected ascending in [0, %lld))", i,
                       static_cast<long long>(r), c, static_cast<long long>(q.cols)));
      if (!std::isfinite(fp16_to_double(s.val[static_cast<size_t>(i)])))
        fail(strprintf("sparse value %d (row %lld, column %d) is not finite", i, static_cast<long long>(r), c));
    }
  }
}

}  // namespace

void validate(const QuantizedTensor& q, const std::string& where) {
  auto fail = [&](const std::string& what) { throw Error(ErrorKind::kMalformedInput, where, what); };
  if (q.rows <= 0 || q.cols <= 0) fail("empty shape");
  if (q.cfg.group <= 0) fail(strprintf("group size %d", q.cfg.group));
  if (q.groups_per_row != (q.cols + q.cfg.group - 1) / q.cfg.group) fail("group count does not match the shape");
  if (q.code_words_per_row != words_per_row(q.cols, q.cfg.bits)) fail("code words per row do not match the shape");
  const size_t ng = static_cast<size_t>(q.rows * q.groups_per_row);
  if (q.codes.size() != static_cast<size_t>(q.rows * q.code_words_per_row))
    fail(strprintf("codes hold %zu words, expected %lld", q.codes.size(),
                   static_cast<long long>(q.rows * q.code_words_per_row)));
  const ScaleKind kind = q.cfg.spec().scale_kind;
  validate_sparse(q, fail);
  if (kind == ScaleKind::kLutRow) {
    if (q.groups_per_row != 1) fail("lut needs one group per row (group = cols)");
    const size_t nl = static_cast<size_t>(q.rows) << q.cfg.bits;
    if (q.lut.size() != nl) fail(strprintf("%zu table entries, expected %zu (2^%d per row)", q.lut.size(), nl, q.cfg.bits));
    if (!q.scales16.empty() || !q.scales8.empty() || !q.zeros.empty() || !q.sv_index.empty())
      fail("lut has no scales, zero points or special-value indices");
    for (size_t i = 0; i < nl; ++i)
      if (!std::isfinite(fp16_to_double(q.lut[i])))
        fail(strprintf("table entry %zu of row %zu is not finite", i % (size_t(1) << q.cfg.bits), i >> q.cfg.bits));
    check_padding(q, fail);
    return;
  }
  if (!q.lut.empty()) fail("only lut has per-row tables");
  const bool s16 = kind == ScaleKind::kFp16 || kind == ScaleKind::kFp16Razer;
  const IntOptions& o = q.cfg.opts;
  try {
    validate_int_options(q.cfg);
  } catch (const Error& e) {
    fail(e.what());
  }
  if (o.per_out_dim && q.cfg.group != q.cols) fail(strprintf("per_out_dim with group %d, expected K = %lld", q.cfg.group, static_cast<long long>(q.cols)));
  const size_t expect_scales = o.qq_scale_bits ? 0 : ng;
  if ((s16 ? q.scales16.size() : q.scales8.size()) != expect_scales)
    fail(strprintf("%zu scales, expected %zu", s16 ? q.scales16.size() : q.scales8.size(), expect_scales));
  validate_side_parts(q, fail);
  if (q.cfg.asym && q.zeros.size() != static_cast<size_t>(q.rows * q.zero_words_per_row()))
    fail(strprintf("%zu zero-point words, expected %lld", q.zeros.size(),
                   static_cast<long long>(q.rows * q.zero_words_per_row())));
  if (!q.sv_index.empty()) {
    if (kind != ScaleKind::kFp16Razer) fail("a separate special-value index is only defined for razer");
    if (q.sv_index.size() != ng) fail(strprintf("%zu special-value indices, expected %zu", q.sv_index.size(), ng));
    for (size_t i = 0; i < ng; ++i)
      if (q.sv_index[i] > 3) fail(strprintf("special-value index %d of group %zu is above 3", q.sv_index[i], i));
  }
  for (size_t i = 0; i < expect_scales; ++i) {
    double s;
    if (kind == ScaleKind::kFp16) {
      s = fp16_to_double(q.scales16[i]);
    } else if (kind == ScaleKind::kFp16Razer) {
      s = fp16_to_double(q.separate_sv() ? q.scales16[i] : (q.scales16[i] & 0x3fffu));
    } else if (kind == ScaleKind::kE8M0) {
      s = e8m0_to_double(q.scales8[i]);
    } else if (kind == ScaleKind::kE4M3Tensor) {
      if (q.scales8[i] & 0x80) fail(strprintf("E4M3 scale of group %zu is negative", i));
      s = e4m3_to_double(q.scales8[i]);
    } else {
      s = 1.0;
    }
    if (!std::isfinite(s) || s < 0)
      fail(strprintf("scale of group %zu (row %lld) is %g", i, static_cast<long long>(i / q.groups_per_row), s));
  }
  if ((kind == ScaleKind::kE4M3Tensor || kind == ScaleKind::kE3M3RazerTensor) &&
      (!std::isfinite(q.tensor_scale) || !(q.tensor_scale > 0)))
    fail(strprintf("tensor scale is %g (expected finite and > 0)", q.tensor_scale));
  check_padding(q, fail);
}

}  // namespace razerq::quantizer
