// Argument checks of the engine's calls: ids, catalogue entries, k,
// genres. Each returns INVALID_ARGUMENT with a message naming what is wrong.
#ifndef RECSYS_ENGINE_CHECKS_H_
#define RECSYS_ENGINE_CHECKS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/state.h"

namespace recsys {
namespace internal {

absl::Status CheckId(absl::string_view what, absl::string_view id);
bool SameEntry(const ItemInfo& a, const ItemInfo& b);
absl::Status CheckEntrySizes(const std::string* title,
                             const std::vector<std::string>* genres);
absl::Status CheckItemUpdate(const ItemUpdate& u);
absl::Status CheckK(int k);
absl::Status CheckGenre(const NewItems& ni, const std::string& genre);

}  // namespace internal
}  // namespace recsys

#endif  // RECSYS_ENGINE_CHECKS_H_
