// The rating log's segment files: their names, their creation (the header
// fsynced under a temporary name before the rename), the scan that
// validates and replays one at recovery, and the error helpers of their
// I/O.
#ifndef RECSYS_STORAGE_SEGMENTS_H_
#define RECSYS_STORAGE_SEGMENTS_H_

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "storage/rating_log.h"

namespace recsys {
namespace internal {

inline constexpr absl::string_view kSegmentPrefix = "ratings-";
inline constexpr absl::string_view kSegmentSuffix = ".log";
inline constexpr size_t kSeqDigits = 20;

struct LogSegment {
  std::string path;
  int fd = -1;
  // Touched only by the thread doing I/O (or by Open, before any).
  uint64_t size = 0;
  bool has_records = false;

  ~LogSegment() {
    if (fd >= 0) ::close(fd);
  }
};

// A write or fsync that failed while serving: INTERNAL whatever the errno
// (absl would map ENOSPC to RESOURCE_EXHAUSTED and EFBIG to OUT_OF_RANGE,
// which read as the caller's quota or argument). The message keeps it.
absl::Status IoFailure(const absl::Status& status);

absl::Status CorruptAt(absl::string_view path, size_t offset,
                       absl::string_view what);

// Records expected..found-1 are absent. That is harmless only when the
// snapshot already holds them all.
absl::Status CheckGap(absl::string_view where, uint64_t expected,
                      uint64_t found, uint64_t after_seq);

std::string SegmentPath(const std::string& dir, uint64_t first_seq);

bool ParseSegmentName(absl::string_view name, uint64_t* first_seq);

absl::Status DataSync(int fd, const std::string& path, uint64_t* syncs,
                      absl::Duration* spent);

// A new segment appears complete or not at all: its header is fsynced under
// a temporary name before the rename, so recovery never meets a torn header.
absl::StatusOr<std::shared_ptr<internal::LogSegment>> CreateSegment(
    const std::string& dir, uint64_t first_seq);

// Validates a segment's records and replays those after `after_seq`;
// `expected` is the seq the next record should have. Returns the offset
// where the valid records end, before a torn tail (last segment only).
absl::StatusOr<size_t> ScanSegment(
    const std::string& path, absl::string_view bytes, bool is_last,
    uint64_t after_seq, uint64_t* expected, RatingLogRecovery* recovery,
    const std::function<void(const LogRecord&)>& replay);

}  // namespace internal
}  // namespace recsys

#endif  // RECSYS_STORAGE_SEGMENTS_H_
