// The engine's life: opening a data directory (snapshot, then the log
// replayed), what it reports, and the applied log sequence.
#include "engine/engine.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/parallel.h"
#include "base/status_macros.h"
#include "engine/events.h"
#include "engine/replay.h"
#include "engine/state.h"
#include "models/model_io.h"

namespace recsys {

using internal::Generation;
using internal::ListSnapshots;
using internal::NewItems;
using internal::SnapshotFile;
using internal::SnapshotName;

Engine::Engine(const EngineOptions& options)
    : options_(options),
      event_ids_(
          std::make_unique<internal::EventIds>(options.event_id_window)) {
  for (const auto& [type, weight] : options_.event_weights) {
    event_counts_[type] = std::make_unique<std::atomic<uint64_t>>(0);
  }
}

Engine::~Engine() {
  StopSnapshotThread();
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
  Replayer replay(*e, *gen);
  RECSYS_ASSIGN_OR_RETURN(
      e->log_, RatingLog::Open(options.data_dir, options.log, after,
                               [&](const LogRecord& rec) { replay.Add(rec); }));
  replay.Finish();
  std::atomic_store(&e->current_, gen);
  e->applied_seq_ = e->log_->last_seq();
  e->purged_seq_ = after;
  // An erasure replayed from the log may have been logged just before a
  // crash, with the user still in the older files: they go now.
  if (e->erased_seq_.load() > after) RECSYS_RETURN_IF_ERROR(e->WriteSnapshot());
  e->StartSnapshotThread();
  return e;
}

uint64_t Engine::generation() const { return current()->version; }

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

absl::Status Engine::Sync() { return log_->Sync(); }

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
  info.feedback = m.feedback;
  info.event_weights = options_.event_weights;
  for (const auto& [type, count] : event_counts_) {
    info.events_accepted.emplace_back(type, count->load());
  }
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
  MutexLock lock(&jobs_mu_);
  if (running_ != nullptr) info.training_job = running_->id;
  return info;
}

}  // namespace recsys
