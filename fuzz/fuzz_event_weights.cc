// --event_weights: a flag value is bytes from outside too.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/events.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string spec(reinterpret_cast<const char*>(data), size);
  auto w = recsys::internal::ParseEventWeights(spec);
  if (w.ok()) {
    // What is printed reads back as the same table.
    auto again = recsys::internal::ParseEventWeights(
        recsys::internal::FormatEventWeights(*w));
    if (!again.ok() || *again != *w) __builtin_trap();
  }
  return 0;
}
