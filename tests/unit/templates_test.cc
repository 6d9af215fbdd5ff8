// Prompt templates: the shipped files load, fill and parse as documented; errors name
// the file and key.
#include "cloud/templates.h"

#include <gtest/gtest.h>

namespace pice {
namespace {

std::string Path(const std::string& name) { return std::string(PICE_SOURCE_DIR) + "/templates/" + name; }

TEST(TemplatesTest, ShippedTemplatesLoad) {
  for (const char* f : {"pice-arith.yaml", "chatml-sot.yaml", "story.yaml"}) {
    auto t = LoadPromptTemplate(Path(f));
    EXPECT_TRUE(t.ok()) << f << ": " << t.status();
  }
}

TEST(TemplatesTest, ArithFormats) {
  auto t = LoadPromptTemplate(Path("pice-arith.yaml"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_FALSE(t->chat);
  std::string q = "add twelve and seven; multiply 23 by 4";
  EXPECT_EQ(BuildSketchPrompt(*t, q, 5).user, "Q: " + q + "\nS:");
  EXPECT_EQ(BuildFullPrompt(*t, q).user, "Q: " + q + "\nA:");
  std::vector<std::string> sketch = {"12+7", "23*4"};
  EXPECT_EQ(BuildExpandPrompt(*t, q, sketch, 1).user, "P: 23*4=");
  EXPECT_EQ(FormatAnswer(*t, q, sketch, 0, "19"), "12+7=19");
  ParsedSketch s = ParseSketch(" 1. 12+7 2. 23*4 3. 40-9", t->parse);
  EXPECT_TRUE(s.split);
  EXPECT_EQ(s.points.size(), 3u);
  EXPECT_FALSE(ParseSketch(" -", t->parse).split);
  EXPECT_FALSE(ParseSketch(" 12+7=19. 23*4=92.", t->parse).split);
}

TEST(TemplatesTest, SotExpansionSeesQuestionAndSketch) {
  auto t = LoadPromptTemplate(Path("chatml-sot.yaml"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->chat);
  BuiltPrompt p = BuildExpandPrompt(*t, "Why is the sky blue?", {"Sunlight", "Scattering"}, 1);
  EXPECT_NE(p.user.find("Why is the sky blue?"), std::string::npos);
  EXPECT_NE(p.user.find("1. Sunlight\n2. Scattering"), std::string::npos);
  EXPECT_NE(p.user.find("point 2"), std::string::npos);
  EXPECT_EQ(p.response_prefix, "2. Scattering");
  EXPECT_NE(BuildSketchPrompt(*t, "q", 4).user.find("3~4 points"), std::string::npos);
}

TEST(TemplatesTest, FillEscapes) {
  EXPECT_EQ(FillTemplate("{{x}} {a}", {{"a", "1"}}), "{x} 1");
}

TEST(TemplatesTest, ErrorsNameFileAndKey) {
  auto bad = ParsePromptTemplate(
      "family: f\nsketch: {prompt: \"{question}\"}\nfull: {prompt: \"{questoin}\"}\n"
      "expand: {prompt: \"{point}\"}\n", "my.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("my.yaml: full.prompt: unknown placeholder {questoin}"),
            std::string::npos) << bad.status();
  auto typo = ParsePromptTemplate(
      "family: f\nsketch: {prompt: a, max_point: 3}\nfull: {prompt: b}\nexpand: {prompt: c}\n",
      "my.yaml");
  EXPECT_NE(typo.status().message().find("my.yaml: sketch: unknown key max_point"),
            std::string::npos) << typo.status();
  auto missing = ParsePromptTemplate("family: f\nsketch: {prompt: a}\nfull: {prompt: b}\n", "my.yaml");
  EXPECT_NE(missing.status().message().find("my.yaml: expand: missing"), std::string::npos)
      << missing.status();
  auto regex = ParsePromptTemplate(
      "family: f\nsketch: {prompt: a, parse: {point_regex: \"([\"}}\nfull: {prompt: b}\nexpand: {prompt: c}\n",
      "my.yaml");
  EXPECT_NE(regex.status().message().find("my.yaml: sketch.parse.point_regex"), std::string::npos)
      << regex.status();
}

}  // namespace
}  // namespace pice
