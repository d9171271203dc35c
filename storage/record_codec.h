// The rating log's record format (the layout is described in
// rating_log.h): segment header constants, framing (length and masked
// CRC-32C), encoding and decoding of one record, and the checks a record
// passes before it is appended.
#ifndef RECSYS_STORAGE_RECORD_CODEC_H_
#define RECSYS_STORAGE_RECORD_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "storage/rating_log.h"

namespace recsys {
namespace internal {

inline constexpr char kMagic[8] = {'R', 'S', 'Y', 'S', 'L', 'O', 'G', '1'};
inline constexpr uint32_t kVersion = 4;        // written
inline constexpr uint32_t kOldestVersion = 1;  // read too (see the header)
inline constexpr size_t kFrameBytes = 8;       // length and checksum

template <typename T>
void Store(char* dst, T value) {
  std::memcpy(dst, &value, sizeof(value));
}

template <typename T>
T Load(const char* src) {
  T value;
  std::memcpy(&value, src, sizeof(value));
  return value;
}

uint32_t MaskCrc(uint32_t crc);

// The checksum covers the length too, so a damaged length cannot select a
// different stretch of bytes that happens to check out.
uint32_t FrameCrc(const char* frame, uint32_t payload_size);

// The bytes of a catalogue record after the item id.
size_t EntryBytes(const ItemInfo& e);

void EncodeRecord(const LogRecord& r, std::string* out);

enum class Frame {
  kValid,
  kInvalid,         // bad length or checksum: torn, or corrupt
  kCorruptPayload,  // checks out but is malformed: never a torn write
};

// Decodes the record at `offset` into `r` (when not null) and its size into
// `frame_size`, or says in `why` what is wrong with it.
Frame DecodeFrame(absl::string_view bytes, size_t offset, LogRecord* r,
                  size_t* frame_size, std::string* why);

// The offset of the first record at or after `from` whose checksum is
// right, or npos. Any such record means the bytes before it are not the
// tail a crash left behind.
size_t FindValidFrame(absl::string_view bytes, size_t from);

absl::Status ValidateRecord(const LogRecord& r);

}  // namespace internal
}  // namespace recsys

#endif  // RECSYS_STORAGE_RECORD_CODEC_H_
