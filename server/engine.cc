#include "server/engine.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/parallel.h"
#include "base/status_macros.h"
#include "models/fold_in.h"
#include "models/model_io.h"
#include "models/scoring.h"
#include "models/topk.h"

namespace recsys {
namespace internal {

// What a user has rated since the model was trained, and the vector folded
// in from it. Immutable once published.
struct UserState {
  struct Entry {
    int32_t item;  // global item index (base items, then new items)
    float value;
    int64_t timestamp;
    uint64_t seq;  // log sequence, 0 for training data
  };
  int32_t base = -1;  // row in the model, -1 for a user the model lacks
  float bias = 0;
  Eigen::VectorXf vec;
  std::vector<Entry> ratings;  // one per item
  // Erased (Engine::DeleteUser) and not back since: unknown to every
  // reader, whatever the model holds, and left out of snapshots.
  bool erased = false;
  // The newest erasure of the user: records up to it are void, even when
  // applied after it (two writers of one user may apply in either order).
  uint64_t erased_seq = 0;
};

// The catalogue entries of the model's items, as edited since training
// (Engine::UpsertItems). Immutable once published: an edit copies the block
// pointers and the blocks it changes, and shares the rest. What readers
// look up by genre or by availability (Index) is derived on first use, so a
// run of edits (a replayed log, say) does not rebuild it at each one.
struct Catalogue {
  static constexpr int32_t kBlockItems = 256;
  struct GenreItems {
    std::vector<int32_t> items;  // increasing
    std::vector<uint64_t> bits;  // over the model's items
  };
  struct Index {
    // The items of each genre that are not retired, as a list and as a bit
    // set (ItemPanels::ScoreTopK's `allowed`). A genre whose items are all
    // retired stays, with none: it is still a genre of the catalogue.
    absl::flat_hash_map<std::string, GenreItems> by_genre;
    // The items not retired, as a bit set; empty when none is retired.
    std::vector<uint64_t> available;
    std::vector<int32_t> retired;  // increasing
  };

  Catalogue() = default;
  explicit Catalogue(const std::vector<ItemInfo>& info)
      : size(static_cast<int32_t>(info.size())) {
    for (size_t b = 0; b < info.size(); b += kBlockItems) {
      const auto end = info.begin() + static_cast<std::ptrdiff_t>(std::min(
                                          info.size(), b + kBlockItems));
      blocks.push_back(std::make_shared<const std::vector<ItemInfo>>(
          info.begin() + static_cast<std::ptrdiff_t>(b), end));
    }
  }
  // A copy to edit (the blocks are shared until replaced).
  std::shared_ptr<Catalogue> Copy() const {
    auto c = std::make_shared<Catalogue>();
    c->size = size;
    c->blocks = blocks;
    return c;
  }

  const ItemInfo& Info(int32_t i) const {
    return (*blocks[static_cast<size_t>(i / kBlockItems)])[i % kBlockItems];
  }
  const Index& index() const {
    std::call_once(index_once_, [this] {
      auto index = std::make_unique<Index>();
      const auto words = static_cast<size_t>((size + 63) / 64);
      for (int32_t i = 0; i < size; ++i) {
        const ItemInfo& info = Info(i);
        if (info.retired) index->retired.push_back(i);
        for (const std::string& genre : info.genres) {
          GenreItems& g = index->by_genre[genre];
          if (info.retired) continue;
          // (An item listing a genre twice is in its list once.)
          if (g.items.empty() || g.items.back() != i) g.items.push_back(i);
          g.bits.resize(words, 0);
          g.bits[static_cast<size_t>(i / 64)] |= uint64_t{1} << (i % 64);
        }
      }
      if (!index->retired.empty()) {
        index->available.assign(words, ~uint64_t{0});
        if (size % 64 != 0) index->available.back() >>= 64 - size % 64;
        for (int32_t i : index->retired) {
          index->available[static_cast<size_t>(i / 64)] &=
              ~(uint64_t{1} << (i % 64));
        }
      }
      index_ = std::move(index);
    });
    return *index_;
  }

  int32_t size = 0;
  std::vector<std::shared_ptr<const std::vector<ItemInfo>>> blocks;

 private:
  mutable std::once_flag index_once_;
  mutable std::unique_ptr<const Index> index_;
};

// Items that arrived after training, and the catalogue of the model's items
// (one pointer for readers to load). Immutable once published: a writer
// publishes a changed copy, which shares what did not change. The ids and
// descriptions are copied only when an item is added or its entry changes
// (UpsertItems: once per call), and the factor rows
// live in blocks of kBlockRows, so a re-fold copies one block. A rating of
// a new item then costs O(items / kBlockRows + kBlockRows * factors) in
// copies; copying every new item's row (and who rated it) made a catalogue
// that grows through Rate quadratic: 96k ratings of 14k new items took
// 11 minutes.
struct NewItems {
  static constexpr int32_t kBlockRows = 16;
  // Global index = model items + local index.
  std::shared_ptr<const IdMap> ids = std::make_shared<const IdMap>();
  std::shared_ptr<const std::vector<ItemInfo>> info =
      std::make_shared<const std::vector<ItemInfo>>();
  // kBlockRows x `factors` each; rows past size() are zero.
  std::vector<std::shared_ptr<const RowMatrix>> blocks;
  Eigen::VectorXf bias;
  std::vector<int32_t> counts;

  // The model's items' entries, carried here so that one pointer load
  // gives a reader the whole catalogue.
  std::shared_ptr<const Catalogue> catalogue;
  int32_t base = 0;              // the model's items
  std::vector<int32_t> retired;  // local indices, increasing

  int32_t size() const { return ids->size(); }
  const ItemInfo& Info(int32_t j) const { return (*info)[j]; }
  // The entry of global item i, a model item or a new one.
  const ItemInfo& Describe(int32_t i) const {
    return i < base ? catalogue->Info(i) : Info(i - base);
  }
  const float* Row(int32_t j) const {
    return blocks[static_cast<size_t>(j / kBlockRows)]
        ->row(j % kBlockRows)
        .data();
  }
  // out[j] += (row j's first `cols` factors) . p, for every new item j.
  void AddProducts(const float* p, int32_t cols, float* out) const {
    const Eigen::Map<const Eigen::VectorXf> v(p, cols);
    for (size_t b = 0; b < blocks.size(); ++b) {
      const int32_t first = static_cast<int32_t>(b) * kBlockRows;
      const int32_t rows = std::min(kBlockRows, size() - first);
      Eigen::Map<Eigen::VectorXf> o(out + first, rows);
      o.noalias() += blocks[b]->topLeftCorner(rows, cols) * v;
    }
  }
};

// The fold-in equations of recently active users (see FoldInEquations), so
// that a rating costs an O(k^2) update and one small factorisation instead
// of a rebuild from all of the user's ratings. Least recently used out first
// once over the byte budget; a user not here is rebuilt from their ratings.
// The equations cover the model's own items only: a new item's vector
// changes as it is rated, so its ratings are added afresh at each solve.
class EquationCache {
 public:
  // What every shard's cache holds, for Info.
  struct Totals {
    std::atomic<int64_t> bytes{0};
    std::atomic<int64_t> users{0};
  };
  // Every change of this cache is added to `totals` too.
  void ReportTo(Totals* totals) { totals_ = totals; }

  // The user's equations, now the most recently used; null if absent.
  FoldInEquations* Find(const std::string& user) {
    auto it = index_.find(user);
    if (it == index_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second);
    return &it->second->eq;
  }
  // Adds or replaces the user's equations, now the most recently used.
  void Insert(const std::string& user, FoldInEquations eq) {
    Erase(user);
    const size_t bytes = eq.bytes() + user.capacity() + kOverhead;
    lru_.push_front({user, std::move(eq), bytes});
    index_[user] = lru_.begin();
    Account(static_cast<int64_t>(bytes), 1);
  }
  void Erase(const std::string& user) {
    auto it = index_.find(user);
    if (it == index_.end()) return;
    Account(-static_cast<int64_t>(it->second->bytes), -1);
    lru_.erase(it->second);
    index_.erase(it);
  }
  // Evicts least recently used users until at most `budget` bytes remain.
  void Trim(size_t budget) {
    while (bytes_ > budget && !lru_.empty()) {
      Account(-static_cast<int64_t>(lru_.back().bytes), -1);
      index_.erase(lru_.back().user);
      lru_.pop_back();
    }
  }
  size_t bytes() const { return bytes_; }
  size_t users() const { return lru_.size(); }

 private:
  void Account(int64_t bytes, int64_t users) {
    bytes_ = static_cast<size_t>(static_cast<int64_t>(bytes_) + bytes);
    if (totals_ != nullptr) {
      totals_->bytes.fetch_add(bytes, std::memory_order_relaxed);
      totals_->users.fetch_add(users, std::memory_order_relaxed);
    }
  }

  // A list node and an index slot, roughly.
  static constexpr size_t kOverhead = 96;
  struct Entry {
    std::string user;
    FoldInEquations eq;
    size_t bytes;
  };
  std::list<Entry> lru_;  // most recently used first
  absl::flat_hash_map<std::string, std::list<Entry>::iterator> index_;
  size_t bytes_ = 0;
  Totals* totals_ = nullptr;
};

struct Generation {
  static constexpr size_t kShards = 64;
  struct Shard {
    mutable std::mutex mu;  // guards `users` (pointer copies only)
    absl::flat_hash_map<std::string, std::shared_ptr<const UserState>> users;
  };

  std::shared_ptr<const Model> model;
  uint64_t version = 0;
  // The model's item factors (and, when they predict ratings, biases) laid
  // out for Recommend's product over the catalogue.
  ItemPanels panels;
  std::array<Shard, kShards> shards;
  // Writers of one shard's users go one at a time, so two ratings of a user
  // never fold in from the same old state.
  std::array<std::mutex, kShards> write_mu;
  std::array<EquationCache, kShards> equations;  // guarded by write_mu
  EquationCache::Totals equation_totals;
  std::shared_ptr<const NewItems> new_items;  // std::atomic_load/store
  std::mutex new_items_mu;                    // writers
  // Who rated each new item, so its vector can be folded in again, and how
  // many of its ratings changed since its last fold (writers only; guarded
  // by new_items_mu).
  struct NewItemRaters {
    std::vector<std::pair<std::string, float>> list;
    int64_t changes_since_fold = 0;
  };
  std::vector<NewItemRaters> new_item_raters;
  std::atomic<int64_t> accepted{0};

  // The ranking vectors at unit length, laid out for SimilarItems' cosine
  // similarities; made by its first call (a server that never answers one
  // does not keep the copy).
  const ItemPanels& UnitPanels() {
    std::call_once(unit_panels_once, [this] {
      unit_panels = std::make_unique<const ItemPanels>(
          UnitRows(model->item_factors.leftCols(model->rank_cols())),
          Eigen::VectorXf());
    });
    return *unit_panels;
  }
  std::once_flag unit_panels_once;
  std::unique_ptr<const ItemPanels> unit_panels;
  explicit Generation(std::shared_ptr<const Model> m, uint64_t v)
      : model(std::move(m)), version(v) {
    for (EquationCache& cache : equations) cache.ReportTo(&equation_totals);
    // Ranking kinds score by their ranking columns, with no bias but their
    // popularity prior (empty when none); the others by predicted rating
    // (plus that prior, when they have one).
    if (!model->ranks_by_rating()) {
      panels = ItemPanels(model->item_factors.leftCols(model->rank_cols()),
                          model->rank_bias);
    } else if (model->rank_bias.size() > 0) {
      panels = ItemPanels(model->item_factors,
                          Eigen::VectorXf(model->item_bias + model->rank_bias));
    } else {
      panels = ItemPanels(model->item_factors, model->item_bias);
    }
    auto ni = std::make_shared<NewItems>();
    ni->catalogue = std::make_shared<const Catalogue>(model->item_info);
    ni->catalogue->index();  // made now rather than by the first Recommend
    ni->base = model->num_items();
    new_items = std::move(ni);
  }

  size_t ShardOf(absl::string_view user) const {
    return absl::Hash<absl::string_view>{}(user) % kShards;
  }
  std::shared_ptr<const UserState> FindUser(const std::string& user) const {
    const Shard& s = shards[ShardOf(user)];
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.users.find(user);
    return it == s.users.end() ? nullptr : it->second;
  }
  std::shared_ptr<const NewItems> items() const {
    return std::atomic_load(&new_items);
  }
  int32_t FindItem(absl::string_view id, const NewItems& ni) const {
    const int32_t base = model->items.Find(id);
    if (base >= 0) return base;
    const int32_t local = ni.ids->Find(id);
    return local < 0 ? -1 : model->num_items() + local;
  }
};

// A user's current row, wherever it lives.
struct UserView {
  bool known = false;
  float bias = 0;
  Eigen::VectorXf vec;
  std::vector<UserState::Entry> ratings;
  uint64_t erased_seq = 0;
};

// `with_ratings` = false skips copying the history when only the row is
// needed.
UserView ViewUser(const Generation& g, const std::string& user,
                  bool with_ratings = true, bool with_vector = true) {
  UserView v;
  if (auto st = g.FindUser(user)) {
    v.erased_seq = st->erased_seq;
    if (st->erased) return v;
    v.known = true;
    v.bias = st->bias;
    if (with_vector) v.vec = st->vec;
    if (with_ratings) v.ratings = st->ratings;
    return v;
  }
  const Model& m = *g.model;
  const int32_t u = m.users.Find(user);
  if (u < 0) return v;
  v.known = true;
  v.bias = m.user_bias[u];
  if (with_vector) v.vec = m.user_factors.row(u).transpose();
  if (!with_ratings) return v;
  const SparseRows& r = m.user_ratings;
  for (int64_t k = r.offsets[u]; k < r.offsets[u + 1]; ++k) {
    v.ratings.push_back(
        {r.cols[k], r.values[k], r.times.empty() ? 0 : r.times[k], 0});
  }
  return v;
}

struct TrainingJob {
  std::string id;
  // Set by CancelTraining, read by the training between epochs.
  std::atomic<bool> cancel{false};
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  std::vector<TrainingUpdate> updates;
  bool done = false;
  // The fit is over and its model is going in: too late to cancel.
  bool committing = false;

  void Push(const TrainingUpdate& u, bool last) {
    {
      std::lock_guard<std::mutex> lock(mu);
      updates.push_back(u);
      done = done || last;
    }
    cv.notify_all();
  }
};

}  // namespace internal

using internal::Catalogue;
using internal::Generation;
using internal::NewItems;
using internal::UserState;

namespace {

ItemView ViewItem(const Generation& g, const NewItems& ni, int32_t i) {
  const ItemInfo& info = ni.Describe(i);
  return {
      i < ni.base ? g.model->items.External(i) : ni.ids->External(i - ni.base),
      info.title, info.genres, info.retired};
}

absl::Status CheckId(absl::string_view what, absl::string_view id) {
  if (id.empty())
    return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  if (id.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s is %d bytes, more than the limit of %d", what,
                        id.size(), kMaxIdBytes));
  }
  return absl::OkStatus();
}

bool SameEntry(const ItemInfo& a, const ItemInfo& b) {
  return a.title == b.title && a.genres == b.genres && a.retired == b.retired;
}

// The sizes a catalogue entry in the log may have (either may be null).
absl::Status CheckEntrySizes(const std::string* title,
                             const std::vector<std::string>* genres) {
  if (title != nullptr && title->size() > RatingLog::kMaxTitleBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("title is %d bytes, more than the limit of %d",
                        title->size(), RatingLog::kMaxTitleBytes));
  }
  if (genres == nullptr) return absl::OkStatus();
  if (genres->size() > RatingLog::kMaxGenres) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%d genres, more than the limit of %d", genres->size(),
                        RatingLog::kMaxGenres));
  }
  for (const std::string& genre : *genres) {
    if (genre.size() > RatingLog::kMaxGenreBytes) {
      return absl::InvalidArgumentError(
          absl::StrFormat("a genre is %d bytes, more than the limit of %d",
                          genre.size(), RatingLog::kMaxGenreBytes));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckItemUpdate(const ItemUpdate& u) {
  RECSYS_RETURN_IF_ERROR(CheckId("item id", u.id));
  RECSYS_RETURN_IF_ERROR(CheckEntrySizes(u.title ? &*u.title : nullptr,
                                         u.genres ? &*u.genres : nullptr));
  if (!u.genres) return absl::OkStatus();
  const std::vector<std::string>& genres = *u.genres;
  for (size_t k = 0; k < genres.size(); ++k) {
    const std::string& genre = genres[k];
    if (genre.empty()) return absl::InvalidArgumentError("a genre is empty");
    if (genre.find('|') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("genre '", absl::CHexEscape(genre),
                       "' contains '|', the separator of genre lists"));
    }
    if (std::find(genres.begin(),
                  genres.begin() + static_cast<std::ptrdiff_t>(k),
                  genre) != genres.begin() + static_cast<std::ptrdiff_t>(k)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "genre '", absl::CHexEscape(genre), "' is listed twice"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckK(int k) {
  if (k <= 0 || k > kMaxK) {
    return absl::InvalidArgumentError(
        absl::StrFormat("k must be in 1..%d, got %d", kMaxK, k));
  }
  return absl::OkStatus();
}

// A genre filter must name a genre of the catalogue: a misspelt one would
// otherwise return nothing, silently. The error lists the genres there are.
absl::Status CheckGenre(const NewItems& ni, const std::string& genre) {
  const auto& by_genre = ni.catalogue->index().by_genre;
  if (genre.empty() || by_genre.contains(genre)) return absl::OkStatus();
  for (const ItemInfo& info : *ni.info) {
    if (std::find(info.genres.begin(), info.genres.end(), genre) !=
        info.genres.end()) {
      return absl::OkStatus();
    }
  }
  std::vector<absl::string_view> known;
  for (const auto& [name, items] : by_genre) known.push_back(name);
  std::sort(known.begin(), known.end());
  constexpr size_t kEcho = 64, kListed = 40;
  std::string message =
      absl::StrCat("unknown genre '", absl::CHexEscape(genre.substr(0, kEcho)),
                   genre.size() > kEcho ? "...'" : "'");
  if (known.empty()) {
    absl::StrAppend(&message, ": no item of this catalogue has a genre");
  } else {
    const auto end = known.begin() + static_cast<std::ptrdiff_t>(
                                         std::min(known.size(), kListed));
    absl::StrAppend(&message,
                    " (genres are case-sensitive; this catalogue has ",
                    known.size(), ": ", absl::StrJoin(known.begin(), end, ", "),
                    known.size() > kListed ? ", ..." : "", ")");
  }
  return absl::InvalidArgumentError(message);
}

std::string SnapshotName(uint64_t generation, uint64_t seq) {
  return absl::StrFormat("snapshot-%08d-%020d.rsm", generation, seq);
}

struct SnapshotFile {
  std::string path;
  uint64_t generation = 0;
  uint64_t seq = 0;
};

std::vector<SnapshotFile> ListSnapshots(const std::string& dir) {
  std::vector<SnapshotFile> out;
  static const std::regex kName(R"(snapshot-(\d{8})-(\d{20})\.rsm)");
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (!std::regex_match(name, m, kName)) continue;
    out.push_back(
        {entry.path().string(), std::stoull(m[1]), std::stoull(m[2])});
  }
  std::sort(
      out.begin(), out.end(), [](const SnapshotFile& a, const SnapshotFile& b) {
        return std::tie(a.generation, a.seq) < std::tie(b.generation, b.seq);
      });
  return out;
}

int64_t NowSeconds() { return absl::ToUnixSeconds(absl::Now()); }

}  // namespace

Model Materialize(const Generation& g, uint64_t log_sequence) {
  Model m = *g.model;  // copy: the trained rows are the starting point
  const std::shared_ptr<const NewItems> ni = g.items();
  const int32_t base_items = m.num_items();
  const int32_t added = ni->size();
  for (int32_t i = 0; i < base_items; ++i) {
    m.item_info[i] = ni->catalogue->Info(i);
  }
  if (added > 0) {
    for (int32_t j = 0; j < added; ++j) m.items.Insert(ni->ids->External(j));
    m.item_info.insert(m.item_info.end(), ni->info->begin(), ni->info->end());
    m.item_factors.conservativeResize(base_items + added, Eigen::NoChange);
    for (int32_t j = 0; j < added && m.factors() > 0; ++j) {
      m.item_factors.row(base_items + j) =
          Eigen::Map<const Eigen::RowVectorXf>(ni->Row(j), m.factors());
    }
    m.item_bias.conservativeResize(base_items + added);
    m.item_bias.tail(added) = ni->bias;
  }
  // Folded users: trained users get their rows replaced, new users appended.
  std::vector<std::pair<int32_t, std::shared_ptr<const UserState>>> folded;
  bool erasures = false;
  for (const auto& shard : g.shards) {
    std::lock_guard<std::mutex> lock(shard.mu);
    for (const auto& [id, st] : shard.users) {
      erasures = erasures || st->erased;
      if (st->erased && st->base < 0) continue;
      const int32_t u = st->base >= 0 ? st->base : m.users.Insert(id);
      folded.emplace_back(u, st);
    }
  }
  int32_t users = m.users.size();
  m.user_bias.conservativeResize(users);
  m.user_factors.conservativeResize(users, Eigen::NoChange);
  std::vector<const UserState*> by_user(users, nullptr);
  for (const auto& [u, st] : folded) {
    m.user_bias[u] = st->bias;
    if (m.factors() > 0 && !st->erased) {
      m.user_factors.row(u) = st->vec.transpose();
    }
    by_user[u] = st.get();
  }
  // Erased users leave no trace: no id, no row, no rating. The others
  // close up in their order.
  std::vector<int32_t> old_user;  // new index -> old, when any was erased
  if (erasures) {
    IdMap kept;
    for (int32_t u = 0; u < users; ++u) {
      if (by_user[u] != nullptr && by_user[u]->erased) continue;
      kept.Insert(m.users.External(u));
      old_user.push_back(u);
    }
    const auto n = static_cast<int32_t>(old_user.size());
    Eigen::VectorXf bias(n);
    RowMatrix factors(n, m.factors());
    std::vector<const UserState*> states(static_cast<size_t>(n));
    for (int32_t u = 0; u < n; ++u) {
      const int32_t o = old_user[static_cast<size_t>(u)];
      bias[u] = m.user_bias[o];
      if (m.factors() > 0) factors.row(u) = m.user_factors.row(o);
      states[static_cast<size_t>(u)] = by_user[static_cast<size_t>(o)];
    }
    m.users = std::move(kept);
    m.user_bias = std::move(bias);
    m.user_factors = std::move(factors);
    by_user = std::move(states);
    users = n;
  }
  // Every rating, old and new, in user order.
  const SparseRows& old = g.model->user_ratings;
  SparseRows rows;
  rows.offsets.assign(1, 0);
  struct Entry {
    int32_t item;
    float value;
    int64_t time;
    bool operator<(const Entry& o) const { return item < o.item; }
  };
  std::vector<Entry> tmp;
  for (int32_t u = 0; u < users; ++u) {
    tmp.clear();
    const int32_t o = erasures ? old_user[static_cast<size_t>(u)] : u;
    if (by_user[u] != nullptr) {
      for (const auto& e : by_user[u]->ratings) {
        tmp.push_back({e.item, e.value, e.timestamp});
      }
    } else if (o < old.rows()) {
      for (int64_t k = old.offsets[o]; k < old.offsets[o + 1]; ++k) {
        tmp.push_back(
            {old.cols[k], old.values[k], old.times.empty() ? 0 : old.times[k]});
      }
    }
    std::sort(tmp.begin(), tmp.end());
    for (const Entry& e : tmp) {
      rows.cols.push_back(e.item);
      rows.values.push_back(e.value);
      rows.times.push_back(e.time);
    }
    rows.offsets.push_back(static_cast<int64_t>(rows.cols.size()));
  }
  m.user_ratings = std::move(rows);
  m.item_counts.assign(m.num_items(), 0);
  for (int32_t i : m.user_ratings.cols) ++m.item_counts[i];
  m.log_sequence = log_sequence;
  return m;
}

std::string SnapshotFileName(uint64_t generation, uint64_t seq) {
  return SnapshotName(generation, seq);
}

bool HasSnapshot(const std::string& dir) { return !ListSnapshots(dir).empty(); }

RatingData RatingsOf(const Model& m) {
  RatingData d;
  d.users = m.users;
  d.items = m.items;
  d.item_info = m.item_info;
  d.scale = m.scale;
  const SparseRows& r = m.user_ratings;
  d.ratings.reserve(r.cols.size());
  for (int32_t u = 0; u < r.rows(); ++u) {
    for (int64_t k = r.offsets[u]; k < r.offsets[u + 1]; ++k) {
      d.ratings.push_back(
          {u, r.cols[k], r.values[k], r.times.empty() ? 0 : r.times[k]});
    }
  }
  return d;
}

Engine::Engine(const EngineOptions& options) : options_(options) {}

Engine::~Engine() {
  CancelRunningTraining();
  WaitForTraining();
  if (log_) log_->Sync().IgnoreError();
}

std::shared_ptr<Generation> Engine::current() const {
  return std::atomic_load(&current_);
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(
    const EngineOptions& options,
    const std::function<absl::StatusOr<Model>()>& first_model) {
  std::error_code ec;
  std::filesystem::create_directories(options.data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create data directory ", options.data_dir, ": ", ec.message()));
  }
  std::unique_ptr<Engine> e(new Engine(options));
  const std::vector<SnapshotFile> snaps = ListSnapshots(options.data_dir);
  Model model;
  uint64_t generation = 1;
  if (!snaps.empty()) {
    RECSYS_ASSIGN_OR_RETURN(model, LoadModel(snaps.back().path));
    generation = snaps.back().generation;
  } else {
    RECSYS_ASSIGN_OR_RETURN(model, first_model());
    RECSYS_RETURN_IF_ERROR(SaveModel(
        model,
        options.data_dir + "/" + SnapshotName(generation, model.log_sequence)));
  }
  const uint64_t after = model.log_sequence;
  auto gen = std::make_shared<Generation>(
      std::make_shared<const Model>(std::move(model)), generation);
  Engine* raw = e.get();
  // Consecutive catalogue entries are applied together (see ApplyEntries):
  // one at a time, 10,000 new items took 5 s to replay.
  std::vector<LogRecord> entries;
  auto apply_entries = [&] {
    std::vector<const LogRecord*> batch;
    for (const LogRecord& rec : entries) batch.push_back(&rec);
    if (!batch.empty()) raw->ApplyEntries(*gen, batch);
    entries.clear();
  };
  RECSYS_ASSIGN_OR_RETURN(e->log_,
                          RatingLog::Open(options.data_dir, options.log, after,
                                          [&](const LogRecord& rec) {
                                            if (rec.entry != nullptr) {
                                              entries.push_back(rec);
                                              return;
                                            }
                                            apply_entries();
                                            raw->Apply(*gen, rec);
                                          }));
  apply_entries();
  std::atomic_store(&e->current_, gen);
  e->applied_seq_ = e->log_->last_seq();
  e->purged_seq_ = after;
  // An erasure replayed from the log may have been logged just before a
  // crash, with the user still in the older files: they go now.
  if (e->erased_seq_.load() > after) RECSYS_RETURN_IF_ERROR(e->WriteSnapshot());
  return e;
}

absl::Status Engine::ValidateRating(const Generation& g,
                                    const RatingInput& r) const {
  RECSYS_RETURN_IF_ERROR(CheckId("user id", r.user));
  RECSYS_RETURN_IF_ERROR(CheckId("item id", r.item));
  const RatingScale& s = g.model->scale;
  if (!std::isfinite(r.value) || !s.Contains(r.value)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "rating %g is outside the scale [%g, %g]", r.value, s.min, s.max));
  }
  return absl::OkStatus();
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
      it->second = rec.value;
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
  const int32_t base_user = m.users.Find(user_id);
  std::vector<UserState::Entry> entries = std::move(user.ratings);
  std::shared_ptr<const NewItems> ni = g.items();
  // The user's kept fold-in equations, if any, follow each change of a
  // rating of a model item (see EquationCache).
  FoldInEquations* kept = g.equations[shard].Find(user_id);
  // Every update adds rounding error; after many, start again from the
  // ratings (one full fold-in per kRebuildAfter updates).
  constexpr int64_t kRebuildAfter = 1 << 16;
  if (kept != nullptr && kept->updates() >= kRebuildAfter) kept = nullptr;
  std::optional<FoldInEquations> fresh;
  auto add = [&m](FoldInEquations* eq, const UserState::Entry& e, float sign) {
    if (e.item >= m.num_items()) return;
    eq->Add(m.factors() > 0 ? m.item_factors.row(e.item).data() : nullptr,
            m.item_bias[e.item], e.value, sign);
  };

  bool applied = false;
  for (size_t r = 0; r < recs.size(); ++r) {
    const LogRecord& rec = *recs[r];
    RateResult& result = results[r];
    result.sequence = rec.seq;
    // Logged before an erasure of the user that was applied first.
    if (rec.seq <= user.erased_seq) continue;
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
    // An older record (replayed after a newer one) does not overwrite.
    auto e =
        std::find_if(entries.begin(), entries.end(),
                     [&](const UserState::Entry& x) { return x.item == item; });
    if (e == entries.end()) {
      entries.push_back({item, rec.value, rec.timestamp, rec.seq});
      if (kept != nullptr) add(kept, entries.back(), 1.0f);
    } else if (e->seq <= rec.seq) {
      if (kept != nullptr) add(kept, *e, -1.0f);
      *e = {item, rec.value, rec.timestamp, rec.seq};
      if (kept != nullptr) add(kept, *e, 1.0f);
    }
  }

  if (!applied) return results;
  // One solve for all of this user's new ratings: from the kept equations,
  // or from equations built now over all of the user's ratings (and kept
  // for next time).
  internal::EquationCache& cache = g.equations[shard];
  (kept != nullptr ? fold_in_cache_hits_ : fold_in_cache_misses_)
      .fetch_add(1, std::memory_order_relaxed);
  const size_t budget =
      static_cast<size_t>(std::max<int64_t>(0, options_.fold_in_cache_bytes) /
                          static_cast<int64_t>(internal::Generation::kShards));
  if (kept == nullptr) {
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
    if (budget > 0) {
      cache.Insert(user_id, std::move(built));
      kept = cache.Find(user_id);
    } else {
      fresh.emplace(std::move(built));
      kept = &*fresh;
    }
  }
  FoldInResult row;
  if (std::none_of(
          entries.begin(), entries.end(),
          [&](const UserState::Entry& e) { return e.item >= m.num_items(); })) {
    row = kept->Solve();
  } else {
    FoldInEquations with_new = *kept;
    for (const UserState::Entry& e : entries) {
      if (e.item < m.num_items()) continue;
      const int32_t j = e.item - m.num_items();
      with_new.Add(m.factors() > 0 ? ni->Row(j) : nullptr, ni->bias[j],
                   e.value);
    }
    row = with_new.Solve();
  }
  cache.Trim(budget);

  auto st = std::make_shared<UserState>();
  st->base = base_user;
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

absl::StatusOr<RateResult> Engine::Rate(const RatingInput& rating) {
  std::vector<absl::StatusOr<RateResult>> r = RateBatch({rating});
  return std::move(r[0]);
}

std::vector<absl::StatusOr<RateResult>> Engine::RateBatch(
    const std::vector<RatingInput>& ratings) {
  std::vector<absl::StatusOr<RateResult>> results(
      ratings.size(), absl::InternalError("not processed"));
  std::vector<LogRecord> records;
  std::vector<size_t> positions;
  {
    std::shared_lock<WriterFirstMutex> swap(swap_mu_);
    std::shared_ptr<Generation> g = current();
    for (size_t k = 0; k < ratings.size(); ++k) {
      const RatingInput& r = ratings[k];
      absl::Status valid = ValidateRating(*g, r);
      if (!valid.ok()) {
        results[k] = valid;
        continue;
      }
      LogRecord rec;
      rec.user = r.user;
      rec.item = r.item;
      rec.value = r.value;
      rec.timestamp = r.timestamp != 0 ? r.timestamp : NowSeconds();
      records.push_back(std::move(rec));
      positions.push_back(k);
    }
    if (!records.empty()) {
      absl::StatusOr<uint64_t> appended = log_->Append(&records);
      if (!appended.ok()) {
        for (size_t k : positions) results[k] = appended.status();
        return results;
      }
      // Each user's ratings are folded in once per batch, and different
      // users in parallel (they lock different shards or wait their turn).
      absl::flat_hash_map<absl::string_view, size_t> group_of;
      std::vector<std::vector<size_t>> groups;
      for (size_t j = 0; j < records.size(); ++j) {
        auto [it, fresh] = group_of.try_emplace(records[j].user, groups.size());
        if (fresh) groups.emplace_back();
        groups[it->second].push_back(j);
      }
      const int threads = records.size() < 64 ? 1 : ResolveThreads(0);
      ParallelChunks(static_cast<int64_t>(groups.size()), threads,
                     [&](int64_t begin, int64_t end, int) {
                       std::vector<const LogRecord*> mine;
                       for (int64_t k = begin; k < end; ++k) {
                         mine.clear();
                         for (size_t j : groups[k]) mine.push_back(&records[j]);
                         const std::vector<RateResult> applied =
                             ApplyUser(*g, mine);
                         for (size_t r = 0; r < mine.size(); ++r) {
                           results[positions[groups[k][r]]] = applied[r];
                         }
                       }
                     });
      if (journaling_) {
        std::lock_guard<std::mutex> lock(journal_mu_);
        journal_.insert(journal_.end(), records.begin(), records.end());
      }
      NoteApplied(*appended);
    }
  }
  CountLogged(static_cast<int64_t>(records.size()));
  return results;
}

absl::Status Engine::ApplyReplicated(std::vector<LogRecord> records) {
  int64_t logged = 0;
  bool erasures = false;
  {
    std::shared_lock<WriterFirstMutex> swap(swap_mu_);
    std::shared_ptr<Generation> g = current();
    // The log takes those it does not hold yet; all are applied (after an
    // InstallSnapshot older than the log's end, the new state needs them).
    std::vector<LogRecord> fresh = records;
    RECSYS_RETURN_IF_ERROR(log_->AppendNumbered(&fresh).status());
    logged = static_cast<int64_t>(fresh.size());
    // One at a time, in log order, as a restart replays them (a user's
    // fold-in depends on the new items' vectors at the time); runs of
    // catalogue entries publish one copy of the items, as in Open.
    std::vector<const LogRecord*> entries;
    for (const LogRecord& rec : records) {
      if (rec.entry != nullptr) {
        entries.push_back(&rec);
        continue;
      }
      if (!entries.empty()) ApplyEntries(*g, entries);
      entries.clear();
      Apply(*g, rec);
      erasures = erasures || rec.erase_user;
    }
    if (!entries.empty()) ApplyEntries(*g, entries);
    if (!records.empty()) NoteApplied(records.back().seq);
  }
  CountLogged(logged);
  if (!erasures) return absl::OkStatus();
  // As DeleteUser on the primary: no file here holds the user any more.
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  if (purged_seq_ < erased_seq_.load()) return WriteSnapshotLocked();
  return absl::OkStatus();
}

absl::Status Engine::InstallSnapshot(Model model, uint64_t generation) {
  const uint64_t seq = model.log_sequence;
  const std::string path =
      options_.data_dir + "/" + SnapshotName(generation, seq);
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  // On disk first: a restart then loads it, and accepts the log's gap below
  // `seq` (RatingLog::SkipTo).
  RECSYS_RETURN_IF_ERROR(SaveModel(model, path));
  auto next = std::make_shared<Generation>(
      std::make_shared<const Model>(std::move(model)), generation);
  {
    std::unique_lock<WriterFirstMutex> swap(swap_mu_);
    RECSYS_RETURN_IF_ERROR(log_->SkipTo(seq));
    // Lowered first: a reader that finds the new state also finds this.
    applied_seq_.store(seq);
    std::atomic_store(&current_, next);
    since_snapshot_ = 0;
  }
  // The primary's snapshot is the truth up to `seq`: older files here may
  // hold users it erased in records this engine never saw.
  RECSYS_RETURN_IF_ERROR(log_->DeleteSegmentsUpTo(seq));
  for (const SnapshotFile& f : ListSnapshots(options_.data_dir)) {
    if (f.path == path) continue;
    std::error_code ec;
    std::filesystem::remove(f.path, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot delete ", f.path, ": ", ec.message()));
    }
  }
  purged_seq_ = std::max(purged_seq_, seq);
  return absl::OkStatus();
}

absl::StatusOr<SnapshotRef> Engine::NewestSnapshot() const {
  const std::vector<SnapshotFile> snaps = ListSnapshots(options_.data_dir);
  if (snaps.empty()) {
    return absl::UnavailableError("no snapshot written yet; try again");
  }
  SnapshotRef ref;
  ref.path = snaps.back().path;
  ref.generation = snaps.back().generation;
  ref.log_sequence = snaps.back().seq;
  const uint64_t serving = current()->version;
  if (ref.generation != serving) {
    return absl::UnavailableError(absl::StrFormat(
        "the snapshot of model version %d is still being written; try again",
        serving));
  }
  return ref;
}

uint64_t Engine::generation() const { return current()->version; }

void Engine::CountLogged(int64_t records) {
  if (options_.snapshot_every > 0 && records > 0 &&
      since_snapshot_.fetch_add(records) + records >= options_.snapshot_every) {
    MaybeSnapshot();
  }
}

void Engine::MaybeSnapshot() {
  // One writer; a Rate that finds it busy simply moves on.
  std::unique_lock<std::mutex> lock(snapshot_mu_, std::try_to_lock);
  if (!lock.owns_lock()) return;
  if (since_snapshot_.load() < options_.snapshot_every) return;
  lock.unlock();
  WriteSnapshot().IgnoreError();
}

absl::Status Engine::WriteSnapshot() {
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  return WriteSnapshotLocked();
}

absl::Status Engine::WriteSnapshotLocked() {
  // The segment being written is closed first: every record in it is older
  // than `seq` below, so the snapshot covers it and it goes. (Rotating after
  // the snapshot would leave a segment that holds both records before an
  // erasure and records after `seq`.) Records numbered after `closed` may
  // still land in the new segment before `seq` is read, so only erasures up
  // to `closed` are complete on disk once this returns.
  const uint64_t closed = log_->last_seq();
  RECSYS_RETURN_IF_ERROR(log_->Rotate());
  uint64_t seq = 0;
  std::shared_ptr<Generation> g;
  {
    // Every record up to `seq` is applied once no Rate holds the lock.
    std::unique_lock<WriterFirstMutex> swap(swap_mu_);
    seq = log_->last_seq();
    g = current();
    since_snapshot_ = 0;
  }
  const Model m = Materialize(*g, seq);
  const std::string path =
      options_.data_dir + "/" + SnapshotName(g->version, seq);
  RECSYS_RETURN_IF_ERROR(SaveModel(m, path));
  RECSYS_RETURN_IF_ERROR(log_->DeleteSegmentsUpTo(seq));
  std::vector<SnapshotFile> snaps = ListSnapshots(options_.data_dir);
  const int keep = 1 + std::max(0, options_.keep_snapshots);
  const uint64_t erased = erased_seq_.load();
  for (int k = 0; k + 1 < static_cast<int>(snaps.size()); ++k) {
    if (k + keep >= static_cast<int>(snaps.size()) && snaps[k].seq >= erased) {
      continue;
    }
    std::error_code ec;
    std::filesystem::remove(snaps[k].path, ec);
    if (ec && snaps[k].seq < erased) {
      return absl::InternalError(
          absl::StrCat("cannot delete ", snaps[k].path,
                       ", which holds a user erased since: ", ec.message()));
    }
  }
  purged_seq_ = closed;
  return absl::OkStatus();
}

void Engine::NoteApplied(uint64_t seq) {
  uint64_t seen = applied_seq_.load();
  while (seen < seq && !applied_seq_.compare_exchange_weak(seen, seq)) {
  }
}

absl::Status Engine::CheckApplied(uint64_t min) const {
  const uint64_t applied = applied_seq_.load();
  if (min <= applied) return absl::OkStatus();
  return absl::UnavailableError(absl::StrFormat(
      "this server has applied the log up to seq %d, not yet %d: retry "
      "shortly, or ask the primary",
      applied, min));
}

void Engine::NoteErasure(uint64_t seq) {
  uint64_t seen = erased_seq_.load();
  while (seen < seq && !erased_seq_.compare_exchange_weak(seen, seq)) {
  }
}

absl::StatusOr<DeleteUserResult> Engine::DeleteUser(const std::string& user) {
  RECSYS_RETURN_IF_ERROR(CheckId("user id", user));
  RECSYS_ASSIGN_OR_RETURN(std::vector<DeleteUserResult> out,
                          DeleteUsers({user}));
  if (out[0].sequence == 0) {
    return absl::NotFoundError(absl::StrCat("unknown user '", user, "'"));
  }
  return out[0];
}

absl::StatusOr<std::vector<DeleteUserResult>> Engine::DeleteUsers(
    const std::vector<std::string>& users) {
  if (users.size() > kMaxListItems) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%d users, more than the limit of %d per call",
                        users.size(), kMaxListItems));
  }
  for (size_t k = 0; k < users.size(); ++k) {
    const absl::Status valid = CheckId("user id", users[k]);
    if (!valid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("user_ids[", k, "]: ", valid.message()));
    }
  }
  std::vector<DeleteUserResult> out(users.size());
  {
    std::shared_lock<WriterFirstMutex> swap(swap_mu_);
    std::shared_ptr<Generation> g = current();
    // The users' writers wait from before the append to after the
    // erasures, so none applies a later rating that an erasure would then
    // wipe (earlier ones applied late are skipped: erased_seq). Their
    // shards are locked in increasing order (no other thread holds two).
    std::vector<size_t> shards;
    for (const std::string& user : users) shards.push_back(g->ShardOf(user));
    std::sort(shards.begin(), shards.end());
    shards.erase(std::unique(shards.begin(), shards.end()), shards.end());
    std::vector<std::unique_lock<std::mutex>> writers;
    for (size_t s : shards) writers.emplace_back(g->write_mu[s]);
    // Each known user once (the first time the list names them).
    std::vector<LogRecord> records;
    std::vector<size_t> position;
    absl::flat_hash_set<absl::string_view> seen;
    const int64_t now = NowSeconds();
    for (size_t k = 0; k < users.size(); ++k) {
      if (!seen.insert(users[k]).second ||
          !internal::ViewUser(*g, users[k], /*with_ratings=*/false,
                              /*with_vector=*/false)
               .known) {
        continue;
      }
      LogRecord rec;
      rec.user = users[k];
      rec.erase_user = true;
      rec.timestamp = now;
      records.push_back(std::move(rec));
      position.push_back(k);
    }
    if (!records.empty()) {
      RECSYS_ASSIGN_OR_RETURN(const uint64_t last, log_->Append(&records));
      for (size_t j = 0; j < records.size(); ++j) {
        out[position[j]].sequence = records[j].seq;
        out[position[j]].ratings_deleted = Erase(*g, records[j]);
      }
      NoteErasure(last);
      NoteApplied(last);
      if (journaling_) {
        std::lock_guard<std::mutex> lock(journal_mu_);
        journal_.insert(journal_.end(), records.begin(), records.end());
      }
    }
  }
  // One snapshot covers every erasure logged before it, so erasures that
  // arrive together mostly share one.
  const uint64_t erased = erased_seq_.load();
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  if (purged_seq_ < erased) {
    absl::Status written = WriteSnapshotLocked();
    if (!written.ok()) {
      const bool mine =
          std::any_of(out.begin(), out.end(),
                      [](const DeleteUserResult& r) { return r.sequence > 0; });
      return absl::InternalError(absl::StrCat(
          mine ? "erased from serving and the log, but not yet from older "
                 "files: "
               : "an earlier erasure is not yet out of older files: ",
          written.message(), " (delete again to retry)"));
    }
  }
  return out;
}

absl::Status Engine::Sync() { return log_->Sync(); }

absl::StatusOr<UpsertItemsResult> Engine::UpsertItems(
    const std::vector<ItemUpdate>& updates) {
  if (updates.size() > kMaxListItems) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%d items, more than the limit of %d per call",
                        updates.size(), kMaxListItems));
  }
  for (size_t k = 0; k < updates.size(); ++k) {
    const absl::Status valid = CheckItemUpdate(updates[k]);
    if (!valid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("items[", k, "]: ", valid.message()));
    }
  }
  UpsertItemsResult out;
  int64_t logged = 0;
  {
    std::lock_guard<std::mutex> edit(catalogue_mu_);
    std::shared_lock<WriterFirstMutex> swap(swap_mu_);
    const std::shared_ptr<Generation> g = current();
    const std::shared_ptr<const NewItems> ni = g->items();
    // One entry per item, however often the updates name it, with the
    // item's entry from before the call (none for a new item).
    struct Pending {
      std::string id;
      ItemInfo entry;
      std::optional<ItemInfo> original;
    };
    std::vector<Pending> entries;
    absl::flat_hash_map<std::string, size_t> entry_of;
    for (size_t k = 0; k < updates.size(); ++k) {
      const ItemUpdate& u = updates[k];
      auto pending = entry_of.find(u.id);
      const int32_t i = g->FindItem(u.id, *ni);
      const bool known = i >= 0 || pending != entry_of.end();
      ItemInfo entry = pending != entry_of.end()
                           ? entries[pending->second].entry
                       : i >= 0 ? ni->Describe(i)
                                : ItemInfo();
      const ItemInfo before = entry;
      if (u.title) entry.title = *u.title;
      if (u.genres) entry.genres = *u.genres;
      if (u.retired) entry.retired = *u.retired;
      if (known && SameEntry(entry, before)) {
        ++out.unchanged;
        continue;
      }
      // Titles and genres from the model's data have no limits, and the
      // log records the whole entry.
      if (const absl::Status sizes =
              CheckEntrySizes(&entry.title, &entry.genres);
          !sizes.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "items[", k, "]: the entry of item '", u.id,
            "' would be over the limits (", sizes.message(),
            "): give a shorter title or fewer genres in the same update"));
      }
      ++(known ? out.changed : out.added);
      if (pending == entry_of.end()) {
        entry_of.emplace(u.id, entries.size());
        entries.push_back(
            {u.id, std::move(entry),
             i >= 0 ? std::optional<ItemInfo>(before) : std::nullopt});
      } else {
        entries[pending->second].entry = std::move(entry);
      }
    }
    // An item whose later updates undid its earlier ones is not logged.
    entries.erase(std::remove_if(entries.begin(), entries.end(),
                                 [](const Pending& p) {
                                   return p.original &&
                                          SameEntry(p.entry, *p.original);
                                 }),
                  entries.end());
    if (!entries.empty()) {
      std::vector<LogRecord> records(entries.size());
      std::vector<const LogRecord*> applied;
      const int64_t now = NowSeconds();
      for (size_t k = 0; k < entries.size(); ++k) {
        records[k].item = std::move(entries[k].id);
        records[k].entry =
            std::make_shared<const ItemInfo>(std::move(entries[k].entry));
        records[k].timestamp = now;
        applied.push_back(&records[k]);
      }
      RECSYS_ASSIGN_OR_RETURN(out.sequence, log_->Append(&records));
      logged = static_cast<int64_t>(records.size());
      ApplyEntries(*g, applied);
      NoteApplied(out.sequence);
      if (journaling_) {
        std::lock_guard<std::mutex> lock(journal_mu_);
        journal_.insert(journal_.end(), records.begin(), records.end());
      }
    }
  }
  // The lookups by genre and availability are made now, by the writer,
  // rather than by the next Recommend.
  current()->items()->catalogue->index();
  // Catalogue entries lengthen the log as ratings do.
  CountLogged(logged);
  return out;
}

absl::StatusOr<ItemView> Engine::GetItem(const std::string& id) const {
  RECSYS_RETURN_IF_ERROR(CheckId("item id", id));
  const std::shared_ptr<Generation> g = current();
  const std::shared_ptr<const NewItems> ni = g->items();
  const int32_t i = g->FindItem(id, *ni);
  if (i < 0)
    return absl::NotFoundError(absl::StrCat("unknown item '", id, "'"));
  return ViewItem(*g, *ni, i);
}

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

EngineInfo Engine::Info() const {
  const std::shared_ptr<Generation> g = current();
  const Model& m = *g->model;
  const std::shared_ptr<const NewItems> ni = g->items();
  EngineInfo info;
  info.kind = m.kind;
  info.version = g->version;
  info.factors = m.factors();
  int64_t new_users = 0, extra_ratings = 0;
  for (const auto& shard : g->shards) {
    std::lock_guard<std::mutex> lock(shard.mu);
    for (const auto& [id, st] : shard.users) {
      if (st->erased) {
        if (st->base >= 0) {
          --new_users;
          extra_ratings -= m.user_ratings.size(st->base);
        }
      } else if (st->base < 0) {
        ++new_users;
        extra_ratings += static_cast<int64_t>(st->ratings.size());
      } else {
        extra_ratings += static_cast<int64_t>(st->ratings.size()) -
                         m.user_ratings.size(st->base);
      }
    }
  }
  info.users = m.num_users() + new_users;
  info.items = m.num_items() + ni->size();
  info.retired_items = static_cast<int64_t>(
      ni->catalogue->index().retired.size() + ni->retired.size());
  info.ratings =
      static_cast<int64_t>(m.user_ratings.cols.size()) + extra_ratings;
  info.train_seconds = m.train_seconds;
  info.scale = m.scale;
  info.last_validation_rmse = m.last_validation_rmse;
  info.ranking_kind = RankingKindName(m);
  info.rating_kind = RatingKindName(m);
  info.selection = m.selection;
  info.ratings_since_training = g->accepted.load();
  info.log_sequence = log_->last_seq();
  info.fold_in_cache_bytes = g->equation_totals.bytes.load();
  info.fold_in_cache_users = g->equation_totals.users.load();
  info.fold_in_cache_hits = fold_in_cache_hits_.load();
  info.fold_in_cache_misses = fold_in_cache_misses_.load();
  std::lock_guard<std::mutex> lock(jobs_mu_);
  if (running_ != nullptr) info.training_job = running_->id;
  return info;
}

absl::StatusOr<std::string> Engine::StartTraining(const TrainSpec& spec) {
  const std::shared_ptr<const Model> serving = current()->model;
  TrainingSpec model = spec.keep_params ? options_.training : spec.model;
  const bool keep_exact = spec.keep_params && serving->selection.empty();
  if (keep_exact) {
    // Trained as told: again so, with the serving hyper-parameters.
    model.kind = serving->kind;
    model.select = false;
    RECSYS_RETURN_IF_ERROR(
        ValidateHyperparameters(serving->kind, serving->params));
  } else {
    RECSYS_RETURN_IF_ERROR(ValidateSpec(model));
  }
  const double fraction =
      spec.validation_fraction.value_or(SpecSearches(model) ? 0.0 : 0.05);
  if (!(fraction >= 0 && fraction <= 0.5)) {
    return absl::InvalidArgumentError(
        "validation_fraction must be in [0, 0.5]");
  }
  if (SpecSearches(model) && fraction > 0) {
    model.selection.validation_fraction = fraction;
    model.selection.refit = false;
  }
  std::lock_guard<std::mutex> lock(jobs_mu_);
  if (running_ != nullptr) {
    return absl::AlreadyExistsError(
        absl::StrCat("training job ", running_->id, " is already running"));
  }
  if (trainer_.joinable()) trainer_.join();  // the previous, finished job
  auto job = std::make_shared<internal::TrainingJob>();
  job->id = absl::StrCat("train-", next_job_++, "-", NowSeconds());
  jobs_[job->id] = job;
  running_ = job;
  std::optional<Hyperparameters> exact;
  if (keep_exact) exact = serving->params;
  trainer_ = std::thread([this, job, model, exact, fraction] {
    RunTraining(job, model, exact, fraction);
  });
  return job->id;
}

void Engine::RunTraining(std::shared_ptr<internal::TrainingJob> job,
                         TrainingSpec spec,
                         std::optional<Hyperparameters> exact,
                         double validation_fraction) {
  TrainingUpdate last;
  auto finish = [&](TrainingUpdate u) {
    {
      std::unique_lock<WriterFirstMutex> swap(swap_mu_);
      journaling_ = false;
    }
    {
      std::lock_guard<std::mutex> lock(jobs_mu_);
      running_ = nullptr;
    }
    job->Push(u, /*last=*/true);
  };
  // Start the journal and fix the cut: every record <= seq is applied.
  uint64_t seq = 0;
  std::shared_ptr<Generation> g;
  {
    std::unique_lock<WriterFirstMutex> swap(swap_mu_);
    seq = log_->last_seq();
    g = current();
    journaling_ = true;
    std::lock_guard<std::mutex> lock(journal_mu_);
    journal_.clear();
  }
  const Model state = Materialize(*g, seq);
  RatingData all = RatingsOf(state);
  TrainOptions opt;
  opt.threads = options_.train_threads;
  opt.stop = [&job] { return job->cancel.load(std::memory_order_relaxed); };
  opt.on_epoch = [&](const EpochReport& r) {
    last.state = TrainingUpdate::kRunning;
    last.trial.reset();
    last.epoch = r.epoch;
    last.epochs = r.epochs;
    last.train_rmse = r.train_rmse;
    last.validation_rmse = r.validation_rmse;
    last.elapsed_seconds = r.elapsed_seconds;
    job->Push(last, false);
  };
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<Model> trained;
  if (SpecSearches(spec)) {
    // Each finished trial goes to the watchers as it comes.
    spec.selection.on_trial = [&](const SelectionTrial& t) {
      TrainingUpdate u;
      u.trial = t;
      u.elapsed_seconds = std::chrono::duration<double>(
                              std::chrono::steady_clock::now() - start)
                              .count();
      job->Push(u, false);
    };
    trained = TrainWithSpec(all, spec, opt);
    if (trained.ok()) last.validation_rmse = trained->last_validation_rmse;
  } else {
    const ModelKind kind = spec.kind.value_or(ModelKind::kHybrid);
    const Hyperparameters params =
        exact ? *exact : ResolveParams(kind, spec.params);
    RatingData train, validation;
    const RatingData* fit = &all;
    if (validation_fraction > 0) {
      RandomSplit(all, validation_fraction, params.seed ^ 0x5eed, &train,
                  &validation);
      fit = &train;
      opt.validation = &validation;
    }
    trained = TrainModel(*fit, kind, params, opt);
  }
  bool cancelled = false;
  {
    // A cancel either lands before this point, and no model goes in, or is
    // refused.
    std::lock_guard<std::mutex> lock(job->mu);
    cancelled = job->cancel.load();
    job->committing = !cancelled && trained.ok();
  }
  if (cancelled || !trained.ok()) {
    TrainingUpdate u = last;
    u.state = cancelled ? TrainingUpdate::kCancelled : TrainingUpdate::kFailed;
    u.error = cancelled ? std::string("cancelled (CancelTraining)")
                        : std::string(trained.status().message());
    finish(u);
    return;
  }
  // The held-out share trained nothing but stays the users' history.
  trained->user_ratings = state.user_ratings;
  trained->item_counts = state.item_counts;
  trained->log_sequence = seq;
  trained->last_validation_rmse = last.validation_rmse;
  auto next = std::make_shared<Generation>(
      std::make_shared<const Model>(*std::move(trained)), g->version + 1);
  int64_t replayed = 0;
  {
    std::unique_lock<WriterFirstMutex> swap(swap_mu_);
    std::vector<LogRecord> journal;
    {
      std::lock_guard<std::mutex> lock(journal_mu_);
      journal.swap(journal_);
    }
    // In log order, as a restart would replay them (writers of different
    // users journal in the order they finish).
    std::sort(
        journal.begin(), journal.end(),
        [](const LogRecord& a, const LogRecord& b) { return a.seq < b.seq; });
    std::vector<const LogRecord*> entries;  // applied together, as in Open
    for (const LogRecord& rec : journal) {
      if (rec.seq <= seq) continue;
      ++replayed;
      if (rec.entry != nullptr) {
        entries.push_back(&rec);
        continue;
      }
      if (!entries.empty()) ApplyEntries(*next, entries);
      entries.clear();
      Apply(*next, rec);
    }
    if (!entries.empty()) ApplyEntries(*next, entries);
    std::atomic_store(&current_, next);
    journaling_ = false;
  }
  // The new generation goes to disk so a restart serves it.
  absl::Status saved = WriteSnapshot();
  TrainingUpdate u = last;
  u.state = saved.ok() ? TrainingUpdate::kSucceeded : TrainingUpdate::kFailed;
  if (!saved.ok()) {
    u.error =
        absl::StrCat("model serves but its snapshot failed: ", saved.message());
  }
  u.model_version = next->version;
  u.ratings_folded_after = replayed;
  finish(u);
}

absl::StatusOr<std::vector<TrainingUpdate>> Engine::WatchTraining(
    const std::string& job_id, size_t from, absl::Time deadline,
    bool* done) const {
  RECSYS_ASSIGN_OR_RETURN(const std::shared_ptr<internal::TrainingJob> job,
                          FindJob(job_id));
  std::unique_lock<std::mutex> lock(job->mu);
  job->cv.wait_until(lock, absl::ToChronoTime(deadline),
                     [&] { return job->updates.size() > from || job->done; });
  std::vector<TrainingUpdate> out;
  for (size_t k = from; k < job->updates.size(); ++k)
    out.push_back(job->updates[k]);
  *done = job->done;
  return out;
}

absl::StatusOr<std::shared_ptr<internal::TrainingJob>> Engine::FindJob(
    const std::string& job_id) const {
  std::lock_guard<std::mutex> lock(jobs_mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(
        absl::StrCat("unknown training job '", job_id, "'"));
  }
  return it->second;
}

absl::Status Engine::CancelTraining(const std::string& job_id) {
  RECSYS_ASSIGN_OR_RETURN(const std::shared_ptr<internal::TrainingJob> job,
                          FindJob(job_id));
  return Cancel(*job);
}

void Engine::CancelRunningTraining() {
  std::shared_ptr<internal::TrainingJob> job;
  {
    std::lock_guard<std::mutex> lock(jobs_mu_);
    job = running_;
  }
  if (job != nullptr) Cancel(*job).IgnoreError();  // it may be ending
}

absl::Status Engine::Cancel(internal::TrainingJob& job) {
  std::lock_guard<std::mutex> lock(job.mu);
  if (job.done || job.committing) {
    return absl::FailedPreconditionError(absl::StrCat(
        "training job ", job.id,
        job.done ? " has already ended" : " is already swapping its model in"));
  }
  job.cancel.store(true);
  return absl::OkStatus();
}

void Engine::WaitForTraining() {
  std::thread t;
  {
    std::lock_guard<std::mutex> lock(jobs_mu_);
    t.swap(trainer_);
  }
  if (t.joinable()) t.join();
}

}  // namespace recsys
