// What the fuzz targets share: a scratch directory of this process, into
// which a target writes the input as the file a loader reads.
#ifndef RECSYS_FUZZ_FUZZ_UTIL_H_
#define RECSYS_FUZZ_FUZZ_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace recsys::fuzz {

// A directory of this process's own (created once, under $TMPDIR or /tmp).
const std::string& ScratchDir();

// Writes `size` bytes at `data` to ScratchDir()/name (replacing it) and
// returns the path.
std::string WriteScratch(const std::string& name, const uint8_t* data,
                         size_t size);

}  // namespace recsys::fuzz

#endif  // RECSYS_FUZZ_FUZZ_UTIL_H_
