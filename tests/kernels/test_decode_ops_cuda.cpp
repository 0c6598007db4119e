// The decode-step kernels (kernels/cuda/decode_ops_cuda.hpp) against float64 CPU references, in
// fp16 and bf16: RMSNorm with and without the residual add, RoPE + K/V cache write, split-K
// attention of one query position (MHA, GQA, MQA; head_dim 2 .. 256; positions 0, inside and
// capacity - 1; automatic and forced split counts, more splits than keys included, and the single
// pass forced where its tile fits; the combining block's counters left zero and a second call on
// them equal bit for bit), SiLU * up (fused and separate layouts). Random inputs, odd sizes; every
// output (and the attention workspace) is poisoned with NaN before each run, with guard elements
// after it that must stay poisoned; cache slots that a step must not touch stay poisoned, and the
// slots after the position are NaN so that reading one would spoil the result. Label gpu; skips
// with the reason without a device (the argument checks run everywhere: they fail before any CUDA
// call).
//
// The references compute in float64 and round to the activation type T exactly where the kernels
// are specified to (the header: where libtorch's ops round). The kernels compute in fp32, so an
// intermediate that lies within an fp32 error of a rounding tie of T may round the other way:
// each check allows that one flip (bounds below) and also requires at least 99 % of the outputs
// to be bit-equal to the reference, which a kernel rounding at other places would not meet.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/half.hpp"
#include "kernels/cuda/decode_ops_cuda.hpp"
#include "kernels/cuda/dequant_cuda.hpp"
#include "tests/kernels/cuda_test_util.hpp"
#include "tests/kernels/kernel_test_util.hpp"

namespace razerq {
namespace {

using kernels::ActDType;
using kernels::DecodeShape;
using kernels::DeviceBuffer;

constexpr ActDType kDtypes[] = {ActDType::kFp16, ActDType::kBf16};
constexpr uint16_t kPoison = 0xffff;  // NaN in fp16 and in bf16
constexpr size_t kGuard = 64;         // poisoned elements after every output

uint16_t to_bits(double v, ActDType dt) { return dt == ActDType::kFp16 ? double_to_fp16(v) : double_to_bf16(v); }
double to_double(uint16_t b, ActDType dt) {
  return dt == ActDType::kFp16 ? static_cast<double>(fp16_to_float(b)) : static_cast<double>(bf16_to_float(b));
}
// v rounded once to T.
double rnd(double v, ActDType dt) { return to_double(to_bits(v, dt), dt); }
// The spacing of T's values at |v| (subnormal spacing below the normal range).
double ulp(double v, ActDType dt) {
  const int mant = dt == ActDType::kFp16 ? 10 : 7, emin = dt == ActDType::kFp16 ? -14 : -126;
  const double a = std::fabs(v);
  const int e = a > 0 && std::isfinite(a) ? std::max(std::ilogb(a), emin) : emin;
  return std::ldexp(1.0, e - mant);
}

std::vector<uint16_t> random_act(size_t n, double sd, ActDType dt, std::mt19937& rng) {
  std::normal_distribution<double> nd(0.0, sd);
  std::vector<uint16_t> v(n);
  for (auto& b : v) b = to_bits(nd(rng), dt);
  return v;
}

// A device array of n 2-byte elements followed by kGuard guards, poisoned when made.
struct DevArray {
  explicit DevArray(size_t n_) : n(n_), buf((n_ + kGuard) * 2) { poison(); }
  explicit DevArray(const std::vector<uint16_t>& host) : DevArray(host.size()) { upload(host); }
  void poison() { buf.fill_bytes(0xff); }
  void upload(const std::vector<uint16_t>& host) { buf.copy_from_host(host.data(), host.size() * 2); }
  // The n elements; the guards are checked here.
  std::vector<uint16_t> download(const std::string& what) const {
    kernels::cuda_synchronize();
    std::vector<uint16_t> h(n + kGuard);
    buf.copy_to_host(h.data(), h.size() * 2);
    for (size_t i = n; i < h.size(); ++i)
      if (h[i] != kPoison) {
        ADD_FAILURE() << what << ": guard element " << i - n << " after the output overwritten";
        break;
      }
    h.resize(n);
    return h;
  }
  void* ptr() const { return buf.data(); }
  size_t n;
  DeviceBuffer buf;
};

DeviceBuffer device_pos(int64_t p) {
  DeviceBuffer b(8);
  b.copy_from_host(&p, 8);
  return b;
}

// Element checks: |got - ref| <= bound, bit-equality counted.
struct Tally {
  std::string what;
  int64_t n = 0, exact = 0, bad = 0;
  double worst = 0;  // max |got - ref| / bound
  void check(uint16_t got_bits, double ref, double bound, ActDType dt, const std::function<std::string()>& where) {
    ++n;
    const double got = to_double(got_bits, dt);
    if (got_bits == to_bits(ref, dt)) ++exact;
    const double err = std::fabs(got - ref);
    if (std::isfinite(err) && bound > 0) worst = std::max(worst, err / bound);
    if (!(err <= bound) && bad++ < 5)
      ADD_FAILURE() << what << ": " << where() << " = " << got << ", reference " << ref << " (bound " << bound << ")";
  }
  void finish(double min_exact = 0.99) const {
    EXPECT_GT(n, 0) << what;
    EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << n << " outside the bound";
    EXPECT_GE(static_cast<double>(exact), min_exact * static_cast<double>(n))
        << what << ": only " << exact << " of " << n << " bit-equal to the reference";
    std::printf("  %-58s %8lld values, %6.2f %% bit-equal, worst error / bound %.3f\n", what.c_str(),
                static_cast<long long>(n), 100.0 * static_cast<double>(exact) / static_cast<double>(std::max<int64_t>(n, 1)),
                worst);
  }
};

// ---- RMSNorm --------------------------------------------------------------------------------------

TEST(DecodeOpsCuda, RmsNormMatchesFloat64) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  struct Case {
    int64_t rows, n;
    float eps;
  };
  const Case cases[] = {{1, 4096, 1e-5f}, {3, 1, 1e-6f}, {5, 383, 1e-6f}, {2, 4097, 1e-5f}, {16, 2048, 1e-6f}, {4, 64, 0.f}};
  for (ActDType dt : kDtypes) {
    for (bool add : {false, true}) {
      Tally ty{strprintf("%s rms_norm%s", kernels::act_dtype_name(dt), add ? " + residual add (y)" : "")};
      Tally th{strprintf("%s rms_norm + residual add (h written back)", kernels::act_dtype_name(dt))};
      for (const Case& c : cases) {
        const size_t N = static_cast<size_t>(c.rows * c.n);
        // Rows of different magnitudes (eps matters for the small ones).
        std::vector<uint16_t> h(N), delta = random_act(N, 1.0, dt, rng), w(static_cast<size_t>(c.n));
        const double mags[] = {1.0, 1e-3, 30.0};
        for (int64_t r = 0; r < c.rows; ++r) {
          const std::vector<uint16_t> row = random_act(static_cast<size_t>(c.n), mags[r % 3], dt, rng);
          std::copy(row.begin(), row.end(), h.begin() + r * c.n);
        }
        std::normal_distribution<double> wd(1.0, 0.2);
        for (auto& b : w) b = to_bits(wd(rng), dt);
        DevArray dh(h), dd(delta), dw(w), dy(N);
        if (add)
          kernels::add_rms_norm_cuda(dt, dh.ptr(), dd.ptr(), dw.ptr(), c.rows, c.n, c.eps, dy.ptr());
        else
          kernels::rms_norm_cuda(dt, dh.ptr(), dw.ptr(), c.rows, c.n, c.eps, dy.ptr());
        const std::vector<uint16_t> y = dy.download(ty.what), h_after = dh.download(th.what);
        if (!add) {
          EXPECT_EQ(h_after, h) << ty.what << ": x changed";
        }
        for (int64_t r = 0; r < c.rows; ++r) {
          std::vector<double> hr(static_cast<size_t>(c.n));
          double ss = 0;
          for (int64_t i = 0; i < c.n; ++i) {
            const size_t k = static_cast<size_t>(r * c.n + i);
            double v = to_double(h[k], dt);
            if (add) {
              v = rnd(v + to_double(delta[k], dt), dt);
              // fp32 sum then T: a double rounding, at most one unit of T away from the single one.
              th.check(h_after[k], v, ulp(v, dt), dt, [&] { return strprintf("h[%lld][%lld]", (long long)r, (long long)i); });
            }
            hr[static_cast<size_t>(i)] = v;
            ss += v * v;
          }
          const double inv = 1.0 / std::sqrt(ss / static_cast<double>(c.n) + static_cast<double>(c.eps));
          for (int64_t i = 0; i < c.n; ++i) {
            const size_t k = static_cast<size_t>(r * c.n + i);
            const double xn = rnd(hr[static_cast<size_t>(i)] * inv, dt), wv = to_double(w[static_cast<size_t>(i)], dt);
            const double ref = rnd(wv * xn, dt);
            // The normalised value may round one unit the other way (its fp32 error, and h one
            // unit off), which w carries into y, plus y's own rounding.
            const double bound = 3.0 * std::fabs(wv) * ulp(xn, dt) + ulp(ref, dt);
            ty.check(y[k], ref, bound, dt, [&] { return strprintf("y[%lld][%lld] (%lld x %lld)", (long long)r, (long long)i, (long long)c.rows, (long long)c.n); });
          }
        }
      }
      ty.finish();
      if (add) th.finish();
    }
  }
}

// ---- RoPE + cache write --------------------------------------------------------------------------

struct RopeCase {
  DecodeShape s;
  bool fused_layout;  // q/k/v as the column blocks of one [B, (nh + 2 nkv) hd] product, else separate padded arrays
};

TEST(DecodeOpsCuda, RopeKvWriteMatchesFloat64) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  const RopeCase cases[] = {{{1, 32, 32, 128, 300}, true},   // 7B-shaped MHA
                            {{3, 8, 2, 64, 37}, false},      // GQA
                            {{2, 7, 1, 12, 5}, true},        // MQA, head_dim 12
                            {{4, 2, 2, 2, 1}, false}};       // head_dim 2, capacity 1
  for (ActDType dt : kDtypes) {
    Tally tq{strprintf("%s rope: q", kernels::act_dtype_name(dt))};
    Tally tk{strprintf("%s rope: k written at pos", kernels::act_dtype_name(dt))};
    int64_t v_checked = 0;
    for (const RopeCase& rc : cases) {
      const DecodeShape& s = rc.s;
      const int64_t B = s.batch, nh = s.heads, nkv = s.kv_heads, hd = s.head_dim, cap = s.capacity, half = hd / 2;
      const std::string shape = strprintf("B %lld, heads %lld/%lld, hd %lld, cap %lld", (long long)B, (long long)nh,
                                          (long long)nkv, (long long)hd, (long long)cap);
      // Tables: random values, every column its own (a kernel reading the wrong half shows).
      std::uniform_real_distribution<double> ud(-1.0, 1.0);
      std::vector<uint16_t> cosv(static_cast<size_t>(cap * hd)), sinv(cosv.size());
      for (auto& b : cosv) b = to_bits(ud(rng), dt);
      for (auto& b : sinv) b = to_bits(ud(rng), dt);
      const DevArray dcos(cosv), dsin(sinv);
      const size_t cache_n = static_cast<size_t>(B * nkv * cap * hd);
      DevArray kc(cache_n), vc(cache_n);  // poisoned: slots never written must stay so
      // The expected caches (kPoison where not written yet), k as float64 references.
      std::vector<double> kref(cache_n, NAN);
      std::vector<uint16_t> vexp(cache_n, kPoison);
      std::vector<char> kset(cache_n, 0);

      const int64_t qs = rc.fused_layout ? (nh + 2 * nkv) * hd : nh * hd + 3;
      const int64_t ks = rc.fused_layout ? qs : nkv * hd + 5, vs = rc.fused_layout ? qs : nkv * hd + 1;
      std::vector<int64_t> positions = {0, cap - 1, cap / 2};
      std::sort(positions.begin(), positions.end());
      positions.erase(std::unique(positions.begin(), positions.end()), positions.end());
      std::shuffle(positions.begin(), positions.end(), rng);
      for (int64_t p : positions) {
        SCOPED_TRACE(shape + ", pos " + std::to_string(p));
        std::vector<uint16_t> qin, kin, vin;
        const void *qp, *kp, *vp;
        DevArray dqkv(1), dq(1), dk(1), dv(1);
        if (rc.fused_layout) {
          qin = random_act(static_cast<size_t>(B * qs), 1.0, dt, rng);
          kin = vin = qin;
          dqkv = DevArray(qin);
          qp = dqkv.ptr();
          kp = static_cast<const char*>(qp) + nh * hd * 2;
          vp = static_cast<const char*>(qp) + (nh + nkv) * hd * 2;
        } else {
          qin = random_act(static_cast<size_t>(B * qs), 1.0, dt, rng);
          kin = random_act(static_cast<size_t>(B * ks), 1.0, dt, rng);
          vin = random_act(static_cast<size_t>(B * vs), 1.0, dt, rng);
          dq = DevArray(qin), dk = DevArray(kin), dv = DevArray(vin);
          qp = dq.ptr(), kp = dk.ptr(), vp = dv.ptr();
        }
        const int64_t k_off = rc.fused_layout ? nh * hd : 0, v_off = rc.fused_layout ? (nh + nkv) * hd : 0;
        DevArray qout(static_cast<size_t>(B * nh * hd));
        const DeviceBuffer dpos = device_pos(p);
        kernels::rope_kv_write_cuda(dt, s, qp, qs, kp, ks, vp, vs, dcos.ptr(), dsin.ptr(), dpos.as<int64_t>(), qout.ptr(),
                                    kc.ptr(), vc.ptr());
        const std::vector<uint16_t> qo = qout.download(tq.what);
        // rope of one head: in(d) the inputs, out(d, ref) the check.
        auto rope = [&](const std::vector<uint16_t>& in, int64_t base, const std::function<void(int64_t, double)>& out) {
          for (int64_t d = 0; d < hd; ++d) {
            const double t = to_double(in[static_cast<size_t>(base + d)], dt);
            const double rot = d < half ? -to_double(in[static_cast<size_t>(base + d + half)], dt)
                                        : to_double(in[static_cast<size_t>(base + d - half)], dt);
            const double c = to_double(cosv[static_cast<size_t>(p * hd + d)], dt), sn = to_double(sinv[static_cast<size_t>(p * hd + d)], dt);
            out(d, rnd(rnd(t * c, dt) + rnd(rot * sn, dt), dt));
          }
        };
        for (int64_t b = 0; b < B; ++b) {
          for (int64_t h = 0; h < nh; ++h)
            rope(qin, b * qs + h * hd, [&](int64_t d, double ref) {
              // The products are exact in fp32; the fp32 sum rounded to T may differ by one unit.
              tq.check(qo[static_cast<size_t>((b * nh + h) * hd + d)], ref, ulp(ref, dt), dt,
                       [&] { return strprintf("q_out[%lld][%lld][%lld]", (long long)b, (long long)h, (long long)d); });
            });
          for (int64_t j = 0; j < nkv; ++j) {
            const size_t slot = static_cast<size_t>(((b * nkv + j) * cap + p) * hd);
            rope(kin, b * ks + k_off + j * hd, [&](int64_t d, double ref) {
              kref[slot + static_cast<size_t>(d)] = ref;
              kset[slot + static_cast<size_t>(d)] = 1;
            });
            for (int64_t d = 0; d < hd; ++d) vexp[slot + static_cast<size_t>(d)] = vin[static_cast<size_t>(b * vs + v_off + j * hd + d)];
          }
        }
        // The whole caches: the slots written so far hold their values, the rest the poison.
        const std::vector<uint16_t> kgot = kc.download(tk.what), vgot = vc.download("rope: v cache");
        int64_t untouched_bad = 0;
        for (size_t i = 0; i < cache_n; ++i) {
          if (kset[i]) {
            tk.check(kgot[i], kref[i], ulp(kref[i], dt), dt, [&] { return strprintf("k_cache element %zu", i); });
          } else if (kgot[i] != kPoison) {
            ++untouched_bad;
          }
        }
        EXPECT_EQ(untouched_bad, 0) << "k_cache slots other than the positions written were changed";
        EXPECT_EQ(vgot, vexp) << "v_cache differs from the copies expected at the positions written";
        v_checked += B * nkv * hd;
      }
      // A position outside [0, capacity): nothing written to the caches, q_out NaN.
      for (int64_t bad_pos : {cap, int64_t{-1}}) {
        std::vector<uint16_t> k_before = kc.download("k cache"), v_before = vc.download("v cache");
        const std::vector<uint16_t> qin = random_act(static_cast<size_t>(B * ((nh + 2 * nkv) * hd)), 1.0, dt, rng);
        const DevArray dqkv(qin);
        DevArray qout(static_cast<size_t>(B * nh * hd));
        const DeviceBuffer dpos = device_pos(bad_pos);
        const int64_t st = (nh + 2 * nkv) * hd;
        kernels::rope_kv_write_cuda(dt, s, dqkv.ptr(), st, static_cast<const char*>(dqkv.ptr()) + nh * hd * 2, st,
                                    static_cast<const char*>(dqkv.ptr()) + (nh + nkv) * hd * 2, st, dcos.ptr(), dsin.ptr(),
                                    dpos.as<int64_t>(), qout.ptr(), kc.ptr(), vc.ptr());
        const std::vector<uint16_t> qo = qout.download("rope q_out at a bad position");
        int64_t not_nan = 0;
        for (uint16_t b : qo) not_nan += !std::isnan(to_double(b, dt));
        EXPECT_EQ(not_nan, 0) << shape << " pos " << bad_pos << ": q_out should be NaN";
        EXPECT_EQ(kc.download("k cache"), k_before) << shape << " pos " << bad_pos << ": k cache changed";
        EXPECT_EQ(vc.download("v cache"), v_before) << shape << " pos " << bad_pos << ": v cache changed";
      }
    }
    tq.finish();
    tk.finish();
    EXPECT_GT(v_checked, 0);
  }
}

// ---- attention ------------------------------------------------------------------------------------

struct AttnCase {
  DecodeShape s;
  std::vector<int64_t> positions;
  std::vector<int> splits;  // 0: decode_attention_splits; -1: 1 with the single pass forced (where it fits)
  double q_sd;              // larger: peakier softmax
};

// A split entry of the cases: the count to pass, with the single-pass mode set for it.
int splits_for(int sp, const DecodeShape& s) {
  kernels::set_attention_single_pass(sp < 0 ? 1 : 0);
  return sp > 0 ? sp : sp < 0 ? 1 : kernels::decode_attention_splits(s);
}
std::string splits_label(int sp, int splits) { return sp < 0 ? "1 (single pass)" : std::to_string(splits); }

TEST(DecodeOpsCuda, DecodeAttentionMatchesFloat64) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  const AttnCase cases[] = {
      {{1, 32, 32, 128, 2048}, {0, 200, 1999, 2047}, {0, 7}, 1.0},  // 7B-shaped MHA
      {{1, 32, 32, 128, 264}, {0, 191, 263}, {0, -1}, 1.0},         // the decode bench's capacity
      {{3, 8, 2, 64, 37}, {0, 17, 36}, {0, 1, 3, 64, -1}, 1.0},      // GQA 4, more splits than keys
      {{2, 12, 1, 80, 100}, {0, 63, 99}, {0, 5, -1}, 2.0},           // MQA 12: two head blocks (8 + 4), hd 80
      {{2, 4, 4, 256, 70}, {69, 5}, {0, 2, -1}, 4.0},                // the largest head_dim, peaky
      {{4, 8, 8, 128, 300}, {150}, {0, -1}, 1.0},                    // batch 4
      {{1, 2, 1, 12, 1}, {0}, {0, 3, -1}, 1.0},                      // capacity 1
      {{2, 5, 5, 2, 9}, {8, 3}, {0, -1}, 1.0}};                      // head_dim 2
  for (ActDType dt : kDtypes) {
    Tally t{strprintf("%s decode attention", kernels::act_dtype_name(dt))};
    for (const AttnCase& ac : cases) {
      const DecodeShape& s = ac.s;
      const int64_t B = s.batch, nh = s.heads, nkv = s.kv_heads, hd = s.head_dim, cap = s.capacity, g = nh / nkv;
      const size_t cache_n = static_cast<size_t>(B * nkv * cap * hd), q_n = static_cast<size_t>(B * nh * hd);
      for (int64_t p : ac.positions) {
        // Keys and values 0 .. p random; the slots after p NaN (reading one would spoil the output).
        std::vector<uint16_t> kh = random_act(cache_n, 1.0, dt, rng), vh = random_act(cache_n, 1.0, dt, rng);
        for (size_t i = 0; i < cache_n; ++i)
          if (static_cast<int64_t>(i / static_cast<size_t>(hd)) % cap > p) kh[i] = vh[i] = kPoison;
        const std::vector<uint16_t> qh = random_act(q_n, ac.q_sd, dt, rng);
        const DevArray dk(kh), dv(vh), dq(qh);
        const DeviceBuffer dpos = device_pos(p);
        // The float64 reference and its error bound per output.
        std::vector<double> ref(q_n), bound(q_n);
        const double scale = 1.0 / std::sqrt(static_cast<double>(hd)), u32 = std::ldexp(1.0, -24);
        for (int64_t b = 0; b < B; ++b)
          for (int64_t h = 0; h < nh; ++h) {
            const int64_t kvh = h / g;
            const size_t qo = static_cast<size_t>((b * nh + h) * hd);
            const size_t kv0 = static_cast<size_t>((b * nkv + kvh) * cap * hd);
            std::vector<double> sc(static_cast<size_t>(p + 1));
            double mx = -INFINITY, es = 0;  // es: bound of a score's fp32 error
            for (int64_t j = 0; j <= p; ++j) {
              double dot = 0, adot = 0;
              for (int64_t d = 0; d < hd; ++d) {
                const double x = to_double(qh[qo + static_cast<size_t>(d)], dt) *
                                 to_double(kh[kv0 + static_cast<size_t>(j * hd + d)], dt);
                dot += x;
                adot += std::fabs(x);
              }
              sc[static_cast<size_t>(j)] = dot * scale;
              mx = std::max(mx, dot * scale);
              es = std::max(es, static_cast<double>(hd + 2) * u32 * adot * scale);
            }
            double l = 0;
            for (double& x : sc) l += (x = std::exp(x - mx));
            for (int64_t d = 0; d < hd; ++d) {
              double o = 0, ao = 0;
              for (int64_t j = 0; j <= p; ++j) {
                const double vv = to_double(vh[kv0 + static_cast<size_t>(j * hd + d)], dt);
                o += sc[static_cast<size_t>(j)] * vv;
                ao += sc[static_cast<size_t>(j)] * std::fabs(vv);
              }
              o /= l, ao /= l;
              ref[qo + static_cast<size_t>(d)] = rnd(o, dt);
              // Score errors move the weights by up to 2 es relatively; fp32 sums over the keys, the
              // splits and the exponentials add (p + 64) units of 2^-24 of sum p |v|; T's rounding.
              bound[qo + static_cast<size_t>(d)] = 2.0 * es * (ao + std::fabs(o)) +
                                                   static_cast<double>(p + 64) * u32 * ao + ulp(o, dt);
            }
          }
        for (int sp : ac.splits) {
          const int splits = splits_for(sp, s);
          const size_t ws_bytes = kernels::decode_attention_workspace_bytes(s, splits);
          DeviceBuffer ws(ws_bytes);
          ws.fill_bytes(0xff);  // NaN floats: every entry the combine reads must have been written
          const size_t cb = kernels::decode_attention_counter_bytes(s);
          const std::vector<uint8_t> zeros(cb, 0);
          ws.copy_from_host(zeros.data(), cb);  // the counters start at zero
          std::vector<uint16_t> o;
          for (int run = 0; run < 2; ++run) {
            DevArray out(q_n);
            kernels::decode_attention_cuda(dt, s, dq.ptr(), dk.ptr(), dv.ptr(), dpos.as<int64_t>(), splits, ws.data(),
                                           ws_bytes, out.ptr());
            const std::vector<uint16_t> got = out.download(t.what);
            std::vector<uint8_t> cnt(cb);
            ws.copy_to_host(cnt.data(), cb);
            EXPECT_EQ(cnt, zeros) << t.what << ": the call left its counters non-zero (splits "
                                  << splits_label(sp, splits) << ")";
            // The second call reuses the counters the first left: the same output bit for bit,
            // whichever block combined.
            if (run == 1) {
              EXPECT_EQ(got, o) << t.what << ": a second call differs (splits " << splits_label(sp, splits) << ")";
            }
            o = got;
          }
          kernels::set_attention_single_pass(0);
          for (size_t i = 0; i < q_n; ++i)
            t.check(o[i], ref[i], bound[i], dt, [&] {
              return strprintf("out[%zu][%zu][%zu] (B %lld, heads %lld/%lld, hd %lld, cap %lld, pos %lld, splits %s)",
                               i / static_cast<size_t>(nh * hd), i / static_cast<size_t>(hd) % static_cast<size_t>(nh),
                               i % static_cast<size_t>(hd), (long long)B, (long long)nh, (long long)nkv, (long long)hd,
                               (long long)cap, (long long)p, splits_label(sp, splits).c_str());
            });
        }
      }
      // A position outside [0, capacity): NaN outputs.
      for (int64_t bad_pos : {cap, int64_t{-1}}) {
        const std::vector<uint16_t> kh = random_act(cache_n, 1.0, dt, rng), qh = random_act(q_n, 1.0, dt, rng);
        const DevArray dk(kh), dq(qh);
        const DeviceBuffer dpos = device_pos(bad_pos);
        const int splits = kernels::decode_attention_splits(s);
        const size_t ws_bytes = kernels::decode_attention_workspace_bytes(s, splits);
        DeviceBuffer ws(ws_bytes);
        ws.fill_bytes(0);
        DevArray out(q_n);
        kernels::decode_attention_cuda(dt, s, dq.ptr(), dk.ptr(), dk.ptr(), dpos.as<int64_t>(), splits, ws.data(), ws_bytes,
                                       out.ptr());
        int64_t not_nan = 0;
        for (uint16_t b : out.download("attention at a bad position")) not_nan += !std::isnan(to_double(b, dt));
        EXPECT_EQ(not_nan, 0) << "pos " << bad_pos << " of capacity " << cap << ": the output should be NaN";
      }
    }
    // One rounding only, after long fp32 sums: a flip needs the fp32 result within its error of a
    // tie of T, which over 2048 keys happens for a few percent of the fp16 outputs.
    t.finish(0.9);
  }
}

// decode_rope_attention_cuda against rope_kv_write_cuda + decode_attention_cuda (both checked
// against float64 above): out and both caches equal bit for bit, slot p written, no other slot
// touched; a bad position leaves the caches alone and gives NaN.
TEST(DecodeOpsCuda, RopeAttentionEqualsRopeThenAttention) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  struct Case {
    DecodeShape s;
    std::vector<int64_t> positions;
    std::vector<int> splits;  // as AttnCase's
  };
  const Case cases[] = {{{1, 32, 32, 128, 300}, {0, 150, 299}, {0, 1, -1}},  // 7B-shaped MHA
                        {{4, 32, 32, 128, 264}, {191}, {0}},                  // batch 4: the single pass by the rule (H100)
                        {{3, 8, 2, 64, 37}, {0, 17, 36}, {0, 3, 64, -1}},     // GQA 4, more splits than keys
                        {{2, 12, 1, 80, 100}, {63, 99}, {0, 7, -1}},          // MQA: two head blocks, hd 80
                        {{1, 4, 4, 256, 20}, {19}, {0, -1}}};                 // the largest head_dim
  for (ActDType dt : kDtypes) {
    int64_t compared = 0;
    for (const Case& c : cases) {
      const DecodeShape& s = c.s;
      const int64_t B = s.batch, nh = s.heads, nkv = s.kv_heads, hd = s.head_dim, cap = s.capacity;
      const int64_t row = (nh + 2 * nkv) * hd;  // the fused q/k/v product's row
      const size_t cache_n = static_cast<size_t>(B * nkv * cap * hd), q_n = static_cast<size_t>(B * nh * hd);
      std::vector<uint16_t> cs(static_cast<size_t>(cap * hd)), sn(cs.size());
      for (int64_t p = 0; p < cap; ++p)
        for (int64_t i = 0; i < hd; ++i) {
          const double ang = static_cast<double>(p) *
                             std::pow(10000.0, -2.0 * static_cast<double>(i % (hd / 2)) / static_cast<double>(hd));
          cs[static_cast<size_t>(p * hd + i)] = to_bits(std::cos(ang), dt);
          sn[static_cast<size_t>(p * hd + i)] = to_bits(std::sin(ang), dt);
        }
      const DevArray dcos(cs), dsin(sn);
      for (int64_t pos : c.positions)
        for (int sp : c.splits) {
          const int splits = splits_for(sp, s);
          const std::string what = strprintf("%s B %lld heads %lld/%lld hd %lld cap %lld pos %lld splits %s",
                                             kernels::act_dtype_name(dt), (long long)B, (long long)nh, (long long)nkv,
                                             (long long)hd, (long long)cap, (long long)pos,
                                             splits_label(sp, splits).c_str());
          // Slots before pos random, pos and after poisoned.
          std::vector<uint16_t> kh = random_act(cache_n, 1.0, dt, rng), vh = random_act(cache_n, 1.0, dt, rng);
          for (size_t i = 0; i < cache_n; ++i)
            if (static_cast<int64_t>(i / static_cast<size_t>(hd)) % cap >= pos) kh[i] = vh[i] = kPoison;
          const std::vector<uint16_t> qkv = random_act(static_cast<size_t>(B * row), 1.0, dt, rng);
          const DevArray dqkv(qkv);
          const DeviceBuffer dpos = device_pos(pos);
          const char* base = static_cast<const char*>(dqkv.ptr());
          const void *kp = base + nh * hd * 2, *vp = base + (nh + nkv) * hd * 2;
          const size_t ws_bytes = kernels::decode_attention_workspace_bytes(s, splits);
          const size_t cb = kernels::decode_attention_counter_bytes(s);
          const std::vector<uint8_t> zeros(cb, 0);
          std::vector<uint16_t> out[2], kc[2], vc[2];
          for (int fused = 0; fused < 2; ++fused) {
            DevArray dk(kh), dv(vh), dout(q_n), dq(q_n);
            DeviceBuffer ws(ws_bytes);
            ws.fill_bytes(0xff);
            ws.copy_from_host(zeros.data(), cb);
            if (fused) {
              kernels::decode_rope_attention_cuda(dt, s, base, row, kp, row, vp, row, dcos.ptr(), dsin.ptr(),
                                                  dpos.as<int64_t>(), dk.ptr(), dv.ptr(), splits, ws.data(), ws_bytes,
                                                  dout.ptr());
            } else {
              kernels::rope_kv_write_cuda(dt, s, base, row, kp, row, vp, row, dcos.ptr(), dsin.ptr(), dpos.as<int64_t>(),
                                          dq.ptr(), dk.ptr(), dv.ptr());
              kernels::decode_attention_cuda(dt, s, dq.ptr(), dk.ptr(), dv.ptr(), dpos.as<int64_t>(), splits, ws.data(),
                                             ws_bytes, dout.ptr());
            }
            out[fused] = dout.download(what);
            kc[fused] = dk.download(what);
            vc[fused] = dv.download(what);
            std::vector<uint8_t> cnt(cb);
            ws.copy_to_host(cnt.data(), cb);
            EXPECT_EQ(cnt, zeros) << what << ": counters left non-zero";
          }
          kernels::set_attention_single_pass(0);
          EXPECT_EQ(out[1], out[0]) << what << ": out differs";
          EXPECT_EQ(kc[1], kc[0]) << what << ": the key cache differs";
          EXPECT_EQ(vc[1], vc[0]) << what << ": the value cache differs";
          int64_t nan_out = 0;
          for (uint16_t b : out[1]) nan_out += std::isnan(to_double(b, dt));
          EXPECT_EQ(nan_out, 0) << what << ": NaN outputs (a poisoned slot was read)";
          compared += static_cast<int64_t>(q_n);
        }
      // A bad position: NaN out, caches untouched.
      for (int64_t bad : {cap, int64_t{-1}}) {
        const std::vector<uint16_t> kh = random_act(cache_n, 1.0, dt, rng), vh = random_act(cache_n, 1.0, dt, rng);
        const std::vector<uint16_t> qkv = random_act(static_cast<size_t>(B * row), 1.0, dt, rng);
        const DevArray dqkv(qkv), dk(kh), dv(vh);
        DevArray dout(q_n);
        const DeviceBuffer dpos = device_pos(bad);
        const int splits = kernels::decode_attention_splits(s);
        const size_t ws_bytes = kernels::decode_attention_workspace_bytes(s, splits);
        DeviceBuffer ws(ws_bytes);
        ws.fill_bytes(0);
        const char* base = static_cast<const char*>(dqkv.ptr());
        kernels::decode_rope_attention_cuda(dt, s, base, row, base + nh * hd * 2, row, base + (nh + nkv) * hd * 2, row,
                                            dcos.ptr(), dsin.ptr(), dpos.as<int64_t>(), dk.ptr(), dv.ptr(), splits,
                                            ws.data(), ws_bytes, dout.ptr());
        int64_t not_nan = 0;
        for (uint16_t b : dout.download("rope attention at a bad position")) not_nan += !std::isnan(to_double(b, dt));
        EXPECT_EQ(not_nan, 0) << "pos " << bad << ": the output should be NaN";
        EXPECT_EQ(dk.download("k cache"), kh) << "pos " << bad << ": the key cache changed";
        EXPECT_EQ(dv.download("v cache"), vh) << "pos " << bad << ": the value cache changed";
      }
    }
    std::printf("  %s rope + attention: %lld outputs compared with the two-launch path\n", kernels::act_dtype_name(dt),
                static_cast<long long>(compared));
  }
}

// ---- SiLU * up ------------------------------------------------------------------------------------

TEST(DecodeOpsCuda, SiluMulMatchesFloat64) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(test::test_seed());
  for (ActDType dt : kDtypes) {
    Tally t{strprintf("%s silu_mul", kernels::act_dtype_name(dt))};
    for (int64_t rows : {1, 3, 16})
      for (int64_t n : {1, 173, 11008})
        for (bool fused : {true, false}) {
          // fused: [rows, 2n], up = gate + n; separate: two arrays with a padded row stride.
          const int64_t stride = fused ? 2 * n : n + 7;
          const std::vector<uint16_t> gh = random_act(static_cast<size_t>(rows * stride), 3.0, dt, rng);
          const std::vector<uint16_t> uh = fused ? gh : random_act(static_cast<size_t>(rows * stride), 1.0, dt, rng);
          const DevArray dg(gh), du(uh);
          DevArray out(static_cast<size_t>(rows * n));
          const void* up = fused ? static_cast<const void*>(static_cast<const char*>(dg.ptr()) + n * 2) : du.ptr();
          kernels::silu_mul_cuda(dt, dg.ptr(), up, stride, rows, n, out.ptr());
          const std::vector<uint16_t> o = out.download(t.what);
          const int64_t up_off = fused ? n : 0;
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t i = 0; i < n; ++i) {
              const double gv = to_double(gh[static_cast<size_t>(r * stride + i)], dt);
              const double uv = to_double(uh[static_cast<size_t>(r * stride + up_off + i)], dt);
              const double a = rnd(gv / (1.0 + std::exp(-gv)), dt);
              const double ref = rnd(a * uv, dt);
              // silu in fp32 may round one unit the other way, which up carries; out's rounding.
              t.check(o[static_cast<size_t>(r * n + i)], ref, std::fabs(uv) * ulp(a, dt) + ulp(ref, dt), dt,
                      [&] { return strprintf("out[%lld][%lld] (%lld x %lld, %s)", (long long)r, (long long)i, (long long)rows, (long long)n, fused ? "fused" : "separate"); });
            }
        }
    t.finish();
  }
}

// ---- argument errors (no device needed: they throw before any CUDA call) --------------------------

TEST(DecodeOpsCuda, BadArgumentsThrowBeforeLaunching) {
  alignas(16) static uint16_t buf[64];
  alignas(16) static int64_t pos[1];
  void* p = buf;
  const int64_t* ps = pos;
  auto kind = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return static_cast<int>(e.kind());
    }
    return -1;
  };
  const int inv = static_cast<int>(ErrorKind::kInvalidArgument), uns = static_cast<int>(ErrorKind::kUnsupported);
  const ActDType f16 = ActDType::kFp16;
  // RMSNorm: null pointers, misaligned, n 0, y overlapping x, delta overlapping h.
  EXPECT_EQ(kind([&] { kernels::rms_norm_cuda(f16, nullptr, p, 1, 8, 1e-6f, buf + 16); }), inv);
  EXPECT_EQ(kind([&] { kernels::rms_norm_cuda(f16, p, p, 1, 0, 1e-6f, buf + 16); }), inv);
  EXPECT_EQ(kind([&] { kernels::rms_norm_cuda(f16, reinterpret_cast<char*>(p) + 1, p, 1, 8, 1e-6f, buf + 16); }), inv);
  EXPECT_EQ(kind([&] { kernels::rms_norm_cuda(f16, p, p, 1, 8, 1e-6f, buf + 4); }), inv);
  EXPECT_EQ(kind([&] { kernels::rms_norm_cuda(f16, p, p, 1, 8, -1.f, buf + 16); }), inv);
  EXPECT_EQ(kind([&] { kernels::add_rms_norm_cuda(f16, p, buf + 2, p, 1, 8, 1e-6f, buf + 16); }), inv);
  // RoPE: GQA not dividing, odd head_dim, short strides, head_dim too large, null pos.
  const DecodeShape ok{1, 4, 2, 4, 8};
  auto rope = [&](const DecodeShape& s, int64_t qs, const int64_t* pp) {
    kernels::rope_kv_write_cuda(f16, s, p, qs, p, 8, p, 8, p, p, pp, p, p, p);
  };
  EXPECT_EQ(kind([&] { rope({1, 4, 3, 4, 8}, 16, ps); }), inv);
  EXPECT_EQ(kind([&] { rope({1, 4, 2, 3, 8}, 16, ps); }), inv);
  EXPECT_EQ(kind([&] { rope(ok, 15, ps); }), inv);
  EXPECT_EQ(kind([&] { rope({1, 4, 2, 258, 8}, 4 * 258, ps); }), uns);
  EXPECT_EQ(kind([&] { rope(ok, 16, nullptr); }), inv);
  EXPECT_EQ(kind([&] { rope({0, 4, 2, 4, 8}, 16, ps); }), inv);
  // Attention: splits out of range, a workspace too small, out overlapping q.
  const size_t ws = kernels::decode_attention_workspace_bytes(ok, 2);
  EXPECT_EQ(kernels::decode_attention_counter_bytes(ok), 16u);  // 2 counters, rounded up to 16 bytes
  EXPECT_EQ(ws, 16 + sizeof(float) * 1 * 4 * 2 * (4 + 2));
  EXPECT_EQ(kind([&] { kernels::decode_attention_cuda(f16, ok, p, p, p, ps, 2, buf + 1, ws, buf + 32); }), inv);
  EXPECT_EQ(kind([&] { kernels::decode_attention_cuda(f16, ok, p, p, p, ps, 0, p, ws, buf + 32); }), inv);
  EXPECT_EQ(kind([&] { kernels::decode_attention_cuda(f16, ok, p, p, p, ps, kernels::kDecodeMaxSplits + 1, p, ws, buf + 32); }), inv);
  EXPECT_EQ(kind([&] { kernels::decode_attention_cuda(f16, ok, p, p, p, ps, 2, p, ws - 1, buf + 32); }), inv);
  EXPECT_EQ(kind([&] { kernels::decode_attention_cuda(f16, ok, p, p, p, ps, 2, p, ws, buf + 8); }), inv);
  EXPECT_EQ(kind([&] { (void)kernels::decode_attention_workspace_bytes(ok, 0); }), inv);
  // RoPE + attention: odd head_dim, a short q stride, q overlapping out.
  auto rope_attn = [&](const DecodeShape& s, int64_t qs, void* out) {
    kernels::decode_rope_attention_cuda(f16, s, p, qs, p, 8, p, 8, p, p, ps, p, p, 2, p,
                                        kernels::decode_attention_workspace_bytes({1, 4, 2, 4, 8}, 2), out);
  };
  EXPECT_EQ(kind([&] { rope_attn({1, 4, 2, 3, 8}, 16, buf + 32); }), inv);
  EXPECT_EQ(kind([&] { rope_attn(ok, 15, buf + 32); }), inv);
  EXPECT_EQ(kind([&] { rope_attn(ok, 16, buf + 8); }), inv);
  // SiLU: stride below n, null.
  EXPECT_EQ(kind([&] { kernels::silu_mul_cuda(f16, p, p, 7, 1, 8, buf + 32); }), inv);
  EXPECT_EQ(kind([&] { kernels::silu_mul_cuda(f16, nullptr, p, 8, 1, 8, buf + 32); }), inv);
  // Zero rows: nothing to do, no launch, no error.
  EXPECT_EQ(kind([&] { kernels::silu_mul_cuda(f16, nullptr, nullptr, 8, 0, 8, nullptr); }), -1);
  EXPECT_EQ(kind([&] { kernels::rms_norm_cuda(f16, nullptr, nullptr, 0, 8, 1e-6f, nullptr); }), -1);
}

}  // namespace
}  // namespace razerq
