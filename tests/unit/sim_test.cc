// The simulator's model (bench/sim/sim.h) against figures worked out by hand: an engine's
// steps, batching, CPU sharing, links, edge churn and the policy's routes.
#include "bench/sim/sim.h"

#include <gtest/gtest.h>

namespace pice::bench::sim {
namespace {

// Engines whose speed is easy to add up: 10 tokens/s at batch 1, 40 at batch 4 (a step
// of 4 costs 0.1 s, as one of 1), prefill 100 tokens/s.
Topology Simple() {
  Topology t;
  t.cloud.decode = {{1, 10.0}, {4, 40.0}};
  t.cloud.prefill_tokens_per_s = 100;
  t.cloud.max_batch = 4;
  t.edge = t.cloud;
  t.edges = 1;
  t.sched.cpu_s_cloud_query = 0;
  t.sched.cpu_s_sketch_query = 0;
  t.sched.cpu_s_per_edge_scan = 0;
  t.sched.cpu_s_per_probe = 0;
  auto p = scheduler::ParsePolicyText("name: t\ndefault: auto\n", "test");
  EXPECT_TRUE(p.ok()) << p.status();
  t.policy = *p;
  return t;
}

Workload Small() {
  Workload w;
  w.prompt_tokens = 10;         // 0.1 s of prefill, which also yields the first token
  w.expand_prompt_tokens = 10;
  w.sketch_tokens = 4;
  w.points = 2;
  w.expand_tokens = 5;
  w.full_tokens = 20;
  return w;
}

RunSpec One(const std::string& route, int queries = 1, double rate = 1000) {
  RunSpec r;
  r.route = route;
  r.rate = rate;
  r.queries = queries;
  return r;
}

TEST(SimProfile, InterpolatesTokensPerSecondAndStepTime) {
  EngineProfile p;
  p.decode = {{1, 10.0}, {4, 40.0}, {16, 80.0}};
  EXPECT_DOUBLE_EQ(p.TokensPerSecond(2), 20.0);
  EXPECT_DOUBLE_EQ(p.StepSeconds(4), 0.1);
  EXPECT_DOUBLE_EQ(p.TokensPerSecond(10), 60.0);
  EXPECT_DOUBLE_EQ(p.StepSeconds(32), 0.4);  // past the last batch: flat tokens/s
  EXPECT_DOUBLE_EQ(p.StepSeconds(0), 0.0);
}

TEST(SimProfile, StepTimeGrowsWithTheContext) {
  EngineProfile p;
  p.decode = {{1, 10.0}};        // 0.1 s a step at a mean context of 200
  p.context = 200;
  p.decode_short = {{1, 20.0}};  // 0.05 s at 100
  p.context_short = 100;
  EXPECT_DOUBLE_EQ(p.StepSeconds(1, 100), 0.05);
  EXPECT_DOUBLE_EQ(p.StepSeconds(1, 150), 0.075);
  EXPECT_DOUBLE_EQ(p.StepSeconds(1, 300), 0.15);  // extrapolated: attention is linear
  EXPECT_DOUBLE_EQ(p.StepSeconds(1, 10), 0.05);   // never below the short measurement
  EXPECT_DOUBLE_EQ(p.StepSeconds(1), 0.1);
}

TEST(SimRoutes, CloudAnswerIsPrefillThenOneStepPerToken) {
  const Topology t = Simple();
  const Workload w = Small();
  const RunResult r = Simulate(t, w, One("cloud"));
  ASSERT_EQ(r.queries.size(), 1u);
  const QueryResult& q = r.queries[0];
  ASSERT_TRUE(q.ok);
  // Prefill (0.1 s, first token) + 19 steps of 0.1 s.
  EXPECT_NEAR(q.latency_s, 0.1 + 19 * 0.1, 1e-9);
  EXPECT_NEAR(q.first_s, 0.1, 1e-9);
  EXPECT_EQ(q.cloud_tokens, 20);
  EXPECT_FALSE(q.sketch);
}

TEST(SimRoutes, SketchPointsExpandWhenTheyAreWritten) {
  const Topology t = Simple();
  const Workload w = Small();
  const RunResult r = Simulate(t, w, One("sketch"));
  const QueryResult& q = r.queries[0];
  ASSERT_TRUE(q.ok);
  // Sketch: 4 tokens = prefill step (t = 0.1) + 3 steps; point 1 is written at token 2
  // (t = 0.2), point 2 at token 4 (t = 0.4). The edge: point 1's prefill 0.2-0.3, a step
  // to 0.4 and, as point 2 arrives just as that step ends, one more alone (0.4-0.5).
  // Point 2's prompt starts with the question point 1's computed (the prefix cache): it
  // prefills 1 token, not 10, beside point 1's 4th token (0.5-0.61); point 1's 5th at
  // 0.71 (the first content), point 2's 2nd..5th at 0.71..1.01.
  EXPECT_NEAR(q.latency_s, 1.01, 1e-9);
  EXPECT_NEAR(q.first_s, 0.71, 1e-9);
  EXPECT_EQ(q.cloud_tokens, 4);
  EXPECT_EQ(q.useful_tokens, 10);
  EXPECT_TRUE(q.sketch);
}

TEST(SimEngine, BatchedQueriesShareSteps) {
  const Topology t = Simple();
  const Workload w = Small();
  // Two queries a microsecond apart: the second's prefill joins the first's second step
  // (0.1 decode + 0.1 prefill), then both decode in one batch whose steps cost what one
  // sequence's does: the first ends at 0.1 + 0.2 + 18 x 0.1, the second 0.1 later.
  RunSpec run = One("cloud", 2);
  run.rate = 1e6;
  const RunResult r = Simulate(t, w, run);
  ASSERT_TRUE(r.queries[0].ok && r.queries[1].ok);
  EXPECT_NEAR(r.queries[0].latency_s, 2.1, 1e-3);
  EXPECT_NEAR(r.queries[1].latency_s, 2.2, 1e-3);
}

TEST(SimEngine, EnginesOnOneCpuShareIt) {
  Topology t = Simple();
  Workload w = Small();
  w.points = 2;
  w.sketch_tokens = 2;  // both points written by token 2
  t.edges = 2;
  const double alone = Simulate(t, w, One("sketch")).queries[0].latency_s;
  t.edges_per_cpu = 2;  // the two edges (one point each) now share one CPU
  const double shared = Simulate(t, w, One("sketch")).queries[0].latency_s;
  EXPECT_GT(shared, alone + 0.3);
}

TEST(SimLinks, EachHopAddsHalfTheRoundTrip) {
  Topology t = Simple();
  const Workload w = Small();
  const double base = Simulate(t, w, One("cloud")).queries[0].latency_s;
  t.cloud_link.rtt_s = 0.05;
  EXPECT_NEAR(Simulate(t, w, One("cloud")).queries[0].latency_s, base + 0.05, 1e-9);
  t.edge_link.rtt_s = 0.2;
  const double sketch = Simulate(t, w, One("sketch")).queries[0].latency_s;
  t.edge_link.rtt_s = 0;
  EXPECT_NEAR(sketch - Simulate(t, w, One("sketch")).queries[0].latency_s, 0.2, 0.05);
}

TEST(SimChurn, FailedEdgesAreRetriedAndNothingIsLost) {
  Topology t = Simple();
  t.edges = 4;
  t.edge.max_batch = 64;
  t.mttf_s = 2;   // every edge fails every ~2 s and is back after ~0.5 s
  t.mttr_s = 0.5;
  Workload w = Small();
  w.expand_tokens = 20;
  RunSpec run = One("sketch", 300, 20);
  const RunResult r = Simulate(t, w, run);
  int retried = 0;
  for (const QueryResult& q : r.queries) {
    EXPECT_TRUE(q.ok);
    retried += q.retries > 0;
  }
  EXPECT_GT(retried, 0);
}

TEST(SimChurn, NoHealthyEdgeMeansTheCloudExpands) {
  Topology t = Simple();
  t.mttf_s = 1e-6;  // the only edge is down almost always
  t.mttr_s = 1e6;
  const Workload w = Small();
  RunSpec run = One("sketch", 5, 1);
  const RunResult r = Simulate(t, w, run);
  for (const QueryResult& q : r.queries) {
    EXPECT_TRUE(q.ok);
    EXPECT_EQ(q.cloud_tokens, 4 + 2 * 5);  // the sketch and both points
  }
}

TEST(SimPolicy, AutoIsDecidedByThePolicy) {
  Topology t = Simple();
  const Workload w = Small();
  for (const char* route : {"cloud", "sketch"}) {
    auto p = scheduler::ParsePolicyText(std::string("name: t\ndefault: ") + route + "\n", "test");
    ASSERT_TRUE(p.ok());
    t.policy = *p;
    const RunResult r = Simulate(t, w, One("auto", 3, 1));
    for (const QueryResult& q : r.queries) EXPECT_EQ(q.sketch, std::string(route) == "sketch");
  }
}

TEST(SimScheduler, ProbesThatFillTheCpuStopTheScheduler) {
  Topology t = Simple();
  t.edges = 100;
  t.sched.cpu_s_per_probe = 0.01;  // 100 edges x 10 ms every 0.2 s = 5 cores of probing
  RunSpec run = One("sketch", 3, 1);
  run.timeout_s = 5;
  const RunResult r = Simulate(t, Small(), run);
  for (const QueryResult& q : r.queries) EXPECT_FALSE(q.ok);
  EXPECT_DOUBLE_EQ(r.scheduler_utilization, 1.0);
}

TEST(SimScheduler, ShardedEdgesSplitTheProbes) {
  Topology t = Simple();
  t.edges = 100;
  t.sched.replicas = 2;
  t.sched.cpu_s_per_probe = 0.0024;  // 100 edges every 0.2 s: 1.2 cores each, 0.6 sharded
  RunSpec run = One("sketch", 4, 1);
  run.timeout_s = 30;
  for (const QueryResult& q : Simulate(t, Small(), run).queries) EXPECT_FALSE(q.ok);
  t.sched.shard_edges = true;
  const RunResult r = Simulate(t, Small(), run);
  for (const QueryResult& q : r.queries) EXPECT_TRUE(q.ok);
  EXPECT_NEAR(r.scheduler_utilization, 0.6, 0.05);
}

TEST(SimAdmission, FullEdgesSendThePointToTheCloud) {
  Topology t = Simple();
  t.edge_slots = 1;  // one Expand call at a time, none waiting
  t.edge_queue = 0;
  Workload w = Small();
  w.sketch_tokens = 2;  // both points written at once
  const RunResult r = Simulate(t, w, One("sketch"));
  ASSERT_TRUE(r.queries[0].ok);
  EXPECT_EQ(r.queries[0].cloud_tokens, 2 + 5);  // the sketch and the point no edge had room for
  t.edge_queue = 1;                              // now it waits for the edge instead
  EXPECT_EQ(Simulate(t, w, One("sketch")).queries[0].cloud_tokens, 2);
}

}  // namespace
}  // namespace pice::bench::sim
