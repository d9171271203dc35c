// One RateStream call of the stream and events workloads: the window of
// ratings (events) in flight, coalesced writes, and acks matched to their
// send times.
#include <algorithm>
#include <cstdint>

#include "bench/load_generator.h"
#include "bench/load_generator_internal.h"
#include "grpcpp/grpcpp.h"
#include "proto/recsys.grpc.pb.h"

namespace recsys::bench::internal {

RatingStream::RatingStream(Worker* worker, Recommender::Stub* stub)
    : worker_(worker),
      stub_(stub),
      op_(worker->o_.workload == Workload::kEvents ? kOpEvents : kOpStream) {
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
  out_ = op_ == kOpEvents ? worker_->RandomEvent() : worker_->RandomRating();
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
    worker_->Record(op_, sent_ns_[i % window], now, status);
  }
  while (oldest_ < next_ && acked_[oldest_ % window]) ++oldest_;
  rw_->Read(&in_, &read_);
  MaybeWrite();
}

void RatingStream::OnFinished(bool) {
  finished_ = true;
  if (!status_.ok() && status_.error_code() != grpc::StatusCode::CANCELLED) {
    worker_->Record(op_, worker_->end() - 1, worker_->end(), status_);
  }
}

}  // namespace recsys::bench::internal
