// Model selection: its split, its budget, its floor, its determinism, and
// what it leaves in the model.
#include "models/selection.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/evaluation.h"
#include "models/model_io.h"
#include "tests/test_util.h"
#include "trainer/generate.h"

namespace recsys {
namespace {

using ::testing::HasSubstr;

SelectionOptions Small() {
  SelectionOptions o;
  o.threads = 2;
  o.budget = 120;
  // A quick rating part: the tests are about the search.
  o.pinned.epochs = 30;
  o.pinned.burn_in = 10;
  o.pinned.samples = 4;
  return o;
}

TEST(PerUserSplitTest, EveryUserWithEnoughHistoryKeepsSomeOnBothSides) {
  const RatingData data = testing::PlantedData(50, 40, 2, 0.2, 0.3, 3);
  RatingData train, held;
  PerUserSplit(data, 0.2, 5, 7, &train, &held);
  EXPECT_EQ(train.ratings.size() + held.ratings.size(), data.ratings.size());
  std::vector<int> all(data.num_users()), kept(data.num_users()),
      out(data.num_users());
  for (const Rating& r : data.ratings) ++all[r.user];
  for (const Rating& r : train.ratings) ++kept[r.user];
  for (const Rating& r : held.ratings) ++out[r.user];
  for (int32_t u = 0; u < data.num_users(); ++u) {
    if (all[u] >= 5) {
      EXPECT_GE(out[u], 1) << u;
      EXPECT_GE(kept[u], 1) << u;
      EXPECT_NEAR(out[u], 0.2 * all[u], 1.0) << u;
    } else {
      EXPECT_EQ(out[u], 0) << u;
    }
  }
  // The same seed, the same split.
  RatingData train2, held2;
  PerUserSplit(data, 0.2, 5, 7, &train2, &held2);
  ASSERT_EQ(held2.ratings.size(), held.ratings.size());
  for (size_t k = 0; k < held.ratings.size(); ++k) {
    EXPECT_EQ(held2.ratings[k].user, held.ratings[k].user);
    EXPECT_EQ(held2.ratings[k].item, held.ratings[k].item);
  }
}

// The same data, options and seed give the same choice and the same
// trials; the work stays within the budget; the report is complete.
TEST(SelectionTest, DeterministicWithinBudgetAndReported) {
  const RatingData data = testing::PlantedData(150, 90, 4, 0.15, 0.4, 21);
  const SelectionOptions o = Small();
  absl::StatusOr<Selection> a = SelectModel(data, o);
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<Selection> b = SelectModel(data, o);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->kind, b->kind);
  EXPECT_EQ(DescribeCandidate(a->kind, a->params),
            DescribeCandidate(b->kind, b->params));
  ASSERT_EQ(a->report.trials.size(), b->report.trials.size());
  for (size_t k = 0; k < a->report.trials.size(); ++k) {
    EXPECT_EQ(a->report.trials[k].candidate, b->report.trials[k].candidate);
    EXPECT_EQ(a->report.trials[k].ndcg, b->report.trials[k].ndcg);
    EXPECT_EQ(a->report.trials[k].rmse, b->report.trials[k].rmse);
  }
  const SelectionReport& r = a->report;
  EXPECT_LE(r.work, o.budget);
  EXPECT_EQ(r.budget, o.budget);
  int64_t work = 0;
  int chosen_ranking = 0, chosen_rating = 0;
  std::set<ModelKind> kinds;
  for (const SelectionTrial& t : r.trials) {
    work += t.work;
    kinds.insert(t.kind);
    if (t.chosen) {
      ++(t.part == SelectionTrial::kRating ? chosen_rating : chosen_ranking);
    }
  }
  EXPECT_EQ(work, r.work);
  EXPECT_EQ(chosen_ranking, 1);
  EXPECT_EQ(chosen_rating, 1);
  // Popularity, PureSVD, iALS and the rating part all took part.
  for (ModelKind k :
       {ModelKind::kPopularity, ModelKind::kPuresvd, ModelKind::kIals,
        ModelKind::kBaseline, ModelKind::kBayes, ModelKind::kAls}) {
    EXPECT_TRUE(kinds.count(k)) << ModelKindName(k);
  }
  EXPECT_GT(r.validation_users, 0);
  EXPECT_GT(r.validation_ratings, 0);
  EXPECT_FALSE(r.summary.empty());
}

TEST(SelectionTest, TheBudgetBoundsTheWork) {
  const RatingData data = testing::PlantedData(150, 90, 4, 0.15, 0.4, 21);
  for (int64_t budget : {0, 10, 45, 80}) {
    SelectionOptions o = Small();
    o.budget = budget;
    absl::StatusOr<Selection> s = SelectModel(data, o);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_LE(s->report.work, budget) << budget;
    EXPECT_TRUE(ValidateHyperparameters(s->kind, s->params).ok()) << budget;
  }
}

// A setting the caller gives is never varied.
TEST(SelectionTest, PinnedSettingsStayFixed) {
  const RatingData data = testing::PlantedData(150, 90, 4, 0.15, 0.4, 21);
  SelectionOptions o = Small();
  o.kind = ModelKind::kIals;
  o.pinned = ParamOverrides();
  o.pinned.factors = 24;
  o.pinned.reg_exponent = 0.5f;
  absl::StatusOr<Selection> s = SelectModel(data, o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->kind, ModelKind::kIals);
  EXPECT_EQ(s->params.factors, 24);
  EXPECT_EQ(s->params.reg_exponent, 0.5f);
  int ials = 0;
  for (const SelectionTrial& t : s->report.trials) {
    EXPECT_NE(t.kind, ModelKind::kPuresvd);
    if (t.kind != ModelKind::kIals) continue;
    ++ials;
    EXPECT_THAT(t.candidate, HasSubstr("factors=24 "));
    EXPECT_THAT(t.candidate, HasSubstr("reg_exponent=0.5 "));
  }
  EXPECT_GT(ials, 1);
  // Every searched setting given: trained as told, no trials.
  o.pinned.reg = 0.1f;
  o.pinned.implicit_weight = 0.3f;
  o.pinned.value_weight = 1.0f;
  o.pinned.target_min = 0.0f;
  o.pinned.epochs = 5;
  s = SelectModel(data, o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->report.empty());
  EXPECT_EQ(s->params.reg, 0.1f);
  TrainingSpec spec;
  spec.kind = ModelKind::kIals;
  spec.params = o.pinned;
  EXPECT_FALSE(SpecSearches(spec));
  spec.params.reg.reset();
  EXPECT_TRUE(SpecSearches(spec));
  spec.select = false;
  EXPECT_FALSE(SpecSearches(spec));
  spec.kind = ModelKind::kSgd;
  spec.select = true;
  EXPECT_FALSE(SpecSearches(spec));  // no search space
}

// Where what people pick is only what is popular (no personal signal),
// the shipped ranking scores at least popularity's nDCG on the validation
// split, and holds up on data it never saw.
TEST(SelectionTest, PopularityIsTheFloor) {
  GenerateOptions g;
  g.users = 400;
  g.items = 300;
  g.ratings = 12000;
  g.rank = 0;  // biases only: nothing personal to find
  g.scale = {1, 5};
  g.step = 1;
  g.seed = 5;
  absl::StatusOr<RatingData> data = GenerateRatingData(g);
  ASSERT_TRUE(data.ok()) << data.status();
  RatingData train, test;
  PerUserSplit(*data, 0.2, 5, 99, &train, &test);
  SelectionOptions o = Small();
  absl::StatusOr<Model> m = TrainSelected(train, o, TrainOptions());
  ASSERT_TRUE(m.ok()) << m.status();
  double popularity = -1, chosen = -1;
  for (const SelectionTrial& t : m->selection.trials) {
    if (t.kind == ModelKind::kPopularity) popularity = t.ndcg;
    if (t.chosen && t.part == SelectionTrial::kRanking) chosen = t.ndcg;
  }
  ASSERT_GE(popularity, 0);
  EXPECT_GE(chosen, popularity);
  // On the held-out fifth: no worse than the popularity kind by more than
  // noise.
  Hyperparameters pop = DefaultHyperparameters(ModelKind::kPopularity);
  absl::StatusOr<Model> p =
      TrainModel(train, ModelKind::kPopularity, pop, TrainOptions());
  ASSERT_TRUE(p.ok());
  TopNOptions topn;
  absl::StatusOr<RankingMetrics> ours = EvaluateTopN(*m, test, topn, nullptr);
  absl::StatusOr<RankingMetrics> theirs = EvaluateTopN(*p, test, topn, nullptr);
  ASSERT_TRUE(ours.ok() && theirs.ok());
  EXPECT_GE(ours->ndcg, 0.9 * theirs->ndcg)
      << "selected " << m->selection.summary;
}

// Where picks follow popularity and values follow planted factors (what
// `generate` makes), ranking by a rating model plus the popularity prior is
// a candidate: biased ALS ranks only if it also predicts at least as well as
// the rating part, and a model that ranks by its ratings is the rating part.
TEST(SelectionTest, RankingByPredictedRatingIsOneModel) {
  GenerateOptions g;
  g.users = 600;
  g.items = 500;
  g.ratings = 36000;
  g.rank = 6;
  g.scale = {1, 5};
  g.step = 1;
  g.seed = 11;
  absl::StatusOr<RatingData> data = GenerateRatingData(g);
  ASSERT_TRUE(data.ok()) << data.status();
  SelectionOptions o;
  o.threads = 2;
  absl::StatusOr<Selection> s = SelectModel(*data, o);
  ASSERT_TRUE(s.ok()) << s.status();
  double als_rmse = -1, other_rmse = -1;
  bool als_ranked = false;
  const SelectionTrial* rank = nullptr;
  const SelectionTrial* rating = nullptr;
  for (const SelectionTrial& t : s->report.trials) {
    if (t.part == SelectionTrial::kRating) {
      if (t.kind == ModelKind::kAls) {
        als_rmse = t.rmse;
      } else if (other_rmse < 0 || t.rmse < other_rmse) {
        other_rmse = t.rmse;
      }
      if (t.chosen) rating = &t;
    } else {
      if (t.kind == ModelKind::kAls) als_ranked = true;
      if (t.chosen) rank = &t;
    }
  }
  ASSERT_GT(als_rmse, 0);
  ASSERT_GT(other_rmse, 0);
  EXPECT_EQ(als_ranked, als_rmse <= other_rmse);
  ASSERT_NE(rank, nullptr);
  ASSERT_NE(rating, nullptr);
  if (rank->kind == ModelKind::kAls || rank->kind == ModelKind::kBayes) {
    EXPECT_EQ(rating->kind, rank->kind);
    EXPECT_EQ(s->kind, rank->kind);
    EXPECT_GT(s->params.popularity_weight, 0) << s->report.summary;
  }
  // On this data the rating models beat popularity's ranking.
  EXPECT_NE(rank->kind, ModelKind::kPopularity) << s->report.summary;
}

// The winner is refit on every rating, with the report inside the model
// and in its file; what serves each part is named.
TEST(SelectionTest, TrainSelectedRefitsAndRecordsTheTrials) {
  const RatingData data = testing::PlantedData(150, 90, 4, 0.15, 0.4, 21);
  absl::StatusOr<Model> m = TrainSelected(data, Small(), TrainOptions());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->user_ratings.cols.size(), data.ratings.size());
  EXPECT_FALSE(m->selection.empty());
  EXPECT_GT(m->last_validation_rmse, 0);
  EXPECT_FALSE(RankingKindName(*m).empty());
  EXPECT_FALSE(RatingKindName(*m).empty());
  absl::StatusOr<std::string> bytes = SerializeModel(*m);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  absl::StatusOr<Model> back = ParseModel(*bytes, "selected");
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->selection.trials.size(), m->selection.trials.size());
  EXPECT_EQ(back->selection.summary, m->selection.summary);
  EXPECT_EQ(back->kind, m->kind);
  // Without a refit, the model trained on the carved part only.
  SelectionOptions o = Small();
  o.refit = false;
  absl::StatusOr<Model> carved = TrainSelected(data, o, TrainOptions());
  ASSERT_TRUE(carved.ok()) << carved.status();
  EXPECT_EQ(static_cast<int64_t>(carved->user_ratings.cols.size()),
            static_cast<int64_t>(data.ratings.size()) -
                carved->selection.validation_ratings);
}

TEST(SelectionTest, TooLittleDataChoosesTheDefaultsAndSaysSo) {
  const RatingData data = testing::PlantedData(6, 5, 1, 0.5, 0.3, 2);
  absl::StatusOr<Selection> s = SelectModel(data, Small());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->report.empty());
  EXPECT_THAT(s->report.summary, HasSubstr("too little data"));
  EXPECT_EQ(s->kind, ModelKind::kHybrid);
}

// Implicit feedback: no rating part is tried or served, iALS searches its
// confidence, every held-out interaction is relevant, and the fallback
// without a search is ials, not the hybrid.
TEST(SelectionTest, ImplicitFeedbackSelectsARankingKindAlone) {
  RatingData data = testing::PlantedData(150, 90, 4, 0.15, 0.4, 21);
  data.feedback = Feedback::kImplicit;
  for (Rating& r : data.ratings) r.value = std::round(r.value * r.value);
  absl::StatusOr<Model> m = TrainSelected(data, Small(), TrainOptions());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->feedback, Feedback::kImplicit);
  EXPECT_TRUE(m->kind == ModelKind::kIals || m->kind == ModelKind::kPuresvd ||
              m->kind == ModelKind::kPopularity)
      << ModelKindName(m->kind);
  EXPECT_EQ(RatingKindName(*m), "none (implicit feedback)");
  std::set<float> alphas;
  for (const SelectionTrial& t : m->selection.trials) {
    EXPECT_EQ(t.part, SelectionTrial::kRanking) << t.candidate;
    EXPECT_THAT(t.candidate, ::testing::Not(HasSubstr("bayes")));
    const size_t at = t.candidate.find("confidence_alpha=");
    if (at != std::string::npos) {
      alphas.insert(std::stof(t.candidate.substr(at + 17)));
    }
  }
  EXPECT_GE(alphas.size(), 2u);  // the confidence is searched
  // Every held-out interaction is relevant, whatever its count.
  EXPECT_EQ(RelevanceThreshold(data.scale, data.feedback),
            -std::numeric_limits<float>::infinity());
  EXPECT_EQ(AutoKind(Feedback::kImplicit), ModelKind::kIals);
  RatingData tiny = testing::PlantedData(6, 5, 1, 0.5, 0.3, 2);
  tiny.feedback = Feedback::kImplicit;
  absl::StatusOr<Selection> s = SelectModel(tiny, Small());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->kind, ModelKind::kIals);
}

TEST(SelectionTest, KindNames) {
  EXPECT_EQ(*ParseKindOrAuto("auto"), std::nullopt);
  EXPECT_EQ(*ParseKindOrAuto("puresvd"), ModelKind::kPuresvd);
  EXPECT_THAT(std::string(ParseKindOrAuto("nope").status().message()),
              HasSubstr("or auto"));
  EXPECT_EQ(KindOrAutoName(std::nullopt), "auto");
}

}  // namespace
}  // namespace recsys
