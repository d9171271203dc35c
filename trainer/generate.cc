#include "trainer/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"

namespace recsys {
namespace {

// MovieLens' genre vocabulary, so generated catalogues look like the real one
// to every tool that filters by genre.
constexpr const char* kGenres[] = {
    "Action", "Adventure",   "Animation", "Children", "Comedy",
    "Crime",  "Documentary", "Drama",     "Fantasy",  "Film-Noir",
    "Horror", "IMAX",        "Musical",   "Mystery",  "Romance",
    "Sci-Fi", "Thriller",    "War",       "Western"};
constexpr int kNumGenres = sizeof(kGenres) / sizeof(kGenres[0]);

// Walker/Vose alias table: O(1) draws from a fixed discrete distribution,
// which is what makes 25M weighted draws cheap.
class AliasTable {
 public:
  explicit AliasTable(const std::vector<double>& weights) {
    const size_t n = weights.size();
    prob_.resize(n);
    alias_.resize(n);
    const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
    std::vector<double> scaled(n);
    std::vector<int32_t> small, large;
    for (size_t i = 0; i < n; ++i) {
      scaled[i] = weights[i] * static_cast<double>(n) / total;
      (scaled[i] < 1.0 ? small : large).push_back(static_cast<int32_t>(i));
    }
    while (!small.empty() && !large.empty()) {
      const int32_t s = small.back(), l = large.back();
      small.pop_back();
      prob_[s] = scaled[s];
      alias_[s] = l;
      scaled[l] -= 1.0 - scaled[s];
      if (scaled[l] < 1.0) {
        large.pop_back();
        small.push_back(l);
      }
    }
    for (int32_t i : small) prob_[i] = 1.0, alias_[i] = i;
    for (int32_t i : large) prob_[i] = 1.0, alias_[i] = i;
  }

  int32_t Sample(std::mt19937_64& rng) const {
    const uint64_t r = rng();
    // High 32 bits pick the column, low 32 bits the coin: one draw per sample.
    const auto column = static_cast<int32_t>(((r >> 32) * prob_.size()) >> 32);
    const double coin = static_cast<double>(r & 0xffffffffULL) * 0x1p-32;
    return coin < prob_[column] ? column : alias_[column];
  }

 private:
  std::vector<double> prob_;
  std::vector<int32_t> alias_;
};

// The fixed half of the planted model: everything about items, and how many
// ratings each user gives. Users' own parameters are drawn as they are
// generated.
struct Planted {
  float mu = 0;
  float unit = 1;  // the scale's width relative to MovieLens' 0.5..5
  float factor_sd = 0;
  std::vector<float> item_factors;  // items x rank, row-major
  std::vector<float> item_bias;
  std::vector<double> item_weight;
  std::vector<int64_t> user_counts;
};

Planted MakePlanted(const GenerateOptions& o) {
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  Planted p;
  p.unit = (o.scale.max - o.scale.min) / 4.5f;
  // 3.5 on 0.5..5, ML-25M's mean rating.
  p.mu = o.scale.min + 0.667f * (o.scale.max - o.scale.min);
  // p . q then has a standard deviation of 0.6 on the MovieLens scale.
  p.factor_sd =
      o.rank > 0 ? std::pow(0.36f / static_cast<float>(o.rank), 0.25f) : 0.0f;
  const int32_t n_items = o.items;
  std::vector<int32_t> order(n_items);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  p.item_weight.resize(n_items);
  p.item_bias.resize(n_items);
  p.item_factors.resize(static_cast<size_t>(n_items) * o.rank);
  for (int32_t r = 0; r < n_items; ++r) {
    const int32_t i = order[r];
    p.item_weight[i] = std::pow(r + o.item_offset, -o.item_exponent);
    // Popular films are rated a little higher, as in MovieLens.
    const float lift = 0.3f * (0.5f - static_cast<float>(r) / n_items);
    p.item_bias[i] = p.unit * (0.45f * gauss(rng) + lift);
  }
  for (float& f : p.item_factors) f = p.factor_sd * gauss(rng);

  const int32_t n_users = o.users;
  const int64_t floor_count = std::min<int64_t>(
      {o.min_user_ratings, o.ratings / n_users, static_cast<int64_t>(n_items)});
  std::vector<int32_t> user_order(n_users);
  std::iota(user_order.begin(), user_order.end(), 0);
  std::shuffle(user_order.begin(), user_order.end(), rng);
  std::vector<double> w(n_users);
  double total_w = 0;
  for (int32_t r = 0; r < n_users; ++r) {
    w[user_order[r]] = std::pow(r + 1.0, -o.user_exponent);
    total_w += w[user_order[r]];
  }
  const int64_t extra = o.ratings - floor_count * n_users;
  p.user_counts.resize(n_users);
  int64_t assigned = 0;
  for (int32_t u = 0; u < n_users; ++u) {
    const auto share =
        static_cast<int64_t>(static_cast<double>(extra) * w[u] / total_w);
    p.user_counts[u] = std::min<int64_t>(floor_count + share, n_items);
    assigned += p.user_counts[u];
  }
  // Rounding and the per-user cap leave a remainder; the most active users
  // take it one rating each, so the total is exact.
  for (int64_t left = o.ratings - assigned; left > 0;) {
    for (int32_t r = 0; r < n_users && left > 0; ++r) {
      int64_t& c = p.user_counts[user_order[r]];
      if (c < n_items) ++c, --left;
    }
  }
  return p;
}

std::string ItemTitle(int32_t item) {
  // A stable pseudo-random year per item.
  const uint32_t h = static_cast<uint32_t>(item) * 2654435761u;
  return absl::StrCat("Synthetic Film ", item + 1, " (", 1920 + h % 100, ")");
}

// One to three genres from the item's strongest planted factors, so that
// genre correlates with taste as it does in real catalogues.
std::vector<std::string> ItemGenres(const Planted& p, int32_t rank,
                                    int32_t item) {
  std::vector<std::string> genres;
  if (rank == 0) {
    genres.push_back(kGenres[item % kNumGenres]);
    return genres;
  }
  const float* q = p.item_factors.data() + static_cast<size_t>(item) * rank;
  std::vector<int32_t> f(rank);
  std::iota(f.begin(), f.end(), 0);
  std::sort(f.begin(), f.end(), [&](int32_t a, int32_t b) {
    return std::abs(q[a]) > std::abs(q[b]) ||
           (std::abs(q[a]) == std::abs(q[b]) && a < b);
  });
  const int want = 1 + item % 3;
  for (int j = 0; j < rank && static_cast<int>(genres.size()) < want; ++j) {
    const int g = (2 * f[j] + (q[f[j]] > 0 ? 0 : 1)) % kNumGenres;
    const std::string name = kGenres[g];
    if (std::find(genres.begin(), genres.end(), name) == genres.end()) {
      genres.push_back(name);
    }
  }
  return genres;
}

// n distinct items, weighted, by Efraimidis-Spirakis keys: O(items), used
// when a user rates so much of the catalogue that rejection would stall.
void SampleByKeys(const Planted& p, int64_t n, std::mt19937_64& rng,
                  std::vector<double>* keys, std::vector<int32_t>* out) {
  const int32_t items = static_cast<int32_t>(p.item_weight.size());
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  keys->resize(items);
  out->resize(items);
  for (int32_t i = 0; i < items; ++i) {
    // log(U) / w; the largest keys win. 1 - uni is in (0, 1].
    (*keys)[i] = std::log(1.0 - uni(rng)) / p.item_weight[i];
    (*out)[i] = i;
  }
  std::nth_element(out->begin(), out->begin() + (n - 1), out->end(),
                   [&](int32_t a, int32_t b) {
                     return (*keys)[a] > (*keys)[b] ||
                            ((*keys)[a] == (*keys)[b] && a < b);
                   });
  out->resize(n);
}

}  // namespace

absl::Status ValidateGenerateOptions(const GenerateOptions& o) {
  if (o.users < 1 || o.items < 1) {
    return absl::InvalidArgumentError("--users and --items must be positive");
  }
  if (o.ratings < o.users) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ratings=", o.ratings,
                     " is fewer than the users: every user needs one"));
  }
  if (o.ratings > static_cast<int64_t>(o.users) * o.items) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ratings=", o.ratings, " exceeds users x items (",
                     static_cast<int64_t>(o.users) * o.items, ")"));
  }
  if (o.rank < 0 || o.rank > 1000) {
    return absl::InvalidArgumentError("--rank must be in 0..1000");
  }
  if (!o.scale.valid()) {
    return absl::InvalidArgumentError("the rating scale needs min < max");
  }
  if (!(o.step > 0) || (o.scale.max - o.scale.min) / o.step > 1000) {
    return absl::InvalidArgumentError(
        "the rating step must be positive with at most 1000 levels");
  }
  if (!(o.noise >= 0) || !(o.item_exponent >= 0) || !(o.item_offset > 0) ||
      !(o.user_exponent >= 0) || o.min_user_ratings < 1) {
    return absl::InvalidArgumentError(
        "noise and exponents must be >= 0, the item offset > 0 and the user "
        "floor >= 1");
  }
  if (o.last_timestamp <= o.first_timestamp) {
    return absl::InvalidArgumentError("the timestamp range is empty");
  }
  return absl::OkStatus();
}

absl::StatusOr<GenerateStats> GenerateRatings(
    const GenerateOptions& o,
    const std::function<void(const GeneratedRating&)>& sink) {
  RECSYS_RETURN_IF_ERROR(ValidateGenerateOptions(o));
  const Planted p = MakePlanted(o);
  const AliasTable popularity(p.item_weight);
  // A second stream, so the planted model does not depend on how many draws
  // the ratings take.
  std::mt19937_64 rng(o.seed ^ 0x9e3779b97f4a7c15ULL);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  std::exponential_distribution<double> active_days(1.0 / 200.0);

  const int32_t rank = o.rank;
  const int32_t n_items = o.items;
  // stamp[i] == u + 1 marks item i as taken by user u: no clearing per user.
  std::vector<int32_t> stamp(n_items, 0);
  std::vector<int64_t> item_counts(n_items, 0);
  std::vector<int32_t> picked;
  std::vector<double> keys;
  std::vector<float> user_vec(rank);
  const int levels =
      static_cast<int>(std::lround((o.scale.max - o.scale.min) / o.step));
  GenerateStats stats;
  double sum = 0;

  for (int32_t u = 0; u < o.users; ++u) {
    const int64_t n = p.user_counts[u];
    picked.clear();
    bool done = false;
    if (2 * n <= n_items) {
      const int64_t max_draws = 20 * n + 1000;
      for (int64_t draws = 0; draws < max_draws; ++draws) {
        const int32_t i = popularity.Sample(rng);
        if (stamp[i] == u + 1) continue;
        stamp[i] = u + 1;
        picked.push_back(i);
        if (static_cast<int64_t>(picked.size()) == n) {
          done = true;
          break;
        }
      }
    }
    if (!done) SampleByKeys(p, n, rng, &keys, &picked);
    std::sort(picked.begin(), picked.end());

    const float user_bias = p.unit * 0.35f * gauss(rng);
    for (float& f : user_vec) f = p.factor_sd * gauss(rng);
    const double start =
        o.first_timestamp + uni(rng) * (o.last_timestamp - o.first_timestamp);
    const double span = std::min(static_cast<double>(o.last_timestamp) - start,
                                 active_days(rng) * 86400.0);
    for (int32_t i : picked) {
      const float* q = p.item_factors.data() + static_cast<size_t>(i) * rank;
      float dot = 0;
      for (int32_t f = 0; f < rank; ++f) dot += user_vec[f] * q[f];
      const float x = p.mu + user_bias + p.item_bias[i] + dot +
                      p.unit * o.noise * gauss(rng);
      const long level =
          std::clamp<long>(std::lround((x - o.scale.min) / o.step), 0, levels);
      GeneratedRating r;
      r.user = u;
      r.item = i;
      r.value = std::min(o.scale.max, o.scale.min + o.step * level);
      r.timestamp = static_cast<int64_t>(start + uni(rng) * span);
      sink(r);
      sum += r.value;
      ++item_counts[i];
    }
    stats.ratings += n;
    stats.max_user_ratings = std::max(stats.max_user_ratings, n);
  }
  for (int64_t c : item_counts) {
    if (c > 0) ++stats.items_rated;
    stats.max_item_ratings = std::max(stats.max_item_ratings, c);
  }
  stats.mean_rating = stats.ratings > 0 ? sum / stats.ratings : 0;
  return stats;
}

absl::StatusOr<RatingData> GenerateRatingData(const GenerateOptions& o) {
  RECSYS_RETURN_IF_ERROR(ValidateGenerateOptions(o));
  RatingData data;
  data.scale = o.scale;
  for (int32_t u = 0; u < o.users; ++u) data.users.Insert(absl::StrCat(u + 1));
  for (int32_t i = 0; i < o.items; ++i) data.items.Insert(absl::StrCat(i + 1));
  data.SyncItemInfo();
  const Planted p = MakePlanted(o);
  for (int32_t i = 0; i < o.items; ++i) {
    data.item_info[i].title = ItemTitle(i);
    data.item_info[i].genres = ItemGenres(p, o.rank, i);
  }
  data.ratings.reserve(static_cast<size_t>(o.ratings));
  RECSYS_RETURN_IF_ERROR(
      GenerateRatings(o, [&](const GeneratedRating& r) {
        data.ratings.push_back({r.user, r.item, r.value, r.timestamp});
      }).status());
  data.stats.lines = static_cast<int64_t>(data.ratings.size());
  return data;
}

absl::StatusOr<GenerateStats> WriteGeneratedCsv(const GenerateOptions& o,
                                                std::ostream& ratings,
                                                std::ostream* movies) {
  RECSYS_RETURN_IF_ERROR(ValidateGenerateOptions(o));
  // The few possible rating values, formatted once, with as many decimals
  // as the step needs ("4.5", "4.0" for half stars, as ML-25M writes them).
  int decimals = 0;
  while (decimals < 6 &&
         std::abs(o.step * std::pow(10.0f, decimals) -
                  std::round(o.step * std::pow(10.0f, decimals))) > 1e-4f) {
    ++decimals;
  }
  const int levels =
      static_cast<int>(std::lround((o.scale.max - o.scale.min) / o.step));
  std::vector<std::string> value_text;
  for (int l = 0; l <= levels; ++l) {
    value_text.push_back(absl::StrFormat(
        "%.*f", decimals, std::min(o.scale.max, o.scale.min + o.step * l)));
  }
  std::string buffer = "userId,movieId,rating,timestamp\n";
  constexpr size_t kFlushBytes = 1 << 20;
  buffer.reserve(kFlushBytes + 256);
  bool write_failed = false;
  auto flush = [&] {
    ratings.write(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    if (!ratings) write_failed = true;
    buffer.clear();
  };
  absl::StatusOr<GenerateStats> stats =
      GenerateRatings(o, [&](const GeneratedRating& r) {
        const auto level =
            static_cast<size_t>(std::lround((r.value - o.scale.min) / o.step));
        absl::StrAppend(&buffer, r.user + 1, ",", r.item + 1, ",",
                        value_text[std::min(level, value_text.size() - 1)], ",",
                        r.timestamp, "\n");
        if (buffer.size() >= kFlushBytes && !write_failed) flush();
      });
  RECSYS_RETURN_IF_ERROR(stats.status());
  flush();
  if (write_failed) return absl::DataLossError("writing the ratings failed");
  if (movies != nullptr) {
    const Planted p = MakePlanted(o);
    buffer = "movieId,title,genres\n";
    for (int32_t i = 0; i < o.items; ++i) {
      absl::StrAppend(&buffer, i + 1, ",", ItemTitle(i), ",",
                      absl::StrJoin(ItemGenres(p, o.rank, i), "|"), "\n");
    }
    movies->write(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    if (!*movies) return absl::DataLossError("writing the movies failed");
  }
  return stats;
}

absl::Status RunGenerate(const GenerateCommand& cmd, std::ostream& log) {
  if (cmd.out.empty()) {
    return absl::InvalidArgumentError("generate needs --out=FILE");
  }
  RECSYS_RETURN_IF_ERROR(ValidateGenerateOptions(cmd.options));
  const auto start = std::chrono::steady_clock::now();
  const std::string tmp = cmd.out + ".tmp";
  const std::string movies_tmp = cmd.movies_out + ".tmp";
  absl::StatusOr<GenerateStats> stats;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::InternalError(absl::StrCat("cannot create ", tmp));
    std::ofstream movies;
    if (!cmd.movies_out.empty()) {
      movies.open(movies_tmp, std::ios::binary | std::ios::trunc);
      if (!movies) {
        return absl::InternalError(absl::StrCat("cannot create ", movies_tmp));
      }
    }
    stats = WriteGeneratedCsv(cmd.options, out,
                              cmd.movies_out.empty() ? nullptr : &movies);
    out.close();
    if (stats.ok() && !out) {
      stats = absl::DataLossError(absl::StrCat("cannot write ", tmp));
    }
    if (movies.is_open()) {
      movies.close();
      if (stats.ok() && !movies) {
        stats = absl::DataLossError(absl::StrCat("cannot write ", movies_tmp));
      }
    }
  }
  std::error_code ec;
  if (!stats.ok()) {
    std::filesystem::remove(tmp, ec);
    if (!cmd.movies_out.empty()) std::filesystem::remove(movies_tmp, ec);
    return absl::Status(stats.status().code(),
                        absl::StrCat(cmd.out, ": ", stats.status().message()));
  }
  std::filesystem::rename(tmp, cmd.out, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot rename to ", cmd.out));
  if (!cmd.movies_out.empty()) {
    std::filesystem::rename(movies_tmp, cmd.movies_out, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot rename to ", cmd.movies_out));
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  char mean[16];
  std::snprintf(mean, sizeof(mean), "%.3f", stats->mean_rating);
  log << "wrote " << stats->ratings << " ratings by " << cmd.options.users
      << " users of " << stats->items_rated << " items (catalogue "
      << cmd.options.items << ") to " << cmd.out << " in "
      << static_cast<int>(seconds * 10) / 10.0 << " s\n"
      << "mean rating " << mean << ", most active user "
      << stats->max_user_ratings << " ratings, most rated item "
      << stats->max_item_ratings << " ratings\n";
  if (!cmd.movies_out.empty()) log << "catalogue: " << cmd.movies_out << "\n";
  return absl::OkStatus();
}

}  // namespace recsys
