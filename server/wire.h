// Recommend's response written directly in the protobuf wire format.
//
// A k = 10 response built as a message costs about 70 small objects (the
// messages, strings and repeated fields), a UTF-8 check per string, a size
// pass and a copy into the transport's buffer. Written directly, it is one
// pass of appends into a reused buffer, straight from the serving state's
// strings. The bytes are exactly those protobuf's own serializer gives for
// the same message (tests/wire_test.cc checks this), so any client parses
// them.
//
//   std::string out;
//   for (...) AppendScoredItem(id, title, genres, predicted, score, &out);
//   AppendRecommendTail(v1::STRATEGY_PERSONALIZED, version, {}, &out);
#ifndef RECSYS_SERVER_WIRE_H_
#define RECSYS_SERVER_WIRE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace recsys::internal {

// Appends one entry of RecommendResponse.items: a ScoredItem holding an Item
// (id, title, genres), the predicted rating (an optional field: written
// whenever present, 0 included; absent for implicit feedback) and the
// score. The strings must be valid UTF-8, as the catalogue's are (protobuf
// checks this when it serializes; these bytes are not checked again).
void AppendScoredItem(absl::string_view id, absl::string_view title,
                      const std::vector<std::string>& genres,
                      std::optional<float> predicted_rating, float score,
                      std::string* out);

// Appends RecommendResponse's fields after `items`: the strategy and the
// feedback (enum values), the model version and the unknown candidate ids.
void AppendRecommendTail(int strategy, uint64_t model_version,
                         const std::vector<std::string>& unknown_item_ids,
                         int feedback, std::string* out);

}  // namespace recsys::internal

#endif  // RECSYS_SERVER_WIRE_H_
