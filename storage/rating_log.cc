#include "storage/rating_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/crc32c.h"
#include "base/file_io.h"
#include "base/status_macros.h"
#include "storage/record_codec.h"
#include "storage/segments.h"

namespace recsys {

using internal::CheckGap;
using internal::CreateSegment;
using internal::DataSync;
using internal::EncodeRecord;
using internal::IoFailure;
using internal::kVersion;
using internal::Load;
using internal::LogSegment;
using internal::ParseSegmentName;
using internal::ScanSegment;
using internal::SegmentPath;
using internal::ValidateRecord;

absl::StatusOr<SyncPolicy> ParseSyncPolicy(absl::string_view name) {
  for (SyncPolicy policy :
       {SyncPolicy::kAlways, SyncPolicy::kInterval, SyncPolicy::kNever}) {
    if (name == SyncPolicyName(policy)) return policy;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown sync policy '", name, "' (always, interval or never)"));
}

const char* SyncPolicyName(SyncPolicy policy) {
  switch (policy) {
    case SyncPolicy::kAlways:
      return "always";
    case SyncPolicy::kInterval:
      return "interval";
    case SyncPolicy::kNever:
      return "never";
  }
  return "unknown";
}

RatingLog::RatingLog(std::string dir, const RatingLogOptions& options)
    : dir_(std::move(dir)), options_(options) {}

absl::StatusOr<std::unique_ptr<RatingLog>> RatingLog::Open(
    const std::string& dir, const RatingLogOptions& options, uint64_t after_seq,
    const std::function<void(const LogRecord&)>& replay) {
  if (after_seq == std::numeric_limits<uint64_t>::max()) {
    return absl::InvalidArgumentError("after_seq leaves no seq to number with");
  }
  if (options.segment_bytes == 0) {
    return absl::InvalidArgumentError("segment_bytes must be positive");
  }
  if (options.sync == SyncPolicy::kInterval &&
      options.interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "the interval sync policy needs a positive interval");
  }
  std::string clean = dir.empty() ? "." : dir;
  while (clean.size() > 1 && clean.back() == '/') clean.pop_back();
  std::unique_ptr<RatingLog> log(new RatingLog(std::move(clean), options));
  RECSYS_RETURN_IF_ERROR(log->Recover(after_seq, replay));
  if (options.sync == SyncPolicy::kInterval) {
    log->flusher_ = std::thread([raw = log.get()] { raw->FlushLoop(); });
  }
  return log;
}

namespace {

// The first seq of every segment in `dir`, in order; a segment whose
// creation crashed (still under its temporary name) goes.
absl::StatusOr<std::vector<uint64_t>> ListSegments(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<uint64_t> seqs;
  fs::directory_iterator it(dir, ec);
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    uint64_t seq = 0;
    if (ParseSegmentName(name, &seq)) {
      seqs.push_back(seq);
    } else if (absl::EndsWith(name, ".tmp") &&
               ParseSegmentName(name.substr(0, name.size() - 4), &seq)) {
      ::unlink(it->path().c_str());
    }
  }
  if (ec) return ErrnoError(ec.value(), dir, "cannot list directory");
  std::sort(seqs.begin(), seqs.end());
  return seqs;
}

}  // namespace

absl::Status RatingLog::LockDirectory() {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::create_directories(dir_, ec)) {
    RECSYS_RETURN_IF_ERROR(
        SyncDirectory(fs::path(dir_).parent_path().empty()
                          ? "."
                          : fs::path(dir_).parent_path().string()));
  } else if (ec) {
    return ErrnoError(ec.value(), dir_, "cannot create directory");
  }
  // Two writers would interleave records and numbers; the lock is dropped
  // by the kernel when its holder dies, so a crash leaves nothing stale.
  const std::string lock_path = dir_ + "/LOCK";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) return ErrnoError(errno, lock_path, "cannot open");
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir_, ": the rating log is already open (", lock_path,
                       " is locked)"));
    }
    return ErrnoError(errno, lock_path, "cannot lock");
  }
  return absl::OkStatus();
}

absl::Status RatingLog::ReplaySegments(
    const std::vector<uint64_t>& seqs, uint64_t after_seq,
    const std::function<void(const LogRecord&)>& replay, size_t* valid_end,
    uint32_t* last_version) {
  uint64_t expected = 1;
  for (size_t k = 0; k < seqs.size(); ++k) {
    const std::string path = SegmentPath(dir_, seqs[k]);
    // Only a rename (not a record) can start a segment below `expected`.
    if (seqs[k] < expected) {
      return absl::DataLossError(absl::StrFormat(
          "%s: starts at seq %d, but the segment before it reaches seq %d",
          path, seqs[k], expected - 1));
    }
    RECSYS_RETURN_IF_ERROR(CheckGap(path, expected, seqs[k], after_seq));
    expected = seqs[k];
    RECSYS_ASSIGN_OR_RETURN(const std::string bytes, ReadFile(path));
    const bool is_last = k + 1 == seqs.size();
    RECSYS_ASSIGN_OR_RETURN(
        *valid_end, ScanSegment(path, bytes, is_last, after_seq, &expected,
                                &recovery_, replay));
    if (is_last && *valid_end < bytes.size()) {
      recovery_.truncated_bytes = bytes.size() - *valid_end;
      recovery_.truncated_file = path;
    }
    if (is_last) *last_version = Load<uint32_t>(bytes.data() + 8);
  }
  recovery_.segments = static_cast<int>(seqs.size());
  next_seq_ = std::max(expected, after_seq + 1);
  return absl::OkStatus();
}

absl::Status RatingLog::OpenActive(std::vector<uint64_t>* seqs,
                                   size_t valid_end, uint32_t last_version) {
  auto segment = std::make_shared<internal::LogSegment>();
  segment->path = SegmentPath(dir_, seqs->back());
  segment->fd = ::open(segment->path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (segment->fd < 0) {
    return ErrnoError(errno, segment->path, "cannot open for append");
  }
  segment->size = valid_end;
  segment->has_records = valid_end > kHeaderBytes;
  if (recovery_.truncated_bytes > 0 &&
      ::ftruncate(segment->fd, valid_end) != 0) {
    return ErrnoError(errno, segment->path, "cannot truncate torn tail");
  }
  // A crash may have left records only in the page cache; they are about
  // to be served as if durable, so make them so (and the truncation).
  if (::fsync(segment->fd) != 0) {
    return ErrnoError(errno, segment->path, "cannot fsync");
  }
  active_ = std::move(segment);
  if (last_version >= kVersion) return absl::OkStatus();
  // An older build wrote this segment, and its version forbids records that
  // this build appends (erasures, catalogue entries): write on in a new
  // segment. One with no records goes first. A crash at any point leaves
  // segments that the next start reads.
  if (!active_->has_records) {
    if (::unlink(active_->path.c_str()) != 0) {
      return ErrnoError(errno, active_->path, "cannot remove");
    }
    seqs->pop_back();
  }
  active_.reset();
  RECSYS_ASSIGN_OR_RETURN(active_, CreateSegment(dir_, next_seq_));
  seqs->push_back(next_seq_);
  recovery_.upgraded_from_version = static_cast<int>(last_version);
  return absl::OkStatus();
}

absl::Status RatingLog::Recover(
    uint64_t after_seq, const std::function<void(const LogRecord&)>& replay) {
  RECSYS_RETURN_IF_ERROR(LockDirectory());
  RECSYS_ASSIGN_OR_RETURN(std::vector<uint64_t> seqs, ListSegments(dir_));
  size_t valid_end = 0;
  uint32_t last_version = kVersion;
  RECSYS_RETURN_IF_ERROR(
      ReplaySegments(seqs, after_seq, replay, &valid_end, &last_version));
  if (seqs.empty()) {
    RECSYS_ASSIGN_OR_RETURN(active_, CreateSegment(dir_, next_seq_));
    seqs.push_back(next_seq_);
  } else {
    RECSYS_RETURN_IF_ERROR(OpenActive(&seqs, valid_end, last_version));
  }
  segment_seqs_ = std::move(seqs);
  written_seq_ = synced_seq_ = next_seq_ - 1;
  return absl::OkStatus();
}

RatingLog::~RatingLog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  flush_wake_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  if (active_ != nullptr) {
    std::unique_lock<std::mutex> lock(mu_);
    if (broken_.ok()) WaitFor(lock, next_seq_ - 1, /*sync=*/true).IgnoreError();
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

// INTERNAL, as the failure itself was: the server is at fault, and only a
// restart (which recovers the log) makes it write again.
absl::Status RatingLog::BrokenError() const {
  return absl::InternalError(absl::StrCat(
      "rating log ", dir_,
      " refuses writes after an earlier failure: ", broken_.message()));
}

absl::StatusOr<uint64_t> RatingLog::Append(std::vector<LogRecord>* records) {
  for (const LogRecord& r : *records) RECSYS_RETURN_IF_ERROR(ValidateRecord(r));
  std::unique_lock<std::mutex> lock(mu_);
  return QueueAndWait(lock, records, /*numbered=*/false);
}

absl::StatusOr<uint64_t> RatingLog::AppendNumbered(
    std::vector<LogRecord>* records) {
  for (const LogRecord& r : *records) RECSYS_RETURN_IF_ERROR(ValidateRecord(r));
  std::unique_lock<std::mutex> lock(mu_);
  const auto fresh =
      std::find_if(records->begin(), records->end(),
                   [this](const LogRecord& r) { return r.seq >= next_seq_; });
  records->erase(records->begin(), fresh);
  for (size_t k = 0; k < records->size(); ++k) {
    if ((*records)[k].seq != next_seq_ + k) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "record seq %d does not continue the log, whose next seq is %d",
          (*records)[k].seq, next_seq_ + k));
    }
  }
  return QueueAndWait(lock, records, /*numbered=*/true);
}

absl::StatusOr<uint64_t> RatingLog::QueueAndWait(
    std::unique_lock<std::mutex>& lock, std::vector<LogRecord>* records,
    bool numbered) {
  if (!broken_.ok()) return BrokenError();
  if (records->empty()) return next_seq_ - 1;
  if (queue_.empty()) queue_first_seq_ = next_seq_;
  for (LogRecord& r : *records) {
    if (!numbered) r.seq = next_seq_;
    ++next_seq_;
    EncodeRecord(r, &queue_);
  }
  stats_.records += records->size();
  const uint64_t last = next_seq_ - 1;
  RECSYS_RETURN_IF_ERROR(
      WaitFor(lock, last, options_.sync == SyncPolicy::kAlways));
  return last;
}

absl::Status RatingLog::SkipTo(uint64_t seq) {
  std::unique_lock<std::mutex> lock(mu_);
  while (io_active_) io_done_.wait(lock);
  if (!broken_.ok()) return BrokenError();
  if (seq < next_seq_) return absl::OkStatus();
  if (!queue_.empty()) {
    return absl::FailedPreconditionError("cannot skip over queued records");
  }
  io_active_ = true;
  std::shared_ptr<internal::LogSegment> old = active_;
  lock.unlock();
  uint64_t syncs = 0;
  absl::Duration sync_time;
  absl::StatusOr<std::shared_ptr<internal::LogSegment>> fresh;
  const absl::Status status = IoFailure([&]() -> absl::Status {
    if (old->has_records) {
      RECSYS_RETURN_IF_ERROR(DataSync(old->fd, old->path, &syncs, &sync_time));
    }
    fresh = CreateSegment(dir_, seq + 1);
    RECSYS_RETURN_IF_ERROR(fresh.status());
    if (!old->has_records) {
      // An empty segment named below the gap would read as a gap of its own.
      if (::unlink(old->path.c_str()) != 0) {
        return ErrnoError(errno, old->path, "cannot remove");
      }
      RECSYS_RETURN_IF_ERROR(SyncDirectory(dir_));
    }
    return absl::OkStatus();
  }());
  lock.lock();
  io_active_ = false;
  stats_.syncs += syncs;
  stats_.sync_time += sync_time;
  if (status.ok()) {
    if (!old->has_records && !segment_seqs_.empty()) segment_seqs_.pop_back();
    segment_seqs_.push_back(seq + 1);
    active_ = *std::move(fresh);
    next_seq_ = seq + 1;
    written_seq_ = synced_seq_ = seq;
  } else if (broken_.ok()) {
    broken_ = status;
  }
  io_done_.notify_all();
  return status;
}

uint64_t RatingLog::readable_seq() const {
  return options_.sync == SyncPolicy::kNever ? written_seq_ : synced_seq_;
}

std::unique_ptr<LogReader> RatingLog::NewReader(uint64_t after_seq) const {
  return std::unique_ptr<LogReader>(new LogReader(*this, after_seq));
}

absl::Status RatingLog::WaitFor(std::unique_lock<std::mutex>& lock,
                                uint64_t seq, bool sync) {
  while (true) {
    if ((sync ? synced_seq_ : written_seq_) >= seq) return absl::OkStatus();
    if (!broken_.ok()) return broken_;
    if (!io_active_) {
      RunIo(lock, sync, /*rotate=*/false).IgnoreError();  // now in broken_
      continue;
    }
    io_done_.wait(lock);
  }
}

absl::Status RatingLog::RunIo(std::unique_lock<std::mutex>& lock, bool sync,
                              bool rotate) {
  io_active_ = true;
  std::string batch;
  batch.swap(queue_);
  const uint64_t batch_first = queue_first_seq_;
  const uint64_t last = next_seq_ - 1;
  const bool need_sync = sync && (!batch.empty() || synced_seq_ < written_seq_);
  std::shared_ptr<internal::LogSegment> segment = active_;
  lock.unlock();

  uint64_t syncs = 0;
  absl::Duration sync_time;
  uint64_t synced_up_to = 0;
  bool wrote = false;
  std::vector<uint64_t> created;
  // Every record before `first_seq` is in the file by now; fsyncing it
  // before the switch keeps "only the last segment can be torn" true.
  auto switch_segment = [&](uint64_t first_seq) -> absl::Status {
    RECSYS_RETURN_IF_ERROR(
        DataSync(segment->fd, segment->path, &syncs, &sync_time));
    synced_up_to = first_seq - 1;
    RECSYS_ASSIGN_OR_RETURN(segment, CreateSegment(dir_, first_seq));
    created.push_back(first_seq);
    return absl::OkStatus();
  };
  const absl::Status status = IoFailure([&]() -> absl::Status {
    if (!batch.empty()) {
      if (segment->has_records &&
          segment->size + batch.size() > options_.segment_bytes) {
        RECSYS_RETURN_IF_ERROR(switch_segment(batch_first));
      }
      RECSYS_RETURN_IF_ERROR(WriteAll(segment->fd, batch, segment->path));
      wrote = true;
      segment->size += batch.size();
      segment->has_records = true;
    }
    if (need_sync) {
      RECSYS_RETURN_IF_ERROR(
          DataSync(segment->fd, segment->path, &syncs, &sync_time));
      synced_up_to = last;
    }
    if (rotate && segment->has_records) {
      RECSYS_RETURN_IF_ERROR(switch_segment(last + 1));
    }
    return absl::OkStatus();
  }());

  lock.lock();
  io_active_ = false;
  active_ = std::move(segment);
  segment_seqs_.insert(segment_seqs_.end(), created.begin(), created.end());
  stats_.syncs += syncs;
  stats_.sync_time += sync_time;
  if (wrote) {
    ++stats_.writes;
    stats_.bytes_written += batch.size();
  }
  if (status.ok()) {
    written_seq_ = std::max(written_seq_, last);
    synced_seq_ = std::max(synced_seq_, synced_up_to);
  } else if (broken_.ok()) {
    broken_ = status;
  }
  io_done_.notify_all();
  return status;
}

void RatingLog::FlushLoop() {
  const auto period = absl::ToChronoNanoseconds(options_.interval);
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    flush_wake_.wait_for(lock, period, [this] { return stopping_; });
    if (stopping_) return;
    if (!broken_.ok() || synced_seq_ >= written_seq_) continue;
    // Records up to `target` are in `segment` or in older segments, which
    // were fsynced when they were closed. Holding the segment keeps its fd
    // open even if an I/O round rotates meanwhile.
    const std::shared_ptr<internal::LogSegment> segment = active_;
    const uint64_t target = written_seq_;
    lock.unlock();
    uint64_t syncs = 0;
    absl::Duration spent;
    const absl::Status status =
        IoFailure(DataSync(segment->fd, segment->path, &syncs, &spent));
    lock.lock();
    stats_.syncs += syncs;
    stats_.sync_time += spent;
    if (status.ok()) {
      synced_seq_ = std::max(synced_seq_, target);
    } else if (broken_.ok()) {
      broken_ = status;
    }
    io_done_.notify_all();
  }
}

uint64_t RatingLog::last_seq() const {
  std::lock_guard<std::mutex> lock(mu_);
  return next_seq_ - 1;
}

uint64_t RatingLog::durable_seq() const {
  std::lock_guard<std::mutex> lock(mu_);
  return readable_seq();
}

absl::Status RatingLog::Sync() {
  std::unique_lock<std::mutex> lock(mu_);
  if (!broken_.ok()) return BrokenError();
  return WaitFor(lock, next_seq_ - 1, /*sync=*/true);
}

absl::Status RatingLog::Rotate() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (!broken_.ok()) return BrokenError();
    if (!io_active_) return RunIo(lock, /*sync=*/false, /*rotate=*/true);
    io_done_.wait(lock);
  }
}

absl::Status RatingLog::DeleteSegmentsUpTo(uint64_t upto) {
  std::vector<std::string> doomed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A segment ends where the next begins; the last one is still growing.
    size_t n = 0;
    while (n + 1 < segment_seqs_.size() && segment_seqs_[n + 1] - 1 <= upto) {
      doomed.push_back(SegmentPath(dir_, segment_seqs_[n]));
      ++n;
    }
    segment_seqs_.erase(segment_seqs_.begin(), segment_seqs_.begin() + n);
  }
  if (doomed.empty()) return absl::OkStatus();
  for (const std::string& path : doomed) {
    // Stop at the first failure: a later segment deleted while an earlier
    // one stays would look like a gap to recovery.
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return ErrnoError(errno, path, "cannot delete");
    }
  }
  return SyncDirectory(dir_);
}

RatingLogStats RatingLog::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace recsys
