// Synthetic MovieLens-like rating data of any size, so that scale can be
// measured without downloads.
//
// Ratings come from a planted biased low-rank model,
//   r = mu + b_u + b_i + p_u . q_i + noise,
// rounded to the scale's step and clipped. Who rates what follows long
// tails: item popularity is Zipf-Mandelbrot (weight (rank + offset)^-a over
// a random order of the items) and user activity is Zipf over a random order
// of the users with a floor (ML-25M: every user has at least 20 ratings).
// Each user rates distinct items. The output is generated user by user and
// streamed, so memory is O(items * rank + users), not O(ratings).
//
//   GenerateOptions opt;
//   opt.users = 162000;
//   opt.items = 62000;
//   opt.ratings = 25000000;
//   std::ofstream out("ratings.csv");
//   RECSYS_ASSIGN_OR_RETURN(GenerateStats s, WriteGeneratedCsv(opt, out,
//                                                              nullptr));
#ifndef RECSYS_TRAINER_GENERATE_H_
#define RECSYS_TRAINER_GENERATE_H_

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/ratings.h"

namespace recsys {

struct GenerateOptions {
  int32_t users = 1000;
  int32_t items = 500;
  int64_t ratings = 50000;  // exactly this many are generated
  int32_t rank = 10;        // planted factors; 0 = biases only
  RatingScale scale = {0.5f, 5.0f};
  float step = 0.5f;   // rating granularity: 0.5 = half stars, 1 = stars
  float noise = 0.5f;  // std of the Gaussian noise on the 1..5-wide scale
  // Item popularity: weight (popularity rank + offset)^-exponent. The
  // offset keeps the head from saturating (the top item of ML-25M is rated
  // by about half the users, not by everyone).
  double item_exponent = 1.1;
  double item_offset = 50;
  // User activity: floor plus a share of the rest proportional to
  // (activity rank + 1)^-exponent.
  double user_exponent = 0.5;
  int32_t min_user_ratings = 20;
  uint64_t seed = 1;
  // Timestamps (seconds since the epoch) fall in this range.
  int64_t first_timestamp = 820454400;  // 1996-01-01
  int64_t last_timestamp = 1569888000;  // 2019-10-01
};

absl::Status ValidateGenerateOptions(const GenerateOptions& options);

// One generated rating; users and items are 0-based indices (the CSV writes
// them as 1-based ids, like MovieLens).
struct GeneratedRating {
  int32_t user = 0;
  int32_t item = 0;
  float value = 0;
  int64_t timestamp = 0;
};

struct GenerateStats {
  int64_t ratings = 0;
  int32_t items_rated = 0;  // items with at least one rating
  int64_t max_user_ratings = 0;
  int64_t max_item_ratings = 0;
  double mean_rating = 0;
};

// Calls `sink` for every rating, user by user (users in index order, each
// user's items in increasing index order). Deterministic for a given
// options.seed.
absl::StatusOr<GenerateStats> GenerateRatings(
    const GenerateOptions& options,
    const std::function<void(const GeneratedRating&)>& sink);

// The same ratings as an in-memory RatingData with ids "1".."N" (every user
// and item index present, in index order) and synthetic titles.
absl::StatusOr<RatingData> GenerateRatingData(const GenerateOptions& options);

// Writes "userId,movieId,rating,timestamp" lines with that header (the
// ML-25M ratings.csv layout) to `ratings`, and, when `movies` is not null,
// "movieId,title,genres" lines for every item (movies.csv).
absl::StatusOr<GenerateStats> WriteGeneratedCsv(const GenerateOptions& options,
                                                std::ostream& ratings,
                                                std::ostream* movies);

// recsys-trainer generate: writes the files (each to a temporary name,
// renamed into place when complete) and prints a summary to `log`.
struct GenerateCommand {
  GenerateOptions options;
  std::string out;         // ratings file
  std::string movies_out;  // optional catalogue file
};
absl::Status RunGenerate(const GenerateCommand& cmd, std::ostream& log);

}  // namespace recsys

#endif  // RECSYS_TRAINER_GENERATE_H_
