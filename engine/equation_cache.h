// The fold-in equation cache of the engine's shards.
#ifndef RECSYS_ENGINE_EQUATION_CACHE_H_
#define RECSYS_ENGINE_EQUATION_CACHE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "models/fold_in.h"

namespace recsys {
namespace internal {

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

}  // namespace internal
}  // namespace recsys

#endif  // RECSYS_ENGINE_EQUATION_CACHE_H_
