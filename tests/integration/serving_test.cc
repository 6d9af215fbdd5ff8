// End to end over loopback: pice-cloud, two pice-edge nodes and pice-scheduler as separate
// processes on the bundled pice-arith models; questions go through the scheduler with a
// gRPC stub (and through the `pice` CLI), and the numbers in the answers are checked.
#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "tests/integration/harness.h"

namespace pice::testing {
namespace {

std::string EdgeYaml(const std::string& name, const std::string& method) {
  std::string y = "node: " + name + "\nlisten: 127.0.0.1:0\ntemplate: " + TemplatesDir() +
                  "/pice-arith.yaml\nthreads: 1\nlog_level: warn\nselection: {method: " +
                  method + "}\nensemble:\n";
  for (const char* m : {"a", "b", "c"}) {
    y += std::string("  - {name: arith-edge-") + m + ", model: " + ModelsDir() + "/arith-edge-" +
         m + "-q8_0.gguf}\n";
  }
  return y;
}

std::string SchedulerYaml(const std::string& cloud, const std::vector<std::string>& edges,
                          const std::string& extra) {
  std::string y = "listen: 127.0.0.1:0\ncloud: " + cloud + "\nedges:\n";
  for (const auto& e : edges) y += "  - " + e + "\n";
  y += "answer: {point_format: \"{expansion}.\", separator: \" \"}\n"
       "timeouts: {load_poll: 100ms}\n" + extra;
  return y;
}

class ServingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    cloud_ = new Node(*dir_, "cloud", "pice-cloud", ArithCloudYaml());
    edge1_ = new Node(*dir_, "edge-1", "pice-edge", EdgeYaml("edge-1", "consensus"));
    edge2_ = new Node(*dir_, "edge-2", "pice-edge", EdgeYaml("edge-2", "confidence"));
    std::string why;
    for (Node* n : {cloud_, edge1_, edge2_}) ASSERT_TRUE(n->Ready(&why)) << why;
    const std::vector<std::string> edges = {edge1_->address(), edge2_->address()};
    // The deployed default: pice-arith policy, escalation below full agreement.
    sched_ = new Node(*dir_, "scheduler", "pice-scheduler",
                      SchedulerYaml(cloud_->address(), edges,
                                    "policy: pice-arith\nescalation: {threshold: 0.7}\n"));
    // No escalation, and rules that force each route by category.
    forced_ = new Node(*dir_, "forced", "pice-scheduler",
                       SchedulerYaml(cloud_->address(), edges,
                                     "escalation: {threshold: 0}\n"
                                     "policy:\n"
                                     "  default: auto\n"
                                     "  rules:\n"
                                     "    - {name: force-cloud, match: {categories: [c]}, route: cloud}\n"
                                     "    - {name: force-sketch, match: {categories: [s]}, route: sketch}\n"));
    for (Node* n : {sched_, forced_}) ASSERT_TRUE(n->Ready(&why)) << why;
  }
  static void TearDownTestSuite() {
    for (Node* n : {forced_, sched_, edge2_, edge1_, cloud_}) delete n;
    delete dir_;
  }
  void SetUp() override {
    ASSERT_NE(sched_, nullptr);
    ASSERT_GT(sched_->port(), 0) << "the cluster did not start";
  }

  static v1::QueryRequest Req(const std::string& q, v1::Route route = v1::ROUTE_AUTO,
                              const std::string& category = "") {
    v1::QueryRequest r;
    r.set_prompt(q);
    r.set_route(route);
    r.set_category(category);
    return r;
  }

  static TempDir* dir_;
  static Node *cloud_, *edge1_, *edge2_, *sched_, *forced_;
};
TempDir* ServingTest::dir_ = nullptr;
Node* ServingTest::cloud_ = nullptr;
Node* ServingTest::edge1_ = nullptr;
Node* ServingTest::edge2_ = nullptr;
Node* ServingTest::sched_ = nullptr;
Node* ServingTest::forced_ = nullptr;

TEST_F(ServingTest, BothRoutesAnswerWithTheRightNumbers) {
  auto stub = PiceStub(sched_);
  for (v1::Route route : {v1::ROUTE_CLOUD, v1::ROUTE_SKETCH}) {
    std::vector<v1::QueryEvent> ev;
    grpc::Status s = RunQuery(stub.get(), Req("add 3 and 4; multiply 6 by 7", route), &ev);
    ASSERT_TRUE(s.ok()) << s.error_message();
    const v1::AnswerEvent& a = FinalAnswer(ev);
    EXPECT_EQ(a.route(), route);
    EXPECT_NE(a.text().find("3+4=7"), std::string::npos) << a.text();
    EXPECT_NE(a.text().find("6*7=42"), std::string::npos) << a.text();
    EXPECT_EQ(a.finish_reason(), v1::STOP);
    EXPECT_GT(a.timings().total_ms(), 0);
    EXPECT_GT(a.timings().first_event_ms(), 0);
    EXPECT_GT(a.tokens_size(), 0);
    if (route == v1::ROUTE_SKETCH) {
      EXPECT_GT(a.timings().sketch_done_ms(), 0);
      EXPECT_EQ(std::vector<std::string>(a.points().begin(), a.points().end()),
                (std::vector<std::string>{"3+4", "6*7"}));
    }
  }
}

TEST_F(ServingTest, DependentQuestionFallsBackToTheFullRoute) {
  auto stub = PiceStub(sched_);
  std::vector<v1::QueryEvent> ev;
  ASSERT_TRUE(RunQuery(stub.get(), Req("add 3 and 4, then multiply that by 6"), &ev).ok());
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev[0].route().route(), v1::ROUTE_SKETCH);
  EXPECT_EQ(ev[1].route().route(), v1::ROUTE_CLOUD);
  EXPECT_NE(FinalAnswer(ev).text().find("7*6=42"), std::string::npos) << FinalAnswer(ev).text();
}

TEST_F(ServingTest, PolicyRulesForceEachRoute) {
  auto stub = PiceStub(forced_);
  const std::string q = "subtract nine from 40; add twelve and seven";
  for (const auto& [category, route, rule] :
       std::vector<std::tuple<std::string, v1::Route, std::string>>{
           {"c", v1::ROUTE_CLOUD, "force-cloud"}, {"s", v1::ROUTE_SKETCH, "force-sketch"}}) {
    std::vector<v1::QueryEvent> ev;
    ASSERT_TRUE(RunQuery(stub.get(), Req(q, v1::ROUTE_AUTO, category), &ev).ok());
    ASSERT_TRUE(ev[0].has_route());
    EXPECT_EQ(ev[0].route().route(), route);
    EXPECT_NE(ev[0].route().reason().find(rule), std::string::npos) << ev[0].route().reason();
    EXPECT_EQ(FinalAnswer(ev).route(), route);
    EXPECT_NE(FinalAnswer(ev).text().find("40-9=31"), std::string::npos) << FinalAnswer(ev).text();
  }
}

TEST_F(ServingTest, PointsSpreadOverEdgesAndTheAnswerIsInSketchOrder) {
  auto stub = PiceStub(forced_);  // no escalation: every point is settled on an edge
  std::vector<v1::QueryEvent> ev;
  const std::string q = "add 1 and 7; add 9 and 9; add 52 and 29; add 3 and 72; subtract 4 from 8";
  // Category "s": this scheduler's rule force-sketch (its policy ignores route hints).
  ASSERT_TRUE(RunQuery(stub.get(), Req(q, v1::ROUTE_AUTO, "s"), &ev).ok());
  const v1::AnswerEvent& a = FinalAnswer(ev);
  ASSERT_EQ(a.points_size(), 5);
  ASSERT_EQ(a.expansions_size(), 5);
  std::set<std::string> nodes;
  std::map<int, std::string> by_index;
  int points_seen = 0;
  for (const auto& e : ev) {
    if (e.has_sketch_point()) ++points_seen;
    if (!e.has_expansion()) continue;
    nodes.insert(e.expansion().node());
    by_index[e.expansion().index()] = e.expansion().text();
    EXPECT_FALSE(e.expansion().escalated());
  }
  EXPECT_EQ(points_seen, 5);
  EXPECT_EQ(nodes, (std::set<std::string>{"edge-1", "edge-2"}));
  std::string joined;
  for (int i = 0; i < 5; ++i) {
    // Each expansion answers its own point, and the answer keeps the sketch's order.
    EXPECT_EQ(a.expansions(i).rfind(a.points(i) + "=", 0), 0u) << a.expansions(i);
    EXPECT_EQ(by_index[i], a.expansions(i));
    joined += (i ? " " : "") + a.expansions(i) + ".";
  }
  EXPECT_EQ(a.text(), joined);
  EXPECT_EQ(std::vector<std::string>(a.points().begin(), a.points().end()),
            (std::vector<std::string>{"1+7", "9+9", "52+29", "3+72", "8-4"}));
}

TEST_F(ServingTest, EnsembleReportsEveryCandidateAndSelectsByItsMethod) {
  auto stub = PiceStub(forced_);
  int checked = 0;
  for (const char* q : {"multiply 23 by 4; add twelve and seven; multiply 11 by 69; multiply 15 by 5",
                        "add 26 and 19; subtract 9 from 62; multiply 64 by 0; add 96 and 4"}) {
    std::vector<v1::QueryEvent> ev;
    ASSERT_TRUE(RunQuery(stub.get(), Req(q, v1::ROUTE_AUTO, "s"), &ev).ok());
    for (const auto& e : ev) {
      if (!e.has_expansion()) continue;
      const v1::ExpansionEvent& x = e.expansion();
      ASSERT_EQ(x.candidates_size(), 3);
      std::set<std::string> models;
      int selected = -1;
      for (int i = 0; i < 3; ++i) {
        const v1::Candidate& c = x.candidates(i);
        models.insert(c.model());
        EXPECT_LE(c.mean_logprob(), 0);
        EXPECT_GE(c.consensus(), 0);
        EXPECT_LE(c.consensus(), 1);
        EXPECT_GT(c.tokens(), 0);
        if (c.selected()) {
          EXPECT_EQ(selected, -1) << "one selected candidate";
          selected = i;
        }
      }
      EXPECT_EQ(models, (std::set<std::string>{"arith-edge-a", "arith-edge-b", "arith-edge-c"}));
      ASSERT_GE(selected, 0);
      const v1::Candidate& s = x.candidates(selected);
      EXPECT_EQ(x.model(), s.model());
      EXPECT_EQ(x.selection(), x.node() == "edge-1" ? "consensus" : "confidence");
      for (const v1::Candidate& c : x.candidates()) {
        EXPECT_GE(s.score(), c.score()) << "the selected candidate ranks first";
        if (x.selection() == "confidence") {
          EXPECT_GE(s.mean_logprob(), c.mean_logprob());
        }
        if (x.selection() == "consensus") {
          EXPECT_GE(s.consensus(), c.consensus());
        }
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 8);
}

TEST_F(ServingTest, LowAgreementEscalatesToTheCloud) {
  auto stub = PiceStub(sched_);  // threshold 0.7: any disagreement goes to the cloud
  // 23*4, 11*69: the three edges all differ (models/pice-arith/README.md).
  std::vector<v1::QueryEvent> ev;
  ASSERT_TRUE(RunQuery(stub.get(), Req("multiply 23 by 4; multiply 11 by 69", v1::ROUTE_SKETCH),
                       &ev).ok());
  int escalated = 0;
  for (const auto& e : ev) {
    if (!e.has_expansion()) continue;
    if (e.expansion().agreement() < 0.7) {
      EXPECT_TRUE(e.expansion().escalated());
      EXPECT_EQ(e.expansion().node(), "cloud");
      ++escalated;
    }
  }
  EXPECT_GE(escalated, 1);
  EXPECT_NE(FinalAnswer(ev).text().find("23*4=92"), std::string::npos) << FinalAnswer(ev).text();
  EXPECT_NE(FinalAnswer(ev).text().find("11*69=759"), std::string::npos) << FinalAnswer(ev).text();
}

TEST_F(ServingTest, BadRequestsAreRefusedNamingTheField) {
  auto stub = PiceStub(sched_);
  std::vector<std::pair<v1::QueryRequest, std::string>> cases;
  cases.push_back({Req(""), "prompt"});
  cases.push_back({Req(std::string(10000, 'x')), "prompt"});
  cases.push_back({Req("add 1 and 2", static_cast<v1::Route>(9)), "route"});
  v1::QueryRequest t = Req("add 1 and 2");
  t.mutable_params()->set_top_p(2);
  cases.push_back({t, "params.top_p"});
  for (const auto& [req, field] : cases) {
    std::vector<v1::QueryEvent> ev;
    grpc::Status s = RunQuery(stub.get(), req, &ev);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << field;
    EXPECT_NE(s.error_message().find(field), std::string::npos) << s.error_message();
  }
  // The scheduler still answers afterwards.
  std::vector<v1::QueryEvent> ev;
  EXPECT_TRUE(RunQuery(stub.get(), Req("add 1 and 2"), &ev).ok());
}

TEST_F(ServingTest, CliQueryPrintsEventsAndRefusals) {
  const std::string pice = BinDir() + "/pice";
  std::string out;
  ASSERT_EQ(RunCommand(pice + " query --json --target " + sched_->address() +
                           " 'add 3 and 4; multiply 6 by 7'",
                       &out),
            0)
      << out;
  std::vector<std::string> types;
  std::string answer;
  for (const auto& line : absl::StrSplit(out, '\n')) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(std::string(line), nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    types.push_back(j["type"]);
    if (j["type"] == "answer") answer = j["text"];
  }
  ASSERT_FALSE(types.empty());
  EXPECT_EQ(types.front(), "route");
  EXPECT_EQ(types.back(), "answer");
  EXPECT_EQ(std::count(types.begin(), types.end(), "sketch_point"), 2);
  EXPECT_EQ(std::count(types.begin(), types.end(), "expansion"), 2);
  EXPECT_NE(answer.find("42"), std::string::npos);

  ASSERT_EQ(RunCommand(pice + " query --route cloud --target " + sched_->address() +
                           " 'add twelve and seven'",
                       &out),
            0);
  EXPECT_NE(out.find("12+7=19"), std::string::npos) << out;

  EXPECT_EQ(RunCommand(pice + " query --target " + sched_->address() + " ''", &out), 1);
  EXPECT_NE(out.find("INVALID_ARGUMENT"), std::string::npos) << out;
  EXPECT_NE(out.find("prompt"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(pice + " query --target " + sched_->address() + " \"$(printf 'bad \\377')\"",
                       &out),
            1);
  EXPECT_NE(out.find("INVALID_ARGUMENT"), std::string::npos) << out;
}

}  // namespace
}  // namespace pice::testing
