// The rating log's recovery over a directory holding the input as its one
// segment (header included): framing, checksums, record decoding, torn
// tails, versions. A valid record is replayed as the engine would see it.
#include <cstddef>
#include <cstdint>
#include <filesystem>

#include "fuzz/fuzz_util.h"
#include "storage/rating_log.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string dir = recsys::fuzz::ScratchDir() + "/log";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  recsys::fuzz::WriteScratch("log/ratings-00000000000000000001.log", data,
                             size);
  recsys::RatingLogOptions o;
  o.sync = recsys::SyncPolicy::kNever;
  uint64_t replayed = 0;
  (void)recsys::RatingLog::Open(dir, o, 0, [&](const recsys::LogRecord& r) {
    replayed += r.user.size() + r.item.size();
  });
  return 0;
}
