// Named MovieLens datasets: where they live locally, and fetching them from
// GroupLens when they are missing.
//
//   RECSYS_ASSIGN_OR_RETURN(std::string dir, ResolveDataset("ml-100k", {}));
//   // dir is e.g. ~/.cache/recsys/ml-100k, holding u.data, u.item, ...
//
// The data directory is, in order: DatasetOptions::data_dir, the environment
// variable RECSYS_DATA_DIR, $XDG_CACHE_HOME/recsys, ~/.cache/recsys.
#ifndef RECSYS_MODELS_DATASETS_H_
#define RECSYS_MODELS_DATASETS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "models/loaders.h"
#include "models/ratings.h"

namespace recsys {

struct DatasetInfo {
  std::string name;          // "ml-100k"
  std::string url;           // official GroupLens archive
  std::string md5;           // published MD5 of the archive; empty when
                             // GroupLens regenerates it (then the .md5 file
                             // published beside the archive is used)
  std::string ratings_file;  // file whose presence means "installed"
};

// The built-in datasets: ml-100k, ml-latest-small, ml-1m, ml-25m, ml-32m.
const std::vector<DatasetInfo>& BuiltinDatasets();
// nullptr when `name` is not built in.
const DatasetInfo* FindDataset(absl::string_view name);

struct DatasetOptions {
  std::string data_dir;  // empty = environment / cache default
  bool download = true;  // fetch when missing
};

std::string DefaultDataDir(const DatasetOptions& options);

// Returns the directory holding dataset `name`, downloading, verifying and
// unpacking it when missing. An offline machine gets FAILED_PRECONDITION with
// a message saying where to put the files.
absl::StatusOr<std::string> ResolveDataset(absl::string_view name,
                                           const DatasetOptions& options);

// Where ratings come from: a built-in dataset name or a path.
struct DataSource {
  std::string data;  // "ml-100k", or a file/directory path
  LoadOptions load;
  DatasetOptions dataset;
};

// Resolves a name to its directory (downloading when allowed) or returns
// the path unchanged.
absl::StatusOr<std::string> ResolveDataPath(const DataSource& source);
absl::StatusOr<RatingData> LoadSource(const DataSource& source);

namespace internal {

// Downloads info.url with curl, checks its MD5 (info.md5, or the listing at
// info.url + ".md5" when that is empty) and unpacks it so that
// <data_dir>/<info.name>/<info.ratings_file> exists. Returns that directory.
// Exposed so tests can install from a file:// URL.
absl::StatusOr<std::string> FetchAndUnpack(const DatasetInfo& info,
                                           const std::string& data_dir);

// The MD5 in a published checksum file: "MD5 (file.zip) = <hex>" (BSD) or
// "<hex>  file.zip" (md5sum). Lower-case hex.
absl::StatusOr<std::string> ParseMd5Listing(absl::string_view text);

// Runs argv (argv[0] looked up in PATH) without a shell and returns its exit
// code (128 + signal number when killed). Its stdout goes to *output when
// given, else to ours; stdin is /dev/null.
absl::StatusOr<int> RunCommand(const std::vector<std::string>& argv,
                               std::string* output = nullptr);

}  // namespace internal

}  // namespace recsys

#endif  // RECSYS_MODELS_DATASETS_H_
