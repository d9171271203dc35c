// The model-file reader on arbitrary bytes (and, from the seed corpus, on
// mutated valid files): every count is checked before it is trusted.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "models/model_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)recsys::ParseModel(
      absl::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  return 0;
}
