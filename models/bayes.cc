#include "models/bayes.h"

#include <cmath>
#include <random>
#include <vector>

#include "Eigen/Cholesky"
#include "base/parallel.h"

namespace recsys {
namespace internal {
namespace {

// xoshiro256** seeded through splitmix64: cheap to seed once per row and
// sweep, so rows can be sampled in parallel and the result depends only on
// the seed, never on the thread count.
class Rng {
 public:
  using result_type = uint64_t;
  explicit Rng(uint64_t seed) {
    for (uint64_t& s : s_) {
      seed += 0x9e3779b97f4a7c15ULL;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      s = z ^ (z >> 31);
    }
  }
  static constexpr uint64_t min() { return 0; }
  static constexpr uint64_t max() { return ~uint64_t{0}; }
  uint64_t operator()() {
    const uint64_t out = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return out;
  }
  // Standard normal by the Box-Muller transform, two at a time.
  double Normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = ((*this)() >> 11) * 0x1.0p-53 + 0x1.0p-54;  // (0, 1)
    const double u2 = ((*this)() >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2 * M_PI * u2);
    has_spare_ = true;
    return r * std::cos(2 * M_PI * u2);
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
  double spare_ = 0;
  bool has_spare_ = false;
};

uint64_t StreamSeed(uint64_t seed, int sweep, int stream, int64_t row) {
  return seed * 0x2545F4914F6CDD1DULL ^ (static_cast<uint64_t>(sweep) << 40) ^
         (static_cast<uint64_t>(stream) << 36) ^ static_cast<uint64_t>(row);
}

using MatrixXd = Eigen::MatrixXd;
using VectorXd = Eigen::VectorXd;

// A Gaussian prior of rows: mean and precision.
struct Prior {
  VectorXd mean;
  MatrixXd precision;
};

// Draws (mean, precision) from the Normal-Wishart posterior given the rows
// of `x` listed in `rows`, under the hyperprior NW(0, beta0 = 2, W0 = I,
// nu0 = d).
Prior SampleHyper(const MatrixXd& x, const std::vector<int32_t>& rows,
                  Rng* rng) {
  const int64_t d = x.cols();
  const double n = static_cast<double>(rows.size());
  const double beta0 = 2.0;
  VectorXd mean = VectorXd::Zero(d);
  for (int32_t r : rows) mean += x.row(r).transpose();
  if (n > 0) mean /= n;
  MatrixXd scatter = MatrixXd::Zero(d, d);
  for (int32_t r : rows) {
    const VectorXd c = x.row(r).transpose() - mean;
    scatter.selfadjointView<Eigen::Lower>().rankUpdate(c);
  }
  scatter = scatter.selfadjointView<Eigen::Lower>();
  MatrixXd w_inv = MatrixXd::Identity(d, d) + scatter +
                   (beta0 * n / (beta0 + n)) * mean * mean.transpose();
  const MatrixXd w = w_inv.llt().solve(MatrixXd::Identity(d, d));
  const double nu = static_cast<double>(d) + n;
  // Bartlett: Lambda = (L A)(L A)^T with W = L L^T, A lower triangular,
  // A_jj^2 ~ chi^2(nu - j), A_ij ~ N(0, 1) below the diagonal.
  const MatrixXd l = w.llt().matrixL();
  MatrixXd a = MatrixXd::Zero(d, d);
  for (int64_t j = 0; j < d; ++j) {
    std::gamma_distribution<double> chi2((nu - static_cast<double>(j)) / 2,
                                         2.0);
    a(j, j) = std::sqrt(chi2(*rng));
    for (int64_t i = j + 1; i < d; ++i) a(i, j) = rng->Normal();
  }
  const MatrixXd la = l * a;
  Prior p;
  p.precision = la * la.transpose();
  // mean ~ N(n xbar / (beta0 + n), ((beta0 + n) Lambda)^-1).
  const Eigen::LLT<MatrixXd> scaled((beta0 + n) * p.precision);
  VectorXd e(d);
  for (int64_t j = 0; j < d; ++j) e[j] = rng->Normal();
  p.mean = (n / (beta0 + n)) * mean +
           scaled.matrixU().solve(e);  // U^-1 e ~ N(0, (U^T U)^-1)
  return p;
}

struct RowScratch {
  MatrixXd z;
  VectorXd t;
  MatrixXd a;
  VectorXd b;
};

// The conditional posterior of one row given rows `cols` of `other` (d
// columns: [bias, factors]) rated `values`: writes its mean to `out`, or,
// when `rng` is set, a draw from it. (BayesEquations computes the same mean
// in float for serving.)
void RowPosterior(const MatrixXd& other, absl::Span<const int32_t> cols,
                  absl::Span<const float> values, double offset,
                  const Prior& prior, double alpha, RowScratch* s,
                  Eigen::Ref<VectorXd> out, Rng* rng) {
  const int64_t d = other.cols();
  const int64_t n = static_cast<int64_t>(cols.size());
  s->z.resize(d, n);
  s->t.resize(n);
  for (int64_t j = 0; j < n; ++j) {
    s->z(0, j) = 1.0;
    s->z.col(j).tail(d - 1) = other.row(cols[j]).tail(d - 1).transpose();
    s->t[j] = values[j] - offset - other(cols[j], 0);
  }
  s->a = prior.precision;
  s->a.selfadjointView<Eigen::Lower>().rankUpdate(s->z, alpha);
  s->b = prior.precision * prior.mean;
  s->b.noalias() += alpha * (s->z * s->t);
  const Eigen::LLT<MatrixXd> llt(s->a.selfadjointView<Eigen::Lower>());
  out = llt.solve(s->b);
  if (rng != nullptr) {
    VectorXd e(d);
    for (int64_t j = 0; j < d; ++j) e[j] = rng->Normal();
    out += llt.matrixU().solve(e);
  }
}

// Samples every row of `x` that has ratings, given `other`.
void SampleRows(const SparseRows& rows, const MatrixXd& other, double offset,
                const Prior& prior, double alpha, uint64_t seed, int sweep,
                int stream, int threads, MatrixXd* x) {
  ParallelChunks(rows.rows(), threads, [&](int64_t begin, int64_t end, int) {
    RowScratch s;
    VectorXd row(x->cols());
    for (int64_t r = begin; r < end; ++r) {
      const int64_t lo = rows.offsets[r], hi = rows.offsets[r + 1];
      if (lo == hi) continue;
      Rng rng(StreamSeed(seed, sweep, stream, r));
      RowPosterior(other, absl::MakeConstSpan(rows.cols.data() + lo, hi - lo),
                   absl::MakeConstSpan(rows.values.data() + lo, hi - lo),
                   offset, prior, alpha, &s, row, &rng);
      x->row(r) = row.transpose();
    }
  });
}

double Predict(const MatrixXd& x, const MatrixXd& y, double mu, int32_t u,
               int32_t i) {
  const int64_t k = x.cols() - 1;
  return mu + x(u, 0) + y(i, 0) + x.row(u).tail(k).dot(y.row(i).tail(k));
}

std::vector<int32_t> RatedRows(const SparseRows& rows) {
  std::vector<int32_t> out;
  for (int32_t r = 0; r < rows.rows(); ++r) {
    if (rows.size(r) > 0) out.push_back(r);
  }
  return out;
}

}  // namespace

namespace {

// Sample `kept`'s rows in the serving layout: per sample a block of k
// factors, then [bias, 1] for users and [1, bias] for items; and the
// hyper-parameters fold-in needs.
void KeepSample(const MatrixXd& x, const MatrixXd& y, const Prior& user_prior,
                const Prior& item_prior, double alpha, int kept, Model* m) {
  const int64_t k = m->params.factors, d = k + 1, block = k + 2;
  const int64_t o = kept * block;
  for (int32_t u = 0; u < m->num_users(); ++u) {
    m->user_factors.row(u).segment(o, k) = x.row(u).tail(k).cast<float>();
    m->user_factors(u, o + k) = static_cast<float>(x(u, 0));
    m->user_factors(u, o + k + 1) = 1.0f;
  }
  for (int32_t i = 0; i < m->num_items(); ++i) {
    m->item_factors.row(i).segment(o, k) = y.row(i).tail(k).cast<float>();
    m->item_factors(i, o + k) = 1.0f;
    m->item_factors(i, o + k + 1) = static_cast<float>(y(i, 0));
  }
  Posterior& post = m->posterior;
  post.alpha[kept] = static_cast<float>(alpha);
  post.user_mean.row(kept) = user_prior.mean.transpose().cast<float>();
  post.item_mean.row(kept) = item_prior.mean.transpose().cast<float>();
  post.user_precision.middleRows(kept * d, d) =
      user_prior.precision.cast<float>();
  post.item_precision.middleRows(kept * d, d) =
      item_prior.precision.cast<float>();
}

// Serving form: mean biases, deviations in the blocks, 1/sqrt(S) scaling.
void FinishServingForm(int samples, int64_t block, RowMatrix* f,
                       Eigen::VectorXf* bias, int64_t bias_col) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(samples));
  for (int64_t r = 0; r < f->rows(); ++r) {
    float sum = 0;
    for (int s = 0; s < samples; ++s) sum += (*f)(r, s * block + bias_col);
    const float mean = sum / static_cast<float>(samples);
    (*bias)[r] = mean;
    for (int s = 0; s < samples; ++s) (*f)(r, s * block + bias_col) -= mean;
  }
  *f *= scale;
}

// The running posterior-mean prediction of held-out ratings, clipped as
// the served model predicts.
class ValidationMean {
 public:
  explicit ValidationMean(const RatingData* validation)
      : ratings_(validation != nullptr ? &validation->ratings : nullptr),
        sum_(ratings_ ? ratings_->size() : 0, 0.0) {}
  void Add(const MatrixXd& x, const MatrixXd& y, double mu) {
    if (ratings_ == nullptr) return;
    for (size_t j = 0; j < ratings_->size(); ++j) {
      const Rating& r = (*ratings_)[j];
      sum_[j] += Predict(x, y, mu, r.user, r.item);
    }
  }
  // -1 without validation data or samples.
  double Rmse(const RatingScale& scale, int kept) const {
    if (ratings_ == nullptr || kept == 0) return -1;
    double se = 0;
    for (size_t j = 0; j < ratings_->size(); ++j) {
      const double e =
          scale.Clip(static_cast<float>(sum_[j] / kept)) - (*ratings_)[j].value;
      se += e * e;
    }
    return std::sqrt(se / static_cast<double>(ratings_->size()));
  }

 private:
  const std::vector<Rating>* ratings_;
  std::vector<double> sum_;
};

}  // namespace

void TrainBayes(const RatingData& data, const SparseRows& by_user,
                const SparseRows& by_item, int threads,
                const TrainOptions& options,
                const std::function<void(int, double, double)>& report,
                Model* m) {
  const Hyperparameters& p = m->params;
  const int64_t k = p.factors, d = k + 1;
  const int samples = p.samples;
  const int sweeps = p.epochs;
  const int stride = std::max(1, (sweeps - p.burn_in) / samples);
  const double mu = m->mu;

  MatrixXd x(m->num_users(), d), y(m->num_items(), d);
  {
    Rng rng(StreamSeed(p.seed, 0, 7, 0));
    for (int64_t r = 0; r < x.size(); ++r)
      x.data()[r] = p.init_std * rng.Normal();
    for (int64_t r = 0; r < y.size(); ++r)
      y.data()[r] = p.init_std * rng.Normal();
    x.col(0).setZero();
    y.col(0).setZero();
  }
  const std::vector<int32_t> rated_users = RatedRows(by_user);
  const std::vector<int32_t> rated_items = RatedRows(by_item);

  const int64_t block = k + 2;
  m->user_factors.setZero(m->num_users(), samples * block);
  m->item_factors.setZero(m->num_items(), samples * block);
  Posterior& post = m->posterior;
  post.samples = samples;
  post.alpha.resize(samples);
  post.user_mean.resize(samples, d);
  post.item_mean.resize(samples, d);
  post.user_precision.resize(samples * d, d);
  post.item_precision.resize(samples * d, d);

  ValidationMean validation(options.validation);
  int kept = 0;
  double alpha = 2.0;
  for (int sweep = 1; sweep <= sweeps; ++sweep) {
    Rng hyper_rng(StreamSeed(p.seed, sweep, 0, 0));
    const Prior item_prior = SampleHyper(y, rated_items, &hyper_rng);
    SampleRows(by_item, x, mu, item_prior, alpha, p.seed, sweep, 2, threads,
               &y);
    const Prior user_prior = SampleHyper(x, rated_users, &hyper_rng);
    SampleRows(by_user, y, mu, user_prior, alpha, p.seed, sweep, 1, threads,
               &x);
    double se = 0;
    for (const Rating& r : data.ratings) {
      const double e = Predict(x, y, mu, r.user, r.item) - r.value;
      se += e * e;
    }
    const double n = static_cast<double>(data.ratings.size());
    // Alpha's posterior under a Gamma(1, 1) prior; the draw is used from the
    // next sweep on (and with this sweep's rows, for fold-in).
    std::gamma_distribution<double> gamma(1.0 + n / 2, 1.0 / (1.0 + se / 2));
    const double next_alpha = gamma(hyper_rng);
    if (sweep > p.burn_in && kept < samples &&
        (sweep - p.burn_in) % stride == 0) {
      KeepSample(x, y, user_prior, item_prior, alpha, kept, m);
      ++kept;
      validation.Add(x, y, mu);
    }
    alpha = next_alpha;
    if (report)
      report(sweep, std::sqrt(se / n), validation.Rmse(m->scale, kept));
    if (StopRequested(options)) break;
  }
  FinishServingForm(samples, block, &m->user_factors, &m->user_bias, k);
  FinishServingForm(samples, block, &m->item_factors, &m->item_bias, k + 1);
}

namespace {
// Where row r of a packed lower triangle starts: r (r + 1) / 2 entries
// precede it.
inline int64_t Tri(int64_t r) { return r * (r + 1) / 2; }
}  // namespace

void BayesEquations::Reset(const Model& m, bool user_side, int64_t cols) {
  const Posterior& post = m.posterior;
  user_side_ = user_side;
  samples_ = post.samples;
  block_ = cols / samples_;
  k_ = block_ - 2;
  d_ = k_ + 1;
  root_ = std::sqrt(static_cast<float>(samples_));
  alpha_ = post.alpha.data();
  const RowMatrix& means = user_side ? post.user_mean : post.item_mean;
  const RowMatrix& precisions =
      user_side ? post.user_precision : post.item_precision;
  const int64_t d = d_, S = samples_;
  a_.assign(d * (d + 1) / 2 * S, 0.0f);
  v_.assign(d * S, 0.0f);
  for (int64_t s = 0; s < S; ++s) {
    const auto precision = precisions.middleRows(s * d, d);
    const auto mean = means.row(s);
    for (int64_t r = 0; r < d; ++r) {
      for (int64_t c = 0; c <= r; ++c)
        a_[(Tri(r) + c) * S + s] = precision(r, c);
      v_[r * S + s] = precision.row(r).dot(mean);
    }
  }
}

void BayesEquations::Add(const float* row, float offset, float value,
                         float sign) {
  const int64_t d = d_, k = k_, S = samples_;
  // The counterpart's own bias column within its block.
  const int64_t other_bias_col = user_side_ ? k + 1 : k;
  // z holds the rating's [1, q^s] across samples (w the same times
  // sign * alpha^s) and t its r - mu - b^s.
  thread_local std::vector<float> z, w, t;
  z.resize(d * S);
  w.resize(d * S);
  t.resize(S);
  const float residual = value - offset;
  for (int64_t s = 0; s < S; ++s) {
    const float* blk = row + s * block_;
    z[s] = 1.0f;
    for (int64_t c = 0; c < k; ++c) z[(1 + c) * S + s] = root_ * blk[c];
    t[s] = residual - root_ * blk[other_bias_col];
  }
  for (int64_t r = 0; r < d; ++r) {
    float* __restrict wr = w.data() + r * S;
    const float* __restrict zr = z.data() + r * S;
    float* __restrict vr = v_.data() + r * S;
    for (int64_t s = 0; s < S; ++s) {
      wr[s] = sign * alpha_[s] * zr[s];
      vr[s] += wr[s] * t[s];
    }
    for (int64_t c = 0; c <= r; ++c) {
      float* __restrict arc = a_.data() + (Tri(r) + c) * S;
      const float* __restrict zc = z.data() + c * S;
      for (int64_t s = 0; s < S; ++s) arc[s] += wr[s] * zc[s];
    }
  }
}

void BayesEquations::Solve(float* bias, float* out) const {
  const int64_t d = d_, k = k_, S = samples_;
  thread_local std::vector<float> a, v;
  a = a_;
  v = v_;
  // Cholesky A = L L^T in place (lower), then L y = v and L^T x = y, all
  // across samples.
  for (int64_t r = 0; r < d; ++r) {
    for (int64_t c = 0; c <= r; ++c) {
      float* __restrict arc = a.data() + (Tri(r) + c) * S;
      for (int64_t p = 0; p < c; ++p) {
        const float* __restrict arp = a.data() + (Tri(r) + p) * S;
        const float* __restrict acp = a.data() + (Tri(c) + p) * S;
        for (int64_t s = 0; s < S; ++s) arc[s] -= arp[s] * acp[s];
      }
      if (c == r) {
        // Eigen's array sqrt is one vector instruction per 16 samples; a
        // std::sqrt loop stays scalar (it must be able to set errno) and
        // took most of the solve.
        Eigen::Map<Eigen::ArrayXf> pivots(arc, S);
        pivots = pivots.sqrt();
      } else {
        const float* __restrict acc = a.data() + (Tri(c) + c) * S;
        for (int64_t s = 0; s < S; ++s) arc[s] /= acc[s];
      }
    }
  }
  for (int64_t r = 0; r < d; ++r) {
    float* __restrict vr = v.data() + r * S;
    for (int64_t c = 0; c < r; ++c) {
      const float* __restrict arc = a.data() + (Tri(r) + c) * S;
      const float* __restrict vc = v.data() + c * S;
      for (int64_t s = 0; s < S; ++s) vr[s] -= arc[s] * vc[s];
    }
    const float* __restrict arr = a.data() + (Tri(r) + r) * S;
    for (int64_t s = 0; s < S; ++s) vr[s] /= arr[s];
  }
  for (int64_t r = d - 1; r >= 0; --r) {
    float* __restrict vr = v.data() + r * S;
    for (int64_t c = r + 1; c < d; ++c) {
      const float* __restrict acr = a.data() + (Tri(c) + r) * S;
      const float* __restrict vc = v.data() + c * S;
      for (int64_t s = 0; s < S; ++s) vr[s] -= acr[s] * vc[s];
    }
    const float* __restrict arr = a.data() + (Tri(r) + r) * S;
    for (int64_t s = 0; s < S; ++s) vr[s] /= arr[s];
  }
  float bias_sum = 0;
  for (int64_t s = 0; s < S; ++s) bias_sum += v[s];
  const float mean_bias = bias_sum / static_cast<float>(S);
  *bias = mean_bias;
  const float scale = 1.0f / root_;
  for (int64_t s = 0; s < S; ++s) {
    float* o = out + s * block_;
    for (int64_t c = 0; c < k; ++c) o[c] = scale * v[(1 + c) * S + s];
    const float dev = (v[s] - mean_bias) * scale;
    o[k] = user_side_ ? dev : scale;
    o[k + 1] = user_side_ ? scale : dev;
  }
}

size_t BayesEquations::bytes() const {
  return (a_.capacity() + v_.capacity()) * sizeof(float);
}

}  // namespace internal
}  // namespace recsys
