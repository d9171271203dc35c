// Reading one user's or item's current row out of a generation.
#include "engine/state.h"

namespace recsys {
namespace internal {

UserView ViewUser(const Generation& g, const std::string& user,
                  bool with_ratings, bool with_vector) {
  UserView v;
  if (auto st = g.FindUser(user)) {
    v.erased_seq = st->erased_seq;
    if (st->erased) return v;
    v.known = true;
    v.bias = st->bias;
    if (with_vector) v.vec = st->vec;
    if (with_ratings) v.ratings = st->ratings;
    return v;
  }
  const Model& m = *g.model;
  const int32_t u = m.users.Find(user);
  if (u < 0) return v;
  v.known = true;
  v.bias = m.user_bias[u];
  if (with_vector) v.vec = m.user_factors.row(u).transpose();
  if (!with_ratings) return v;
  const SparseRows& r = m.user_ratings;
  for (int64_t k = r.offsets[u]; k < r.offsets[u + 1]; ++k) {
    v.ratings.push_back(
        {r.cols[k], r.values[k], r.times.empty() ? 0 : r.times[k], 0});
  }
  return v;
}

ItemView ViewItem(const Generation& g, const NewItems& ni, int32_t i) {
  const ItemInfo& info = ni.Describe(i);
  return {
      i < ni.base ? g.model->items.External(i) : ni.ids->External(i - ni.base),
      info.title, info.genres, info.retired};
}

}  // namespace internal
}  // namespace recsys
