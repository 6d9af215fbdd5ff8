// Edges found by DNS and by a file (issue 14): a real dnsmasq on a loopback port serves a name
// with A records for edges on 127.0.0.2, .3 and .4 (Linux routes all of 127/8 to loopback);
// the scheduler resolves it every 300 ms. Records are added and removed while queries run: a
// new edge takes work within a refresh and its probe, a removed one takes none, no query fails.
// The same with `edges_file:`.
#include <signal.h>

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/integration/harness.h"

namespace pice::testing {
namespace {

// Runs queries on the sketch route from a thread; records which edges expanded points.
class Load {
 public:
  explicit Load(Node* sched) : thread_([this, sched] {
    auto stub = PiceStub(sched);
    while (!stop_) {
      v1::QueryRequest req;
      req.set_prompt("add 3 and 4; multiply 6 by 7; add 1 and 2");
      req.set_route(v1::ROUTE_SKETCH);
      req.set_no_cache(true);
      std::vector<v1::QueryEvent> ev;
      grpc::Status s = RunQuery(stub.get(), req, &ev, 30);
      std::lock_guard<std::mutex> lock(mu_);
      if (!s.ok()) {
        ++failed_;
        error_ = s.error_message();
      }
      for (const auto& e : ev) {
        if (e.has_expansion() && !e.expansion().escalated()) seen_.insert(e.expansion().node());
      }
    }
  }) {}
  ~Load() {
    stop_ = true;
    thread_.join();
  }
  // The edges that expanded points since the last call.
  std::set<std::string> TakeSeen() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(seen_, {});
  }
  // Waits until `pred(seen since the call)` holds, up to 15 s.
  template <typename Pred>
  bool Until(Pred pred) {
    TakeSeen();
    std::set<std::string> all;
    for (int i = 0; i < 150; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      for (const auto& s : TakeSeen()) all.insert(s);
      if (pred(all)) return true;
    }
    return false;
  }
  int failed() {
    std::lock_guard<std::mutex> lock(mu_);
    return failed_;
  }
  std::string error() {
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::set<std::string> seen_;
  int failed_ = 0;
  std::string error_;
  std::thread thread_;
};

class DiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = FreePort();
    cloud_ = std::make_unique<Node>(dir_, "cloud", "pice-cloud", ArithCloudYaml());
    std::string why;
    ASSERT_TRUE(cloud_->Ready(&why)) << why;
    for (int k = 2; k <= 4; ++k) {
      const std::string name = "edge-" + std::to_string(k);
      edges_.push_back(std::make_unique<Node>(
          dir_, name, "pice-edge",
          ArithEdgeYaml(name, {"a"}, "", "127.0.0." + std::to_string(k) + ":" + std::to_string(port_))));
      edges_.back()->set_host("127.0.0." + std::to_string(k));
    }
    for (auto& e : edges_) ASSERT_TRUE(e->Ready(&why)) << why;
  }
  std::string Ip(int k) const { return "127.0.0." + std::to_string(k); }
  // dnsmasq on a free loopback port answering from `hosts` (SIGHUP re-reads it); `tag`
  // names its files. Its port in *port.
  std::unique_ptr<Process> StartDnsmasq(const std::string& hosts, const std::string& tag, int* port) {
    *port = FreePort();
    const std::string bin = access("/usr/sbin/dnsmasq", X_OK) == 0 ? "/usr/sbin/dnsmasq" : "dnsmasq";
    auto dns = std::make_unique<Process>(
        std::vector<std::string>{bin, "--keep-in-foreground", "--port=" + std::to_string(*port),
                                 "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv",
                                 "--no-hosts", "--addn-hosts=" + hosts,
                                 "--pid-file=" + dir_.File(tag + ".pid"), "--user=root",
                                 "--log-facility=" + dir_.File(tag + ".log")},
        dir_.File(tag));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return dns;
  }

  TempDir dir_;
  int port_ = 0;
  std::unique_ptr<Node> cloud_;
  std::vector<std::unique_ptr<Node>> edges_;
};

TEST_F(DiscoveryTest, EdgesComeAndGoWithTheirDnsRecords) {
  std::string out;
  if (RunCommand("command -v dnsmasq || test -x /usr/sbin/dnsmasq", &out) != 0) {
    GTEST_SKIP() << "dnsmasq is not installed (scripts/install-deps.sh)";
  }
  const std::string hosts = dir_.File("hosts");
  auto records = [&](std::vector<int> ks) {
    std::string text;
    for (int k : ks) text += Ip(k) + " pice-edge.test\n";
    WriteFile(hosts, text);
  };
  records({2, 3});
  int dns_port = 0;
  std::unique_ptr<Process> dns_proc = StartDnsmasq(hosts, "dnsmasq", &dns_port);
  Process& dns = *dns_proc;
  ASSERT_TRUE(dns.Running()) << dns.Stderr();
  Node sched(dir_, "scheduler", "pice-scheduler",
             "listen: 127.0.0.1:0\ncloud: " + cloud_->address() + "\nedges:\n  - {dns: \"pice-edge.test:" +
                 std::to_string(port_) + "\", refresh: 300ms, server: \"127.0.0.1:" +
                 std::to_string(dns_port) + "\"}\ntimeouts: {load_poll: 100ms}\n"
                 "escalation: {threshold: 0}\npolicy: {default: sketch}\n");
  std::string why;
  ASSERT_TRUE(sched.Ready(&why)) << why;
  Load load(&sched);
  auto has = [](const std::set<std::string>& s, const char* e) { return s.count(e) > 0; };
  EXPECT_TRUE(load.Until([&](const auto& s) { return has(s, "edge-2") && has(s, "edge-3"); }))
      << "the two records' edges take work";
  // A third record: its edge takes work within a refresh (and its probe).
  records({2, 3, 4});
  kill(dns.pid(), SIGHUP);  // dnsmasq re-reads its hosts files
  EXPECT_TRUE(load.Until([&](const auto& s) { return has(s, "edge-4"); })) << "the new edge";
  // One record goes: its edge takes no more work; the others carry on.
  records({3, 4});
  kill(dns.pid(), SIGHUP);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // refresh + calls in flight
  EXPECT_TRUE(load.Until([&](const auto& s) { return s.size() >= 2; }));
  std::set<std::string> after = load.TakeSeen();
  for (int i = 0; i < 10; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    for (const auto& s : load.TakeSeen()) after.insert(s);
  }
  EXPECT_FALSE(after.count("edge-2")) << "a removed edge took new work";
  EXPECT_TRUE(after.count("edge-3") || after.count("edge-4"));
  // The DNS server goes away: the scheduler keeps the edges it knows.
  dns.Kill();
  EXPECT_TRUE(load.Until([&](const auto& s) { return has(s, "edge-3") && has(s, "edge-4"); }));
  EXPECT_EQ(load.failed(), 0) << load.error();
}

// Cloud replicas by DNS (`cloud: [{dns: ...}]`): the scheduler uses the cloud its record
// names, and after the record moves to another replica every new query goes there.
TEST_F(DiscoveryTest, CloudReplicasComeAndGoWithTheirDnsRecords) {
  std::string out;
  if (RunCommand("command -v dnsmasq || test -x /usr/sbin/dnsmasq", &out) != 0) {
    GTEST_SKIP() << "dnsmasq is not installed (scripts/install-deps.sh)";
  }
  const int cloud_port = FreePort();
  std::vector<std::unique_ptr<Node>> clouds;
  for (int k : {5, 6}) {
    std::string y = ArithCloudYaml();
    y.replace(y.find("node: cloud"), 11, "node: cloud-" + std::to_string(k));
    y.replace(y.find("127.0.0.1:0"), 11, Ip(k) + ":" + std::to_string(cloud_port));
    clouds.push_back(std::make_unique<Node>(dir_, "cloud-" + std::to_string(k), "pice-cloud", y));
    clouds.back()->set_host(Ip(k));
  }
  std::string why;
  for (auto& c : clouds) ASSERT_TRUE(c->Ready(&why)) << why;
  const std::string hosts = dir_.File("cloud-hosts");
  WriteFile(hosts, Ip(5) + " pice-cloud.test\n");
  int dns_port = 0;
  std::unique_ptr<Process> dns_proc = StartDnsmasq(hosts, "dnsmasq-cloud", &dns_port);
  Process& dns = *dns_proc;
  ASSERT_TRUE(dns.Running()) << dns.Stderr();
  Node sched(dir_, "scheduler", "pice-scheduler",
             "listen: 127.0.0.1:0\ncloud:\n  - {dns: \"pice-cloud.test:" + std::to_string(cloud_port) +
                 "\", refresh: 300ms, server: \"127.0.0.1:" + std::to_string(dns_port) +
                 "\"}\nedges: [" + edges_[0]->address() + "]\ntimeouts: {load_poll: 100ms}\n");
  ASSERT_TRUE(sched.Ready(&why)) << why;
  auto stub = PiceStub(&sched);
  // The cloud an answer came from (its node name in the token counts), "" when degraded.
  auto cloud_of = [&]() -> std::string {
    v1::QueryRequest req;
    req.set_prompt("add 12 and 30; multiply 7 by 8");
    req.set_route(v1::ROUTE_CLOUD);
    req.set_no_cache(true);
    std::vector<v1::QueryEvent> ev;
    if (!RunQuery(stub.get(), req, &ev, 30).ok() || ev.empty()) return "error";
    if (FinalAnswer(ev).degraded()) return "";
    for (const v1::NodeTokens& t : FinalAnswer(ev).tokens()) {
      if (t.node().rfind("cloud-", 0) == 0) return t.node();
    }
    return "none";
  };
  auto until = [&](const std::string& want) {
    std::string got;
    for (int i = 0; i < 50 && (got = cloud_of()) != want; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return got;
  };
  EXPECT_EQ(until("cloud-5"), "cloud-5") << "the record's cloud answers";
  WriteFile(hosts, Ip(6) + " pice-cloud.test\n");
  kill(dns.pid(), SIGHUP);
  EXPECT_EQ(until("cloud-6"), "cloud-6") << "the new record's cloud answers";
  for (int i = 0; i < 5; ++i) EXPECT_EQ(cloud_of(), "cloud-6") << "the removed cloud takes no new work";
}

TEST_F(DiscoveryTest, EdgesFileIsReloadedWhenItChanges) {
  const std::string file = dir_.File("edges.txt");
  const std::string p = std::to_string(port_);
  WriteFile(file, "# one per line\nedge-2 " + Ip(2) + ":" + p + "\n");
  Node sched(dir_, "scheduler", "pice-scheduler",
             "listen: 127.0.0.1:0\ncloud: " + cloud_->address() + "\nedges_file: " + file +
                 "\ntimeouts: {load_poll: 100ms}\nescalation: {threshold: 0}\npolicy: {default: sketch}\n");
  std::string why;
  ASSERT_TRUE(sched.Ready(&why)) << why;
  Load load(&sched);
  EXPECT_TRUE(load.Until([](const auto& s) { return s.count("edge-2") > 0; }));
  WriteFile(file, Ip(3) + ":" + p + "\n" + Ip(4) + ":" + p + "\n");
  EXPECT_TRUE(load.Until([](const auto& s) { return s.count("edge-3") && s.count("edge-4"); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_TRUE(load.Until([](const auto& s) { return s.size() >= 2 && !s.count("edge-2"); }))
      << "edge-2 left the file and takes no more work";
  // A broken file keeps the edges it named last.
  WriteFile(file, "not an address\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_TRUE(load.Until([](const auto& s) { return s.count("edge-3") && s.count("edge-4"); }));
  EXPECT_NE(sched.process().Stderr().find("keeping its edges"), std::string::npos);
  EXPECT_EQ(load.failed(), 0) << load.error();
}

}  // namespace
}  // namespace pice::testing
