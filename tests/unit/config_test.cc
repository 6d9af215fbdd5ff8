// ConfigNode: every error names the file, the key path and what was expected.
#include "common/config.h"

#include <gtest/gtest.h>

#include "common/args.h"

#include "common/status.h"
#include "node/request.h"

namespace pice {
namespace {

ConfigNode Load(const std::string& text) {
  auto n = ConfigNode::LoadString(text, "edge.yaml", "/etc/pice");
  EXPECT_TRUE(n.ok()) << n.status();
  return *n;
}

TEST(ConfigTest, ReadsValuesAndKeepsDefaults) {
  ConfigNode root = Load("threads: 4\nname: e1\nratio: 0.5\nflag: yes\nmodel: m.gguf\n");
  int threads = 1, absent = 7;
  std::string name;
  double ratio = 0;
  bool flag = false;
  std::string model;
  EXPECT_TRUE(root.ReadInt("threads", &threads, 1, 64).ok());
  EXPECT_TRUE(root.ReadInt("absent", &absent, 1, 64).ok());
  EXPECT_TRUE(root.ReadString("name", &name).ok());
  EXPECT_TRUE(root.ReadDouble("ratio", &ratio, 0, 1).ok());
  EXPECT_TRUE(root.ReadBool("flag", &flag).ok());
  EXPECT_TRUE(root.ReadPath("model", &model).ok());
  EXPECT_EQ(threads, 4);
  EXPECT_EQ(absent, 7);
  EXPECT_EQ(name, "e1");
  EXPECT_DOUBLE_EQ(ratio, 0.5);
  EXPECT_TRUE(flag);
  EXPECT_EQ(model, "/etc/pice/m.gguf");
}

TEST(ConfigTest, ErrorNamesFileKeyPathAndExpectation) {
  ConfigNode root = Load("ensemble:\n  - name: a\n    temperature: 0.5\n  - name: b\n    temperature: hot\n");
  ConfigNode member = root.Child("ensemble").At(1);
  float t = 0;
  absl::Status s = member.ReadFloat("temperature", &t, 0, 100);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "edge.yaml: ensemble[1].temperature: expected a number in [0, 100], got \"hot\"");
}

TEST(ConfigTest, OutOfRangeInteger) {
  ConfigNode root = Load("limits:\n  max_tokens: 0\n");
  int v = 5;
  absl::Status s = root.Child("limits").ReadInt("max_tokens", &v, 1, 4096);
  EXPECT_EQ(s.message(), "edge.yaml: limits.max_tokens: expected an integer in [1, 4096], got \"0\"");
  EXPECT_EQ(v, 5);
}

TEST(ConfigTest, UnknownKeysAreNamed) {
  ConfigNode root = Load("listen: 0.0.0.0:1\nthreds: 2\n");
  absl::Status s = root.CheckKeys({"listen", "threads"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("edge.yaml"), std::string::npos) << s;
  EXPECT_NE(s.message().find("unknown key threds"), std::string::npos) << s;
  EXPECT_NE(s.message().find("listen, threads"), std::string::npos) << s;
}

TEST(ConfigTest, NestedUnknownKeyAndWrongShape) {
  ConfigNode root = Load("limits:\n  max_tokns: 3\nensemble: 5\n");
  absl::Status s = root.Child("limits").CheckKeys({"max_tokens"});
  EXPECT_NE(s.message().find("edge.yaml: limits: unknown key max_tokns"), std::string::npos) << s;
  s = root.Child("ensemble").CheckKeys({"name"});
  EXPECT_EQ(s.message(), "edge.yaml: ensemble: expected a mapping, got \"5\"");
}

TEST(ConfigTest, SyntaxErrorNamesLine) {
  auto n = ConfigNode::LoadString("a: 1\nb: [1, 2\n", "cloud.yaml");
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(n.status().message().find("cloud.yaml:"), std::string::npos) << n.status();
  auto top = ConfigNode::LoadString("- a\n- b\n", "cloud.yaml");
  EXPECT_FALSE(top.ok());
}

TEST(ConfigTest, MissingFileIsNotFound) {
  auto n = ConfigNode::LoadFile("/nonexistent/x.yaml");
  EXPECT_EQ(n.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(n.status().message().find("/nonexistent/x.yaml"), std::string::npos);
}

TEST(ConfigTest, EnumsBoolsListsDurations) {
  ConfigNode root = Load("sel: majority\nb: maybe\nstop: [\"a\", {x: 1}]\ndrain: 500ms\nd2: 2m\n");
  std::string sel = "confidence";
  absl::Status s = root.ReadEnum("sel", &sel, {"confidence", "consensus", "hybrid"});
  EXPECT_EQ(s.message(),
            "edge.yaml: sel: expected one of confidence, consensus, hybrid, got \"majority\"");
  bool b = false;
  EXPECT_EQ(root.ReadBool("b", &b).message(), "edge.yaml: b: expected true or false, got \"maybe\"");
  std::vector<std::string> stop;
  EXPECT_EQ(root.ReadStringList("stop", &stop).message(),
            "edge.yaml: stop[1]: expected a string, got a mapping");
  double drain = 0;
  EXPECT_TRUE(root.ReadSeconds("drain", &drain, 0, 600).ok());
  EXPECT_DOUBLE_EQ(drain, 0.5);
  EXPECT_TRUE(root.ReadSeconds("d2", &drain, 0, 600).ok());
  EXPECT_DOUBLE_EQ(drain, 120);
}

TEST(ConfigTest, NumberLists) {
  ConfigNode root = Load("rates: [0.5, 2]\none: 3\nbad: [1, x]\nlow: [1, -1]\n");
  std::vector<double> v = {9};
  ASSERT_TRUE(root.ReadDoubleList("rates", &v, 0, 10).ok());
  EXPECT_EQ(v, (std::vector<double>{0.5, 2}));
  ASSERT_TRUE(root.ReadDoubleList("one", &v, 0, 10).ok());
  EXPECT_EQ(v, (std::vector<double>{3}));
  ASSERT_TRUE(root.ReadDoubleList("absent", &v, 0, 10).ok());
  EXPECT_EQ(v, (std::vector<double>{3}));  // an absent key leaves the default
  EXPECT_EQ(root.ReadDoubleList("bad", &v, 0, 10).message(),
            "edge.yaml: bad: expected numbers in [0, 10], got 'x'");
  EXPECT_EQ(root.ReadDoubleList("low", &v, 0, 10).message(),
            "edge.yaml: low: expected numbers in [0, 10], got '-1'");
}

TEST(StatusTest, SamplingParamsValidationNamesField) {
  SamplingLimits limits;
  v1::SamplingParams p;
  auto o = ToGenerateOptions(p, limits);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->max_tokens, limits.default_max_tokens);
  EXPECT_FLOAT_EQ(o->sampling.top_p, 1.0f);
  p.set_temperature(150);
  EXPECT_EQ(ToGenerateOptions(p, limits).status().message(),
            "params.temperature: must be in [0, 100], got 150");
  p.set_temperature(0.7f);
  p.set_max_tokens(5000);
  EXPECT_NE(ToGenerateOptions(p, limits).status().message().find("params.max_tokens"),
            std::string::npos);
  p.set_max_tokens(10);
  p.set_top_p(1.5f);
  EXPECT_NE(ToGenerateOptions(p, limits).status().message().find("params.top_p"), std::string::npos);
  p.set_top_p(0.9f);
  p.add_stop("");
  EXPECT_NE(ToGenerateOptions(p, limits).status().message().find("params.stop[0]"),
            std::string::npos);
}

TEST(StatusTest, Utf8) {
  EXPECT_TRUE(IsValidUtf8("héllo ✓ 😀"));
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));  // surrogate
  EXPECT_EQ(CompleteUtf8Prefix("ab\xe2\x9c"), 2u);
  EXPECT_EQ(CompleteUtf8Prefix("ab\xe2\x9c\x93"), 5u);
  EXPECT_EQ(ValidateText("", "prompt", 10).message(), "prompt: must not be empty");
  EXPECT_EQ(ValidateUtf8("\xff", "question").message(), "question: not valid UTF-8");
}

TEST(StatusTest, DeltaStreamerHoldsBackStopPrefixesAndPartialUtf8) {
  DeltaStreamer d({"END"});
  EXPECT_EQ(d.Push("hello E"), "hello ");
  EXPECT_EQ(d.Push("N"), "");
  EXPECT_EQ(d.Push("x \xe2\x9c"), "ENx ");
  EXPECT_EQ(d.Push("\x93 EN"), "\xe2\x9c\x93 ");
  EXPECT_EQ(d.Push("D more"), "");
  EXPECT_EQ(d.Finish("hello ENx \xe2\x9c\x93 "), "");
  DeltaStreamer e({});
  EXPECT_EQ(e.Push("ab"), "ab");
  EXPECT_EQ(e.Finish("abc"), "c");
}

}  // namespace
}  // namespace pice

namespace pice {
namespace {

TEST(ValidateHistoryTest, RolesUtf8AndSizeAreChecked) {
  google::protobuf::RepeatedPtrField<v1::ChatTurn> h;
  v1::ChatTurn* t = h.Add();
  t->set_role("assistant");
  t->set_content("fine");
  EXPECT_TRUE(ValidateHistory(h, 10, 100).ok());
  EXPECT_NE(ValidateHistory(h, 99, 100).message().find("history:"), std::string::npos);
  t->set_content("\xff");
  EXPECT_NE(ValidateHistory(h, 0, 100).message().find("history[0].content"), std::string::npos);
  t->set_role("tool");
  EXPECT_NE(ValidateHistory(h, 0, 100).message().find("history[0].role"), std::string::npos);
}

// Issue 8.11: one flag style; the underscore spelling is the same flag, --help/-h always.
TEST(ArgsTest, DashesAndUnderscoresAreOneFlagAndHelpIsAlwaysThere) {
  auto a = Args::Parse({"--port_file", "p", "--log-level=debug", "-h", "q"},
                       {"port-file", "log-level"}, {});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->Str("port-file"), "p");
  EXPECT_EQ(a->Str("log-level"), "debug");
  EXPECT_TRUE(a->Help());
  EXPECT_EQ(a->positional(), std::vector<std::string>{"q"});
  auto bad = Args::Parse({"--portfile", "p"}, {"port-file"}, {});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--portfile"), std::string::npos);
}

}  // namespace
}  // namespace pice
