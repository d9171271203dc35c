#include "engine/events.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/mutex.h"

namespace recsys {
namespace internal {

absl::StatusOr<std::map<std::string, float>> ParseEventWeights(
    absl::string_view spec) {
  std::map<std::string, float> weights;
  for (absl::string_view part : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    part = absl::StripAsciiWhitespace(part);
    const size_t colon = part.rfind(':');
    const absl::string_view type =
        absl::StripAsciiWhitespace(part.substr(0, colon));
    float w = 0;
    if (colon == absl::string_view::npos || type.empty() || type.size() > 256 ||
        type.find(':') != absl::string_view::npos ||
        !absl::SimpleAtof(part.substr(colon + 1), &w)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "event weight '", part, "': expected type:weight, e.g. play:1"));
    }
    if (!(std::isfinite(w) && w > 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "event weight '", part, "': the weight must be finite and > 0"));
    }
    if (!weights.emplace(std::string(type), w).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("event type '", type, "' is named twice"));
    }
  }
  return weights;
}

std::string FormatEventWeights(const std::map<std::string, float>& weights) {
  return absl::StrJoin(weights, ",", [](std::string* out, const auto& tw) {
    // (%.9g: every float reads back as itself.)
    absl::StrAppend(out, tw.first, ":", absl::StrFormat("%.9g", tw.second));
  });
}

EventIds::EventIds(int64_t window)
    : window_(static_cast<size_t>(std::max<int64_t>(0, window))) {}

void EventIds::Forget(const std::string& id) {
  auto it = ids_.find(id);
  if (it == ids_.end()) return;
  auto mine = by_user_.find(it->second.user);
  if (mine != by_user_.end()) {
    mine->second.erase(id);
    if (mine->second.empty()) by_user_.erase(mine);
  }
  ids_.erase(it);
}

void EventIds::Insert(const std::string& id, Entry e) {
  by_user_[e.user].insert(id);
  ids_[id] = std::move(e);
  order_.push_back(id);
  while (ids_.size() > window_ && !order_.empty()) {
    Forget(order_.front());
    order_.pop_front();
  }
  // Ids erased with their user leave stale names behind; drop them once
  // they outnumber the live ones.
  if (order_.size() > 2 * ids_.size() + 1024) {
    std::deque<std::string> live;
    for (std::string& name : order_) {
      if (ids_.contains(name)) live.push_back(std::move(name));
    }
    order_.swap(live);
  }
}

EventIds::Claim EventIds::Reserve(const std::string& id,
                                  const std::string& user, uint64_t* seq) {
  MutexLock lock(&mu_);
  if (auto it = ids_.find(id); it != ids_.end()) {
    *seq = it->second.seq;
    return it->second.seq == 0 ? Claim::kPending : Claim::kDuplicate;
  }
  if (window_ == 0) return Claim::kNew;
  Insert(id, {0, user});
  return Claim::kNew;
}

void EventIds::Release(const std::string& id) {
  MutexLock lock(&mu_);
  if (auto it = ids_.find(id); it != ids_.end() && it->second.seq == 0) {
    Forget(id);
  }
}

bool EventIds::Apply(const std::string& id, const std::string& user,
                     uint64_t seq) {
  MutexLock lock(&mu_);
  auto it = ids_.find(id);
  if (it == ids_.end()) {
    if (window_ > 0) Insert(id, {seq, user});
    return true;
  }
  if (it->second.seq == 0 || it->second.seq == seq) {
    it->second.seq = seq;
    return true;
  }
  return false;
}

void EventIds::EraseUser(const std::string& user) {
  MutexLock lock(&mu_);
  auto mine = by_user_.find(user);
  if (mine == by_user_.end()) return;
  for (const std::string& id : mine->second) ids_.erase(id);
  by_user_.erase(mine);
}

int64_t EventIds::size() const {
  ReaderMutexLock lock(&mu_);
  return static_cast<int64_t>(ids_.size());
}

}  // namespace internal
}  // namespace recsys
