// The scheduler's node health and admission against scripted nodes in this process:
// ejection after repeated failures, back-off, probing back in, probes that never touch the
// load counters, busy nodes skipped for their hint, draining nodes (NOT_SERVING) skipped
// without ejection, nodes down at start, the per-client query limit with its retry hint,
// and degraded answers when the cloud fails.
#include <atomic>
#include <chrono>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/server.h"
#include "grpcpp/grpcpp.h"
#include "pice/v1/pice.grpc.pb.h"
#include "scheduler/health_check.h"
#include "scheduler/registry.h"
#include "scheduler/service.h"

namespace pice::scheduler {
namespace {

using std::chrono::milliseconds;

class Edge final : public v1::Edge::Service {
 public:
  explicit Edge(std::string name) : name_(std::move(name)) {}
  grpc::Status Expand(grpc::ServerContext*, const v1::ExpandRequest* req,
                      v1::ExpandResponse* resp) override {
    resp->set_node(name_);
    resp->set_agreement(agreement);
    resp->set_text(req->whole_question() ? "whole(" + req->question() + ")"
                                         : name_ + "(" + req->sketch(req->index()) + ")");
    return grpc::Status::OK;
  }
  grpc::Status Load(grpc::ServerContext*, const v1::LoadRequest*, v1::LoadResponse* r) override {
    r->set_node(name_);
    r->set_max_slots(2);
    r->set_free_slots(2);
    return grpc::Status::OK;
  }
  double agreement = 1.0;

 private:
  std::string name_;
};

// A cloud whose calls can fail (UNAVAILABLE) or block until released.
class Cloud final : public v1::Cloud::Service {
 public:
  std::atomic<bool> fail{false};
  std::atomic<bool> hold{false};
  std::atomic<int> sketch_max_tokens{-1}, generate_max_tokens{-1};  // as last received
  grpc::Status Sketch(grpc::ServerContext*, const v1::SketchRequest* req,
                      grpc::ServerWriter<v1::SketchEvent>* w) override {
    sketch_max_tokens = req->params().max_tokens();
    if (fail) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "scripted outage");
    v1::SketchEvent ev;
    ev.mutable_point()->set_text("p0");
    w->Write(ev);
    v1::SketchEvent done;
    done.mutable_done()->set_split(true);
    w->Write(done);
    return grpc::Status::OK;
  }
  grpc::Status Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                        grpc::ServerWriter<v1::GenerateEvent>* w) override {
    generate_max_tokens = req->params().max_tokens();
    while (hold && !ctx->IsCancelled()) std::this_thread::sleep_for(milliseconds(2));
    if (fail) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "scripted outage");
    v1::GenerateEvent ev;
    ev.mutable_delta()->set_text("full");
    w->Write(ev);
    return grpc::Status::OK;
  }
  grpc::Status Expand(grpc::ServerContext*, const v1::ExpandRequest*, v1::ExpandResponse*) override {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "scripted outage");
  }
};

std::unique_ptr<GrpcServer> Serve(grpc::Service* svc, const char* name) {
  ServerOptions o;
  o.listen = "127.0.0.1:0";
  auto s = GrpcServer::Start(o, {{name, svc}});
  EXPECT_TRUE(s.ok()) << s.status();
  return *std::move(s);
}

SchedulerOptions Options(const std::string& cloud, const std::vector<std::string>& edges) {
  SchedulerOptions o;
  o.clouds.push_back({"", cloud});
  for (size_t i = 0; i < edges.size(); ++i) o.edges.push_back({"e" + std::to_string(i), edges[i]});
  o.load_poll_s = 60;  // probes only when the test calls PollOnce
  o.eject_after_failures = 2;
  o.eject_base_s = 0.15;
  o.eject_max_s = 1;
  return o;
}

TEST(HealthCheckTest, WireForms) {
  EXPECT_EQ(EncodeHealthRequest(""), "");
  EXPECT_EQ(EncodeHealthRequest("pice.v1.Edge"), std::string("\x0a\x0cpice.v1.Edge"));
  EXPECT_EQ(DecodeHealthResponse(std::string("\x08\x01", 2)), ServingStatus::kServing);
  EXPECT_EQ(DecodeHealthResponse(std::string("\x08\x02", 2)), ServingStatus::kNotServing);
  EXPECT_EQ(DecodeHealthResponse(""), ServingStatus::kUnknown);
  EXPECT_EQ(DecodeHealthResponse("\xff"), ServingStatus::kUnknown);
  EXPECT_EQ(ClassifyStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "")), CallOutcome::kFailed);
  EXPECT_EQ(ClassifyStatus(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "")),
            CallOutcome::kFailed);
  EXPECT_EQ(ClassifyStatus(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "")),
            CallOutcome::kBusy);
  EXPECT_EQ(ClassifyStatus(grpc::Status(grpc::StatusCode::CANCELLED, "")), CallOutcome::kNeutral);
}

TEST(RegistryTest, RepeatedFailuresEjectWithBackOffThenAProbeLetsTheNodeBackIn) {
  Edge edge("edge-a");
  Cloud cloud;
  auto es = Serve(&edge, v1::Edge::service_full_name());
  auto cs = Serve(&cloud, v1::Cloud::service_full_name());
  auto r = NodeRegistry::Create(Options(cs->address(), {es->address()}));
  ASSERT_TRUE(r->Edges()[0].healthy);
  ASSERT_TRUE(r->CloudHealthy());

  int i = r->AcquireEdge({});
  ASSERT_EQ(i, 0);
  r->ReleaseEdge(i, CallOutcome::kFailed, absl::ZeroDuration(), "boom");
  EXPECT_FALSE(r->Edges()[0].healthy);  // suspect until a good probe
  EXPECT_FALSE(r->Edges()[0].ejected);
  r->PollOnce();
  EXPECT_TRUE(r->Edges()[0].healthy) << "one failure: back after a good probe";

  // Two calls in flight fail in a row.
  ASSERT_EQ(r->AcquireEdge({}), 0);
  ASSERT_EQ(r->AcquireEdge({}), 0);
  for (int k = 0; k < 2; ++k) r->ReleaseEdge(0, CallOutcome::kFailed, absl::ZeroDuration(), "boom");
  EXPECT_TRUE(r->Edges()[0].ejected);
  EXPECT_EQ(r->Edges()[0].health.ejections, 1u);
  EXPECT_EQ(r->AcquireEdge({}), -1);
  r->PollOnce();  // not probed while ejected
  EXPECT_FALSE(r->Edges()[0].healthy);
  std::this_thread::sleep_for(milliseconds(200));
  r->PollOnce();  // the back-off is over: probed back in
  EXPECT_TRUE(r->Edges()[0].healthy);
  EXPECT_FALSE(r->Edges()[0].ejected);
  // It failed its way out once: the next ejection is twice as long until a call succeeds.
  EXPECT_EQ(r->Edges()[0].health.next_backoff, absl::Milliseconds(300));
  ASSERT_EQ(r->AcquireEdge({}), 0);
  r->ReleaseEdge(0, CallOutcome::kOk);
  EXPECT_EQ(r->Edges()[0].health.next_backoff, absl::Milliseconds(150));
}

// Issue 8.3: an edge whose calls all fail while its health probes pass is still ejected:
// a good probe lets a suspect node take calls again but does not end its failure streak.
TEST(RegistryTest, ANodeThatFailsItsWorkButPassesProbesIsEjected) {
  Edge edge("edge-a");
  Cloud cloud;
  auto es = Serve(&edge, v1::Edge::service_full_name());
  auto cs = Serve(&cloud, v1::Cloud::service_full_name());
  auto r = NodeRegistry::Create(Options(cs->address(), {es->address()}));
  for (int k = 0; k < 2; ++k) {
    ASSERT_EQ(r->AcquireEdge({}), 0) << "call " << k;
    r->ReleaseEdge(0, CallOutcome::kFailed, absl::ZeroDuration(), "expand failed");
    if (k == 0) {
      EXPECT_FALSE(r->Edges()[0].healthy);
      r->PollOnce();  // health SERVING, Load fine
      EXPECT_TRUE(r->Edges()[0].healthy) << "a good probe allows another try";
    }
  }
  EXPECT_TRUE(r->Edges()[0].ejected);
  EXPECT_EQ(r->Edges()[0].health.ejections, 1u);
}

TEST(RegistryTest, ProbesNeverResetTheLoadCounters) {
  Edge edge("edge-a");
  Cloud cloud;
  auto es = Serve(&edge, v1::Edge::service_full_name());
  auto cs = Serve(&cloud, v1::Cloud::service_full_name());
  auto r = NodeRegistry::Create(Options(cs->address(), {es->address()}));
  ASSERT_EQ(r->AcquireEdge({}), 0);
  ASSERT_EQ(r->AcquireEdge({}), 0);
  EXPECT_EQ(r->Edges()[0].outstanding, 2);
  r->ReleaseEdge(0, CallOutcome::kFailed);  // suspect, one call still out
  r->PollOnce();
  r->PollOnce();
  EXPECT_EQ(r->Edges()[0].outstanding, 1);
  EXPECT_EQ(r->Edges()[0].expansions, 1u);
  EXPECT_EQ(r->Edges()[0].failures, 1u);
  r->ReleaseEdge(0, CallOutcome::kOk);
  EXPECT_EQ(r->Edges()[0].outstanding, 0);
}

TEST(RegistryTest, BusyEdgesAreSkippedForTheirRetryHint) {
  Edge a("edge-a"), b("edge-b");
  Cloud cloud;
  auto as = Serve(&a, v1::Edge::service_full_name());
  auto bs = Serve(&b, v1::Edge::service_full_name());
  auto cs = Serve(&cloud, v1::Cloud::service_full_name());
  auto r = NodeRegistry::Create(Options(cs->address(), {as->address(), bs->address()}));
  const int first = r->AcquireEdge({});
  ASSERT_GE(first, 0);
  r->ReleaseEdge(first, CallOutcome::kBusy, absl::Milliseconds(150));
  EXPECT_TRUE(r->Edges()[first].busy);
  EXPECT_TRUE(r->Edges()[first].healthy) << "busy is not a failure";
  for (int k = 0; k < 4; ++k) {
    const int i = r->AcquireEdge({});
    EXPECT_EQ(i, 1 - first);
    r->ReleaseEdge(i, CallOutcome::kOk);
  }
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_FALSE(r->Edges()[first].busy);
}

TEST(RegistryTest, ADrainingEdgeIsSkippedWithoutBeingEjected) {
  Edge edge("edge-a");
  Cloud cloud;
  auto es = Serve(&edge, v1::Edge::service_full_name());
  auto cs = Serve(&cloud, v1::Cloud::service_full_name());
  auto r = NodeRegistry::Create(Options(cs->address(), {es->address()}));
  ASSERT_TRUE(r->Edges()[0].healthy);
  std::atomic<bool> idle{false};
  std::thread drain([&] { es->Shutdown(5, [&] { return idle.load(); }); });
  std::this_thread::sleep_for(milliseconds(50));
  r->PollOnce();  // the server still answers: health NOT_SERVING
  const EdgeSnapshot s = r->Edges()[0];
  EXPECT_FALSE(s.healthy);
  EXPECT_TRUE(s.health.draining);
  EXPECT_TRUE(s.health.reachable);
  EXPECT_FALSE(s.ejected);
  EXPECT_EQ(r->AcquireEdge({}), -1);
  idle = true;
  drain.join();
}

TEST(RegistryTest, NodesDownAtStartAreUnhealthyAndTheRegistryStillStarts) {
  auto r = NodeRegistry::Create(Options("127.0.0.1:1", {"127.0.0.1:2"}));
  EXPECT_FALSE(r->Edges()[0].healthy);
  EXPECT_FALSE(r->CloudHealthy());
  EXPECT_EQ(r->Live().healthy_edges, 0);
  EXPECT_FALSE(r->Live().cloud_available);
}

class AdmissionTest : public ::testing::Test {
 protected:
  void Start(const std::string& yaml_extra) {
    es_ = Serve(&edge_, v1::Edge::service_full_name());
    cs_ = Serve(&cloud_, v1::Cloud::service_full_name());
    auto root = ConfigNode::LoadString("cloud: " + cs_->address() + "\nedges: [" +
                                           es_->address() + "]\n" + yaml_extra,
                                       "test.yaml");
    ASSERT_TRUE(root.ok()) << root.status();
    auto opts = ParseSchedulerOptions(*root);
    ASSERT_TRUE(opts.ok()) << opts.status();
    sched_ = Scheduler::Create(*opts);
    ServerOptions so;
    so.listen = "127.0.0.1:0";
    auto s = GrpcServer::Start(so, {{v1::Pice::service_full_name(), sched_->service()}});
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    stub_ = v1::Pice::NewStub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    cloud_.hold = false;
    if (server_) server_->Shutdown(0);
    sched_.reset();
    for (auto* s : {&es_, &cs_}) {
      if (*s) (*s)->Shutdown(0);
    }
  }
  Edge edge_{"edge-a"};
  Cloud cloud_;
  std::unique_ptr<GrpcServer> es_, cs_, server_;
  std::unique_ptr<Scheduler> sched_;
  std::unique_ptr<v1::Pice::Stub> stub_;
};

TEST_F(AdmissionTest, PerClientLimitRefusesWithARetryHint) {
  Start("limits: {max_queries_per_client: 1}\n");
  cloud_.hold = true;
  grpc::ClientContext held;
  held.AddMetadata("x-api-key", "alice");
  v1::QueryRequest req;
  req.set_prompt("q");
  req.set_route(v1::ROUTE_CLOUD);
  auto reader = stub_->Query(&held, req);
  v1::QueryEvent ev;
  ASSERT_TRUE(reader->Read(&ev));  // the route event: admitted
  for (int i = 0; i < 200 && sched_->service()->in_flight() < 1; ++i) {
    std::this_thread::sleep_for(milliseconds(5));
  }

  grpc::ClientContext again;
  again.AddMetadata("x-api-key", "alice");
  auto r2 = stub_->Query(&again, req);
  while (r2->Read(&ev)) {
  }
  const grpc::Status s2 = r2->Finish();
  EXPECT_EQ(s2.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s2.error_message().find("max_queries_per_client = 1"), std::string::npos)
      << s2.error_message();
  EXPECT_NE(s2.error_message().find("retry after"), std::string::npos);
  EXPECT_EQ(again.GetServerTrailingMetadata().count("retry-after-ms"), 1u);

  // Another key is its own client.
  cloud_.hold = false;
  grpc::ClientContext bob;
  bob.AddMetadata("x-api-key", "bob");
  auto r3 = stub_->Query(&bob, req);
  while (r3->Read(&ev)) {
  }
  EXPECT_TRUE(r3->Finish().ok());
  while (reader->Read(&ev)) {
  }
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(AdmissionTest, CloudOutageMidQueryLetsTheEdgesAnswerAloneMarkedDegraded) {
  Start("timeouts: {load_poll: 60s}\n");
  cloud_.fail = true;
  grpc::ClientContext ctx;
  v1::QueryRequest req;
  req.set_prompt("add 1 and 2");
  req.set_route(v1::ROUTE_SKETCH);
  auto reader = stub_->Query(&ctx, req);
  std::vector<v1::QueryEvent> events;
  v1::QueryEvent ev;
  while (reader->Read(&ev)) events.push_back(ev);
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_TRUE(events.back().has_answer());
  EXPECT_TRUE(events.back().answer().degraded());
  EXPECT_EQ(events.back().answer().text(), "whole(add 1 and 2)");
  bool degraded_route = false;
  for (const auto& e : events) degraded_route |= e.has_route() && e.route().degraded();
  EXPECT_TRUE(degraded_route);
}

// Issue 8.1: a client cancel racing the cloud's failure (degraded mode starting while the
// query ends) must not leak the edge slot it took.
TEST_F(AdmissionTest, CancelsRacingACloudFailureLeakNoEdgeSlot) {
  Start("timeouts: {load_poll: 60s}\nhealth: {eject_after: 1000}\n");
  cloud_.fail = true;
  std::mt19937 rng(7);
  for (int i = 0; i < 300; ++i) {
    grpc::ClientContext ctx;
    v1::QueryRequest req;
    req.set_prompt("add 1 and 2");
    req.set_route(v1::ROUTE_SKETCH);
    auto reader = stub_->Query(&ctx, req);
    const int delay_us = std::uniform_int_distribution<int>(0, 1500)(rng);
    std::thread cancel([&] {
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
      ctx.TryCancel();
    });
    v1::QueryEvent ev;
    while (reader->Read(&ev)) {
    }
    reader->Finish();
    cancel.join();
  }
  // Calls still running end within the edge's own time.
  for (int i = 0; i < 200 && sched_->registry()->Edges()[0].outstanding > 0; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(sched_->registry()->Edges()[0].outstanding, 0);
}

// Issue 8.4: a request without max_tokens leaves the budget to the node's template
// (sketch.max_tokens, full.max_tokens); one with max_tokens passes it on the full route.
TEST_F(AdmissionTest, NoMaxTokensLeavesTheBudgetToTheNodesTemplates) {
  Start("timeouts: {load_poll: 60s}\n");
  for (auto [route, max_tokens] : {std::pair{v1::ROUTE_SKETCH, 0}, std::pair{v1::ROUTE_CLOUD, 0},
                                   std::pair{v1::ROUTE_CLOUD, 7}}) {
    grpc::ClientContext ctx;
    v1::QueryRequest req;
    req.set_prompt("q");
    req.set_route(route);
    req.mutable_params()->set_max_tokens(max_tokens);
    auto reader = stub_->Query(&ctx, req);
    v1::QueryEvent ev;
    while (reader->Read(&ev)) {
    }
    ASSERT_TRUE(reader->Finish().ok());
    if (route == v1::ROUTE_SKETCH) {
      EXPECT_EQ(cloud_.sketch_max_tokens, 0);
    } else {
      EXPECT_EQ(cloud_.generate_max_tokens, max_tokens);
    }
  }
}

TEST_F(AdmissionTest, EscalationKeepsTheEdgeAnswerWhenTheCloudCannotExpand) {
  Start("timeouts: {load_poll: 60s}\nescalation: {threshold: 0.9}\n");
  edge_.agreement = 0.3;  // every point escalates; the cloud's Expand fails
  grpc::ClientContext ctx;
  v1::QueryRequest req;
  req.set_prompt("q");
  req.set_route(v1::ROUTE_SKETCH);
  auto reader = stub_->Query(&ctx, req);
  std::vector<v1::QueryEvent> events;
  v1::QueryEvent ev;
  while (reader->Read(&ev)) events.push_back(ev);
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_TRUE(events.back().has_answer());
  EXPECT_TRUE(events.back().answer().degraded());
  EXPECT_EQ(events.back().answer().expansions(0), "edge-a(p0)");
}

}  // namespace
}  // namespace pice::scheduler
