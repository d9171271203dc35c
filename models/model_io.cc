#include "models/model_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/crc32c.h"
#include "base/file_io.h"
#include "base/status_macros.h"

namespace recsys {
namespace {

// Scalars and arrays are copied in their in-memory representation, which is
// the file's only on little-endian IEEE-754 hosts (every server we target).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "model_io.cc copies memory as little-endian file data");
static_assert(std::numeric_limits<float>::is_iec559 &&
                  std::numeric_limits<double>::is_iec559,
              "model files store IEEE-754 floats");
// A field added to these structs is silently left out of model files unless
// VisitScalars writes it, and old files cannot supply it: update
// VisitScalars, the table in model_io.h and kModelFormatVersion, then these.
static_assert(sizeof(Hyperparameters) == 104, "update the model file format");
static_assert(sizeof(RatingScale) == 8, "update the model file format");
static_assert(sizeof(DataWatermark) == 16, "update the model file format");

// --- Serialization helpers.

// Appends values in file representation to a byte string.
class Writer {
 public:
  explicit Writer(std::string* out) : out_(out) {}

  template <typename T>
  void operator()(const T& value) {
    static_assert(std::is_arithmetic_v<T> || std::is_enum_v<T>);
    Bytes(&value, sizeof(value));
  }
  void Bytes(const void* data, size_t size) {
    out_->append(static_cast<const char*>(data), size);
  }
  void String(const std::string& s) {
    (*this)(static_cast<uint32_t>(s.size()));
    Bytes(s.data(), s.size());
  }

 private:
  std::string* out_;
};

// Consumes a payload front to back. Every read checks the bytes left first,
// and counts are checked by division, so a corrupt count can neither overflow
// the check nor make the caller allocate more than the file could hold.
class Reader {
 public:
  explicit Reader(absl::string_view bytes) : rest_(bytes) {}

  size_t remaining() const { return rest_.size(); }

  // Unchecked, for the fixed part only: the caller checks its size once.
  template <typename T>
  void operator()(T& value) {
    static_assert(std::is_arithmetic_v<T> || std::is_enum_v<T>);
    std::memcpy(&value, rest_.data(), sizeof(value));
    rest_.remove_prefix(sizeof(value));
  }

  // Fails unless `count` items of at least `min_bytes` each can still follow.
  absl::Status CheckCount(uint64_t count, size_t min_bytes,
                          absl::string_view what) const {
    if (count > rest_.size() / min_bytes) {
      return absl::DataLossError(absl::StrFormat(
          "%s: %d entries of %d bytes do not fit in the %d bytes left", what,
          count, min_bytes, rest_.size()));
    }
    return absl::OkStatus();
  }

  // The next `count * size` bytes.
  absl::StatusOr<const char*> Take(uint64_t count, size_t size,
                                   absl::string_view what) {
    RECSYS_RETURN_IF_ERROR(CheckCount(count, size, what));
    const char* data = rest_.data();
    rest_.remove_prefix(count * size);
    return data;
  }

  absl::Status U32(uint32_t* value, absl::string_view what) {
    RECSYS_ASSIGN_OR_RETURN(const char* data, Take(1, sizeof(*value), what));
    std::memcpy(value, data, sizeof(*value));
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status Scalar(T* value, absl::string_view what) {
    static_assert(std::is_arithmetic_v<T>);
    RECSYS_ASSIGN_OR_RETURN(const char* data, Take(1, sizeof(*value), what));
    std::memcpy(value, data, sizeof(*value));
    return absl::OkStatus();
  }

  absl::Status String(std::string* s, absl::string_view what) {
    uint32_t size = 0;
    RECSYS_RETURN_IF_ERROR(U32(&size, what));
    RECSYS_ASSIGN_OR_RETURN(const char* data, Take(size, 1, what));
    s->assign(data, size);
    return absl::OkStatus();
  }

 private:
  absl::string_view rest_;
};

// The fixed-width fields after `kind`, in file order. Writer and reader share
// this one list so they cannot drift apart. `M` is Model or const Model.
// `version` is the file's: fields added later are skipped for older files
// (a reader keeps the Model's defaults for them).
template <typename M, typename Io>
void VisitScalars(M& m, Io& io, uint32_t version) {
  io(m.params.factors);
  io(m.params.epochs);
  io(m.params.learning_rate);
  io(m.params.lr_decay);
  io(m.params.reg);
  io(m.params.reg_bias);
  io(m.params.init_std);
  io(m.params.baseline_reg_item);
  io(m.params.baseline_reg_user);
  io(m.params.fold_in_reg);
  io(m.params.fold_in_reg_bias);
  io(m.params.implicit_weight);
  io(m.params.reg_exponent);
  io(m.params.cg_steps);
  io(m.params.seed);
  if (version >= 2) {
    io(m.params.burn_in);
    io(m.params.samples);
    io(m.params.value_weight);
    io(m.params.rank_factors);
    io(m.params.rank_epochs);
    io(m.params.rank_reg);
  }
  if (version >= 4) {
    io(m.params.rank_kind);
    io(m.params.popularity_weight);
    io(m.params.target_min);
  }
  io(m.scale.min);
  io(m.scale.max);
  io(m.mu);
  io(m.train_seconds);
  io(m.watermark.num_ratings);
  io(m.watermark.hash);
  io(m.log_sequence);
  io(m.last_validation_rmse);
}

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

// The kind table in model.cc is the one list of kinds; a value names a kind
// exactly when its name parses back.
bool IsKnownKind(uint32_t value) {
  const ModelKind kind = static_cast<ModelKind>(value);
  const absl::StatusOr<ModelKind> parsed = ParseModelKind(ModelKindName(kind));
  return parsed.ok() && *parsed == kind;
}

// A kHybrid's ranking part is iALS, PureSVD or popularity (one column).
absl::Status CheckRankKind(const Model& m) {
  if (m.kind != ModelKind::kHybrid) return absl::OkStatus();
  const ModelKind r = m.params.rank_kind;
  const bool ok = r == ModelKind::kIals || r == ModelKind::kPuresvd ||
                  (r == ModelKind::kPopularity && m.params.rank_factors == 1);
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrFormat("hybrid model: ranking part of kind %d with %d columns",
                      static_cast<uint32_t>(r), m.params.rank_factors));
}

// Factor columns of the Bayesian part: all of a kBayes model's, those after
// the ranking part of a kHybrid's, none otherwise; -1 when a kHybrid's
// ranking part does not leave room for one.
int64_t BayesColumns(ModelKind kind, int64_t factors, int32_t rank_factors) {
  if (kind == ModelKind::kBayes) return factors;
  if (kind != ModelKind::kHybrid) return 0;
  return rank_factors > 0 && rank_factors < factors ? factors - rank_factors
                                                    : -1;
}

// A model with a Bayesian part of F columns has S >= 1 samples of
// d = F / S - 1 numbers each and every posterior array sized for them; any
// other kind has none.
absl::Status CheckPosterior(ModelKind kind, int64_t factors,
                            int32_t rank_factors, const Posterior& p) {
  const int64_t s = p.samples;
  if (kind != ModelKind::kBayes && kind != ModelKind::kHybrid) {
    if (s != 0 || p.alpha.size() != 0 || p.user_mean.size() != 0 ||
        p.item_mean.size() != 0 || p.user_precision.size() != 0 ||
        p.item_precision.size() != 0) {
      return absl::InvalidArgumentError(
          "only bayes and hybrid models carry a posterior");
    }
    return absl::OkStatus();
  }
  const int64_t cols = BayesColumns(kind, factors, rank_factors);
  if (s < 1 || cols < 0 || cols % s != 0 || cols / s < 3) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s model: %d factor columns (%d ranking) do not hold %d samples",
        ModelKindName(kind), factors, rank_factors, s));
  }
  const int64_t d = cols / s - 1;
  const bool ok = p.alpha.size() == s && p.user_mean.rows() == s &&
                  p.user_mean.cols() == d && p.item_mean.rows() == s &&
                  p.item_mean.cols() == d && p.user_precision.rows() == s * d &&
                  p.user_precision.cols() == d &&
                  p.item_precision.rows() == s * d &&
                  p.item_precision.cols() == d;
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bayes model: posterior arrays are not sized for %d samples of %d", s,
        d));
  }
  return absl::OkStatus();
}

absl::Status CheckSavable(const Model& m) {
  const int64_t users = m.num_users(), items = m.num_items();
  auto mismatch = [](absl::string_view what, int64_t size,
                     absl::string_view side, int64_t expected) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "model %s has %d entries for %d %s", what, size, expected, side));
  };
  if (!IsKnownKind(static_cast<uint32_t>(m.kind))) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown model kind ", static_cast<uint32_t>(m.kind)));
  }
  if (m.user_bias.size() != users) {
    return mismatch("user_bias", m.user_bias.size(), "users", users);
  }
  if (m.item_bias.size() != items) {
    return mismatch("item_bias", m.item_bias.size(), "items", items);
  }
  if (m.user_factors.rows() != users) {
    return mismatch("user_factors", m.user_factors.rows(), "users", users);
  }
  if (m.item_factors.rows() != items) {
    return mismatch("item_factors", m.item_factors.rows(), "items", items);
  }
  if (m.user_factors.cols() != m.item_factors.cols()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("model user_factors has %d columns, item_factors %d",
                        m.user_factors.cols(), m.item_factors.cols()));
  }
  if (static_cast<int64_t>(m.item_counts.size()) != items) {
    return mismatch("item_counts", m.item_counts.size(), "items", items);
  }
  if (static_cast<int64_t>(m.item_info.size()) != items) {
    return mismatch("item_info", m.item_info.size(), "items", items);
  }
  const SparseRows& rated = m.user_ratings;
  if (static_cast<int64_t>(rated.offsets.size()) != users + 1) {
    return mismatch("user_ratings offsets", rated.offsets.size(), "users + 1",
                    users + 1);
  }
  if (rated.cols.size() != rated.values.size() ||
      (!rated.times.empty() && rated.times.size() != rated.cols.size()) ||
      static_cast<int64_t>(rated.cols.size()) != rated.offsets.back()) {
    return absl::InvalidArgumentError(
        "model user_ratings: offsets, cols and values disagree");
  }
  RECSYS_RETURN_IF_ERROR(CheckRankKind(m));
  if (m.rank_bias.size() != 0 && m.rank_bias.size() != items) {
    return mismatch("rank_bias", m.rank_bias.size(), "items", items);
  }
  return CheckPosterior(m.kind, m.factors(), m.params.rank_factors,
                        m.posterior);
}

// Bytes the variable-length strings take, or an error when one is too long
// for its u32 length field.
absl::StatusOr<size_t> StringBytes(const Model& m) {
  constexpr size_t kMax = std::numeric_limits<uint32_t>::max();
  size_t total = 0;
  auto add = [&](const std::string& s) {
    total += 4 + s.size();
    return s.size() <= kMax;
  };
  for (const std::string& id : m.users.ids()) {
    if (!add(id)) return absl::InvalidArgumentError("user id too long");
  }
  for (const std::string& id : m.items.ids()) {
    if (!add(id)) return absl::InvalidArgumentError("item id too long");
  }
  for (const ItemInfo& info : m.item_info) {
    if (!add(info.title)) return absl::InvalidArgumentError("title too long");
    if (info.genres.size() > kMax) {
      return absl::InvalidArgumentError("too many genres");
    }
    total += 4;
    for (const std::string& genre : info.genres) {
      if (!add(genre)) return absl::InvalidArgumentError("genre too long");
    }
  }
  return total;
}

// The SelectionReport, in the order model_io.h lists it.
void WriteSelection(const SelectionReport& report, std::string* out) {
  Writer w(out);
  w(static_cast<uint32_t>(report.trials.size()));
  for (const SelectionTrial& t : report.trials) {
    w.String(t.candidate);
    w(static_cast<uint32_t>(t.kind));
    w(static_cast<int32_t>(t.part));
    w(t.rung);
    w(t.work);
    w(t.ndcg);
    w(t.rmse);
    w(t.seconds);
    w(static_cast<uint32_t>(t.chosen));
  }
  w(report.budget);
  w(report.work);
  w(report.seconds);
  w(report.validation_users);
  w(report.validation_ratings);
  w.String(report.summary);
}

// A trial is a length-prefixed string and 48 more bytes.
constexpr size_t kTrialMinBytes = 4 + 48;

absl::Status ParseSelection(Reader& r, SelectionReport* report) {
  uint32_t trials = 0;
  RECSYS_RETURN_IF_ERROR(r.U32(&trials, "selection trial count"));
  RECSYS_RETURN_IF_ERROR(
      r.CheckCount(trials, kTrialMinBytes, "selection trials"));
  report->trials.resize(trials);
  for (SelectionTrial& t : report->trials) {
    RECSYS_RETURN_IF_ERROR(r.String(&t.candidate, "selection candidate"));
    uint32_t kind = 0, chosen = 0;
    int32_t part = 0;
    RECSYS_RETURN_IF_ERROR(r.U32(&kind, "selection kind"));
    RECSYS_RETURN_IF_ERROR(r.Scalar(&part, "selection part"));
    RECSYS_RETURN_IF_ERROR(r.Scalar(&t.rung, "selection rung"));
    RECSYS_RETURN_IF_ERROR(r.Scalar(&t.work, "selection work"));
    RECSYS_RETURN_IF_ERROR(r.Scalar(&t.ndcg, "selection ndcg"));
    RECSYS_RETURN_IF_ERROR(r.Scalar(&t.rmse, "selection rmse"));
    RECSYS_RETURN_IF_ERROR(r.Scalar(&t.seconds, "selection seconds"));
    RECSYS_RETURN_IF_ERROR(r.U32(&chosen, "selection chosen"));
    if (!IsKnownKind(kind) || (part != 0 && part != 1) || chosen > 1) {
      return absl::DataLossError(absl::StrFormat(
          "selection trial '%s': kind %d, part %d or chosen %d is invalid",
          t.candidate, kind, part, chosen));
    }
    t.kind = static_cast<ModelKind>(kind);
    t.part = static_cast<SelectionTrial::Part>(part);
    t.chosen = chosen == 1;
  }
  RECSYS_RETURN_IF_ERROR(r.Scalar(&report->budget, "selection budget"));
  RECSYS_RETURN_IF_ERROR(r.Scalar(&report->work, "selection work"));
  RECSYS_RETURN_IF_ERROR(r.Scalar(&report->seconds, "selection seconds"));
  RECSYS_RETURN_IF_ERROR(
      r.Scalar(&report->validation_users, "selection validation users"));
  RECSYS_RETURN_IF_ERROR(
      r.Scalar(&report->validation_ratings, "selection validation ratings"));
  return r.String(&report->summary, "selection summary");
}

// A model in file form without copies of its arrays: small buffers owned
// here plus views of the model's own memory. Saving writes the pieces one by
// one, so a 130 MB model is never duplicated in memory.
struct FileImage {
  const Model* model = nullptr;
  std::string header;     // kModelHeaderBytes
  std::string fixed;      // kind, VisitScalars and shape
  std::string rated;      // N, the number of entries in user_ratings
  std::string posterior;  // S and D of the Bayesian posterior (0 0 if none)
  std::string retired;    // R, then the retired items' indices
  std::string rank_bias_count;  // B, the entries of rank_bias (v4)
  std::string selection;        // the SelectionReport (v4)
  // Zeros standing in for user_ratings.times when the model has none.
  std::vector<int64_t> no_times;
  std::string strings;  // ids and catalogue

  template <typename T>
  static absl::string_view Raw(const std::vector<T>& v) {
    return absl::string_view(reinterpret_cast<const char*>(v.data()),
                             v.size() * sizeof(T));
  }

  // The file's bytes in order. Views are made on each call, so a moved
  // FileImage stays valid.
  std::vector<absl::string_view> Pieces() const {
    const Model& m = *model;
    const Posterior& p = m.posterior;
    auto floats = [](const float* data, size_t count) {
      return absl::string_view(reinterpret_cast<const char*>(data),
                               count * sizeof(float));
    };
    return {header,
            fixed,
            floats(m.user_bias.data(), m.user_bias.size()),
            floats(m.item_bias.data(), m.item_bias.size()),
            floats(m.user_factors.data(), m.user_factors.size()),
            floats(m.item_factors.data(), m.item_factors.size()),
            Raw(m.item_counts),
            rated,
            Raw(m.user_ratings.offsets),
            Raw(m.user_ratings.cols),
            Raw(m.user_ratings.values),
            m.user_ratings.times.empty() ? Raw(no_times)
                                         : Raw(m.user_ratings.times),
            strings,
            posterior,
            floats(p.alpha.data(), p.alpha.size()),
            floats(p.user_mean.data(), p.user_mean.size()),
            floats(p.user_precision.data(), p.user_precision.size()),
            floats(p.item_mean.data(), p.item_mean.size()),
            floats(p.item_precision.data(), p.item_precision.size()),
            retired,
            rank_bias_count,
            floats(m.rank_bias.data(), m.rank_bias.size()),
            selection};
  }
  size_t size() const {
    size_t total = 0;
    for (absl::string_view piece : Pieces()) total += piece.size();
    return total;
  }
};

absl::StatusOr<FileImage> MakeFileImage(const Model& m) {
  RECSYS_RETURN_IF_ERROR(CheckSavable(m));
  RECSYS_ASSIGN_OR_RETURN(const size_t string_bytes, StringBytes(m));
  FileImage image;
  image.model = &m;
  Writer fixed(&image.fixed);
  fixed(static_cast<uint32_t>(m.kind));
  VisitScalars(m, fixed, kModelFormatVersion);
  fixed(static_cast<uint32_t>(m.num_users()));
  fixed(static_cast<uint32_t>(m.num_items()));
  fixed(static_cast<uint32_t>(m.factors()));

  Writer (&image.rated)(static_cast<uint64_t>(m.user_ratings.cols.size()));
  {
    Writer posterior(&image.posterior);
    posterior(static_cast<uint32_t>(m.posterior.samples));
    posterior(static_cast<uint32_t>(m.posterior.user_mean.cols()));
  }
  {
    std::vector<uint32_t> retired;
    for (size_t i = 0; i < m.item_info.size(); ++i) {
      if (m.item_info[i].retired) retired.push_back(static_cast<uint32_t>(i));
    }
    Writer out(&image.retired);
    out(static_cast<uint32_t>(retired.size()));
    for (uint32_t i : retired) out(i);
  }
  if (m.user_ratings.times.empty()) {
    image.no_times.assign(m.user_ratings.cols.size(), 0);
  }
  Writer (&image.rank_bias_count)(static_cast<uint32_t>(m.rank_bias.size()));
  WriteSelection(m.selection, &image.selection);

  image.strings.reserve(string_bytes);
  Writer strings(&image.strings);
  for (const std::string& id : m.users.ids()) strings.String(id);
  for (const std::string& id : m.items.ids()) strings.String(id);
  for (const ItemInfo& info : m.item_info) {
    strings.String(info.title);
    strings(static_cast<uint32_t>(info.genres.size()));
    for (const std::string& genre : info.genres) strings.String(genre);
  }

  uint64_t payload_size = 0;
  uint32_t crc = 0;
  for (absl::string_view piece : image.Pieces()) {  // header still empty
    payload_size += piece.size();
    crc = Crc32c(piece.data(), piece.size(), crc);
  }
  Writer header(&image.header);
  header.Bytes(kModelMagic, sizeof(kModelMagic));
  header(kModelFormatVersion);
  header(uint32_t{0});  // flags
  header(payload_size);
  header(uint64_t{crc});
  return image;
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

absl::Status ParsePayload(absl::string_view payload, uint32_t version,
                          Model* m) {
  Reader r(payload);
  if (r.remaining() < FixedPayloadBytes(version)) {
    return absl::DataLossError(
        absl::StrFormat("fixed fields need %d bytes, payload has %d",
                        FixedPayloadBytes(version), r.remaining()));
  }
  uint32_t kind = 0, users = 0, items = 0, factors = 0;
  r(kind);
  VisitScalars(*m, r, version);
  r(users);
  r(items);
  r(factors);
  if (!IsKnownKind(kind)) {
    return absl::DataLossError(absl::StrCat("unknown model kind ", kind));
  }
  m->kind = static_cast<ModelKind>(kind);
  if (const absl::Status rank = CheckRankKind(*m); !rank.ok()) {
    return absl::DataLossError(rank.message());
  }
  constexpr uint32_t kMaxIndex = std::numeric_limits<int32_t>::max();
  if (users > kMaxIndex || items > kMaxIndex || factors > kMaxIndex) {
    return absl::DataLossError(
        absl::StrFormat("shape %d users x %d items x %d factors exceeds int32",
                        users, items, factors));
  }

  auto read_floats = [&r](uint64_t count, float* dst,
                          absl::string_view what) -> absl::Status {
    RECSYS_ASSIGN_OR_RETURN(const char* data, r.Take(count, 4, what));
    if (count > 0) std::memcpy(dst, data, count * 4);
    return absl::OkStatus();
  };
  // Each size is checked before the array is allocated.
  RECSYS_RETURN_IF_ERROR(r.CheckCount(users, 4, "user_bias"));
  m->user_bias.resize(users);
  RECSYS_RETURN_IF_ERROR(read_floats(users, m->user_bias.data(), "user_bias"));
  RECSYS_RETURN_IF_ERROR(r.CheckCount(items, 4, "item_bias"));
  m->item_bias.resize(items);
  RECSYS_RETURN_IF_ERROR(read_floats(items, m->item_bias.data(), "item_bias"));
  const uint64_t user_cells = uint64_t{users} * factors;
  RECSYS_RETURN_IF_ERROR(r.CheckCount(user_cells, 4, "user_factors"));
  m->user_factors.resize(users, factors);
  RECSYS_RETURN_IF_ERROR(
      read_floats(user_cells, m->user_factors.data(), "user_factors"));
  const uint64_t item_cells = uint64_t{items} * factors;
  RECSYS_RETURN_IF_ERROR(r.CheckCount(item_cells, 4, "item_factors"));
  m->item_factors.resize(items, factors);
  RECSYS_RETURN_IF_ERROR(
      read_floats(item_cells, m->item_factors.data(), "item_factors"));
  {
    RECSYS_ASSIGN_OR_RETURN(const char* data, r.Take(items, 4, "item_counts"));
    m->item_counts.resize(items);
    if (items > 0) std::memcpy(m->item_counts.data(), data, items * 4);
  }
  RECSYS_RETURN_IF_ERROR(ParseUserRatings(r, users, items, &m->user_ratings));

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
  if (version >= 2) {
    uint32_t samples = 0, dim = 0;
    RECSYS_RETURN_IF_ERROR(r.U32(&samples, "posterior samples"));
    RECSYS_RETURN_IF_ERROR(r.U32(&dim, "posterior dimension"));
    // The shape must match the factor columns before anything is allocated.
    const int64_t cols = BayesColumns(m->kind, factors, m->params.rank_factors);
    if (static_cast<int64_t>(uint64_t{samples} * (uint64_t{dim} + 1)) != cols &&
        !(samples == 0 && dim == 0)) {
      return absl::DataLossError(absl::StrFormat(
          "posterior of %d samples x %d does not fit %d factor columns",
          samples, dim, cols));
    }
    Posterior& p = m->posterior;
    p.samples = static_cast<int32_t>(samples);
    auto read_matrix = [&](uint64_t rows, uint64_t cols, RowMatrix* out,
                           absl::string_view what) -> absl::Status {
      RECSYS_RETURN_IF_ERROR(r.CheckCount(rows * cols, 4, what));
      out->resize(rows, cols);
      return read_floats(rows * cols, out->data(), what);
    };
    RECSYS_RETURN_IF_ERROR(r.CheckCount(samples, 4, "posterior alpha"));
    p.alpha.resize(samples);
    RECSYS_RETURN_IF_ERROR(
        read_floats(samples, p.alpha.data(), "posterior alpha"));
    for (auto [mean, precision] :
         {std::pair(&p.user_mean, &p.user_precision),
          std::pair(&p.item_mean, &p.item_precision)}) {
      RECSYS_RETURN_IF_ERROR(read_matrix(samples, dim, mean, "posterior mean"));
      RECSYS_RETURN_IF_ERROR(read_matrix(uint64_t{samples} * dim, dim,
                                         precision, "posterior precision"));
    }
  }
  if (const absl::Status posterior = CheckPosterior(
          m->kind, factors, m->params.rank_factors, m->posterior);
      !posterior.ok()) {
    return absl::DataLossError(posterior.message());
  }
  if (version >= 3) {
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
        read_floats(count, m->rank_bias.data(), "rank_bias"));
    RECSYS_RETURN_IF_ERROR(ParseSelection(r, &m->selection));
  }
  if (r.remaining() != 0) {
    return absl::DataLossError(absl::StrFormat(
        "%d unread bytes at the end of the payload", r.remaining()));
  }
  return absl::OkStatus();
}

// Keeps the code and puts `path` first, so every error names its file.
absl::Status WithPath(absl::string_view path, absl::string_view what,
                      const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat(path, ": ", what, status.message()));
}

template <typename T>
T LoadScalar(const char* data) {
  T value;
  std::memcpy(&value, data, sizeof(value));
  return value;
}

}  // namespace

absl::StatusOr<std::string> SerializeModel(const Model& model) {
  RECSYS_ASSIGN_OR_RETURN(const FileImage image, MakeFileImage(model));
  std::string out;
  out.reserve(image.size());
  for (absl::string_view piece : image.Pieces()) {
    if (!piece.empty()) out.append(piece.data(), piece.size());
  }
  return out;
}

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

absl::Status SaveModel(const Model& model, const std::string& path) {
  absl::StatusOr<FileImage> image = MakeFileImage(model);
  if (!image.ok()) return WithPath(path, "cannot save: ", image.status());
  return WriteFileAtomically(path, image->Pieces());
}

absl::StatusOr<Model> LoadModel(const std::string& path) {
  RECSYS_ASSIGN_OR_RETURN(FileBytes file, ReadFileBytes(path));
  return ParseModel(absl::string_view(file.data.get(), file.size), path);
}

}  // namespace recsys
