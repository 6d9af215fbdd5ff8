// The sketch parser on the shapes models produce, including ones that ignore the format.
#include "node/sketch_parser.h"

#include <gtest/gtest.h>

namespace pice {
namespace {

using Points = std::vector<std::string>;

SketchParseOptions Arith() {
  SketchParseOptions o;
  o.point_regex = std::make_shared<std::regex>("[0-9]+ ?[-+*] ?[0-9]+");
  o.truncate_over_budget = false;
  return o;
}

TEST(SketchParserTest, ArithOneLine) {
  ParsedSketch s = ParseSketch(" 1. 12+7 2. 23*4 3. 40-9", Arith());
  EXPECT_TRUE(s.split) << s.reason;
  EXPECT_EQ(s.points, (Points{"12+7", "23*4", "40-9"}));
}

TEST(SketchParserTest, DashMeansDoNotSplit) {
  EXPECT_FALSE(ParseSketch(" -", Arith()).split);
  EXPECT_FALSE(ParseSketch("", Arith()).split);
  EXPECT_FALSE(ParseSketch("  \n", SketchParseOptions()).split);
}

TEST(SketchParserTest, NumberedLinesAndParens) {
  SketchParseOptions o;
  ParsedSketch s = ParseSketch("Sure, here is the skeleton:\n1) Define the terms\n2) Compare costs.\n3) Conclude\n\nHope this helps!", o);
  EXPECT_TRUE(s.split);
  EXPECT_EQ(s.points, (Points{"Define the terms", "Compare costs", "Conclude"}));
  s = ParseSketch("(1) alpha (2) beta", o);
  EXPECT_EQ(s.points, (Points{"alpha", "beta"}));
}

TEST(SketchParserTest, MarkersNeedTheNextNumberAndASpace) {
  SketchParseOptions o;
  // "3.5" and "version 2." are not markers; "2. " out of order is text.
  ParsedSketch s = ParseSketch("1. Use 3.5 liters 2. Upgrade to version 2. today 3. Done", o);
  EXPECT_EQ(s.points, (Points{"Use 3.5 liters", "Upgrade to version 2. today", "Done"}));
}

TEST(SketchParserTest, Bullets) {
  ParsedSketch s = ParseSketch("- first idea\n* second idea\n\xe2\x80\xa2 third idea\n", SketchParseOptions());
  EXPECT_TRUE(s.split);
  EXPECT_EQ(s.points, (Points{"first idea", "second idea", "third idea"}));
}

TEST(SketchParserTest, LinesFallbackAndGarbage) {
  SketchParseOptions o;
  ParsedSketch s = ParseSketch("Background\nMain argument\nSummary", o);
  EXPECT_TRUE(s.split);
  EXPECT_EQ(s.points.size(), 3u);
  EXPECT_FALSE(ParseSketch("I think the answer is that it depends on many things", o).split);
  // Arithmetic garbage: points that are not expressions fall back cleanly.
  EXPECT_FALSE(ParseSketch(" 1. 12+7 2. hello", Arith()).split);
  EXPECT_FALSE(ParseSketch("zzz qqq", Arith()).split);
  EXPECT_FALSE(ParseSketch(" 12+7=19. 23*4=92.", Arith()).split);
}

TEST(SketchParserTest, BudgetTruncatesOrRefuses) {
  SketchParseOptions o;
  o.max_points = 2;
  ParsedSketch s = ParseSketch("1. a 2. b 3. c", o);
  EXPECT_TRUE(s.split);
  EXPECT_EQ(s.points, (Points{"a", "b"}));
  o.truncate_over_budget = false;
  EXPECT_FALSE(ParseSketch("1. a 2. b 3. c", o).split);
}

TEST(SketchParserTest, MinPointsAndLongPoints) {
  SketchParseOptions o;
  o.min_points = 2;
  EXPECT_FALSE(ParseSketch("1. only one", o).split);
  o.min_points = 1;
  o.max_point_chars = 10;
  EXPECT_FALSE(ParseSketch("1. a point far longer than ten characters 2. b", o).split);
}

TEST(SketchParserTest, IncrementalEmitsEachPointWhenTheNextMarkerArrives) {
  IncrementalSketchParser p(Arith());
  std::string text = " 1. 12+7 2. 23*4 3. 40-9";
  Points seen;
  std::vector<size_t> at;
  for (size_t n = 1; n <= text.size(); ++n) {
    for (auto& pt : p.Update(text.substr(0, n))) {
      seen.push_back(pt);
      at.push_back(n);
    }
  }
  EXPECT_EQ(seen, (Points{"12+7", "23*4"}));  // the last one completes at the end
  EXPECT_EQ(at[0], std::string(" 1. 12+7 2. ").size());
  ParsedSketch s = p.Finish(text);
  EXPECT_TRUE(s.split);
  EXPECT_EQ(s.points, (Points{"12+7", "23*4", "40-9"}));
}

TEST(SketchParserTest, IncrementalLinePointsCompleteAtNewline) {
  IncrementalSketchParser p{SketchParseOptions()};
  EXPECT_TRUE(p.Update("1. Intro").empty());
  EXPECT_EQ(p.Update("1. Intro\n"), (Points{"Intro"}));
  EXPECT_TRUE(p.Update("1. Intro\n2. Bo").empty());
  EXPECT_EQ(p.Finish("1. Intro\n2. Body").points, (Points{"Intro", "Body"}));
}

TEST(SketchParserTest, IncrementalBudgetSaturates) {
  SketchParseOptions o;
  o.max_points = 2;
  IncrementalSketchParser p(o);
  p.Update("1. a 2. b 3.");
  EXPECT_FALSE(p.Saturated());
  EXPECT_EQ(p.Update("1. a 2. b 3. ").size(), 1u);
  EXPECT_TRUE(p.Saturated());
  EXPECT_EQ(p.Finish("1. a 2. b 3. ").points, (Points{"a", "b"}));
}

TEST(SketchParserTest, IncrementalBudgetCountsOnlyNonEmptyPoints) {
  // A marker with nothing after it is no point, in the stream as in the whole parse
  // (found by sketch_parser_fuzz: the stream counted markers and refused this sketch).
  SketchParseOptions o;
  o.max_points = 2;
  o.truncate_over_budget = false;
  IncrementalSketchParser p(o);
  EXPECT_EQ(p.Update("1. a 2. 3. b").size(), 1u);
  EXPECT_FALSE(p.Saturated());
  ParsedSketch s = p.Finish("1. a 2. 3. b");
  EXPECT_TRUE(s.split) << s.reason;
  EXPECT_EQ(s.points, (Points{"a", "b"}));
  EXPECT_EQ(ParseSketch("1. a 2. 3. b", o).points, s.points);
}

TEST(SketchParserTest, IncrementalBadPointStopsAndFallsBack) {
  IncrementalSketchParser p(Arith());
  EXPECT_EQ(p.Update(" 1. 12+7 2. ").size(), 1u);
  EXPECT_TRUE(p.Update(" 1. 12+7 2. what 3. ").empty());
  EXPECT_TRUE(p.Saturated());
  EXPECT_FALSE(p.Finish(" 1. 12+7 2. what 3. 4+4").split);
}

TEST(SketchParserTest, Sentences) {
  SketchParseOptions o;
  o.mode = SketchParseOptions::Mode::kSentences;
  o.strip_chars = " \t\r\n";
  ParsedSketch s = ParseSketch(" Lily went to the park. She saw a big dog! They played", o);
  EXPECT_TRUE(s.split);
  EXPECT_EQ(s.points, (Points{"Lily went to the park.", "She saw a big dog!", "They played"}));
  IncrementalSketchParser p(o);
  EXPECT_TRUE(p.Update("Lily went.").empty());
  EXPECT_EQ(p.Update("Lily went. S"), (Points{"Lily went."}));
}

}  // namespace
}  // namespace pice

namespace pice {
namespace {

// Chunks mode (benchmark templates for random-weight models): equal pieces, cut at
// UTF-8 boundaries, streamed as each completes, the short tail only at the end.
TEST(SketchParserChunksTest, SplitsIntoPiecesAtUtf8Boundaries) {
  SketchParseOptions o;
  o.mode = SketchParseOptions::Mode::kChunks;
  o.chunk_chars = 4;
  o.max_points = 3;
  o.strip_chars = "";
  o.no_split = {""};
  IncrementalSketchParser p(o);
  EXPECT_TRUE(p.Update("abc").empty());
  EXPECT_EQ(p.Update("abcdef"), std::vector<std::string>({"abcd"}));
  // "\xC3\xA9" (é) straddles the next cut: the piece ends after it.
  EXPECT_EQ(p.Update("abcdefg\xC3\xA9hij"), std::vector<std::string>({"efg\xC3\xA9"}));
  ParsedSketch r = p.Finish("abcdefg\xC3\xA9hijklmnop");
  ASSERT_TRUE(r.split) << r.reason;
  EXPECT_EQ(r.points, std::vector<std::string>({"abcd", "efg\xC3\xA9", "hijk"}));  // budget 3
  EXPECT_FALSE(ParseSketch("", o).split);
}

}  // namespace
}  // namespace pice
