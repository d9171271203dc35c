#include "storage/record_codec.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/crc32c.h"
#include "base/status_macros.h"

namespace recsys {
namespace internal {

// Scalars are copied in their in-memory representation, which is the
// file's only on little-endian IEEE-754 hosts.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the log copies memory as little-endian file data");
static_assert(std::numeric_limits<float>::is_iec559,
              "log records store IEEE-754 floats");

uint32_t MaskCrc(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

uint32_t FrameCrc(const char* frame, uint32_t payload_size) {
  const uint32_t crc = Crc32c(frame, 4);
  return MaskCrc(Crc32c(frame + kFrameBytes, payload_size, crc));
}

size_t EntryBytes(const ItemInfo& e) {
  size_t n = 12 + e.title.size();
  for (const std::string& genre : e.genres) n += 4 + genre.size();
  return n;
}

void EncodeRecord(const LogRecord& r, std::string* out) {
  const size_t tail = r.add ? 12 + r.event_type.size() + r.event_id.size() : 0;
  const uint32_t size = static_cast<uint32_t>(
      RatingLog::kMinPayloadBytes + r.user.size() + r.item.size() +
      (r.entry != nullptr ? EntryBytes(*r.entry) : 0) + tail);
  const size_t start = out->size();
  out->resize(start + kFrameBytes + size);
  char* frame = out->data() + start;
  char* p = frame + kFrameBytes;
  Store(frame, size);
  Store(p, r.seq);
  Store(p + 8, r.value);
  Store(p + 12, r.timestamp);
  Store(p + 20, static_cast<uint32_t>(r.user.size()));
  std::memcpy(p + 24, r.user.data(), r.user.size());
  p += 24 + r.user.size();
  Store(p, static_cast<uint32_t>(r.item.size()));
  std::memcpy(p + 4, r.item.data(), r.item.size());
  p += 4 + r.item.size();
  if (r.add) {
    Store(p, uint32_t{1});
    Store(p + 4, static_cast<uint32_t>(r.event_type.size()));
    std::memcpy(p + 8, r.event_type.data(), r.event_type.size());
    p += 8 + r.event_type.size();
    Store(p, static_cast<uint32_t>(r.event_id.size()));
    std::memcpy(p + 4, r.event_id.data(), r.event_id.size());
    p += 4 + r.event_id.size();
  }
  if (r.entry != nullptr) {
    const ItemInfo& e = *r.entry;
    Store(p, uint32_t{e.retired ? 1u : 0u});
    Store(p + 4, static_cast<uint32_t>(e.title.size()));
    std::memcpy(p + 8, e.title.data(), e.title.size());
    p += 8 + e.title.size();
    Store(p, static_cast<uint32_t>(e.genres.size()));
    p += 4;
    for (const std::string& genre : e.genres) {
      Store(p, static_cast<uint32_t>(genre.size()));
      std::memcpy(p + 4, genre.data(), genre.size());
      p += 4 + genre.size();
    }
  }
  Store(frame + 4, FrameCrc(frame, size));
}

namespace {

// A catalogue entry's fields, from `q` to `end` (the end of the record);
// null when malformed. Every length is checked against the bytes left
// before it is used.
std::shared_ptr<ItemInfo> DecodeEntry(const char* q, const char* const end) {
  auto u32 = [&](uint32_t* v) {
    if (end - q < 4) return false;
    *v = Load<uint32_t>(q);
    q += 4;
    return true;
  };
  auto str = [&](std::string* out, size_t limit) {
    uint32_t n = 0;
    if (!u32(&n) || n > limit || static_cast<size_t>(end - q) < n) {
      return false;
    }
    out->assign(q, n);
    q += n;
    return true;
  };
  auto entry = std::make_shared<ItemInfo>();
  uint32_t flags = 0, genres = 0;
  bool ok = u32(&flags) && flags <= 1 &&
            str(&entry->title, RatingLog::kMaxTitleBytes) && u32(&genres) &&
            genres <= RatingLog::kMaxGenres;
  entry->retired = flags == 1;
  if (ok) entry->genres.resize(genres);
  for (uint32_t g = 0; ok && g < genres; ++g) {
    ok = str(&entry->genres[g], RatingLog::kMaxGenreBytes);
  }
  if (!ok || q != end) return nullptr;
  return entry;
}

// An event tail's fields (see rating_log.h), from `q` to `end`; false when
// malformed. Every length is checked against the bytes left first.
bool DecodeEventTail(const char* q, const char* const end, std::string* type,
                     std::string* id) {
  auto str = [&](std::string* out) {
    if (end - q < 4) return false;
    const uint32_t n = Load<uint32_t>(q);
    q += 4;
    if (n > RatingLog::kMaxIdBytes || static_cast<size_t>(end - q) < n) {
      return false;
    }
    out->assign(q, n);
    q += n;
    return true;
  };
  if (end - q < 4 || Load<uint32_t>(q) != 1) return false;
  q += 4;
  return str(type) && !type->empty() && str(id) && q == end;
}

// The frame's length and checksum: kValid with the payload's size, or
// kInvalid (torn or corrupt) saying why.
Frame CheckFrame(absl::string_view bytes, size_t offset, uint32_t* size,
                 std::string* why) {
  const size_t left = bytes.size() - offset;
  if (left < kFrameBytes) {
    *why = absl::StrFormat("record header cut short (%d of %d bytes)", left,
                           kFrameBytes);
    return Frame::kInvalid;
  }
  const char* frame = bytes.data() + offset;
  *size = Load<uint32_t>(frame);
  if (*size < RatingLog::kMinPayloadBytes ||
      *size > RatingLog::kMaxPayloadBytes) {
    *why = absl::StrFormat("record length %d outside [%d, %d]", *size,
                           RatingLog::kMinPayloadBytes,
                           RatingLog::kMaxPayloadBytes);
    return Frame::kInvalid;
  }
  if (*size > left - kFrameBytes) {
    *why = absl::StrFormat("record of %d bytes cut short at %d", *size,
                           left - kFrameBytes);
    return Frame::kInvalid;
  }
  if (Load<uint32_t>(frame + 4) != FrameCrc(frame, *size)) {
    *why = "checksum mismatch";
    return Frame::kInvalid;
  }
  return Frame::kValid;
}

}  // namespace

Frame DecodeFrame(absl::string_view bytes, size_t offset, LogRecord* r,
                  size_t* frame_size, std::string* why) {
  uint32_t size = 0;
  if (CheckFrame(bytes, offset, &size, why) != Frame::kValid) {
    return Frame::kInvalid;
  }
  const char* frame = bytes.data() + offset;
  *frame_size = kFrameBytes + size;
  const char* p = frame + kFrameBytes;
  const uint32_t user_size = Load<uint32_t>(p + 20);
  // Both lengths are checked against the space left before either is used.
  if (user_size > RatingLog::kMaxIdBytes ||
      user_size > size - RatingLog::kMinPayloadBytes) {
    *why =
        absl::StrFormat("user id length %d does not fit the record", user_size);
    return Frame::kCorruptPayload;
  }
  const uint32_t item_size = Load<uint32_t>(p + 24 + user_size);
  const size_t rest = size - RatingLog::kMinPayloadBytes - user_size;
  // A catalogue entry (no user id) follows its item id, and so does an
  // event's tail; a rating's or an erasure's item id ends the record.
  const bool fits =
      user_size == 0 ? item_size > 0 && item_size <= rest : item_size <= rest;
  if (!fits) {
    *why =
        absl::StrFormat("item id length %d does not fit the record", item_size);
    return Frame::kCorruptPayload;
  }
  const char* const after_item = p + 28 + user_size + item_size;
  const char* const end = frame + kFrameBytes + size;
  std::string event_type, event_id;
  const bool event = user_size != 0 && item_size < rest;
  if (event && (item_size == 0 ||
                !DecodeEventTail(after_item, end, &event_type, &event_id))) {
    *why = "malformed event tail";
    return Frame::kCorruptPayload;
  }
  std::shared_ptr<ItemInfo> entry;
  if (user_size == 0) {
    entry = DecodeEntry(after_item, end);
    if (entry == nullptr) {
      *why = "malformed catalogue entry";
      return Frame::kCorruptPayload;
    }
  }
  if (r != nullptr) {
    r->seq = Load<uint64_t>(p);
    r->value = Load<float>(p + 8);
    r->timestamp = Load<int64_t>(p + 12);
    r->user.assign(p + 24, user_size);
    r->item.assign(p + 28 + user_size, item_size);
    r->erase_user = item_size == 0;
    r->entry = std::move(entry);
    r->add = event;
    r->event_type = std::move(event_type);
    r->event_id = std::move(event_id);
  }
  return Frame::kValid;
}

size_t FindValidFrame(absl::string_view bytes, size_t from) {
  std::string why;
  size_t frame_size = 0;
  for (size_t offset = from;
       offset + kFrameBytes + RatingLog::kMinPayloadBytes <= bytes.size();
       ++offset) {
    if (DecodeFrame(bytes, offset, nullptr, &frame_size, &why) !=
        Frame::kInvalid) {
      return offset;
    }
  }
  return absl::string_view::npos;
}

absl::Status ValidateRecord(const LogRecord& r) {
  auto check_id = [](absl::string_view side,
                     const std::string& id) -> absl::Status {
    if (id.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(side, " id is empty"));
    }
    if (id.size() > RatingLog::kMaxIdBytes) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s id of %d bytes exceeds the %d-byte limit", side,
                          id.size(), RatingLog::kMaxIdBytes));
    }
    return absl::OkStatus();
  };
  if (r.entry != nullptr) {
    RECSYS_RETURN_IF_ERROR(check_id("item", r.item));
    const ItemInfo& e = *r.entry;
    if (!r.user.empty() || r.erase_user || r.value != 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "the catalogue entry of item '%s' has a user or a value", r.item));
    }
    if (e.title.size() > RatingLog::kMaxTitleBytes ||
        e.genres.size() > RatingLog::kMaxGenres ||
        std::any_of(e.genres.begin(), e.genres.end(), [](const auto& g) {
          return g.size() > RatingLog::kMaxGenreBytes;
        })) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "the catalogue entry of item '%s' exceeds the title or genre limits",
          r.item));
    }
    return absl::OkStatus();
  }
  RECSYS_RETURN_IF_ERROR(check_id("user", r.user));
  if (r.add || !r.event_type.empty() || !r.event_id.empty()) {
    if (!r.add || r.erase_user || r.event_type.empty() ||
        r.event_type.size() > RatingLog::kMaxIdBytes ||
        r.event_id.size() > RatingLog::kMaxIdBytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "the event of user '%s' needs add, a type and ids within %d bytes",
          r.user, RatingLog::kMaxIdBytes));
    }
    if (!(std::isfinite(r.value) && r.value >= 0)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "the event of user '%s' for item '%s' has a weight that is not "
          "finite and >= 0",
          r.user, r.item));
    }
  }
  if (r.erase_user) {
    if (!r.item.empty() || r.value != 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "the erasure of user '%s' has an item or a value", r.user));
    }
    return absl::OkStatus();
  }
  RECSYS_RETURN_IF_ERROR(check_id("item", r.item));
  if (!std::isfinite(r.value)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "rating of user '%s' for item '%s' is not finite", r.user, r.item));
  }
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace recsys
