#include "quantizer/hadamard.hpp"

#include <cmath>

#include "common/error.hpp"

namespace razerq::quantizer {

namespace {

// Paley constructions are tried up to this order (the Jacobsthal matrix is built in O(q^2)).
constexpr int64_t kMaxPaleyOrder = 8192;

// q = p^e with p prime: returns p (and e), or 0 when q is not a prime power.
int64_t prime_power_base(int64_t q, int* e) {
  if (q < 2) return 0;
  int64_t p = 0;
  for (int64_t d = 2; d * d <= q; ++d)
    if (q % d == 0) {
      p = d;
      break;
    }
  if (p == 0) p = q;  // q is prime
  int k = 0;
  int64_t r = q;
  while (r % p == 0) r /= p, ++k;
  if (r != 1) return 0;
  *e = k;
  return p;
}

// GF(p^e): an element is the integer whose base-p digits are its polynomial coefficients
// (lowest degree first), reduced modulo a monic irreducible polynomial of degree e.
class FiniteField {
 public:
  FiniteField(int64_t p, int e) : p_(p), e_(e), q_(1) {
    for (int i = 0; i < e; ++i) q_ *= p;
    if (e > 1) find_modulus();
  }
  int64_t size() const { return q_; }
  int64_t sub(int64_t a, int64_t b) const {
    int64_t r = 0, m = 1;
    for (int i = 0; i < e_; ++i, m *= p_) {
      const int64_t d = ((a / m) % p_ - (b / m) % p_ + p_) % p_;
      r += d * m;
    }
    return r;
  }
  int64_t mul(int64_t a, int64_t b) const {
    if (e_ == 1) return a * b % p_;
    const std::vector<int64_t> x = digits(a), y = digits(b);
    std::vector<int64_t> prod(static_cast<size_t>(2 * e_ - 1), 0);
    for (int i = 0; i < e_; ++i)
      for (int j = 0; j < e_; ++j) prod[static_cast<size_t>(i + j)] = (prod[static_cast<size_t>(i + j)] + x[static_cast<size_t>(i)] * y[static_cast<size_t>(j)]) % p_;
    reduce(prod, modulus_);
    int64_t r = 0, m = 1;
    for (int i = 0; i < e_; ++i, m *= p_) r += prod[static_cast<size_t>(i)] * m;
    return r;
  }

 private:
  std::vector<int64_t> digits(int64_t a) const {
    std::vector<int64_t> d(static_cast<size_t>(e_));
    for (int i = 0; i < e_; ++i, a /= p_) d[static_cast<size_t>(i)] = a % p_;
    return d;
  }
  // a := a mod f (f monic, coefficients lowest first); a keeps deg(f) coefficients.
  void reduce(std::vector<int64_t>& a, const std::vector<int64_t>& f) const {
    const int df = static_cast<int>(f.size()) - 1;
    for (int i = static_cast<int>(a.size()) - 1; i >= df; --i) {
      const int64_t c = a[static_cast<size_t>(i)];
      if (c == 0) continue;
      for (int j = 0; j <= df; ++j) {
        int64_t& t = a[static_cast<size_t>(i - df + j)];
        t = ((t - c * f[static_cast<size_t>(j)]) % p_ + p_) % p_;
      }
    }
    a.resize(static_cast<size_t>(df));
  }
  // True when the monic polynomial f has no monic factor of degree 1 .. deg(f)/2.
  bool irreducible(const std::vector<int64_t>& f) const {
    const int df = static_cast<int>(f.size()) - 1;
    for (int d = 1; d <= df / 2; ++d) {
      int64_t count = 1;
      for (int i = 0; i < d; ++i) count *= p_;
      for (int64_t k = 0; k < count; ++k) {
        std::vector<int64_t> g(static_cast<size_t>(d + 1), 0);
        int64_t t = k;
        for (int i = 0; i < d; ++i, t /= p_) g[static_cast<size_t>(i)] = t % p_;
        g[static_cast<size_t>(d)] = 1;
        std::vector<int64_t> r = f;
        reduce(r, g);
        bool zero = true;
        for (int64_t c : r) zero = zero && c == 0;
        if (zero) return false;
      }
    }
    return true;
  }
  void find_modulus() {
    for (int64_t k = 0; k < q_; ++k) {
      std::vector<int64_t> f(static_cast<size_t>(e_ + 1), 0);
      int64_t t = k;
      for (int i = 0; i < e_; ++i, t /= p_) f[static_cast<size_t>(i)] = t % p_;
      f[static_cast<size_t>(e_)] = 1;
      if (f[0] != 0 && irreducible(f)) {
        modulus_ = f;
        return;
      }
    }
    throw_error(ErrorKind::kInternal, "hadamard", "no irreducible polynomial of degree %d over GF(%lld)", e_,
                static_cast<long long>(p_));
  }
  int64_t p_;
  int e_;
  int64_t q_;
  std::vector<int64_t> modulus_;
};

// The Jacobsthal matrix Q[i][j] = chi(a_i - a_j) of GF(q) (chi: quadratic character).
std::vector<int8_t> jacobsthal(const FiniteField& f) {
  const int64_t q = f.size();
  std::vector<int8_t> chi(static_cast<size_t>(q), -1);
  chi[0] = 0;
  for (int64_t x = 1; x < q; ++x) chi[static_cast<size_t>(f.mul(x, x))] = 1;
  std::vector<int8_t> m(static_cast<size_t>(q * q));
  for (int64_t i = 0; i < q; ++i)
    for (int64_t j = 0; j < q; ++j) m[static_cast<size_t>(i * q + j)] = chi[static_cast<size_t>(f.sub(i, j))];
  return m;
}

SignMatrix sylvester(int64_t order) {
  SignMatrix h;
  h.order = order;
  h.v.resize(static_cast<size_t>(order * order));
  for (int64_t i = 0; i < order; ++i)
    for (int64_t j = 0; j < order; ++j) h.v[static_cast<size_t>(i * order + j)] = (__builtin_popcountll(static_cast<uint64_t>(i & j)) & 1) ? -1 : 1;
  return h;
}

// Paley I (q = 3 mod 4): H = I + [[0, 1^T], [-1, Q]], order q + 1.
SignMatrix paley1(int64_t q, int64_t p, int e) {
  const FiniteField f(p, e);
  const std::vector<int8_t> Q = jacobsthal(f);
  SignMatrix h;
  h.order = q + 1;
  h.v.assign(static_cast<size_t>(h.order * h.order), 1);
  for (int64_t i = 1; i <= q; ++i) {
    h.v[static_cast<size_t>(i * h.order)] = -1;
    for (int64_t j = 1; j <= q; ++j)
      h.v[static_cast<size_t>(i * h.order + j)] = static_cast<int8_t>(Q[static_cast<size_t>((i - 1) * q + j - 1)] + (i == j ? 1 : 0));
  }
  return h;
}

// Paley II (q = 1 mod 4): C = [[0, 1^T], [1, Q]] (symmetric conference matrix); every entry
// replaced by a 2x2 block: 0 -> [[1, -1], [-1, -1]], +-1 -> +-[[1, 1], [1, -1]]; order 2(q + 1).
SignMatrix paley2(int64_t q, int64_t p, int e) {
  const FiniteField f(p, e);
  const std::vector<int8_t> Q = jacobsthal(f);
  const int64_t c = q + 1;
  auto centry = [&](int64_t i, int64_t j) -> int {
    if (i == 0 && j == 0) return 0;
    if (i == 0 || j == 0) return 1;
    return Q[static_cast<size_t>((i - 1) * q + j - 1)];
  };
  SignMatrix h;
  h.order = 2 * c;
  h.v.resize(static_cast<size_t>(h.order * h.order));
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < c; ++j) {
      const int x = centry(i, j);
      const int b[2][2] = {{x == 0 ? 1 : x, x == 0 ? -1 : x}, {x == 0 ? -1 : x, x == 0 ? -1 : -x}};
      for (int a = 0; a < 2; ++a)
        for (int d = 0; d < 2; ++d) h.v[static_cast<size_t>((2 * i + a) * h.order + 2 * j + d)] = static_cast<int8_t>(b[a][d]);
    }
  return h;
}

// A Paley matrix of order m (m = 0 mod 4), or order 0.
SignMatrix paley(int64_t m, std::string* name) {
  if (m % 4 != 0 || m > kMaxPaleyOrder) return {};
  int e = 0;
  if (const int64_t p = prime_power_base(m - 1, &e); p && (m - 1) % 4 == 3) {
    *name = "paley1(" + std::to_string(m) + ")";
    return paley1(m - 1, p, e);
  }
  if (const int64_t p = prime_power_base(m / 2 - 1, &e); p && (m / 2 - 1) % 4 == 1) {
    *name = "paley2(" + std::to_string(m) + ")";
    return paley2(m / 2 - 1, p, e);
  }
  return {};
}

// Factors of a Hadamard matrix of order n (empty vector and false when not constructible).
bool exact_factors(int64_t n, std::vector<SignMatrix>* out, std::string* name) {
  int k = 0;
  while ((n >> k) % 2 == 0) ++k;
  for (int kk = k; kk >= 0; --kk) {
    const int64_t m = n >> kk;
    std::vector<SignMatrix> f;
    std::string nm;
    if (m != 1) {
      SignMatrix pm = paley(m, &nm);
      if (pm.order == 0) continue;
      f.push_back(std::move(pm));
    }
    // 2^kk as two Sylvester factors of about equal size (small matrices to apply).
    const int a = kk / 2, b = kk - a;
    std::string sn;
    if (b > 0) {
      f.insert(f.begin(), sylvester(int64_t{1} << b));
      sn = "sylvester(" + std::to_string(int64_t{1} << b) + ")";
    }
    if (a > 0) {
      f.insert(f.begin(), sylvester(int64_t{1} << a));
      sn = "sylvester(" + std::to_string(int64_t{1} << a) + ") x " + sn;
    }
    *name = sn.empty() ? (nm.empty() ? "identity" : nm) : (nm.empty() ? sn : sn + " x " + nm);
    *out = std::move(f);
    return true;
  }
  return false;
}

}  // namespace

SignMatrix hadamard_matrix(int64_t order) {
  std::vector<SignMatrix> f;
  std::string name;
  if (order < 1 || !exact_factors(order, &f, &name)) return {};
  SignMatrix h;
  h.order = 1;
  h.v = {1};
  for (const SignMatrix& g : f) {  // Kronecker product, outermost first
    SignMatrix r;
    r.order = h.order * g.order;
    r.v.resize(static_cast<size_t>(r.order * r.order));
    for (int64_t i = 0; i < h.order; ++i)
      for (int64_t j = 0; j < h.order; ++j)
        for (int64_t a = 0; a < g.order; ++a)
          for (int64_t b = 0; b < g.order; ++b)
            r.v[static_cast<size_t>((i * g.order + a) * r.order + j * g.order + b)] = static_cast<int8_t>(h.at(i, j) * g.at(a, b));
    h = std::move(r);
  }
  return h;
}

HadamardPlan hadamard_plan(int64_t n) {
  if (n < 1) throw_error(ErrorKind::kInvalidArgument, "hadamard", "order %lld (expected >= 1)", static_cast<long long>(n));
  HadamardPlan p;
  p.n = n;
  if (exact_factors(n, &p.factors, &p.construction)) return p;
  // Fallback: the largest constructible block dividing n (1 always is).
  for (int64_t d = n / 2; d >= 1; --d) {
    if (n % d != 0) continue;
    std::vector<SignMatrix> f;
    std::string name;
    if (!exact_factors(d, &f, &name)) continue;
    p.count = n / d;
    p.factors = std::move(f);
    p.construction = "block-diagonal " + std::to_string(p.count) + " x " + name;
    return p;
  }
  throw_error(ErrorKind::kInternal, "hadamard", "no plan for order %lld", static_cast<long long>(n));
}

void apply_right(const HadamardPlan& p, double* x, int64_t rows, bool transpose) {
  const int64_t n = p.n;
  std::vector<double> in, out;
  // Axis layout of a row: [count, f1, f2, ...]; factor t acts on its axis (y_j = sum_i x_i F_ij).
  int64_t inner = n / p.count;
  for (const SignMatrix& f : p.factors) {
    const int64_t o = f.order;
    inner /= o;
    const int64_t outer = n / (o * inner);
    in.resize(static_cast<size_t>(o));
    out.resize(static_cast<size_t>(o));
    for (int64_t r = 0; r < rows; ++r) {
      double* row = x + r * n;
      for (int64_t a = 0; a < outer; ++a)
        for (int64_t c = 0; c < inner; ++c) {
          double* base = row + a * o * inner + c;
          for (int64_t i = 0; i < o; ++i) in[static_cast<size_t>(i)] = base[i * inner];
          for (int64_t j = 0; j < o; ++j) out[static_cast<size_t>(j)] = 0;
          for (int64_t i = 0; i < o; ++i) {
            const double v = in[static_cast<size_t>(i)];
            if (transpose) {  // y_j = sum_i x_i F_ji
              for (int64_t j = 0; j < o; ++j) out[static_cast<size_t>(j)] += f.v[static_cast<size_t>(j * o + i)] * v;
            } else {          // y_j = sum_i x_i F_ij
              const int8_t* fr = f.v.data() + i * o;
              for (int64_t j = 0; j < o; ++j) out[static_cast<size_t>(j)] += fr[j] * v;
            }
          }
          for (int64_t j = 0; j < o; ++j) base[j * inner] = out[static_cast<size_t>(j)];
        }
    }
  }
  const double s = 1.0 / std::sqrt(static_cast<double>(p.block()));
  for (int64_t i = 0; i < rows * n; ++i) x[i] *= s;
}

std::vector<double> dense(const HadamardPlan& p) {
  std::vector<double> m(static_cast<size_t>(p.n * p.n), 0.0);
  for (int64_t i = 0; i < p.n; ++i) m[static_cast<size_t>(i * p.n + i)] = 1.0;
  apply_right(p, m.data(), p.n);  // I Q = Q
  return m;
}

}  // namespace razerq::quantizer
