#include "models/datasets.h"

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/loaders.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

namespace fs = std::filesystem;
using ::recsys::testing::MakeTempDir;
using ::recsys::testing::WriteFile;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Sets (or unsets, with nullopt) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      setenv(name, value->c_str(), 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  return names;
}

bool Runs(const std::vector<std::string>& argv) {
  std::string ignored;
  absl::StatusOr<int> code = internal::RunCommand(argv, &ignored);
  return code.ok() && *code == 0;
}

// Builds <root>/<top>.zip holding the tree <root>/<top>/, with python3's
// zipfile or else the zip tool. Returns "" when neither is available.
std::string MakeZip(const std::string& root, const std::string& top) {
  const std::string zip = root + "/" + top + ".zip";
  const char* kScript =
      "import os, sys, zipfile\n"
      "out, root, top = sys.argv[1:4]\n"
      "with zipfile.ZipFile(out, 'w') as z:\n"
      "    for d, _, files in os.walk(os.path.join(root, top)):\n"
      "        for f in files:\n"
      "            p = os.path.join(d, f)\n"
      "            z.write(p, os.path.relpath(p, root))\n";
  if (Runs({"python3", "-c", kScript, zip, root, top})) return zip;
  if (Runs({"sh", "-c", "cd \"$1\" && zip -qr \"$2\" \"$3\"", "sh", root, zip,
            top})) {
    return zip;
  }
  return "";
}

std::string Md5(const std::string& file) {
  std::string out;
  absl::StatusOr<int> code = internal::RunCommand({"md5sum", file}, &out);
  if (!code.ok() || *code != 0) return "";
  absl::StatusOr<std::string> md5 = internal::ParseMd5Listing(out);
  return md5.ok() ? *md5 : "";
}

// A zip of a tiny dataset "ml-test" whose ratings file is ratings.csv.
class FetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* tool : {"curl", "md5sum", "unzip"}) {
      if (!Runs({"sh", "-c", "command -v \"$1\"", "sh", tool})) {
        GTEST_SKIP() << tool << " is not installed";
      }
    }
    src_ = MakeTempDir("src");
    fs::create_directories(src_ + "/ml-test");
    WriteFile(src_ + "/ml-test/ratings.csv",
              "userId,movieId,rating,timestamp\n1,10,4.0,1\n2,10,3.5,2\n");
    WriteFile(src_ + "/ml-test/movies.csv",
              "movieId,title,genres\n10,\"Ten, The (2000)\",Drama\n");
    zip_ = MakeZip(src_, "ml-test");
    if (zip_.empty()) GTEST_SKIP() << "neither python3 nor zip can build a zip";
    md5_ = Md5(zip_);
    ASSERT_EQ(md5_.size(), 32u);
    data_dir_ = MakeTempDir("data") + "/cache";
  }

  DatasetInfo Info(const std::string& md5) const {
    return {"ml-test", "file://" + zip_, md5, "ratings.csv"};
  }

  std::string src_, zip_, md5_, data_dir_;
};

TEST_F(FetchTest, InstallsVerifiedArchive) {
  absl::StatusOr<std::string> dir =
      internal::FetchAndUnpack(Info(md5_), data_dir_);
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(*dir, data_dir_ + "/ml-test");
  // Only the dataset is left: no archive, no scratch directory.
  EXPECT_THAT(Entries(data_dir_), ::testing::ElementsAre("ml-test"));
  absl::StatusOr<RatingData> data = LoadRatings(*dir, {});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->ratings.size(), 2u);
  EXPECT_EQ(data->item_info[0].title, "Ten, The (2000)");
}

TEST_F(FetchTest, TakesChecksumFromPublishedMd5File) {
  WriteFile(zip_ + ".md5", "MD5 (ml-test.zip) = " + md5_ + "\n");
  absl::StatusOr<std::string> dir =
      internal::FetchAndUnpack(Info(""), data_dir_);
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_TRUE(fs::exists(*dir + "/ratings.csv"));
}

TEST_F(FetchTest, WrongMd5IsDataLossAndInstallsNothing) {
  const std::string wrong = "0123456789abcdef0123456789abcdef";
  absl::StatusOr<std::string> dir =
      internal::FetchAndUnpack(Info(wrong), data_dir_);
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(dir.status().message(), HasSubstr(wrong));
  EXPECT_THAT(dir.status().message(), HasSubstr(md5_));
  EXPECT_THAT(Entries(data_dir_), IsEmpty());

  // The same through the published-listing path.
  WriteFile(zip_ + ".md5", wrong + "  ml-test.zip\n");
  dir = internal::FetchAndUnpack(Info(""), data_dir_);
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Entries(data_dir_), IsEmpty());
}

TEST_F(FetchTest, ArchiveWithoutTheDatasetFolderIsRejected) {
  DatasetInfo info = Info(md5_);
  info.ratings_file = "u.data";
  absl::StatusOr<std::string> dir = internal::FetchAndUnpack(info, data_dir_);
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(dir.status().message(), HasSubstr("ml-test/u.data"));
  EXPECT_THAT(Entries(data_dir_), IsEmpty());
}

TEST_F(FetchTest, UnreachableUrlExplainsManualInstall) {
  DatasetInfo info = Info(md5_);
  info.url = "file:///nonexistent/ml-test.zip";
  absl::StatusOr<std::string> dir = internal::FetchAndUnpack(info, data_dir_);
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(dir.status().message(),
              HasSubstr("download file:///nonexistent/ml-test.zip yourself"));
  EXPECT_THAT(dir.status().message(),
              HasSubstr(data_dir_ + "/ml-test/ratings.csv exists"));
  EXPECT_THAT(dir.status().message(), HasSubstr("RECSYS_DATA_DIR"));
  EXPECT_THAT(Entries(data_dir_), IsEmpty());

  // A missing .md5 listing fails the same way, naming that URL.
  dir = internal::FetchAndUnpack(Info(""), data_dir_);
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(dir.status().message(), HasSubstr(zip_ + ".md5"));
}

TEST_F(FetchTest, RefusesToReplaceAPartialManualCopy) {
  fs::create_directories(data_dir_ + "/ml-test");
  WriteFile(data_dir_ + "/ml-test/movies.csv", "movieId,title,genres\n");
  absl::StatusOr<std::string> dir =
      internal::FetchAndUnpack(Info(md5_), data_dir_);
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(dir.status().message(),
              HasSubstr(data_dir_ + "/ml-test exists but has no ratings.csv"));
  EXPECT_THAT(Entries(data_dir_ + "/ml-test"),
              ::testing::ElementsAre("movies.csv"));
}

TEST(FetchToolsTest, MissingToolNamesThePackage) {
  const std::string empty = MakeTempDir("nopath");
  const ScopedEnv path("PATH", empty);
  DatasetInfo info{"ml-test", "file:///nonexistent.zip", "", "ratings.csv"};
  absl::StatusOr<std::string> dir =
      internal::FetchAndUnpack(info, MakeTempDir("data"));
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(dir.status().message(), HasSubstr("apt-get install curl"));
}

TEST(Md5ListingTest, BothFormats) {
  const std::string hex = "0e33842e24a9c977be4e0107933c0723";
  EXPECT_EQ(*internal::ParseMd5Listing("MD5 (ml-100k.zip) = " + hex + "\n"),
            hex);
  EXPECT_EQ(*internal::ParseMd5Listing(hex + "  ml-100k.zip\n"), hex);
  EXPECT_EQ(*internal::ParseMd5Listing("0E33842E24A9C977BE4E0107933C0723"),
            hex);
  EXPECT_FALSE(internal::ParseMd5Listing("<html>not found</html>").ok());
  EXPECT_FALSE(internal::ParseMd5Listing("").ok());
}

TEST(RunCommandTest, ExitCodesAndOutput) {
  std::string out;
  EXPECT_EQ(*internal::RunCommand({"sh", "-c", "echo hi; exit 3"}, &out), 3);
  EXPECT_EQ(out, "hi\n");
  // Arguments reach the program verbatim: no shell in between.
  EXPECT_EQ(*internal::RunCommand({"echo", "$HOME; ls"}, &out), 0);
  EXPECT_EQ(out, "$HOME; ls\n");
  EXPECT_FALSE(internal::RunCommand({"no-such-program-recsys"}).ok());
}

TEST(DefaultDataDirTest, FlagThenEnvThenXdgThenHome) {
  const ScopedEnv data("RECSYS_DATA_DIR", "/env/data");
  const ScopedEnv xdg("XDG_CACHE_HOME", "/xdg");
  const ScopedEnv home("HOME", "/home/someone");
  DatasetOptions options;
  options.data_dir = "/flag/data";
  EXPECT_EQ(DefaultDataDir(options), "/flag/data");
  options.data_dir.clear();
  EXPECT_EQ(DefaultDataDir(options), "/env/data");
  {
    const ScopedEnv no_data("RECSYS_DATA_DIR", std::nullopt);
    EXPECT_EQ(DefaultDataDir(options), "/xdg/recsys");
    const ScopedEnv no_xdg("XDG_CACHE_HOME", std::nullopt);
    EXPECT_EQ(DefaultDataDir(options), "/home/someone/.cache/recsys");
  }
}

TEST(BuiltinDatasetsTest, KnownNames) {
  for (const char* name :
       {"ml-100k", "ml-latest-small", "ml-1m", "ml-25m", "ml-32m"}) {
    const DatasetInfo* info = FindDataset(name);
    ASSERT_NE(info, nullptr) << name;
    EXPECT_EQ(info->url, "https://files.grouplens.org/datasets/movielens/" +
                             std::string(name) + ".zip");
  }
  EXPECT_EQ(FindDataset("ml-100k")->md5, "0e33842e24a9c977be4e0107933c0723");
  EXPECT_EQ(FindDataset("ml-1m")->ratings_file, "ratings.dat");
  EXPECT_EQ(FindDataset("ml-32m")->md5, "");
  EXPECT_EQ(FindDataset("ml-20m"), nullptr);
}

TEST(ResolveDatasetTest, FindsInstalledDatasetWithoutDownloading) {
  const std::string data_dir = MakeTempDir("installed");
  fs::create_directories(data_dir + "/ml-100k");
  WriteFile(data_dir + "/ml-100k/u.data", "1\t2\t3\t4\n");
  // With no tools in PATH any download attempt would fail.
  const ScopedEnv path("PATH", MakeTempDir("nopath"));
  DatasetOptions options;
  options.data_dir = data_dir;
  absl::StatusOr<std::string> dir = ResolveDataset("ml-100k", options);
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(*dir, data_dir + "/ml-100k");
}

TEST(ResolveDatasetTest, UnknownNameListsKnownOnes) {
  absl::StatusOr<std::string> dir = ResolveDataset("ml-20m", {});
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dir.status().message(), HasSubstr("ml-20m"));
  EXPECT_THAT(dir.status().message(),
              HasSubstr("ml-100k, ml-latest-small, ml-1m, ml-25m, ml-32m"));
}

TEST(ResolveDatasetTest, MissingWithoutDownloadSaysWhereToPutIt) {
  const std::string data_dir = MakeTempDir("empty");
  DatasetOptions options;
  options.data_dir = data_dir;
  options.download = false;
  absl::StatusOr<std::string> dir = ResolveDataset("ml-1m", options);
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(dir.status().message(), HasSubstr(data_dir));
  EXPECT_THAT(dir.status().message(),
              HasSubstr(data_dir + "/ml-1m/ratings.dat"));
  EXPECT_THAT(dir.status().message(),
              HasSubstr("https://files.grouplens.org/datasets/movielens/"
                        "ml-1m.zip"));
  EXPECT_THAT(Entries(data_dir), IsEmpty());
}

}  // namespace
}  // namespace recsys
