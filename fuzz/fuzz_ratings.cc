// Rating files: every format and the sniffer, explicit and implicit. The
// first byte picks the file name (and so the format the path suggests) and
// the options; the rest is the file.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "models/loaders.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  static const char* const kNames[] = {"u.data", "ratings.dat", "ratings.csv",
                                       "plays.tsv"};
  const std::string path =
      recsys::fuzz::WriteScratch(kNames[mode & 3], data + 1, size - 1);
  recsys::LoadOptions o;
  o.load_metadata = false;
  o.skip_bad_lines = (mode & 4) != 0;
  o.feedback = (mode & 8) != 0 ? recsys::Feedback::kImplicit
                               : recsys::Feedback::kExplicit;
  if ((mode & 16) != 0) o.scale = recsys::RatingScale{1, 5};
  if ((mode & 32) != 0) {
    o.format = recsys::DataFormat::kDelimited;  // the delimiter sniffed
  }
  absl::StatusOr<recsys::RatingData> d = recsys::LoadRatings(path, o);
  if (d.ok()) (void)recsys::ImplicitFeedbackHint(*d);
  return 0;
}
