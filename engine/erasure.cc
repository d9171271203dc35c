// Erasing users: the log record, its application and the snapshot that
// leaves no file holding them.
#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "engine/checks.h"
#include "engine/engine.h"
#include "engine/state.h"

namespace recsys {

using internal::CheckId;
using internal::Generation;
using internal::NowSeconds;
using internal::ViewUser;

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
    ReaderMutexLock swap(&swap_mu_);
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
      auto erase = [&] {
        for (size_t j = 0; j < records.size(); ++j) {
          out[position[j]].sequence = records[j].seq;
          out[position[j]].ratings_deleted = Erase(*g, records[j]);
        }
        NoteErasure(records.back().seq);
      };
      RECSYS_RETURN_IF_ERROR(Commit(&records, erase).status());
    }
  }
  // One snapshot covers every erasure logged before it, so erasures that
  // arrive together mostly share one.
  const uint64_t erased = erased_seq_.load();
  MutexLock lock(&snapshot_mu_);
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

}  // namespace recsys
