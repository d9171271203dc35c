#include "models/scoring.h"

#include <random>

#include "gtest/gtest.h"

namespace recsys {
namespace {

// Direct dot products in double: the reference the panels must match.
std::vector<double> Reference(const RowMatrix& q, const Eigen::VectorXf& bias,
                              const Eigen::VectorXf& p, float offset) {
  std::vector<double> out(static_cast<size_t>(q.rows()));
  for (int64_t i = 0; i < q.rows(); ++i) {
    double s = offset + (bias.size() > 0 ? bias[i] : 0.0f);
    for (int64_t f = 0; f < q.cols(); ++f) {
      s += static_cast<double>(q(i, f)) * p[f];
    }
    out[static_cast<size_t>(i)] = s;
  }
  return out;
}

TEST(ItemPanelsTest, MatchesDirectProductForEveryShape) {
  std::mt19937 rng(3);
  std::normal_distribution<float> gauss(0.0f, 0.3f);
  const int w = ItemPanels::kWidth;
  // Catalogues shorter than, equal to and around multiples of a panel, with
  // odd, even and zero factor counts.
  for (int32_t rows : {0, 1, w - 1, w, w + 1, 3 * w + 5, 1682}) {
    for (int32_t k : {0, 1, 7, 64, 129}) {
      RowMatrix q(rows, k);
      for (int64_t j = 0; j < q.size(); ++j) q.data()[j] = gauss(rng);
      Eigen::VectorXf bias(rows);
      for (int32_t i = 0; i < rows; ++i) bias[i] = gauss(rng);
      Eigen::VectorXf p(k);
      for (int32_t f = 0; f < k; ++f) p[f] = gauss(rng);
      const ItemPanels panels(q, bias);
      ASSERT_EQ(panels.rows(), rows);
      ASSERT_EQ(panels.factors(), k);
      // A guard value after the end checks nothing is written past rows.
      std::vector<float> out(static_cast<size_t>(rows) + 1, -7.0f);
      panels.Score(p.data(), 3.5f, out.data());
      const std::vector<double> want = Reference(q, bias, p, 3.5f);
      for (int32_t i = 0; i < rows; ++i) {
        ASSERT_NEAR(out[i], want[i], 1e-4) << rows << "x" << k << " item " << i;
      }
      EXPECT_EQ(out[rows], -7.0f) << rows << "x" << k;
    }
  }
}

TEST(ItemPanelsTest, EmptyBiasMeansZero) {
  RowMatrix q(3, 2);
  q << 1, 2, 3, 4, 5, 6;
  const ItemPanels panels(q, Eigen::VectorXf());
  const float p[2] = {1.0f, -1.0f};
  float out[3];
  panels.Score(p, 0.5f, out);
  EXPECT_FLOAT_EQ(out[0], -0.5f);
  EXPECT_FLOAT_EQ(out[1], -0.5f);
  EXPECT_FLOAT_EQ(out[2], -0.5f);
}

}  // namespace
}  // namespace recsys
