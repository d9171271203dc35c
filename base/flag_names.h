// Command-line flag spelling shared by the recsys binaries.
//
//   std::vector<std::string> args(argv, argv + argc);
//   std::vector<char*> fixed = NormalizeFlagNames(&args);
//   absl::ParseCommandLine(fixed.size(), fixed.data());
#ifndef RECSYS_BASE_FLAG_NAMES_H_
#define RECSYS_BASE_FLAG_NAMES_H_

#include <string>
#include <vector>

namespace recsys {

// Abseil wants underscores in flag names; people type dashes. Rewrites
// "--a-b=c" to "--a_b=c" (the name part only) in place and returns argv-style
// pointers into `args`, which must outlive them.
std::vector<char*> NormalizeFlagNames(std::vector<std::string>* args);

}  // namespace recsys

#endif  // RECSYS_BASE_FLAG_NAMES_H_
