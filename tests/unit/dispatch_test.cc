// The scheduler's dispatch against scripted Cloud and Edge test servers in this process:
// pipelining (points go to edges while the sketch is still being written), spreading over
// edges, assembly in sketch order, escalation on low agreement, failover, the full route,
// the do-not-split fallback, validation and cancellation.
#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/server.h"
#include "grpcpp/grpcpp.h"
#include "pice/v1/pice.grpc.pb.h"
#include "scheduler/query.h"
#include "scheduler/service.h"

namespace pice::scheduler {
namespace {

using Clock = std::chrono::steady_clock;

// Scripted cloud: a question "a; b; c" sketches to points a, b, c (one every
// point_delay); "DEPENDENT ..." sketches to "do not split". Expand answers "cloud(<point>)".
class ScriptCloud final : public v1::Cloud::Service {
 public:
  std::chrono::milliseconds point_delay{0};

  grpc::Status Sketch(grpc::ServerContext* ctx, const v1::SketchRequest* req,
                      grpc::ServerWriter<v1::SketchEvent>* w) override {
    std::vector<std::string> points;
    if (req->question().rfind("DEPENDENT", 0) != 0) {
      points = absl::StrSplit(req->question(), "; ");
    }
    for (size_t i = 0; i < points.size(); ++i) {
      std::this_thread::sleep_for(point_delay);
      if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
      v1::SketchEvent ev;
      ev.mutable_point()->set_index(static_cast<int>(i));
      ev.mutable_point()->set_text(points[i]);
      w->Write(ev);
    }
    v1::SketchEvent done;
    done.mutable_done()->set_split(!points.empty());
    done.mutable_done()->set_node("test-cloud");
    done.mutable_done()->set_generated_tokens(7);
    w->Write(done);
    return grpc::Status::OK;
  }

  grpc::Status Generate(grpc::ServerContext*, const v1::GenerateRequest* req,
                        grpc::ServerWriter<v1::GenerateEvent>* w) override {
    for (const std::string& piece : std::vector<std::string>{"full", ":", req->question()}) {
      v1::GenerateEvent ev;
      ev.mutable_delta()->set_text(piece);
      w->Write(ev);
    }
    v1::GenerateEvent done;
    done.mutable_done()->set_finish_reason(v1::STOP);
    done.mutable_done()->set_node("test-cloud");
    done.mutable_done()->set_generated_tokens(3);
    w->Write(done);
    return grpc::Status::OK;
  }

  grpc::Status Expand(grpc::ServerContext*, const v1::ExpandRequest* req,
                      v1::ExpandResponse* resp) override {
    resp->set_index(req->index());
    resp->set_text("cloud(" + req->sketch(req->index()) + ")");
    resp->set_node("test-cloud");
    resp->set_model("big");
    resp->set_agreement(1);
    ++expands;
    return grpc::Status::OK;
  }
  std::atomic<int> expands{0};
};

// Scripted edge: expands "<point>" to "<name>(<point>)" after `delay`; agreement 0.3 for
// points containing "contested"; fails with UNAVAILABLE when `fail` is set.
class ScriptEdge final : public v1::Edge::Service {
 public:
  explicit ScriptEdge(std::string name) : name_(std::move(name)) {}
  std::chrono::milliseconds delay{0};
  std::atomic<bool> fail{false};
  std::atomic<int> active{0};
  std::atomic<int> calls{0};
  std::atomic<int> saw_cancel{0};

  grpc::Status Expand(grpc::ServerContext* ctx, const v1::ExpandRequest* req,
                      v1::ExpandResponse* resp) override {
    ++calls;
    if (fail) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "scripted failure");
    ++active;
    const auto until = Clock::now() + delay;
    while (Clock::now() < until) {
      if (ctx->IsCancelled()) {
        ++saw_cancel;
        --active;
        return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    --active;
    const std::string& point = req->sketch(req->index());
    resp->set_index(req->index());
    resp->set_text(name_ + "(" + point + ")");
    resp->set_node(name_);
    resp->set_model("m1");
    resp->set_selection("consensus");
    resp->set_agreement(point.find("contested") != std::string::npos ? 0.3 : 1.0);
    for (const char* m : {"m1", "m2"}) {
      v1::Candidate* c = resp->add_candidates();
      c->set_model(m);
      c->set_text(resp->text());
      c->set_selected(std::string(m) == "m1");
    }
    resp->set_generated_tokens(2);
    return grpc::Status::OK;
  }
  grpc::Status Load(grpc::ServerContext*, const v1::LoadRequest*, v1::LoadResponse* r) override {
    r->set_node(name_);
    r->set_max_slots(4);
    r->set_active(active);
    r->set_free_slots(4 - active);
    return grpc::Status::OK;
  }

 private:
  std::string name_;
};

class DispatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cloud_server_ = Serve(&cloud_, v1::Cloud::service_full_name());
    edge_a_server_ = Serve(&edge_a_, v1::Edge::service_full_name());
    edge_b_server_ = Serve(&edge_b_, v1::Edge::service_full_name());
  }
  void TearDown() override {
    if (sched_server_) sched_server_->Shutdown(0);
    scheduler_.reset();
    for (auto* s : {&edge_a_server_, &edge_b_server_, &cloud_server_}) (*s)->Shutdown(0);
  }

  static std::unique_ptr<GrpcServer> Serve(grpc::Service* svc, const char* name) {
    ServerOptions o;
    o.listen = "127.0.0.1:0";
    auto s = GrpcServer::Start(o, {{name, svc}});
    EXPECT_TRUE(s.ok()) << s.status();
    return *std::move(s);
  }

  void StartScheduler(const std::string& extra_yaml = "") {
    const std::string yaml = "cloud: " + cloud_server_->address() + "\nedges: [" +
                             edge_a_server_->address() + ", " + edge_b_server_->address() +
                             "]\npolicy: pice-arith\nescalation: {threshold: 0.5}\n"
                             "answer: {point_format: \"{n}:{expansion}\", separator: \" \"}\n" +
                             extra_yaml;
    auto root = ConfigNode::LoadString(yaml, "test.yaml");
    ASSERT_TRUE(root.ok()) << root.status();
    auto opts = ParseSchedulerOptions(*root);
    ASSERT_TRUE(opts.ok()) << opts.status();
    scheduler_ = Scheduler::Create(*opts);
    ServerOptions so;
    so.listen = "127.0.0.1:0";
    auto s = GrpcServer::Start(so, {{v1::Pice::service_full_name(), scheduler_->service()}});
    ASSERT_TRUE(s.ok()) << s.status();
    sched_server_ = *std::move(s);
    stub_ = v1::Pice::NewStub(
        grpc::CreateChannel(sched_server_->address(), grpc::InsecureChannelCredentials()));
  }

  grpc::Status Query(const v1::QueryRequest& req, std::vector<v1::QueryEvent>* events) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    auto reader = stub_->Query(&ctx, req);
    v1::QueryEvent ev;
    while (reader->Read(&ev)) events->push_back(ev);
    return reader->Finish();
  }

  static v1::QueryRequest Req(const std::string& prompt, v1::Route route = v1::ROUTE_AUTO) {
    v1::QueryRequest r;
    r.set_prompt(prompt);
    r.set_route(route);
    return r;
  }

  ScriptCloud cloud_;
  ScriptEdge edge_a_{"edge-a"}, edge_b_{"edge-b"};
  std::unique_ptr<GrpcServer> cloud_server_, edge_a_server_, edge_b_server_, sched_server_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<v1::Pice::Stub> stub_;
};

TEST_F(DispatchTest, PointsGoOutAsTheyArriveAndTheAnswerIsInSketchOrder) {
  cloud_.point_delay = std::chrono::milliseconds(80);
  edge_a_.delay = edge_b_.delay = std::chrono::milliseconds(5);
  StartScheduler();
  std::vector<v1::QueryEvent> ev;
  ASSERT_TRUE(Query(Req("p0; p1; p2; p3"), &ev).ok());
  ASSERT_GE(ev.size(), 10u);
  EXPECT_EQ(ev[0].route().route(), v1::ROUTE_SKETCH);
  // Pipelined: the first expansion lands before the last point was sketched.
  int first_expansion = -1, last_point = -1;
  std::set<std::string> nodes;
  for (size_t i = 0; i < ev.size(); ++i) {
    if (ev[i].has_expansion() && first_expansion < 0) first_expansion = static_cast<int>(i);
    if (ev[i].has_sketch_point()) last_point = static_cast<int>(i);
    if (ev[i].has_expansion()) nodes.insert(ev[i].expansion().node());
  }
  EXPECT_LT(first_expansion, last_point);
  EXPECT_EQ(nodes.size(), 2u) << "points should spread over both edges";
  const v1::AnswerEvent& a = ev.back().answer();
  ASSERT_TRUE(ev.back().has_answer());
  ASSERT_EQ(a.expansions_size(), 4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NE(a.expansions(i).find("(p" + std::to_string(i) + ")"), std::string::npos);
  }
  EXPECT_EQ(a.text().substr(0, 2), "1:");
  EXPECT_GT(a.timings().sketch_done_ms(), 0);
  EXPECT_GE(a.timings().total_ms(), a.timings().sketch_done_ms());
  EXPECT_GT(a.tokens_size(), 1);
}

TEST_F(DispatchTest, LowAgreementEscalatesToTheCloud) {
  StartScheduler();
  std::vector<v1::QueryEvent> ev;
  ASSERT_TRUE(Query(Req("easy; contested"), &ev).ok());
  int escalated = 0;
  for (const auto& e : ev) {
    if (!e.has_expansion()) continue;
    if (e.expansion().index() == 1) {
      EXPECT_TRUE(e.expansion().escalated());
      EXPECT_EQ(e.expansion().text(), "cloud(contested)");
      EXPECT_NEAR(e.expansion().agreement(), 0.3, 1e-9);
      EXPECT_EQ(e.expansion().candidates_size(), 3);  // two edge candidates + the cloud's
      ++escalated;
    } else {
      EXPECT_FALSE(e.expansion().escalated());
    }
  }
  EXPECT_EQ(escalated, 1);
  EXPECT_EQ(ev.back().answer().expansions(1), "cloud(contested)");
}

TEST_F(DispatchTest, FailedEdgeIsRetriedElsewhereThenOnTheCloud) {
  StartScheduler("timeouts: {load_poll: 60s}\n");  // no poll restores the edge meanwhile
  edge_a_.fail = true;
  std::vector<v1::QueryEvent> ev;
  ASSERT_TRUE(Query(Req("x0; x1; x2"), &ev).ok());
  for (const auto& e : ev) {
    if (e.has_expansion()) {
      EXPECT_EQ(e.expansion().node(), "edge-b");
    }
  }
  // edge-b fails too: the point goes to the cloud (edge-a is still marked unhealthy).
  edge_b_.fail = true;
  ev.clear();
  ASSERT_TRUE(Query(Req("y0"), &ev).ok());
  EXPECT_EQ(ev.back().answer().route(), v1::ROUTE_SKETCH);
  EXPECT_EQ(ev.back().answer().expansions(0), "cloud(y0)");
  // Both edges are unhealthy now, so the policy sends the next query to the cloud.
  ev.clear();
  ASSERT_TRUE(Query(Req("w0; w1"), &ev).ok());
  EXPECT_EQ(ev.back().answer().route(), v1::ROUTE_CLOUD);
  EXPECT_NE(ev[0].route().reason().find("none is healthy"), std::string::npos);
}

TEST_F(DispatchTest, EdgeFailureDuringAQueryFallsToTheCloud) {
  StartScheduler("timeouts: {load_poll: 60s}\n");
  edge_a_.fail = true;
  edge_b_.fail = true;
  std::vector<v1::QueryEvent> ev;
  ASSERT_TRUE(Query(Req("z0"), &ev).ok());
  ASSERT_TRUE(ev.back().has_answer());
  EXPECT_EQ(ev.back().answer().route(), v1::ROUTE_SKETCH);
  EXPECT_EQ(ev.back().answer().expansions(0), "cloud(z0)");
  for (const auto& e : ev) {
    if (e.has_expansion()) {
      EXPECT_TRUE(e.expansion().escalated());
      EXPECT_EQ(e.expansion().attempts(), 3);  // edge-a, edge-b, cloud
    }
  }
}

TEST_F(DispatchTest, FullRouteStreamsDeltas) {
  StartScheduler();
  std::vector<v1::QueryEvent> ev;
  ASSERT_TRUE(Query(Req("q1; q2", v1::ROUTE_CLOUD), &ev).ok());
  EXPECT_EQ(ev[0].route().route(), v1::ROUTE_CLOUD);
  int deltas = 0;
  for (const auto& e : ev) deltas += e.has_delta();
  EXPECT_EQ(deltas, 3);
  EXPECT_EQ(ev.back().answer().text(), "full:q1; q2");
  EXPECT_EQ(ev.back().answer().route(), v1::ROUTE_CLOUD);
}

TEST_F(DispatchTest, DoNotSplitFallsBackToTheFullRoute) {
  StartScheduler();
  std::vector<v1::QueryEvent> ev;
  ASSERT_TRUE(Query(Req("DEPENDENT chain"), &ev).ok());
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev[0].route().route(), v1::ROUTE_SKETCH);
  EXPECT_EQ(ev[1].route().route(), v1::ROUTE_CLOUD);
  EXPECT_NE(ev[1].route().reason().find("do not split"), std::string::npos);
  EXPECT_EQ(ev.back().answer().text(), "full:DEPENDENT chain");
}

TEST_F(DispatchTest, BadRequestsNameTheField) {
  StartScheduler();
  struct Case {
    v1::QueryRequest req;
    std::string field;
  };
  std::vector<Case> cases;
  cases.push_back({Req(""), "prompt"});
  cases.push_back({Req(std::string(9000, 'a')), "prompt"});
  cases.push_back({Req("ok", static_cast<v1::Route>(7)), "route"});
  Case t{Req("ok"), "params.temperature"};
  t.req.mutable_params()->set_temperature(-1);
  cases.push_back(t);
  Case mp{Req("ok"), "max_points"};
  mp.req.set_max_points(1000);
  cases.push_back(mp);
  for (const Case& c : cases) {
    std::vector<v1::QueryEvent> ev;
    grpc::Status s = Query(c.req, &ev);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_NE(s.error_message().find(c.field), std::string::npos) << s.error_message();
    EXPECT_TRUE(ev.empty());
  }
}

// Invalid UTF-8 never reaches the service over gRPC (protobuf refuses to parse such a
// proto3 string), so the check is tested on the validator itself; `pice query` checks it
// before sending.
TEST(ValidateQueryTest, InvalidUtf8NamesThePrompt) {
  SchedulerOptions o;
  v1::QueryRequest r;
  r.set_prompt(std::string("bad \xff utf8"));
  absl::Status s = ValidateQuery(r, o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("prompt"), std::string::npos) << s;
  r.set_prompt("fine");
  r.set_category(std::string("\xc0"));
  EXPECT_NE(ValidateQuery(r, o).message().find("category"), std::string::npos);
  r.set_category("");
  EXPECT_TRUE(ValidateQuery(r, o).ok());
}

TEST_F(DispatchTest, CancellingAQueryCancelsTheEdges) {
  edge_a_.delay = edge_b_.delay = std::chrono::seconds(10);
  StartScheduler();
  grpc::ClientContext ctx;
  auto reader = stub_->Query(&ctx, Req("slow0; slow1"));
  v1::QueryEvent ev;
  int points = 0;
  while (points < 2 && reader->Read(&ev)) points += ev.has_sketch_point();
  ASSERT_EQ(points, 2);
  // Wait until both expansions run on the edges, then cancel.
  for (int i = 0; i < 200 && edge_a_.active + edge_b_.active < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(edge_a_.active + edge_b_.active, 2);
  const auto t0 = Clock::now();
  ctx.TryCancel();
  while (reader->Read(&ev)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  for (int i = 0; i < 400 && edge_a_.active + edge_b_.active > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(edge_a_.active + edge_b_.active, 0);
  EXPECT_EQ(edge_a_.saw_cancel + edge_b_.saw_cancel, 2);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(2));
  for (int i = 0; i < 200 && scheduler_->service()->in_flight() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(scheduler_->service()->in_flight(), 0);
}

}  // namespace
}  // namespace pice::scheduler
