// The engine's state, for its own files only: what a generation holds
// (the model, per-user state in sharded maps, the catalogue and the items
// added since training) and a training job's record. engine.h says how
// they are shared and locked.
#ifndef RECSYS_ENGINE_STATE_H_
#define RECSYS_ENGINE_STATE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "Eigen/Core"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "engine/equation_cache.h"
#include "models/model.h"
#include "models/scoring.h"

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
                  bool with_ratings = true, bool with_vector = true);

// Item `i` (global index) as readers see it.
ItemView ViewItem(const Generation& g, const NewItems& ni, int32_t i);

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

// Snapshot files of a data directory: "snapshot-<generation>-<log seq>.rsm".
std::string SnapshotName(uint64_t generation, uint64_t seq);
struct SnapshotFile {
  std::string path;
  uint64_t generation = 0;
  uint64_t seq = 0;
};
// The snapshots in `dir`, oldest first (none when it cannot be listed).
std::vector<SnapshotFile> ListSnapshots(const std::string& dir);
// Deletes the snapshots in `dir` but `current` (the one just written) and
// the `keep` newest of the others that hold no erased user (seq >=
// `erased`). One that does hold one (seq < erased) must go: failing to
// delete it is an error, where any other failure is left for next time.
absl::Status PruneSnapshots(const std::string& dir, const std::string& current,
                            int keep, uint64_t erased);

inline int64_t NowSeconds() { return absl::ToUnixSeconds(absl::Now()); }

}  // namespace internal
}  // namespace recsys

#endif  // RECSYS_ENGINE_STATE_H_
