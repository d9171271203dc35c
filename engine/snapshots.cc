// Snapshots: materialising a generation as a model file, writing it, and
// deleting what it makes redundant (older snapshots, covered log segments);
// a replica's installation of its primary's snapshot.
#include <algorithm>
#include <filesystem>
#include <limits>
#include <regex>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "engine/engine.h"
#include "engine/state.h"
#include "models/model_io.h"

namespace recsys {

using internal::Generation;
using internal::ListSnapshots;
using internal::NewItems;
using internal::PruneSnapshots;
using internal::SnapshotFile;
using internal::SnapshotName;
using internal::UserState;

namespace internal {

std::string SnapshotName(uint64_t generation, uint64_t seq) {
  return absl::StrFormat("snapshot-%08d-%020d.rsm", generation, seq);
}

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

absl::Status PruneSnapshots(const std::string& dir, const std::string& current,
                            int keep, uint64_t erased) {
  std::vector<SnapshotFile> older;
  for (SnapshotFile& f : ListSnapshots(dir)) {
    if (f.path != current) older.push_back(std::move(f));
  }
  for (size_t k = 0; k < older.size(); ++k) {
    const bool recent = k + static_cast<size_t>(keep) >= older.size();
    if (recent && older[k].seq >= erased) continue;
    std::error_code ec;
    std::filesystem::remove(older[k].path, ec);
    if (ec && older[k].seq < erased) {
      return absl::InternalError(
          absl::StrCat("cannot delete ", older[k].path,
                       ", which may hold an erased user: ", ec.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace internal

namespace {

// The catalogue as edited, and the new items' ids, entries and rows.
void MaterializeItems(const NewItems& ni, Model* m) {
  const int32_t base_items = m->num_items();
  const int32_t added = ni.size();
  for (int32_t i = 0; i < base_items; ++i) {
    m->item_info[i] = ni.catalogue->Info(i);
  }
  if (added == 0) return;
  for (int32_t j = 0; j < added; ++j) m->items.Insert(ni.ids->External(j));
  m->item_info.insert(m->item_info.end(), ni.info->begin(), ni.info->end());
  m->item_factors.conservativeResize(base_items + added, Eigen::NoChange);
  for (int32_t j = 0; j < added && m->factors() > 0; ++j) {
    m->item_factors.row(base_items + j) =
        Eigen::Map<const Eigen::RowVectorXf>(ni.Row(j), m->factors());
  }
  m->item_bias.conservativeResize(base_items + added);
  m->item_bias.tail(added) = ni.bias;
}

// Folded users: trained users get their rows replaced, new users appended.
// Returns each user's state (null: as trained); `erasures` says whether any
// is erased.
std::vector<const UserState*> MaterializeUsers(const GenerationView& view,
                                               Model* m, bool* erasures) {
  std::vector<std::pair<int32_t, const UserState*>> folded;
  *erasures = false;
  for (const auto& [id, st] : view.users) {
    *erasures = *erasures || st->erased;
    if (st->erased && st->base < 0) continue;
    const int32_t u = st->base >= 0 ? st->base : m->users.Insert(id);
    folded.emplace_back(u, st.get());
  }
  const int32_t users = m->users.size();
  m->user_bias.conservativeResize(users);
  m->user_factors.conservativeResize(users, Eigen::NoChange);
  std::vector<const UserState*> by_user(users, nullptr);
  for (const auto& [u, st] : folded) {
    m->user_bias[u] = st->bias;
    if (m->factors() > 0 && !st->erased) {
      m->user_factors.row(u) = st->vec.transpose();
    }
    by_user[u] = st;
  }
  return by_user;
}

// Erased users leave no trace: no id, no row, no rating. The others close
// up in their order; returns each new index's old one.
std::vector<int32_t> DropErasedUsers(Model* m,
                                     std::vector<const UserState*>* by_user) {
  std::vector<int32_t> old_user;
  IdMap kept;
  for (int32_t u = 0; u < m->users.size(); ++u) {
    if ((*by_user)[u] != nullptr && (*by_user)[u]->erased) continue;
    kept.Insert(m->users.External(u));
    old_user.push_back(u);
  }
  const auto n = static_cast<int32_t>(old_user.size());
  Eigen::VectorXf bias(n);
  RowMatrix factors(n, m->factors());
  std::vector<const UserState*> states(static_cast<size_t>(n));
  for (int32_t u = 0; u < n; ++u) {
    const int32_t o = old_user[static_cast<size_t>(u)];
    bias[u] = m->user_bias[o];
    if (m->factors() > 0) factors.row(u) = m->user_factors.row(o);
    states[static_cast<size_t>(u)] = (*by_user)[static_cast<size_t>(o)];
  }
  m->users = std::move(kept);
  m->user_bias = std::move(bias);
  m->user_factors = std::move(factors);
  *by_user = std::move(states);
  return old_user;
}

// Every rating, old and new, in user order: a user's state where there is
// one, else their trained ratings (`old`, at index old_user[u], or u).
SparseRows MaterializeRatings(const SparseRows& old,
                              const std::vector<const UserState*>& by_user,
                              const std::vector<int32_t>& old_user) {
  SparseRows rows;
  rows.offsets.assign(1, 0);
  struct Entry {
    int32_t item;
    float value;
    int64_t time;
    bool operator<(const Entry& o) const { return item < o.item; }
  };
  std::vector<Entry> tmp;
  for (size_t u = 0; u < by_user.size(); ++u) {
    tmp.clear();
    const auto o = static_cast<int32_t>(old_user.empty() ? u : old_user[u]);
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
  return rows;
}

}  // namespace

GenerationView ViewOf(const Generation& g) {
  GenerationView view;
  view.items = g.items();
  for (const auto& shard : g.shards) {
    std::lock_guard<std::mutex> lock(shard.mu);
    view.users.insert(view.users.end(), shard.users.begin(), shard.users.end());
  }
  return view;
}

Model Materialize(const Generation& g, const GenerationView& view,
                  uint64_t log_sequence) {
  Model m = *g.model;  // copy: the trained rows are the starting point
  MaterializeItems(*view.items, &m);
  bool erasures = false;
  std::vector<const UserState*> by_user = MaterializeUsers(view, &m, &erasures);
  std::vector<int32_t> old_user;  // empty when no user was erased
  if (erasures) old_user = DropErasedUsers(&m, &by_user);
  m.user_ratings = MaterializeRatings(g.model->user_ratings, by_user, old_user);
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
  d.feedback = m.feedback;
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

absl::Status Engine::InstallSnapshot(Model model, uint64_t generation) {
  const uint64_t seq = model.log_sequence;
  const std::string path =
      options_.data_dir + "/" + SnapshotName(generation, seq);
  MutexLock lock(&snapshot_mu_);
  // On disk first: a restart then loads it, and accepts the log's gap below
  // `seq` (RatingLog::SkipTo).
  RECSYS_RETURN_IF_ERROR(SaveModel(model, path));
  auto next = std::make_shared<Generation>(
      std::make_shared<const Model>(std::move(model)), generation);
  {
    MutexLock swap(&swap_mu_);
    RECSYS_RETURN_IF_ERROR(log_->SkipTo(seq));
    // Lowered first: a reader that finds the new state also finds this.
    applied_seq_.store(seq);
    std::atomic_store(&current_, next);
    since_snapshot_ = 0;
  }
  // The primary's snapshot is the truth up to `seq`: older files here may
  // hold users it erased in records this engine never saw.
  RECSYS_RETURN_IF_ERROR(log_->DeleteSegmentsUpTo(seq));
  RECSYS_RETURN_IF_ERROR(PruneSnapshots(options_.data_dir, path, 0,
                                        std::numeric_limits<uint64_t>::max()));
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

void Engine::CountLogged(int64_t records) {
  if (options_.snapshot_every > 0 && records > 0 &&
      since_snapshot_.fetch_add(records) + records >= options_.snapshot_every) {
    {
      std::lock_guard<std::mutex> lock(snapshot_request_mu_);
      snapshot_requested_ = true;
    }
    snapshot_cv_.notify_all();
  }
}

void Engine::StartSnapshotThread() {
  if (options_.snapshot_every <= 0) return;
  snapshotter_ = std::thread([this] { SnapshotLoop(); });
}

void Engine::StopSnapshotThread() {
  {
    std::lock_guard<std::mutex> lock(snapshot_request_mu_);
    stop_snapshots_ = true;
  }
  snapshot_cv_.notify_all();
  if (snapshotter_.joinable()) snapshotter_.join();
}

void Engine::SnapshotLoop() {
  std::unique_lock<std::mutex> lock(snapshot_request_mu_);
  while (true) {
    snapshot_cv_.wait(lock,
                      [&] { return snapshot_requested_ || stop_snapshots_; });
    if (stop_snapshots_) break;
    snapshot_requested_ = false;
    snapshot_running_ = true;
    lock.unlock();
    // (Still due: an erasure's or a training's snapshot may have come
    // first.) A failure is retried at the next request; the log keeps
    // every record meanwhile.
    if (since_snapshot_.load() >= options_.snapshot_every) {
      WriteSnapshot().IgnoreError();
    }
    lock.lock();
    snapshot_running_ = false;
    snapshot_cv_.notify_all();
  }
}

void Engine::WaitForSnapshots() {
  std::unique_lock<std::mutex> lock(snapshot_request_mu_);
  snapshot_cv_.wait(lock, [&] {
    return (!snapshot_requested_ && !snapshot_running_) || stop_snapshots_ ||
           !snapshotter_.joinable();
  });
}

absl::Status Engine::WriteSnapshot() {
  MutexLock lock(&snapshot_mu_);
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
  GenerationView view;
  {
    // Every record up to `seq` is applied once no Rate holds the lock, and
    // none after it: the view holds exactly those.
    MutexLock swap(&swap_mu_);
    seq = log_->last_seq();
    g = current();
    view = ViewOf(*g);
    since_snapshot_ = 0;
  }
  const Model m = Materialize(*g, view, seq);
  view = GenerationView();
  const std::string path =
      options_.data_dir + "/" + SnapshotName(g->version, seq);
  RECSYS_RETURN_IF_ERROR(SaveModel(m, path));
  RECSYS_RETURN_IF_ERROR(log_->DeleteSegmentsUpTo(seq));
  RECSYS_RETURN_IF_ERROR(PruneSnapshots(options_.data_dir, path,
                                        std::max(0, options_.keep_snapshots),
                                        erased_seq_.load()));
  purged_seq_ = closed;
  return absl::OkStatus();
}

}  // namespace recsys
