#include "models/datasets.h"

#include <fcntl.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/file_io.h"
#include "base/status_macros.h"

extern char** environ;

namespace recsys {
namespace {

namespace fs = std::filesystem;

constexpr char kGroupLens[] = "https://files.grouplens.org/datasets/movielens/";

std::string EnvOrEmpty(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

std::string HomeDir() {
  std::string home = EnvOrEmpty("HOME");
  if (!home.empty()) return home;
  // Services started without a login environment still have a passwd entry.
  if (const passwd* pw = getpwuid(getuid()); pw && pw->pw_dir && *pw->pw_dir) {
    return pw->pw_dir;
  }
  return fs::temp_directory_path().string();
}

std::string KnownNames() {
  std::vector<std::string> names;
  for (const DatasetInfo& d : BuiltinDatasets()) names.push_back(d.name);
  return absl::StrJoin(names, ", ");
}

std::string InstalledFile(const DatasetInfo& info,
                          const std::string& data_dir) {
  return (fs::path(data_dir) / info.name / info.ratings_file).string();
}

// What an offline user should do instead; every download failure ends with
// it.
std::string ManualInstallHint(const DatasetInfo& info,
                              const std::string& data_dir) {
  return absl::StrCat("download ", info.url, " yourself and unpack it so that ",
                      InstalledFile(info, data_dir),
                      " exists, or set RECSYS_DATA_DIR / --data-dir to a "
                      "directory that holds ",
                      info.name, "/");
}

bool InPath(const std::string& tool) {
  for (absl::string_view dir :
       absl::StrSplit(EnvOrEmpty("PATH"), ':', absl::SkipEmpty())) {
    const std::string candidate = absl::StrCat(dir, "/", tool);
    if (access(candidate.c_str(), X_OK) == 0) return true;
  }
  return false;
}

absl::Status CheckTools() {
  const std::pair<const char*, const char*> kTools[] = {
      {"curl", "curl"}, {"md5sum", "coreutils"}, {"unzip", "unzip"}};
  for (const auto& [tool, package] : kTools) {
    if (!InPath(tool)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "downloading datasets needs the '", tool,
          "' program, which is not in PATH; install it with: apt-get "
          "install ",
          package));
    }
  }
  return absl::OkStatus();
}

// Removes a scratch directory on every exit path, so a failed download
// leaves nothing behind that could pass for an installed dataset.
class ScratchDir {
 public:
  explicit ScratchDir(std::string path) : path_(std::move(path)) {}
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

absl::Status Download(const std::string& url, const std::string& to,
                      const DatasetInfo& info, const std::string& data_dir) {
  absl::FPrintF(stderr, "downloading %s ...\n", url);
  absl::StatusOr<int> code =
      internal::RunCommand({"curl", "-fsSL", "--retry", "2", "-o", to, url});
  if (code.ok() && *code == 0) return absl::OkStatus();
  const std::string why = code.ok() ? absl::StrCat("curl exit code ", *code)
                                    : std::string(code.status().message());
  return absl::FailedPreconditionError(
      absl::StrCat("could not download ", url, " (", why, "); ",
                   ManualInstallHint(info, data_dir)));
}

absl::StatusOr<std::string> Md5Of(const std::string& file) {
  std::string out;
  RECSYS_ASSIGN_OR_RETURN(int code,
                          internal::RunCommand({"md5sum", file}, &out));
  if (code != 0) {
    return absl::InternalError(
        absl::StrCat("md5sum ", file, " failed with exit code ", code));
  }
  return internal::ParseMd5Listing(out);
}

bool IsHex(absl::string_view s) {
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

const std::vector<DatasetInfo>& BuiltinDatasets() {
  static const auto* datasets = new std::vector<DatasetInfo>{
      {"ml-100k", absl::StrCat(kGroupLens, "ml-100k.zip"),
       "0e33842e24a9c977be4e0107933c0723", "u.data"},
      // GroupLens rebuilds ml-latest-small and ml-32m from time to time, so
      // their checksum comes from the .md5 file published beside them.
      {"ml-latest-small", absl::StrCat(kGroupLens, "ml-latest-small.zip"), "",
       "ratings.csv"},
      {"ml-1m", absl::StrCat(kGroupLens, "ml-1m.zip"),
       "c4d9eecfca2ab87c1945afe126590906", "ratings.dat"},
      {"ml-25m", absl::StrCat(kGroupLens, "ml-25m.zip"),
       "6b51fb2759a8657d3bfcbfc42b592ada", "ratings.csv"},
      {"ml-32m", absl::StrCat(kGroupLens, "ml-32m.zip"), "", "ratings.csv"},
  };
  return *datasets;
}

const DatasetInfo* FindDataset(absl::string_view name) {
  for (const DatasetInfo& d : BuiltinDatasets()) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

std::string DefaultDataDir(const DatasetOptions& options) {
  if (!options.data_dir.empty()) return options.data_dir;
  if (std::string env = EnvOrEmpty("RECSYS_DATA_DIR"); !env.empty()) {
    return env;
  }
  if (std::string xdg = EnvOrEmpty("XDG_CACHE_HOME"); !xdg.empty()) {
    return (fs::path(xdg) / "recsys").string();
  }
  return (fs::path(HomeDir()) / ".cache" / "recsys").string();
}

absl::StatusOr<std::string> ResolveDataset(absl::string_view name,
                                           const DatasetOptions& options) {
  const DatasetInfo* info = FindDataset(name);
  if (info == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown dataset '", name, "'; known datasets: ", KnownNames()));
  }
  const std::string data_dir = DefaultDataDir(options);
  std::error_code ec;
  if (fs::exists(InstalledFile(*info, data_dir), ec)) {
    return (fs::path(data_dir) / info->name).string();
  }
  if (!options.download) {
    return absl::FailedPreconditionError(absl::StrCat(
        "dataset ", info->name, " is not installed in ", data_dir, " (",
        InstalledFile(*info, data_dir), " does not exist) and downloading is ",
        "off; ", ManualInstallHint(*info, data_dir)));
  }
  return internal::FetchAndUnpack(*info, data_dir);
}

namespace internal {

absl::StatusOr<std::string> ParseMd5Listing(absl::string_view text) {
  absl::string_view hex = text;
  // BSD form "MD5 (file) = <hex>"; otherwise md5sum's "<hex>  file".
  if (const size_t eq = text.rfind(" = "); eq != absl::string_view::npos) {
    hex = text.substr(eq + 3);
  }
  hex = absl::StripLeadingAsciiWhitespace(hex);
  hex = hex.substr(0, std::min(hex.size(), hex.find_first_of(" \t\r\n")));
  if (hex.size() != 32 || !IsHex(hex)) {
    return absl::InvalidArgumentError(
        absl::StrCat("no MD5 checksum in '", text.substr(0, 80), "'"));
  }
  return absl::AsciiStrToLower(hex);
}

absl::StatusOr<int> RunCommand(const std::vector<std::string>& argv,
                               std::string* output) {
  if (argv.empty()) return absl::InvalidArgumentError("empty command");
  std::vector<char*> args;
  for (const std::string& a : argv) {
    // posix_spawn's signature predates const; it does not write to them.
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);

  int pipe_fds[2] = {-1, -1};
  if (output != nullptr && pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return absl::ErrnoToStatus(errno, "pipe");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  if (output != nullptr) {
    // dup2 clears close-on-exec on the child's copy only.
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
  }
  pid_t pid = -1;
  const int err =
      posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (output != nullptr) close(pipe_fds[1]);
  if (err != 0) {
    if (output != nullptr) close(pipe_fds[0]);
    return absl::ErrnoToStatus(err, absl::StrCat("cannot run ", argv[0]));
  }
  if (output != nullptr) {
    output->clear();
    char block[4096];
    for (;;) {
      const ssize_t n = read(pipe_fds[0], block, sizeof(block));
      if (n > 0) {
        output->append(block, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        break;
      }
    }
    close(pipe_fds[0]);
  }
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0) {
    if (errno != EINTR) return absl::ErrnoToStatus(errno, "waitpid");
  }
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
  return absl::InternalError(absl::StrCat(argv[0], ": unexpected wait status"));
}

namespace {

// Creates data_dir and a fresh scratch directory in it; returns the
// scratch's path. The scratch directory sits inside data_dir so the final
// rename stays on one filesystem and is atomic.
absl::StatusOr<std::string> MakeScratchDir(const DatasetInfo& info,
                                           const std::string& data_dir) {
  std::error_code ec;
  fs::create_directories(data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create ", data_dir, ": ", ec.message(), "; ",
                     ManualInstallHint(info, data_dir)));
  }
  std::string scratch_template =
      (fs::path(data_dir) / absl::StrCat(".partial-", info.name, "-XXXXXX"))
          .string();
  if (mkdtemp(scratch_template.data()) == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create a directory in ", data_dir, ": ", std::strerror(errno),
        "; ", ManualInstallHint(info, data_dir)));
  }
  return scratch_template;
}

// Downloads the archive to `archive` and checks its MD5 against the
// dataset's (or, when it has none, the listing published beside it); a
// mismatched download is deleted.
absl::Status DownloadVerified(const DatasetInfo& info,
                              const std::string& data_dir,
                              const std::string& archive) {
  RECSYS_RETURN_IF_ERROR(Download(info.url, archive, info, data_dir));
  std::string expected = info.md5;
  if (expected.empty()) {
    const std::string listing_url = absl::StrCat(info.url, ".md5");
    const std::string listing = archive + ".md5";
    RECSYS_RETURN_IF_ERROR(Download(listing_url, listing, info, data_dir));
    RECSYS_ASSIGN_OR_RETURN(std::string text,
                            ReadSmallFile(listing, "checksum listing"));
    absl::StatusOr<std::string> parsed = ParseMd5Listing(text);
    if (!parsed.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(listing_url, ": ", parsed.status().message(), "; ",
                       ManualInstallHint(info, data_dir)));
    }
    expected = *std::move(parsed);
  }
  RECSYS_ASSIGN_OR_RETURN(const std::string actual, Md5Of(archive));
  if (!absl::EqualsIgnoreCase(actual, expected)) {
    std::error_code ec;
    fs::remove(archive, ec);
    return absl::DataLossError(
        absl::StrCat("MD5 mismatch for ", info.url, ": expected ", expected,
                     ", got ", actual, "; the download was deleted"));
  }
  absl::FPrintF(stderr, "verified md5 %s of %s\n", actual, info.url);
  return absl::OkStatus();
}

// Unzips `archive` into `unpacked`, which must then hold the ratings file.
absl::Status Unzip(const DatasetInfo& info, const std::string& archive,
                   const fs::path& unpacked) {
  RECSYS_ASSIGN_OR_RETURN(int code, RunCommand({"unzip", "-q", "-o", archive,
                                                "-d", unpacked.string()}));
  if (code != 0) {
    return absl::DataLossError(
        absl::StrCat("unzip of ", info.url, " failed with exit code ", code));
  }
  std::error_code ec;
  if (!fs::exists(unpacked / info.name / info.ratings_file, ec)) {
    return absl::DataLossError(absl::StrCat(info.url, " does not contain ",
                                            info.name, "/", info.ratings_file));
  }
  return absl::OkStatus();
}

// Renames the unpacked dataset to `target`; returns target's path.
absl::StatusOr<std::string> MoveIntoPlace(const DatasetInfo& info,
                                          const std::string& data_dir,
                                          const fs::path& unpacked,
                                          const fs::path& target) {
  std::error_code ec;
  fs::rename(unpacked / info.name, target, ec);
  if (ec) {
    // Another process may have finished the same download first.
    std::error_code ignored;
    if (fs::exists(InstalledFile(info, data_dir), ignored)) {
      return target.string();
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot move the unpacked dataset to ", target.string(), ": ",
        ec.message(), "; ", ManualInstallHint(info, data_dir)));
  }
  absl::FPrintF(stderr, "installed %s in %s\n", info.name, target.string());
  return target.string();
}

}  // namespace

absl::StatusOr<std::string> FetchAndUnpack(const DatasetInfo& info,
                                           const std::string& data_dir) {
  RECSYS_RETURN_IF_ERROR(CheckTools());
  const fs::path target = fs::path(data_dir) / info.name;
  std::error_code ec;
  // Checked before downloading: the final rename could not replace it, and
  // it may hold files the user put there by hand.
  if (fs::exists(InstalledFile(info, data_dir), ec)) return target.string();
  if (fs::exists(target, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat(target.string(), " exists but has no ", info.ratings_file,
                     "; complete or remove it. To install by hand: ",
                     ManualInstallHint(info, data_dir)));
  }
  RECSYS_ASSIGN_OR_RETURN(std::string scratch_path,
                          MakeScratchDir(info, data_dir));
  const ScratchDir scratch(std::move(scratch_path));
  const std::string archive =
      (fs::path(scratch.path()) / absl::StrCat(info.name, ".zip")).string();

  RECSYS_RETURN_IF_ERROR(DownloadVerified(info, data_dir, archive));
  const fs::path unpacked = fs::path(scratch.path()) / "unpacked";
  RECSYS_RETURN_IF_ERROR(Unzip(info, archive, unpacked));
  return MoveIntoPlace(info, data_dir, unpacked, target);
}

}  // namespace internal

absl::StatusOr<std::string> ResolveDataPath(const DataSource& source) {
  if (source.data.empty()) {
    return absl::InvalidArgumentError(
        "no data given: pass --data with a dataset name (e.g. ml-100k) or a "
        "path");
  }
  if (FindDataset(source.data) != nullptr &&
      !std::filesystem::exists(source.data)) {
    return ResolveDataset(source.data, source.dataset);
  }
  return source.data;
}

absl::StatusOr<RatingData> LoadSource(const DataSource& source) {
  RECSYS_ASSIGN_OR_RETURN(std::string path, ResolveDataPath(source));
  return LoadRatings(path, source.load);
}

}  // namespace recsys
