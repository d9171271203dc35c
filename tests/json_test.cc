// base/json.h: how our own JSON is written.
#include "base/json.h"

#include <limits>

#include "gtest/gtest.h"

namespace recsys {
namespace {

TEST(JsonTest, QuotesEverythingJsonNeedsAndKeepsKeyOrder) {
  Json j;
  j["s"] = "a\"b\\c\nd\x01\xc3\xa9";
  j["i"] = -3;
  j["d"] = JsonNumber(0.5);
  j["a"] = Json::array();
  EXPECT_EQ(DumpJson(j),
            "{\"s\":\"a\\\"b\\\\c\\nd\\u0001\xc3\xa9\",\"i\":-3,\"d\":0.5,"
            "\"a\":[]}");
  EXPECT_EQ(Json::parse(DumpJson(j))["s"], j["s"]);
}

TEST(JsonTest, NumbersAreShortAndNeverNaN) {
  EXPECT_EQ(DumpJson(JsonNumber(42134.333333333336)), "42134.3");
  EXPECT_EQ(DumpJson(JsonNumber(1e-7 / 3)), "3.33333e-08");
  EXPECT_EQ(DumpJson(JsonNumber(std::numeric_limits<double>::quiet_NaN())),
            "null");
  EXPECT_EQ(DumpJson(JsonNumber(std::numeric_limits<double>::infinity())),
            "null");
}

TEST(JsonTest, TextThatIsNotUtf8IsReplacedNotThrown) {
  const std::string dumped = DumpJson(Json(std::string("ok \xff end")));
  EXPECT_EQ(dumped, "\"ok \xef\xbf\xbd end\"");
}

}  // namespace
}  // namespace recsys
