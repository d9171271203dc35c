#include "models/model_io.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/crc32c.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/model.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Payload offsets from the table in model_io.h: kind (4 bytes) and the
// fixed-width fields (164 bytes) come before the shape.
constexpr size_t kShapeOffset = kModelHeaderBytes + 4 + 164;
// The version 5 fields (feedback, confidence_alpha, confidence_eps) end 52
// bytes before the shape (scale to last_validation_rmse follow them).
constexpr size_t kV5Fields = kShapeOffset - 52 - 12;
// What a version 4 file ends with when its model has no rank_bias and an
// empty selection report: B = 0, then T = 0, budget, work, seconds,
// validation users and ratings, and an empty summary.
constexpr size_t kEmptyV4Tail = 4 + 4 + 5 * 8 + 4;

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> FilesIn(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

void PutU32(std::string* bytes, size_t offset, uint32_t value) {
  std::memcpy(bytes->data() + offset, &value, sizeof(value));
}

// Recomputes the header checksum after a test edits the payload on purpose,
// so the payload checks (not the checksum) have to catch the edit.
void FixChecksum(std::string* bytes) {
  const uint64_t crc = Crc32c(bytes->data() + kModelHeaderBytes,
                              bytes->size() - kModelHeaderBytes);
  std::memcpy(bytes->data() + 24, &crc, sizeof(crc));
}

void FillRandom(std::mt19937* rng, float* data, int64_t n) {
  std::normal_distribution<float> gauss(0.0f, 0.3f);
  for (int64_t k = 0; k < n; ++k) data[k] = gauss(*rng);
}

// Every field set, none to its default.
Model RichModel() {
  std::mt19937 rng(7);
  Model m;
  m.kind = ModelKind::kAls;
  m.params.factors = 5;
  m.params.epochs = 17;
  m.params.learning_rate = 0.0123f;
  m.params.lr_decay = 0.875f;
  m.params.reg = 0.031f;
  m.params.reg_bias = 0.002f;
  m.params.init_std = 0.11f;
  m.params.baseline_reg_item = 3.5f;
  m.params.baseline_reg_user = 7.25f;
  m.params.fold_in_reg = 0.125f;
  m.params.fold_in_reg_bias = 0.0625f;
  m.params.implicit_weight = 0.25f;
  m.params.reg_exponent = 0.5f;
  m.params.cg_steps = 7;
  m.params.seed = 0xFEEDFACE12345678ULL;
  m.params.burn_in = 13;
  m.params.samples = 3;
  m.params.value_weight = 0.375f;
  m.params.rank_factors = 19;
  m.params.rank_epochs = 23;
  m.params.rank_reg = 0.0078125f;
  m.scale = {0.5f, 10.0f};
  m.mu = 3.5172f;
  m.train_seconds = 12.375;
  m.watermark = {123456789, 0xDEADBEEFCAFEF00DULL};
  m.log_sequence = 987654321012ULL;
  m.last_validation_rmse = 0.875;
  for (const char* id : {"alice", "bob", "u-3", "ユーザー4"})
    m.users.Insert(id);
  for (const char* id : {"tt0095765", "42", "i/3"}) m.items.Insert(id);
  m.item_info = {{"Cinéma Paradiso (1988)", {"Drama", "Romance"}},
                 {"Toy Story (1995)", {"Animation", "Children's", "Comedy"}},
                 {"", {}}};
  m.item_info[1].retired = true;
  m.item_counts = {31, 0, 7};
  m.user_bias.resize(4);
  m.item_bias.resize(3);
  m.user_factors.resize(4, 5);
  m.item_factors.resize(3, 5);
  FillRandom(&rng, m.user_bias.data(), m.user_bias.size());
  FillRandom(&rng, m.item_bias.data(), m.item_bias.size());
  FillRandom(&rng, m.user_factors.data(), m.user_factors.size());
  FillRandom(&rng, m.item_factors.data(), m.item_factors.size());
  // alice rated items 0 and 2, bob nothing, u-3 item 1, the last user all.
  m.user_ratings.offsets = {0, 2, 2, 3, 6};
  m.user_ratings.cols = {0, 2, 1, 0, 1, 2};
  m.user_ratings.values = {4.5f, 1.0f, 10.0f, 0.5f, 3.0f, 7.5f};
  m.user_ratings.times = {881250949, -5, 0, 1700000000123LL, 7, 8};
  m.params.popularity_weight = 0.75f;
  m.params.target_min = 2.5f;
  m.params.confidence_alpha = 0.7f;
  m.params.confidence_eps = 2.5f;
  m.feedback = Feedback::kImplicit;
  m.rank_bias.resize(3);
  FillRandom(&rng, m.rank_bias.data(), m.rank_bias.size());
  SelectionTrial t;
  t.candidate = "ials factors=64 reg=0.1";
  t.kind = ModelKind::kIals;
  t.rung = 2;
  t.work = 16;
  t.ndcg = 0.3125;
  t.seconds = 1.5;
  t.chosen = true;
  m.selection.trials.push_back(t);
  t.candidate = "bayes";
  t.kind = ModelKind::kBayes;
  t.part = SelectionTrial::kRating;
  t.rung = 0;
  t.ndcg = -1;
  t.rmse = 0.875;
  t.chosen = false;
  m.selection.trials.push_back(t);
  m.selection.budget = 400;
  m.selection.work = 216;
  m.selection.seconds = 9.25;
  m.selection.validation_users = 943;
  m.selection.validation_ratings = 19960;
  m.selection.summary = "hybrid: ranking ials; ratings bayes";
  return m;
}

// RichModel without what version 4 added, so it reads the same in every
// version.
Model PlainRichModel() {
  Model m = RichModel();
  m.params.popularity_weight = 0;
  m.params.target_min = 0;
  m.params.confidence_alpha = 0;
  m.params.confidence_eps = 1;
  m.feedback = Feedback::kExplicit;
  m.rank_bias.resize(0);
  m.selection = SelectionReport();
  return m;
}

bool SameFloats(const float* a, const float* b, int64_t n) {
  return n == 0 || std::memcmp(a, b, n * sizeof(float)) == 0;
}

void ExpectSameModel(const Model& want, const Model& got) {
  EXPECT_EQ(got.kind, want.kind);
  EXPECT_EQ(got.feedback, want.feedback);
  EXPECT_EQ(got.params.confidence_alpha, want.params.confidence_alpha);
  EXPECT_EQ(got.params.confidence_eps, want.params.confidence_eps);
  EXPECT_EQ(got.params.factors, want.params.factors);
  EXPECT_EQ(got.params.epochs, want.params.epochs);
  EXPECT_EQ(got.params.learning_rate, want.params.learning_rate);
  EXPECT_EQ(got.params.lr_decay, want.params.lr_decay);
  EXPECT_EQ(got.params.reg, want.params.reg);
  EXPECT_EQ(got.params.reg_bias, want.params.reg_bias);
  EXPECT_EQ(got.params.init_std, want.params.init_std);
  EXPECT_EQ(got.params.baseline_reg_item, want.params.baseline_reg_item);
  EXPECT_EQ(got.params.baseline_reg_user, want.params.baseline_reg_user);
  EXPECT_EQ(got.params.fold_in_reg, want.params.fold_in_reg);
  EXPECT_EQ(got.params.fold_in_reg_bias, want.params.fold_in_reg_bias);
  EXPECT_EQ(got.params.implicit_weight, want.params.implicit_weight);
  EXPECT_EQ(got.params.reg_exponent, want.params.reg_exponent);
  EXPECT_EQ(got.params.cg_steps, want.params.cg_steps);
  EXPECT_EQ(got.params.seed, want.params.seed);
  EXPECT_EQ(got.params.burn_in, want.params.burn_in);
  EXPECT_EQ(got.params.samples, want.params.samples);
  EXPECT_EQ(got.params.value_weight, want.params.value_weight);
  EXPECT_EQ(got.params.rank_factors, want.params.rank_factors);
  EXPECT_EQ(got.params.rank_epochs, want.params.rank_epochs);
  EXPECT_EQ(got.params.rank_reg, want.params.rank_reg);
  EXPECT_EQ(got.params.rank_kind, want.params.rank_kind);
  EXPECT_EQ(got.params.popularity_weight, want.params.popularity_weight);
  EXPECT_EQ(got.params.target_min, want.params.target_min);
  ASSERT_EQ(got.rank_bias.size(), want.rank_bias.size());
  EXPECT_TRUE(SameFloats(got.rank_bias.data(), want.rank_bias.data(),
                         want.rank_bias.size()));
  ASSERT_EQ(got.selection.trials.size(), want.selection.trials.size());
  for (size_t k = 0; k < want.selection.trials.size(); ++k) {
    const SelectionTrial& a = got.selection.trials[k];
    const SelectionTrial& b = want.selection.trials[k];
    EXPECT_EQ(a.candidate, b.candidate);
    EXPECT_EQ(a.kind, b.kind);
    EXPECT_EQ(a.part, b.part);
    EXPECT_EQ(a.rung, b.rung);
    EXPECT_EQ(a.work, b.work);
    EXPECT_EQ(a.ndcg, b.ndcg);
    EXPECT_EQ(a.rmse, b.rmse);
    EXPECT_EQ(a.seconds, b.seconds);
    EXPECT_EQ(a.chosen, b.chosen);
  }
  EXPECT_EQ(got.selection.budget, want.selection.budget);
  EXPECT_EQ(got.selection.work, want.selection.work);
  EXPECT_EQ(got.selection.seconds, want.selection.seconds);
  EXPECT_EQ(got.selection.validation_users, want.selection.validation_users);
  EXPECT_EQ(got.selection.validation_ratings,
            want.selection.validation_ratings);
  EXPECT_EQ(got.selection.summary, want.selection.summary);
  EXPECT_EQ(got.scale.min, want.scale.min);
  EXPECT_EQ(got.scale.max, want.scale.max);
  EXPECT_EQ(got.mu, want.mu);
  EXPECT_EQ(got.train_seconds, want.train_seconds);
  EXPECT_EQ(got.watermark.num_ratings, want.watermark.num_ratings);
  EXPECT_EQ(got.watermark.hash, want.watermark.hash);
  EXPECT_EQ(got.log_sequence, want.log_sequence);
  EXPECT_EQ(got.last_validation_rmse, want.last_validation_rmse);

  ASSERT_EQ(got.num_users(), want.num_users());
  ASSERT_EQ(got.num_items(), want.num_items());
  ASSERT_EQ(got.factors(), want.factors());
  ASSERT_EQ(got.user_bias.size(), want.user_bias.size());
  ASSERT_EQ(got.item_bias.size(), want.item_bias.size());
  ASSERT_EQ(got.user_factors.rows(), want.user_factors.rows());
  ASSERT_EQ(got.user_factors.cols(), want.user_factors.cols());
  ASSERT_EQ(got.item_factors.rows(), want.item_factors.rows());
  EXPECT_TRUE(SameFloats(got.user_bias.data(), want.user_bias.data(),
                         want.user_bias.size()));
  EXPECT_TRUE(SameFloats(got.item_bias.data(), want.item_bias.data(),
                         want.item_bias.size()));
  EXPECT_TRUE(SameFloats(got.user_factors.data(), want.user_factors.data(),
                         want.user_factors.size()));
  EXPECT_TRUE(SameFloats(got.item_factors.data(), want.item_factors.data(),
                         want.item_factors.size()));
  EXPECT_EQ(got.item_counts, want.item_counts);
  EXPECT_EQ(got.user_ratings.offsets, want.user_ratings.offsets);
  EXPECT_EQ(got.user_ratings.cols, want.user_ratings.cols);
  EXPECT_EQ(got.user_ratings.values, want.user_ratings.values);
  if (want.user_ratings.times.empty()) {
    // Saved as zeros.
    EXPECT_EQ(got.user_ratings.times,
              std::vector<int64_t>(want.user_ratings.cols.size(), 0));
  } else {
    EXPECT_EQ(got.user_ratings.times, want.user_ratings.times);
  }

  EXPECT_EQ(got.users.ids(), want.users.ids());
  EXPECT_EQ(got.items.ids(), want.items.ids());
  for (int32_t u = 0; u < want.num_users(); ++u) {
    EXPECT_EQ(got.users.Find(want.users.External(u)), u);
  }
  for (int32_t i = 0; i < want.num_items(); ++i) {
    EXPECT_EQ(got.items.Find(want.items.External(i)), i);
  }
  ASSERT_EQ(got.item_info.size(), want.item_info.size());
  for (size_t i = 0; i < want.item_info.size(); ++i) {
    EXPECT_EQ(got.item_info[i].title, want.item_info[i].title);
    EXPECT_EQ(got.item_info[i].genres, want.item_info[i].genres);
    EXPECT_EQ(got.item_info[i].retired, want.item_info[i].retired) << i;
  }
}

TEST(Crc32cTest, MatchesStandardCheckValueAndContinues) {
  const std::string text = "123456789";
  EXPECT_EQ(Crc32c(text.data(), text.size()), 0xE3069283u);
  EXPECT_EQ(Crc32c(text.data() + 4, 5, Crc32c(text.data(), 4)), 0xE3069283u);
  EXPECT_EQ(Crc32c(nullptr, 0), 0u);
  // RFC 3720 B.4 vectors, long enough for the 8-bytes-at-a-time loop.
  const std::string zeros(32, '\0'), ones(32, '\xFF');
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(Crc32c(ones.data() + 13, 19, Crc32c(ones.data(), 13)), 0x62A8AB43u);
}

TEST(ModelIoTest, RoundTripKeepsEveryField) {
  const std::string path = testing::MakeTempDir("io") + "/als.model";
  const Model model = RichModel();
  ASSERT_EQ(SaveModel(model, path), absl::OkStatus());
  absl::StatusOr<Model> loaded = LoadModel(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameModel(model, *loaded);
  EXPECT_EQ(loaded->Predict(1, 2), model.Predict(1, 2));
}

TEST(ModelIoTest, RoundTripBaselineWithoutFactors) {
  const RatingData data = testing::PlantedData(30, 20, 2, 0.3, 0.1, 5);
  Hyperparameters params;
  params.reg_bias = 0.5f;
  Model model;
  InitModelFrom(data, ModelKind::kBaseline, params, /*factors=*/0, &model);
  std::mt19937 rng(3);
  FillRandom(&rng, model.user_bias.data(), model.user_bias.size());
  FillRandom(&rng, model.item_bias.data(), model.item_bias.size());
  ASSERT_EQ(model.factors(), 0);

  const std::string path = testing::MakeTempDir("io") + "/baseline.model";
  ASSERT_EQ(SaveModel(model, path), absl::OkStatus());
  absl::StatusOr<Model> loaded = LoadModel(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameModel(model, *loaded);
  EXPECT_EQ(loaded->user_factors.rows(), 30);
  EXPECT_EQ(loaded->item_factors.rows(), 20);
}

TEST(ModelIoTest, EmptyModelRoundTrips) {
  const std::string path = testing::MakeTempDir("io") + "/empty.model";
  const Model model;
  ASSERT_EQ(SaveModel(model, path), absl::OkStatus());
  absl::StatusOr<Model> loaded = LoadModel(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameModel(model, *loaded);
}

TEST(ModelIoTest, EveryTruncationIsRefused) {
  const std::string dir = testing::MakeTempDir("io");
  ASSERT_EQ(SaveModel(RichModel(), dir + "/full.model"), absl::OkStatus());
  const std::string bytes = ReadBytes(dir + "/full.model");
  ASSERT_GT(bytes.size(), kModelHeaderBytes);
  for (size_t size = 0; size < bytes.size(); ++size) {
    // A fresh name each time: rewriting one file makes ext4 flush it on close.
    const std::string path = absl::StrCat(dir, "/cut", size, ".model");
    testing::WriteFile(path, bytes.substr(0, size));
    absl::StatusOr<Model> loaded = LoadModel(path);
    ASSERT_FALSE(loaded.ok()) << "prefix of " << size << " bytes loaded";
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss) << size;
    EXPECT_THAT(std::string(loaded.status().message()), StartsWith(path));
    EXPECT_THAT(std::string(loaded.status().message()), HasSubstr("truncated"));
  }
  std::filesystem::remove_all(dir);
}

TEST(ModelIoTest, EverySingleByteCorruptionIsRefused) {
  const std::string dir = testing::MakeTempDir("io");
  ASSERT_EQ(SaveModel(RichModel(), dir + "/full.model"), absl::OkStatus());
  const std::string bytes = ReadBytes(dir + "/full.model");
  for (size_t at = 0; at < bytes.size(); ++at) {
    for (const int mask : {0x01, 0x80}) {
      std::string bad = bytes;
      bad[at] = static_cast<char>(bad[at] ^ mask);
      const std::string path =
          absl::StrCat(dir, "/flip", at, "_", mask, ".model");
      testing::WriteFile(path, bad);
      absl::StatusOr<Model> loaded = LoadModel(path);
      EXPECT_FALSE(loaded.ok()) << "byte " << at << " ^ " << mask;
    }
  }
  std::filesystem::remove_all(dir);
}

TEST(ModelIoTest, CorruptPayloadWithValidChecksumNeverCrashes) {
  // Stands in for a buggy or hostile writer: the checksum passes, so only the
  // payload checks stand between a bad count and a huge allocation.
  absl::StatusOr<std::string> bytes = SerializeModel(RichModel());
  ASSERT_TRUE(bytes.ok());
  for (size_t at = kModelHeaderBytes; at < bytes->size(); ++at) {
    for (const unsigned char value : {0x00, 0x01, 0x7F, 0x80, 0xFF}) {
      std::string bad = *bytes;
      bad[at] = static_cast<char>(value);
      FixChecksum(&bad);
      absl::StatusOr<Model> loaded = ParseModel(bad, "fuzz");
      if (!loaded.ok()) continue;
      // Whatever loads must be self-consistent.
      EXPECT_EQ(loaded->user_bias.size(), loaded->num_users());
      EXPECT_EQ(loaded->user_factors.rows(), loaded->num_users());
      EXPECT_EQ(loaded->item_factors.rows(), loaded->num_items());
      EXPECT_EQ(loaded->item_info.size(), loaded->item_counts.size());
      EXPECT_EQ(loaded->num_items(), loaded->item_bias.size());
    }
  }
}

TEST(ModelIoTest, HugeCountsAreRefusedBeforeAllocating) {
  absl::StatusOr<std::string> bytes = SerializeModel(RichModel());
  ASSERT_TRUE(bytes.ok());
  for (size_t field = 0; field < 3; ++field) {
    for (const uint32_t count : {0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFFu}) {
      std::string bad = *bytes;
      PutU32(&bad, kShapeOffset + 4 * field, count);
      FixChecksum(&bad);
      absl::StatusOr<Model> loaded = ParseModel(bad, "huge");
      ASSERT_FALSE(loaded.ok()) << field << " " << count;
      EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss);
      EXPECT_THAT(std::string(loaded.status().message()),
                  StartsWith("huge: corrupt"));
    }
  }
  // The first user id's length prefix follows the fixed-size arrays.
  const Model m = RichModel();
  const size_t first_id =
      kShapeOffset + 12 +
      4 * (m.num_users() + m.num_items()) * (1 + m.factors()) +
      4 * m.num_items() + 8 + 8 * (m.num_users() + 1) +
      16 * m.user_ratings.cols.size();
  ASSERT_EQ(bytes->substr(first_id + 4, 5), "alice");
  std::string bad = *bytes;
  PutU32(&bad, first_id, 0xFFFFFFF0u);
  FixChecksum(&bad);
  absl::StatusOr<Model> loaded = ParseModel(bad, "long");
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr("user id"));
}

TEST(ModelIoTest, UnknownKindIsRefused) {
  absl::StatusOr<std::string> bytes = SerializeModel(RichModel());
  ASSERT_TRUE(bytes.ok());
  PutU32(&*bytes, kModelHeaderBytes, 99);
  FixChecksum(&*bytes);
  absl::StatusOr<Model> loaded = ParseModel(*bytes, "kind");
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(std::string(loaded.status().message()),
              HasSubstr("unknown model kind 99"));
}

TEST(ModelIoTest, DuplicateIdsAreRefused) {
  // Ids of equal length, so one can be edited into another in place.
  Model m = RichModel();
  m.items = IdMap();
  for (const char* id : {"aa", "ab", "ac"}) m.items.Insert(id);
  absl::StatusOr<std::string> bytes = SerializeModel(m);
  ASSERT_TRUE(bytes.ok());
  const size_t at = bytes->find("ab");
  ASSERT_NE(at, std::string::npos);
  (*bytes)[at + 1] = 'a';
  FixChecksum(&*bytes);
  absl::StatusOr<Model> loaded = ParseModel(*bytes, "dup");
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(loaded.status().message()),
              HasSubstr("item id 'aa' at index 1 duplicates index 0"));
}

TEST(ModelIoTest, UnknownFeedbackIsDataLoss) {
  absl::StatusOr<std::string> bytes = SerializeModel(RichModel());
  ASSERT_TRUE(bytes.ok());
  std::string bad = *bytes;
  PutU32(&bad, kV5Fields, 2);  // 0 explicit, 1 implicit
  FixChecksum(&bad);
  absl::StatusOr<Model> loaded = ParseModel(bad, "feedback");
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(loaded.status().message()),
              HasSubstr("unknown feedback 2"));
}

TEST(ModelIoTest, OtherVersionIsFailedPrecondition) {
  const std::string path = testing::MakeTempDir("io") + "/v2.model";
  ASSERT_EQ(SaveModel(RichModel(), path), absl::OkStatus());
  std::string bytes = ReadBytes(path);
  PutU32(&bytes, 8, kModelFormatVersion + 1);
  testing::WriteFile(path, bytes);
  absl::StatusOr<Model> loaded = LoadModel(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(loaded.status().message()), StartsWith(path));
  EXPECT_THAT(
      std::string(loaded.status().message()),
      HasSubstr("model format version 6, this build reads versions 1 to 5"));
}

// The bytes of `file` as version `version` of the format, from the current
// version's bytes of a PlainRichModel-like model without retired items:
// version 3 lacks rank_kind, popularity_weight and target_min (12 bytes
// before scale.min, 52 bytes before the shape) and the rank_bias and
// selection tail; version 2 also lacks the retired list (R = 0, the last 4
// bytes then), and version 1 also lacks burn_in, samples, value_weight and
// the rank_* fields (24 bytes before those 12) and the posterior shape (8
// bytes before R, zeros for kinds other than bayes).
std::string AsOlderVersion(const std::string& file, uint32_t version) {
  // Version 4 lacks the 12 bytes of version 5's fields.
  std::string old = file.substr(0, kV5Fields) + file.substr(kV5Fields + 12);
  const size_t v4_fields = kV5Fields - 12;
  if (version <= 3) {
    old =
        old.substr(0, v4_fields) +
        old.substr(v4_fields + 12, old.size() - kEmptyV4Tail - v4_fields - 12);
  }
  if (version <= 2) {
    EXPECT_EQ(old.substr(old.size() - 12), std::string(12, '\0'));
    old = old.substr(0, old.size() - 4);
  }
  if (version == 1) {
    const size_t seed_end = v4_fields - 24;
    old = old.substr(0, seed_end) +
          old.substr(seed_end + 24, old.size() - 32 - seed_end);
  }
  PutU32(&old, 8, version);
  const uint64_t payload = old.size() - kModelHeaderBytes;
  std::memcpy(old.data() + 16, &payload, sizeof(payload));
  FixChecksum(&old);
  return old;
}

// Older files must still load, with the fields they lack at defaults.
TEST(ModelIoTest, VersionOneToFourFilesStillLoad) {
  Model model = PlainRichModel();
  model.item_info[1].retired = true;
  absl::StatusOr<std::string> v4 = SerializeModel(model);
  ASSERT_TRUE(v4.ok());
  absl::StatusOr<Model> four = ParseModel(AsOlderVersion(*v4, 4), "v4");
  ASSERT_TRUE(four.ok()) << four.status();
  ExpectSameModel(model, *four);
  EXPECT_EQ(four->feedback, Feedback::kExplicit);
  absl::StatusOr<Model> v3 = ParseModel(AsOlderVersion(*v4, 3), "v3");
  ASSERT_TRUE(v3.ok()) << v3.status();
  ExpectSameModel(model, *v3);

  for (ItemInfo& info : model.item_info) info.retired = false;
  v4 = SerializeModel(model);
  ASSERT_TRUE(v4.ok());
  absl::StatusOr<Model> loaded = ParseModel(AsOlderVersion(*v4, 2), "v2");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameModel(model, *loaded);

  model.params.burn_in = 0;
  model.params.samples = 0;
  model.params.value_weight = 0;
  model.params.rank_factors = 0;
  model.params.rank_epochs = 0;
  model.params.rank_reg = 0;
  v4 = SerializeModel(model);
  ASSERT_TRUE(v4.ok());
  loaded = ParseModel(AsOlderVersion(*v4, 1), "v1");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameModel(model, *loaded);
}

// The retired list must name items of the catalogue, in increasing order.
TEST(ModelIoTest, BadRetiredListIsDataLoss) {
  absl::StatusOr<std::string> bytes = SerializeModel(PlainRichModel());
  ASSERT_TRUE(bytes.ok());
  for (uint32_t index : {3u, 7u}) {  // 3 items
    std::string bad = *bytes;
    PutU32(&bad, bad.size() - kEmptyV4Tail - 4, index);
    FixChecksum(&bad);
    absl::StatusOr<Model> loaded = ParseModel(bad, "retired");
    ASSERT_FALSE(loaded.ok()) << index;
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(loaded.status().message()),
                HasSubstr("retired item index"));
  }
  // Two retired items, 0 and 2: the list is R = 2, 0, 2.
  Model two = PlainRichModel();
  two.item_info[1].retired = false;
  two.item_info[0].retired = two.item_info[2].retired = true;
  bytes = SerializeModel(two);
  ASSERT_TRUE(bytes.ok());
  for (const auto& [first, second] :
       std::vector<std::pair<uint32_t, uint32_t>>{{2, 2}, {2, 0}}) {
    std::string bad = *bytes;
    PutU32(&bad, bad.size() - kEmptyV4Tail - 8, first);
    PutU32(&bad, bad.size() - kEmptyV4Tail - 4, second);
    FixChecksum(&bad);
    absl::StatusOr<Model> loaded = ParseModel(bad, "retired");
    ASSERT_FALSE(loaded.ok()) << first << "," << second;
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(loaded.status().message()),
                HasSubstr("out of order"));
  }
  absl::StatusOr<Model> good = ParseModel(*bytes, "retired");
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_TRUE(good->item_info[0].retired);
  EXPECT_FALSE(good->item_info[1].retired);
  EXPECT_TRUE(good->item_info[2].retired);
}

// A posterior whose shape does not match the factor columns, or one on a
// kind that has none, is damage.
TEST(ModelIoTest, MismatchedPosteriorIsDataLoss) {
  absl::StatusOr<std::string> bytes = SerializeModel(PlainRichModel());
  ASSERT_TRUE(bytes.ok());
  std::string bad = *bytes;
  // S = 1, D = 0 against 5 columns
  PutU32(&bad, bad.size() - kEmptyV4Tail - 16, 1);
  FixChecksum(&bad);
  absl::StatusOr<Model> loaded = ParseModel(bad, "posterior");
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr("posterior"));
}

TEST(ModelIoTest, OtherFilesAreNotModels) {
  const std::string dir = testing::MakeTempDir("io");
  ASSERT_EQ(SaveModel(RichModel(), dir + "/m.model"), absl::OkStatus());
  std::string bytes = ReadBytes(dir + "/m.model");
  bytes[0] = 'X';
  testing::WriteFile(dir + "/magic.model", bytes);
  testing::WriteFile(dir + "/ratings.csv", "user,item,rating\n1,2,3\n");
  testing::WriteFile(dir + "/short.txt", "abc");
  for (const char* name : {"magic.model", "ratings.csv", "short.txt"}) {
    const std::string path = dir + "/" + name;
    absl::StatusOr<Model> loaded = LoadModel(path);
    ASSERT_FALSE(loaded.ok()) << name;
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(loaded.status().message()), StartsWith(path));
    EXPECT_THAT(std::string(loaded.status().message()),
                HasSubstr("not a recsys model file"));
  }
}

TEST(ModelIoTest, TrailingBytesAreRefused) {
  const std::string path = testing::MakeTempDir("io") + "/long.model";
  ASSERT_EQ(SaveModel(RichModel(), path), absl::OkStatus());
  testing::WriteFile(path, ReadBytes(path) + "garbage");
  absl::StatusOr<Model> loaded = LoadModel(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(loaded.status().message()),
              HasSubstr("7 trailing bytes"));
}

TEST(ModelIoTest, MissingFileIsNotFound) {
  const std::string path = testing::MakeTempDir("io") + "/absent.model";
  absl::StatusOr<Model> loaded = LoadModel(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(loaded.status().message()), StartsWith(path));
}

TEST(ModelIoTest, SaveIntoMissingDirectoryFailsAndWritesNothing) {
  const std::string dir = testing::MakeTempDir("io");
  const std::string path = dir + "/no/such/dir/m.model";
  const absl::Status status = SaveModel(RichModel(), path);
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), StartsWith(path));
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("No such file or directory"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/no"));
  EXPECT_TRUE(FilesIn(dir).empty());
}

TEST(ModelIoTest, FailedRenameRemovesTheTemporaryFile) {
  const std::string dir = testing::MakeTempDir("io");
  // A non-empty directory cannot be replaced by a file.
  std::filesystem::create_directories(dir + "/taken/child");
  const absl::Status status = SaveModel(RichModel(), dir + "/taken");
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), StartsWith(dir + "/taken"));
  EXPECT_EQ(FilesIn(dir), std::vector<std::string>{"taken"});
}

TEST(ModelIoTest, InconsistentModelIsNotSaved) {
  const std::string dir = testing::MakeTempDir("io");
  Model model = RichModel();
  model.user_bias.resize(2);
  const absl::Status status = SaveModel(model, dir + "/bad.model");
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("user_bias"));
  EXPECT_TRUE(FilesIn(dir).empty());

  model = RichModel();
  model.item_info.pop_back();
  EXPECT_FALSE(SaveModel(model, dir + "/bad.model").ok());
  model = RichModel();
  model.item_factors.resize(3, 4);
  EXPECT_FALSE(SaveModel(model, dir + "/bad.model").ok());
  model = RichModel();
  model.user_ratings.values.pop_back();
  EXPECT_FALSE(SaveModel(model, dir + "/bad.model").ok());
  model = RichModel();
  model.user_ratings.offsets.pop_back();
  EXPECT_FALSE(SaveModel(model, dir + "/bad.model").ok());
  EXPECT_TRUE(FilesIn(dir).empty());
}

// A payload whose checksum is right but whose rated-item lists point
// outside the catalogue must still be refused: serving indexes with them.
TEST(ModelIoTest, RatedItemOutsideCatalogueIsRefused) {
  Model model = RichModel();
  model.user_ratings.cols[1] = 3;  // only items 0..2 exist
  // Save does not look inside the lists, so this writes a bad file.
  absl::StatusOr<std::string> bytes = SerializeModel(model);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  const absl::StatusOr<Model> loaded = ParseModel(*bytes, "bad");
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(loaded.status().message()),
              HasSubstr("outside 3 items"));
}

TEST(ModelIoTest, SaveLeavesOnlyTheModelFile) {
  const std::string dir = testing::MakeTempDir("io");
  ASSERT_EQ(SaveModel(RichModel(), dir + "/m.model"), absl::OkStatus());
  ASSERT_EQ(SaveModel(RichModel(), dir + "/m.model"), absl::OkStatus());
  EXPECT_EQ(FilesIn(dir), std::vector<std::string>{"m.model"});
}

TEST(ModelIoTest, OverwriteReplacesTheFileAtomically) {
  const std::string dir = testing::MakeTempDir("io");
  const std::string path = dir + "/m.model";
  const Model old_model = RichModel();
  ASSERT_EQ(SaveModel(old_model, path), absl::OkStatus());
  const std::string old_bytes = ReadBytes(path);

  // A reader that opened the old file keeps seeing all of it: the new model
  // arrives as a new file renamed over the name, not by rewriting in place.
  std::ifstream reader(path, std::ios::binary);
  ASSERT_TRUE(reader.is_open());

  Model new_model = RichModel();
  new_model.kind = ModelKind::kSgd;
  new_model.mu = 2.0f;
  new_model.users.Insert("newcomer");
  new_model.user_bias.conservativeResize(5);
  new_model.user_bias[4] = 0.25f;
  new_model.user_factors.conservativeResize(5, Eigen::NoChange);
  new_model.user_factors.row(4).setConstant(-0.5f);
  new_model.user_ratings.offsets.push_back(
      new_model.user_ratings.offsets.back());
  ASSERT_EQ(SaveModel(new_model, path), absl::OkStatus());

  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(reader), {}), old_bytes);
  absl::StatusOr<Model> loaded = LoadModel(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameModel(new_model, *loaded);
  EXPECT_EQ(FilesIn(dir), std::vector<std::string>{"m.model"});
}

// A hybrid's ranking part must be one the library can fold in, and the
// popularity prior must cover the catalogue or nothing.
TEST(ModelIoTest, BadRankKindOrRankBiasIsRefused) {
  Model m = RichModel();
  m.rank_bias.resize(2);
  EXPECT_EQ(SerializeModel(m).status().code(),
            absl::StatusCode::kInvalidArgument);
  m = RichModel();
  absl::StatusOr<std::string> bytes = SerializeModel(m);
  ASSERT_TRUE(bytes.ok());
  // The kind and the ranking kind: hybrid with a Bayesian "ranking part".
  std::string bad = *bytes;
  PutU32(&bad, kModelHeaderBytes, static_cast<uint32_t>(ModelKind::kHybrid));
  PutU32(&bad, kV5Fields - 12, static_cast<uint32_t>(ModelKind::kBayes));
  FixChecksum(&bad);
  absl::StatusOr<Model> loaded = ParseModel(bad, "rank");
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(loaded.status().message()),
              HasSubstr("ranking part"));
}

// The trials of a selection survive a round trip through a file, and a
// corrupt trial is refused, not trusted.
TEST(ModelIoTest, SelectionReportRoundTripsAndCorruptionIsDataLoss) {
  const Model m = RichModel();
  absl::StatusOr<std::string> bytes = SerializeModel(m);
  ASSERT_TRUE(bytes.ok());
  absl::StatusOr<Model> loaded = ParseModel(*bytes, "sel");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->selection.trials.size(), 2u);
  EXPECT_TRUE(loaded->selection.trials[0].chosen);
  EXPECT_EQ(loaded->selection.trials[1].part, SelectionTrial::kRating);
  // The first trial's part field (after its candidate string and kind).
  const size_t at = bytes->find("ials factors=64 reg=0.1");
  ASSERT_NE(at, std::string::npos);
  std::string bad = *bytes;
  PutU32(&bad, at + 23 + 4, 7);
  FixChecksum(&bad);
  loaded = ParseModel(bad, "sel");
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(loaded.status().message()),
              HasSubstr("selection trial"));
}

}  // namespace
}  // namespace recsys
