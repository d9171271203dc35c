#include "server/wire.h"

#include <cstring>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "proto/recsys.pb.h"

namespace recsys::internal {
namespace {

using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedOutputStream;

constexpr uint32_t Tag(int field, WireFormatLite::WireType type) {
  return WireFormatLite::MakeTag(field, type);
}
constexpr uint32_t LengthTag(int field) {
  return Tag(field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED);
}

// Bytes of a length-delimited field holding `len` bytes, tag included.
size_t DelimitedSize(int field, size_t len) {
  return CodedOutputStream::VarintSize32(LengthTag(field)) +
         CodedOutputStream::VarintSize32(static_cast<uint32_t>(len)) + len;
}

// Proto3 leaves out singular scalars at their default: empty strings, and
// numbers whose bits are all zero (so -0.0 is written, as protobuf does).
bool IsDefault(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return bits == 0;
}

size_t StringSize(int field, absl::string_view s) {
  return s.empty() ? 0 : DelimitedSize(field, s.size());
}

// An optional float, present: written whatever its value.
size_t PresentFloatSize(int field) {
  return CodedOutputStream::VarintSize32(
             Tag(field, WireFormatLite::WIRETYPE_FIXED32)) +
         sizeof(uint32_t);
}

size_t FloatSize(int field, float v) {
  return IsDefault(v) ? 0 : PresentFloatSize(field);
}

size_t Varint64Size(int field, uint64_t v) {
  return v == 0 ? 0
                : CodedOutputStream::VarintSize32(
                      Tag(field, WireFormatLite::WIRETYPE_VARINT)) +
                      CodedOutputStream::VarintSize64(v);
}

// Writes into `bytes` bytes reserved at the end of a string; the sizes
// above say how many a field takes.
class Writer {
 public:
  Writer(std::string* out, size_t bytes) {
    const size_t start = out->size();
    out->resize(start + bytes);
    p_ = reinterpret_cast<uint8_t*>(&(*out)[start]);
  }

  void Header(int field, size_t len) {
    Varint32(LengthTag(field));
    Varint32(static_cast<uint32_t>(len));
  }
  // A singular string (left out when empty).
  void String(int field, absl::string_view s) {
    if (!s.empty()) Element(field, s);
  }
  // An element of a repeated string (written even when empty).
  void Element(int field, absl::string_view s) {
    Header(field, s.size());
    std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  void Float(int field, float v) {
    if (!IsDefault(v)) PresentFloat(field, v);
  }
  void PresentFloat(int field, float v) {
    Varint32(Tag(field, WireFormatLite::WIRETYPE_FIXED32));
    p_ = CodedOutputStream::WriteLittleEndian32ToArray(
        WireFormatLite::EncodeFloat(v), p_);
  }
  void Varint64(int field, uint64_t v) {
    if (v == 0) return;
    Varint32(Tag(field, WireFormatLite::WIRETYPE_VARINT));
    p_ = CodedOutputStream::WriteVarint64ToArray(v, p_);
  }

 private:
  void Varint32(uint32_t v) {
    p_ = CodedOutputStream::WriteVarint32ToArray(v, p_);
  }
  uint8_t* p_;
};

}  // namespace

void AppendScoredItem(absl::string_view id, absl::string_view title,
                      const std::vector<std::string>& genres,
                      std::optional<float> predicted_rating, float score,
                      std::string* out) {
  size_t item = StringSize(v1::Item::kIdFieldNumber, id) +
                StringSize(v1::Item::kTitleFieldNumber, title);
  for (const std::string& g : genres) {
    item += DelimitedSize(v1::Item::kGenresFieldNumber, g.size());
  }
  const size_t scored =
      DelimitedSize(v1::ScoredItem::kItemFieldNumber, item) +
      (predicted_rating
           ? PresentFloatSize(v1::ScoredItem::kPredictedRatingFieldNumber)
           : 0) +
      FloatSize(v1::ScoredItem::kScoreFieldNumber, score);
  Writer w(out,
           DelimitedSize(v1::RecommendResponse::kItemsFieldNumber, scored));
  w.Header(v1::RecommendResponse::kItemsFieldNumber, scored);
  w.Header(v1::ScoredItem::kItemFieldNumber, item);
  w.String(v1::Item::kIdFieldNumber, id);
  w.String(v1::Item::kTitleFieldNumber, title);
  for (const std::string& g : genres) {
    w.Element(v1::Item::kGenresFieldNumber, g);
  }
  if (predicted_rating) {
    w.PresentFloat(v1::ScoredItem::kPredictedRatingFieldNumber,
                   *predicted_rating);
  }
  w.Float(v1::ScoredItem::kScoreFieldNumber, score);
}

void AppendRecommendTail(int strategy, uint64_t model_version,
                         const std::vector<std::string>& unknown_item_ids,
                         int feedback, std::string* out) {
  // An enum is written as its int32 value, sign-extended to 64 bits.
  const uint64_t strategy_bits =
      static_cast<uint64_t>(static_cast<int64_t>(strategy));
  size_t bytes =
      Varint64Size(v1::RecommendResponse::kStrategyFieldNumber, strategy_bits) +
      Varint64Size(v1::RecommendResponse::kModelVersionFieldNumber,
                   model_version);
  for (const std::string& id : unknown_item_ids) {
    bytes += DelimitedSize(v1::RecommendResponse::kUnknownItemIdsFieldNumber,
                           id.size());
  }
  const uint64_t feedback_bits =
      static_cast<uint64_t>(static_cast<int64_t>(feedback));
  bytes +=
      Varint64Size(v1::RecommendResponse::kFeedbackFieldNumber, feedback_bits);
  Writer w(out, bytes);
  w.Varint64(v1::RecommendResponse::kStrategyFieldNumber, strategy_bits);
  w.Varint64(v1::RecommendResponse::kModelVersionFieldNumber, model_version);
  for (const std::string& id : unknown_item_ids) {
    w.Element(v1::RecommendResponse::kUnknownItemIdsFieldNumber, id);
  }
  w.Varint64(v1::RecommendResponse::kFeedbackFieldNumber, feedback_bits);
}

}  // namespace recsys::internal
