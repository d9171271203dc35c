// Helpers shared by the tests: where the MovieLens copies live, temporary
// directories, and generated rating data with planted structure.
#ifndef RECSYS_TESTS_TEST_UTIL_H_
#define RECSYS_TESTS_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "models/model.h"
#include "models/ratings.h"

namespace recsys::testing {

// The shared MovieLens directory (RECSYS_TEST_DATA_DIR, else the project's
// ../shared/data), or "" when it does not exist.
std::string SharedDataDir();
// SharedDataDir()/name when that directory exists, else "".
std::string SharedDataset(const std::string& name);

// A fresh empty directory under the test's temporary directory.
std::string MakeTempDir(const std::string& tag);
void WriteFile(const std::string& path, const std::string& contents);
// The files under `dir` (recursively) whose bytes hold `needle` anywhere:
// what an erasure must leave empty.
std::vector<std::string> FilesHolding(const std::string& dir,
                                      const std::string& needle);
// Runs `command` through the shell; returns its exit code (-1 if it did not
// exit normally) and everything it wrote to stdout.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult RunCommand(const std::string& command);

// Writes `data` as "user,item,rating,timestamp" lines; returns `path`.
std::string WriteRatingsCsv(const RatingData& data, const std::string& path);

// Ratings r = clip(round(mu + b_u + b_i + p_u.q_i + noise)) with rank-`rank`
// factors, for a random fraction `density` of the users x items pairs, on the
// 1..5 scale. External ids are "u<index>" / "i<index>"; every user and item
// has at least one rating.
RatingData PlantedData(int32_t users, int32_t items, int32_t rank,
                       double density, double noise, uint64_t seed,
                       bool round_to_stars = false);

// A small ALS model of `data` (8 factors, 8 iterations, 2 threads): the
// first model of the engine tests' servers.
Model SmallAlsModel(const RatingData& data);
// The same for implicit feedback: a small iALS model of `data` (whose
// feedback must be Feedback::kImplicit).
Model SmallIalsModel(const RatingData& data);

}  // namespace recsys::testing

#endif  // RECSYS_TESTS_TEST_UTIL_H_
