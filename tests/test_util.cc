#include "tests/test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <random>
#include <sstream>
#include <system_error>
#include <vector>

#include "Eigen/Core"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "models/train.h"

namespace recsys::testing {

std::string SharedDataDir() {
  std::string dir;
  if (const char* env = std::getenv("RECSYS_TEST_DATA_DIR"); env && *env) {
    dir = env;
  } else {
    dir = RECSYS_SOURCE_DIR "/../shared/data";
  }
  return std::filesystem::is_directory(dir) ? dir : "";
}

std::string SharedDataset(const std::string& name) {
  const std::string root = SharedDataDir();
  if (root.empty()) return "";
  const std::string dir = root + "/" + name;
  return std::filesystem::is_directory(dir) ? dir : "";
}

namespace {

// The directories MakeTempDir made. They are removed when the test program
// exits, unless a test failed (then they are kept to look at, and their
// place is printed) or RECSYS_KEEP_TEST_DIRS is set. A forked child that
// exits normally leaves them to its parent.
class TempDirs {
 public:
  TempDirs() : owner_(::getpid()) {}
  TempDirs(const TempDirs&) = delete;
  TempDirs& operator=(const TempDirs&) = delete;

  ~TempDirs() {
    if (::getpid() != owner_ || dirs_.empty()) return;
    const char* keep = std::getenv("RECSYS_KEEP_TEST_DIRS");
    if (::testing::UnitTest::GetInstance()->Failed() || (keep && *keep)) {
      std::fprintf(stderr, "kept %zu temporary directories under %s\n",
                   dirs_.size(),
                   std::filesystem::temp_directory_path().c_str());
      return;
    }
    for (const auto& dir : dirs_) {
      std::error_code ec;  // A directory already gone is no error.
      std::filesystem::remove_all(dir, ec);
    }
  }

  void Add(std::filesystem::path dir) {
    std::lock_guard<std::mutex> lock(mu_);
    dirs_.push_back(std::move(dir));
  }

 private:
  const pid_t owner_;
  std::mutex mu_;
  std::vector<std::filesystem::path> dirs_;
};

TempDirs& MadeDirs() {
  // Constructed after gtest's UnitTest, so destroyed before it.
  static TempDirs dirs;
  return dirs;
}

}  // namespace

std::string MakeTempDir(const std::string& tag) {
  static std::atomic<int> counter{0};
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  // A parameterised test's name holds '/': keep the directory flat.
  std::string test = info ? info->name() : "test";
  std::replace(test.begin(), test.end(), '/', '_');
  const std::string name =
      absl::StrCat("recsys_", test, "_", tag, "_", ::getpid(), "_", counter++);
  std::filesystem::path dir = std::filesystem::temp_directory_path() / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  MadeDirs().Add(dir);
  return dir.string();
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out << contents;
}

std::vector<std::string> FilesHolding(const std::string& dir,
                                      const std::string& needle) {
  std::vector<std::string> found;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)),
                            std::istreambuf_iterator<char>());
    if (bytes.find(needle) != std::string::npos) {
      found.push_back(e.path().string());
    }
  }
  return found;
}

CommandResult RunCommand(const std::string& command) {
  CommandResult r;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string WriteRatingsCsv(const RatingData& data, const std::string& path) {
  std::ostringstream out;
  for (const Rating& r : data.ratings) {
    out << data.users.External(r.user) << ',' << data.items.External(r.item)
        << ',' << r.value << ',' << r.timestamp << '\n';
  }
  WriteFile(path, out.str());
  return path;
}

RatingData PlantedData(int32_t users, int32_t items, int32_t rank,
                       double density, double noise, uint64_t seed,
                       bool round_to_stars) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  const float scale = 1.0f / std::sqrt(static_cast<float>(rank));
  Eigen::MatrixXf p(users, rank), q(items, rank);
  for (int32_t u = 0; u < users; ++u)
    for (int32_t f = 0; f < rank; ++f) p(u, f) = gauss(rng) * scale;
  for (int32_t i = 0; i < items; ++i)
    for (int32_t f = 0; f < rank; ++f) q(i, f) = gauss(rng) * scale;
  Eigen::VectorXf bu(users), bi(items);
  for (int32_t u = 0; u < users; ++u) bu[u] = 0.3f * gauss(rng);
  for (int32_t i = 0; i < items; ++i) bi[i] = 0.5f * gauss(rng);

  RatingData data;
  data.scale = {1.0f, 5.0f};
  for (int32_t u = 0; u < users; ++u) data.users.Insert(absl::StrCat("u", u));
  for (int32_t i = 0; i < items; ++i) data.items.Insert(absl::StrCat("i", i));
  data.SyncItemInfo();
  for (int32_t i = 0; i < items; ++i) {
    data.item_info[i].title = absl::StrCat("Item ", i);
  }
  std::vector<bool> item_seen(items, false);
  auto add = [&](int32_t u, int32_t i, int64_t ts) {
    float r = 3.5f + bu[u] + bi[i] + p.row(u).dot(q.row(i)) +
              static_cast<float>(noise) * gauss(rng);
    if (round_to_stars) r = std::round(r);
    r = data.scale.Clip(r);
    data.ratings.push_back({u, i, r, ts});
    item_seen[i] = true;
  };
  int64_t ts = 1000000000;
  for (int32_t u = 0; u < users; ++u) {
    bool any = false;
    for (int32_t i = 0; i < items; ++i) {
      if (coin(rng) < density) {
        add(u, i, ts++);
        any = true;
      }
    }
    if (!any) add(u, static_cast<int32_t>(rng() % items), ts++);
  }
  for (int32_t i = 0; i < items; ++i) {
    if (!item_seen[i]) add(static_cast<int32_t>(rng() % users), i, ts++);
  }
  data.stats.lines = static_cast<int64_t>(data.ratings.size());
  return data;
}

namespace {

Model SmallModel(const RatingData& data, ModelKind kind) {
  Hyperparameters p = DefaultHyperparameters(kind);
  p.factors = 8;
  p.epochs = 8;
  TrainOptions opt;
  opt.threads = 2;
  absl::StatusOr<Model> m = TrainModel(data, kind, p, opt);
  EXPECT_TRUE(m.ok()) << m.status();
  return *std::move(m);
}

}  // namespace

Model SmallAlsModel(const RatingData& data) {
  return SmallModel(data, ModelKind::kAls);
}

Model SmallIalsModel(const RatingData& data) {
  return SmallModel(data, ModelKind::kIals);
}

}  // namespace recsys::testing
