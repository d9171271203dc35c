// Events of implicit feedback: the --event_weights table (parsing and
// printing it), and the window of recent event ids that makes a retried
// event count once.
//
//   RECSYS_ASSIGN_OR_RETURN(auto weights,
//   ParseEventWeights("play:1,click:.5")); EventIds ids(1000000);
//   ids.Reserve("e1", "u7", &seq);      // kNew: log and apply it
//   ids.Apply("e1", "u7", seq);         // true: apply (false: a duplicate)
#ifndef RECSYS_ENGINE_EVENTS_H_
#define RECSYS_ENGINE_EVENTS_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace recsys {
namespace internal {

// "type:weight,type:weight" (e.g. "play:1,click:0.5"): types non-empty,
// at most 256 bytes, without ',' or ':', named once; weights finite and
// > 0. INVALID_ARGUMENT naming the bad part.
absl::StatusOr<std::map<std::string, float>> ParseEventWeights(
    absl::string_view spec);
// The spec ParseEventWeights reads back.
std::string FormatEventWeights(const std::map<std::string, float>& weights);

// The ids of the newest events (at most `window`), each with its user and
// the log sequence that recorded it. Thread-safe.
class EventIds {
 public:
  explicit EventIds(int64_t window);

  enum class Claim {
    kNew,        // reserved: log the event, then Apply (or Release)
    kDuplicate,  // recorded before, at *seq
    kPending,    // being recorded by another call right now
  };
  // Live writes: before an event is logged.
  Claim Reserve(const std::string& id, const std::string& user, uint64_t* seq);
  // The append failed: the reservation goes.
  void Release(const std::string& id);
  // Applying the record `seq` holding event `id` (live, or replayed from
  // the log): true to apply it; false when the id was recorded by another
  // record (a retry that also reached the log).
  bool Apply(const std::string& id, const std::string& user, uint64_t seq);
  // Forgets every id of `user` (an erasure): O(the user's ids).
  void EraseUser(const std::string& user);
  int64_t size() const;

 private:
  struct Entry {
    uint64_t seq = 0;  // 0 while reserved
    std::string user;
  };
  void Insert(const std::string& id, Entry e)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Forget(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t window_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> ids_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> order_ ABSL_GUARDED_BY(mu_);  // oldest first
  // Each user's ids, so that an erasure (DeleteUsers: thousands at once)
  // does not scan the whole window per user.
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> by_user_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace internal
}  // namespace recsys

#endif  // RECSYS_ENGINE_EVENTS_H_
