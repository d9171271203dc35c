// Catalogue writes and reads: UpsertItems and GetItem.
#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "engine/checks.h"
#include "engine/engine.h"
#include "engine/state.h"

namespace recsys {

using internal::Catalogue;
using internal::CheckEntrySizes;
using internal::CheckId;
using internal::CheckItemUpdate;
using internal::Generation;
using internal::NewItems;
using internal::NowSeconds;
using internal::SameEntry;
using internal::ViewItem;

namespace {

absl::Status CheckUpdates(const std::vector<ItemUpdate>& updates) {
  if (updates.size() > kMaxListItems) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%d items, more than the limit of %d per call",
                        updates.size(), kMaxListItems));
  }
  for (size_t k = 0; k < updates.size(); ++k) {
    const absl::Status valid = CheckItemUpdate(updates[k]);
    if (!valid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("items[", k, "]: ", valid.message()));
    }
  }
  return absl::OkStatus();
}

// One entry per item, however often the updates name it, with the item's
// entry from before the call (none for a new item).
struct Pending {
  std::string id;
  ItemInfo entry;
  std::optional<ItemInfo> original;
};

// The entries the updates make, counted in `out`; INVALID_ARGUMENT when an
// entry would be over the limits. An item whose later updates undid its
// earlier ones is left out.
absl::StatusOr<std::vector<Pending>> MergeUpdates(
    const Generation& g, const NewItems& ni,
    const std::vector<ItemUpdate>& updates, UpsertItemsResult* out) {
  std::vector<Pending> entries;
  absl::flat_hash_map<std::string, size_t> entry_of;
  for (size_t k = 0; k < updates.size(); ++k) {
    const ItemUpdate& u = updates[k];
    auto pending = entry_of.find(u.id);
    const int32_t i = g.FindItem(u.id, ni);
    const bool known = i >= 0 || pending != entry_of.end();
    ItemInfo entry = pending != entry_of.end() ? entries[pending->second].entry
                     : i >= 0                  ? ni.Describe(i)
                                               : ItemInfo();
    const ItemInfo before = entry;
    if (u.title) entry.title = *u.title;
    if (u.genres) entry.genres = *u.genres;
    if (u.retired) entry.retired = *u.retired;
    if (known && SameEntry(entry, before)) {
      ++out->unchanged;
      continue;
    }
    // Titles and genres from the model's data have no limits, and the log
    // records the whole entry.
    if (const absl::Status sizes = CheckEntrySizes(&entry.title, &entry.genres);
        !sizes.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "items[", k, "]: the entry of item '", u.id,
          "' would be over the limits (", sizes.message(),
          "): give a shorter title or fewer genres in the same update"));
    }
    ++(known ? out->changed : out->added);
    if (pending == entry_of.end()) {
      entry_of.emplace(u.id, entries.size());
      entries.push_back(
          {u.id, std::move(entry),
           i >= 0 ? std::optional<ItemInfo>(before) : std::nullopt});
    } else {
      entries[pending->second].entry = std::move(entry);
    }
  }
  entries.erase(std::remove_if(entries.begin(), entries.end(),
                               [](const Pending& p) {
                                 return p.original &&
                                        SameEntry(p.entry, *p.original);
                               }),
                entries.end());
  return entries;
}

}  // namespace

absl::StatusOr<UpsertItemsResult> Engine::UpsertItems(
    const std::vector<ItemUpdate>& updates) {
  RECSYS_RETURN_IF_ERROR(CheckUpdates(updates));
  UpsertItemsResult out;
  int64_t logged = 0;
  {
    MutexLock edit(&catalogue_mu_);
    ReaderMutexLock swap(&swap_mu_);
    const std::shared_ptr<Generation> g = current();
    const std::shared_ptr<const NewItems> ni = g->items();
    RECSYS_ASSIGN_OR_RETURN(std::vector<Pending> entries,
                            MergeUpdates(*g, *ni, updates, &out));
    if (!entries.empty()) {
      std::vector<LogRecord> records(entries.size());
      std::vector<const LogRecord*> applied;
      const int64_t now = NowSeconds();
      for (size_t k = 0; k < entries.size(); ++k) {
        records[k].item = std::move(entries[k].id);
        records[k].entry =
            std::make_shared<const ItemInfo>(std::move(entries[k].entry));
        records[k].timestamp = now;
        applied.push_back(&records[k]);
      }
      RECSYS_ASSIGN_OR_RETURN(
          out.sequence, Commit(&records, [&] { ApplyEntries(*g, applied); }));
      logged = static_cast<int64_t>(records.size());
    }
  }
  // The lookups by genre and availability are made now, by the writer,
  // rather than by the next Recommend.
  current()->items()->catalogue->index();
  // Catalogue entries lengthen the log as ratings do.
  CountLogged(logged);
  return out;
}

absl::StatusOr<ItemView> Engine::GetItem(const std::string& id) const {
  RECSYS_RETURN_IF_ERROR(CheckId("item id", id));
  const std::shared_ptr<Generation> g = current();
  const std::shared_ptr<const NewItems> ni = g->items();
  const int32_t i = g->FindItem(id, *ni);
  if (i < 0)
    return absl::NotFoundError(absl::StrCat("unknown item '", id, "'"));
  return ViewItem(*g, *ni, i);
}

}  // namespace recsys
