#include "models/loaders.h"

#include <algorithm>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

using ::recsys::testing::MakeTempDir;
using ::recsys::testing::SharedDataset;
using ::recsys::testing::WriteFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Writes `contents` to a fresh directory as `name` and returns the path.
std::string WriteTemp(const std::string& name, const std::string& contents) {
  const std::string path = MakeTempDir("loaders") + "/" + name;
  WriteFile(path, contents);
  return path;
}

// The stored rating of (user, item), or -1 when there is none.
float RatingOf(const RatingData& data, const std::string& user,
               const std::string& item) {
  const int32_t u = data.users.Find(user);
  const int32_t i = data.items.Find(item);
  for (const Rating& r : data.ratings) {
    if (r.user == u && r.item == i) return r.value;
  }
  return -1;
}

bool IsUtf8(const std::string& s) { return ToUtf8(s) == s; }

// A u.item line with the given genre flag positions set.
std::string UItemLine(const std::string& id, const std::string& title,
                      const std::vector<int>& genres) {
  std::string line = id + "|" + title + "|01-Jan-1995||http://x/";
  for (int g = 0; g < 19; ++g) {
    const bool on = std::find(genres.begin(), genres.end(), g) != genres.end();
    line += on ? "|1" : "|0";
  }
  return line + "\n";
}

// Implicit feedback: repeated pairs add up (the latest timestamp kept),
// negative counts are bad lines naming file and line, and counts loaded as
// explicit ratings get a warning naming the flag.
TEST(LoadRatingsTest, ImplicitCountsAddUpAndAreChecked) {
  const std::string path =
      WriteTemp("plays.tsv", "u1\ta\t3\t10\nu1\tb\t1\t5\nu1\ta\t4\t20\n");
  LoadOptions implicit;
  implicit.feedback = Feedback::kImplicit;
  absl::StatusOr<RatingData> d = LoadRatings(path, implicit);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->feedback, Feedback::kImplicit);
  EXPECT_EQ(d->ratings.size(), 2u);
  EXPECT_EQ(RatingOf(*d, "u1", "a"), 7);
  EXPECT_EQ(d->stats.duplicates_summed, 1);
  EXPECT_EQ(d->stats.duplicates_replaced, 0);
  for (const Rating& r : d->ratings) {
    if (r.item == d->items.Find("a")) {
      EXPECT_EQ(r.timestamp, 20);
    }
  }
  EXPECT_EQ(ImplicitFeedbackHint(*d), "");
  // The same file as ratings: the later one wins.
  absl::StatusOr<RatingData> e = LoadRatings(path, LoadOptions());
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(RatingOf(*e, "u1", "a"), 4);

  const std::string bad = WriteTemp("bad.tsv", "u1\ta\t3\nu1\tb\t-2\n");
  absl::StatusOr<RatingData> refused = LoadRatings(bad, implicit);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("bad.tsv:2: count -2 is negative"));

  const std::string counts =
      WriteTemp("counts.tsv", "u1\ta\t3\nu1\tb\t13883\nu2\ta\t0\n");
  absl::StatusOr<RatingData> looks = LoadRatings(counts, LoadOptions());
  ASSERT_TRUE(looks.ok());
  EXPECT_THAT(ImplicitFeedbackHint(*looks), HasSubstr("--feedback=implicit"));
  const std::string stars = WriteTemp("stars.tsv", "u1\ta\t3\nu1\tb\t5\n");
  EXPECT_EQ(ImplicitFeedbackHint(*LoadRatings(stars, LoadOptions())), "");
}

TEST(ToUtf8Test, KeepsUtf8AndConvertsLatin1) {
  EXPECT_EQ(ToUtf8("plain"), "plain");
  EXPECT_EQ(ToUtf8("Cin\xc3\xa9ma"), "Cin\xc3\xa9ma");
  EXPECT_EQ(ToUtf8("Cin\xe9ma"), "Cin\xc3\xa9ma");
  EXPECT_EQ(ToUtf8("\xff"), "\xc3\xbf");
  // An overlong encoding of '/' is not UTF-8, so its bytes are latin-1.
  EXPECT_EQ(ToUtf8("\xc0\xaf"), "\xc3\x80\xc2\xaf");
  // Truncated sequence at the end.
  EXPECT_EQ(ToUtf8("a\xe2\x82"), "a\xc3\xa2\xc2\x82");
}

TEST(ParseDataFormatTest, NamesAndError) {
  EXPECT_EQ(*ParseDataFormat("auto"), DataFormat::kAuto);
  EXPECT_EQ(*ParseDataFormat("ml-100k"), DataFormat::kMl100k);
  EXPECT_EQ(*ParseDataFormat("ml-dat"), DataFormat::kMlDat);
  EXPECT_EQ(*ParseDataFormat("ml-csv"), DataFormat::kMlCsv);
  EXPECT_EQ(*ParseDataFormat("delimited"), DataFormat::kDelimited);
  absl::StatusOr<DataFormat> bad = ParseDataFormat("csv");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(),
              HasSubstr("auto, ml-100k, ml-dat, ml-csv, delimited"));
}

TEST(LoadRatingsTest, Ml100kWithLatin1TitlesAndGenreFlags) {
  const std::string dir = MakeTempDir("ml100k");
  WriteFile(dir + "/u.data",
            "196\t242\t3\t881250949\n186\t302\t1\t891717742\n"
            "196\t302\t5\t881251000\n");
  WriteFile(dir + "/u.item",
            UItemLine("242", "Kolya (1996)", {5}) +
                UItemLine("302", "Cin\xe9ma Paradiso (1988)", {8, 14}) +
                UItemLine("999", "Nobody Rated Me (1990)", {}));
  absl::StatusOr<RatingData> data = LoadRatings(dir, {});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->ratings.size(), 3u);
  EXPECT_EQ(data->num_users(), 2);
  // The catalogue comes first, in file order, and keeps unrated items.
  EXPECT_THAT(data->items.ids(), ElementsAre("242", "302", "999"));
  ASSERT_EQ(data->item_info.size(), 3u);
  EXPECT_EQ(data->item_info[1].title, "Cin\xc3\xa9ma Paradiso (1988)");
  EXPECT_THAT(data->item_info[1].genres, ElementsAre("Drama", "Romance"));
  EXPECT_THAT(data->item_info[0].genres, ElementsAre("Comedy"));
  EXPECT_THAT(data->item_info[2].genres, IsEmpty());
  EXPECT_EQ(data->scale.min, 1.0f);
  EXPECT_EQ(data->scale.max, 5.0f);
  EXPECT_EQ(data->stats.lines, 3);
  EXPECT_EQ(RatingOf(*data, "196", "302"), 5.0f);
  for (const ItemInfo& info : data->item_info) EXPECT_TRUE(IsUtf8(info.title));
}

TEST(LoadRatingsTest, Ml100kGenreNamesFromUGenre) {
  const std::string dir = MakeTempDir("ugenre");
  WriteFile(dir + "/u.data", "1\t10\t4\t5\n");
  WriteFile(dir + "/u.genre", "Alpha|0\nBeta|1\nGamma|2\n\n");
  WriteFile(dir + "/u.item", "10|Ten|d|v|url|0|1|1\n");
  absl::StatusOr<RatingData> data = LoadRatings(dir + "/u.data", {});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(data->item_info[0].genres, ElementsAre("Beta", "Gamma"));
}

TEST(LoadRatingsTest, MlDatWithLatin1AndUtf8Titles) {
  const std::string dir = MakeTempDir("mldat");
  WriteFile(dir + "/ratings.dat",
            "1::1193::5::978300760\n1::661::3::978302109\n"
            "2::1193::4::978298413\n");
  WriteFile(dir + "/movies.dat",
            "1::Toy Story (1995)::Animation|Children's|Comedy\n"
            "661::James and the Giant Peach (1996)::Animation\n"
            "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
            "2000::Caf\xe9 au lait (1993)::(no genres listed)\n"
            "2001::Am\xc3\xa9lie (2001)::Comedy|Romance\n");
  absl::StatusOr<RatingData> data = LoadRatings(dir, {});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->ratings.size(), 3u);
  EXPECT_EQ(data->num_items(), 5);
  EXPECT_EQ(data->items.Find("1193"), 2);
  EXPECT_THAT(data->item_info[0].genres,
              ElementsAre("Animation", "Children's", "Comedy"));
  EXPECT_EQ(data->item_info[3].title, "Caf\xc3\xa9 au lait (1993)");
  EXPECT_THAT(data->item_info[3].genres, IsEmpty());
  EXPECT_EQ(data->item_info[4].title, "Am\xc3\xa9lie (2001)");
  EXPECT_EQ(RatingOf(*data, "1", "661"), 3.0f);
  EXPECT_EQ(data->scale.min, 3.0f);
  EXPECT_EQ(data->scale.max, 5.0f);
}

TEST(LoadRatingsTest, MlCsvWithCrlfHeaderAndQuotedTitles) {
  const std::string dir = MakeTempDir("mlcsv");
  WriteFile(dir + "/ratings.csv",
            "userId,movieId,rating,timestamp\r\n1,1,4.0,964982703\r\n"
            "1,11,0.5,964981247\r\n2,11,5.0,964982224\r\n");
  WriteFile(dir + "/movies.csv",
            "movieId,title,genres\r\n"
            "1,Toy Story (1995),Adventure|Animation\r\n"
            "11,\"American President, The (1995)\",Comedy|Drama|Romance\r\n"
            "12,\"Dr. \"\"Quote\"\", Esq. (2000)\",(no genres listed)\r\n");
  absl::StatusOr<RatingData> data = LoadRatings(dir, {});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->ratings.size(), 3u);
  EXPECT_EQ(data->stats.lines, 3);
  EXPECT_THAT(data->items.ids(), ElementsAre("1", "11", "12"));
  EXPECT_EQ(data->item_info[0].title, "Toy Story (1995)");
  EXPECT_EQ(data->item_info[1].title, "American President, The (1995)");
  EXPECT_THAT(data->item_info[1].genres,
              ElementsAre("Comedy", "Drama", "Romance"));
  EXPECT_EQ(data->item_info[2].title, "Dr. \"Quote\", Esq. (2000)");
  EXPECT_THAT(data->item_info[2].genres, IsEmpty());
  EXPECT_EQ(data->scale.min, 0.5f);
  EXPECT_EQ(data->scale.max, 5.0f);
  EXPECT_EQ(RatingOf(*data, "1", "11"), 0.5f);
}

TEST(LoadRatingsTest, LoadMetadataFalseReadsRatingsOnly) {
  const std::string dir = MakeTempDir("nometa");
  WriteFile(dir + "/ratings.csv", "userId,movieId,rating,timestamp\n1,5,3,1\n");
  WriteFile(dir + "/movies.csv", "movieId,title,genres\n7,Seven,Drama\n");
  LoadOptions options;
  options.load_metadata = false;
  absl::StatusOr<RatingData> data = LoadRatings(dir, options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(data->items.ids(), ElementsAre("5"));
  ASSERT_EQ(data->item_info.size(), 1u);
  EXPECT_EQ(data->item_info[0].title, "");
}

TEST(LoadRatingsTest, RatedItemsMissingFromMetadataGetEmptyInfo) {
  const std::string dir = MakeTempDir("partialmeta");
  WriteFile(dir + "/ratings.csv", "1,5,3,1\n1,7,4,2\n");
  WriteFile(dir + "/movies.csv", "movieId,title,genres\n7,Seven,Drama\n");
  absl::StatusOr<RatingData> data = LoadRatings(dir, {});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(data->items.ids(), ElementsAre("7", "5"));
  ASSERT_EQ(data->item_info.size(), 2u);
  EXPECT_EQ(data->item_info[0].title, "Seven");
  EXPECT_EQ(data->item_info[1].title, "");
  EXPECT_THAT(data->item_info[1].genres, IsEmpty());
}

struct DelimiterCase {
  std::string name;
  std::string contents;
};

// Names the case in test listings (CTest shows GetParam()).
void PrintTo(const DelimiterCase& c, std::ostream* os) { *os << c.name; }

class GenericDelimiterTest : public ::testing::TestWithParam<DelimiterCase> {};

TEST_P(GenericDelimiterTest, SniffsDelimiterAndKeepsStringIds) {
  const std::string path = WriteTemp("ratings.txt", GetParam().contents);
  absl::StatusOr<RatingData> data = LoadRatings(path, {});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->ratings.size(), 3u);
  EXPECT_THAT(data->users.ids(), ElementsAre("alice", "bob"));
  EXPECT_EQ(RatingOf(*data, "alice", "matrix"), 4.5f);
  EXPECT_EQ(RatingOf(*data, "bob", "heat"), 2.0f);
  EXPECT_EQ(data->scale.min, 2.0f);
  EXPECT_EQ(data->scale.max, 4.5f);
}

INSTANTIATE_TEST_SUITE_P(
    Delimiters, GenericDelimiterTest,
    ::testing::Values(
        DelimiterCase{"comma", "alice,matrix,4.5\nalice,heat,3\nbob,heat,2\n"},
        DelimiterCase{"comma_header_ts",
                      "user,item,rating,ts\nalice,matrix,4.5,1\n"
                      "alice,heat,3,2\nbob,heat,2,3\n"},
        DelimiterCase{"tab",
                      "alice\tmatrix\t4.5\t7\nalice\theat\t3\t8\n"
                      "bob\theat\t2\t9\n"},
        DelimiterCase{"spaces",
                      "alice   matrix 4.5\n  alice heat  3\n"
                      "bob heat 2   \n"},
        DelimiterCase{"double_colon",
                      "alice::matrix::4.5::1\n"
                      "alice::heat::3::2\nbob::heat::2::3\n"}),
    [](const ::testing::TestParamInfo<DelimiterCase>& info) {
      return info.param.name;
    });

TEST(LoadRatingsTest, NumericLookingIdsStayStrings) {
  // "7" and "07" are different ids even though they read as the same number.
  const std::string path = WriteTemp("r.csv", "a,7,1\na,07,2\nb,7,3\n");
  absl::StatusOr<RatingData> data = LoadRatings(path, {});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(data->items.ids(), ElementsAre("7", "07"));
  EXPECT_EQ(RatingOf(*data, "a", "07"), 2.0f);
  EXPECT_EQ(RatingOf(*data, "b", "7"), 3.0f);
}

TEST(LoadRatingsTest, ExplicitDelimiter) {
  const std::string path = WriteTemp("r.txt", "a;x;1\nb;y;2\n");
  LoadOptions options;
  options.format = DataFormat::kDelimited;
  options.delimiter = ";";
  absl::StatusOr<RatingData> data = LoadRatings(path, options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(RatingOf(*data, "b", "y"), 2.0f);
}

TEST(LoadRatingsTest, LaterTimestampWinsEvenWhenEarlierInFile) {
  const std::string path = WriteTemp("r.csv",
                                     "u,i,5,200\n"  // latest: wins
                                     "u,i,1,100\n"
                                     "u,j,2,50\n"
                                     "u,j,3,50\n"  // equal time: later line
                                     "v,i,1\n"
                                     "v,i,4\n"  // no time: later line
                                     "v,j,2\n");
  absl::StatusOr<RatingData> data = LoadRatings(path, {});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->ratings.size(), 4u);
  EXPECT_EQ(data->stats.duplicates_replaced, 3);
  EXPECT_EQ(data->stats.lines, 7);
  EXPECT_EQ(RatingOf(*data, "u", "i"), 5.0f);
  EXPECT_EQ(RatingOf(*data, "u", "j"), 3.0f);
  EXPECT_EQ(RatingOf(*data, "v", "i"), 4.0f);
  EXPECT_EQ(RatingOf(*data, "v", "j"), 2.0f);
}

struct BadLineCase {
  std::string name;
  std::string file;  // file name, which picks the format
  std::string contents;
  std::string expected;  // message after "<path>:"
};

void PrintTo(const BadLineCase& c, std::ostream* os) { *os << c.name; }

class BadLineTest : public ::testing::TestWithParam<BadLineCase> {};

TEST_P(BadLineTest, NamesFileAndLine) {
  const std::string path = WriteTemp(GetParam().file, GetParam().contents);
  absl::StatusOr<RatingData> data = LoadRatings(path, {});
  ASSERT_FALSE(data.ok());
  EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(data.status().message(), path + ":" + GetParam().expected);
}

TEST_P(BadLineTest, SkippedAndCountedWhenAsked) {
  const std::string path = WriteTemp(GetParam().file, GetParam().contents);
  LoadOptions options;
  options.skip_bad_lines = true;
  absl::StatusOr<RatingData> data = LoadRatings(path, options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->stats.bad_lines_skipped, 1);
  EXPECT_EQ(data->ratings.size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadLineTest,
    ::testing::Values(
        BadLineCase{"few_fields", "u.data", "1\t2\t3\t4\n1\t2\n",
                    "2: expected 4 fields, found 2"},
        BadLineCase{"not_a_number_after_header_blank_crlf", "ratings.csv",
                    "userId,movieId,rating,timestamp\r\n1,2,3.5,10\r\n\r\n"
                    "1,3,abc,11\r\n",
                    "4: rating 'abc' is not a number"},
        BadLineCase{"empty_user_after_blanks", "r.csv", "\n\na,b,3\n,c,4\n",
                    "4: empty user id"},
        BadLineCase{"empty_item", "r.csv", "a,b,3\na,,4\n", "2: empty item id"},
        BadLineCase{"bad_timestamp", "ratings.dat", "1::2::3::4\n1::3::4::x\n",
                    "2: timestamp 'x' is not an integer"},
        BadLineCase{"nan", "r.csv", "a,b,nan\na,c,3\n",
                    "1: rating 'nan' is not a finite number"},
        BadLineCase{"inf", "r.csv", "a,c,3\na,b,inf\n",
                    "2: rating 'inf' is not a finite number"},
        BadLineCase{"too_many", "r.csv", "a,b,3\na,b,3,4,5\n",
                    "2: expected 3 or 4 fields, found 5"},
        BadLineCase{"header_only_on_line_1", "r.csv",
                    "a,b,3\nuser,item,rating\n",
                    "2: rating 'rating' is not a number"},
        BadLineCase{"no_header_in_ml100k", "u.data",
                    "user\titem\trating\tts\n1\t2\t3\t4\n",
                    "1: rating 'rating' is not a number"}),
    [](const ::testing::TestParamInfo<BadLineCase>& info) {
      return info.param.name;
    });

TEST(LoadRatingsTest, GivenScaleRejectsOutsideRatings) {
  const std::string path = WriteTemp("r.csv", "a,b,3\na,c,7\na,d,0.5\n");
  LoadOptions options;
  options.scale = RatingScale{1.0f, 5.0f};
  absl::StatusOr<RatingData> data = LoadRatings(path, options);
  ASSERT_FALSE(data.ok());
  EXPECT_EQ(data.status().message(),
            path + ":2: rating 7 outside the scale [1, 5]");

  options.skip_bad_lines = true;
  data = LoadRatings(path, options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->stats.bad_lines_skipped, 2);
  EXPECT_EQ(data->ratings.size(), 1u);
  EXPECT_EQ(data->scale.min, 1.0f);
  EXPECT_EQ(data->scale.max, 5.0f);
}

TEST(LoadRatingsTest, InvalidGivenScale) {
  const std::string path = WriteTemp("r.csv", "a,b,3\n");
  LoadOptions options;
  options.scale = RatingScale{5.0f, 1.0f};
  EXPECT_EQ(LoadRatings(path, options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LoadRatingsTest, DerivedScale) {
  struct Case {
    std::string contents;
    float min, max;
  };
  const Case cases[] = {
      {"a,b,0.5\na,c,4.0\nb,b,2.5\n", 0.5f, 4.0f},
      {"a,b,1\na,c,5\nb,b,3\n", 1.0f, 5.0f},
      {"a,b,0.5\na,c,5.0\nb,b,3.5\n", 0.5f, 5.0f},
      // All equal (implicit feedback): a one-point scale topped by the value.
      {"a,b,1\na,c,1\n", 0.0f, 1.0f},
  };
  for (const Case& c : cases) {
    absl::StatusOr<RatingData> data =
        LoadRatings(WriteTemp("r.csv", c.contents), {});
    ASSERT_TRUE(data.ok()) << data.status();
    EXPECT_EQ(data->scale.min, c.min) << c.contents;
    EXPECT_EQ(data->scale.max, c.max) << c.contents;
    EXPECT_TRUE(data->scale.valid());
  }
}

TEST(LoadRatingsTest, NoRatingsIsAnError) {
  for (const std::string contents :
       {"", "\n\n  \n", "userId,movieId,rating,timestamp\r\n"}) {
    const std::string path = WriteTemp("ratings.csv", contents);
    absl::StatusOr<RatingData> data = LoadRatings(path, {});
    EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(data.status().message(), path + ": no ratings");
  }
  const std::string path = WriteTemp("r.csv", "a,b,x,1,2\na,b\n");
  LoadOptions options;
  options.skip_bad_lines = true;
  EXPECT_EQ(LoadRatings(path, options).status().message(),
            path + ": no ratings");
}

TEST(LoadRatingsTest, MissingPathIsNotFound) {
  const std::string dir = MakeTempDir("missing");
  absl::StatusOr<RatingData> data = LoadRatings(dir + "/nope.csv", {});
  EXPECT_EQ(data.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(data.status().message(), HasSubstr(dir + "/nope.csv"));
  // A directory without a ratings file.
  data = LoadRatings(dir, {});
  EXPECT_EQ(data.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(data.status().message(), HasSubstr(dir));
}

TEST(LoadRatingsTest, BadMetadataLineNamesFileAndLine) {
  const std::string dir = MakeTempDir("badmeta");
  WriteFile(dir + "/u.data", "1\t10\t4\t5\n");
  WriteFile(dir + "/u.item", UItemLine("10", "Ten", {}) + "\n11|short|x\n");
  absl::StatusOr<RatingData> data = LoadRatings(dir, {});
  EXPECT_EQ(data.status().message(),
            dir + "/u.item:3: expected 24 fields, found 3");
  LoadOptions options;
  options.skip_bad_lines = true;
  data = LoadRatings(dir, options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->stats.bad_lines_skipped, 1);
  EXPECT_EQ(data->num_items(), 1);

  const std::string csv = MakeTempDir("badcsv");
  WriteFile(csv + "/ratings.csv", "1,10,4,5\n");
  WriteFile(csv + "/movies.csv", "movieId,title,genres\r\n10,\"Open,Drama\r\n");
  EXPECT_EQ(LoadRatings(csv, {}).status().message(),
            csv + "/movies.csv:2: unterminated quoted field");

  const std::string dat = MakeTempDir("baddat");
  WriteFile(dat + "/ratings.dat", "1::10::4::5\n");
  WriteFile(dat + "/movies.dat", "10::Ten::Drama\n11::Eleven\n");
  EXPECT_EQ(LoadRatings(dat, {}).status().message(),
            dat + "/movies.dat:2: expected 3 fields, found 2");
}

TEST(LoadRatingsTest, DetectsFormatFromPath) {
  // A directory prefers u.data over ratings.dat over ratings.csv.
  const std::string dir = MakeTempDir("detect");
  WriteFile(dir + "/ratings.csv", "userId,movieId,rating,timestamp\n1,2,3,4\n");
  WriteFile(dir + "/ratings.dat", "1::2::4::4\n");
  absl::StatusOr<RatingData> data = LoadRatings(dir, {});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->ratings[0].value, 4.0f);
  WriteFile(dir + "/u.data", "1\t2\t5\t4\n");
  data = LoadRatings(dir, {});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->ratings[0].value, 5.0f);
  // An explicit format picks its own file from a directory.
  LoadOptions csv;
  csv.format = DataFormat::kMlCsv;
  data = LoadRatings(dir, csv);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->ratings[0].value, 3.0f);

  // ML-100K fold files are tab separated and read u.item beside them.
  for (const std::string name : {"u1.base", "u5.test", "ua.base", "ub.test"}) {
    const std::string fold = MakeTempDir("fold");
    WriteFile(fold + "/" + name, "1\t7\t2\t4\n");
    WriteFile(fold + "/u.item", UItemLine("7", "Seven", {1}));
    data = LoadRatings(fold + "/" + name, {});
    ASSERT_TRUE(data.ok()) << name << ": " << data.status();
    EXPECT_EQ(data->item_info[0].title, "Seven") << name;
  }
  // *.dat files use "::" and movies.dat.
  const std::string dat = MakeTempDir("dat");
  WriteFile(dat + "/r10m.dat", "1::7::2.5::4\n");
  WriteFile(dat + "/movies.dat", "7::Seven::Drama\n");
  data = LoadRatings(dat + "/r10m.dat", {});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->item_info[0].title, "Seven");
  // Anything else is a generic file without metadata.
  const std::string other = MakeTempDir("other");
  WriteFile(other + "/mine.tsv", "x\ty\t3\n");
  WriteFile(other + "/movies.csv", "movieId,title,genres\n1,One,Drama\n");
  data = LoadRatings(other + "/mine.tsv", {});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(data->items.ids(), ElementsAre("y"));
}

TEST(RealDataTest, Ml100k) {
  const std::string dir = SharedDataset("ml-100k");
  if (dir.empty()) {
    GTEST_SKIP() << "MovieLens copy not found: ../shared/data/ml-100k (set "
                    "RECSYS_TEST_DATA_DIR)";
  }
  absl::StatusOr<RatingData> data = LoadRatings(dir + "/u.data", {});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->ratings.size(), 100000u);
  EXPECT_EQ(data->num_users(), 943);
  EXPECT_EQ(data->num_items(), 1682);
  EXPECT_EQ(data->scale.min, 1.0f);
  EXPECT_EQ(data->scale.max, 5.0f);
  EXPECT_EQ(data->stats.duplicates_replaced, 0);
  EXPECT_TRUE(std::is_sorted(data->ratings.begin(), data->ratings.end(),
                             [](const Rating& a, const Rating& b) {
                               return a.user != b.user ? a.user < b.user
                                                       : a.item < b.item;
                             }));
  const int32_t toy = data->items.Find("1");
  ASSERT_GE(toy, 0);
  EXPECT_EQ(data->item_info[toy].title, "Toy Story (1995)");
  EXPECT_THAT(data->item_info[toy].genres,
              ElementsAre("Animation", "Children's", "Comedy"));
  for (const ItemInfo& info : data->item_info) {
    EXPECT_TRUE(IsUtf8(info.title)) << info.title;
  }

  absl::StatusOr<RatingData> fold = LoadRatings(dir + "/u1.base", {});
  ASSERT_TRUE(fold.ok()) << fold.status();
  EXPECT_EQ(fold->ratings.size(), 80000u);
  EXPECT_EQ(fold->num_items(), 1682);
}

TEST(RealDataTest, MlLatestSmall) {
  const std::string dir = SharedDataset("ml-latest-small");
  if (dir.empty()) {
    GTEST_SKIP() << "MovieLens copy not found: ../shared/data/ml-latest-small "
                    "(set RECSYS_TEST_DATA_DIR)";
  }
  absl::StatusOr<RatingData> data = LoadRatings(dir, {});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->ratings.size(), 100836u);
  EXPECT_EQ(data->num_users(), 610);
  EXPECT_EQ(data->num_items(), 9742);
  EXPECT_EQ(data->scale.min, 0.5f);
  EXPECT_EQ(data->scale.max, 5.0f);
  const int32_t president = data->items.Find("11");
  ASSERT_GE(president, 0);
  EXPECT_EQ(data->item_info[president].title, "American President, The (1995)");
  EXPECT_THAT(data->item_info[president].genres,
              ElementsAre("Comedy", "Drama", "Romance"));
  for (const ItemInfo& info : data->item_info) {
    EXPECT_TRUE(IsUtf8(info.title)) << info.title;
  }
}

}  // namespace
}  // namespace recsys
