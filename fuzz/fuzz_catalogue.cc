// Catalogue files (u.item, movies.dat, movies.csv; latin-1 or UTF-8): the
// first byte picks the name, the rest is the file.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "models/loaders.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const char* const kNames[] = {"u.item", "movies.dat", "movies.csv"};
  const std::string path =
      recsys::fuzz::WriteScratch(kNames[data[0] % 3], data + 1, size - 1);
  (void)recsys::LoadCatalogue(path);
  return 0;
}
