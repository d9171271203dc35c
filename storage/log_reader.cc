// LogReader: a follower's reading of the log, segment by segment, from a
// given seq on.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_io.h"
#include "base/status_macros.h"
#include "storage/rating_log.h"
#include "storage/record_codec.h"
#include "storage/segments.h"

namespace recsys {

using internal::CorruptAt;
using internal::DecodeFrame;
using internal::Frame;
using internal::kFrameBytes;
using internal::Load;
using internal::SegmentPath;

LogReader::~LogReader() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status LogReader::OpenSegment(const std::vector<uint64_t>& segments,
                                    bool next) {
  // The segment that holds last_ + 1 starts at or below it; after the
  // current one, the next segment starts just above it.
  uint64_t first = 0;
  if (next) {
    const auto it = std::upper_bound(segments.begin(), segments.end(), first_);
    if (it == segments.end()) return absl::OkStatus();  // not made yet
    first = *it;
  } else {
    const auto it =
        std::upper_bound(segments.begin(), segments.end(), last_ + 1);
    if (it == segments.begin()) {
      return absl::OutOfRangeError(absl::StrFormat(
          "the log no longer holds seq %d: it starts at seq %d (a snapshot "
          "covers the records before)",
          last_ + 1, segments.empty() ? 0 : segments.front()));
    }
    first = *(it - 1);
  }
  const std::string path = SegmentPath(log_.dir_, first);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return absl::OutOfRangeError(absl::StrFormat(
          "the log no longer holds seq %d: its segment %s was deleted after "
          "a snapshot",
          last_ + 1, path));
    }
    return ErrnoError(errno, path, "cannot open");
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  path_ = path;
  first_ = first;
  offset_ = 0;
  buffer_.clear();
  pos_ = RatingLog::kHeaderBytes;
  return absl::OkStatus();
}

absl::StatusOr<bool> LogReader::WaitReadable(absl::Time deadline,
                                             uint64_t* limit,
                                             std::vector<uint64_t>* segments) {
  std::unique_lock<std::mutex> lock(log_.mu_);
  while (log_.readable_seq() <= last_ && log_.broken_.ok()) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    log_.io_done_.wait_for(lock, absl::ToChronoNanoseconds(left));
  }
  if (log_.readable_seq() <= last_) return log_.BrokenError();
  *limit = log_.readable_seq();
  *segments = log_.segment_seqs_;
  return true;
}

absl::Status LogReader::ReadMore(std::vector<uint64_t>* segments,
                                 uint64_t limit) {
  buffer_.erase(0, pos_);
  offset_ += pos_;
  pos_ = 0;
  const size_t have = buffer_.size();
  constexpr size_t kChunk = size_t{1} << 20;
  buffer_.resize(have + kChunk);
  ssize_t n = 0;
  do {
    n = ::pread(fd_, buffer_.data() + have, kChunk,
                static_cast<off_t>(offset_ + have));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoError(errno, path_, "cannot read");
  buffer_.resize(have + static_cast<size_t>(n));
  if (n > 0) return absl::OkStatus();
  if (have > 0) return CorruptAt(path_, offset_, "truncated record");
  // The end of this segment: the rest is in the next one.
  const uint64_t current = first_;
  RECSYS_RETURN_IF_ERROR(OpenSegment(*segments, /*next=*/true));
  if (first_ != current) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(log_.mu_);
  *segments = log_.segment_seqs_;
  RECSYS_RETURN_IF_ERROR(OpenSegment(*segments, /*next=*/true));
  if (first_ == current) {
    return absl::DataLossError(absl::StrFormat(
        "%s ends at seq %d, but the log reached seq %d", path_, last_, limit));
  }
  return absl::OkStatus();
}

absl::Status LogReader::Next(size_t max_records, absl::Time deadline,
                             std::vector<LogRecord>* out) {
  uint64_t limit = 0;
  std::vector<uint64_t> segments;
  if (fd_ < 0) {
    // Open the segment before waiting: a reader that is caught up then
    // holds it, and reads it to its end even if a snapshot deletes it.
    {
      std::lock_guard<std::mutex> lock(log_.mu_);
      segments = log_.segment_seqs_;
    }
    RECSYS_RETURN_IF_ERROR(OpenSegment(segments, /*next=*/false));
  }
  RECSYS_ASSIGN_OR_RETURN(const bool readable,
                          WaitReadable(deadline, &limit, &segments));
  if (!readable) return absl::OkStatus();
  size_t taken = 0;
  while (last_ < limit && taken < max_records) {
    // Every record up to `limit` is whole in the file: a frame that is not
    // whole in the buffer needs more bytes, one that is must check out.
    if (pos_ + kFrameBytes <= buffer_.size()) {
      const size_t need = kFrameBytes + Load<uint32_t>(buffer_.data() + pos_);
      if (pos_ + need <= buffer_.size() ||
          need > kFrameBytes + RatingLog::kMaxPayloadBytes) {
        LogRecord r;
        size_t frame_size = 0;
        std::string why;
        if (DecodeFrame(buffer_, pos_, &r, &frame_size, &why) !=
            Frame::kValid) {
          return CorruptAt(path_, offset_ + pos_, why);
        }
        pos_ += frame_size;
        if (r.seq <= last_) continue;  // the segment's records before ours
        if (r.seq != last_ + 1) {
          return absl::OutOfRangeError(absl::StrFormat(
              "the log no longer holds seq %d: %s goes on at seq %d", last_ + 1,
              path_, r.seq));
        }
        last_ = r.seq;
        out->push_back(std::move(r));
        ++taken;
        continue;
      }
    }
    RECSYS_RETURN_IF_ERROR(ReadMore(&segments, limit));
  }
  return absl::OkStatus();
}

}  // namespace recsys
