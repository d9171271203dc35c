// Applying a durable log record to a generation: a rating (fold-in of the
// user, and of a new item), a catalogue entry, an erasure.
#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/parallel.h"
#include "base/status_macros.h"
#include "engine/checks.h"
#include "engine/engine.h"
#include "engine/events.h"
#include "engine/state.h"
#include "models/fold_in.h"

namespace recsys {

using internal::Catalogue;
using internal::CheckId;
using internal::Generation;
using internal::NewItems;
using internal::UserState;
using internal::UserView;
using internal::ViewUser;

namespace {

// Whether `rec` adds to its pair rather than replacing it: an event, or any
// record of a model of implicit feedback.
bool Adds(const Model& m, const LogRecord& rec) {
  return rec.add || m.feedback == Feedback::kImplicit;
}

}  // namespace

float Engine::EventWeight(const RatingInput& r) const {
  return options_.event_weights.at(r.event_type) *
         (r.count == 0 ? 1.0f : r.count);
}

absl::Status Engine::ValidateRating(const Generation& g,
                                    const RatingInput& r) const {
  RECSYS_RETURN_IF_ERROR(CheckId("user id", r.user));
  RECSYS_RETURN_IF_ERROR(CheckId("item id", r.item));
  const bool implicit = g.model->feedback == Feedback::kImplicit;
  if (!r.event_type.empty()) return ValidateEvent(implicit, r);
  if (!r.event_id.empty()) {
    return absl::InvalidArgumentError(
        "event_id is set without an event_type: only events have ids");
  }
  if (implicit) {
    if (!(r.value >= 0 && r.value <= kMaxWeight)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "rating %g must be in [0, 1e9] (the model learnt from implicit "
          "feedback: a rating is a weight added to the pair's)",
          r.value));
    }
    return absl::OkStatus();
  }
  const RatingScale& s = g.model->scale;
  if (!std::isfinite(r.value) || !s.Contains(r.value)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "rating %g is outside the scale [%g, %g]", r.value, s.min, s.max));
  }
  return absl::OkStatus();
}

absl::Status Engine::ValidateEvent(bool implicit, const RatingInput& r) const {
  if (!implicit) {
    return absl::FailedPreconditionError(
        "events need a model of implicit feedback, and this one learnt from "
        "ratings on a scale (train it with --feedback=implicit), or send a "
        "rating");
  }
  if (r.value != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "rating %g is set beside event_type '%s': an event's weight comes "
        "from its type and count",
        r.value, absl::CHexEscape(r.event_type.substr(0, 64))));
  }
  if (options_.event_weights.count(r.event_type) == 0) {
    std::vector<std::string> known;
    for (const auto& [type, w] : options_.event_weights) known.push_back(type);
    return absl::InvalidArgumentError(absl::StrCat(
        "event_type '", absl::CHexEscape(r.event_type.substr(0, 64)),
        "' is not one of this server's (--event_weights): ",
        known.empty() ? std::string("none") : absl::StrJoin(known, ", ")));
  }
  if (!(std::isfinite(r.count) && r.count >= 0) ||
      !(EventWeight(r) <= kMaxWeight)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "count %g must be finite and >= 0 (0 means 1), and its weight at "
        "most 1e9",
        r.count));
  }
  if (r.event_id.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("event_id is %d bytes, more than the limit of %d",
                        r.event_id.size(), kMaxIdBytes));
  }
  return absl::OkStatus();
}

LogRecord Engine::RecordOf(const RatingInput& r) const {
  LogRecord rec;
  rec.user = r.user;
  rec.item = r.item;
  rec.value = r.value;
  rec.timestamp = r.timestamp != 0 ? r.timestamp : internal::NowSeconds();
  if (!r.event_type.empty()) {
    rec.add = true;
    rec.value = EventWeight(r);
    rec.event_type = r.event_type;
    rec.event_id = r.event_id;
  }
  return rec;
}

void Engine::AddNewItemRow(Generation& g, NewItems* next) {
  const int32_t local = static_cast<int32_t>(next->counts.size());
  constexpr int32_t kBlock = NewItems::kBlockRows;
  if (local % kBlock == 0) {
    next->blocks.push_back(std::make_shared<const RowMatrix>(
        RowMatrix::Zero(kBlock, g.model->factors())));
  }
  next->bias.conservativeResize(local + 1);
  next->bias[local] = 0;
  next->counts.push_back(0);
  g.new_item_raters.emplace_back();
}

int32_t Engine::ApplyEntries(Generation& g,
                             absl::Span<const LogRecord* const> recs) {
  const Model& m = *g.model;
  std::lock_guard<std::mutex> lock(g.new_items_mu);
  auto next = std::make_shared<NewItems>(*g.items());
  // Copies made on first need, each once per call.
  std::shared_ptr<Catalogue> catalogue;
  std::vector<std::shared_ptr<std::vector<ItemInfo>>> own_blocks;
  std::shared_ptr<IdMap> ids;
  std::shared_ptr<std::vector<ItemInfo>> info;
  int32_t added = 0;
  for (const LogRecord* rec : recs) {
    const int32_t i = m.items.Find(rec->item);
    if (i >= 0) {
      if (catalogue == nullptr) {
        catalogue = next->catalogue->Copy();
        own_blocks.resize(catalogue->blocks.size());
      }
      const auto b = static_cast<size_t>(i / Catalogue::kBlockItems);
      if (own_blocks[b] == nullptr) {
        own_blocks[b] =
            std::make_shared<std::vector<ItemInfo>>(*catalogue->blocks[b]);
        catalogue->blocks[b] = own_blocks[b];
      }
      (*own_blocks[b])[i % Catalogue::kBlockItems] = *rec->entry;
      continue;
    }
    if (ids == nullptr) {
      ids = std::make_shared<IdMap>(*next->ids);
      info = std::make_shared<std::vector<ItemInfo>>(*next->info);
    }
    int32_t local = ids->Find(rec->item);
    if (local < 0) {
      local = ids->Insert(rec->item);
      info->emplace_back();
      AddNewItemRow(g, next.get());
      ++added;
    }
    (*info)[static_cast<size_t>(local)] = *rec->entry;
  }
  if (catalogue != nullptr) next->catalogue = std::move(catalogue);
  if (ids != nullptr) {
    next->ids = std::move(ids);
    next->retired.clear();
    for (size_t j = 0; j < info->size(); ++j) {
      if ((*info)[j].retired) next->retired.push_back(static_cast<int32_t>(j));
    }
    next->info = std::move(info);
  }
  std::atomic_store(&g.new_items, std::shared_ptr<const NewItems>(next));
  return added;
}

int32_t Engine::FoldInNewItem(Generation& g, const LogRecord& rec,
                              const internal::UserView& user) {
  const Model& m = *g.model;
  int32_t item = -1;
  {
    std::lock_guard<std::mutex> lock(g.new_items_mu);
    // A copy that shares the ids, descriptions and blocks (see NewItems).
    auto next = std::make_shared<NewItems>(*g.items());
    int32_t local = next->ids->Find(rec.item);
    if (local < 0) {
      auto ids = std::make_shared<IdMap>(*next->ids);
      local = ids->Insert(rec.item);
      next->ids = std::move(ids);
      auto info = std::make_shared<std::vector<ItemInfo>>(*next->info);
      info->emplace_back();
      next->info = std::move(info);
      AddNewItemRow(g, next.get());
    }
    auto& rated = g.new_item_raters[static_cast<size_t>(local)];
    auto& raters = rated.list;
    auto it = std::find_if(raters.begin(), raters.end(),
                           [&](const auto& p) { return p.first == rec.user; });
    if (it == raters.end()) {
      raters.emplace_back(rec.user, rec.value);
      ++next->counts[local];
    } else {
      it->second = Adds(m, rec) ? it->second + rec.value : rec.value;
    }
    // Fold the item's vector in again from everyone who rated it (this
    // user's current vector included): at every rating while it has up to
    // kExactRaters raters, then once its ratings have changed by
    // 1/kExactRaters since the last fold. One rating of a film with 10,000
    // raters moves its vector very little, and folding from all of them at
    // every rating made Rate O(raters): a stream of 10,000 ratings of one
    // new film stalled for more than 10 s per batch.
    constexpr int64_t kExactRaters = 64;
    const auto n = static_cast<int64_t>(raters.size());
    if (++rated.changes_since_fold * kExactRaters < n) {
      std::atomic_store(&g.new_items, std::shared_ptr<const NewItems>(next));
      return m.num_items() + local;
    }
    FoldNewItemAgain(g, local, rec.user, user, next.get());
    item = m.num_items() + local;
    std::atomic_store(&g.new_items, std::shared_ptr<const NewItems>(next));
  }
  return item;
}

void Engine::FoldNewItemAgain(Generation& g, int32_t local,
                              const std::string& self_id,
                              const internal::UserView& self, NewItems* next) {
  const Model& m = *g.model;
  auto& rated = g.new_item_raters[static_cast<size_t>(local)];
  const auto& raters = rated.list;
  rated.changes_since_fold = 0;
  RowMatrix uf(raters.size(), m.factors());
  Eigen::VectorXf ub(raters.size());
  std::vector<float> values;
  for (size_t j = 0; j < raters.size(); ++j) {
    internal::UserView rater =
        raters[j].first == self_id
            ? self
            : internal::ViewUser(g, raters[j].first, /*with_ratings=*/false);
    ub[j] = rater.bias;
    if (m.factors() > 0) {
      if (rater.known) {
        uf.row(j) = rater.vec.transpose();
      } else {
        uf.row(j).setZero();
      }
    }
    values.push_back(raters[j].second);
  }
  // (With no rater left, nothing speaks for the item: no vector, no bias.)
  FoldInResult row;
  if (raters.empty()) {
    row.bias = 0;
    row.factors = Eigen::VectorXf::Zero(m.factors());
  } else {
    row = FoldInGathered(m, /*user_side=*/false, uf, ub, values);
  }
  next->bias[local] = row.bias;
  if (m.factors() > 0) {
    std::shared_ptr<const RowMatrix>& block =
        next->blocks[static_cast<size_t>(local / NewItems::kBlockRows)];
    auto changed = std::make_shared<RowMatrix>(*block);
    changed->row(local % NewItems::kBlockRows) = row.factors.transpose();
    block = std::move(changed);
  }
}

int64_t Engine::Erase(Generation& g, const LogRecord& rec) {
  const Model& m = *g.model;
  const size_t shard = g.ShardOf(rec.user);
  event_ids_->EraseUser(rec.user);
  const internal::UserView user =
      internal::ViewUser(g, rec.user, /*with_ratings=*/true,
                         /*with_vector=*/false);
  // The new items the user rated lose that rating, and their vectors are
  // folded again without it.
  std::vector<int32_t> rated_new;
  for (const UserState::Entry& e : user.ratings) {
    if (e.item >= m.num_items()) rated_new.push_back(e.item - m.num_items());
  }
  if (!rated_new.empty()) {
    std::lock_guard<std::mutex> lock(g.new_items_mu);
    auto next = std::make_shared<NewItems>(*g.items());
    const internal::UserView none;
    for (int32_t local : rated_new) {
      auto& raters = g.new_item_raters[static_cast<size_t>(local)].list;
      auto it = std::find_if(raters.begin(), raters.end(), [&](const auto& p) {
        return p.first == rec.user;
      });
      if (it == raters.end()) continue;
      raters.erase(it);
      --next->counts[local];
      FoldNewItemAgain(g, local, std::string(), none, next.get());
    }
    std::atomic_store(&g.new_items, std::shared_ptr<const NewItems>(next));
  }
  g.equations[shard].Erase(rec.user);
  auto st = std::make_shared<UserState>();
  st->base = m.users.Find(rec.user);
  st->erased = true;
  st->erased_seq = std::max(user.erased_seq, rec.seq);
  {
    internal::Generation::Shard& s = g.shards[shard];
    std::lock_guard<std::mutex> lock(s.mu);
    s.users[rec.user] = std::move(st);
  }
  return static_cast<int64_t>(user.ratings.size());
}

RateResult Engine::Apply(Generation& g, const LogRecord& rec) {
  if (rec.entry != nullptr) {
    const LogRecord* one[] = {&rec};
    RateResult r;
    r.new_item = ApplyEntries(g, one) > 0;
    r.sequence = rec.seq;
    return r;
  }
  if (rec.erase_user) {
    {
      std::lock_guard<std::mutex> write(g.write_mu[g.ShardOf(rec.user)]);
      Erase(g, rec);
    }
    NoteErasure(rec.seq);
    RateResult r;
    r.sequence = rec.seq;
    return r;
  }
  const LogRecord* one[] = {&rec};
  return ApplyUser(g, one)[0];
}

namespace {

// Adds (sign 1) or takes back (-1) a rating of a model item in `eq`; the
// ratings of new items are added afresh at each solve.
void AddEntry(const Model& m, FoldInEquations* eq, const UserState::Entry& e,
              float sign) {
  if (e.item >= m.num_items()) return;
  eq->Add(m.factors() > 0 ? m.item_factors.row(e.item).data() : nullptr,
          m.item_bias[e.item], e.value, sign);
}

// Equations over the user's ratings of model items.
FoldInEquations BuildEquations(const Model& m,
                               const std::vector<UserState::Entry>& entries) {
  FoldInEquations built(m, /*user_side=*/true);
  thread_local std::vector<int32_t> cols;
  thread_local std::vector<float> values;
  cols.clear();
  values.clear();
  for (const UserState::Entry& e : entries) {
    if (e.item >= m.num_items()) continue;  // added at the solve
    cols.push_back(e.item);
    values.push_back(e.value);
  }
  built.AddRows(m.item_factors, m.item_bias, cols, values);
  return built;
}

// The row from `eq` plus the user's ratings of new items.
FoldInResult SolveWithNewItems(const Model& m, const NewItems& ni,
                               const FoldInEquations& eq,
                               const std::vector<UserState::Entry>& entries) {
  if (std::none_of(
          entries.begin(), entries.end(),
          [&](const UserState::Entry& e) { return e.item >= m.num_items(); })) {
    return eq.Solve();
  }
  FoldInEquations with_new = eq;
  for (const UserState::Entry& e : entries) {
    if (e.item < m.num_items()) continue;
    const int32_t j = e.item - m.num_items();
    with_new.Add(m.factors() > 0 ? ni.Row(j) : nullptr, ni.bias[j], e.value);
  }
  return with_new.Solve();
}

// One solve for all of this user's new ratings: from the kept equations,
// or from equations built now over all of the user's ratings (and kept for
// next time when the shard's cache `budget` allows).
FoldInResult SolveUser(Generation& g, size_t shard, const std::string& user_id,
                       const std::vector<UserState::Entry>& entries,
                       FoldInEquations* kept, const NewItems& ni,
                       size_t budget) {
  const Model& m = *g.model;
  internal::EquationCache& cache = g.equations[shard];
  std::optional<FoldInEquations> fresh;
  if (kept == nullptr) {
    FoldInEquations built = BuildEquations(m, entries);
    if (budget > 0) {
      cache.Insert(user_id, std::move(built));
      kept = cache.Find(user_id);
    } else {
      fresh.emplace(std::move(built));
      kept = &*fresh;
    }
  }
  FoldInResult row = SolveWithNewItems(m, ni, *kept, entries);
  cache.Trim(budget);
  return row;
}

// Record `rec` of `item` into the user's entries (and their kept
// equations, when not null). Two writers of one user may apply their
// records out of log order, so each rule gives the same value in any
// order: a rating replaces the pair's older rating (an older record does
// not overwrite a newer one); on implicit feedback every record adds its
// weight, a plain rating's too (a sum does not care about order).
void UpdateEntry(const Model& m, int32_t item, const LogRecord& rec,
                 std::vector<UserState::Entry>* entries,
                 FoldInEquations* kept) {
  auto e =
      std::find_if(entries->begin(), entries->end(),
                   [&](const UserState::Entry& x) { return x.item == item; });
  if (e == entries->end()) {
    entries->push_back({item, rec.value, rec.timestamp, rec.seq});
    if (kept != nullptr) AddEntry(m, kept, entries->back(), 1.0f);
    return;
  }
  UserState::Entry next = {item, rec.value, rec.timestamp, rec.seq};
  if (Adds(m, rec)) {
    next = {item, e->value + rec.value, std::max(e->timestamp, rec.timestamp),
            std::max(e->seq, rec.seq)};
  } else if (e->seq > rec.seq) {
    return;
  }
  if (kept != nullptr) AddEntry(m, kept, *e, -1.0f);
  *e = next;
  if (kept != nullptr) AddEntry(m, kept, *e, 1.0f);
}

}  // namespace

std::vector<RateResult> Engine::ApplyUser(
    Generation& g, absl::Span<const LogRecord* const> recs) {
  const Model& m = *g.model;
  const std::string& user_id = recs[0]->user;
  const size_t shard = g.ShardOf(user_id);
  std::lock_guard<std::mutex> write(g.write_mu[shard]);
  std::vector<RateResult> results(recs.size());

  // The vector (up to 512 floats) is only needed to fold in a new item.
  internal::UserView user =
      internal::ViewUser(g, user_id, /*with_ratings=*/true,
                         /*with_vector=*/false);
  if (!recs.empty()) results[0].new_user = !user.known;
  std::vector<UserState::Entry> entries = std::move(user.ratings);
  std::shared_ptr<const NewItems> ni = g.items();
  // The user's kept fold-in equations, if any, follow each change of a
  // rating of a model item (see EquationCache).
  FoldInEquations* kept = g.equations[shard].Find(user_id);
  // Every update adds rounding error; after many, start again from the
  // ratings (one full fold-in per kRebuildAfter updates).
  constexpr int64_t kRebuildAfter = 1 << 16;
  if (kept != nullptr && kept->updates() >= kRebuildAfter) kept = nullptr;

  bool applied = false;
  for (size_t r = 0; r < recs.size(); ++r) {
    const LogRecord& rec = *recs[r];
    RateResult& result = results[r];
    result.sequence = rec.seq;
    // Logged before an erasure of the user that was applied first; or an
    // event whose id another record holds (a retry that reached the log).
    if (rec.seq <= user.erased_seq) continue;
    if (!rec.event_id.empty() &&
        !event_ids_->Apply(rec.event_id, rec.user, rec.seq)) {
      continue;
    }
    applied = true;
    // The item, added to the catalogue when new.
    int32_t item = g.FindItem(rec.item, *ni);
    result.new_item = item < 0;
    if (result.new_item || item >= m.num_items()) {
      if (user.known && user.vec.size() == 0) {
        // (This user's state has not changed yet: it is solved last.)
        user.vec = internal::ViewUser(g, user_id, /*with_ratings=*/false).vec;
      }
      item = FoldInNewItem(g, rec, user);
      ni = g.items();
    }
    UpdateEntry(m, item, rec, &entries, kept);
  }
  if (!applied) return results;

  (kept != nullptr ? fold_in_cache_hits_ : fold_in_cache_misses_)
      .fetch_add(1, std::memory_order_relaxed);
  const size_t budget =
      static_cast<size_t>(std::max<int64_t>(0, options_.fold_in_cache_bytes) /
                          static_cast<int64_t>(internal::Generation::kShards));
  FoldInResult row = SolveUser(g, shard, user_id, entries, kept, *ni, budget);
  auto st = std::make_shared<UserState>();
  st->base = m.users.Find(user_id);
  st->erased_seq = user.erased_seq;
  st->ratings = std::move(entries);
  st->bias = row.bias;
  st->vec = std::move(row.factors);
  {
    internal::Generation::Shard& s = g.shards[shard];
    std::lock_guard<std::mutex> lock(s.mu);
    s.users[user_id] = std::move(st);
  }
  g.accepted.fetch_add(static_cast<int64_t>(recs.size()),
                       std::memory_order_relaxed);
  return results;
}

}  // namespace recsys
