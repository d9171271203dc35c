// Reading a model file (LoadModel, ParseModel): the header's checks, then
// the payload section by section, each count checked against the bytes left
// before anything is allocated for it.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "base/crc32c.h"
#include "base/file_io.h"
#include "base/status_macros.h"
#include "models/model.h"
#include "models/model_io.h"
#include "models/model_io_internal.h"
#include "models/ratings.h"

namespace recsys {
namespace {

using internal::BayesColumns;
using internal::CheckPosterior;
using internal::CheckRankKind;
using internal::IsKnownKind;
using internal::ParseSelection;
using internal::Reader;
using internal::VisitScalars;
using internal::WithPath;

// Adds up the sizes of the fields VisitScalars visits.
struct SizeCounter {
  size_t bytes = 0;
  template <typename T>
  void operator()(const T&) {
    bytes += sizeof(T);
  }
};

// Bytes of the payload's fixed part: kind, VisitScalars, shape.
size_t FixedPayloadBytes(uint32_t version) {
  SizeCounter counter;
  const Model empty;
  VisitScalars(empty, counter, version);
  return 4 + counter.bytes + 12;
}

// What each user rated: offsets must run from 0 to N without going back, and
// every item index must be inside the catalogue, so serving can index with
// them unchecked.
absl::Status ParseUserRatings(Reader& r, uint32_t users, uint32_t items,
                              SparseRows* rated) {
  uint64_t n = 0;
  {
    RECSYS_ASSIGN_OR_RETURN(const char* data, r.Take(1, 8, "rating count"));
    std::memcpy(&n, data, 8);
  }
  const uint64_t offsets = uint64_t{users} + 1;
  RECSYS_ASSIGN_OR_RETURN(const char* off, r.Take(offsets, 8, "user_ratings"));
  rated->offsets.resize(offsets);
  std::memcpy(rated->offsets.data(), off, offsets * 8);
  for (uint64_t u = 0; u < offsets; ++u) {
    const int64_t o = rated->offsets[u];
    const bool ok = u == 0 ? o == 0 : o >= rated->offsets[u - 1];
    if (!ok || o < 0 || static_cast<uint64_t>(o) > n) {
      return absl::DataLossError(absl::StrFormat(
          "user_ratings offset %d of user %d is invalid", o, u));
    }
  }
  if (static_cast<uint64_t>(rated->offsets.back()) != n) {
    return absl::DataLossError("user_ratings offsets do not end at the count");
  }
  RECSYS_ASSIGN_OR_RETURN(const char* cols, r.Take(n, 4, "user_ratings items"));
  rated->cols.resize(n);
  if (n > 0) std::memcpy(rated->cols.data(), cols, n * 4);
  for (int32_t c : rated->cols) {
    if (c < 0 || static_cast<uint32_t>(c) >= items) {
      return absl::DataLossError(absl::StrFormat(
          "user_ratings item index %d outside %d items", c, items));
    }
  }
  RECSYS_ASSIGN_OR_RETURN(const char* vals,
                          r.Take(n, 4, "user_ratings values"));
  rated->values.resize(n);
  if (n > 0) std::memcpy(rated->values.data(), vals, n * 4);
  RECSYS_ASSIGN_OR_RETURN(const char* times,
                          r.Take(n, 8, "user_ratings times"));
  rated->times.resize(n);
  if (n > 0) std::memcpy(rated->times.data(), times, n * 8);
  return absl::OkStatus();
}

// The fixed part: kind, VisitScalars and the shape.
absl::Status ParseFixed(Reader& r, uint32_t version, Model* m, uint32_t* users,
                        uint32_t* items, uint32_t* factors) {
  if (r.remaining() < FixedPayloadBytes(version)) {
    return absl::DataLossError(
        absl::StrFormat("fixed fields need %d bytes, payload has %d",
                        FixedPayloadBytes(version), r.remaining()));
  }
  uint32_t kind = 0;
  r(kind);
  VisitScalars(*m, r, version);
  r(*users);
  r(*items);
  r(*factors);
  if (!IsKnownKind(kind)) {
    return absl::DataLossError(absl::StrCat("unknown model kind ", kind));
  }
  m->kind = static_cast<ModelKind>(kind);
  if (m->feedback != Feedback::kExplicit &&
      m->feedback != Feedback::kImplicit) {
    return absl::DataLossError(
        absl::StrCat("unknown feedback ", static_cast<uint32_t>(m->feedback)));
  }
  if (const absl::Status rank = CheckRankKind(*m); !rank.ok()) {
    return absl::DataLossError(rank.message());
  }
  constexpr uint32_t kMaxIndex = std::numeric_limits<int32_t>::max();
  if (*users > kMaxIndex || *items > kMaxIndex || *factors > kMaxIndex) {
    return absl::DataLossError(
        absl::StrFormat("shape %d users x %d items x %d factors exceeds int32",
                        *users, *items, *factors));
  }
  return absl::OkStatus();
}

// The next `count` floats, into `dst`.
absl::Status ReadFloats(Reader& r, uint64_t count, float* dst,
                        absl::string_view what) {
  RECSYS_ASSIGN_OR_RETURN(const char* data, r.Take(count, 4, what));
  if (count > 0) std::memcpy(dst, data, count * 4);
  return absl::OkStatus();
}

// The numeric arrays: biases, factors, item counts, what each user rated.
absl::Status ParseArrays(Reader& r, uint32_t users, uint32_t items,
                         uint32_t factors, Model* m) {
  // Each size is checked before the array is allocated.
  RECSYS_RETURN_IF_ERROR(r.CheckCount(users, 4, "user_bias"));
  m->user_bias.resize(users);
  RECSYS_RETURN_IF_ERROR(
      ReadFloats(r, users, m->user_bias.data(), "user_bias"));
  RECSYS_RETURN_IF_ERROR(r.CheckCount(items, 4, "item_bias"));
  m->item_bias.resize(items);
  RECSYS_RETURN_IF_ERROR(
      ReadFloats(r, items, m->item_bias.data(), "item_bias"));
  const uint64_t user_cells = uint64_t{users} * factors;
  RECSYS_RETURN_IF_ERROR(r.CheckCount(user_cells, 4, "user_factors"));
  m->user_factors.resize(users, factors);
  RECSYS_RETURN_IF_ERROR(
      ReadFloats(r, user_cells, m->user_factors.data(), "user_factors"));
  const uint64_t item_cells = uint64_t{items} * factors;
  RECSYS_RETURN_IF_ERROR(r.CheckCount(item_cells, 4, "item_factors"));
  m->item_factors.resize(items, factors);
  RECSYS_RETURN_IF_ERROR(
      ReadFloats(r, item_cells, m->item_factors.data(), "item_factors"));
  {
    RECSYS_ASSIGN_OR_RETURN(const char* data, r.Take(items, 4, "item_counts"));
    m->item_counts.resize(items);
    if (items > 0) std::memcpy(m->item_counts.data(), data, items * 4);
  }
  RECSYS_RETURN_IF_ERROR(ParseUserRatings(r, users, items, &m->user_ratings));
  return absl::OkStatus();
}

// The ids and the catalogue.
absl::Status ParseStrings(Reader& r, uint32_t users, uint32_t items, Model* m) {
  // The maps are rebuilt rather than trusted: an id that maps to an earlier
  // index would make two rows answer to one name.
  std::string s;
  auto read_ids = [&](uint32_t count, IdMap* map,
                      absl::string_view side) -> absl::Status {
    RECSYS_RETURN_IF_ERROR(r.CheckCount(count, 4, side));
    for (uint32_t index = 0; index < count; ++index) {
      RECSYS_RETURN_IF_ERROR(r.String(&s, side));
      if (map->Insert(s) != static_cast<int32_t>(index)) {
        return absl::DataLossError(
            absl::StrFormat("%s '%s' at index %d duplicates index %d", side, s,
                            index, map->Find(s)));
      }
    }
    return absl::OkStatus();
  };
  m->users = IdMap();
  m->items = IdMap();
  RECSYS_RETURN_IF_ERROR(read_ids(users, &m->users, "user id"));
  RECSYS_RETURN_IF_ERROR(read_ids(items, &m->items, "item id"));

  // A title length and a genre count are at least 8 bytes per item.
  RECSYS_RETURN_IF_ERROR(r.CheckCount(items, 8, "item info"));
  m->item_info.clear();
  m->item_info.resize(items);
  for (ItemInfo& info : m->item_info) {
    RECSYS_RETURN_IF_ERROR(r.String(&info.title, "item title"));
    uint32_t genres = 0;
    RECSYS_RETURN_IF_ERROR(r.U32(&genres, "genre count"));
    RECSYS_RETURN_IF_ERROR(r.CheckCount(genres, 4, "genres"));
    info.genres.resize(genres);
    for (std::string& genre : info.genres) {
      RECSYS_RETURN_IF_ERROR(r.String(&genre, "genre"));
    }
  }
  return absl::OkStatus();
}

// The Bayesian posterior (v2).
absl::Status ParsePosterior(Reader& r, uint32_t factors, Model* m) {
  uint32_t samples = 0, dim = 0;
  RECSYS_RETURN_IF_ERROR(r.U32(&samples, "posterior samples"));
  RECSYS_RETURN_IF_ERROR(r.U32(&dim, "posterior dimension"));
  // The shape must match the factor columns before anything is allocated.
  const int64_t cols = BayesColumns(m->kind, factors, m->params.rank_factors);
  if (static_cast<int64_t>(uint64_t{samples} * (uint64_t{dim} + 1)) != cols &&
      !(samples == 0 && dim == 0)) {
    return absl::DataLossError(absl::StrFormat(
        "posterior of %d samples x %d does not fit %d factor columns", samples,
        dim, cols));
  }
  Posterior& p = m->posterior;
  p.samples = static_cast<int32_t>(samples);
  auto read_matrix = [&](uint64_t rows, uint64_t cols, RowMatrix* out,
                         absl::string_view what) -> absl::Status {
    RECSYS_RETURN_IF_ERROR(r.CheckCount(rows * cols, 4, what));
    out->resize(rows, cols);
    return ReadFloats(r, rows * cols, out->data(), what);
  };
  RECSYS_RETURN_IF_ERROR(r.CheckCount(samples, 4, "posterior alpha"));
  p.alpha.resize(samples);
  RECSYS_RETURN_IF_ERROR(
      ReadFloats(r, samples, p.alpha.data(), "posterior alpha"));
  for (auto [mean, precision] : {std::pair(&p.user_mean, &p.user_precision),
                                 std::pair(&p.item_mean, &p.item_precision)}) {
    RECSYS_RETURN_IF_ERROR(read_matrix(samples, dim, mean, "posterior mean"));
    RECSYS_RETURN_IF_ERROR(read_matrix(uint64_t{samples} * dim, dim, precision,
                                       "posterior precision"));
  }
  return absl::OkStatus();
}

// The retired items (v3).
absl::Status ParseRetired(Reader& r, uint32_t items, Model* m) {
  uint32_t retired = 0;
  RECSYS_RETURN_IF_ERROR(r.U32(&retired, "retired item count"));
  RECSYS_RETURN_IF_ERROR(r.CheckCount(retired, 4, "retired items"));
  int64_t previous = -1;
  for (uint32_t k = 0; k < retired; ++k) {
    uint32_t i = 0;
    RECSYS_RETURN_IF_ERROR(r.U32(&i, "retired item"));
    if (i >= items || static_cast<int64_t>(i) <= previous) {
      return absl::DataLossError(absl::StrFormat(
          "retired item index %d is outside %d items or out of order", i,
          items));
    }
    m->item_info[i].retired = true;
    previous = i;
  }
  return absl::OkStatus();
}

// The payload, section by section in file order.
absl::Status ParsePayload(absl::string_view payload, uint32_t version,
                          Model* m) {
  Reader r(payload);
  uint32_t users = 0, items = 0, factors = 0;
  RECSYS_RETURN_IF_ERROR(ParseFixed(r, version, m, &users, &items, &factors));
  RECSYS_RETURN_IF_ERROR(ParseArrays(r, users, items, factors, m));
  RECSYS_RETURN_IF_ERROR(ParseStrings(r, users, items, m));
  if (version >= 2) {
    RECSYS_RETURN_IF_ERROR(ParsePosterior(r, factors, m));
  }
  if (const absl::Status posterior = CheckPosterior(
          m->kind, factors, m->params.rank_factors, m->posterior);
      !posterior.ok()) {
    return absl::DataLossError(posterior.message());
  }
  if (version >= 3) {
    RECSYS_RETURN_IF_ERROR(ParseRetired(r, items, m));
  }
  if (version >= 4) {
    uint32_t count = 0;
    RECSYS_RETURN_IF_ERROR(r.U32(&count, "rank_bias count"));
    if (count != 0 && count != items) {
      return absl::DataLossError(absl::StrFormat(
          "rank_bias has %d entries for %d items", count, items));
    }
    m->rank_bias.resize(count);
    RECSYS_RETURN_IF_ERROR(
        ReadFloats(r, count, m->rank_bias.data(), "rank_bias"));
    RECSYS_RETURN_IF_ERROR(ParseSelection(r, &m->selection));
  }
  if (r.remaining() != 0) {
    return absl::DataLossError(absl::StrFormat(
        "%d unread bytes at the end of the payload", r.remaining()));
  }
  return absl::OkStatus();
}

template <typename T>
T LoadScalar(const char* data) {
  T value;
  std::memcpy(&value, data, sizeof(value));
  return value;
}

}  // namespace

absl::StatusOr<Model> ParseModel(absl::string_view bytes,
                                 absl::string_view source) {
  const size_t size = bytes.size();
  // Judge the magic on whatever part of it is present, so a short text file
  // is "not a model" rather than "truncated".
  const absl::string_view magic(kModelMagic, sizeof(kModelMagic));
  if (bytes.substr(0, magic.size()) != magic.substr(0, size)) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not a recsys model file (bad magic)"));
  }
  if (size < kModelHeaderBytes) {
    return absl::DataLossError(absl::StrFormat(
        "%s: truncated: the header needs %d bytes, the file has %d", source,
        kModelHeaderBytes, size));
  }
  const char* header = bytes.data();
  const auto version = LoadScalar<uint32_t>(header + 8);
  const auto flags = LoadScalar<uint32_t>(header + 12);
  const auto payload_size = LoadScalar<uint64_t>(header + 16);
  const auto checksum = LoadScalar<uint64_t>(header + 24);
  if (version < kOldestModelFormatVersion || version > kModelFormatVersion) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: model format version %d, this build reads versions %d to %d",
        source, version, kOldestModelFormatVersion, kModelFormatVersion));
  }
  // No version defines flags; a later writer that needs them bumps the
  // version, so a set bit here is damage.
  if (flags != 0) {
    return absl::DataLossError(absl::StrFormat(
        "%s: reserved header field is 0x%08x, expected 0 (file corrupted)",
        source, flags));
  }
  const size_t available = size - kModelHeaderBytes;
  if (payload_size > available) {
    return absl::DataLossError(absl::StrFormat(
        "%s: truncated: expected %d + %d bytes, the file has %d", source,
        kModelHeaderBytes, payload_size, size));
  }
  if (payload_size < available) {
    return absl::DataLossError(
        absl::StrFormat("%s: %d trailing bytes after the %d-byte payload",
                        source, available - payload_size, payload_size));
  }
  const absl::string_view payload = bytes.substr(kModelHeaderBytes);
  const uint32_t actual = Crc32c(payload.data(), payload.size());
  if (checksum != actual) {
    return absl::DataLossError(absl::StrFormat(
        "%s: checksum mismatch (file corrupted): stored 0x%08x, computed "
        "0x%08x",
        source, checksum, actual));
  }
  Model model;
  const absl::Status status = ParsePayload(payload, version, &model);
  if (!status.ok()) return WithPath(source, "corrupt payload: ", status);
  ComputeGrams(&model);  // derived, so not stored
  return model;
}

absl::StatusOr<Model> LoadModel(const std::string& path) {
  RECSYS_ASSIGN_OR_RETURN(FileBytes file, ReadFileBytes(path));
  return ParseModel(absl::string_view(file.data.get(), file.size), path);
}

}  // namespace recsys
