// Prometheus metrics (issue 13) with the real binaries: pice-cloud, pice-edge and
// pice-scheduler processes each serving /metrics (metrics_listen), checked by Debian's
// `promtool check metrics`, scraped by a real `prometheus` server whose HTTP query API must
// count exactly the queries the test sent; and every query of the Grafana dashboard
// (deploy/grafana/pice.json) names a metric the stack exposes.
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "nlohmann/json.hpp"
#include "tests/integration/harness.h"

namespace pice::testing {
namespace {

using json = nlohmann::json;

bool Have(const char* tool) {
  std::string out;
  return RunCommand(std::string("command -v ") + tool, &out) == 0;
}

std::string Scrape(int port) {
  std::string out;
  RunCommand("curl -sS --max-time 10 http://127.0.0.1:" + std::to_string(port) + "/metrics", &out);
  return out;
}

// The metric families a scrape declares ("# TYPE name kind").
std::set<std::string> Families(const std::string& text) {
  std::set<std::string> out;
  static const std::regex type_line(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) )");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), type_line); it != std::sregex_iterator(); ++it) {
    out.insert((*it)[1]);
  }
  return out;
}

class MetricsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    for (int& p : ports_) p = FreePort();
    auto m = [](int port) { return "metrics_listen: 127.0.0.1:" + std::to_string(port) + "\n"; };
    cloud_ = new Node(*dir_, "cloud", "pice-cloud", ArithCloudYaml(m(ports_[0])));
    edge_ = new Node(*dir_, "edge-1", "pice-edge",
                     ArithEdgeYaml("edge-1", {"a", "b", "c"}, m(ports_[1])));
    std::string why;
    for (Node* n : {cloud_, edge_}) ASSERT_TRUE(n->Ready(&why)) << why;
    sched_ = new Node(*dir_, "scheduler", "pice-scheduler",
                      "listen: 127.0.0.1:0\ncloud: " + cloud_->address() + "\nedges: [" +
                          edge_->address() + "]\ntimeouts: {load_poll: 100ms}\ncache: memory\n" +
                          m(ports_[2]));
    ASSERT_TRUE(sched_->Ready(&why)) << why;
  }
  static void TearDownTestSuite() {
    for (Node* n : {sched_, edge_, cloud_}) delete n;
    delete dir_;
  }
  void SetUp() override { ASSERT_NE(sched_, nullptr) << "the cluster did not start"; }

  // Sends `n` questions on each route past the response cache; counts them in sent_.
  static void Send(int n) {
    auto stub = PiceStub(sched_);
    const char* qs[] = {"add 3 and 4; multiply 6 by 7", "subtract 9 from 62", "add 26 and 19",
                        "multiply 11 by 69; add 96 and 4"};
    for (int i = 0; i < n; ++i) {
      for (v1::Route route : {v1::ROUTE_CLOUD, v1::ROUTE_SKETCH}) {
        v1::QueryRequest req;
        req.set_prompt(qs[i % 4]);
        req.set_route(route);
        req.set_no_cache(true);
        std::vector<v1::QueryEvent> ev;
        ASSERT_TRUE(RunQuery(stub.get(), req, &ev).ok());
        ++sent_;
      }
    }
  }

  static TempDir* dir_;
  static int ports_[3];  // cloud, edge, scheduler /metrics
  static Node *cloud_, *edge_, *sched_;
  static int sent_;
};

TempDir* MetricsTest::dir_ = nullptr;
int MetricsTest::ports_[3] = {0, 0, 0};
Node* MetricsTest::cloud_ = nullptr;
Node* MetricsTest::edge_ = nullptr;
Node* MetricsTest::sched_ = nullptr;
int MetricsTest::sent_ = 0;

TEST_F(MetricsTest, EveryBinaryServesMetricsThatPromtoolAccepts) {
  if (!Have("promtool")) GTEST_SKIP() << "promtool is not installed (prometheus; scripts/install-deps.sh)";
  Send(2);
  for (int port : ports_) {
    const std::string text = Scrape(port);
    ASSERT_NE(text.find("# TYPE pice_"), std::string::npos) << text;
    const std::string file = dir_->File("scrape-" + std::to_string(port) + ".txt");
    WriteFile(file, text);
    std::string out;
    EXPECT_EQ(RunCommand("promtool check metrics < " + file, &out), 0) << out;
  }
  const std::string cloud = Scrape(ports_[0]), edge = Scrape(ports_[1]), sched = Scrape(ports_[2]);
  EXPECT_NE(cloud.find("pice_generation_tokens_total{node=\"cloud\"}"), std::string::npos) << cloud;
  EXPECT_NE(edge.find("pice_kv_cache_usage_perc{node=\"edge-1\"}"), std::string::npos) << edge;
  EXPECT_NE(sched.find("pice_e2e_request_latency_seconds_bucket"), std::string::npos);
  EXPECT_NE(sched.find("pice_expansions_total{member="), std::string::npos);
}

TEST_F(MetricsTest, PrometheusScrapesTheStackAndCountsWhatWasSent) {
  if (!Have("prometheus")) GTEST_SKIP() << "prometheus is not installed (scripts/install-deps.sh)";
  const int port = FreePort();
  WriteFile(dir_->File("prometheus.yml"),
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n  - job_name: pice\n    static_configs:\n      - targets: ['127.0.0.1:" +
                std::to_string(ports_[0]) + "', '127.0.0.1:" + std::to_string(ports_[1]) +
                "', '127.0.0.1:" + std::to_string(ports_[2]) + "']\n");
  Process prom({"/usr/bin/prometheus", "--config.file=" + dir_->File("prometheus.yml"),
                "--storage.tsdb.path=" + dir_->File("tsdb"),
                "--web.listen-address=127.0.0.1:" + std::to_string(port)},
               dir_->File("prometheus"));
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  const std::string api = "curl -sS --max-time 5 ";
  std::string out;
  bool ready = false;
  for (int i = 0; i < 200 && !ready; ++i) {
    ready = RunCommand(api + base + "/-/ready", &out) == 0 && out.find("Ready") != std::string::npos;
    if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(ready) << out;
  Send(3);
  // The value of a PromQL expression, -1 when it has none (yet).
  auto value = [&](const std::string& promql) {
    std::string body;
    RunCommand(api + "--get --data-urlencode 'query=" + promql + "' " + base + "/api/v1/query", &body);
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded() || j.value("status", "") != "success" || j["data"]["result"].empty()) return -1.0;
    return std::stod(j["data"]["result"][0]["value"][1].get<std::string>());
  };
  // Until every target's scrape after the last query is in (a few scrape intervals).
  const double want = sent_;
  double got = -1;
  for (int i = 0; i < 150; ++i) {
    got = value("sum(pice_request_success_total)");
    if (got == want && value("count(up == 1)") == 3 &&
        value("count(pice_generation_tokens_total > 0)") == 2) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(got, want) << "Prometheus counts every answered query";
  EXPECT_EQ(value("sum(pice_e2e_request_latency_seconds_count)"), want);
  EXPECT_EQ(value("sum(pice_request_success_total{route=\"sketch\"})"), want / 2);
  EXPECT_GT(value("sum(pice_time_to_first_token_seconds_bucket{le=\"+Inf\"})"), 0);
  EXPECT_GT(value("sum(pice_generation_tokens_total{node=\"cloud\"})"), 0);
  EXPECT_GT(value("sum(pice_query_generation_tokens_total{where=\"edge\"})"), 0);
  std::string targets;
  RunCommand(api + base + "/api/v1/targets", &targets);
  EXPECT_EQ(value("count(up == 1)"), 3) << "all three targets scraped: " << targets;
}

TEST_F(MetricsTest, EveryDashboardQueryNamesAnExposedMetric) {
  Send(1);
  std::set<std::string> exposed;
  for (int port : ports_) {
    for (const std::string& f : Families(Scrape(port))) exposed.insert(f);
  }
  json dash = json::parse(ReadFile(SourceDir() + "/deploy/grafana/pice.json"), nullptr, false);
  ASSERT_FALSE(dash.is_discarded()) << "deploy/grafana/pice.json is not JSON";
  ASSERT_GE(dash["panels"].size(), 10u);
  static const std::regex name(R"(pice_[a-z0-9_]+)");
  int checked = 0;
  for (const json& panel : dash["panels"]) {
    ASSERT_FALSE(panel["targets"].empty()) << panel["title"];
    for (const json& t : panel["targets"]) {
      const std::string expr = t["expr"];
      for (auto it = std::sregex_iterator(expr.begin(), expr.end(), name); it != std::sregex_iterator(); ++it) {
        std::string n = (*it)[0];
        for (const char* suffix : {"_bucket", "_sum", "_count"}) {
          const std::string s = suffix;
          if (n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0 &&
              !exposed.count(n)) {
            n.resize(n.size() - s.size());
          }
        }
        EXPECT_TRUE(exposed.count(n)) << panel["title"] << ": " << n << " is not exposed";
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 15);
}

}  // namespace
}  // namespace pice::testing
