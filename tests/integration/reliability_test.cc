// Reliability with the real binaries as processes on loopback: failover while edges are
// SIGKILLed (pice bench chaos), load beyond the slots (served or RESOURCE_EXHAUSTED with
// a retry hint), SIGTERM drains (no accepted query lost, exit 0), degraded answers when
// the cloud is gone (and the cloud probed back in), and cancellation freeing the nodes'
// batch slots and KV (seen through Edge.Load and Cloud.Load).
//
// Latency figures are printed, never asserted.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "nlohmann/json.hpp"
#include "tests/integration/harness.h"

namespace pice::testing {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::string CloudYaml(const std::string& model = "") {
  return "node: cloud\nlisten: 127.0.0.1:0\nmodel: " +
         (model.empty() ? ModelsDir() + "/arith-cloud-f16.gguf" : model) +
         "\ntemplate: " + TemplatesDir() + "/pice-arith.yaml\nthreads: 1\nlog_level: warn\n"
         "drain_seconds: 10\n";
}

std::string EdgeYaml(const std::string& name, const std::string& extra = "") {
  std::string y = "node: " + name + "\nlisten: 127.0.0.1:0\ntemplate: " + TemplatesDir() +
                  "/pice-arith.yaml\nthreads: 1\nlog_level: warn\ndrain_seconds: 10\n" + extra +
                  "ensemble:\n";
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
  return y + "answer: {point_format: \"{expansion}.\", separator: \" \"}\n" + extra;
}

std::unique_ptr<v1::Pice::Stub> PiceStub(const std::string& address) {
  return v1::Pice::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

struct Outcome {
  grpc::Status status;
  std::vector<v1::QueryEvent> events;
  std::string retry_after;  // trailing metadata retry-after-ms
  double ms = 0;
};

Outcome Ask(v1::Pice::Stub* stub, const std::string& prompt, const std::string& api_key = "",
            v1::Route route = v1::ROUTE_AUTO, int timeout_s = 60,
            const std::vector<v1::ChatTurn>& history = {}) {
  Outcome o;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_s));
  if (!api_key.empty()) ctx.AddMetadata("x-api-key", api_key);
  v1::QueryRequest req;
  req.set_prompt(prompt);
  req.set_route(route);
  for (const v1::ChatTurn& t : history) *req.add_history() = t;
  const auto t0 = Clock::now();
  auto reader = stub->Query(&ctx, req);
  v1::QueryEvent ev;
  while (reader->Read(&ev)) o.events.push_back(ev);
  o.status = reader->Finish();
  o.ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  const auto& md = ctx.GetServerTrailingMetadata();
  if (auto it = md.find("retry-after-ms"); it != md.end()) {
    o.retry_after.assign(it->second.data(), it->second.size());
  }
  return o;
}

// A full answer: the sketch route has one expansion per point, each "<point>=...", in
// order; the cloud route a non-empty text.
bool CompleteAnswer(const std::vector<v1::QueryEvent>& ev, std::string* why) {
  if (ev.empty() || !ev.back().has_answer()) {
    *why = "no answer";
    return false;
  }
  const v1::AnswerEvent& a = ev.back().answer();
  if (a.route() == v1::ROUTE_CLOUD || a.degraded()) return !a.text().empty();
  std::vector<int> seen(a.points_size(), 0);
  int points = 0;
  for (const auto& e : ev) {
    points += e.has_sketch_point();
    if (e.has_expansion() && e.expansion().index() < a.points_size()) ++seen[e.expansion().index()];
  }
  if (points == 0 || points != a.points_size() || a.expansions_size() != points) {
    *why = "points/expansions mismatch";
    return false;
  }
  for (int i = 0; i < points; ++i) {
    if (seen[i] != 1 || a.expansions(i).rfind(a.points(i) + "=", 0) != 0) {
      *why = "point " + std::to_string(i) + " missing, doubled or out of order: " + a.text();
      return false;
    }
  }
  return true;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size() - 1) + 0.5))];
}

const char* kQuestions[] = {
    "add twelve and seven; multiply 23 by 4; subtract nine from 40",
    "add 26 and 19; subtract 9 from 62",
    "add 1 and 7; add 9 and 9; add 52 and 29; add 3 and 72; subtract 4 from 8",
    "add 3 and 4, then multiply that by 6",
    "subtract 43 from 96; add 75 and 98; subtract 36 from sixty-six",
};

// ---- chaos --------------------------------------------------------------------------

TEST(ChaosTest, EdgesKilledAndRestartedLoseNoQuery) {
  std::string out;
  // --models: the build directory may be anywhere (scripts/sanitize.sh's is not beside
  // the sources).
  const int rc = RunCommand(BinDir() + "/pice bench chaos --queries 120 --edges 3 "
                                       "--kill-interval-ms 200 --concurrency 4 --json --models " +
                                ModelsDir(),
                            &out);
  std::printf("%s", out.c_str());
  ASSERT_EQ(rc, 0) << out;
  const std::string last = out.substr(out.rfind('{'));
  auto j = nlohmann::json::parse(last, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j["sent"], 120);
  EXPECT_EQ(j["completed"], 120);
  EXPECT_EQ(j["lost"], 0);
  EXPECT_GT(j["kills"].get<int>(), 0);
  EXPECT_TRUE(j["scheduler_exit_clean"].get<bool>());
  for (const char* k : {"failed_over", "rejected"}) EXPECT_TRUE(j.contains(k)) << k;
}

// ---- load ---------------------------------------------------------------------------

// More concurrent clients than the scheduler admits and than the edges have slots: every
// query is either answered in full or refused with RESOURCE_EXHAUSTED and a retry hint;
// nothing crashes and the scheduler's memory stays bounded.
TEST(LoadTest, MoreClientsThanSlotsAreServedOrRefusedWithAHint) {
  TempDir dir;
  Node cloud(dir, "cloud", "pice-cloud", CloudYaml());
  Node e1(dir, "edge-1", "pice-edge", EdgeYaml("edge-1", "max_slots: 1\nmax_queue: 1\n"));
  Node e2(dir, "edge-2", "pice-edge", EdgeYaml("edge-2", "max_slots: 1\nmax_queue: 1\n"));
  std::string why;
  for (Node* n : {&cloud, &e1, &e2}) ASSERT_TRUE(n->Ready(&why)) << why;
  Node sched(dir, "scheduler", "pice-scheduler",
             SchedulerYaml(cloud.address(), {e1.address(), e2.address()},
                           "limits: {max_concurrent_queries: 6, max_queries_per_client: 2}\n"
                           "timeouts: {load_poll: 50ms}\n"));
  ASSERT_TRUE(sched.Ready(&why)) << why;
  const long rss_before = RssKiB(sched.process().pid());

  constexpr int kClients = 12, kEach = 5;
  std::mutex mu;
  std::vector<double> served_ms;
  int served = 0, refused = 0, refused_client = 0, failed_over = 0;
  std::vector<std::string> bad;
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      auto stub = PiceStub(sched.address());
      for (int i = 0; i < kEach; ++i) {
        // Three clients share each key, so the per-client limit bites too.
        Outcome o = Ask(stub.get(), kQuestions[(c + i) % 5], "key-" + std::to_string(c % 4));
        std::string w;
        std::lock_guard<std::mutex> lock(mu);
        if (o.status.ok() && CompleteAnswer(o.events, &w)) {
          ++served;
          served_ms.push_back(o.ms);
          failed_over += o.events.back().answer().failed_over();
        } else if (o.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
                   o.events.empty() && !o.retry_after.empty() &&
                   o.status.error_message().find("retry after") != std::string::npos) {
          ++refused;
          refused_client += o.status.error_message().find("max_queries_per_client") !=
                            std::string::npos;
        } else {
          bad.push_back(std::to_string(o.status.error_code()) + " " + o.status.error_message() +
                        " " + w);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const long rss_after = RssKiB(sched.process().pid());
  std::printf("load: %d clients x %d queries: served %d (p50 %.1f ms, p99 %.1f ms), refused %d "
              "(%d by the per-client limit), points failed over %d; scheduler RSS %ld -> %ld KiB\n",
              kClients, kEach, served, Percentile(served_ms, 0.5), Percentile(served_ms, 0.99),
              refused, refused_client, failed_over, rss_before, rss_after);
  EXPECT_TRUE(bad.empty()) << bad.front();
  EXPECT_EQ(served + refused, kClients * kEach);
  EXPECT_GT(served, 0);
  for (Node* n : {&cloud, &e1, &e2, &sched}) EXPECT_TRUE(n->process().Running());
  // The scheduler holds no model: what it may grow by is its admitted queries' state
  // (limits.max_concurrent_queries = 6, each a prompt of at most max_prompt_bytes, its
  // events and a few downstream calls: 512 KiB is generous) plus gRPC's threads and
  // pools (8 MiB). 60 queries leaking 200 KiB each would break it (seen: ~1.2 MiB).
  // Under AddressSanitizer freed memory sits in its quarantine (up to 256 MiB), so RSS
  // says nothing about what is held: the bound applies to normal builds only.
  constexpr long kMaxConcurrent = 6, kPerQueryKiB = 512, kGrpcKiB = 8 * 1024;
  if (!kAddressSanitizer) {
    EXPECT_LT(rss_after - rss_before, kMaxConcurrent * kPerQueryKiB + kGrpcKiB)
        << "scheduler memory should stay bounded by its limits";
  }
  // Still answers after the storm.
  auto stub = PiceStub(sched.address());
  std::string w;
  Outcome o = Ask(stub.get(), kQuestions[0]);
  EXPECT_TRUE(o.status.ok() && CompleteAnswer(o.events, &w)) << o.status.error_message() << w;
}

// ---- drain --------------------------------------------------------------------------

// SIGTERM an edge, then the scheduler, while clients keep sending: every query the
// scheduler accepted (it got a route event) completes in full; the others fail before any
// event (UNAVAILABLE while draining or once the port is closed; CANCELLED when gRPC's
// final shutdown cuts a call off before the service saw it); both processes exit 0.
TEST(DrainTest, SigtermDuringLoadLosesNoAcceptedQuery) {
  TempDir dir;
  Node cloud(dir, "cloud", "pice-cloud", CloudYaml());
  Node e1(dir, "edge-1", "pice-edge", EdgeYaml("edge-1"));
  Node e2(dir, "edge-2", "pice-edge", EdgeYaml("edge-2"));
  std::string why;
  for (Node* n : {&cloud, &e1, &e2}) ASSERT_TRUE(n->Ready(&why)) << why;
  Node sched(dir, "scheduler", "pice-scheduler",
             SchedulerYaml(cloud.address(), {e1.address(), e2.address()},
                           "timeouts: {load_poll: 50ms, drain: 20s}\n"));
  ASSERT_TRUE(sched.Ready(&why)) << why;

  std::atomic<bool> stop{false};
  std::mutex mu;
  int accepted = 0, completed = 0, refused = 0;
  std::vector<std::string> lost;
  std::vector<std::thread> threads;
  for (int c = 0; c < 4; ++c) {
    threads.emplace_back([&, c] {
      auto stub = PiceStub(sched.address());
      for (int i = 0; !stop && i < 400; ++i) {
        Outcome o = Ask(stub.get(), kQuestions[(c + i) % 5], "", v1::ROUTE_AUTO, 30);
        std::string w;
        std::lock_guard<std::mutex> lock(mu);
        if (o.events.empty()) {
          // Not accepted: refused while draining (UNAVAILABLE), cut off by the stopping
          // server before the service saw it (CANCELLED), or nobody listening any more.
          if (o.status.error_code() == grpc::StatusCode::UNAVAILABLE ||
              o.status.error_code() == grpc::StatusCode::CANCELLED) {
            ++refused;
            std::this_thread::sleep_for(milliseconds(5));
            continue;
          }
          lost.push_back("no event: " + o.status.error_message());
          continue;
        }
        ++accepted;
        if (o.status.ok() && CompleteAnswer(o.events, &w)) {
          ++completed;
        } else {
          lost.push_back(o.status.error_message() + " " + w);
        }
      }
    });
  }
  std::this_thread::sleep_for(milliseconds(600));
  // An edge drains: NOT_SERVING, its running expansions finish, it exits 0.
  e1.process().Signal(SIGTERM);
  EXPECT_EQ(e1.process().WaitExit(std::chrono::seconds(15)), 0) << e1.process().Stderr();
  std::this_thread::sleep_for(milliseconds(400));
  // The scheduler drains while the clients keep sending.
  const auto t0 = Clock::now();
  sched.process().Signal(SIGTERM);
  const int rc = sched.process().WaitExit(std::chrono::seconds(25));
  const double drain_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  stop = true;
  for (auto& t : threads) t.join();
  std::printf("drain: accepted %d, completed %d, refused %d, lost %zu; scheduler exit %d after "
              "%.0f ms\n",
              accepted, completed, refused, lost.size(), rc, drain_ms);
  EXPECT_EQ(rc, 0) << sched.process().Stderr();
  EXPECT_TRUE(lost.empty()) << lost.front();
  EXPECT_EQ(accepted, completed);
  EXPECT_GT(completed, 0);
}

// ---- degraded -----------------------------------------------------------------------

// The scheduler starts with an edge that is down; the cloud dies: edges answer alone,
// marked degraded in the route and answer events; the cloud comes back on its port and
// is probed back in.
TEST(DegradedTest, EdgesAnswerAloneWhileTheCloudIsDownAndItIsProbedBackIn) {
  TempDir dir;
  const int cloud_port = FreePort();
  ASSERT_GT(cloud_port, 0);
  auto cloud = std::make_unique<Node>(dir, "cloud", "pice-cloud", CloudYaml(),
                                      std::vector<std::string>{"--listen",
                                                               "127.0.0.1:" + std::to_string(cloud_port)});
  Node e1(dir, "edge-1", "pice-edge", EdgeYaml("edge-1"));
  std::string why;
  ASSERT_TRUE(cloud->Ready(&why)) << why;
  ASSERT_TRUE(e1.Ready(&why)) << why;
  const std::string dead_edge = "127.0.0.1:" + std::to_string(FreePort());
  Node sched(dir, "scheduler", "pice-scheduler",
             SchedulerYaml(cloud->address(), {e1.address(), dead_edge},
                           "timeouts: {load_poll: 50ms}\n"
                           "health: {eject_after: 2, eject_base: 200ms, eject_max: 1s}\n"));
  ASSERT_TRUE(sched.Ready(&why)) << why;
  auto stub = PiceStub(sched.address());
  std::string w;
  Outcome ok = Ask(stub.get(), kQuestions[1]);
  ASSERT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_TRUE(CompleteAnswer(ok.events, &w)) << w;
  EXPECT_FALSE(ok.events.back().answer().degraded());

  cloud->process().Kill(milliseconds(0));
  cloud.reset();
  for (int i = 0; i < 2; ++i) {  // the first may find out mid-call, the second at the start
    Outcome d = Ask(stub.get(), kQuestions[1]);
    ASSERT_TRUE(d.status.ok()) << d.status.error_message();
    ASSERT_TRUE(d.events.back().has_answer());
    EXPECT_TRUE(d.events.back().answer().degraded());
    EXPECT_FALSE(d.events.back().answer().text().empty());
    bool route_degraded = false;
    for (const auto& e : d.events) {
      if (e.has_route() && e.route().degraded()) {
        route_degraded = true;
        EXPECT_NE(e.route().reason().find("edges answer alone"), std::string::npos)
            << e.route().reason();
        EXPECT_NE(e.route().reason().find("partial or wrong"), std::string::npos);
      }
    }
    EXPECT_TRUE(route_degraded);
    std::printf("degraded answer: \"%s\"\n", d.events.back().answer().text().c_str());
  }
  // A conversation's earlier turns reach the edge answering alone (its prompt grows by
  // them), as they reach the cloud on the normal routes.
  auto edge_prompt_tokens = [](const Outcome& o) {
    int64_t n = 0;
    for (const v1::NodeTokens& t : o.events.back().answer().tokens()) n += t.prompt_tokens();
    return n;
  };
  Outcome plain = Ask(stub.get(), kQuestions[1]);
  v1::ChatTurn u, a;
  u.set_role("user");
  u.set_content("What is 2+2?");
  a.set_role("assistant");
  a.set_content("2+2=4.");
  Outcome with_history = Ask(stub.get(), kQuestions[1], "", v1::ROUTE_AUTO, 60, {u, a});
  ASSERT_TRUE(plain.status.ok() && with_history.status.ok()) << with_history.status.error_message();
  ASSERT_TRUE(with_history.events.back().answer().degraded());
  EXPECT_GT(edge_prompt_tokens(with_history), edge_prompt_tokens(plain));

  cloud = std::make_unique<Node>(dir, "cloud-2", "pice-cloud", CloudYaml(),
                                 std::vector<std::string>{"--listen", "127.0.0.1:" +
                                                                          std::to_string(cloud_port)});
  ASSERT_TRUE(cloud->Ready(&why)) << why;
  bool back = false;
  for (int i = 0; i < 60 && !back; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
    Outcome o = Ask(stub.get(), kQuestions[1]);
    back = o.status.ok() && !o.events.back().answer().degraded() && CompleteAnswer(o.events, &w);
  }
  EXPECT_TRUE(back) << "the cloud should be probed back in";
}

// ---- cancellation frees slots and KV -------------------------------------------------

v1::LoadResponse EdgeLoad(v1::Edge::Stub* stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + milliseconds(500));
  v1::LoadResponse resp;
  (void)stub->Load(&ctx, v1::LoadRequest(), &resp);
  return resp;
}
v1::LoadResponse CloudLoad(v1::Cloud::Stub* stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + milliseconds(500));
  v1::LoadResponse resp;
  (void)stub->Load(&ctx, v1::LoadRequest(), &resp);
  return resp;
}

// A random `pice gen-model` network never says EOS, so long generations run for seconds.
TEST(CancelTest, CancelledQueryFreesBatchSlotsAndKvOnEveryNode) {
  TempDir dir;
  const std::string slow = dir.File("slow.gguf");
  std::string out;
  ASSERT_EQ(RunCommand(BinDir() + "/pice gen-model --arch llama --n-embd 384 --n-layer 8 "
                                  "--n-head 6 --n-head-kv 6 --n-ff 1024 --n-vocab 1024 "
                                  "--type f32 --n-ctx 2048 --out " + slow,
                       &out),
            0)
      << out;
  Node cloud(dir, "cloud", "pice-cloud", CloudYaml(slow));
  Node edge(dir, "edge", "pice-edge",
            "node: slow-edge\nlisten: 127.0.0.1:0\ntemplate: " + TemplatesDir() +
                "/pice-arith.yaml\nthreads: 1\nlog_level: warn\nensemble:\n"
                "  - {name: s1, model: " + slow + "}\n  - {name: s2, model: " + slow + "}\n");
  std::string why;
  ASSERT_TRUE(cloud.Ready(&why)) << why;
  ASSERT_TRUE(edge.Ready(&why)) << why;
  Node sched(dir, "scheduler", "pice-scheduler",
             SchedulerYaml(cloud.address(), {edge.address()}, "timeouts: {load_poll: 50ms}\n"));
  ASSERT_TRUE(sched.Ready(&why)) << why;
  auto cloud_stub =
      v1::Cloud::NewStub(grpc::CreateChannel(cloud.address(), grpc::InsecureChannelCredentials()));
  auto edge_stub =
      v1::Edge::NewStub(grpc::CreateChannel(edge.address(), grpc::InsecureChannelCredentials()));

  // The cloud: a full-route query cancelled by the client.
  {
    auto stub = PiceStub(sched.address());
    grpc::ClientContext ctx;
    v1::QueryRequest req;
    req.set_prompt("add 3 and 4");
    req.set_route(v1::ROUTE_CLOUD);
    req.mutable_params()->set_max_tokens(1000);
    auto reader = stub->Query(&ctx, req);
    v1::LoadResponse l;
    for (int i = 0; i < 200; ++i) {
      l = CloudLoad(cloud_stub.get());
      if (l.engine_active() > 0 && l.kv_committed_bytes() > 0) break;
      std::this_thread::sleep_for(milliseconds(10));
    }
    ASSERT_GT(l.engine_active(), 0);
    ASSERT_GT(l.kv_committed_bytes(), 0);
    const auto t0 = Clock::now();
    ctx.TryCancel();
    v1::QueryEvent ev;
    while (reader->Read(&ev)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
    for (int i = 0; i < 200; ++i) {
      l = CloudLoad(cloud_stub.get());
      if (l.engine_active() == 0 && l.kv_committed_bytes() == 0) break;
      std::this_thread::sleep_for(milliseconds(10));
    }
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    std::printf("cloud freed its batch slot and KV %.0f ms after the cancel\n", ms);
    EXPECT_EQ(l.engine_active(), 0);
    EXPECT_EQ(l.kv_committed_bytes(), 0);
    EXPECT_LT(ms, 2000);
  }
  // The edge: an Expand whose deadline passes frees both members' sequences.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + milliseconds(400));
    v1::ExpandRequest req;
    req.set_question("q");
    req.add_sketch("3+4");
    req.set_index(0);
    req.mutable_params()->set_max_tokens(1000);
    v1::ExpandResponse resp;
    std::atomic<bool> busy{false};
    std::thread watcher([&] {
      for (int i = 0; i < 40 && !busy; ++i) {
        const v1::LoadResponse l = EdgeLoad(edge_stub.get());
        busy = l.engine_active() >= 1 && l.kv_committed_bytes() > 0 && l.active() == 1;
        std::this_thread::sleep_for(milliseconds(10));
      }
    });
    const grpc::Status s = edge_stub->Expand(&ctx, req, &resp);
    watcher.join();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    EXPECT_TRUE(busy.load()) << "the edge should have been running the expansion";
    const auto t0 = Clock::now();
    v1::LoadResponse l;
    for (int i = 0; i < 200; ++i) {
      l = EdgeLoad(edge_stub.get());
      if (l.active() == 0 && l.engine_active() == 0 && l.kv_committed_bytes() == 0) break;
      std::this_thread::sleep_for(milliseconds(10));
    }
    std::printf("edge freed its slot and KV %.0f ms after the deadline\n",
                std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    EXPECT_EQ(l.active(), 0);
    EXPECT_EQ(l.free_slots(), l.max_slots());
    EXPECT_EQ(l.engine_active(), 0);
    EXPECT_EQ(l.kv_committed_bytes(), 0);
  }
}

}  // namespace
}  // namespace pice::testing
