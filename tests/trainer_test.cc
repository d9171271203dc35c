// The trainer's commands end to end on generated data written to files.
#include "trainer/trainer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/loaders.h"
#include "models/model_io.h"
#include "models/train.h"
#include "tests/test_util.h"
#include "trainer/export.h"

namespace recsys {
namespace {

using ::testing::HasSubstr;

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("trainer");
    RatingData all = testing::PlantedData(120, 90, 3, 0.2, 0.3, 17, true);
    RatingData train, test;
    RandomSplit(all, 0.2, 3, &train, &test);
    train_file_ = testing::WriteRatingsCsv(train, dir_ + "/train.csv");
    test_file_ = testing::WriteRatingsCsv(test, dir_ + "/test.csv");
  }
  std::string dir_, train_file_, test_file_;
};

TEST_F(TrainerTest, TrainWritesAModelThatRecommendsUnratedItems) {
  TrainCommand cmd;
  cmd.source.data = train_file_;
  cmd.model.kind = ModelKind::kSgd;
  cmd.params.epochs = 10;
  cmd.threads = 2;
  cmd.validation_fraction = 0.1;
  cmd.out = dir_ + "/model.rsm";
  std::ostringstream log;
  ASSERT_EQ(RunTrain(cmd, log), absl::OkStatus());
  EXPECT_THAT(log.str(), HasSubstr("epoch  10/10"));
  EXPECT_THAT(log.str(), HasSubstr("validation RMSE"));

  absl::StatusOr<Model> model = LoadModel(cmd.out);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->kind, ModelKind::kSgd);
  EXPECT_GT(model->watermark.num_ratings, 0);

  RecommendCommand rec;
  rec.model_file = cmd.out;
  rec.user = "u5";
  rec.k = 10;
  std::ostringstream shown;
  ASSERT_EQ(RunRecommend(rec, shown), absl::OkStatus());
  const int32_t u = model->users.Find("u5");
  ASSERT_GE(u, 0);
  // Ten result lines after the two header lines, none an item u5 rated, each
  // rating on the 1..5 scale.
  std::vector<std::string> lines =
      absl::StrSplit(shown.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 12u) << shown.str();
  const SparseRows& rated = model->user_ratings;
  for (size_t l = 2; l < lines.size(); ++l) {
    std::vector<std::string> f =
        absl::StrSplit(lines[l], ' ', absl::SkipEmpty());
    const int32_t item = model->items.Find(f[1]);
    ASSERT_GE(item, 0) << lines[l];
    for (int64_t k = rated.offsets[u]; k < rated.offsets[u + 1]; ++k) {
      EXPECT_NE(rated.cols[k], item) << "already rated: " << lines[l];
    }
    const float r = std::stof(f[2]);
    EXPECT_GE(r, 1.0f);
    EXPECT_LE(r, 5.0f);
  }
}

TEST_F(TrainerTest, EvaluateFilesWritesEveryPredictionAndTopTen) {
  EvaluateCommand cmd;
  cmd.kinds = {ModelKind::kAls};
  cmd.params.factors = 4;
  cmd.params.epochs = 5;
  cmd.train_file = train_file_;
  cmd.test_file = test_file_;
  cmd.predictions_out = dir_ + "/pred.tsv";
  cmd.recommendations_out = dir_ + "/recs.tsv";
  std::ostringstream out;
  ASSERT_EQ(RunEvaluate(cmd, out), absl::OkStatus());
  EXPECT_THAT(out.str(), HasSubstr("als"));

  std::ifstream test(test_file_), pred(cmd.predictions_out);
  std::string line;
  int test_lines = 0, pred_lines = 0;
  while (std::getline(test, line)) ++test_lines;
  while (std::getline(pred, line)) {
    ++pred_lines;
    EXPECT_EQ(std::vector<std::string>(absl::StrSplit(line, '\t')).size(), 3u);
  }
  EXPECT_EQ(pred_lines, test_lines);
  std::ifstream recs(cmd.recommendations_out);
  int rec_lines = 0;
  while (std::getline(recs, line)) ++rec_lines;
  EXPECT_GT(rec_lines, 0);
  EXPECT_EQ(rec_lines % 10, 0);  // full lists: the catalogue is large enough
}

// Selection carves its validation split from the training file alone: a
// poisoned test file (every value flipped, half its rows dropped) leaves
// the choice and every trial's score unchanged.
TEST_F(TrainerTest, SelectionNeverReadsTheTestData) {
  auto selected = [&](const std::string& test_file) {
    EvaluateCommand cmd;  // kinds: auto
    cmd.budget = 150;
    cmd.params.epochs = 30;  // a quick Bayesian rating part
    cmd.params.burn_in = 10;
    cmd.params.samples = 4;
    cmd.threads = 2;
    cmd.train_file = train_file_;
    cmd.test_file = test_file;
    std::ostringstream out;
    EXPECT_EQ(RunEvaluate(cmd, out), absl::OkStatus());
    std::string line;
    for (absl::string_view l : absl::StrSplit(out.str(), '\n')) {
      if (absl::StartsWith(l, "selected for auto: ")) line = std::string(l);
    }
    return line;
  };
  const std::string clean = selected(test_file_);
  ASSERT_FALSE(clean.empty());
  std::ifstream in(test_file_);
  std::ostringstream poisoned;
  std::string row;
  std::getline(in, row);
  poisoned << row << "\n";  // the header
  for (int n = 0; std::getline(in, row); ++n) {
    if (n % 2 == 1) continue;
    std::vector<std::string> f = absl::StrSplit(row, ',');
    double v = 0;
    ASSERT_TRUE(absl::SimpleAtod(f[2], &v)) << row;
    f[2] = absl::StrCat(6 - v);
    poisoned << absl::StrJoin(f, ",") << "\n";
  }
  const std::string poison_file = dir_ + "/poisoned.csv";
  testing::WriteFile(poison_file, poisoned.str());
  EXPECT_EQ(selected(poison_file), clean);
}

// train --model=auto writes the trials into the model file and prints them
// as a table with the winners marked.
TEST_F(TrainerTest, TrainSelectsAndRecordsTheTrials) {
  TrainCommand cmd;
  cmd.source.data = train_file_;
  cmd.model.budget = 150;
  cmd.params.epochs = 30;
  cmd.params.burn_in = 10;
  cmd.params.samples = 4;
  cmd.out = dir_ + "/auto.rsm";
  std::ostringstream log;
  ASSERT_EQ(RunTrain(cmd, log), absl::OkStatus());
  EXPECT_THAT(log.str(), HasSubstr("model selection: "));
  EXPECT_THAT(log.str(), HasSubstr("chosen: "));
  EXPECT_THAT(log.str(), HasSubstr("\n*ranking"));
  absl::StatusOr<Model> model = LoadModel(cmd.out);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_FALSE(model->selection.empty());
  EXPECT_LE(model->selection.work, 150);
  // --noselect: auto means the hybrid's defaults, trained as told.
  cmd.model.select = false;
  cmd.params = ParamOverrides();
  cmd.params.epochs = 30;
  cmd.params.burn_in = 10;
  cmd.params.samples = 4;
  std::ostringstream exact;
  ASSERT_EQ(RunTrain(cmd, exact), absl::OkStatus());
  model = LoadModel(cmd.out);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_TRUE(model->selection.empty());
  EXPECT_EQ(model->kind, ModelKind::kHybrid);
  EXPECT_THAT(exact.str(), HasSubstr("training hybrid"));
}

TEST_F(TrainerTest, ClearErrors) {
  TrainCommand cmd;
  cmd.source.data = dir_ + "/missing.csv";
  cmd.out = dir_ + "/m.rsm";
  std::ostringstream log;
  const absl::Status missing = RunTrain(cmd, log);
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.message()), HasSubstr("missing.csv"));

  cmd.source.data = train_file_;
  cmd.out = "";
  EXPECT_EQ(RunTrain(cmd, log).code(), absl::StatusCode::kInvalidArgument);

  // Told before any data is read or model trained: a directory that is not
  // there, and a bad hyper-parameter.
  cmd.source.data = dir_ + "/missing.csv";
  cmd.out = dir_ + "/no/such/dir/m.rsm";
  const absl::Status no_dir = RunTrain(cmd, log);
  EXPECT_EQ(no_dir.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(no_dir.message()),
            absl::StrCat("--out: the directory ", dir_,
                         "/no/such/dir does not exist"));
  cmd.out = dir_ + "/m.rsm";
  cmd.params.epochs = 0;
  const absl::Status bad = RunTrain(cmd, log);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), HasSubstr("epochs"));

  RecommendCommand rec;
  rec.model_file = dir_ + "/nothing.rsm";
  rec.user = "1";
  EXPECT_EQ(RunRecommend(rec, log).code(), absl::StatusCode::kNotFound);
}

// tune tries distinct settings: all of a grid smaller than its budget, each
// once, and a table of trials best first; bad spaces are refused up front.
TEST_F(TrainerTest, TuneTriesEachSettingOnceAndRanksThem) {
  TuneCommand cmd;
  cmd.source.data = train_file_;
  cmd.kind = ModelKind::kSgd;
  cmd.params.epochs = 3;
  cmd.space = "reg=0.05,0.1,0.05;factors=2,4";  // 0.05 twice: 4 settings
  cmd.trials = 10;
  cmd.threads = 1;
  std::ostringstream out;
  ASSERT_TRUE(RunTune(cmd, out).ok()) << out.str();
  const std::string text = out.str();
  EXPECT_THAT(text, HasSubstr("the space has 4 settings: each is tried once "
                              "(4 trials, not 10)"));
  EXPECT_THAT(text, HasSubstr("metric RMSE (lower is better)"));
  std::set<std::string> settings;
  std::vector<double> ranked;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, "trial ")) {
      settings.insert(std::string(line.substr(line.find("reg="))));
    }
  }
  EXPECT_EQ(settings,
            (std::set<std::string>{"reg=0.05 factors=2", "reg=0.1 factors=2",
                                   "reg=0.05 factors=4", "reg=0.1 factors=4"}));
  const std::string best = text.substr(text.find("best first:\n") + 12);
  for (absl::string_view line : absl::StrSplit(best, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f =
        absl::StrSplit(line, ' ', absl::SkipEmpty());
    ASSERT_GE(f.size(), 2u) << line;
    double score = 0;
    ASSERT_TRUE(absl::SimpleAtod(f[1], &score)) << line;
    ranked.push_back(score);
  }
  ASSERT_EQ(ranked.size(), 4u) << text;
  EXPECT_TRUE(std::is_sorted(ranked.begin(), ranked.end())) << text;

  // A budget smaller than the grid: that many distinct settings.
  cmd.space = "reg=0.01,0.02,0.03,0.04,0.05;factors=2,3,4";
  cmd.trials = 6;
  out.str("");
  ASSERT_TRUE(RunTune(cmd, out).ok()) << out.str();
  settings.clear();
  for (absl::string_view line : absl::StrSplit(out.str(), '\n')) {
    if (absl::StartsWith(line, "trial ")) {
      settings.insert(std::string(line.substr(line.find("reg="))));
    }
  }
  EXPECT_EQ(settings.size(), 6u) << out.str();

  cmd.space = "reg=0.1;factor=4";
  const absl::Status unknown = RunTune(cmd, out);
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.message()),
              HasSubstr("unknown field 'factor' (fields: factors, epochs"));
  cmd.space = "reg=0.1";
  cmd.trials = 0;
  EXPECT_EQ(RunTune(cmd, out).code(), absl::StatusCode::kInvalidArgument);
}

// A setting that diverges is listed as such, below every other, and the
// search goes on; train refuses it and writes no file.
TEST_F(TrainerTest, DivergedSettingsAreListedLastAndNotWritten) {
  TuneCommand cmd;
  cmd.source.data = train_file_;
  cmd.kind = ModelKind::kSgd;
  cmd.params.epochs = 5;
  cmd.space = "lr=5,0.01";
  cmd.trials = 2;
  cmd.threads = 1;
  std::ostringstream out;
  ASSERT_TRUE(RunTune(cmd, out).ok()) << out.str();
  const std::string best = out.str().substr(out.str().find("best first:\n"));
  const std::vector<std::string> lines =
      absl::StrSplit(best, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << out.str();
  EXPECT_THAT(lines[1], HasSubstr("lr=0.01"));
  EXPECT_THAT(lines[1], ::testing::Not(HasSubstr("diverged")));
  EXPECT_THAT(lines[2], HasSubstr("diverged"));
  EXPECT_THAT(lines[2], HasSubstr("lr=5"));

  TrainCommand train;
  train.source.data = train_file_;
  train.model.kind = ModelKind::kSgd;
  train.params.learning_rate = 5.0f;
  train.out = dir_ + "/diverged.rsm";
  std::ostringstream log;
  const absl::Status refused = RunTrain(train, log);
  EXPECT_TRUE(TrainingDiverged(refused)) << refused;
  EXPECT_FALSE(std::filesystem::exists(train.out));
}

Model TrainBaseline(const RatingData& data) {
  TrainOptions opt;
  opt.threads = 1;
  absl::StatusOr<Model> m =
      TrainModel(data, ModelKind::kBaseline,
                 DefaultHyperparameters(ModelKind::kBaseline), opt);
  EXPECT_TRUE(m.ok()) << m.status();
  return *std::move(m);
}

// export writes what the loaders read back: every rating (values to the
// last bit, timestamps), titles with commas and quotes, genres; one user's
// share on its own; and a clear error for ids ratings.csv cannot carry.
TEST_F(TrainerTest, ExportWritesWhatTheLoadersReadBack) {
  RatingData data = testing::PlantedData(30, 25, 2, 0.3, 0.3, 5, false);
  for (size_t k = 0; k < data.ratings.size(); ++k) {
    data.ratings[k].timestamp = 1000000 + static_cast<int64_t>(k);
  }
  Model m = TrainBaseline(data);
  m.item_info[0].title = "Say \"Hi\", World (1999)";
  m.item_info[0].genres = {"Comedy", "Drama"};
  const std::string model_file = dir_ + "/export.rsm";
  ASSERT_EQ(SaveModel(m, model_file), absl::OkStatus());

  ExportCommand cmd;
  cmd.model_file = model_file;
  cmd.out_dir = dir_ + "/exported";
  std::ostringstream log;
  ASSERT_EQ(RunExport(cmd, log), absl::OkStatus());
  EXPECT_THAT(log.str(), HasSubstr(absl::StrCat(
                             "exported ", data.ratings.size(), " ratings by ",
                             data.num_users(), " users and ")));
  LoadOptions opt;
  absl::StatusOr<RatingData> back = LoadRatings(cmd.out_dir, opt);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->ratings.size(), data.ratings.size());
  std::set<std::tuple<std::string, std::string, float, int64_t>> want, got;
  for (const Rating& r : data.ratings) {
    want.insert({data.users.External(r.user), data.items.External(r.item),
                 r.value, r.timestamp});
  }
  for (const Rating& r : back->ratings) {
    got.insert({back->users.External(r.user), back->items.External(r.item),
                r.value, r.timestamp});
  }
  EXPECT_EQ(got, want);
  const int32_t first = back->items.Find(m.items.External(0));
  ASSERT_GE(first, 0);
  EXPECT_EQ(back->item_info[first].title, "Say \"Hi\", World (1999)");
  EXPECT_EQ(back->item_info[first].genres,
            (std::vector<std::string>{"Comedy", "Drama"}));

  // One user's ratings, and only the items they rated.
  cmd.user = "u3";
  cmd.out_dir = dir_ + "/one";
  ASSERT_EQ(RunExport(cmd, log), absl::OkStatus());
  back = LoadRatings(cmd.out_dir, opt);
  ASSERT_TRUE(back.ok()) << back.status();
  const int32_t u3 = m.users.Find("u3");
  EXPECT_EQ(static_cast<int64_t>(back->ratings.size()),
            m.user_ratings.size(u3));
  EXPECT_EQ(back->num_users(), 1);
  EXPECT_EQ(static_cast<int64_t>(back->num_items()), m.user_ratings.size(u3));
  cmd.user = "nobody";
  EXPECT_EQ(RunExport(cmd, log).code(), absl::StatusCode::kNotFound);

  // An id with a comma would split into two fields: refused, by name.
  RatingData odd;
  odd.users.Insert("smith, j");
  odd.items.Insert("i1");
  odd.item_info.resize(1);
  odd.ratings.push_back({0, 0, 4.0f, 0});
  ASSERT_EQ(SaveModel(TrainBaseline(odd), dir_ + "/odd.rsm"), absl::OkStatus());
  cmd.model_file = dir_ + "/odd.rsm";
  cmd.user.clear();
  cmd.out_dir = dir_ + "/odd";
  const absl::Status refused = RunExport(cmd, log);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(), HasSubstr("user id 'smith, j' holds a comma"));
  EXPECT_FALSE(std::filesystem::exists(cmd.out_dir + "/ratings.csv"));
}

TEST(TrainerRealDataTest, MovieLens100kShowcaseNeverRepeatsRatedFilms) {
  const std::string ml = testing::SharedDataset("ml-100k");
  if (ml.empty()) {
    GTEST_SKIP() << "MovieLens copy not found: ../shared/data/ml-100k (set "
                    "RECSYS_TEST_DATA_DIR)";
  }
  const std::string dir = testing::MakeTempDir("showcase");
  TrainCommand cmd;
  cmd.source.data = ml;
  cmd.out = dir + "/ml-100k.rsm";
  cmd.quiet = true;
  cmd.threads = 2;
  std::ostringstream log;
  ASSERT_EQ(RunTrain(cmd, log), absl::OkStatus());
  absl::StatusOr<Model> model = LoadModel(cmd.out);
  ASSERT_TRUE(model.ok());
  RecommendCommand rec;
  rec.model_file = cmd.out;
  rec.user = "1";
  std::ostringstream shown;
  ASSERT_EQ(RunRecommend(rec, shown), absl::OkStatus());
  EXPECT_THAT(shown.str(), HasSubstr("272 rated films excluded"));
  // Ten films with titles and release years.
  std::vector<std::string> lines =
      absl::StrSplit(shown.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 12u);
  for (size_t l = 2; l < lines.size(); ++l) {
    EXPECT_THAT(lines[l], ::testing::ContainsRegex("\\(19[0-9][0-9]\\)"));
  }
  // Toy Story (item 1) is rated by user 1: it must not be shown.
  EXPECT_THAT(shown.str(), ::testing::Not(HasSubstr("Toy Story")));
}

}  // namespace
}  // namespace recsys
