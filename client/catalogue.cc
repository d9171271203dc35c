// recsys-client's catalogue commands: item, set-item and set-items.
#include <algorithm>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/json.h"
#include "base/status_macros.h"
#include "client/client.h"
#include "models/loaders.h"

namespace recsys {

using internal::Genres;
using internal::RequireFlag;

absl::Status RunItem(const ClientOptions& options, const ItemOptions& command,
                     RecommenderStub& stub, const Streams& io) {
  RECSYS_RETURN_IF_ERROR(RequireFlag(command.item, "item", "item"));
  v1::GetItemRequest request;
  request.set_item_id(command.item);
  RECSYS_ASSIGN_OR_RETURN(
      v1::GetItemResponse response,
      internal::Call(options, &RecommenderStub::GetItem, stub, request));
  if (internal::PrintJson(options, response, io)) return absl::OkStatus();
  const v1::Item& item = response.item();
  *io.out << "item: " << item.id() << "\n"
          << "title: " << (item.title().empty() ? "(none)" : item.title())
          << "\n"
          << "genres: " << (item.genres_size() == 0 ? "(none)" : Genres(item))
          << "\n"
          << "retired: " << (item.retired() ? "yes (never recommended)" : "no")
          << "\n";
  return absl::OkStatus();
}

namespace {

// The counts of an UpsertItems answer, as a phrase.
std::string UpsertCounts(int64_t added, int64_t changed, int64_t unchanged) {
  return absl::StrFormat("%d added, %d changed, %d unchanged", added, changed,
                         unchanged);
}

}  // namespace

absl::Status RunSetItem(const ClientOptions& options,
                        const ItemOptions& command, RecommenderStub& stub,
                        const Streams& io) {
  RECSYS_RETURN_IF_ERROR(RequireFlag(command.item, "item", "set-item"));
  if (!command.title && !command.genres && !command.retired) {
    return UsageError(
        "set-item needs at least one of --title, --genres, --retired");
  }
  v1::UpsertItemsRequest request;
  v1::ItemUpdate* update = request.add_items();
  update->set_item_id(command.item);
  // As from a catalogue file: text that is not UTF-8 is read as latin-1
  // (protobuf would refuse it).
  if (command.title) update->set_title(ToUtf8(*command.title));
  if (command.genres) {
    v1::GenreList* genres = update->mutable_genres();
    for (absl::string_view g : absl::StrSplit(*command.genres, '|')) {
      genres->add_genres(ToUtf8(g));
    }
  }
  if (command.retired) update->set_retired(*command.retired);
  RECSYS_ASSIGN_OR_RETURN(
      v1::UpsertItemsResponse response,
      internal::Call(options, &RecommenderStub::UpsertItems, stub, request));
  if (internal::PrintJson(options, response, io)) return absl::OkStatus();
  *io.out << "item " << command.item << ": "
          << (response.added() > 0     ? "added to the catalogue"
              : response.changed() > 0 ? "changed"
                                       : "unchanged (already so)");
  if (response.log_sequence() > 0) {
    *io.out << " (log sequence " << response.log_sequence() << ")";
  }
  *io.out << "\n";
  return absl::OkStatus();
}

absl::Status RunSetItems(const ClientOptions& options,
                         const CatalogueFileOptions& command,
                         RecommenderStub& stub, const Streams& io) {
  RECSYS_RETURN_IF_ERROR(RequireFlag(command.path, "file", "set-items"));
  if (command.batch < 1 || command.batch > 10000) {
    return UsageError(absl::StrCat(
        "set-items: --batch must be in 1..10000, not ", command.batch));
  }
  absl::StatusOr<RatingData> catalogue = LoadCatalogue(command.path);
  if (!catalogue.ok()) {
    return UsageError(catalogue.status().message());
  }
  const int32_t n = catalogue->items.size();
  int64_t added = 0, changed = 0, unchanged = 0, calls = 0;
  for (int32_t first = 0; first < n; first += command.batch) {
    const int32_t end = std::min(n, first + command.batch);
    v1::UpsertItemsRequest request;
    for (int32_t i = first; i < end; ++i) {
      const ItemInfo& info = catalogue->item_info[static_cast<size_t>(i)];
      v1::ItemUpdate* update = request.add_items();
      update->set_item_id(catalogue->items.External(i));
      update->set_title(info.title);
      // (A genre listed twice is refused by the server: it goes once.)
      std::set<absl::string_view> seen;
      v1::GenreList* genres = update->mutable_genres();
      for (const std::string& g : info.genres) {
        if (seen.insert(g).second) genres->add_genres(g);
      }
      if (command.retired) update->set_retired(*command.retired);
    }
    absl::StatusOr<v1::UpsertItemsResponse> response =
        internal::Call(options, &RecommenderStub::UpsertItems, stub, request);
    if (!response.ok()) {
      // "items[k]: ..." names the k-th update of this call.
      std::string message(response.status().message());
      absl::string_view rest = message;
      int k = -1;
      if (absl::ConsumePrefix(&rest, "items[")) {
        const size_t close = rest.find("]: ");
        if (close != absl::string_view::npos &&
            absl::SimpleAtoi(rest.substr(0, close), &k) && k >= 0 &&
            k < end - first) {
          message = absl::StrCat("item ", catalogue->items.External(first + k),
                                 ": ", rest.substr(close + 3));
        }
      }
      *io.err << absl::StrFormat(
          "set-items: %d of %d items sent before this call (%s)\n", first, n,
          UpsertCounts(added, changed, unchanged));
      return internal::RpcError(grpc::Status(
          static_cast<grpc::StatusCode>(response.status().code()), message));
    }
    added += response->added();
    changed += response->changed();
    unchanged += response->unchanged();
    ++calls;
  }
  if (options.json) {
    Json j;
    j["items"] = n;
    j["added"] = added;
    j["changed"] = changed;
    j["unchanged"] = unchanged;
    j["calls"] = calls;
    *io.out << DumpJson(j) << "\n";
    return absl::OkStatus();
  }
  *io.out << absl::StrFormat("%s: %d items in %d calls: %s\n", command.path, n,
                             calls, UpsertCounts(added, changed, unchanged));
  return absl::OkStatus();
}

}  // namespace recsys
