// A thin leveled, structured logger for the server's life-cycle events:
// start, listening, model loaded, training, shutdown. Never for single
// requests (that is what metrics are for), and never with secrets or request
// payloads: callers pass only the fields they name.
//
//   recsys::SetLogLevel(recsys::LogLevel::kInfo);
//   recsys::SetLogFormat(recsys::LogFormat::kJson);
//   recsys::Log(recsys::LogLevel::kInfo, "listening",
//               {{"port", port}, {"tls", true}});
//
// One line per event on stderr (where systemd's journal and container
// runtimes collect it), written whole under a lock:
//   text (logfmt): ts=2024-05-01T12:00:00.123Z level=info msg=listening
//   port=50051 tls=true json:
//   {"ts":"2024-05-01T12:00:00.123Z","level":"info","msg":"listening","port":50051,"tls":true}
#ifndef RECSYS_SERVER_LOG_H_
#define RECSYS_SERVER_LOG_H_

#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace recsys {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
enum class LogFormat { kText, kJson };

// "debug", "info", "warning" (or "warn"), "error".
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name);
// "text" or "json".
absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name);

// Events below the level are dropped. Default kInfo, kText.
void SetLogLevel(LogLevel level);
void SetLogFormat(LogFormat format);
// Where lines go (default std::cerr); for tests. `out` must outlive its use.
void SetLogSink(std::ostream* out);
bool LogEnabled(LogLevel level);

// One named value. Strings are quoted and escaped as the format needs;
// numbers and booleans are written bare.
class LogField {
 public:
  LogField(absl::string_view key, absl::string_view value);
  LogField(absl::string_view key, const char* value);
  LogField(absl::string_view key, const std::string& value);
  LogField(absl::string_view key, bool value);
  LogField(absl::string_view key, int value);
  LogField(absl::string_view key, long value);
  LogField(absl::string_view key, long long value);
  LogField(absl::string_view key, unsigned value);
  LogField(absl::string_view key, unsigned long value);
  LogField(absl::string_view key, unsigned long long value);
  LogField(absl::string_view key, double value);

  absl::string_view key() const { return key_; }
  const std::string& value() const { return value_; }
  bool quoted() const { return quoted_; }

 private:
  absl::string_view key_;
  std::string value_;
  bool quoted_;
};

void Log(LogLevel level, absl::string_view message,
         std::initializer_list<LogField> fields = {});

namespace internal {
// The line Log would write (without the newline), at a fixed time; exposed
// for tests.
std::string FormatLogLine(LogFormat format, int64_t unix_millis, LogLevel level,
                          absl::string_view message,
                          std::initializer_list<LogField> fields);
}  // namespace internal

}  // namespace recsys

#endif  // RECSYS_SERVER_LOG_H_
