// Reads: Recommend (for users and visitors), SimilarItems and GetUser.
#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "engine/checks.h"
#include "engine/engine.h"
#include "engine/state.h"
#include "models/fold_in.h"
#include "models/scoring.h"
#include "models/topk.h"

namespace recsys {

using internal::Catalogue;
using internal::CheckEntrySizes;
using internal::CheckGenre;
using internal::CheckId;
using internal::CheckItemUpdate;
using internal::CheckK;
using internal::Generation;
using internal::NewItems;
using internal::NowSeconds;
using internal::SameEntry;
using internal::UserState;
using internal::UserView;
using internal::ViewItem;
using internal::ViewUser;

absl::Status Engine::FoldInSession(const Generation& g, const NewItems& ni,
                                   absl::Span<const SessionRating> session,
                                   std::vector<int32_t>* items,
                                   FoldInResult* row,
                                   std::vector<std::string>* unknown) const {
  const Model& m = *g.model;
  const RatingScale& s = m.scale;
  // The latest rating of each known item, in first-seen order.
  thread_local std::vector<float> values;
  thread_local absl::flat_hash_map<int32_t, size_t> slot;
  values.clear();
  slot.clear();
  for (size_t k = 0; k < session.size(); ++k) {
    const SessionRating& r = session[k];
    if (const absl::Status id = CheckId("item id", r.item); !id.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("session_items[", k, "]: ", id.message()));
    }
    if (!std::isfinite(r.value) || !s.Contains(r.value)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "session_items[%d]: rating %g is outside the scale [%g, %g]", k,
          r.value, s.min, s.max));
    }
    const int32_t i = g.FindItem(r.item, ni);
    if (i < 0) {
      unknown->push_back(r.item);
      continue;
    }
    const auto [at, fresh] = slot.try_emplace(i, values.size());
    if (fresh) {
      items->push_back(i);
      values.push_back(r.value);
    } else {
      values[at->second] = r.value;
    }
  }
  // The same equations as a stored user's fold-in on Rate.
  FoldInEquations eq(m, /*user_side=*/true);
  const int32_t base = m.num_items();
  for (size_t j = 0; j < items->size(); ++j) {
    const int32_t i = (*items)[j];
    if (i < base) {
      eq.Add(m.factors() > 0 ? m.item_factors.row(i).data() : nullptr,
             m.item_bias[i], values[j]);
    } else {
      eq.Add(m.factors() > 0 ? ni.Row(i - base) : nullptr, ni.bias[i - base],
             values[j]);
    }
  }
  *row = eq.Solve();
  return absl::OkStatus();
}

absl::StatusOr<RecommendResult> Engine::Recommend(
    const RecommendQuery& q) const {
  std::vector<RecommendedItem> items;
  RECSYS_ASSIGN_OR_RETURN(
      RecommendResult out, Recommend(q, [&](const RecommendedItemRef& r) {
        items.push_back({{r.id, r.info.title, r.info.genres, r.info.retired},
                         r.predicted_rating,
                         r.score});
      }));
  out.items = std::move(items);
  return out;
}

absl::StatusOr<RecommendResult> Engine::Recommend(
    const RecommendQuery& q,
    absl::FunctionRef<void(const RecommendedItemRef&)> emit) const {
  const bool visitor = !q.session.empty();
  if (visitor && !q.user.empty()) {
    return absl::InvalidArgumentError(
        "give a user id or session items, not both");
  }
  if (!visitor) RECSYS_RETURN_IF_ERROR(CheckId("user id", q.user));
  RECSYS_RETURN_IF_ERROR(CheckK(q.k));
  if (q.exclude.size() > kMaxListItems || q.candidates.size() > kMaxListItems ||
      q.session.size() > kMaxListItems) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "at most %d excluded, candidate or session items", kMaxListItems));
  }
  const std::shared_ptr<Generation> g = current();
  if (q.min_log_sequence != 0) {
    RECSYS_RETURN_IF_ERROR(CheckApplied(q.min_log_sequence));
  }
  const Model& m = *g->model;
  const std::shared_ptr<const NewItems> ni = g->items();
  RECSYS_RETURN_IF_ERROR(CheckGenre(*ni, q.genre));
  const int32_t base = m.num_items();
  const int32_t total = base + ni->size();
  RecommendResult out;
  // The user's row and rated items, read in place (no copies): from the
  // per-user state when the user rated since training, else the model; for
  // a visitor, folded in now from the session's ratings.
  const std::shared_ptr<const UserState> state =
      visitor ? nullptr : g->FindUser(q.user);
  const int32_t model_user = state || visitor ? -1 : m.users.Find(q.user);
  float user_bias = 0;
  const float* user_vec = nullptr;
  int64_t rated_count = 0;
  // A visitor's known items and row (per-thread scratch, touched only for
  // a visitor).
  const std::vector<int32_t>* session_items = nullptr;
  if (state) {
    user_bias = state->bias;
    user_vec = state->vec.data();
    rated_count = static_cast<int64_t>(state->ratings.size());
  } else if (model_user >= 0) {
    user_bias = m.user_bias[model_user];
    user_vec = m.user_factors.row(model_user).data();
    rated_count = m.user_ratings.size(model_user);
  } else if (visitor) {
    thread_local std::vector<int32_t> visitor_items;
    thread_local FoldInResult visitor_row;
    visitor_items.clear();
    RECSYS_RETURN_IF_ERROR(FoldInSession(*g, *ni, q.session, &visitor_items,
                                         &visitor_row, &out.unknown_items));
    session_items = &visitor_items;
    user_bias = visitor_row.bias;
    user_vec = visitor_row.factors.data();
    rated_count = static_cast<int64_t>(visitor_items.size());
  }

  out.model_version = g->version;
  out.personalized = rated_count > 0;
  // With personal factors, `scores` holds the new items' ranking scores
  // (one product here), and ItemPanels::ScoreTopK (laid out per
  // generation) scores the trained items and picks the k best of both,
  // exactly. Otherwise (kPopularity, or no ratings yet) `scores` holds
  // every item's rating count. Predicted ratings are worked out only for
  // the k returned (for explicit kinds they are the clipped scores).
  // Scratch buffers live per thread.
  thread_local std::vector<float> scores;
  thread_local std::vector<int32_t> exclude;
  thread_local std::vector<ScoredItem> best;
  exclude.clear();
  // (kPopularity scores are rating counts, kIals scores preferences.)
  // (A popularity prior makes the scores more than ratings.)
  const bool scores_are_ratings =
      out.personalized && m.kind != ModelKind::kPopularity &&
      m.ranks_by_rating() && m.rank_bias.size() == 0;
  const bool by_factors = out.personalized && m.kind != ModelKind::kPopularity;
  const float offset = m.ranks_by_rating() ? m.mu + user_bias : 0.0f;
  if (by_factors) {
    scores.resize(static_cast<size_t>(total - base));
    if (total > base) {
      Eigen::Map<Eigen::VectorXf> tail(scores.data(), total - base);
      if (m.ranks_by_rating()) {
        tail = ni->bias.array() + offset;
        if (m.factors() > 0) {
          ni->AddProducts(user_vec, m.factors(), tail.data());
        }
      } else {
        tail.setZero();
        ni->AddProducts(user_vec, m.rank_cols(), tail.data());
      }
    }
  } else {
    scores.resize(static_cast<size_t>(total));
    for (int32_t i = 0; i < base; ++i) {
      scores[i] = static_cast<float>(m.item_counts[i]);
    }
    for (int32_t j = 0; j < ni->size(); ++j) {
      scores[base + j] = static_cast<float>(ni->counts[j]);
    }
  }
  // The rating shown: the score itself; for a model that ranks by other
  // scores, its rating part (kHybrid) or its biases (kIals); for a user
  // without ratings, the biases.
  auto predicted = [&](int32_t i, float score) {
    if (scores_are_ratings) return m.scale.Clip(score);
    const float item_bias = i < base ? m.item_bias[i] : ni->bias[i - base];
    if (!out.personalized) return m.scale.Clip(m.mu + item_bias);
    const float* item_row =
        i < base ? m.item_factors.row(i).data() : ni->Row(i - base);
    return m.scale.Clip(
        m.RatingScore(user_bias, user_vec, item_bias, item_row));
  };

  if (!q.include_rated) {
    if (state) {
      for (const auto& e : state->ratings) exclude.push_back(e.item);
    } else if (visitor) {
      exclude.insert(exclude.end(), session_items->begin(),
                     session_items->end());
    } else if (model_user >= 0) {
      const SparseRows& r = m.user_ratings;
      exclude.insert(exclude.end(), r.cols.begin() + r.offsets[model_user],
                     r.cols.begin() + r.offsets[model_user + 1]);
    }
  }
  for (const std::string& id : q.exclude) {
    const int32_t i = g->FindItem(id, *ni);
    if (i >= 0) exclude.push_back(i);
  }
  // A genre or a candidate list narrows the catalogue to `allowed`, in
  // increasing order, without what `exclude` names. Except for a genre
  // alone that leaves more than a short list (see below) of a factor
  // model's catalogue: then the genre's bit set (`allowed_bits`) says which
  // of the model's items are allowed, and the new items outside the genre
  // join `exclude`. Listing the rest of the catalogue in `exclude` instead
  // cost ~180 us per call on 62k items
  // (docs/performance-log/2026-11-24-filtered-recommends.md).
  // Without a filter, `allowed_bits` is the set of items not retired.
  const bool narrowed = !q.genre.empty() || !q.candidates.empty();
  thread_local std::vector<int32_t> allowed;
  allowed.clear();
  bool by_genre_bits = false;
  absl::Span<const uint64_t> allowed_bits;
  // A short list: scored item by item (one dot product each).
  auto is_short = [&](size_t n) {
    return n * 128 <= static_cast<size_t>(total);
  };
  const Catalogue::Index& index = ni->catalogue->index();
  if (narrowed) {
    // Not retired and, for a genre, of it.
    auto eligible = [&](int32_t i) {
      const ItemInfo& info = ni->Describe(i);
      return !info.retired && (q.genre.empty() ||
                               std::find(info.genres.begin(), info.genres.end(),
                                         q.genre) != info.genres.end());
    };
    if (q.candidates.empty()) {
      // The new items of the genre.
      for (int32_t i = base; i < total; ++i) {
        if (eligible(i)) allowed.push_back(i);
      }
      auto it = index.by_genre.find(q.genre);
      const size_t trained =
          it == index.by_genre.end() ? 0 : it->second.items.size();
      if (by_factors && !is_short(trained + allowed.size())) {
        by_genre_bits = true;
        // (A genre without items has no bit set: a word of zeros allows
        // none.)
        static constexpr uint64_t kNone[1] = {0};
        allowed_bits = trained > 0 ? absl::MakeConstSpan(it->second.bits)
                                   : absl::MakeConstSpan(kNone);
        size_t a = 0;
        for (int32_t i = base; i < total; ++i) {
          if (a < allowed.size() && allowed[a] == i) {
            ++a;
          } else {
            exclude.push_back(i);
          }
        }
        allowed.clear();
      } else if (trained > 0) {
        allowed.insert(allowed.begin(), it->second.items.begin(),
                       it->second.items.end());
      }
    } else {
      for (const std::string& id : q.candidates) {
        const int32_t i = g->FindItem(id, *ni);
        if (i < 0) {
          out.unknown_items.push_back(id);
        } else if (eligible(i)) {
          allowed.push_back(i);
        }
      }
      std::sort(allowed.begin(), allowed.end());
      allowed.erase(std::unique(allowed.begin(), allowed.end()), allowed.end());
    }
  } else {
    // Retired items are left out: the model's by the bit set of those
    // available (or, without factors, in `exclude`), new ones in `exclude`.
    for (int32_t j : ni->retired) exclude.push_back(base + j);
    if (by_factors) {
      allowed_bits = index.available;
    } else {
      exclude.insert(exclude.end(), index.retired.begin(), index.retired.end());
    }
  }
  if (narrowed && !by_genre_bits) {
    // Each excluded item is looked up in `allowed` (sorted), rather than
    // sorting the exclusions: a heavy user's history is long.
    thread_local std::vector<char> dropped;
    dropped.assign(allowed.size(), 0);
    for (int32_t e : exclude) {
      auto it = std::lower_bound(allowed.begin(), allowed.end(), e);
      if (it != allowed.end() && *it == e) {
        dropped[static_cast<size_t>(it - allowed.begin())] = 1;
      }
    }
    size_t kept = 0;
    for (size_t j = 0; j < allowed.size(); ++j) {
      if (!dropped[j]) allowed[kept++] = allowed[j];
    }
    allowed.resize(kept);
  }
  // A short list is scored item by item (one dot product each, for a
  // factor model); otherwise the catalogue is scored with the rest
  // excluded or, for a genre, not allowed. Either way the k best come out
  // in the same order, since `allowed` keeps the items' order.
  if (narrowed && !by_genre_bits && (!by_factors || is_short(allowed.size()))) {
    thread_local std::vector<float> short_scores;
    short_scores.resize(allowed.size());
    if (by_factors) {
      // The trained items come first; the new ones' scores are in `scores`.
      const auto trained = static_cast<size_t>(
          std::lower_bound(allowed.begin(), allowed.end(), base) -
          allowed.begin());
      g->panels.ScoreItems(user_vec, offset,
                           absl::MakeConstSpan(allowed.data(), trained),
                           short_scores.data());
      for (size_t j = trained; j < allowed.size(); ++j) {
        short_scores[j] = scores[static_cast<size_t>(allowed[j] - base)];
      }
    } else {
      for (size_t j = 0; j < allowed.size(); ++j) {
        short_scores[j] = scores[static_cast<size_t>(allowed[j])];
      }
    }
    TopK(short_scores, q.k, {}, &best);
    for (ScoredItem& b : best) b.item = allowed[static_cast<size_t>(b.item)];
  } else {
    if (narrowed && !by_genre_bits) {
      // A long candidate list: everything else is excluded.
      size_t a = 0;
      for (int32_t i = 0; i < total; ++i) {
        if (a < allowed.size() && allowed[a] == i) {
          ++a;
        } else {
          exclude.push_back(i);
        }
      }
    }
    if (by_factors) {
      g->panels.ScoreTopK(user_vec, offset, scores, q.k, exclude, allowed_bits,
                          &best);
    } else {
      // `scores` is this call's scratch: the excluded items may be
      // overwritten.
      TopKInPlace(absl::MakeSpan(scores), q.k, exclude, &best);
    }
  }
  // `g` and `ni` keep the referenced ids and descriptions alive until
  // Recommend returns.
  for (const ScoredItem& s : best) {
    const bool trained = s.item < base;
    emit({trained ? m.items.External(s.item) : ni->ids->External(s.item - base),
          ni->Describe(s.item), predicted(s.item, s.score), s.score});
  }
  return out;
}

absl::StatusOr<SimilarResult> Engine::SimilarItems(const std::string& item,
                                                   int k) const {
  RECSYS_RETURN_IF_ERROR(CheckId("item id", item));
  RECSYS_RETURN_IF_ERROR(CheckK(k));
  const std::shared_ptr<Generation> g = current();
  const Model& m = *g->model;
  if (m.factors() == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the ", ModelKindName(m.kind),
                     " model has no item vectors to compare"));
  }
  const std::shared_ptr<const NewItems> ni = g->items();
  const int32_t i = g->FindItem(item, *ni);
  if (i < 0)
    return absl::NotFoundError(absl::StrCat("unknown item '", item, "'"));
  const int32_t base = m.num_items();
  // Items compare by the cosine of their ranking vectors (all factors,
  // except for a kHybrid model's rating part): the trained ones by the
  // unit-length panels, the new ones here.
  const int32_t cols = m.rank_cols();
  // (UnitRows, as for the panels, so a trained item's own row is the same
  // floats in both.)
  const RowMatrix unit =
      i < base
          ? UnitRows(m.item_factors.block(i, 0, 1, cols))
          : UnitRows(Eigen::Map<const RowMatrix>(ni->Row(i - base), 1, cols));
  SimilarResult out;
  out.model_version = g->version;
  out.item = ViewItem(*g, *ni, i);
  // An item with no vector yet (a new item whose raters have nothing else
  // to go by) is like none: no list of items tied at 0.
  if (!unit.row(0).any()) return out;
  thread_local std::vector<float> tail;
  tail.assign(static_cast<size_t>(ni->size()), 0.0f);
  for (int32_t j = 0; j < ni->size(); ++j) {
    const Eigen::Map<const Eigen::RowVectorXf> row(ni->Row(j), cols);
    const float n = row.norm();
    if (n > 0) tail[static_cast<size_t>(j)] = (row / n).dot(unit.row(0));
  }
  thread_local std::vector<ScoredItem> best;
  // Neither the item itself nor a retired one.
  thread_local std::vector<int32_t> exclude;
  exclude.assign(1, i);
  for (int32_t j : ni->retired) exclude.push_back(base + j);
  g->UnitPanels().ScoreTopK(unit.data(), 0.0f, tail, k, exclude,
                            ni->catalogue->index().available, &best);
  for (const ScoredItem& s : best) {
    out.similar.emplace_back(ViewItem(*g, *ni, s.item), s.score);
  }
  return out;
}

absl::StatusOr<UserResult> Engine::GetUser(const std::string& user, int recent,
                                           uint64_t min_log_sequence) const {
  RECSYS_RETURN_IF_ERROR(CheckId("user id", user));
  if (recent <= 0 || recent > kMaxK) {
    return absl::InvalidArgumentError(
        absl::StrFormat("recent must be in 1..%d, got %d", kMaxK, recent));
  }
  const std::shared_ptr<Generation> g = current();
  if (min_log_sequence != 0) {
    RECSYS_RETURN_IF_ERROR(CheckApplied(min_log_sequence));
  }
  internal::UserView v = internal::ViewUser(*g, user);
  if (!v.known)
    return absl::NotFoundError(absl::StrCat("unknown user '", user, "'"));
  const std::shared_ptr<const NewItems> ni = g->items();
  // Only the `recent` newest are ordered (a heavy user has thousands).
  const size_t shown = std::min(v.ratings.size(), static_cast<size_t>(recent));
  std::partial_sort(
      v.ratings.begin(), v.ratings.begin() + shown, v.ratings.end(),
      [](const UserState::Entry& a, const UserState::Entry& b) {
        return std::tie(a.timestamp, a.seq) > std::tie(b.timestamp, b.seq);
      });
  UserResult out;
  out.rating_count = static_cast<int64_t>(v.ratings.size());
  out.personalized = !v.ratings.empty();
  for (size_t j = 0; j < shown; ++j) {
    const auto& e = v.ratings[j];
    out.recent.push_back({ViewItem(*g, *ni, e.item), e.value, e.timestamp});
  }
  return out;
}

}  // namespace recsys
