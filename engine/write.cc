// The write path of ratings: validate, append to the log (durable), apply,
// journal for a running training; and a replica's apply of its primary's
// records.
#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/parallel.h"
#include "base/status_macros.h"
#include "engine/checks.h"
#include "engine/engine.h"
#include "engine/events.h"
#include "engine/replay.h"
#include "engine/state.h"

namespace recsys {

using internal::Generation;

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
    ReaderMutexLock swap(&swap_mu_);
    std::shared_ptr<Generation> g = current();
    for (size_t k = 0; k < ratings.size(); ++k) {
      absl::Status valid = ValidateRating(*g, ratings[k]);
      if (!valid.ok()) {
        results[k] = valid;
        continue;
      }
      records.push_back(RecordOf(ratings[k]));
      positions.push_back(k);
    }
    const std::vector<std::string> reserved =
        ClaimEventIds(&records, &positions, &results);
    if (!records.empty()) {
      absl::StatusOr<uint64_t> committed = Commit(&records, [&] {
        // Each user's ratings are folded in once per batch, and different
        // users in parallel (they lock different shards or wait their
        // turn).
        absl::flat_hash_map<absl::string_view, size_t> group_of;
        std::vector<std::vector<size_t>> groups;
        for (size_t j = 0; j < records.size(); ++j) {
          auto [it, fresh] =
              group_of.try_emplace(records[j].user, groups.size());
          if (fresh) groups.emplace_back();
          groups[it->second].push_back(j);
        }
        const int threads = records.size() < 64 ? 1 : ResolveThreads(0);
        ParallelChunks(static_cast<int64_t>(groups.size()), threads,
                       [&](int64_t begin, int64_t end, int) {
                         std::vector<const LogRecord*> mine;
                         for (int64_t k = begin; k < end; ++k) {
                           mine.clear();
                           for (size_t j : groups[k])
                             mine.push_back(&records[j]);
                           const std::vector<RateResult> applied =
                               ApplyUser(*g, mine);
                           for (size_t r = 0; r < mine.size(); ++r) {
                             results[positions[groups[k][r]]] = applied[r];
                           }
                         }
                       });
      });
      if (!committed.ok()) {
        for (const std::string& id : reserved) event_ids_->Release(id);
        for (size_t k : positions) results[k] = committed.status();
        return results;
      }
    }
  }
  CountEvents(records);
  CountLogged(static_cast<int64_t>(records.size()));
  return results;
}

std::vector<std::string> Engine::ClaimEventIds(
    std::vector<LogRecord>* records, std::vector<size_t>* positions,
    std::vector<absl::StatusOr<RateResult>>* results) {
  std::vector<std::string> reserved;
  size_t kept = 0;
  for (size_t j = 0; j < records->size(); ++j) {
    LogRecord& rec = (*records)[j];
    uint64_t seq = 0;
    const auto claim = rec.event_id.empty()
                           ? internal::EventIds::Claim::kNew
                           : event_ids_->Reserve(rec.event_id, rec.user, &seq);
    switch (claim) {
      case internal::EventIds::Claim::kNew:
        if (!rec.event_id.empty()) reserved.push_back(rec.event_id);
        (*positions)[kept] = (*positions)[j];
        if (kept != j) (*records)[kept] = std::move(rec);
        ++kept;
        break;
      case internal::EventIds::Claim::kDuplicate: {
        RateResult r;
        r.sequence = seq;
        r.duplicate = true;
        (*results)[(*positions)[j]] = r;
        break;
      }
      case internal::EventIds::Claim::kPending:
        (*results)[(*positions)[j]] = absl::UnavailableError(absl::StrCat(
            "an event with id '", absl::CHexEscape(rec.event_id.substr(0, 64)),
            "' is being recorded by another call; retry to learn its fate"));
        break;
    }
  }
  records->resize(kept);
  positions->resize(kept);
  return reserved;
}

void Engine::CountEvents(const std::vector<LogRecord>& records) {
  for (const LogRecord& rec : records) {
    if (!rec.add) continue;
    auto it = event_counts_.find(rec.event_type);
    if (it != event_counts_.end()) {
      it->second->fetch_add(1, std::memory_order_relaxed);
    }
  }
}

absl::StatusOr<uint64_t> Engine::Commit(std::vector<LogRecord>* records,
                                        absl::FunctionRef<void()> apply) {
  RECSYS_ASSIGN_OR_RETURN(const uint64_t last, log_->Append(records));
  apply();
  if (journaling_) {
    MutexLock lock(&journal_mu_);
    journal_.insert(journal_.end(), records->begin(), records->end());
  }
  NoteApplied(last);
  return last;
}

absl::Status Engine::ApplyReplicated(std::vector<LogRecord> records) {
  int64_t logged = 0;
  bool erasures = false;
  {
    ReaderMutexLock swap(&swap_mu_);
    std::shared_ptr<Generation> g = current();
    // The log takes those it does not hold yet; all are applied (after an
    // InstallSnapshot older than the log's end, the new state needs them).
    std::vector<LogRecord> fresh = records;
    RECSYS_RETURN_IF_ERROR(log_->AppendNumbered(&fresh).status());
    logged = static_cast<int64_t>(fresh.size());
    // One at a time, in log order, as a restart replays them (a user's
    // fold-in depends on the new items' vectors at the time).
    Replayer replay(*this, *g);
    for (const LogRecord& rec : records) {
      replay.Add(rec);
      erasures = erasures || rec.erase_user;
    }
    replay.Finish();
    if (!records.empty()) NoteApplied(records.back().seq);
  }
  CountLogged(logged);
  if (!erasures) return absl::OkStatus();
  // As DeleteUser on the primary: no file here holds the user any more.
  MutexLock lock(&snapshot_mu_);
  if (purged_seq_ < erased_seq_.load()) return WriteSnapshotLocked();
  return absl::OkStatus();
}

}  // namespace recsys
