// Writing a model file (SaveModel, SerializeModel): the checks a Model must
// pass, and the file image whose pieces point into the model's own arrays.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

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

namespace recsys {
namespace {

using internal::CheckPosterior;
using internal::CheckRankKind;
using internal::IsKnownKind;
using internal::VisitScalars;
using internal::WithPath;
using internal::Writer;
using internal::WriteSelection;

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

absl::Status SaveModel(const Model& model, const std::string& path) {
  absl::StatusOr<FileImage> image = MakeFileImage(model);
  if (!image.ok()) return WithPath(path, "cannot save: ", image.status());
  return WriteFileAtomically(path, image->Pieces());
}

}  // namespace recsys
