#include "server/log.h"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/json.h"

namespace recsys {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> g_format{static_cast<int>(LogFormat::kText)};

std::mutex& SinkMutex() {
  static std::mutex mu;
  return mu;
}
std::ostream* g_sink = nullptr;  // guarded by SinkMutex(); null = std::cerr

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

std::string Timestamp(int64_t unix_millis) {
  const absl::Time t = absl::FromUnixMillis(unix_millis);
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

// Control characters would let a value forge a second line: JSON escapes
// them.
void AppendJsonString(absl::string_view s, std::string* out) {
  out->append(DumpJson(Json(std::string(s))));
}

// logfmt leaves simple values bare and quotes the rest JSON-style.
void AppendLogfmtValue(absl::string_view s, std::string* out) {
  bool bare = !s.empty();
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || c == '"' || c == '=' || c == '\\' || u == 0x7f) {
      bare = false;
      break;
    }
  }
  if (bare) {
    out->append(s.data(), s.size());
  } else {
    AppendJsonString(s, out);
  }
}

// Keys come from our code, but a stray space would still break the line.
std::string SafeKey(absl::string_view key) {
  std::string k(key);
  for (char& c : k) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' &&
        c != '.') {
      c = '_';
    }
  }
  return k.empty() ? "_" : k;
}

}  // namespace

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "debug") return LogLevel::kDebug;
  if (n == "info") return LogLevel::kInfo;
  if (n == "warning" || n == "warn") return LogLevel::kWarning;
  if (n == "error") return LogLevel::kError;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown log level '", name, "' (debug, info, warning, error)"));
}

absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "text") return LogFormat::kText;
  if (n == "json") return LogFormat::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown log format '", name, "' (text, json)"));
}

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }
void SetLogFormat(LogFormat format) {
  g_format.store(static_cast<int>(format));
}
void SetLogSink(std::ostream* out) {
  std::lock_guard<std::mutex> lock(SinkMutex());
  g_sink = out;
}
bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

LogField::LogField(absl::string_view key, absl::string_view value)
    : key_(key), value_(value), quoted_(true) {}
LogField::LogField(absl::string_view key, const char* value)
    : LogField(key, absl::string_view(value == nullptr ? "" : value)) {}
LogField::LogField(absl::string_view key, const std::string& value)
    : LogField(key, absl::string_view(value)) {}
LogField::LogField(absl::string_view key, bool value)
    : key_(key), value_(value ? "true" : "false"), quoted_(false) {}
LogField::LogField(absl::string_view key, int value)
    : key_(key), value_(absl::StrCat(value)), quoted_(false) {}
LogField::LogField(absl::string_view key, long value)
    : key_(key), value_(absl::StrCat(value)), quoted_(false) {}
LogField::LogField(absl::string_view key, long long value)
    : key_(key), value_(absl::StrCat(value)), quoted_(false) {}
LogField::LogField(absl::string_view key, unsigned value)
    : key_(key), value_(absl::StrCat(value)), quoted_(false) {}
LogField::LogField(absl::string_view key, unsigned long value)
    : key_(key), value_(absl::StrCat(value)), quoted_(false) {}
LogField::LogField(absl::string_view key, unsigned long long value)
    : key_(key), value_(absl::StrCat(value)), quoted_(false) {}
LogField::LogField(absl::string_view key, double value)
    : key_(key),
      // JSON has no NaN or infinity; a string keeps the line parseable.
      value_(std::isfinite(value) ? absl::StrFormat("%.6g", value)
                                  : absl::StrCat(value)),
      quoted_(!std::isfinite(value)) {}

namespace internal {

std::string FormatLogLine(LogFormat format, int64_t unix_millis, LogLevel level,
                          absl::string_view message,
                          std::initializer_list<LogField> fields) {
  std::string line;
  const std::string ts = Timestamp(unix_millis);
  if (format == LogFormat::kJson) {
    Json j;
    j["ts"] = ts;
    j["level"] = LevelName(level);
    j["msg"] = std::string(message);
    for (const LogField& f : fields) {
      // Unquoted values are numbers or booleans we formatted ourselves.
      j[SafeKey(f.key())] =
          f.quoted() ? Json(f.value()) : Json::parse(f.value(), nullptr, false);
    }
    line = DumpJson(j);
  } else {
    line = absl::StrCat("ts=", ts, " level=", LevelName(level), " msg=");
    AppendLogfmtValue(message, &line);
    for (const LogField& f : fields) {
      absl::StrAppend(&line, " ", SafeKey(f.key()), "=");
      AppendLogfmtValue(f.value(), &line);
    }
  }
  return line;
}

}  // namespace internal

void Log(LogLevel level, absl::string_view message,
         std::initializer_list<LogField> fields) {
  if (!LogEnabled(level)) return;
  const auto format = static_cast<LogFormat>(g_format.load());
  std::string line = internal::FormatLogLine(
      format, absl::ToUnixMillis(absl::Now()), level, message, fields);
  line.push_back('\n');
  std::lock_guard<std::mutex> lock(SinkMutex());
  std::ostream& out = g_sink != nullptr ? *g_sink : std::cerr;
  out << line;
  out.flush();
}

}  // namespace recsys
