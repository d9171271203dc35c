#include "models/ratings.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"

namespace recsys {

int32_t IdMap::Insert(absl::string_view id) {
  auto [it, inserted] =
      index_.try_emplace(std::string(id), static_cast<int32_t>(ids_.size()));
  if (inserted) ids_.emplace_back(id);
  return it->second;
}

int32_t IdMap::Find(absl::string_view id) const {
  auto it = index_.find(id);
  return it == index_.end() ? -1 : it->second;
}

namespace {

// 64-bit FNV-1a followed by a final avalanche, so that summing the hashes of
// single ratings gives a well-spread, order-independent fingerprint.
uint64_t HashBytes(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

uint64_t Mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

}  // namespace

DataWatermark ComputeWatermark(const RatingData& data) {
  DataWatermark w;
  w.num_ratings = static_cast<int64_t>(data.ratings.size());
  for (const Rating& r : data.ratings) {
    const std::string& u = data.users.External(r.user);
    const std::string& i = data.items.External(r.item);
    uint64_t h = 0xcbf29ce484222325ULL;
    h = HashBytes(h, u.data(), u.size());
    h = HashBytes(h, "\0", 1);
    h = HashBytes(h, i.data(), i.size());
    h = HashBytes(h, &r.value, sizeof(r.value));
    h = HashBytes(h, &r.timestamp, sizeof(r.timestamp));
    w.hash += Mix(h);
  }
  return w;
}

SparseRows BuildRows(const RatingData& data, bool by_item, bool with_times) {
  const int32_t rows = by_item ? data.num_items() : data.num_users();
  SparseRows out;
  out.offsets.assign(rows + 1, 0);
  for (const Rating& r : data.ratings) {
    ++out.offsets[(by_item ? r.item : r.user) + 1];
  }
  for (int32_t i = 0; i < rows; ++i) out.offsets[i + 1] += out.offsets[i];
  out.cols.resize(data.ratings.size());
  out.values.resize(data.ratings.size());
  if (with_times) out.times.resize(data.ratings.size());
  std::vector<int64_t> next(out.offsets.begin(), out.offsets.end() - 1);
  for (const Rating& r : data.ratings) {
    const int32_t row = by_item ? r.item : r.user;
    const int64_t at = next[row]++;
    out.cols[at] = by_item ? r.user : r.item;
    out.values[at] = r.value;
    if (with_times) out.times[at] = r.timestamp;
  }
  // Sort each row by column so lookups and tests see a canonical order.
  struct Entry {
    int32_t col;
    float value;
    int64_t time;
    bool operator<(const Entry& o) const { return col < o.col; }
  };
  std::vector<Entry> tmp;
  for (int32_t row = 0; row < rows; ++row) {
    const int64_t b = out.offsets[row], e = out.offsets[row + 1];
    if (std::is_sorted(out.cols.begin() + b, out.cols.begin() + e)) continue;
    tmp.clear();
    for (int64_t k = b; k < e; ++k) {
      tmp.push_back(
          {out.cols[k], out.values[k], with_times ? out.times[k] : 0});
    }
    std::sort(tmp.begin(), tmp.end());
    for (int64_t k = b; k < e; ++k) {
      out.cols[k] = tmp[k - b].col;
      out.values[k] = tmp[k - b].value;
      if (with_times) out.times[k] = tmp[k - b].time;
    }
  }
  return out;
}

namespace {

// One entry per (user, item), sorted by (user, item): the pair's last
// rating (by timestamp, then order in `ratings`), or with `sum` its values
// added up and its latest timestamp. Returns how many entries went.
int64_t MergeDuplicates(std::vector<Rating>& ratings, bool sum) {
  std::vector<uint32_t> order(ratings.size());
  std::iota(order.begin(), order.end(), 0u);
  // Stable sort keeps file order among equal (user, item, timestamp), so the
  // last element of each (user, item) run is the winner.
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    const Rating& x = ratings[a];
    const Rating& y = ratings[b];
    if (x.user != y.user) return x.user < y.user;
    if (x.item != y.item) return x.item < y.item;
    return x.timestamp < y.timestamp;
  });
  std::vector<Rating> out;
  out.reserve(ratings.size());
  double total = 0;  // of the run so far (sum)
  for (size_t k = 0; k < order.size(); ++k) {
    const Rating& r = ratings[order[k]];
    total += r.value;
    const bool last_of_run = k + 1 == order.size() ||
                             ratings[order[k + 1]].user != r.user ||
                             ratings[order[k + 1]].item != r.item;
    if (!last_of_run) continue;
    out.push_back(r);
    if (sum) out.back().value = static_cast<float>(total);
    total = 0;
  }
  const int64_t dropped = static_cast<int64_t>(ratings.size() - out.size());
  ratings = std::move(out);
  return dropped;
}

}  // namespace

int64_t ResolveDuplicates(std::vector<Rating>& ratings) {
  return MergeDuplicates(ratings, /*sum=*/false);
}

int64_t SumDuplicates(std::vector<Rating>& ratings) {
  return MergeDuplicates(ratings, /*sum=*/true);
}

absl::string_view FeedbackName(Feedback feedback) {
  return feedback == Feedback::kImplicit ? "implicit" : "explicit";
}

absl::StatusOr<Feedback> ParseFeedback(absl::string_view name) {
  if (name == "explicit") return Feedback::kExplicit;
  if (name == "implicit") return Feedback::kImplicit;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown feedback '", name, "'; valid values: explicit, implicit"));
}

namespace {

// `data`'s id maps, scale and catalogue, and no ratings.
void EmptyLike(const RatingData& data, RatingData* out) {
  out->users = data.users;
  out->items = data.items;
  out->scale = data.scale;
  out->feedback = data.feedback;
  out->item_info = data.item_info;
  out->ratings.clear();
}

}  // namespace

void RandomSplit(const RatingData& data, double fraction, uint64_t seed,
                 RatingData* first, RatingData* second) {
  EmptyLike(data, first);
  EmptyLike(data, second);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  for (const Rating& r : data.ratings) {
    (coin(rng) < fraction ? second : first)->ratings.push_back(r);
  }
}

void PerUserSplit(const RatingData& data, double fraction,
                  int32_t min_user_ratings, uint64_t seed, RatingData* train,
                  RatingData* held_out) {
  EmptyLike(data, train);
  EmptyLike(data, held_out);
  std::vector<std::vector<size_t>> by_user(data.num_users());
  for (size_t k = 0; k < data.ratings.size(); ++k) {
    by_user[data.ratings[k].user].push_back(k);
  }
  std::vector<bool> held(data.ratings.size(), false);
  std::mt19937_64 rng(seed);
  for (std::vector<size_t>& mine : by_user) {
    const int64_t n = static_cast<int64_t>(mine.size());
    if (n < std::max(2, min_user_ratings)) continue;
    std::shuffle(mine.begin(), mine.end(), rng);
    const int64_t out = std::clamp<int64_t>(
        static_cast<int64_t>(std::llround(fraction * static_cast<double>(n))),
        1, n - 1);
    for (int64_t j = 0; j < out; ++j) held[mine[j]] = true;
  }
  for (size_t k = 0; k < data.ratings.size(); ++k) {
    (held[k] ? held_out : train)->ratings.push_back(data.ratings[k]);
  }
}

}  // namespace recsys
