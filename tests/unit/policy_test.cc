// Routing policy: rule matching, the `auto` estimate, fall-backs and YAML errors.
#include "scheduler/policy.h"

#include <gtest/gtest.h>

#include "scheduler/config.h"

namespace pice::scheduler {
namespace {

LiveState TwoEdges() {
  LiveState l;
  l.healthy_edges = 2;
  l.edge_free_slots = 8;
  l.edge_max_slots = 8;
  return l;
}

Policy MustParse(const std::string& yaml) {
  auto p = ParsePolicyText(yaml, "test.yaml");
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : Policy{};
}

TEST(PolicyTest, FirstMatchingRuleDecides) {
  Policy p = MustParse(R"(
default: sketch
rules:
  - name: mathy
    match: {categories: [Math], keywords: [integral]}
    route: cloud
  - name: kw
    match: {keywords: [Integral]}
    route: sketch
  - name: anything-math
    match: {categories: [math]}
    route: cloud
)");
  QueryFacts f;
  f.prompt = "What is the INTEGRAL of x?";
  f.category = "math";
  Decision d = Decide(p, f, TwoEdges());
  EXPECT_EQ(d.route, RouteChoice::kCloud);
  EXPECT_EQ(d.rule, "mathy");
  EXPECT_NE(d.reason.find("mathy"), std::string::npos);

  f.category = "";
  d = Decide(p, f, TwoEdges());
  EXPECT_EQ(d.rule, "kw");
  EXPECT_EQ(d.route, RouteChoice::kSketch);

  f.prompt = "Tell me about dogs";
  d = Decide(p, f, TwoEdges());
  EXPECT_EQ(d.rule, "default");
  EXPECT_EQ(d.route, RouteChoice::kSketch);
}

TEST(PolicyTest, RulesMatchTheKeysNameAndARegexAndSayTheCacheScope) {
  Policy p = MustParse(R"(
default: sketch
rules:
  - name: batch-tenant
    match: {keys: [batch-jobs]}
    route: cloud
    cache: shared
  - name: proofs
    match: {regex: "(?i)\\bprove\\b|\\bderive\\b"}
    route: cloud
    cache: "off"
)");
  QueryFacts f;
  f.prompt = "List three dogs";
  f.key_name = "batch-jobs";
  Decision d = Decide(p, f, TwoEdges());
  EXPECT_EQ(d.rule, "batch-tenant");
  EXPECT_EQ(d.cache, CacheScope::kShared);
  EXPECT_NE(d.reason.find("key batch-jobs"), std::string::npos) << d.reason;
  f.key_name = "alice";
  EXPECT_EQ(Decide(p, f, TwoEdges()).rule, "default");
  EXPECT_EQ(Decide(p, f, TwoEdges()).cache, CacheScope::kTenant);
  f.prompt = "Please PROVE that 2 is prime";
  d = Decide(p, f, TwoEdges());
  EXPECT_EQ(d.rule, "proofs");
  EXPECT_EQ(d.cache, CacheScope::kOff);
  EXPECT_NE(d.reason.find("regex"), std::string::npos) << d.reason;
  f.prompt = "improve my essay";  // "prove" inside a word: no match (\b)
  EXPECT_EQ(Decide(p, f, TwoEdges()).rule, "default");
  // A prompt made to make backtracking engines explode is linear time for RE2.
  Policy evil = MustParse("rules:\n  - {name: e, match: {regex: \"(a+)+$\"}, route: cloud}\n");
  const std::string attack = std::string(100000, 'a') + "!";
  f.prompt = attack;
  EXPECT_EQ(Decide(evil, f, TwoEdges()).rule, "default");

  auto bad = ParsePolicyText("rules:\n  - {name: r, match: {regex: \"(x\"}, route: cloud}\n", "p.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("rules[0].match.regex"), absl::string_view::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("RE2"), absl::string_view::npos);
  auto bad_cache = ParsePolicyText("rules:\n  - {name: r, route: cloud, cache: sometimes}\n", "p.yaml");
  ASSERT_FALSE(bad_cache.ok());
  EXPECT_NE(bad_cache.status().message().find("cache"), absl::string_view::npos);
}

TEST(PolicyTest, PromptLengthAndHint) {
  Policy p = MustParse(R"(
default: cloud
rules:
  - name: hint-sketch
    match: {hint: sketch}
    route: sketch
  - name: long
    match: {min_prompt_chars: 10, max_prompt_chars: 20}
    route: sketch
)");
  QueryFacts f;
  f.prompt = "short";
  EXPECT_EQ(Decide(p, f, TwoEdges()).route, RouteChoice::kCloud);
  f.hint = RouteChoice::kSketch;
  EXPECT_EQ(Decide(p, f, TwoEdges()).rule, "hint-sketch");
  f.hint = RouteChoice::kAuto;
  f.prompt = "ünïcödé chars";  // 13 code points, more bytes
  EXPECT_EQ(Decide(p, f, TwoEdges()).rule, "long");
  f.prompt = "this prompt is longer than twenty code points";
  EXPECT_EQ(Decide(p, f, TwoEdges()).rule, "default");
}

TEST(PolicyTest, SketchWithoutHealthyEdgeGoesToCloud) {
  Policy p = MustParse("default: sketch\n");
  QueryFacts f;
  f.prompt = "add 1 and 2; add 3 and 4";
  LiveState none;
  Decision d = Decide(p, f, none);
  EXPECT_EQ(d.route, RouteChoice::kCloud);
  EXPECT_NE(d.reason.find("none is healthy"), std::string::npos) << d.reason;
}

TEST(PolicyTest, AutoPicksTheFasterRoute) {
  Policy p = MustParse(R"(
default: auto
estimates:
  point_separator: ";"
  sketch_tokens_per_point: 5
  answer_tokens_per_point: 40
  expand_tokens: 40
  cloud_tokens_per_s: 100
  edge_tokens_per_s: 100
  rtt_ms: 1
)");
  QueryFacts f;
  f.prompt = "a; b; c; d";  // 4 points
  LiveState live = TwoEdges();
  EXPECT_EQ(ExpectedPoints(p.estimates, f), 4);
  Decision d = Decide(p, f, live);
  // cloud: 160 tokens = 1600 ms; sketch: 20 tokens + one 40-token expansion = 600 ms.
  EXPECT_EQ(d.route, RouteChoice::kSketch) << d.reason;
  EXPECT_NEAR(d.est_cloud_ms, 1602, 1);
  EXPECT_NEAR(d.est_sketch_ms, 604, 1);
  EXPECT_NE(d.reason.find("est."), std::string::npos);

  // Busy edges: a deep queue and no free slot makes the sketch route slower.
  live.edge_free_slots = 0;
  live.edge_queue_depth = 40;
  d = Decide(p, f, live);
  EXPECT_EQ(d.route, RouteChoice::kCloud) << d.reason;

  // A fast measured cloud beats idle edges.
  live = TwoEdges();
  live.cloud_tokens_per_s = 10000;
  EXPECT_EQ(Decide(p, f, live).route, RouteChoice::kCloud);

  // max_points caps the expected points.
  f.max_points = 2;
  EXPECT_EQ(ExpectedPoints(p.estimates, f), 2);
}

// Issue 8.8: the cloud's load enters both estimates. A fast cloud that wins when idle
// loses to the edges once its slots are taken and calls wait for them.
TEST(PolicyTest, AutoSeesTheCloudsLoad) {
  Policy p = MustParse(R"(
default: auto
estimates:
  point_separator: ";"
  sketch_tokens_per_point: 5
  answer_tokens_per_point: 40
  expand_tokens: 40
  cloud_tokens_per_s: 400
  edge_tokens_per_s: 100
  rtt_ms: 1
)");
  QueryFacts f;
  f.prompt = "a; b; c; d";
  LiveState live = TwoEdges();
  live.cloud_max_slots = 4;
  // Idle: cloud 160 tokens / 400 = 400 ms; sketch 50 ms + 400 ms expansion.
  Decision idle = Decide(p, f, live);
  EXPECT_EQ(idle.route, RouteChoice::kCloud) << idle.reason;
  EXPECT_DOUBLE_EQ(CloudLoadFactor(live), 1.0);
  // 3 in flight + this one fit the 4 slots: no change.
  live.cloud_queue = 3;
  EXPECT_DOUBLE_EQ(CloudLoadFactor(live), 1.0);
  EXPECT_EQ(Decide(p, f, live).route, RouteChoice::kCloud);
  // 8 in flight and 4 waiting there: three waves ahead.
  live.cloud_queue = 8;
  live.cloud_queue_depth = 4;
  EXPECT_DOUBLE_EQ(CloudLoadFactor(live), 1.0 + 9.0 / 4);
  Decision busy = Decide(p, f, live);
  EXPECT_EQ(busy.route, RouteChoice::kSketch) << busy.reason;
  EXPECT_GT(busy.est_cloud_ms, 3 * idle.est_cloud_ms);
}

TEST(PolicyTest, AutoRespectsAllow) {
  Policy p = MustParse(R"(
rules:
  - name: only-cloud
    match: {categories: [code]}
    route: auto
    allow: [cloud]
default: auto
estimates: {answer_tokens_per_point: 1000, cloud_tokens_per_s: 1}
)");
  QueryFacts f;
  f.prompt = "write a sort";
  f.category = "code";
  EXPECT_EQ(Decide(p, f, TwoEdges()).route, RouteChoice::kCloud);
  f.category = "";
  EXPECT_EQ(Decide(p, f, TwoEdges()).route, RouteChoice::kSketch);
}

TEST(PolicyTest, BuiltinPolicies) {
  auto general = BuiltinPolicy("general");
  ASSERT_TRUE(general.ok()) << general.status();
  QueryFacts f;
  f.prompt = "Please solve the equation x^2 = 4 and explain each step in detail.";
  EXPECT_EQ(Decide(*general, f, TwoEdges()).route, RouteChoice::kCloud);
  f.prompt = "What are the main reasons people enjoy travelling abroad in summer?";
  f.category = "code";
  EXPECT_EQ(Decide(*general, f, TwoEdges()).route, RouteChoice::kCloud);
  f.category = "";
  f.hint = RouteChoice::kSketch;
  EXPECT_EQ(Decide(*general, f, TwoEdges()).route, RouteChoice::kSketch);

  auto arith = BuiltinPolicy("pice-arith");
  ASSERT_TRUE(arith.ok()) << arith.status();
  QueryFacts a;
  a.prompt = "add 3 and 4; multiply 6 by 7";
  EXPECT_EQ(Decide(*arith, a, TwoEdges()).route, RouteChoice::kSketch);
  a.hint = RouteChoice::kCloud;
  EXPECT_EQ(Decide(*arith, a, TwoEdges()).route, RouteChoice::kCloud);
  EXPECT_FALSE(BuiltinPolicy("nope").ok());
}

TEST(PolicyTest, YamlErrorsNameTheKey) {
  auto bad_route = ParsePolicyText("rules:\n  - name: x\n    route: fast\n", "p.yaml");
  ASSERT_FALSE(bad_route.ok());
  EXPECT_NE(bad_route.status().message().find("p.yaml"), std::string::npos);
  EXPECT_NE(bad_route.status().message().find("rules[0].route"), std::string::npos)
      << bad_route.status();

  auto unknown = ParsePolicyText("rules:\n  - route: cloud\n    match: {keywrds: [a]}\n", "p.yaml");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("keywrds"), std::string::npos) << unknown.status();

  auto bad_num = ParsePolicyText("estimates: {rtt_ms: fast}\n", "p.yaml");
  ASSERT_FALSE(bad_num.ok());
  EXPECT_NE(bad_num.status().message().find("estimates.rtt_ms"), std::string::npos)
      << bad_num.status();

  auto no_route = ParsePolicyText("rules:\n  - name: x\n", "p.yaml");
  ASSERT_FALSE(no_route.ok());
  EXPECT_NE(no_route.status().message().find("route"), std::string::npos) << no_route.status();
}

TEST(SchedulerConfigTest, ParsesAndNamesErrors) {
  auto root = ConfigNode::LoadString(R"(
listen: 127.0.0.1:0
cloud: 127.0.0.1:5000
edges: [127.0.0.1:5001, {name: e2, address: "127.0.0.1:5002"}]
policy:
  default: cloud
escalation: {threshold: 0.7, min_confidence: -0.25}
limits: {max_points: 8}
timeouts: {expand: 500ms}
answer: {point_format: "{point}={expansion}.", separator: " "}
)", "s.yaml");
  ASSERT_TRUE(root.ok()) << root.status();
  auto o = ParseSchedulerOptions(*root);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->edges.size(), 2u);
  EXPECT_EQ(o->edges[1].name, "e2");
  EXPECT_DOUBLE_EQ(o->escalation_threshold, 0.7);
  EXPECT_DOUBLE_EQ(o->escalation_min_confidence, -0.25);
  EXPECT_EQ(o->max_points, 8);
  EXPECT_DOUBLE_EQ(o->expand_timeout_s, 0.5);
  EXPECT_EQ(o->policy.fallback.route, RouteChoice::kCloud);

  for (const auto& [yaml, key] : std::vector<std::pair<std::string, std::string>>{
           {"cloud: x:1\nescalation: {threshold: 2}\n", "escalation.threshold"},
           {"cloud: x:1\nedgez: []\n", "edgez"},
           {"cloud: x:1\nescalation: {min_confidence: 0.5}\n", "escalation.min_confidence"},
           {"listen: 1.2.3.4:1\n", "cloud"},
           {"cloud: x:1\npolicy: {default: sideways}\n", "policy.default"},
           {"cloud: x:1\nlimits: {max_points: -1}\n", "limits.max_points"},
       }) {
    auto r = ConfigNode::LoadString(yaml, "s.yaml");
    ASSERT_TRUE(r.ok());
    auto opts = ParseSchedulerOptions(*r);
    ASSERT_FALSE(opts.ok()) << yaml;
    EXPECT_NE(opts.status().message().find(key), std::string::npos) << opts.status();
    EXPECT_NE(opts.status().message().find("s.yaml"), std::string::npos) << opts.status();
  }
}

// Issue 8.9: with no policy the scheduler routes with the general-purpose policy.
TEST(SchedulerConfigTest, TheDefaultPolicyIsGeneral) {
  auto r = ConfigNode::LoadString("cloud: 127.0.0.1:1\n", "s.yaml");
  ASSERT_TRUE(r.ok());
  auto o = ParseSchedulerOptions(*r);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->policy.name, "general");
}

TEST(SchedulerConfigTest, DeployedFilesLoad) {
  auto o = LoadSchedulerOptions(std::string(PICE_SOURCE_DIR) + "/deploy/scheduler.yaml");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->policy.name, "pice-arith");
  EXPECT_EQ(o->edges.size(), 2u);
  auto g = LoadPolicyFile(std::string(PICE_SOURCE_DIR) + "/deploy/policy-general.yaml");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->name, "general");
}

}  // namespace
}  // namespace pice::scheduler
