#include "models/model.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace recsys {

namespace {
constexpr std::pair<ModelKind, absl::string_view> kKindNames[] = {
    {ModelKind::kBaseline, "baseline"}, {ModelKind::kPopularity, "popularity"},
    {ModelKind::kSgd, "sgd"},           {ModelKind::kAls, "als"},
    {ModelKind::kIals, "ials"},         {ModelKind::kBayes, "bayes"},
    {ModelKind::kHybrid, "hybrid"},     {ModelKind::kPuresvd, "puresvd"},
};
}  // namespace

absl::string_view ModelKindName(ModelKind kind) {
  for (const auto& [k, name] : kKindNames) {
    if (k == kind) return name;
  }
  return "unknown";
}

absl::StatusOr<ModelKind> ParseModelKind(absl::string_view name) {
  std::vector<absl::string_view> names;
  for (const auto& [k, n] : kKindNames) {
    if (n == name) return k;
    names.push_back(n);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown model kind '", name,
                   "' (expected one of: ", absl::StrJoin(names, ", "), ")"));
}

float Model::Predict(int32_t u, int32_t i) const {
  float s = mu;
  if (u >= 0) s += user_bias[u];
  if (i >= 0) s += item_bias[i];
  if (u >= 0 && i >= 0) {
    s = RatingScore(user_bias[u], user_factors.row(u).data(), item_bias[i],
                    item_factors.row(i).data());
  }
  return scale.Clip(s);
}

Hyperparameters RankingPart(const Hyperparameters& hybrid) {
  Hyperparameters p = hybrid;
  p.factors = hybrid.rank_factors;
  p.epochs = hybrid.rank_epochs;
  p.reg = hybrid.rank_reg;
  p.init_std = 0.01f;
  return p;
}

void SetRankingPart(const Hyperparameters& rank, Hyperparameters* hybrid) {
  hybrid->rank_factors = rank.factors;
  hybrid->rank_epochs = rank.epochs;
  hybrid->rank_reg = rank.reg;
  hybrid->implicit_weight = rank.implicit_weight;
  hybrid->reg_exponent = rank.reg_exponent;
  hybrid->value_weight = rank.value_weight;
  hybrid->target_min = rank.target_min;
  hybrid->confidence_alpha = rank.confidence_alpha;
  hybrid->confidence_eps = rank.confidence_eps;
  hybrid->cg_steps = rank.cg_steps;
  hybrid->popularity_weight = rank.popularity_weight;
}

void ComputeGrams(Model* m) {
  if (m->ranks_by_rating()) {
    m->item_gram.resize(0, 0);
    m->user_gram.resize(0, 0);
    return;
  }
  const int32_t k = m->rank_cols();
  m->item_gram.noalias() =
      m->item_factors.leftCols(k).transpose() * m->item_factors.leftCols(k);
  m->user_gram.noalias() =
      m->user_factors.leftCols(k).transpose() * m->user_factors.leftCols(k);
}

void InitModelFrom(const RatingData& data, ModelKind kind,
                   const Hyperparameters& params, int32_t factors, Model* m) {
  m->kind = kind;
  m->params = params;
  m->params.factors = factors;
  m->scale = data.scale;
  m->feedback = data.feedback;
  m->users = data.users;
  m->items = data.items;
  m->item_info = data.item_info;
  m->item_info.resize(data.items.size());
  m->watermark = ComputeWatermark(data);
  m->user_bias = Eigen::VectorXf::Zero(data.num_users());
  m->item_bias = Eigen::VectorXf::Zero(data.num_items());
  m->user_factors = RowMatrix::Zero(data.num_users(), factors);
  m->item_factors = RowMatrix::Zero(data.num_items(), factors);
  m->user_ratings = BuildRows(data, /*by_item=*/false, /*with_times=*/true);
  m->item_counts.assign(data.num_items(), 0);
  for (const Rating& r : data.ratings) ++m->item_counts[r.item];
  double sum = 0;
  for (const Rating& r : data.ratings) sum += r.value;
  m->mu =
      data.ratings.empty()
          ? 0.5f * (data.scale.min + data.scale.max)
          : static_cast<float>(sum / static_cast<double>(data.ratings.size()));
}

}  // namespace recsys
