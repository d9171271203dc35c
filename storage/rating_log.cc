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

namespace recsys {

// Scalars are copied in their in-memory representation, which is the
// file's only on little-endian IEEE-754 hosts.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "rating_log.cc copies memory as little-endian file data");
static_assert(std::numeric_limits<float>::is_iec559,
              "log records store IEEE-754 floats");

namespace internal {

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

}  // namespace internal

namespace {

constexpr char kMagic[8] = {'R', 'S', 'Y', 'S', 'L', 'O', 'G', '1'};
constexpr uint32_t kVersion = 3;        // written
constexpr uint32_t kOldestVersion = 1;  // read too (see the header)
constexpr size_t kFrameBytes = 8;       // length and checksum
constexpr absl::string_view kSegmentPrefix = "ratings-";
constexpr absl::string_view kSegmentSuffix = ".log";
constexpr size_t kSeqDigits = 20;

template <typename T>
void Store(char* dst, T value) {
  std::memcpy(dst, &value, sizeof(value));
}

template <typename T>
T Load(const char* src) {
  T value;
  std::memcpy(&value, src, sizeof(value));
  return value;
}

uint32_t MaskCrc(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

// The checksum covers the length too, so a damaged length cannot select a
// different stretch of bytes that happens to check out.
uint32_t FrameCrc(const char* frame, uint32_t payload_size) {
  const uint32_t crc = Crc32c(frame, 4);
  return MaskCrc(Crc32c(frame + kFrameBytes, payload_size, crc));
}

// The bytes of a catalogue record after the item id.
size_t EntryBytes(const ItemInfo& e) {
  size_t n = 12 + e.title.size();
  for (const std::string& genre : e.genres) n += 4 + genre.size();
  return n;
}

void EncodeRecord(const LogRecord& r, std::string* out) {
  const uint32_t size = static_cast<uint32_t>(
      RatingLog::kMinPayloadBytes + r.user.size() + r.item.size() +
      (r.entry != nullptr ? EntryBytes(*r.entry) : 0));
  const size_t start = out->size();
  out->resize(start + kFrameBytes + size);
  char* frame = out->data() + start;
  char* p = frame + kFrameBytes;
  Store(frame, size);
  Store(p, r.seq);
  Store(p + 8, r.value);
  Store(p + 12, r.timestamp);
  Store(p + 20, static_cast<uint32_t>(r.user.size()));
  std::memcpy(p + 24, r.user.data(), r.user.size());
  p += 24 + r.user.size();
  Store(p, static_cast<uint32_t>(r.item.size()));
  std::memcpy(p + 4, r.item.data(), r.item.size());
  p += 4 + r.item.size();
  if (r.entry != nullptr) {
    const ItemInfo& e = *r.entry;
    Store(p, uint32_t{e.retired ? 1u : 0u});
    Store(p + 4, static_cast<uint32_t>(e.title.size()));
    std::memcpy(p + 8, e.title.data(), e.title.size());
    p += 8 + e.title.size();
    Store(p, static_cast<uint32_t>(e.genres.size()));
    p += 4;
    for (const std::string& genre : e.genres) {
      Store(p, static_cast<uint32_t>(genre.size()));
      std::memcpy(p + 4, genre.data(), genre.size());
      p += 4 + genre.size();
    }
  }
  Store(frame + 4, FrameCrc(frame, size));
}

enum class Frame {
  kValid,
  kInvalid,         // bad length or checksum: torn, or corrupt
  kCorruptPayload,  // checks out but is malformed: never a torn write
};

// Decodes the record at `offset` into `r` (when not null) and its size into
// `frame_size`, or says in `why` what is wrong with it.
Frame DecodeFrame(absl::string_view bytes, size_t offset, LogRecord* r,
                  size_t* frame_size, std::string* why) {
  const size_t left = bytes.size() - offset;
  if (left < kFrameBytes) {
    *why = absl::StrFormat("record header cut short (%d of %d bytes)", left,
                           kFrameBytes);
    return Frame::kInvalid;
  }
  const char* frame = bytes.data() + offset;
  const uint32_t size = Load<uint32_t>(frame);
  if (size < RatingLog::kMinPayloadBytes ||
      size > RatingLog::kMaxPayloadBytes) {
    *why = absl::StrFormat("record length %d outside [%d, %d]", size,
                           RatingLog::kMinPayloadBytes,
                           RatingLog::kMaxPayloadBytes);
    return Frame::kInvalid;
  }
  if (size > left - kFrameBytes) {
    *why = absl::StrFormat("record of %d bytes cut short at %d", size,
                           left - kFrameBytes);
    return Frame::kInvalid;
  }
  if (Load<uint32_t>(frame + 4) != FrameCrc(frame, size)) {
    *why = "checksum mismatch";
    return Frame::kInvalid;
  }
  *frame_size = kFrameBytes + size;
  const char* p = frame + kFrameBytes;
  const uint32_t user_size = Load<uint32_t>(p + 20);
  // Both lengths are checked against the space left before either is used.
  if (user_size > RatingLog::kMaxIdBytes ||
      user_size > size - RatingLog::kMinPayloadBytes) {
    *why =
        absl::StrFormat("user id length %d does not fit the record", user_size);
    return Frame::kCorruptPayload;
  }
  const uint32_t item_size = Load<uint32_t>(p + 24 + user_size);
  const size_t rest = size - RatingLog::kMinPayloadBytes - user_size;
  // A catalogue entry (no user id) follows its item id; a rating's or an
  // erasure's item id ends the record.
  if (user_size == 0 ? item_size == 0 || item_size > rest : item_size != rest) {
    *why =
        absl::StrFormat("item id length %d does not fit the record", item_size);
    return Frame::kCorruptPayload;
  }
  std::shared_ptr<ItemInfo> entry;
  if (user_size == 0) {
    // Every length is checked against the bytes left before it is used.
    const char* q = p + 28 + item_size;
    const char* const end = frame + kFrameBytes + size;
    auto u32 = [&](uint32_t* v) {
      if (end - q < 4) return false;
      *v = Load<uint32_t>(q);
      q += 4;
      return true;
    };
    auto str = [&](std::string* out, size_t limit) {
      uint32_t n = 0;
      if (!u32(&n) || n > limit || static_cast<size_t>(end - q) < n) {
        return false;
      }
      out->assign(q, n);
      q += n;
      return true;
    };
    entry = std::make_shared<ItemInfo>();
    uint32_t flags = 0, genres = 0;
    bool ok = u32(&flags) && flags <= 1 &&
              str(&entry->title, RatingLog::kMaxTitleBytes) && u32(&genres) &&
              genres <= RatingLog::kMaxGenres;
    entry->retired = flags == 1;
    if (ok) entry->genres.resize(genres);
    for (uint32_t g = 0; ok && g < genres; ++g) {
      ok = str(&entry->genres[g], RatingLog::kMaxGenreBytes);
    }
    if (!ok || q != end) {
      *why = "malformed catalogue entry";
      return Frame::kCorruptPayload;
    }
  }
  if (r != nullptr) {
    r->seq = Load<uint64_t>(p);
    r->value = Load<float>(p + 8);
    r->timestamp = Load<int64_t>(p + 12);
    r->user.assign(p + 24, user_size);
    r->item.assign(p + 28 + user_size, item_size);
    r->erase_user = item_size == 0;
    r->entry = std::move(entry);
  }
  return Frame::kValid;
}

// The offset of the first record at or after `from` whose checksum is
// right, or npos. Any such record means the bytes before it are not the
// tail a crash left behind.
size_t FindValidFrame(absl::string_view bytes, size_t from) {
  std::string why;
  size_t frame_size = 0;
  for (size_t offset = from;
       offset + kFrameBytes + RatingLog::kMinPayloadBytes <= bytes.size();
       ++offset) {
    if (DecodeFrame(bytes, offset, nullptr, &frame_size, &why) !=
        Frame::kInvalid) {
      return offset;
    }
  }
  return absl::string_view::npos;
}

// A write or fsync that failed while serving: INTERNAL whatever the errno
// (absl would map ENOSPC to RESOURCE_EXHAUSTED and EFBIG to OUT_OF_RANGE,
// which read as the caller's quota or argument). The message keeps it.
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

// Records expected..found-1 are absent. That is harmless only when the
// snapshot already holds them all.
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

// A new segment appears complete or not at all: its header is fsynced under
// a temporary name before the rename, so recovery never meets a torn header.
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

// Validates a segment's records and replays those after `after_seq`;
// `expected` is the seq the next record should have. Returns the offset
// where the valid records end, before a torn tail (last segment only).
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

absl::Status ValidateRecord(const LogRecord& r) {
  auto check_id = [](absl::string_view side,
                     const std::string& id) -> absl::Status {
    if (id.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(side, " id is empty"));
    }
    if (id.size() > RatingLog::kMaxIdBytes) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s id of %d bytes exceeds the %d-byte limit", side,
                          id.size(), RatingLog::kMaxIdBytes));
    }
    return absl::OkStatus();
  };
  if (r.entry != nullptr) {
    RECSYS_RETURN_IF_ERROR(check_id("item", r.item));
    const ItemInfo& e = *r.entry;
    if (!r.user.empty() || r.erase_user || r.value != 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "the catalogue entry of item '%s' has a user or a value", r.item));
    }
    if (e.title.size() > RatingLog::kMaxTitleBytes ||
        e.genres.size() > RatingLog::kMaxGenres ||
        std::any_of(e.genres.begin(), e.genres.end(), [](const auto& g) {
          return g.size() > RatingLog::kMaxGenreBytes;
        })) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "the catalogue entry of item '%s' exceeds the title or genre limits",
          r.item));
    }
    return absl::OkStatus();
  }
  RECSYS_RETURN_IF_ERROR(check_id("user", r.user));
  if (r.erase_user) {
    if (!r.item.empty() || r.value != 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "the erasure of user '%s' has an item or a value", r.user));
    }
    return absl::OkStatus();
  }
  RECSYS_RETURN_IF_ERROR(check_id("item", r.item));
  if (!std::isfinite(r.value)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "rating of user '%s' for item '%s' is not finite", r.user, r.item));
  }
  return absl::OkStatus();
}

}  // namespace

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

absl::Status RatingLog::Recover(
    uint64_t after_seq, const std::function<void(const LogRecord&)>& replay) {
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

  std::vector<uint64_t> seqs;
  fs::directory_iterator it(dir_, ec);
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    uint64_t seq = 0;
    if (ParseSegmentName(name, &seq)) {
      seqs.push_back(seq);
    } else if (absl::EndsWith(name, ".tmp") &&
               ParseSegmentName(name.substr(0, name.size() - 4), &seq)) {
      ::unlink(it->path().c_str());  // a segment whose creation crashed
    }
  }
  if (ec) return ErrnoError(ec.value(), dir_, "cannot list directory");
  std::sort(seqs.begin(), seqs.end());

  uint64_t expected = 1;
  size_t valid_end = 0;
  uint32_t last_version = kVersion;
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
        valid_end, ScanSegment(path, bytes, is_last, after_seq, &expected,
                               &recovery_, replay));
    if (is_last && valid_end < bytes.size()) {
      recovery_.truncated_bytes = bytes.size() - valid_end;
      recovery_.truncated_file = path;
    }
    if (is_last) last_version = Load<uint32_t>(bytes.data() + 8);
  }
  recovery_.segments = static_cast<int>(seqs.size());
  next_seq_ = std::max(expected, after_seq + 1);

  if (seqs.empty()) {
    RECSYS_ASSIGN_OR_RETURN(active_, CreateSegment(dir_, next_seq_));
    seqs.push_back(next_seq_);
  } else {
    auto segment = std::make_shared<internal::LogSegment>();
    segment->path = SegmentPath(dir_, seqs.back());
    segment->fd =
        ::open(segment->path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
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
    if (last_version < kVersion) {
      // An older build wrote this segment, and its version forbids records
      // that this build appends (erasures, catalogue entries): write on in a
      // new segment. One with no records goes first. A crash at any point
      // leaves segments that the next start reads.
      if (!active_->has_records) {
        if (::unlink(active_->path.c_str()) != 0) {
          return ErrnoError(errno, active_->path, "cannot remove");
        }
        seqs.pop_back();
      }
      active_.reset();
      RECSYS_ASSIGN_OR_RETURN(active_, CreateSegment(dir_, next_seq_));
      seqs.push_back(next_seq_);
      recovery_.upgraded_from_version = static_cast<int>(last_version);
    }
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
  {
    std::unique_lock<std::mutex> lock(log_.mu_);
    while (log_.readable_seq() <= last_ && log_.broken_.ok()) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return absl::OkStatus();
      log_.io_done_.wait_for(lock, absl::ToChronoNanoseconds(left));
    }
    if (log_.readable_seq() <= last_) return log_.BrokenError();
    limit = log_.readable_seq();
    segments = log_.segment_seqs_;
  }
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
    if (n > 0) continue;
    if (have > 0) return CorruptAt(path_, offset_, "truncated record");
    // The end of this segment: the rest is in the next one.
    const uint64_t current = first_;
    RECSYS_RETURN_IF_ERROR(OpenSegment(segments, /*next=*/true));
    if (first_ == current) {
      std::lock_guard<std::mutex> lock(log_.mu_);
      segments = log_.segment_seqs_;
      RECSYS_RETURN_IF_ERROR(OpenSegment(segments, /*next=*/true));
      if (first_ == current) {
        return absl::DataLossError(
            absl::StrFormat("%s ends at seq %d, but the log reached seq %d",
                            path_, last_, limit));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace recsys
