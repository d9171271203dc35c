#include "storage/rating_log.h"

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

LogRecord Rec(std::string user, std::string item, float value,
              int64_t timestamp) {
  LogRecord r;
  r.user = std::move(user);
  r.item = std::move(item);
  r.value = value;
  r.timestamp = timestamp;
  return r;
}

// Bytes a record takes in a segment (frame and payload).
size_t RecordBytes(const LogRecord& r) {
  return 8 + RatingLog::kMinPayloadBytes + r.user.size() + r.item.size();
}

std::string FirstSegment(const std::string& dir) {
  return dir + "/ratings-00000000000000000001.log";
}

std::vector<std::string> SegmentNames(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("ratings-", 0) == 0) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::unique_ptr<RatingLog> MustOpen(
    const std::string& dir, const RatingLogOptions& options = {},
    uint64_t after_seq = 0, std::vector<LogRecord>* replayed = nullptr) {
  absl::StatusOr<std::unique_ptr<RatingLog>> log =
      RatingLog::Open(dir, options, after_seq, [&](const LogRecord& r) {
        if (replayed != nullptr) replayed->push_back(r);
      });
  EXPECT_TRUE(log.ok()) << log.status();
  return log.ok() ? std::move(*log) : nullptr;
}

// The records of the log in `dir` after `after_seq`, or the Open error.
absl::StatusOr<std::vector<LogRecord>> Replay(const std::string& dir,
                                              uint64_t after_seq = 0) {
  std::vector<LogRecord> records;
  absl::StatusOr<std::unique_ptr<RatingLog>> log = RatingLog::Open(
      dir, {}, after_seq, [&](const LogRecord& r) { records.push_back(r); });
  if (!log.ok()) return log.status();
  return records;
}

std::vector<uint64_t> Seqs(const std::vector<LogRecord>& records) {
  std::vector<uint64_t> seqs;
  for (const LogRecord& r : records) seqs.push_back(r.seq);
  return seqs;
}

uint64_t AppendOne(RatingLog& log, LogRecord r) {
  std::vector<LogRecord> batch = {std::move(r)};
  absl::StatusOr<uint64_t> seq = log.Append(&batch);
  EXPECT_TRUE(seq.ok()) << seq.status();
  return seq.ok() ? *seq : 0;
}

// A log with `n` records "u<k>"/"item-<k>", k = 1..n, in one segment.
void WriteLog(const std::string& dir, int n) {
  std::unique_ptr<RatingLog> log = MustOpen(dir);
  ASSERT_NE(log, nullptr);
  for (int k = 1; k <= n; ++k) {
    AppendOne(*log, Rec(absl::StrCat("u", k), absl::StrCat("item-", k),
                        static_cast<float>(k), 1000 + k));
  }
}

TEST(RatingLogTest, RoundTripKeepsEveryField) {
  const std::string dir = testing::MakeTempDir("log");
  std::vector<LogRecord> first = {
      Rec("alice", "tt0095765", 4.5f, 1700000000),
      Rec("ユーザー4", "Amélie (2001) 🎬", 0.5f, -86400)};
  std::vector<LogRecord> second = {
      Rec("u", "i", -1.25f, std::numeric_limits<int64_t>::min()),
      Rec(std::string(RatingLog::kMaxIdBytes, 'x'), "i/3", 5.0f,
          std::numeric_limits<int64_t>::max())};
  {
    std::unique_ptr<RatingLog> log = MustOpen(dir);
    ASSERT_NE(log, nullptr);
    EXPECT_EQ(log->last_seq(), 0u);
    ASSERT_EQ(log->Append(&first).value_or(0), 2u);
    ASSERT_EQ(log->Append(&second).value_or(0), 4u);
    EXPECT_THAT(Seqs(first), ElementsAre(1, 2));
    EXPECT_THAT(Seqs(second), ElementsAre(3, 4));
    std::vector<LogRecord> none;
    EXPECT_EQ(log->Append(&none).value_or(0), 4u);
    const RatingLogStats stats = log->stats();
    EXPECT_EQ(stats.records, 4u);
    EXPECT_EQ(stats.writes, 2u);
    EXPECT_EQ(stats.syncs, 2u);
  }
  std::vector<LogRecord> replayed;
  std::unique_ptr<RatingLog> log = MustOpen(dir, {}, 0, &replayed);
  ASSERT_NE(log, nullptr);
  std::vector<LogRecord> expected = first;
  expected.insert(expected.end(), second.begin(), second.end());
  ASSERT_EQ(replayed.size(), expected.size());
  for (size_t k = 0; k < expected.size(); ++k) {
    EXPECT_EQ(replayed[k].seq, expected[k].seq);
    EXPECT_EQ(replayed[k].user, expected[k].user);
    EXPECT_EQ(replayed[k].item, expected[k].item);
    EXPECT_EQ(replayed[k].value, expected[k].value);
    EXPECT_EQ(replayed[k].timestamp, expected[k].timestamp);
  }
  EXPECT_EQ(log->recovery().records, 4u);
  EXPECT_EQ(log->recovery().replayed, 4u);
  EXPECT_EQ(log->recovery().truncated_bytes, 0u);
  EXPECT_EQ(log->last_seq(), 4u);
}

TEST(RatingLogTest, ReplaysOnlyAfterSeqAndContinuesNumbering) {
  const std::string dir = testing::MakeTempDir("log");
  WriteLog(dir, 10);
  {
    std::vector<LogRecord> replayed;
    std::unique_ptr<RatingLog> log = MustOpen(dir, {}, 6, &replayed);
    ASSERT_NE(log, nullptr);
    EXPECT_THAT(Seqs(replayed), ElementsAre(7, 8, 9, 10));
    EXPECT_EQ(replayed[0].user, "u7");
    EXPECT_EQ(log->recovery().records, 10u);
    EXPECT_EQ(log->recovery().replayed, 4u);
    EXPECT_EQ(log->last_seq(), 10u);
    EXPECT_EQ(AppendOne(*log, Rec("late", "x", 3, 0)), 11u);
  }
  absl::StatusOr<std::vector<LogRecord>> all = Replay(dir);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 11u);
  for (size_t k = 0; k < all->size(); ++k) EXPECT_EQ((*all)[k].seq, k + 1);
  EXPECT_EQ(all->back().user, "late");
  EXPECT_THAT(Seqs(*Replay(dir, 11)), ElementsAre());
}

// A snapshot can hold records the log lost (kNever, then a power cut).
// Numbering must continue after the snapshot, or new records would be
// skipped at the next replay as if the snapshot held them.
TEST(RatingLogTest, NumbersContinueAfterASnapshotAheadOfTheLog) {
  const std::string fresh = testing::MakeTempDir("fresh");
  {
    std::unique_ptr<RatingLog> log = MustOpen(fresh, {}, 100);
    ASSERT_NE(log, nullptr);
    EXPECT_EQ(log->last_seq(), 100u);
    EXPECT_EQ(AppendOne(*log, Rec("a", "b", 1, 0)), 101u);
  }
  EXPECT_THAT(Seqs(*Replay(fresh, 100)), ElementsAre(101));
  // An older snapshot needs records this log never had.
  absl::StatusOr<std::vector<LogRecord>> old = Replay(fresh, 0);
  EXPECT_EQ(old.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(old.status().message(), HasSubstr("records 1..100 are missing"));

  const std::string dir = testing::MakeTempDir("behind");
  WriteLog(dir, 3);
  {
    std::unique_ptr<RatingLog> log = MustOpen(dir, {}, 10);
    ASSERT_NE(log, nullptr);
    EXPECT_EQ(AppendOne(*log, Rec("a", "b", 1, 0)), 11u);
  }
  EXPECT_THAT(Seqs(*Replay(dir, 10)), ElementsAre(11));
  EXPECT_THAT(Seqs(*Replay(dir, 12)), ElementsAre());
  old = Replay(dir, 5);
  EXPECT_EQ(old.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(old.status().message(), HasSubstr("records 6..10 are missing"));
  EXPECT_THAT(old.status().message(), HasSubstr(FirstSegment(dir)));
}

TEST(RatingLogTest, ParsesSyncPolicies) {
  for (SyncPolicy policy :
       {SyncPolicy::kAlways, SyncPolicy::kInterval, SyncPolicy::kNever}) {
    EXPECT_EQ(ParseSyncPolicy(SyncPolicyName(policy)).value(), policy);
  }
  EXPECT_EQ(ParseSyncPolicy("sometimes").status().code(),
            absl::StatusCode::kInvalidArgument);
  RatingLogOptions options;
  options.sync = SyncPolicy::kInterval;
  options.interval = absl::ZeroDuration();
  EXPECT_EQ(RatingLog::Open(testing::MakeTempDir("log"), options, 0, nullptr)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

class SyncPolicyTest : public ::testing::TestWithParam<SyncPolicy> {};

TEST_P(SyncPolicyTest, AppendsSurviveReopen) {
  const std::string dir = testing::MakeTempDir("log");
  RatingLogOptions options;
  options.sync = GetParam();
  options.interval = absl::Milliseconds(5);
  {
    std::unique_ptr<RatingLog> log = MustOpen(dir, options);
    ASSERT_NE(log, nullptr);
    for (int k = 0; k < 3; ++k) AppendOne(*log, Rec("u", "i", k, k));
    switch (GetParam()) {
      case SyncPolicy::kAlways:
        EXPECT_EQ(log->stats().syncs, 3u);
        break;
      case SyncPolicy::kInterval: {
        // The flusher, not Append, makes them durable.
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::seconds(2);
        while (log->stats().syncs == 0 &&
               std::chrono::steady_clock::now() < deadline) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        EXPECT_GE(log->stats().syncs, 1u);
        break;
      }
      case SyncPolicy::kNever:
        EXPECT_EQ(log->stats().syncs, 0u);
        EXPECT_TRUE(log->Sync().ok());
        EXPECT_EQ(log->stats().syncs, 1u);
        EXPECT_TRUE(log->Sync().ok());  // nothing new: no fsync
        EXPECT_EQ(log->stats().syncs, 1u);
        break;
    }
    EXPECT_EQ(log->stats().writes, 3u);
    AppendOne(*log, Rec("last", "i", 1, 0));  // the destructor syncs it
  }
  absl::StatusOr<std::vector<LogRecord>> records = Replay(dir);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_THAT(Seqs(*records), ElementsAre(1, 2, 3, 4));
}

INSTANTIATE_TEST_SUITE_P(Policies, SyncPolicyTest,
                         ::testing::Values(SyncPolicy::kAlways,
                                           SyncPolicy::kInterval,
                                           SyncPolicy::kNever),
                         [](const auto& info) {
                           return std::string(SyncPolicyName(info.param));
                         });

TEST(RatingLogTest, GroupCommitSharesFsyncsBetweenConcurrentAppenders) {
  constexpr int kThreads = 8, kAppends = 200;
  const std::string dir = testing::MakeTempDir("log");
  std::vector<std::vector<uint64_t>> acked(kThreads);
  RatingLogStats stats;
  {
    std::unique_ptr<RatingLog> log = MustOpen(dir);
    ASSERT_NE(log, nullptr);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int j = 0; j < kAppends; ++j) {
          std::vector<LogRecord> batch = {
              Rec(absl::StrCat("t", t), absl::StrCat("i", j), 1, j)};
          absl::StatusOr<uint64_t> seq = log->Append(&batch);
          acked[t].push_back(seq.ok() && batch[0].seq == *seq ? *seq : 0);
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    stats = log->stats();
  }
  const uint64_t appends = kThreads * kAppends;
  const double ratio = static_cast<double>(stats.syncs) / appends;
  std::printf(
      "group commit: %d threads x %d appends: %llu fsyncs, %llu "
      "writes, %.3f fsyncs per append, %.1f us per fsync\n",
      kThreads, kAppends, static_cast<unsigned long long>(stats.syncs),
      static_cast<unsigned long long>(stats.writes), ratio,
      absl::ToDoubleMicroseconds(stats.sync_time) /
          std::max<uint64_t>(stats.syncs, 1));
  ::testing::Test::RecordProperty("fsyncs_per_append", absl::StrCat(ratio));
  EXPECT_EQ(stats.records, appends);
  EXPECT_EQ(stats.syncs, stats.writes);
  EXPECT_LT(stats.syncs, appends / 2);

  absl::StatusOr<std::vector<LogRecord>> records = Replay(dir);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), appends);
  std::vector<int> next(kThreads, 0);
  for (size_t k = 0; k < records->size(); ++k) {
    const LogRecord& r = (*records)[k];
    ASSERT_EQ(r.seq, k + 1);
    const int t = std::stoi(r.user.substr(1));
    // Each thread's records appear once each, in the order it appended
    // them, under the seq its Append returned.
    ASSERT_EQ(r.item, absl::StrCat("i", next[t]));
    ASSERT_EQ(acked[t][next[t]], r.seq);
    ++next[t];
  }
}

// The flusher fsyncs a segment while appenders fill and rotate segments.
TEST(RatingLogTest, IntervalFlusherKeepsUpWithRotation) {
  const std::string dir = testing::MakeTempDir("log");
  RatingLogOptions options;
  options.sync = SyncPolicy::kInterval;
  options.interval = absl::Microseconds(200);
  options.segment_bytes = 2000;
  {
    std::unique_ptr<RatingLog> log = MustOpen(dir, options);
    ASSERT_NE(log, nullptr);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&log, t] {
        for (int j = 0; j < 150; ++j) {
          AppendOne(*log, Rec(absl::StrCat("t", t), absl::StrCat(j), 1, j));
          if (j % 50 == 49) {
            EXPECT_TRUE(log->Rotate().ok());
          }
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    EXPECT_TRUE(log->Sync().ok());
  }
  EXPECT_GT(SegmentNames(dir).size(), 10u);
  absl::StatusOr<std::vector<LogRecord>> records = Replay(dir);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->size(), 600u);
}

// Crash mid-write: whatever prefix of the last record reached the disk, it
// is dropped, everything before it kept, and the log accepts appends again.
TEST(RatingLogTest, TruncationAnywhereInTheLastRecordDropsOnlyIt) {
  const std::string source = testing::MakeTempDir("source");
  WriteLog(source, 5);
  const std::string bytes = ReadBytes(FirstSegment(source));
  const size_t last_start =
      bytes.size() - RecordBytes(Rec("u5", "item-5", 0, 0));
  for (size_t cut = last_start; cut < bytes.size(); ++cut) {
    SCOPED_TRACE(absl::StrCat("cut at ", cut));
    const std::string dir = testing::MakeTempDir("cut");
    testing::WriteFile(FirstSegment(dir), bytes.substr(0, cut));
    {
      std::vector<LogRecord> replayed;
      std::unique_ptr<RatingLog> log = MustOpen(dir, {}, 0, &replayed);
      ASSERT_NE(log, nullptr);
      EXPECT_THAT(Seqs(replayed), ElementsAre(1, 2, 3, 4));
      EXPECT_EQ(log->recovery().truncated_bytes, cut - last_start);
      EXPECT_EQ(log->recovery().truncated_file,
                cut > last_start ? FirstSegment(dir) : "");
      EXPECT_EQ(std::filesystem::file_size(FirstSegment(dir)), last_start);
      EXPECT_EQ(AppendOne(*log, Rec("again", "i", 2, 0)), 5u);
    }
    absl::StatusOr<std::vector<LogRecord>> records = Replay(dir);
    ASSERT_TRUE(records.ok()) << records.status();
    ASSERT_THAT(Seqs(*records), ElementsAre(1, 2, 3, 4, 5));
    EXPECT_EQ(records->back().user, "again");
    EXPECT_EQ((*records)[3].user, "u4");
  }
}

// The file system may extend a file before its data lands.
TEST(RatingLogTest, ZeroFilledTailIsDropped) {
  const std::string source = testing::MakeTempDir("source");
  WriteLog(source, 3);
  const std::string bytes = ReadBytes(FirstSegment(source));
  const size_t last = bytes.size() - RecordBytes(Rec("u3", "item-3", 0, 0));
  const std::string zeros(4096, '\0');
  // Zeros after the last record, and zeros where its second half should be.
  const std::pair<std::string, uint64_t> cases[] = {
      {bytes + zeros, 3}, {bytes.substr(0, last + 10) + zeros, 2}};
  for (const auto& [damaged, kept] : cases) {
    const std::string dir = testing::MakeTempDir("zeros");
    testing::WriteFile(FirstSegment(dir), damaged);
    {
      std::unique_ptr<RatingLog> log = MustOpen(dir);
      ASSERT_NE(log, nullptr);
      EXPECT_EQ(log->last_seq(), kept);
      EXPECT_EQ(log->recovery().truncated_bytes,
                damaged.size() - (kept == 3 ? bytes.size() : last));
      EXPECT_EQ(AppendOne(*log, Rec("after", "zeros", 1, 0)), kept + 1);
    }
    absl::StatusOr<std::vector<LogRecord>> records = Replay(dir);
    ASSERT_TRUE(records.ok()) << records.status();
    EXPECT_EQ(records->back().user, "after");
  }
}

TEST(RatingLogTest, DamagedLastRecordIsDropped) {
  const std::string source = testing::MakeTempDir("source");
  WriteLog(source, 4);
  const std::string bytes = ReadBytes(FirstSegment(source));
  const size_t last_start =
      bytes.size() - RecordBytes(Rec("u4", "item-4", 0, 0));
  for (size_t at = last_start; at < bytes.size(); ++at) {
    SCOPED_TRACE(absl::StrCat("byte ", at));
    const std::string dir = testing::MakeTempDir("flip");
    std::string damaged = bytes;
    damaged[at] ^= 0xFF;
    testing::WriteFile(FirstSegment(dir), damaged);
    absl::StatusOr<std::vector<LogRecord>> records = Replay(dir);
    ASSERT_TRUE(records.ok()) << records.status();
    EXPECT_THAT(Seqs(*records), ElementsAre(1, 2, 3));
  }
}

// Damage with valid records after it is not a torn write: acknowledged
// records would be lost, so recovery refuses and says where.
TEST(RatingLogTest, DamagedMiddleRecordIsDataLoss) {
  const std::string source = testing::MakeTempDir("source");
  WriteLog(source, 5);
  const std::string bytes = ReadBytes(FirstSegment(source));
  size_t start = RatingLog::kHeaderBytes;
  for (int k = 1; k < 3; ++k) {
    start +=
        RecordBytes(Rec(absl::StrCat("u", k), absl::StrCat("item-", k), 0, 0));
  }
  const size_t end = start + RecordBytes(Rec("u3", "item-3", 0, 0));
  for (size_t at = start; at < end; ++at) {
    SCOPED_TRACE(absl::StrCat("byte ", at));
    const std::string dir = testing::MakeTempDir("flip");
    std::string damaged = bytes;
    damaged[at] ^= 0xFF;
    testing::WriteFile(FirstSegment(dir), damaged);
    const absl::Status status = Replay(dir).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(status.message(), HasSubstr(FirstSegment(dir)));
    EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("offset ", start)));
    // Nothing was truncated on the way.
    EXPECT_EQ(ReadBytes(FirstSegment(dir)), damaged);
  }
}

TEST(RatingLogTest, RotationStartsSegmentsAndReplaySpansThem) {
  const std::string dir = testing::MakeTempDir("log");
  {
    std::unique_ptr<RatingLog> log = MustOpen(dir);
    ASSERT_NE(log, nullptr);
    AppendOne(*log, Rec("a", "1", 1, 0));
    AppendOne(*log, Rec("a", "2", 1, 0));
    ASSERT_TRUE(log->Rotate().ok());
    ASSERT_TRUE(log->Rotate().ok());  // empty segment: nothing to rotate
    AppendOne(*log, Rec("a", "3", 1, 0));
    ASSERT_TRUE(log->Rotate().ok());
  }
  EXPECT_THAT(SegmentNames(dir),
              ElementsAre("ratings-00000000000000000001.log",
                          "ratings-00000000000000000003.log",
                          "ratings-00000000000000000004.log"));
  {
    std::vector<LogRecord> replayed;
    std::unique_ptr<RatingLog> log = MustOpen(dir, {}, 1, &replayed);
    ASSERT_NE(log, nullptr);
    EXPECT_THAT(Seqs(replayed), ElementsAre(2, 3));
    EXPECT_EQ(log->recovery().segments, 3);
    EXPECT_EQ(AppendOne(*log, Rec("a", "4", 1, 0)), 4u);
  }

  // Size-driven rotation: each segment takes one 50-byte record.
  const std::string small = testing::MakeTempDir("small");
  RatingLogOptions options;
  options.segment_bytes = 64;
  {
    std::unique_ptr<RatingLog> log = MustOpen(small, options);
    ASSERT_NE(log, nullptr);
    for (int k = 0; k < 5; ++k) AppendOne(*log, Rec("u", "i", k, k));
  }
  EXPECT_EQ(SegmentNames(small).size(), 5u);
  EXPECT_THAT(Seqs(*Replay(small)), ElementsAre(1, 2, 3, 4, 5));
}

TEST(RatingLogTest, DeletesOnlySegmentsTheSnapshotCovers) {
  const std::string dir = testing::MakeTempDir("log");
  {
    std::unique_ptr<RatingLog> log = MustOpen(dir);
    ASSERT_NE(log, nullptr);
    for (int k = 1; k <= 9; ++k) {
      AppendOne(*log, Rec("u", absl::StrCat(k), 1, 0));
      if (k % 3 == 0) {
        ASSERT_TRUE(log->Rotate().ok());
      }
    }
    // Segments: 1..3, 4..6, 7..9 and the empty current one from 10.
    ASSERT_TRUE(log->DeleteSegmentsUpTo(5).ok());
    EXPECT_EQ(SegmentNames(dir).size(), 3u);
    ASSERT_TRUE(log->DeleteSegmentsUpTo(6).ok());
    EXPECT_EQ(SegmentNames(dir).size(), 2u);
    ASSERT_TRUE(log->DeleteSegmentsUpTo(1000).ok());  // keeps the current
    EXPECT_THAT(SegmentNames(dir),
                ElementsAre("ratings-00000000000000000010.log"));
    AppendOne(*log, Rec("u", "10", 1, 0));
  }
  EXPECT_THAT(Seqs(*Replay(dir, 9)), ElementsAre(10));
  EXPECT_EQ(Replay(dir, 8).status().code(), absl::StatusCode::kDataLoss);
}

TEST(RatingLogTest, MissingOrDamagedOlderSegmentIsDataLoss) {
  const std::string dir = testing::MakeTempDir("log");
  {
    std::unique_ptr<RatingLog> log = MustOpen(dir);
    ASSERT_NE(log, nullptr);
    for (int k = 1; k <= 6; ++k) {
      AppendOne(*log, Rec("u", absl::StrCat(k), 1, 0));
      if (k % 2 == 0) {
        ASSERT_TRUE(log->Rotate().ok());
      }
    }
  }
  const std::string middle = dir + "/ratings-00000000000000000003.log";
  const std::string bytes = ReadBytes(middle);

  // A flipped byte in the last record of a segment that is not the last.
  std::string damaged = bytes;
  damaged[damaged.size() - 1] ^= 0xFF;
  testing::WriteFile(middle, damaged);
  absl::Status status = Replay(dir).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr(middle));

  // A cut one.
  testing::WriteFile(middle, bytes.substr(0, bytes.size() - 3));
  EXPECT_EQ(Replay(dir).status().code(), absl::StatusCode::kDataLoss);

  std::filesystem::remove(middle);
  status = Replay(dir).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("records 3..4 are missing"));
  // A snapshot holding 3 and 4 does not need them.
  EXPECT_THAT(Seqs(*Replay(dir, 4)), ElementsAre(5, 6));
}

TEST(RatingLogTest, RefusesForeignOrNewerSegments) {
  const std::string dir = testing::MakeTempDir("log");
  WriteLog(dir, 2);
  const std::string bytes = ReadBytes(FirstSegment(dir));
  std::string other = bytes;
  other[0] = 'X';
  testing::WriteFile(FirstSegment(dir), other);
  absl::Status status = Replay(dir).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("bad header"));
  other = bytes;
  other[8] = 5;
  testing::WriteFile(FirstSegment(dir), other);
  status = Replay(dir).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(),
              HasSubstr("log format version 5, this build reads 1..4"));
}

LogRecord Event(std::string user, std::string item, float weight,
                std::string type, std::string id) {
  LogRecord r;
  r.user = std::move(user);
  r.item = std::move(item);
  r.value = weight;
  r.add = true;
  r.event_type = std::move(type);
  r.event_id = std::move(id);
  return r;
}

// Events (version 4) keep their weight, type and id through the log, beside
// ratings; in an older segment an event tail is damage.
TEST(RatingLogTest, EventsRoundTripAndOlderSegmentsHaveNone) {
  const std::string dir = testing::MakeTempDir("log");
  {
    std::unique_ptr<RatingLog> log = MustOpen(dir);
    ASSERT_NE(log, nullptr);
    std::vector<LogRecord> batch = {Event("u", "i1", 2.5f, "play", "e-1"),
                                    Rec("u", "i2", 4, 0),
                                    Event("u", "i1", 0.5f, "click", "")};
    ASSERT_EQ(log->Append(&batch).value_or(0), 3u);
  }
  absl::StatusOr<std::vector<LogRecord>> got = Replay(dir);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 3u);
  EXPECT_TRUE((*got)[0].add);
  EXPECT_EQ((*got)[0].value, 2.5f);
  EXPECT_EQ((*got)[0].event_type, "play");
  EXPECT_EQ((*got)[0].event_id, "e-1");
  EXPECT_EQ((*got)[0].item, "i1");
  EXPECT_FALSE((*got)[1].add);
  EXPECT_EQ((*got)[1].item, "i2");
  EXPECT_TRUE((*got)[2].add);
  EXPECT_EQ((*got)[2].event_type, "click");
  EXPECT_EQ((*got)[2].event_id, "");

  std::string bytes = ReadBytes(FirstSegment(dir));
  bytes[8] = 3;
  testing::WriteFile(FirstSegment(dir), bytes);
  const absl::Status status = Replay(dir).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("no events"));
}

// An event without a type, or with a negative weight, never reaches the log.
TEST(RatingLogTest, MalformedEventsAreRefused) {
  const std::string dir = testing::MakeTempDir("log");
  std::unique_ptr<RatingLog> log = MustOpen(dir);
  ASSERT_NE(log, nullptr);
  for (LogRecord bad :
       {Event("u", "i", 1, "", ""), Event("u", "i", -1, "play", ""),
        Event("u", "i", std::nanf(""), "play", "")}) {
    std::vector<LogRecord> batch = {bad};
    EXPECT_EQ(log->Append(&batch).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

LogRecord Erasure(std::string user) {
  LogRecord r;
  r.user = std::move(user);
  r.erase_user = true;
  return r;
}

TEST(RatingLogTest, ErasuresRoundTripBetweenRatings) {
  const std::string dir = testing::MakeTempDir("log");
  {
    std::unique_ptr<RatingLog> log = MustOpen(dir);
    ASSERT_NE(log, nullptr);
    std::vector<LogRecord> batch = {Rec("alice", "i1", 4, 10), Erasure("alice"),
                                    Rec("alice", "i2", 2, 0)};
    ASSERT_EQ(log->Append(&batch).value_or(0), 3u);
  }
  absl::StatusOr<std::vector<LogRecord>> got = Replay(dir);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 3u);
  EXPECT_FALSE((*got)[0].erase_user);
  EXPECT_EQ((*got)[0].item, "i1");
  EXPECT_TRUE((*got)[1].erase_user);
  EXPECT_EQ((*got)[1].user, "alice");
  EXPECT_EQ((*got)[1].item, "");
  EXPECT_EQ((*got)[1].seq, 2u);
  EXPECT_FALSE((*got)[2].erase_user);
  EXPECT_EQ((*got)[2].value, 2.0f);
}

// Segments written before erasures existed (version 1) are read as they
// were; an empty item id in one is damage, not an erasure.
TEST(RatingLogTest, ReadsVersionOneSegments) {
  const std::string dir = testing::MakeTempDir("log");
  WriteLog(dir, 2);
  std::string bytes = ReadBytes(FirstSegment(dir));
  ASSERT_EQ(bytes[8], 4);
  bytes[8] = 1;
  testing::WriteFile(FirstSegment(dir), bytes);
  absl::StatusOr<std::vector<LogRecord>> got = Replay(dir);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(Seqs(*got), ElementsAre(1, 2));

  const std::string with_erasure = testing::MakeTempDir("log");
  {
    std::unique_ptr<RatingLog> log = MustOpen(with_erasure);
    ASSERT_NE(log, nullptr);
    AppendOne(*log, Rec("u", "i", 3, 0));
    AppendOne(*log, Erasure("u"));
  }
  bytes = ReadBytes(FirstSegment(with_erasure));
  bytes[8] = 1;
  testing::WriteFile(FirstSegment(with_erasure), bytes);
  const absl::Status status = Replay(with_erasure).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(),
              HasSubstr("a version 1 segment has no erasures"));
}

LogRecord Entry(std::string item, ItemInfo info) {
  LogRecord r;
  r.item = std::move(item);
  r.entry = std::make_shared<const ItemInfo>(std::move(info));
  return r;
}

TEST(RatingLogTest, CatalogueEntriesRoundTripBetweenRatings) {
  const std::string dir = testing::MakeTempDir("log");
  const std::string longest_title(RatingLog::kMaxTitleBytes, 'T');
  const std::vector<std::string> most_genres(
      RatingLog::kMaxGenres, std::string(RatingLog::kMaxGenreBytes, 'g'));
  const std::string longest_id(RatingLog::kMaxIdBytes, 'i');
  {
    std::unique_ptr<RatingLog> log = MustOpen(dir);
    ASSERT_NE(log, nullptr);
    std::vector<LogRecord> batch = {
        Rec("alice", "i1", 4, 10),
        Entry("i1", {"Brazil (1985)", {"Comedy", "Sci-Fi"}, false}),
        Entry(longest_id, {longest_title, most_genres, true}),
        Entry("i3", {"", {}, true}), Rec("bob", "i3", 2, 0)};
    ASSERT_EQ(log->Append(&batch).value_or(0), 5u);
  }
  absl::StatusOr<std::vector<LogRecord>> got = Replay(dir);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 5u);
  EXPECT_EQ((*got)[0].entry, nullptr);
  EXPECT_EQ((*got)[4].entry, nullptr);
  EXPECT_EQ((*got)[4].user, "bob");
  struct Want {
    size_t index;
    std::string item, title;
    std::vector<std::string> genres;
    bool retired;
  };
  for (const Want& w :
       {Want{1, "i1", "Brazil (1985)", {"Comedy", "Sci-Fi"}, false},
        Want{2, longest_id, longest_title, most_genres, true},
        Want{3, "i3", "", {}, true}}) {
    const LogRecord& r = (*got)[w.index];
    ASSERT_NE(r.entry, nullptr) << w.index;
    EXPECT_EQ(r.user, "");
    EXPECT_FALSE(r.erase_user);
    EXPECT_EQ(r.item, w.item);
    EXPECT_EQ(r.seq, w.index + 1);
    EXPECT_EQ(r.entry->title, w.title);
    EXPECT_EQ(r.entry->genres, w.genres);
    EXPECT_EQ(r.entry->retired, w.retired);
  }
}

// A catalogue entry in a segment written before they existed is damage.
TEST(RatingLogTest, CatalogueEntryInAVersionTwoSegmentIsDataLoss) {
  const std::string dir = testing::MakeTempDir("log");
  {
    std::unique_ptr<RatingLog> log = MustOpen(dir);
    ASSERT_NE(log, nullptr);
    AppendOne(*log, Rec("u", "i", 3, 0));
    AppendOne(*log, Entry("i", {"Title", {"Drama"}, false}));
  }
  std::string bytes = ReadBytes(FirstSegment(dir));
  bytes[8] = 2;
  testing::WriteFile(FirstSegment(dir), bytes);
  const absl::Status status = Replay(dir).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(),
              HasSubstr("a version 2 segment has no catalogue entries"));
}

// A server upgraded over an older build's data directory appends records
// that the old segment's version forbids; they must go to a new segment, or
// the next start refuses the log.
TEST(RatingLogTest, AppendsAfterAnOlderVersionGoToANewSegment) {
  for (const char old_version : {1, 2}) {
    SCOPED_TRACE(absl::StrCat("version ", static_cast<int>(old_version)));
    const std::string dir = testing::MakeTempDir("log");
    WriteLog(dir, 2);
    std::string bytes = ReadBytes(FirstSegment(dir));
    bytes[8] = old_version;
    testing::WriteFile(FirstSegment(dir), bytes);
    {
      std::unique_ptr<RatingLog> log = MustOpen(dir);
      ASSERT_NE(log, nullptr);
      EXPECT_EQ(log->recovery().upgraded_from_version, old_version);
      std::vector<LogRecord> batch = {Entry("item-1", {"Brazil", {}, true}),
                                      Erasure("u2"), Rec("u3", "i", 4, 0)};
      ASSERT_EQ(log->Append(&batch).value_or(0), 5u);
    }
    EXPECT_EQ(ReadBytes(FirstSegment(dir)), bytes);  // left as it was
    EXPECT_EQ(SegmentNames(dir).size(), 2u);
    std::vector<LogRecord> replayed;
    std::unique_ptr<RatingLog> log = MustOpen(dir, {}, 0, &replayed);
    ASSERT_NE(log, nullptr);
    EXPECT_EQ(log->recovery().upgraded_from_version, 0);
    EXPECT_THAT(Seqs(replayed), ElementsAre(1, 2, 3, 4, 5));
    ASSERT_EQ(replayed.size(), 5u);
    ASSERT_NE(replayed[2].entry, nullptr);
    EXPECT_TRUE(replayed[2].entry->retired);
    EXPECT_TRUE(replayed[3].erase_user);
  }

  // An old segment with no records is replaced by a current one.
  const std::string empty = testing::MakeTempDir("log");
  { ASSERT_NE(MustOpen(empty), nullptr); }
  std::string header = ReadBytes(FirstSegment(empty));
  ASSERT_EQ(header.size(), RatingLog::kHeaderBytes);
  header[8] = 2;
  testing::WriteFile(FirstSegment(empty), header);
  {
    std::unique_ptr<RatingLog> log = MustOpen(empty);
    ASSERT_NE(log, nullptr);
    EXPECT_EQ(log->recovery().upgraded_from_version, 2);
    AppendOne(*log, Entry("i", {"Brazil", {}, false}));
  }
  EXPECT_THAT(SegmentNames(empty),
              ElementsAre("ratings-00000000000000000001.log"));
  absl::StatusOr<std::vector<LogRecord>> got = Replay(empty);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(Seqs(*got), ElementsAre(1));
}

TEST(RatingLogTest, RejectsInvalidRecordsWhole) {
  const std::string dir = testing::MakeTempDir("log");
  std::unique_ptr<RatingLog> log = MustOpen(dir);
  ASSERT_NE(log, nullptr);
  const std::string too_long(RatingLog::kMaxIdBytes + 1, 'x');
  const std::vector<LogRecord> bad = {Rec(too_long, "i", 1, 0),
                                      Rec("u", too_long, 1, 0),
                                      Rec("", "i", 1, 0),
                                      Rec("u", "", 1, 0),
                                      Rec("u", "i", NAN, 0),
                                      Rec("u", "i", INFINITY, 0),
                                      Erasure(""),
                                      Erasure(too_long)};
  for (const LogRecord& r : bad) {
    std::vector<LogRecord> batch = {Rec("fine", "fine", 1, 0), r};
    const absl::StatusOr<uint64_t> seq = log->Append(&batch);
    EXPECT_EQ(seq.status().code(), absl::StatusCode::kInvalidArgument);
  }
  std::vector<LogRecord> batch = {Rec(too_long, "i", 1, 0)};
  EXPECT_THAT(log->Append(&batch).status().message(),
              HasSubstr("user id of 4097 bytes"));
  // An erasure names a user and nothing else.
  LogRecord with_item = Erasure("u");
  with_item.item = "i";
  LogRecord with_value = Erasure("u");
  with_value.value = 1;
  for (const LogRecord& r : {with_item, with_value}) {
    batch = {r};
    EXPECT_THAT(log->Append(&batch).status().message(),
                HasSubstr("the erasure of user 'u' has an item or a value"));
  }
  // A catalogue entry names an item, within the title and genre limits.
  LogRecord with_user = Entry("i", {});
  with_user.user = "u";
  LogRecord entry_value = Entry("i", {});
  entry_value.value = 2;
  const std::string long_title(RatingLog::kMaxTitleBytes + 1, 't');
  const std::string long_genre(RatingLog::kMaxGenreBytes + 1, 'g');
  const std::vector<std::string> many_genres(RatingLog::kMaxGenres + 1, "g");
  for (const LogRecord& r :
       {with_user, entry_value, Entry("", {}), Entry(too_long, {}),
        Entry("i", {long_title, {}, false}),
        Entry("i", {"", {long_genre}, false}),
        Entry("i", {"", many_genres, false})}) {
    batch = {Rec("fine", "fine", 1, 0), r};
    EXPECT_EQ(log->Append(&batch).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(log->last_seq(), 0u);
  EXPECT_EQ(log->stats().writes, 0u);
}

TEST(RatingLogTest, OneOpenLogPerDirectory) {
  const std::string dir = testing::MakeTempDir("log");
  std::unique_ptr<RatingLog> log = MustOpen(dir);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(RatingLog::Open(dir, {}, 0, nullptr).status().code(),
            absl::StatusCode::kFailedPrecondition);
  log.reset();
  EXPECT_TRUE(RatingLog::Open(dir, {}, 0, nullptr).ok());
}

// A write that fails part-way (here: the file size limit) breaks the log:
// that append fails, later ones are refused, and a reopen drops the partial
// record. Runs in a child so the limit stays there.
TEST(RatingLogTest, FailedWriteBreaksTheLog) {
  const std::string dir = testing::MakeTempDir("log");
  const size_t record = RecordBytes(Rec("u", "i", 0, 0));
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    absl::StatusOr<std::unique_ptr<RatingLog>> log =
        RatingLog::Open(dir, {}, 0, nullptr);
    if (!log.ok()) _exit(10);
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit;
    ::getrlimit(RLIMIT_FSIZE, &limit);
    limit.rlim_cur = RatingLog::kHeaderBytes + 3 * record + record / 2;
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(11);
    for (int k = 0; k < 3; ++k) {
      std::vector<LogRecord> batch = {Rec("u", "i", 0, 0)};
      if (!(*log)->Append(&batch).ok()) _exit(12);
    }
    std::vector<LogRecord> batch = {Rec("u", "i", 0, 0)};
    const absl::Status failed = (*log)->Append(&batch).status();
    if (failed.code() != absl::StatusCode::kInternal) _exit(13);
    if (failed.message().find("ratings-00000000000000000001.log") ==
            absl::string_view::npos ||
        failed.message().find(std::strerror(EFBIG)) == absl::string_view::npos)
      _exit(14);
    if ((*log)->Append(&batch).status().code() != absl::StatusCode::kInternal)
      _exit(15);
    if ((*log)->Sync().code() != absl::StatusCode::kInternal) _exit(16);
    if ((*log)->Rotate().code() != absl::StatusCode::kInternal) _exit(17);
    _exit(0);
  }
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus));
  ASSERT_EQ(WEXITSTATUS(wstatus), 0) << "see the exit codes in the child";
  std::unique_ptr<RatingLog> log = MustOpen(dir);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->last_seq(), 3u);
  EXPECT_EQ(log->recovery().truncated_bytes, record / 2);
  EXPECT_EQ(AppendOne(*log, Rec("u", "i", 0, 0)), 4u);
}

// kill -9 at a random moment while four threads append: every seq the
// writer saw acknowledged must come back, and the log must reopen cleanly.
TEST(RatingLogTest, KilledWriterLosesNoAcknowledgedRecord) {
  std::mt19937 rng(20240607);
  for (int round = 0; round < 5; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    const std::string dir = testing::MakeTempDir("crash");
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      absl::StatusOr<std::unique_ptr<RatingLog>> log =
          RatingLog::Open(dir, {}, 0, nullptr);
      if (!log.ok()) _exit(2);
      std::vector<std::thread> threads;
      for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&log, t, fd = fds[1]] {
          for (int64_t j = 0;; ++j) {
            std::vector<LogRecord> batch = {
                Rec(absl::StrCat("t", t), absl::StrCat("i", j), 1, j)};
            const absl::StatusOr<uint64_t> seq = (*log)->Append(&batch);
            if (!seq.ok()) _exit(3);
            if (::write(fd, &*seq, sizeof(*seq)) != sizeof(*seq)) _exit(4);
          }
        });
      }
      for (std::thread& thread : threads) thread.join();
      _exit(0);
    }
    ::close(fds[1]);
    std::string received;
    auto drain = [&](int timeout_ms) {
      pollfd p = {fds[0], POLLIN, 0};
      if (::poll(&p, 1, timeout_ms) <= 0) return false;
      char buf[4096];
      const ssize_t n = ::read(fds[0], buf, sizeof(buf));
      if (n > 0) received.append(buf, n);
      return n > 0;
    };
    // The kill lands a random 0-100 ms after the first acknowledgement, so
    // a slow start on a busy machine cannot make the round vacuous.
    const auto start = std::chrono::steady_clock::now();
    while (received.size() < sizeof(uint64_t) &&
           std::chrono::steady_clock::now() - start <
               std::chrono::seconds(10)) {
      drain(10);
    }
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(
                              std::uniform_int_distribution<int>(0, 100)(rng));
    while (std::chrono::steady_clock::now() < deadline) drain(5);
    ::kill(pid, SIGKILL);
    int wstatus = 0;
    ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(wstatus)) << "child exited " << wstatus;
    while (drain(1000)) {
    }
    ::close(fds[0]);
    std::vector<uint64_t> acked(received.size() / sizeof(uint64_t));
    std::memcpy(acked.data(), received.data(), acked.size() * sizeof(uint64_t));
    ASSERT_FALSE(acked.empty()) << "the writer never got going";

    absl::StatusOr<std::vector<LogRecord>> records = Replay(dir);
    ASSERT_TRUE(records.ok()) << records.status();
    std::set<uint64_t> present;
    for (size_t k = 0; k < records->size(); ++k) {
      ASSERT_EQ((*records)[k].seq, k + 1);
      present.insert(k + 1);
    }
    for (uint64_t seq : acked) ASSERT_TRUE(present.count(seq)) << seq;
    std::printf("round %d: %zu acknowledged, %zu recovered\n", round,
                acked.size(), records->size());
  }
}

// Reads everything `reader` has up to now (no waiting).
std::vector<LogRecord> ReadAll(LogReader& reader, size_t max = 1000) {
  std::vector<LogRecord> out;
  const absl::Status s = reader.Next(max, absl::Now(), &out);
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

TEST(LogReaderTest, ReadsAcrossSegmentsInBatchesAndWaitsForNewRecords) {
  const std::string dir = testing::MakeTempDir("log");
  RatingLogOptions options;
  options.segment_bytes = 200;  // a few records a segment
  std::unique_ptr<RatingLog> log = MustOpen(dir, options);
  ASSERT_NE(log, nullptr);
  LogRecord entry;
  entry.item = "film";
  entry.entry = std::make_shared<const ItemInfo>(
      ItemInfo{"A Film (1999)", {"Drama", "War"}, true});
  LogRecord erase;
  erase.user = "u2";
  erase.erase_user = true;
  for (int k = 1; k <= 10; ++k) {
    AppendOne(*log, Rec(absl::StrCat("u", k % 3), absl::StrCat("item-", k),
                        static_cast<float>(k), 1000 + k));
  }
  AppendOne(*log, entry);
  AppendOne(*log, erase);
  ASSERT_GT(SegmentNames(dir).size(), 3u);

  std::unique_ptr<LogReader> reader = log->NewReader(3);
  EXPECT_EQ(reader->last_seq(), 3u);
  std::vector<LogRecord> got = ReadAll(*reader, 4);
  EXPECT_THAT(Seqs(got), ElementsAre(4, 5, 6, 7));
  got = ReadAll(*reader);
  EXPECT_THAT(Seqs(got), ElementsAre(8, 9, 10, 11, 12));
  EXPECT_EQ(got[0].user, "u2");
  EXPECT_EQ(got[0].item, "item-8");
  EXPECT_EQ(got[0].value, 8.0f);
  EXPECT_EQ(got[0].timestamp, 1008);
  ASSERT_NE(got[3].entry, nullptr);
  EXPECT_EQ(got[3].item, "film");
  EXPECT_EQ(got[3].entry->title, "A Film (1999)");
  EXPECT_THAT(got[3].entry->genres, ElementsAre("Drama", "War"));
  EXPECT_TRUE(got[3].entry->retired);
  EXPECT_TRUE(got[4].erase_user);
  EXPECT_EQ(got[4].user, "u2");
  EXPECT_EQ(reader->last_seq(), 12u);

  // Nothing new: returns at the deadline with nothing.
  const absl::Time start = absl::Now();
  std::vector<LogRecord> none;
  ASSERT_TRUE(reader->Next(10, start + absl::Milliseconds(50), &none).ok());
  EXPECT_TRUE(none.empty());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(45));

  // A record appended while the reader waits wakes it.
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    AppendOne(*log, Rec("late", "x", 1, 0));
  });
  std::vector<LogRecord> late;
  ASSERT_TRUE(reader->Next(10, absl::Now() + absl::Seconds(30), &late).ok());
  writer.join();
  EXPECT_THAT(Seqs(late), ElementsAre(13));
  EXPECT_EQ(late[0].user, "late");
}

TEST(LogReaderTest, RecordsASnapshotCoveredAreOutOfRange) {
  const std::string dir = testing::MakeTempDir("log");
  std::unique_ptr<RatingLog> log = MustOpen(dir);
  ASSERT_NE(log, nullptr);
  for (int k = 1; k <= 6; ++k) {
    AppendOne(*log, Rec("u", absl::StrCat(k), 1, 0));
    if (k % 3 == 0) {
      ASSERT_TRUE(log->Rotate().ok());
    }
  }
  // A reader already inside the first segment keeps reading it after the
  // file is deleted (its descriptor stays open)...
  std::unique_ptr<LogReader> early = log->NewReader(0);
  EXPECT_THAT(Seqs(ReadAll(*early, 1)), ElementsAre(1));
  ASSERT_TRUE(log->DeleteSegmentsUpTo(3).ok());
  EXPECT_THAT(Seqs(ReadAll(*early, 2)), ElementsAre(2, 3));
  EXPECT_THAT(Seqs(ReadAll(*early)), ElementsAre(4, 5, 6));
  // ... but a new one cannot start there.
  std::unique_ptr<LogReader> late = log->NewReader(1);
  std::vector<LogRecord> out;
  const absl::Status gone = late->Next(10, absl::Now(), &out);
  EXPECT_EQ(gone.code(), absl::StatusCode::kOutOfRange) << gone;
  EXPECT_THAT(std::string(gone.message()), HasSubstr("seq 2"));
  std::unique_ptr<LogReader> at_start = log->NewReader(3);
  EXPECT_THAT(Seqs(ReadAll(*at_start)), ElementsAre(4, 5, 6));
}

TEST(LogReaderTest, IntervalPolicyShowsRecordsOnlyOnceFsynced) {
  const std::string dir = testing::MakeTempDir("log");
  RatingLogOptions options;
  options.sync = SyncPolicy::kInterval;
  options.interval = absl::Milliseconds(20);
  std::unique_ptr<RatingLog> log = MustOpen(dir, options);
  ASSERT_NE(log, nullptr);
  std::unique_ptr<LogReader> reader = log->NewReader(0);
  AppendOne(*log, Rec("u", "1", 1, 0));
  // Append returned after write(); the flusher fsyncs within the interval
  // and wakes the reader.
  std::vector<LogRecord> out;
  ASSERT_TRUE(reader->Next(10, absl::Now() + absl::Seconds(30), &out).ok());
  EXPECT_THAT(Seqs(out), ElementsAre(1));
  EXPECT_GE(log->stats().syncs, 1u);
}

TEST(RatingLogTest, NumberedAppendsKeepTheirSeqsAndSkipWhatIsHere) {
  const std::string dir = testing::MakeTempDir("log");
  {
    std::unique_ptr<RatingLog> log = MustOpen(dir);
    ASSERT_NE(log, nullptr);
    std::vector<LogRecord> batch = {Rec("a", "1", 1, 0), Rec("a", "2", 2, 0)};
    batch[0].seq = 1;
    batch[1].seq = 2;
    ASSERT_EQ(*log->AppendNumbered(&batch), 2u);
    // 1 and 2 again (a replica that asked again) plus 3: only 3 is new.
    std::vector<LogRecord> again = {Rec("a", "1", 1, 0), Rec("a", "2", 2, 0),
                                    Rec("b", "3", 3, 0)};
    for (size_t k = 0; k < again.size(); ++k) again[k].seq = k + 1;
    ASSERT_EQ(*log->AppendNumbered(&again), 3u);
    ASSERT_EQ(again.size(), 1u);
    EXPECT_EQ(again[0].item, "3");
    // A gap is refused, and nothing of the batch is appended.
    std::vector<LogRecord> gap = {Rec("c", "4", 4, 0), Rec("c", "6", 6, 0)};
    gap[0].seq = 4;
    gap[1].seq = 6;
    const absl::StatusOr<uint64_t> refused = log->AppendNumbered(&gap);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(log->last_seq(), 3u);
  }
  absl::StatusOr<std::vector<LogRecord>> all = Replay(dir);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_THAT(Seqs(*all), ElementsAre(1, 2, 3));
  EXPECT_EQ((*all)[2].user, "b");
}

TEST(RatingLogTest, SkipToLeavesAGapThatASnapshotAtItsEndCovers) {
  const std::string dir = testing::MakeTempDir("log");
  {
    std::unique_ptr<RatingLog> log = MustOpen(dir);
    ASSERT_NE(log, nullptr);
    AppendOne(*log, Rec("a", "1", 1, 0));
    AppendOne(*log, Rec("a", "2", 1, 0));
    ASSERT_TRUE(log->SkipTo(1).ok());  // already past: nothing happens
    EXPECT_EQ(log->last_seq(), 2u);
    ASSERT_TRUE(log->SkipTo(10).ok());
    EXPECT_EQ(log->last_seq(), 10u);
    EXPECT_EQ(AppendOne(*log, Rec("a", "11", 1, 0)), 11u);
  }
  EXPECT_THAT(SegmentNames(dir),
              ElementsAre("ratings-00000000000000000001.log",
                          "ratings-00000000000000000011.log"));
  // Only a snapshot at seq 10 or later makes the gap acceptable.
  EXPECT_EQ(Replay(dir, 0).status().code(), absl::StatusCode::kDataLoss);
  absl::StatusOr<std::vector<LogRecord>> after = Replay(dir, 10);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_THAT(Seqs(*after), ElementsAre(11));

  // From an empty segment, that segment makes way for the new one.
  const std::string fresh = testing::MakeTempDir("fresh");
  {
    std::unique_ptr<RatingLog> log = MustOpen(fresh);
    ASSERT_NE(log, nullptr);
    ASSERT_TRUE(log->SkipTo(5).ok());
    EXPECT_THAT(SegmentNames(fresh),
                ElementsAre("ratings-00000000000000000006.log"));
    EXPECT_EQ(AppendOne(*log, Rec("a", "6", 1, 0)), 6u);
  }
  absl::StatusOr<std::vector<LogRecord>> six = Replay(fresh, 5);
  ASSERT_TRUE(six.ok()) << six.status();
  EXPECT_THAT(Seqs(*six), ElementsAre(6));
}

}  // namespace
}  // namespace recsys
