#include "server/rate_batcher.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "server/service.h"

namespace recsys {

void RateBatcher::Add(Call call) {
  std::unique_lock<std::mutex> lock(mu_);
  queue_.push_back(std::move(call));
  if (leading_) return;
  leading_ = true;
  const auto deadline = std::chrono::steady_clock::now() + lead_budget_;
  while (!queue_.empty()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      handed_off_ = true;  // still leading_, now on thread_
      lock.unlock();
      cv_.notify_one();
      return;
    }
    CommitQueued(&lock);
  }
  leading_ = false;
}

void RateBatcher::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stop_ || handed_off_; });
    if (!handed_off_) return;  // stopping, and nothing handed over
    handed_off_ = false;
    while (!queue_.empty()) CommitQueued(&lock);
    leading_ = false;
  }
}

void RateBatcher::CommitQueued(std::unique_lock<std::mutex>* lock) {
  // Kept by the thread for its next turn as leader.
  thread_local std::vector<Call> batch;
  thread_local std::vector<RatingInput> inputs;
  const size_t n = std::min(kMaxBatch, queue_.size());
  batch.assign(std::make_move_iterator(queue_.begin()),
               std::make_move_iterator(queue_.begin() + n));
  queue_.erase(queue_.begin(), queue_.begin() + n);
  lock->unlock();
  Commit(&batch, &inputs);
  lock->lock();
}

void RateBatcher::Commit(std::vector<Call>* batch,
                         std::vector<RatingInput>* inputs) {
  std::vector<Call>& calls = *batch;
  // Runs of calls for the same engine (there is only ever one).
  for (size_t begin = 0; begin < calls.size();) {
    size_t end = begin + 1;
    while (end < calls.size() && calls[end].engine == calls[begin].engine)
      ++end;
    inputs->clear();
    for (size_t j = begin; j < end; ++j) {
      inputs->push_back(std::move(calls[j].rating));
    }
    const std::vector<absl::StatusOr<RateResult>> results =
        calls[begin].engine->RateBatch(*inputs);
    observe_(results);
    for (size_t j = begin; j < end; ++j) {
      const absl::StatusOr<RateResult>& r = results[j - begin];
      if (r.ok()) {
        calls[j].resp->set_sequence(r->sequence);
        calls[j].resp->set_new_user(r->new_user);
        calls[j].resp->set_new_item(r->new_item);
        calls[j].resp->set_duplicate(r->duplicate);
      }
      calls[j].reactor->Finish(ToGrpcStatus(r.status()));
    }
    begin = end;
  }
  calls.clear();
}

RateBatcher::~RateBatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

}  // namespace recsys
