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
using internal::CheckGenre;
using internal::CheckId;
using internal::CheckK;
using internal::Generation;
using internal::NewItems;
using internal::UserState;
using internal::UserView;
using internal::ViewItem;
using internal::ViewUser;

namespace {

// One Recommend call's scratch, kept per thread so that a call allocates
// nothing once the buffers have grown.
struct RecommendScratch {
  std::vector<float> session_values;  // a visitor's latest rating per item
  absl::flat_hash_map<int32_t, size_t> session_slot;
  std::vector<int32_t> session_items;  // ... the items, first seen first
  FoldInResult session_row;            // ... and the row folded in
  // By factors: the new items' scores (the trained ones are scored by the
  // panels); otherwise every item's rating count.
  std::vector<float> scores;
  std::vector<int32_t> exclude;  // global item indices
  std::vector<int32_t> allowed;  // increasing
  std::vector<char> dropped;
  std::vector<float> short_scores;
  std::vector<ScoredItem> best;
};

RecommendScratch& Scratch() {
  thread_local RecommendScratch scratch;
  return scratch;
}

// The asking user's row and rated items, read in place (no copies): from
// the per-user state when the user rated since training, else the model;
// for a visitor, folded in from the session's ratings.
struct UserRow {
  std::shared_ptr<const UserState> state;
  int32_t model_user = -1;
  bool visitor = false;
  float bias = 0;
  const float* vec = nullptr;
  int64_t rated = 0;
};

// What one call reads, and how it scores: with personal factors the
// panels score the trained items (ItemPanels::ScoreTopK, exact) and
// `scores` holds the new items'; otherwise (kPopularity, or no ratings yet)
// `scores` holds every item's rating count.
struct Call {
  const RecommendQuery& q;
  const Generation& g;
  const Model& m;
  const NewItems& ni;
  RecommendScratch& s;
  int32_t base = 0;   // the model's items come first ...
  int32_t total = 0;  // ... then the new ones
  UserRow user;
  bool by_factors = false;
  float offset = 0;  // added to every factor score
};

// How the catalogue is narrowed (a genre or candidate list) and which
// trained items the panels may return (`allowed_bits`; empty = all).
struct Filter {
  bool narrowed = false;
  bool by_genre_bits = false;
  absl::Span<const uint64_t> allowed_bits;
};

absl::Status CheckQuery(const RecommendQuery& q) {
  if (!q.session.empty() && !q.user.empty()) {
    return absl::InvalidArgumentError(
        "give a user id or session items, not both");
  }
  if (q.session.empty()) RECSYS_RETURN_IF_ERROR(CheckId("user id", q.user));
  RECSYS_RETURN_IF_ERROR(CheckK(q.k));
  if (q.exclude.size() > kMaxListItems || q.candidates.size() > kMaxListItems ||
      q.session.size() > kMaxListItems) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "at most %d excluded, candidate or session items", kMaxListItems));
  }
  return absl::OkStatus();
}

// The latest rating of each known session item, in first-seen order, into
// s.session_items / s.session_values; unknown ids go to `unknown`.
absl::Status ReadSession(const Call& c, std::vector<std::string>* unknown) {
  const RatingScale& scale = c.m.scale;
  RecommendScratch& s = c.s;
  s.session_items.clear();
  s.session_values.clear();
  s.session_slot.clear();
  for (size_t k = 0; k < c.q.session.size(); ++k) {
    const SessionRating& r = c.q.session[k];
    if (const absl::Status id = CheckId("item id", r.item); !id.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("session_items[", k, "]: ", id.message()));
    }
    if (c.m.feedback == Feedback::kImplicit) {
      // (A weight, as a count or an event gives.)
      if (!(r.value >= 0 && r.value <= kMaxWeight)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "session_items[%d]: rating %g must be in [0, 1e9] (the model "
            "learnt from implicit feedback: a weight)",
            k, r.value));
      }
    } else if (!std::isfinite(r.value) || !scale.Contains(r.value)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "session_items[%d]: rating %g is outside the scale [%g, %g]", k,
          r.value, scale.min, scale.max));
    }
    const int32_t i = c.g.FindItem(r.item, c.ni);
    if (i < 0) {
      unknown->push_back(r.item);
      continue;
    }
    const auto [at, fresh] =
        s.session_slot.try_emplace(i, s.session_values.size());
    if (fresh) {
      s.session_items.push_back(i);
      s.session_values.push_back(r.value);
    } else {
      s.session_values[at->second] = r.value;
    }
  }
  return absl::OkStatus();
}

// A visitor's row from the session's ratings: the same equations as a
// stored user's fold-in on Rate.
void FoldInSession(const Call& c) {
  const Model& m = c.m;
  RecommendScratch& s = c.s;
  FoldInEquations eq(m, /*user_side=*/true);
  for (size_t j = 0; j < s.session_items.size(); ++j) {
    const int32_t i = s.session_items[j];
    if (i < c.base) {
      eq.Add(m.factors() > 0 ? m.item_factors.row(i).data() : nullptr,
             m.item_bias[i], s.session_values[j]);
    } else {
      eq.Add(m.factors() > 0 ? c.ni.Row(i - c.base) : nullptr,
             c.ni.bias[i - c.base], s.session_values[j]);
    }
  }
  s.session_row = eq.Solve();
}

// Step 1: the user's row.
absl::Status FindUserRow(Call& c, std::vector<std::string>* unknown) {
  UserRow& u = c.user;
  const Model& m = c.m;
  if (!c.q.session.empty()) {
    RECSYS_RETURN_IF_ERROR(ReadSession(c, unknown));
    FoldInSession(c);
    u.visitor = true;
    u.bias = c.s.session_row.bias;
    u.vec = c.s.session_row.factors.data();
    u.rated = static_cast<int64_t>(c.s.session_items.size());
  } else if ((u.state = c.g.FindUser(c.q.user))) {
    u.bias = u.state->bias;
    u.vec = u.state->vec.data();
    u.rated = static_cast<int64_t>(u.state->ratings.size());
  } else if ((u.model_user = m.users.Find(c.q.user)) >= 0) {
    u.bias = m.user_bias[u.model_user];
    u.vec = m.user_factors.row(u.model_user).data();
    u.rated = m.user_ratings.size(u.model_user);
  }
  // (kPopularity scores are rating counts, kIals scores preferences.)
  c.by_factors = u.rated > 0 && m.kind != ModelKind::kPopularity;
  c.offset = m.ranks_by_rating() ? m.mu + u.bias : 0.0f;
  return absl::OkStatus();
}

// Step 2a: what is never returned: the user's rated items (unless asked
// for) and the excluded ids.
void ExcludeRatedAndNamed(const Call& c) {
  std::vector<int32_t>& exclude = c.s.exclude;
  exclude.clear();
  const UserRow& u = c.user;
  if (!c.q.include_rated) {
    if (u.state) {
      for (const auto& e : u.state->ratings) exclude.push_back(e.item);
    } else if (u.visitor) {
      exclude.insert(exclude.end(), c.s.session_items.begin(),
                     c.s.session_items.end());
    } else if (u.model_user >= 0) {
      const SparseRows& r = c.m.user_ratings;
      exclude.insert(exclude.end(), r.cols.begin() + r.offsets[u.model_user],
                     r.cols.begin() + r.offsets[u.model_user + 1]);
    }
  }
  for (const std::string& id : c.q.exclude) {
    const int32_t i = c.g.FindItem(id, c.ni);
    if (i >= 0) exclude.push_back(i);
  }
}

// A short list is scored item by item (one dot product each).
bool IsShort(const Call& c, size_t n) {
  return n * 128 <= static_cast<size_t>(c.total);
}

// Not retired and, for a genre, of it.
bool Eligible(const Call& c, int32_t i) {
  const ItemInfo& info = c.ni.Describe(i);
  return !info.retired &&
         (c.q.genre.empty() || std::find(info.genres.begin(), info.genres.end(),
                                         c.q.genre) != info.genres.end());
}

// Step 2b for a genre alone: the genre's items in `allowed`; or, for a
// factor model when that is more than a short list, the genre's bit set
// over the trained items with the new items outside it excluded.
// (Listing the rest of the catalogue in `exclude` instead cost ~180 us per
// call on 62k items: docs/performance-log/2026-11-24-filtered-recommends.md.)
void FilterByGenre(const Call& c, Filter* f) {
  std::vector<int32_t>& allowed = c.s.allowed;
  for (int32_t i = c.base; i < c.total; ++i) {
    if (Eligible(c, i)) allowed.push_back(i);
  }
  const Catalogue::Index& index = c.ni.catalogue->index();
  auto it = index.by_genre.find(c.q.genre);
  const size_t trained =
      it == index.by_genre.end() ? 0 : it->second.items.size();
  if (c.by_factors && !IsShort(c, trained + allowed.size())) {
    f->by_genre_bits = true;
    // (A genre without items has no bit set: a word of zeros allows none.)
    static constexpr uint64_t kNone[1] = {0};
    f->allowed_bits = trained > 0 ? absl::MakeConstSpan(it->second.bits)
                                  : absl::MakeConstSpan(kNone);
    size_t a = 0;
    for (int32_t i = c.base; i < c.total; ++i) {
      if (a < allowed.size() && allowed[a] == i) {
        ++a;
      } else {
        c.s.exclude.push_back(i);
      }
    }
    allowed.clear();
  } else if (trained > 0) {
    allowed.insert(allowed.begin(), it->second.items.begin(),
                   it->second.items.end());
  }
}

// Step 2b for a candidate list: its eligible items, sorted, each once.
void FilterByCandidates(const Call& c, std::vector<std::string>* unknown) {
  std::vector<int32_t>& allowed = c.s.allowed;
  for (const std::string& id : c.q.candidates) {
    const int32_t i = c.g.FindItem(id, c.ni);
    if (i < 0) {
      unknown->push_back(id);
    } else if (Eligible(c, i)) {
      allowed.push_back(i);
    }
  }
  std::sort(allowed.begin(), allowed.end());
  allowed.erase(std::unique(allowed.begin(), allowed.end()), allowed.end());
}

// Drops the excluded items from `allowed`: each is looked up (it is
// sorted) rather than sorting the exclusions, as a heavy user's history is
// long.
void DropExcluded(const Call& c) {
  std::vector<int32_t>& allowed = c.s.allowed;
  c.s.dropped.assign(allowed.size(), 0);
  for (int32_t e : c.s.exclude) {
    auto it = std::lower_bound(allowed.begin(), allowed.end(), e);
    if (it != allowed.end() && *it == e) {
      c.s.dropped[static_cast<size_t>(it - allowed.begin())] = 1;
    }
  }
  size_t kept = 0;
  for (size_t j = 0; j < allowed.size(); ++j) {
    if (!c.s.dropped[j]) allowed[kept++] = allowed[j];
  }
  allowed.resize(kept);
}

// Step 2: the candidate filter. Without a genre or candidates, retired
// items are left out: the trained ones by the bit set of those available
// (or, without factors, in `exclude`), new ones in `exclude`.
Filter BuildFilter(const Call& c, std::vector<std::string>* unknown) {
  ExcludeRatedAndNamed(c);
  c.s.allowed.clear();
  Filter f;
  f.narrowed = !c.q.genre.empty() || !c.q.candidates.empty();
  if (!f.narrowed) {
    const Catalogue::Index& index = c.ni.catalogue->index();
    for (int32_t j : c.ni.retired) c.s.exclude.push_back(c.base + j);
    if (c.by_factors) {
      f.allowed_bits = index.available;
    } else {
      c.s.exclude.insert(c.s.exclude.end(), index.retired.begin(),
                         index.retired.end());
    }
    return f;
  }
  if (c.q.candidates.empty()) {
    FilterByGenre(c, &f);
  } else {
    FilterByCandidates(c, unknown);
  }
  if (!f.by_genre_bits) DropExcluded(c);
  return f;
}

// Step 3a: the scores the panels do not give (see Call).
void ScoreOutsidePanels(const Call& c) {
  const Model& m = c.m;
  std::vector<float>& scores = c.s.scores;
  if (!c.by_factors) {
    scores.resize(static_cast<size_t>(c.total));
    for (int32_t i = 0; i < c.base; ++i) {
      scores[i] = static_cast<float>(m.item_counts[i]);
    }
    for (int32_t j = 0; j < c.ni.size(); ++j) {
      scores[c.base + j] = static_cast<float>(c.ni.counts[j]);
    }
    return;
  }
  scores.resize(static_cast<size_t>(c.total - c.base));
  if (c.total == c.base) return;
  Eigen::Map<Eigen::VectorXf> tail(scores.data(), c.total - c.base);
  if (m.ranks_by_rating()) {
    tail = c.ni.bias.array() + c.offset;
    if (m.factors() > 0) {
      c.ni.AddProducts(c.user.vec, m.factors(), tail.data());
    }
  } else {
    tail.setZero();
    c.ni.AddProducts(c.user.vec, m.rank_cols(), tail.data());
  }
}

// Step 3b, a short list: each allowed item scored alone. `allowed` keeps
// the items' order, so the k best come out as from the whole catalogue.
void ScoreShortList(const Call& c) {
  RecommendScratch& s = c.s;
  s.short_scores.resize(s.allowed.size());
  if (c.by_factors) {
    // The trained items come first; the new ones' scores are in `scores`.
    const auto trained = static_cast<size_t>(
        std::lower_bound(s.allowed.begin(), s.allowed.end(), c.base) -
        s.allowed.begin());
    c.g.panels.ScoreItems(c.user.vec, c.offset,
                          absl::MakeConstSpan(s.allowed.data(), trained),
                          s.short_scores.data());
    for (size_t j = trained; j < s.allowed.size(); ++j) {
      s.short_scores[j] = s.scores[static_cast<size_t>(s.allowed[j] - c.base)];
    }
  } else {
    for (size_t j = 0; j < s.allowed.size(); ++j) {
      s.short_scores[j] = s.scores[static_cast<size_t>(s.allowed[j])];
    }
  }
  TopK(s.short_scores, c.q.k, {}, &s.best);
  for (ScoredItem& b : s.best) b.item = s.allowed[static_cast<size_t>(b.item)];
}

// Step 3: the k best allowed items into s.best.
void Score(const Call& c, const Filter& f) {
  RecommendScratch& s = c.s;
  ScoreOutsidePanels(c);
  const bool listed = f.narrowed && !f.by_genre_bits;
  if (listed && (!c.by_factors || IsShort(c, s.allowed.size()))) {
    ScoreShortList(c);
    return;
  }
  if (listed) {
    // A long candidate list: everything else is excluded.
    size_t a = 0;
    for (int32_t i = 0; i < c.total; ++i) {
      if (a < s.allowed.size() && s.allowed[a] == i) {
        ++a;
      } else {
        s.exclude.push_back(i);
      }
    }
  }
  if (c.by_factors) {
    c.g.panels.ScoreTopK(c.user.vec, c.offset, s.scores, c.q.k, s.exclude,
                         f.allowed_bits, &s.best);
  } else {
    // `scores` is this call's scratch: the excluded items may be
    // overwritten.
    TopKInPlace(absl::MakeSpan(s.scores), c.q.k, s.exclude, &s.best);
  }
}

// Whether the rating shown is the ranking score itself (a model that ranks
// by predicted rating, with no popularity prior making the scores more).
bool ScoreIsRating(const Call& c) {
  return c.by_factors && c.m.ranks_by_rating() && c.m.rank_bias.size() == 0;
}

// Asks the memory for the rating part of every row PredictedRating will
// read, all at once: fetched one row after another, each row's first line
// missed the cache in turn (a hybrid's 480 rating columns are 30 lines a
// row, ten rows a call).
void PrefetchRatingRows(const Call& c) {
  const Model& m = c.m;
  const int32_t first = m.rating_col(), n = m.factors() - first;
  if (n <= 0 || c.user.rated == 0 || ScoreIsRating(c)) {
    return;
  }
  for (const ScoredItem& s : c.s.best) {
    const float* row = s.item < c.base ? m.item_factors.row(s.item).data()
                                       : c.ni.Row(s.item - c.base);
    const char* p = reinterpret_cast<const char*>(row + first);
    for (int32_t b = 0; b < n * 4; b += 64) __builtin_prefetch(p + b);
  }
}

// The rating shown: the score itself when it is one; for a model that
// ranks by other scores, its rating part (kHybrid) or its biases (kIals);
// for a user without ratings, the biases.
float PredictedRating(const Call& c, int32_t i, float score) {
  const Model& m = c.m;
  const bool personalized = c.user.rated > 0;
  if (ScoreIsRating(c)) {
    return m.scale.Clip(score);
  }
  const float item_bias = i < c.base ? m.item_bias[i] : c.ni.bias[i - c.base];
  if (!personalized) return m.scale.Clip(m.mu + item_bias);
  const float* item_row =
      i < c.base ? m.item_factors.row(i).data() : c.ni.Row(i - c.base);
  return m.scale.Clip(
      m.RatingScore(c.user.bias, c.user.vec, item_bias, item_row));
}

}  // namespace

absl::StatusOr<RecommendResult> Engine::Recommend(
    const RecommendQuery& q,
    absl::FunctionRef<void(const RecommendedItemRef&)> emit) const {
  RECSYS_RETURN_IF_ERROR(CheckQuery(q));
  const std::shared_ptr<Generation> g = current();
  if (q.min_log_sequence != 0) {
    RECSYS_RETURN_IF_ERROR(CheckApplied(q.min_log_sequence));
  }
  // `g` and `ni` keep the referenced ids and descriptions alive until
  // Recommend returns.
  const std::shared_ptr<const NewItems> ni = g->items();
  RECSYS_RETURN_IF_ERROR(CheckGenre(*ni, q.genre));
  const Model& m = *g->model;
  Call c{q,
         *g,
         m,
         *ni,
         Scratch(),
         m.num_items(),
         m.num_items() + ni->size(),
         UserRow(),
         false,
         0.0f};
  RecommendResult out;
  out.model_version = g->version;
  out.feedback = m.feedback;
  RECSYS_RETURN_IF_ERROR(FindUserRow(c, &out.unknown_items));
  out.personalized = c.user.rated > 0;
  const Filter filter = BuildFilter(c, &out.unknown_items);
  Score(c, filter);
  const bool rates = m.feedback == Feedback::kExplicit;
  if (rates) PrefetchRatingRows(c);
  for (const ScoredItem& s : c.s.best) {
    emit({s.item < c.base ? c.m.items.External(s.item)
                          : ni->ids->External(s.item - c.base),
          ni->Describe(s.item),
          rates ? PredictedRating(c, s.item, s.score) : 0.0f, s.score, rates});
  }
  return out;
}

absl::StatusOr<RecommendResult> Engine::Recommend(
    const RecommendQuery& q) const {
  std::vector<RecommendedItem> items;
  RECSYS_ASSIGN_OR_RETURN(
      RecommendResult out, Recommend(q, [&](const RecommendedItemRef& r) {
        items.push_back({{r.id, r.info.title, r.info.genres, r.info.retired},
                         r.predicted_rating,
                         r.score,
                         r.has_predicted_rating});
      }));
  out.items = std::move(items);
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
