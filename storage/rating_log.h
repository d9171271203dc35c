// The server's durable rating log: every accepted rating is appended here,
// and made durable, before the client is acknowledged. On restart the server
// loads its newest snapshot (which records the last sequence number it holds)
// and replays the records after it.
//
//   RatingLogOptions options;  // SyncPolicy::kAlways: acked = on disk
//   RECSYS_ASSIGN_OR_RETURN(
//       std::unique_ptr<RatingLog> log,
//       RatingLog::Open("/srv/recsys/log", options, snapshot.log_sequence,
//                       [&](const LogRecord& r) { engine.Apply(r); }));
//   std::vector<LogRecord> batch = {{0, "alice", "tt0095765", 4.5f, now}};
//   RECSYS_ASSIGN_OR_RETURN(uint64_t seq, log->Append(&batch));  // durable
//   ...after a snapshot that holds everything up to `seq`:
//   RECSYS_RETURN_IF_ERROR(log->Rotate());
//   RECSYS_RETURN_IF_ERROR(log->DeleteSegmentsUpTo(seq));
//
// Append is thread-safe and commits in groups: while one caller writes and
// fsyncs, the others queue their records, and the next writer takes the
// whole queue with one write() and one fdatasync().
//
// Files. `dir` holds a LOCK file (flock: one open RatingLog per directory)
// and segments "ratings-<first seq, 20 digits>.log", each holding the
// records from its name's sequence number until the next segment's.
// Segments are born complete: the header is written to "<name>.tmp",
// fsynced and renamed, then the directory is fsynced. Little-endian:
//
//   Segment header (kHeaderBytes = 12)
//   0   char[8]  magic "RSYSLOG1"
//   8   u32      format version: 4 is written; 1 (only ratings), 2 (no
//                catalogue entries) and 3 (no events) are read too
//   Records, back to back until the end of the file
//   0   u32      L = payload length, 28 + U + I (+ E, below; at most
//                kMaxPayloadBytes)
//   4   u32      CRC-32C of bytes 0..3 (L) followed by the payload, masked
//                as in LevelDB: ((c >> 15) | (c << 17)) + 0xa282ead8, so
//                bytes that embed checksummed records (an id may hold any
//                bytes) do not check out trivially
//   8   u64      seq
//   16  f32      value
//   20  i64      timestamp (whatever the caller stores, e.g. Unix seconds)
//   28  u32 U    user id length (at most kMaxIdBytes), then U bytes
//   .   u32 I    item id length (at most kMaxIdBytes), then I bytes
//
// A record with an empty item id (I = 0, value 0; version 2 on) erases
// the user: every rating of theirs before it is gone (Engine::DeleteUser).
// A record with an empty user id (U = 0, value 0; version 3 on) is the
// item's catalogue entry from then on (Engine::UpsertItems), in E bytes
// after the item id:
//   0   u32      flags: 1 = retired, 0 = not
//   4   u32 T    title length (at most kMaxTitleBytes), then T bytes
//   .   u32 G    genre count (at most kMaxGenres), then G times: u32 length
//                (at most kMaxGenreBytes) and that many bytes
// A rating record may carry an event tail after its item id (version 4 on):
// the record is an event, whose value adds to the pair's (LogRecord::add):
//   0   u32      flags: 1 = add (no other value is valid)
//   4   u32 T    event type length (1..kMaxIdBytes), then T bytes
//   .   u32 E    event id length (at most kMaxIdBytes), then E bytes
// Older readers would take any of these kinds for a rating, hence the
// versions.
//
// Sequence numbers increase by one from record to record, within and across
// segments; the only gaps allowed are at or below `after_seq`, which Open
// makes when the snapshot is ahead of the log (so new records can never be
// numbered as if the snapshot held them).
//
// Recovery. A record that fails its length or checksum check at the end of
// the last segment, with no valid record anywhere after it, is a write torn
// by a crash (including a tail the file system zero-filled): the file is
// truncated back to the last good record and appends continue from there.
// Anything else that does not check out is DataLoss naming the file and
// offset, never skipped: a bad record followed by a valid one, damage in an
// older segment, a missing segment or a gap above `after_seq`. Caveat: if
// the disk loses an early page of a batch that spans pages but keeps a later
// one (possible only in a crash before that batch's fsync returned), the
// surviving records make the damage look like corruption, and Open refuses
// to guess.
//
// Errors. A failed write or fsync leaves the file in an unknown state, so
// the log turns "broken": that batch's callers get the error and every later
// Append, Rotate or Sync fails with Internal. Records of a failed
// batch may still be on disk and replayed after a restart (the client was
// told it failed and may retry: replaying a rating twice must be harmless).
#ifndef RECSYS_STORAGE_RATING_LOG_H_
#define RECSYS_STORAGE_RATING_LOG_H_

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "models/ratings.h"

namespace recsys {
namespace internal {
struct LogSegment;  // an open segment file, defined in rating_log.cc
}  // namespace internal

class LogReader;

struct LogRecord {
  uint64_t seq = 0;  // assigned by Append
  std::string user;  // empty for a catalogue entry
  std::string item;  // empty for an erasure
  float value = 0;
  int64_t timestamp = 0;
  // Erases every earlier rating of `user` (stored with an empty item id).
  bool erase_user = false;
  // When set, the record is `item`'s catalogue entry (no user, value 0).
  std::shared_ptr<const ItemInfo> entry;
  // An event (implicit feedback): `value`, the event's resolved weight,
  // adds to the pair's instead of replacing it. Its type (for metrics) and
  // the caller's optional event id (so a retry counts once) come along.
  bool add = false;
  std::string event_type;
  std::string event_id;
};

enum class SyncPolicy {
  kAlways,    // fdatasync before Append returns: acknowledged = durable
  kInterval,  // Append returns after write(); a thread fsyncs every interval
  kNever,     // write() only; the OS decides (Sync and the destructor fsync)
};

// "always", "interval" or "never".
absl::StatusOr<SyncPolicy> ParseSyncPolicy(absl::string_view name);
const char* SyncPolicyName(SyncPolicy policy);

struct RatingLogOptions {
  SyncPolicy sync = SyncPolicy::kAlways;
  absl::Duration interval = absl::Milliseconds(50);  // for kInterval
  // A batch that would take a non-empty segment past this size goes to a new
  // segment, so segments can be deleted once a snapshot covers them.
  uint64_t segment_bytes = uint64_t{64} << 20;
};

// Counters since Open, for metrics.
struct RatingLogStats {
  uint64_t records = 0;        // appended
  uint64_t writes = 0;         // write() batches (group commits)
  uint64_t bytes_written = 0;  // record bytes
  uint64_t syncs = 0;          // fdatasync calls on segments
  absl::Duration sync_time;    // total time spent in them
};

// What Open found.
struct RatingLogRecovery {
  int segments = 0;
  uint64_t records = 0;   // valid records in the log
  uint64_t replayed = 0;  // of which had seq > after_seq
  // A torn tail cut off the last segment (0 when there was none).
  uint64_t truncated_bytes = 0;
  std::string truncated_file;
  // The last segment's format version when an older build wrote it (0 when
  // it was current); appends then went to a new segment of this version.
  int upgraded_from_version = 0;
};

class RatingLog {
 public:
  static constexpr size_t kHeaderBytes = 12;
  static constexpr size_t kMaxIdBytes = 4096;
  static constexpr size_t kMinPayloadBytes = 28;
  static constexpr size_t kMaxTitleBytes = 1024;
  static constexpr size_t kMaxGenres = 32;
  static constexpr size_t kMaxGenreBytes = 128;
  static constexpr size_t kMaxEntryBytes =
      12 + kMaxTitleBytes + kMaxGenres * (4 + kMaxGenreBytes);
  static constexpr size_t kEventTailBytes = 12 + 2 * kMaxIdBytes;
  static constexpr size_t kMaxPayloadBytes =
      kMinPayloadBytes + kMaxIdBytes +
      (kMaxEntryBytes > kMaxIdBytes + kEventTailBytes
           ? kMaxEntryBytes
           : kMaxIdBytes + kEventTailBytes);

  // Opens the log in `dir`, creating both when missing, and recovers it as
  // described above, calling `replay` (may be empty) for each record with
  // seq > after_seq, in order. On error, `replay` may have seen a prefix of
  // the records: discard what was built from them.
  static absl::StatusOr<std::unique_ptr<RatingLog>> Open(
      const std::string& dir, const RatingLogOptions& options,
      uint64_t after_seq, const std::function<void(const LogRecord&)>& replay);

  // Fsyncs what is pending (errors are lost: call Sync first to see them).
  ~RatingLog();
  RatingLog(const RatingLog&) = delete;
  RatingLog& operator=(const RatingLog&) = delete;

  // Numbers the records consecutively (writing each seq into them), appends
  // them and returns the last seq once they are durable per the policy.
  // InvalidArgument, and nothing appended, when any record has an empty or
  // over-long id or a non-finite value (an erasure: an empty user id, or an
  // item id or value at all; a catalogue entry: a user id, a value, or a
  // title or genres over the limits). Thread-safe.
  absl::StatusOr<uint64_t> Append(std::vector<LogRecord>* records);

  // Append for records numbered elsewhere (a read replica copying its
  // primary's log): each keeps its seq. Records up to last_seq() are
  // already here and are skipped; the others must continue it without a gap
  // (FAILED_PRECONDITION otherwise, and nothing appended). Returns
  // last_seq() once the appended ones are durable per the policy.
  absl::StatusOr<uint64_t> AppendNumbered(std::vector<LogRecord>* records);

  // Moves the numbering on so that the next record is seq + 1 (a no-op when
  // it is already past that), in a new segment named after it: for a
  // replica that installs a snapshot holding everything up to `seq`. Write
  // that snapshot first: a restart accepts the gap only below the loaded
  // snapshot's log_sequence.
  absl::Status SkipTo(uint64_t seq);

  // A reader of the records after `after_seq`, in order, as they become
  // durable. It must not outlive the log.
  std::unique_ptr<LogReader> NewReader(uint64_t after_seq) const;

  // The newest seq handed out (or recovered, or after_seq if larger).
  uint64_t last_seq() const;
  // The newest seq a LogReader may read: fsynced, or written under
  // SyncPolicy::kNever.
  uint64_t durable_seq() const;

  // Makes everything appended so far durable, whatever the policy.
  absl::Status Sync();

  // Closes the current segment (fsynced) and starts a new one; a no-op when
  // the current segment holds no record.
  absl::Status Rotate();

  // Deletes the oldest segments whose records all have seq <= upto (never
  // the current one), oldest first, so a crash leaves a contiguous log.
  absl::Status DeleteSegmentsUpTo(uint64_t upto);

  RatingLogStats stats() const;
  const RatingLogRecovery& recovery() const { return recovery_; }
  const std::string& dir() const { return dir_; }

 private:
  RatingLog(std::string dir, const RatingLogOptions& options);
  absl::Status Recover(uint64_t after_seq,
                       const std::function<void(const LogRecord&)>& replay);
  // Recover's steps: the directory made and locked against a second
  // writer; every segment validated and its records after `after_seq`
  // replayed (sets next_seq_; `valid_end` is where the last one's valid
  // records end); the last segment opened for appending (its torn tail cut),
  // or a new one begun after a segment of an older format version.
  absl::Status LockDirectory();
  absl::Status ReplaySegments(
      const std::vector<uint64_t>& seqs, uint64_t after_seq,
      const std::function<void(const LogRecord&)>& replay, size_t* valid_end,
      uint32_t* last_version);
  absl::Status OpenActive(std::vector<uint64_t>* seqs, size_t valid_end,
                          uint32_t last_version);
  // Returns once records up to `seq` are written (and fsynced if `sync`),
  // doing the I/O itself whenever no other thread is.
  absl::Status WaitFor(std::unique_lock<std::mutex>& lock, uint64_t seq,
                       bool sync);
  // One round of exclusive I/O: writes the queue, then fsyncs if `sync`,
  // then starts a new segment if `rotate`. Called and returns with `lock`
  // held; releases it meanwhile.
  absl::Status RunIo(std::unique_lock<std::mutex>& lock, bool sync,
                     bool rotate);
  absl::Status BrokenError() const;
  // Appends encoded records (under `lock`) and waits until they are
  // durable per the policy.
  absl::StatusOr<uint64_t> QueueAndWait(std::unique_lock<std::mutex>& lock,
                                        std::vector<LogRecord>* records,
                                        bool numbered);
  // Records up to here may be read (LogReader): fsynced, or written under
  // SyncPolicy::kNever. Under mu_.
  uint64_t readable_seq() const;
  void FlushLoop();
  friend class LogReader;

  const std::string dir_;
  const RatingLogOptions options_;
  int lock_fd_ = -1;
  RatingLogRecovery recovery_;

  mutable std::mutex mu_;
  // Notified after every I/O round and fsync (LogReader waits on it too).
  mutable std::condition_variable io_done_;
  // Encoded records waiting for the next I/O round, the first numbered
  // queue_first_seq_; every seq handed out is either here or written.
  std::string queue_;
  uint64_t queue_first_seq_ = 0;
  uint64_t next_seq_ = 1;
  uint64_t written_seq_ = 0;  // records up to here are in the file
  uint64_t synced_seq_ = 0;   // ... and fsynced
  bool io_active_ = false;
  absl::Status broken_;
  std::shared_ptr<internal::LogSegment>
      active_;                          // shared with an fsync in flight
  std::vector<uint64_t> segment_seqs_;  // first seq of each, oldest first
  RatingLogStats stats_;

  std::condition_variable flush_wake_;
  bool stopping_ = false;
  std::thread flusher_;  // kInterval only
};

// Reads a log's records in seq order while it grows: what a primary sends
// its read replicas. Only records that are durable on the primary are read
// (fsynced), so a replica never holds a rating that a crash of the primary
// could take back; under SyncPolicy::kNever, where nothing is durable before
// the OS writes it, records are read once written, and that promise is
// void. Not thread-safe; one reader per follower.
class LogReader {
 public:
  ~LogReader();
  LogReader(const LogReader&) = delete;
  LogReader& operator=(const LogReader&) = delete;

  // Appends to `out` up to `max_records` records after the last one read,
  // waiting until `deadline` for the first (then returns OK with none).
  // OUT_OF_RANGE when the next record is no longer in the log: a snapshot
  // covered it and its segment was deleted, so the reader's owner needs that
  // snapshot. DATA_LOSS for a record that does not check out.
  absl::Status Next(size_t max_records, absl::Time deadline,
                    std::vector<LogRecord>* out);
  // The seq of the last record read (at first, the reader's after_seq).
  uint64_t last_seq() const { return last_; }

 private:
  friend class RatingLog;
  LogReader(const RatingLog& log, uint64_t after_seq)
      : log_(log), last_(after_seq) {}
  // Opens the segment that holds seq last_ + 1 (or the first after the
  // current one when `next`).
  absl::Status OpenSegment(const std::vector<uint64_t>& segments, bool next);
  // Next's steps: waits until a record after last_ is readable (false when
  // `deadline` passes first), and sets `limit` (records up to it are whole
  // on disk) and `segments`; then reads more of the segment into buffer_,
  // or moves on to the next segment at the end of this one.
  absl::StatusOr<bool> WaitReadable(absl::Time deadline, uint64_t* limit,
                                    std::vector<uint64_t>* segments);
  absl::Status ReadMore(std::vector<uint64_t>* segments, uint64_t limit);

  const RatingLog& log_;
  uint64_t last_ = 0;
  int fd_ = -1;
  std::string path_;
  uint64_t first_ = 0;   // the open segment's first seq
  uint64_t offset_ = 0;  // file offset of buffer_[0]
  std::string buffer_;   // bytes read from offset_ on
  size_t pos_ = 0;       // next frame in buffer_
};

}  // namespace recsys

#endif  // RECSYS_STORAGE_RATING_LOG_H_
