// The server's structured log lines (server/log.h).
#include "server/log.h"

#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace recsys {
namespace {

using internal::FormatLogLine;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kT = 1700000000123;  // 2023-11-14T22:13:20.123Z

TEST(Log, TextIsLogfmtWithBareSimpleValues) {
  EXPECT_EQ(FormatLogLine(LogFormat::kText, kT, LogLevel::kInfo, "listening",
                          {{"port", 50051}, {"tls", true}, {"addr", "[::]:1"}}),
            "ts=2023-11-14T22:13:20.123Z level=info msg=listening port=50051 "
            "tls=true addr=[::]:1");
  EXPECT_EQ(FormatLogLine(LogFormat::kText, kT, LogLevel::kWarning, "two words",
                          {{"error", "a \"b\" = c"}, {"e", ""}}),
            "ts=2023-11-14T22:13:20.123Z level=warning msg=\"two words\" "
            "error=\"a \\\"b\\\" = c\" e=\"\"");
}

TEST(Log, JsonLinesAreValidWithTypedValues) {
  EXPECT_EQ(FormatLogLine(LogFormat::kJson, kT, LogLevel::kError, "failed",
                          {{"job", "train-1"}, {"seconds", 1.5}, {"n", 3u}}),
            "{\"ts\":\"2023-11-14T22:13:20.123Z\",\"level\":\"error\","
            "\"msg\":\"failed\",\"job\":\"train-1\",\"seconds\":1.5,\"n\":3}");
}

TEST(Log, ValuesCannotForgeALineOrAField) {
  const std::string evil = "x\nts=0 level=error msg=forged\r\t\x01";
  for (LogFormat f : {LogFormat::kText, LogFormat::kJson}) {
    const std::string line =
        FormatLogLine(f, kT, LogLevel::kInfo, evil, {{"user", evil}});
    EXPECT_THAT(line, Not(HasSubstr("\n")));
    EXPECT_THAT(line, Not(HasSubstr("\r")));
    EXPECT_THAT(line, Not(HasSubstr("\x01")));
  }
  // A key with a space would split a logfmt field.
  EXPECT_THAT(FormatLogLine(LogFormat::kText, kT, LogLevel::kInfo, "m",
                            {{"bad key", 1}}),
              HasSubstr(" bad_key=1"));
}

TEST(Log, LevelFiltersAndSinkReceivesWholeLines) {
  std::ostringstream out;
  SetLogSink(&out);
  SetLogLevel(LogLevel::kWarning);
  Log(LogLevel::kInfo, "dropped");
  Log(LogLevel::kError, "kept", {{"k", 1}});
  SetLogLevel(LogLevel::kInfo);
  SetLogSink(nullptr);
  EXPECT_THAT(out.str(), Not(HasSubstr("dropped")));
  EXPECT_THAT(out.str(), HasSubstr("level=error msg=kept k=1\n"));
}

TEST(Log, ParsesLevelsAndFormats) {
  EXPECT_EQ(*ParseLogLevel("WARN"), LogLevel::kWarning);
  EXPECT_EQ(*ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_FALSE(ParseLogLevel("loud").ok());
  EXPECT_EQ(*ParseLogFormat("json"), LogFormat::kJson);
  EXPECT_FALSE(ParseLogFormat("xml").ok());
}

}  // namespace
}  // namespace recsys
