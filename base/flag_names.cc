#include "base/flag_names.h"

#include <algorithm>

namespace recsys {

std::vector<char*> NormalizeFlagNames(std::vector<std::string>* args) {
  std::vector<char*> out;
  for (std::string& arg : *args) {
    if (arg.size() > 2 && arg[0] == '-') {
      const size_t start = arg[1] == '-' ? 2 : 1;
      const size_t end = std::min(arg.find('='), arg.size());
      std::replace(arg.begin() + start, arg.begin() + end, '-', '_');
    }
    out.push_back(arg.data());
  }
  return out;
}

}  // namespace recsys
