#include "bench/load_generator.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <random>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "grpc/support/time.h"
#include "grpcpp/generic/generic_stub.h"
#include "proto/recsys.grpc.pb.h"

namespace recsys::bench {
namespace {

using v1::Recommender;

constexpr char kHealthCheck[] = "/grpc.health.v1.Health/Check";
constexpr char kRecommendMethod[] = "/recsys.v1.Recommender/Recommend";
constexpr char kRateMethod[] = "/recsys.v1.Recommender/Rate";
constexpr char kInfoMethod[] = "/recsys.v1.Recommender/GetModelInfo";
constexpr char kSimilarMethod[] = "/recsys.v1.Recommender/SimilarItems";

grpc::ByteBuffer Encode(const google::protobuf::MessageLite& m) {
  grpc::Slice slice(m.SerializeAsString());
  return grpc::ByteBuffer(&slice, 1);
}
// How often an idle worker wakes to look at the clock.
constexpr int64_t kPollNs = 20'000'000;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// gRPC's monotonic clock has its own origin, so deadlines are built relative
// to its "now" rather than converted from steady_clock.
gpr_timespec DeadlineIn(int64_t ns) {
  return gpr_time_add(
      gpr_now(GPR_CLOCK_MONOTONIC),
      gpr_time_from_nanos(std::max<int64_t>(0, ns), GPR_TIMESPAN));
}

double ProcessCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

enum Op {
  kOpEmpty,
  kOpRecommend,
  kOpRate,
  kOpStream,
  kOpInfo,
  kOpSimilar,
  kNumOps
};
constexpr const char* kOpNames[kNumOps] = {"empty",  "recommend", "rate",
                                           "stream", "info",      "similar"};

// What a completion-queue tag points at.
class Tag {
 public:
  virtual ~Tag() = default;
  virtual void Done(bool ok) = 0;
};

class Worker;

// One unary call; deletes itself when its completion arrives.
template <typename Response>
class UnaryCall final : public Tag {
 public:
  UnaryCall(Worker* worker, Op op, int64_t scheduled)
      : worker_(worker), op_(op), scheduled_(scheduled) {}
  void Start(std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> r) {
    reader_ = std::move(r);
    reader_->StartCall();
    reader_->Finish(&response_, &status_, this);
  }
  void Done(bool ok) override;
  grpc::ClientContext ctx;

 private:
  Worker* worker_;
  Op op_;
  int64_t scheduled_;
  Response response_;
  grpc::Status status_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> reader_;
};

// One RateStream call kept busy: at most `window` ratings written and not
// yet acknowledged, one Write and one Read outstanding at a time (what the
// async API allows), closed with WritesDone when the run ends.
class RatingStream {
 public:
  RatingStream(Worker* worker, Recommender::Stub* stub);
  void Begin(grpc::CompletionQueue* cq);
  // Stops writing once the current write (if any) is done.
  void Close();
  void Cancel() { ctx_.TryCancel(); }
  bool finished() const { return finished_; }

 private:
  // Binds a completion to a member function.
  class Step final : public Tag {
   public:
    Step(RatingStream* s, void (RatingStream::*fn)(bool)) : s_(s), fn_(fn) {}
    void Done(bool ok) override { (s_->*fn_)(ok); }

   private:
    RatingStream* s_;
    void (RatingStream::*fn_)(bool);
  };

  void OnStarted(bool ok);
  void OnWritten(bool ok);
  void OnRead(bool ok);
  void OnWritesDone(bool) {}
  void OnFinished(bool ok);
  void MaybeWrite();

  Worker* worker_;
  Recommender::Stub* stub_;
  Step started_{this, &RatingStream::OnStarted};
  Step written_{this, &RatingStream::OnWritten};
  Step read_{this, &RatingStream::OnRead};
  Step writes_done_{this, &RatingStream::OnWritesDone};
  Step finished_step_{this, &RatingStream::OnFinished};
  grpc::ClientContext ctx_;
  std::unique_ptr<
      grpc::ClientAsyncReaderWriter<v1::RateRequest, v1::RateStreamResponse>>
      rw_;
  v1::RateRequest out_;
  v1::RateStreamResponse in_;
  grpc::Status status_;
  // Ratings [oldest_, next_) are in flight; slot index % window holds the
  // send time and whether the ack came (acks may arrive out of order).
  uint64_t next_ = 0;
  uint64_t oldest_ = 0;
  std::vector<int64_t> sent_ns_;
  std::vector<char> acked_;
  bool started_ok_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool finished_ = false;
  int unflushed_ = 0;
};

class Worker {
 public:
  Worker(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
         const RequestIds& ids, const LoadOptions& o, int index)
      : ids_(ids), o_(o), rng_(o.seed * 7919 + static_cast<uint64_t>(index)) {
    for (const auto& ch : channels) {
      stubs_.push_back(Recommender::NewStub(ch));
      generic_.push_back(std::make_unique<grpc::GenericStub>(ch));
    }
    // Health's request message with no fields set is zero bytes long.
    grpc::Slice empty("");
    empty_request_ = grpc::ByteBuffer(&empty, 1);
  }

  void AddStream() {
    streams_.push_back(std::make_unique<RatingStream>(
        this, stubs_[streams_.size() % stubs_.size()].get()));
  }

  // Closed loop: `inflight` calls; open loop: one call every `interval_ns`
  // starting at start + offset_ns.
  void Run(int64_t start, int64_t warm_end, int64_t end, int inflight,
           int64_t interval_ns, int64_t offset_ns) {
    warm_end_ = warm_end;
    end_ = end;
    const bool open_loop = interval_ns > 0;
    closed_loop_ = !open_loop;
    int64_t next_send = start + offset_ns;
    if (o_.workload == Workload::kStream) {
      closed_loop_ = false;
      for (auto& s : streams_) s->Begin(&cq_);
    } else if (!open_loop) {
      for (int i = 0; i < inflight; ++i) Issue(NowNs());
    }
    // The open loop's calls are issued by a thread of their own that sleeps
    // until each send time. Waiting for them in AsyncNext's deadline, as
    // this loop once did, left sends 0.5 ms late at the median and 1.9 ms
    // at p99 at only 4,000 calls/s with the client on a core of its own
    // (gRPC's timers are coarse), and a late send counts as latency.
    const bool paced = open_loop && o_.workload != Workload::kStream;
    std::atomic<bool> sending{paced};
    std::thread sender;
    if (paced) {
      sender = std::thread([this, &sending, next_send, end,
                            interval_ns]() mutable {
        // Wake-ups as exact as the kernel allows (the default slack is
        // 50 us).
        prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
        while (next_send < end) {
          std::this_thread::sleep_until(std::chrono::steady_clock::time_point(
              std::chrono::nanoseconds(next_send)));
          const int64_t now = NowNs();
          while (next_send <= now && next_send < end) {
            if (next_send >= warm_end_) send_lag_.Record(NowNs() - next_send);
            Issue(next_send);
            next_send += interval_ns;
          }
        }
        sending = false;
      });
    }
    const int64_t cancel_at =
        end + static_cast<int64_t>(o_.timeout_seconds * 1e9) + 1'000'000'000;
    bool cancelled = false;
    while (true) {
      int64_t now = NowNs();
      if (now >= end && !sending) {
        for (auto& s : streams_) s->Close();
        const bool streams_done =
            std::all_of(streams_.begin(), streams_.end(),
                        [](const auto& s) { return s->finished(); });
        if (outstanding_ == 0 && streams_done) break;
        if (now > cancel_at && !cancelled) {
          for (auto& s : streams_) s->Cancel();
          cancelled = true;
        }
      }
      int64_t wake = now + kPollNs;
      if (now < end) wake = std::min(wake, end);
      void* tag = nullptr;
      bool ok = false;
      const auto status = cq_.AsyncNext(&tag, &ok, DeadlineIn(wake - now));
      if (status == grpc::CompletionQueue::GOT_EVENT) {
        static_cast<Tag*>(tag)->Done(ok);
      } else if (status == grpc::CompletionQueue::SHUTDOWN) {
        break;
      }
    }
    if (sender.joinable()) sender.join();
    cq_.Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (cq_.Next(&tag, &ok)) {
    }
  }

  void Finished(Op op, int64_t scheduled, const grpc::Status& status) {
    --outstanding_;
    const int64_t now = NowNs();
    Record(op, scheduled, now, status);
    if (closed_loop_ && now < end_) Issue(now);
  }

  void Record(Op op, int64_t scheduled, int64_t now,
              const grpc::Status& status) {
    if (scheduled < warm_end_ || scheduled >= end_) return;
    OpStats& s = stats_[op];
    if (status.ok()) {
      ++s.ok;
      s.latency.Record(now - scheduled);
    } else {
      ++s.errors;
      ++s.errors_by_code[status.error_code()];
      if (s.first_error.empty()) {
        s.first_error = absl::StrCat(
            absl::StatusCodeToString(
                static_cast<absl::StatusCode>(status.error_code())),
            ": ", status.error_message());
      }
    }
  }

  void SetDeadline(grpc::ClientContext* ctx) const {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::microseconds(
                          static_cast<int64_t>(o_.timeout_seconds * 1e6)));
  }

  v1::RateRequest RandomRating() {
    v1::RateRequest r;
    r.set_user_id(Pick(ids_.users));
    r.set_item_id(Pick(ids_.items));
    r.set_rating(ids_.rating_values[rng_() % ids_.rating_values.size()]);
    return r;
  }

  int64_t end() const { return end_; }
  const OpStats& stats(int op) const { return stats_[op]; }
  const LatencyHistogram& send_lag() const { return send_lag_; }

 private:
  const std::string& Pick(const std::vector<std::string>& v) {
    return v[rng_() % v.size()];
  }

  void Issue(int64_t scheduled) {
    const size_t c = next_channel_++ % stubs_.size();
    Op op = kOpRecommend;
    switch (o_.workload) {
      case Workload::kEmpty:
        op = kOpEmpty;
        break;
      case Workload::kRate:
        op = kOpRate;
        break;
      case Workload::kInfo:
        op = kOpInfo;
        break;
      case Workload::kSimilar:
        op = kOpSimilar;
        break;
      case Workload::kMix:
        op = static_cast<int>(rng_() % 100) < o_.mix_rate_percent
                 ? kOpRate
                 : kOpRecommend;
        break;
      default:
        break;
    }
    ++outstanding_;
    if (op == kOpEmpty) {
      auto* call = new UnaryCall<grpc::ByteBuffer>(this, op, scheduled);
      SetDeadline(&call->ctx);
      call->Start(generic_[c]->PrepareUnaryCall(&call->ctx, kHealthCheck,
                                                empty_request_, &cq_));
    } else if (!o_.decode_responses) {
      // The same requests as below, encoded here; responses stay bytes.
      const char* method = kRateMethod;
      grpc::ByteBuffer request;
      if (op == kOpRecommend) {
        method = kRecommendMethod;
        request = RecommendRequestBytes(Pick(ids_.users));
      } else if (op == kOpInfo) {
        method = kInfoMethod;
        request = Encode(v1::GetModelInfoRequest());
      } else if (op == kOpSimilar) {
        method = kSimilarMethod;
        request = Encode(SimilarRequest());
      } else {
        request = Encode(RandomRating());
      }
      auto* call = new UnaryCall<grpc::ByteBuffer>(this, op, scheduled);
      SetDeadline(&call->ctx);
      call->Start(
          generic_[c]->PrepareUnaryCall(&call->ctx, method, request, &cq_));
    } else if (op == kOpRecommend) {
      const v1::RecommendRequest req = RecommendRequestFor(Pick(ids_.users));
      auto* call = new UnaryCall<v1::RecommendResponse>(this, op, scheduled);
      SetDeadline(&call->ctx);
      call->Start(stubs_[c]->PrepareAsyncRecommend(&call->ctx, req, &cq_));
    } else if (op == kOpInfo) {
      auto* call = new UnaryCall<v1::ModelInfo>(this, op, scheduled);
      SetDeadline(&call->ctx);
      call->Start(stubs_[c]->PrepareAsyncGetModelInfo(
          &call->ctx, v1::GetModelInfoRequest(), &cq_));
    } else if (op == kOpSimilar) {
      auto* call = new UnaryCall<v1::SimilarItemsResponse>(this, op, scheduled);
      SetDeadline(&call->ctx);
      call->Start(stubs_[c]->PrepareAsyncSimilarItems(&call->ctx,
                                                      SimilarRequest(), &cq_));
    } else {
      const v1::RateRequest req = RandomRating();
      auto* call = new UnaryCall<v1::RateResponse>(this, op, scheduled);
      SetDeadline(&call->ctx);
      call->Start(stubs_[c]->PrepareAsyncRate(&call->ctx, req, &cq_));
    }
  }

  v1::SimilarItemsRequest SimilarRequest() {
    v1::SimilarItemsRequest req;
    req.set_item_id(Pick(ids_.items));
    req.set_k(o_.k);
    return req;
  }

  // A Recommend for `user`, with the options' genre and candidates (drawn
  // from the model's items).
  v1::RecommendRequest RecommendRequestFor(const std::string& user) {
    v1::RecommendRequest req;
    req.set_user_id(user);
    req.set_k(o_.k);
    if (!o_.recommend_genre.empty()) req.set_genre(o_.recommend_genre);
    for (int j = 0; j < o_.recommend_candidates; ++j) {
      req.add_candidate_item_ids(Pick(ids_.items));
    }
    return req;
  }

  // Encoded once per user id and reused (a ByteBuffer shares its slices).
  grpc::ByteBuffer RecommendRequestBytes(const std::string& user) {
    auto it = recommend_bytes_.find(user);
    if (it == recommend_bytes_.end()) {
      it = recommend_bytes_.emplace(user, Encode(RecommendRequestFor(user)))
               .first;
    }
    return it->second;
  }

  const RequestIds& ids_;
  const LoadOptions& o_;
  std::mt19937_64 rng_;
  std::map<std::string, grpc::ByteBuffer> recommend_bytes_;
  grpc::CompletionQueue cq_;
  std::vector<std::unique_ptr<Recommender::Stub>> stubs_;
  std::vector<std::unique_ptr<grpc::GenericStub>> generic_;
  std::vector<std::unique_ptr<RatingStream>> streams_;
  grpc::ByteBuffer empty_request_;
  size_t next_channel_ = 0;
  // Calls started and not finished: the sender thread (open loop) starts
  // them, the completion-queue thread finishes them.
  std::atomic<int64_t> outstanding_{0};
  bool closed_loop_ = true;
  int64_t warm_end_ = 0;
  int64_t end_ = 0;
  OpStats stats_[kNumOps];
  LatencyHistogram send_lag_;  // open loop, measured window

  friend class RatingStream;
};

template <typename Response>
void UnaryCall<Response>::Done(bool) {
  worker_->Finished(op_, scheduled_, status_);
  delete this;
}

RatingStream::RatingStream(Worker* worker, Recommender::Stub* stub)
    : worker_(worker), stub_(stub) {
  const size_t window =
      static_cast<size_t>(std::max(1, worker->o_.stream_window));
  sent_ns_.assign(window, 0);
  acked_.assign(window, 0);
}

void RatingStream::Begin(grpc::CompletionQueue* cq) {
  rw_ = stub_->PrepareAsyncRateStream(&ctx_, cq);
  rw_->StartCall(&started_);
}

void RatingStream::OnStarted(bool ok) {
  if (!ok) {
    closing_ = true;
    rw_->Finish(&status_, &finished_step_);
    return;
  }
  started_ok_ = true;
  rw_->Read(&in_, &read_);
  MaybeWrite();
}

void RatingStream::Close() {
  if (!started_ok_ || closing_ || writing_) return;
  closing_ = true;
  rw_->WritesDone(&writes_done_);
}

void RatingStream::MaybeWrite() {
  if (writing_ || closing_ || !started_ok_) return;
  const int64_t now = NowNs();
  if (now >= worker_->end()) {
    Close();
    return;
  }
  const uint64_t window = sent_ns_.size();
  if (next_ - oldest_ >= window) return;  // wait for acks
  out_ = worker_->RandomRating();
  sent_ns_[next_ % window] = now;
  acked_[next_ % window] = 0;
  ++next_;
  // Coalesce writes while more will follow; flush when the window fills
  // (no further write until acks arrive) or every stream_flush_every.
  grpc::WriteOptions options;
  if (++unflushed_ < worker_->o_.stream_flush_every &&
      next_ - oldest_ < window) {
    options.set_buffer_hint();
  } else {
    unflushed_ = 0;
  }
  writing_ = true;
  rw_->Write(out_, options, &written_);
}

void RatingStream::OnWritten(bool ok) {
  writing_ = false;
  if (!ok) {
    closing_ = true;  // the read side sees the end and finishes the call
    return;
  }
  MaybeWrite();
}

void RatingStream::OnRead(bool ok) {
  if (!ok) {
    rw_->Finish(&status_, &finished_step_);
    return;
  }
  const uint64_t window = sent_ns_.size();
  const int64_t now = NowNs();
  for (const v1::RatingAck& ack : in_.acks()) {
    const uint64_t i = ack.index();
    if (i < oldest_ || i >= next_ || acked_[i % window]) continue;
    acked_[i % window] = 1;
    const grpc::Status status =
        ack.accepted() ? grpc::Status::OK
                       : grpc::Status(static_cast<grpc::StatusCode>(ack.code()),
                                      ack.error());
    worker_->Record(kOpStream, sent_ns_[i % window], now, status);
  }
  while (oldest_ < next_ && acked_[oldest_ % window]) ++oldest_;
  rw_->Read(&in_, &read_);
  MaybeWrite();
}

void RatingStream::OnFinished(bool) {
  finished_ = true;
  if (!status_.ok() && status_.error_code() != grpc::StatusCode::CANCELLED) {
    worker_->Record(kOpStream, worker_->end() - 1, worker_->end(), status_);
  }
}

}  // namespace

absl::StatusOr<Workload> ParseWorkload(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "empty") return Workload::kEmpty;
  if (n == "recommend") return Workload::kRecommend;
  if (n == "rate") return Workload::kRate;
  if (n == "stream") return Workload::kStream;
  if (n == "mix") return Workload::kMix;
  if (n == "info") return Workload::kInfo;
  if (n == "similar") return Workload::kSimilar;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown workload '", name,
                   "' (empty, recommend, rate, stream, mix, info, similar)"));
}

std::string WorkloadName(Workload w) {
  switch (w) {
    case Workload::kEmpty:
      return "empty";
    case Workload::kRecommend:
      return "recommend";
    case Workload::kRate:
      return "rate";
    case Workload::kStream:
      return "stream";
    case Workload::kMix:
      return "mix";
    case Workload::kInfo:
      return "info";
    case Workload::kSimilar:
      return "similar";
  }
  return "?";
}

void OpStats::Merge(const OpStats& other) {
  latency.Merge(other.latency);
  ok += other.ok;
  errors += other.errors;
  for (const auto& [code, n] : other.errors_by_code) errors_by_code[code] += n;
  if (first_error.empty()) first_error = other.first_error;
}

WorkloadResult RunWorkload(
    const std::vector<std::shared_ptr<grpc::Channel>>& channels,
    const RequestIds& ids, const LoadOptions& o,
    const std::function<double()>& server_cpu_seconds) {
  const int threads = std::max(1, o.threads);
  // Channels are dealt to threads round-robin; with fewer channels than
  // threads they are shared.
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < threads; ++t) {
    std::vector<std::shared_ptr<grpc::Channel>> mine;
    for (size_t c = t % channels.size(); c < channels.size(); c += threads) {
      mine.push_back(channels[c]);
    }
    if (mine.empty()) mine.push_back(channels[t % channels.size()]);
    workers.push_back(std::make_unique<Worker>(mine, ids, o, t));
  }
  if (o.workload == Workload::kStream) {
    for (int s = 0; s < std::max(1, o.streams); ++s) {
      workers[s % threads]->AddStream();
    }
  }

  WorkloadResult result;
  result.workload = o.workload;
  result.open_loop = o.qps > 0 && o.workload != Workload::kStream;
  result.offered_qps = result.open_loop ? o.qps : 0;
  const int64_t start = NowNs() + 1'000'000;
  const int64_t warm_end = start + static_cast<int64_t>(o.warmup_seconds * 1e9);
  const int64_t end = warm_end + static_cast<int64_t>(o.duration_seconds * 1e9);
  const int64_t interval =
      result.open_loop ? static_cast<int64_t>(1e9 * threads / o.qps) : 0;

  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    const int inflight = o.inflight / threads + (t < o.inflight % threads);
    const int64_t offset = result.open_loop ? interval * t / threads : 0;
    pool.emplace_back([&, t, inflight, offset] {
      workers[t]->Run(start, warm_end, end, inflight, interval, offset);
    });
  }
  auto sleep_until = [](int64_t t) {
    const int64_t d = t - NowNs();
    if (d > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(d));
  };
  sleep_until(warm_end);
  const double cpu0 = ProcessCpuSeconds();
  const double server0 = server_cpu_seconds ? server_cpu_seconds() : 0;
  const int64_t t0 = NowNs();
  sleep_until(end);
  const double cpu1 = ProcessCpuSeconds();
  const double server1 = server_cpu_seconds ? server_cpu_seconds() : 0;
  const double wall = static_cast<double>(NowNs() - t0) / 1e9;
  for (std::thread& t : pool) t.join();

  result.seconds = o.duration_seconds;
  result.client_cpu = wall > 0 ? (cpu1 - cpu0) / wall : 0;
  if (server_cpu_seconds) {
    result.server_cpu = wall > 0 ? (server1 - server0) / wall : 0;
  }
  for (int op = 0; op < kNumOps; ++op) {
    OpStats merged;
    for (const auto& w : workers) merged.Merge(w->stats(op));
    if (merged.ok + merged.errors == 0) continue;
    result.total.Merge(merged);
    result.by_op[kOpNames[op]] = std::move(merged);
  }
  for (const auto& w : workers) result.send_lag.Merge(w->send_lag());
  result.qps = o.duration_seconds > 0
                   ? static_cast<double>(result.total.ok) / o.duration_seconds
                   : 0;
  return result;
}

}  // namespace recsys::bench
