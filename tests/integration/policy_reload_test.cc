// For policy authors (issue 13): a pice-scheduler process re-reads its policy_file when it
// changes and on SIGHUP, without dropping queries that run meanwhile; a bad file is refused
// with its error in the log and the running policy kept. `pice policy check` and
// `pice policy explain` say the same things offline.
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/integration/harness.h"

namespace pice::testing {
namespace {

std::string Policy(const std::string& route) {
  return "name: test\ndefault: " + route + "\nrules:\n  - {name: hint-cloud, match: {hint: cloud}, route: cloud}\n";
}

TEST(PolicyReloadTest, ChangedFileAndSighupReloadWithoutDroppingQueries) {
  TempDir dir;
  Node cloud(dir, "cloud", "pice-cloud", ArithCloudYaml());
  Node edge(dir, "edge-1", "pice-edge",
            ArithEdgeYaml("edge-1"));
  std::string why;
  ASSERT_TRUE(cloud.Ready(&why)) << why;
  ASSERT_TRUE(edge.Ready(&why)) << why;
  const std::string policy = dir.File("policy.yaml");
  WriteFile(policy, Policy("sketch"));
  Node sched(dir, "scheduler", "pice-scheduler",
             "listen: 127.0.0.1:0\ncloud: " + cloud.address() + "\nedges: [" + edge.address() +
                 "]\ntimeouts: {load_poll: 100ms}\npolicy_file: " + policy + "\n");
  ASSERT_TRUE(sched.Ready(&why)) << why;
  auto route = [&] {
    std::vector<v1::QueryEvent> ev;
    v1::QueryRequest req;
    req.set_prompt("add 3 and 4; multiply 6 by 7");
    req.set_no_cache(true);
    auto stub = PiceStub(&sched);
    EXPECT_TRUE(RunQuery(stub.get(), req, &ev).ok());
    return FinalAnswer(ev).route();
  };
  ASSERT_EQ(route(), v1::ROUTE_SKETCH);

  // Queries keep running on another thread through every reload below.
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::thread load([&] {
    auto stub = PiceStub(&sched);
    while (!stop) {
      v1::QueryRequest req;
      req.set_prompt("add 1 and 2");
      req.set_no_cache(true);
      std::vector<v1::QueryEvent> ev;
      (RunQuery(stub.get(), req, &ev).ok() ? ok : failed)++;
    }
  });
  auto until_route = [&](v1::Route want) {
    for (int i = 0; i < 60; ++i) {
      if (route() == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  };
  // A changed file is picked up (the scheduler looks at most once a second).
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // a new modification time
  WriteFile(policy, Policy("cloud"));
  EXPECT_TRUE(until_route(v1::ROUTE_CLOUD)) << "the changed policy file was not reloaded";
  // A bad file: refused, logged, the running policy kept.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  // (As long as the good one that follows: the watcher compares modification time and size.)
  std::string bad = "default: sometimes\n";
  bad += "#" + std::string(Policy("sketch").size() - bad.size() - 2, '-') + "\n";
  WriteFile(policy, bad);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  EXPECT_EQ(route(), v1::ROUTE_CLOUD);
  EXPECT_NE(sched.process().Stderr().find("policy not reloaded"), std::string::npos);
  // SIGHUP reloads it: the new file gets the bad one's modification time back, so only the
  // signal can bring it in.
  const auto mtime = std::filesystem::last_write_time(policy);
  WriteFile(policy, Policy("sketch"));
  std::filesystem::last_write_time(policy, mtime);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(route(), v1::ROUTE_CLOUD) << "the same modification time: no reload yet";
  kill(sched.process().pid(), SIGHUP);
  EXPECT_TRUE(until_route(v1::ROUTE_SKETCH)) << "SIGHUP did not reload the policy";
  EXPECT_NE(sched.process().Stderr().find("received SIGHUP"), std::string::npos);
  stop = true;
  load.join();
  EXPECT_EQ(failed.load(), 0) << "a query failed during a reload";
  EXPECT_GT(ok.load(), 5);
  EXPECT_TRUE(sched.process().Running()) << "SIGHUP is not a shutdown";

  // The same checks offline.
  std::string out;
  EXPECT_EQ(RunCommand(BinDir() + "/pice policy check " + policy, &out), 0) << out;
  EXPECT_NE(out.find("policy 'test' OK"), std::string::npos) << out;
  WriteFile(dir.File("bad.yaml"), "rules:\n  - {name: r, match: {regex: \"(x\"}, route: cloud}\n");
  EXPECT_EQ(RunCommand(BinDir() + "/pice policy check " + dir.File("bad.yaml"), &out), 2);
  EXPECT_NE(out.find("rules[0].match.regex"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(BinDir() + "/pice policy explain general --prompt 'what is the integral "
                       "of x' --json --load '{\"healthy_edges\": 2}'", &out),
            0) << out;
  EXPECT_NE(out.find("\"route\":\"cloud\""), std::string::npos) << out;
  EXPECT_NE(out.find("estimated_sketch_ms"), std::string::npos) << out;
}

}  // namespace
}  // namespace pice::testing
