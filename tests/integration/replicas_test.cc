// Scheduler replicas (issue 14, "the scheduler scales out"): two pice-scheduler processes over
// the same cloud and edge are interchangeable (stateless: a query is owned by the replica that
// accepted it), and one of them drained with SIGTERM under load loses nothing — every query
// it accepted completes, later ones are refused (UNAVAILABLE; CANCELLED in the instant its
// server stops) and never half-answered, the other replica answers everything.
#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/integration/harness.h"

namespace pice::testing {
namespace {

TEST(ReplicasTest, ADrainedReplicaCompletesEveryQueryItAccepted) {
  TempDir dir;
  Node cloud(dir, "cloud", "pice-cloud", ArithCloudYaml());
  Node edge(dir, "edge-1", "pice-edge",
            ArithEdgeYaml("edge-1"));
  std::string why;
  ASSERT_TRUE(cloud.Ready(&why)) << why;
  ASSERT_TRUE(edge.Ready(&why)) << why;
  const std::string yaml = "listen: 127.0.0.1:0\ncloud: " + cloud.address() + "\nedges: [" +
                           edge.address() + "]\ntimeouts: {load_poll: 100ms, drain: 20s}\n";
  Node a(dir, "sched-a", "pice-scheduler", yaml);
  Node b(dir, "sched-b", "pice-scheduler", yaml);
  ASSERT_TRUE(a.Ready(&why)) << why;
  ASSERT_TRUE(b.Ready(&why)) << why;

  std::atomic<bool> stop{false};
  std::mutex mu;
  int accepted_ok = 0, accepted_lost = 0, refused = 0, b_ok = 0, b_failed = 0;
  std::string lost_error;
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      Node* target = t % 2 == 0 ? &a : &b;
      auto stub = PiceStub(target);
      for (int i = 0; !stop; ++i) {
        v1::QueryRequest req;
        req.set_prompt(i % 2 ? "add 12 and 30; multiply 7 by 8" : "subtract 9 from 62");
        req.set_route(i % 3 == 0 ? v1::ROUTE_CLOUD : v1::ROUTE_SKETCH);
        req.set_no_cache(true);
        std::vector<v1::QueryEvent> ev;
        grpc::Status s = RunQuery(stub.get(), req, &ev, 30);
        std::lock_guard<std::mutex> lock(mu);
        if (target == &b) {
          (s.ok() && FinalAnswer(ev).finish_reason() == v1::STOP ? b_ok : b_failed)++;
        } else if (!ev.empty()) {  // A accepted it: it must complete
          if (s.ok() && !FinalAnswer(ev).text().empty()) {
            ++accepted_ok;
          } else {
            ++accepted_lost;
            lost_error = s.error_message();
          }
        } else {
          // Refused: UNAVAILABLE while it drains or once it is gone; CANCELLED for a call that
          // reaches it in the instant its server stops (gRPC cancels calls not yet handled).
          EXPECT_TRUE(s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                      s.error_code() == grpc::StatusCode::CANCELLED)
              << s.error_code() << " " << s.error_message();
          ++refused;
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  const int status = a.process().Kill(std::chrono::milliseconds(25000));  // SIGTERM: drain
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop = true;
  for (auto& c : clients) c.join();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the drained replica exits 0";
  EXPECT_EQ(accepted_lost, 0) << lost_error;
  EXPECT_GT(accepted_ok, 0);
  EXPECT_GT(refused, 0) << "after the drain began, the replica refused new queries";
  EXPECT_EQ(b_failed, 0);
  EXPECT_GT(b_ok, 0);
}

// Cloud replicas (issue 14: `cloud:` as a list): calls spread over both, and after one is
// SIGKILLed every query is still answered by the other — a call that failed on the dead
// replica before the client saw anything is retried there, not answered degraded.
TEST(CloudReplicasTest, WorkSpreadsAndAKilledReplicaLosesNoQuery) {
  TempDir dir;
  const std::string base = ArithCloudYaml();
  const std::string rest = base.substr(base.find('\n'));  // after "node: cloud"
  auto ca = std::make_unique<Node>(dir, "cloud-a", "pice-cloud", "node: cloud-a" + rest);
  Node cb(dir, "cloud-b", "pice-cloud", "node: cloud-b" + rest);
  Node edge(dir, "edge-1", "pice-edge", ArithEdgeYaml("edge-1"));
  std::string why;
  ASSERT_TRUE(ca->Ready(&why)) << why;
  ASSERT_TRUE(cb.Ready(&why)) << why;
  ASSERT_TRUE(edge.Ready(&why)) << why;
  Node sched(dir, "scheduler", "pice-scheduler",
             "listen: 127.0.0.1:0\ncloud: [" + ca->address() + ", " + cb.address() +
                 "]\nedges: [" + edge.address() + "]\ntimeouts: {load_poll: 100ms}\n"
                 "health: {eject_after: 1, eject_base: 5s, eject_max: 5s}\n",
             std::vector<std::string>{"--log-level", "info"});
  ASSERT_TRUE(sched.Ready(&why)) << why;

  // Which cloud replicas an answer used (the cloud's node name in its token counts).
  auto clouds_of = [](const v1::AnswerEvent& a) {
    std::set<std::string> out;
    for (const v1::NodeTokens& t : a.tokens()) {
      if (t.node().rfind("cloud-", 0) == 0) out.insert(t.node());
    }
    return out;
  };
  std::mutex mu;
  std::map<std::string, int> used;
  int failed = 0;
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      auto stub = PiceStub(&sched);
      for (int i = 0; i < 4; ++i) {
        v1::QueryRequest req;
        req.set_prompt("add 12 and 30; multiply 7 by 8");
        req.set_route((t + i) % 2 ? v1::ROUTE_CLOUD : v1::ROUTE_SKETCH);
        req.set_no_cache(true);
        std::vector<v1::QueryEvent> ev;
        grpc::Status s = RunQuery(stub.get(), req, &ev, 30);
        std::lock_guard<std::mutex> lock(mu);
        if (!s.ok() || ev.empty() || FinalAnswer(ev).degraded()) {
          ++failed;
          continue;
        }
        for (const std::string& c : clouds_of(FinalAnswer(ev))) ++used[c];
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(failed, 0);
  EXPECT_GT(used["cloud-a"], 0) << "four clients at once: both replicas take calls";
  EXPECT_GT(used["cloud-b"], 0);

  ca->process().Kill(std::chrono::milliseconds(0));
  ca.reset();
  auto stub = PiceStub(&sched);
  for (int i = 0; i < 8; ++i) {
    v1::QueryRequest req;
    req.set_prompt("subtract 9 from 62");
    req.set_route(i % 2 ? v1::ROUTE_CLOUD : v1::ROUTE_SKETCH);
    req.set_no_cache(true);
    std::vector<v1::QueryEvent> ev;
    grpc::Status s = RunQuery(stub.get(), req, &ev, 30);
    ASSERT_TRUE(s.ok()) << i << ": " << s.error_message() << "\n" << sched.process().Stderr();
    const v1::AnswerEvent& a = FinalAnswer(ev);
    EXPECT_FALSE(a.degraded()) << i << ": the other replica answers, not the edges alone";
    EXPECT_FALSE(a.text().empty());
    EXPECT_EQ(clouds_of(a), std::set<std::string>{"cloud-b"}) << i;
  }
}

}  // namespace
}  // namespace pice::testing
