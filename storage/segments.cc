#include "storage/segments.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_io.h"
#include "base/status_macros.h"
#include "storage/record_codec.h"

namespace recsys {
namespace internal {

absl::Status IoFailure(const absl::Status& status) {
  if (status.ok() || status.code() == absl::StatusCode::kInternal) {
    return status;
  }
  return absl::InternalError(status.message());
}

absl::Status CorruptAt(absl::string_view path, size_t offset,
                       absl::string_view what) {
  return absl::DataLossError(
      absl::StrFormat("%s: offset %d: %s", path, offset, what));
}

absl::Status CheckGap(absl::string_view where, uint64_t expected,
                      uint64_t found, uint64_t after_seq) {
  if (found <= expected || found - 1 <= after_seq) return absl::OkStatus();
  return absl::DataLossError(absl::StrFormat(
      "%s: records %d..%d are missing (the log must hold every record after "
      "seq %d)",
      where, std::max(expected, after_seq + 1), found - 1, after_seq));
}

std::string SegmentPath(const std::string& dir, uint64_t first_seq) {
  return absl::StrFormat("%s/%s%0*d%s", dir, kSegmentPrefix, kSeqDigits,
                         first_seq, kSegmentSuffix);
}

bool ParseSegmentName(absl::string_view name, uint64_t* first_seq) {
  if (name.size() !=
          kSegmentPrefix.size() + kSeqDigits + kSegmentSuffix.size() ||
      !absl::StartsWith(name, kSegmentPrefix) ||
      !absl::EndsWith(name, kSegmentSuffix)) {
    return false;
  }
  const absl::string_view digits =
      name.substr(kSegmentPrefix.size(), kSeqDigits);
  return std::all_of(digits.begin(), digits.end(),
                     [](char c) { return absl::ascii_isdigit(c); }) &&
         absl::SimpleAtoi(digits, first_seq);
}

absl::Status DataSync(int fd, const std::string& path, uint64_t* syncs,
                      absl::Duration* spent) {
  const auto start = std::chrono::steady_clock::now();
  const int rc = ::fdatasync(fd);
  const int error = errno;
  *spent += absl::FromChrono(std::chrono::steady_clock::now() - start);
  ++*syncs;
  if (rc != 0) return ErrnoError(error, path, "cannot fdatasync");
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<internal::LogSegment>> CreateSegment(
    const std::string& dir, uint64_t first_seq) {
  auto segment = std::make_shared<internal::LogSegment>();
  segment->path = SegmentPath(dir, first_seq);
  const std::string tmp = segment->path + ".tmp";
  struct stat st;
  if (::stat(segment->path.c_str(), &st) == 0) {
    return absl::InternalError(
        absl::StrCat(segment->path, ": segment already exists"));
  }
  segment->fd = ::open(
      tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (segment->fd < 0) return ErrnoError(errno, tmp, "cannot create");
  char header[RatingLog::kHeaderBytes];
  std::memcpy(header, kMagic, sizeof(kMagic));
  Store(header + 8, kVersion);
  absl::Status status = WriteAll(segment->fd, {header, sizeof(header)}, tmp);
  if (status.ok() && ::fsync(segment->fd) != 0) {
    status = ErrnoError(errno, tmp, "cannot fsync");
  }
  if (status.ok() && ::rename(tmp.c_str(), segment->path.c_str()) != 0) {
    status = ErrnoError(errno, tmp, "cannot rename");
  }
  if (!status.ok()) {
    ::unlink(tmp.c_str());
    return status;
  }
  RECSYS_RETURN_IF_ERROR(SyncDirectory(dir));
  segment->size = RatingLog::kHeaderBytes;
  return segment;
}

absl::StatusOr<size_t> ScanSegment(
    const std::string& path, absl::string_view bytes, bool is_last,
    uint64_t after_seq, uint64_t* expected, RatingLogRecovery* recovery,
    const std::function<void(const LogRecord&)>& replay) {
  if (bytes.size() < RatingLog::kHeaderBytes ||
      std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::DataLossError(
        absl::StrCat(path, ": not a rating log segment (bad header)"));
  }
  const uint32_t version = Load<uint32_t>(bytes.data() + 8);
  if (version < kOldestVersion || version > kVersion) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s: log format version %d, this build reads %d..%d",
                        path, version, kOldestVersion, kVersion));
  }
  LogRecord r;
  std::string why;
  size_t offset = RatingLog::kHeaderBytes;
  while (offset < bytes.size()) {
    size_t frame_size = 0;
    const Frame frame = DecodeFrame(bytes, offset, &r, &frame_size, &why);
    if (frame == Frame::kCorruptPayload) return CorruptAt(path, offset, why);
    if (frame == Frame::kValid && r.erase_user && version < 2) {
      return CorruptAt(path, offset,
                       "empty item id (a version 1 segment has no erasures)");
    }
    if (frame == Frame::kValid && r.add && version < 4) {
      return CorruptAt(
          path, offset,
          absl::StrFormat("an event tail (a version %d segment has no events)",
                          version));
    }
    if (frame == Frame::kValid && r.entry != nullptr && version < 3) {
      return CorruptAt(
          path, offset,
          absl::StrFormat("empty user id (a version %d segment has no "
                          "catalogue entries)",
                          version));
    }
    if (frame == Frame::kInvalid) {
      if (!is_last) {
        return CorruptAt(path, offset,
                         absl::StrCat(why, ", in a segment before the last"));
      }
      const size_t next = FindValidFrame(bytes, offset + 1);
      if (next != absl::string_view::npos) {
        return CorruptAt(
            path, offset,
            absl::StrFormat("%s, yet a valid record follows at offset %d; "
                            "refusing to drop it",
                            why, next));
      }
      return offset;  // a torn tail
    }
    if (r.seq < *expected) {
      return CorruptAt(
          path, offset,
          absl::StrFormat("seq %d after seq %d", r.seq, *expected - 1));
    }
    RECSYS_RETURN_IF_ERROR(
        CheckGap(absl::StrFormat("%s: offset %d", path, offset), *expected,
                 r.seq, after_seq));
    *expected = r.seq + 1;
    ++recovery->records;
    if (r.seq > after_seq) {
      ++recovery->replayed;
      if (replay) replay(r);
    }
    offset += frame_size;
  }
  return offset;
}

}  // namespace internal
}  // namespace recsys
