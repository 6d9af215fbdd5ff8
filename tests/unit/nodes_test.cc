// The cloud and edge services in-process on loopback (port 0) with the bundled pice-arith
// models: sketch points stream, full answers stream, the ensemble reports every candidate,
// bad requests name the field, a full edge refuses with RESOURCE_EXHAUSTED.
#include <gtest/gtest.h>

#include <memory>
#include <thread>

#include "cloud/cloud_config.h"
#include "cloud/cloud_service.h"
#include "common/server.h"
#include "edge/edge_config.h"
#include "edge/edge_service.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"

namespace pice {
namespace {

std::string Deploy(const std::string& f) { return std::string(PICE_SOURCE_DIR) + "/deploy/" + f; }

class NodesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto co = LoadCloudOptions(Deploy("cloud.yaml"));
    ASSERT_TRUE(co.ok()) << co.status();
    co->threads = 1;
    auto cloud = CloudService::Create(*co);
    ASSERT_TRUE(cloud.ok()) << cloud.status();
    cloud_ = cloud->release();
    auto eo = LoadEdgeOptions(Deploy("edge.yaml"));
    ASSERT_TRUE(eo.ok()) << eo.status();
    eo->max_slots = 1;
    eo->max_queue = 1;
    auto edge = EdgeService::Create(*eo);
    ASSERT_TRUE(edge.ok()) << edge.status();
    edge_ = edge->release();
    ServerOptions so;
    so.listen = "127.0.0.1:0";
    so.drain_seconds = 1;
    auto server = GrpcServer::Start(so, {{v1::Cloud::service_full_name(), cloud_},
                                         {v1::Edge::service_full_name(), edge_}});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
    channel_ = new std::shared_ptr<grpc::Channel>(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  }
  static void TearDownTestSuite() {
    if (server_) server_->Shutdown(1);
    delete server_;
    delete cloud_;
    delete edge_;
    delete channel_;
  }
  static inline CloudService* cloud_ = nullptr;
  static inline EdgeService* edge_ = nullptr;
  static inline GrpcServer* server_ = nullptr;
  static inline std::shared_ptr<grpc::Channel>* channel_ = nullptr;
};

TEST_F(NodesTest, SketchStreamsPointsThenDone) {
  auto stub = v1::Cloud::NewStub(*channel_);
  grpc::ClientContext ctx;
  v1::SketchRequest req;
  req.set_request_id("t1");
  req.set_question("add twelve and seven; multiply 23 by 4; subtract nine from 40");
  auto reader = stub->Sketch(&ctx, req);
  v1::SketchEvent ev;
  std::vector<std::string> points;
  v1::SketchDone done;
  while (reader->Read(&ev)) {
    EXPECT_EQ(ev.request_id(), "t1");
    if (ev.has_point()) {
      EXPECT_EQ(ev.point().index(), static_cast<int>(points.size()));
      points.push_back(ev.point().text());
    }
    if (ev.has_done()) done = ev.done();
  }
  grpc::Status s = reader->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(done.split()) << done.raw();
  EXPECT_EQ(points, (std::vector<std::string>{"12+7", "23*4", "40-9"})) << done.raw();
  EXPECT_EQ(done.finish_reason(), v1::STOP);
  EXPECT_GT(done.generated_tokens(), 0);
}

TEST_F(NodesTest, DependentQuestionIsNotSplit) {
  auto stub = v1::Cloud::NewStub(*channel_);
  grpc::ClientContext ctx;
  v1::SketchRequest req;
  req.set_question("add 3 and 4, then multiply that by 6");
  auto reader = stub->Sketch(&ctx, req);
  v1::SketchEvent ev;
  bool split = true;
  int points = 0;
  while (reader->Read(&ev)) {
    if (ev.has_point()) ++points;
    if (ev.has_done()) split = ev.done().split();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_FALSE(split);
  EXPECT_EQ(points, 0);
}

TEST_F(NodesTest, GenerateStreamsTheFullAnswer) {
  auto stub = v1::Cloud::NewStub(*channel_);
  grpc::ClientContext ctx;
  v1::GenerateRequest req;
  req.set_question("add 3 and 4, then multiply that by 6");
  auto reader = stub->Generate(&ctx, req);
  v1::GenerateEvent ev;
  std::string text;
  int deltas = 0;
  bool done = false;
  while (reader->Read(&ev)) {
    if (ev.has_delta()) {
      text += ev.delta().text();
      ++deltas;
    }
    done = done || ev.has_done();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(done);
  EXPECT_GT(deltas, 1);
  EXPECT_NE(text.find("3+4=7"), std::string::npos) << text;
  EXPECT_NE(text.find("7*6=42"), std::string::npos) << text;
}

TEST_F(NodesTest, EdgeExpandReportsEveryCandidate) {
  auto stub = v1::Edge::NewStub(*channel_);
  grpc::ClientContext ctx;
  v1::ExpandRequest req;
  req.set_request_id("x1");
  req.set_question("add twelve and seven; multiply 23 by 4");
  req.add_sketch("12+7");
  req.add_sketch("23*4");
  req.set_index(1);
  v1::ExpandResponse resp;
  grpc::Status s = stub->Expand(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.index(), 1);
  EXPECT_EQ(resp.selection(), "consensus");
  EXPECT_EQ(resp.node(), "edge-1");
  ASSERT_EQ(resp.candidates_size(), 3);
  int selected = 0;
  for (const auto& c : resp.candidates()) {
    selected += c.selected();
    EXPECT_LE(c.mean_logprob(), 0);
    EXPECT_GT(c.tokens(), 0);
    if (c.selected()) {
      EXPECT_EQ(resp.text(), "23*4=" + c.text());
      EXPECT_EQ(resp.model(), c.model());
    }
  }
  EXPECT_EQ(selected, 1);
  // Agreement is the share of the (equally weighted) candidates whose text is the
  // selected one's (consensus with exact similarity for one-word answers).
  std::string winner;
  for (const auto& c : resp.candidates()) {
    if (c.selected()) winner = c.text();
  }
  int same = 0;
  for (const auto& c : resp.candidates()) same += c.text() == winner;
  EXPECT_DOUBLE_EQ(resp.agreement(), same / 3.0);
}

TEST_F(NodesTest, CloudExpandHasTheSameShape) {
  auto stub = v1::Cloud::NewStub(*channel_);
  grpc::ClientContext ctx;
  v1::ExpandRequest req;
  req.add_sketch("23*4");
  v1::ExpandResponse resp;
  ASSERT_TRUE(stub->Expand(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.text(), "23*4=92");
  EXPECT_EQ(resp.candidates_size(), 1);
  EXPECT_EQ(resp.selection(), "confidence");
}

TEST_F(NodesTest, BadRequestsNameTheField) {
  auto cloud = v1::Cloud::NewStub(*channel_);
  auto edge = v1::Edge::NewStub(*channel_);
  {
    grpc::ClientContext ctx;
    v1::SketchRequest req;
    // (Invalid UTF-8 never reaches the handler: proto3 strings fail to parse.)
    req.set_question("");
    auto reader = cloud->Sketch(&ctx, req);
    v1::SketchEvent ev;
    while (reader->Read(&ev)) {
    }
    grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(s.error_message(), "question: must not be empty");
  }
  {
    grpc::ClientContext ctx;
    v1::GenerateRequest req;
    req.set_question("add 1 and 2");
    req.mutable_params()->set_temperature(-1);
    auto reader = cloud->Generate(&ctx, req);
    v1::GenerateEvent ev;
    while (reader->Read(&ev)) {
    }
    grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("params.temperature"), std::string::npos) << s.error_message();
  }
  {
    grpc::ClientContext ctx;
    v1::ExpandRequest req;
    req.add_sketch("1+1");
    req.set_index(3);
    v1::ExpandResponse resp;
    grpc::Status s = edge->Expand(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(s.error_message(), "index: must be in [0, 0], got 3");
  }
}

TEST_F(NodesTest, LoadReportsCapacity) {
  auto stub = v1::Edge::NewStub(*channel_);
  grpc::ClientContext ctx;
  v1::LoadResponse resp;
  ASSERT_TRUE(stub->Load(&ctx, v1::LoadRequest(), &resp).ok());
  EXPECT_EQ(resp.node(), "edge-1");
  EXPECT_EQ(resp.max_slots(), 1);
  EXPECT_EQ(resp.models_size(), 3);
  EXPECT_FALSE(resp.draining());
}

TEST_F(NodesTest, FullEdgeRefusesWithResourceExhausted) {
  // One slot and one queue place: of many concurrent calls some must be refused, and
  // every call ends (served or refused).
  auto stub = v1::Edge::NewStub(*channel_);
  const int n = 12;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0}, exhausted{0}, other{0};
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&] {
      grpc::ClientContext ctx;
      v1::ExpandRequest req;
      req.add_sketch("23*4");
      req.mutable_params()->set_max_tokens(64);
      v1::ExpandResponse resp;
      grpc::Status s = stub->Expand(&ctx, req, &resp);
      if (s.ok()) ++ok;
      else if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) ++exhausted;
      else ++other;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GE(ok.load(), 1);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(ok + exhausted, n);
}

TEST_F(NodesTest, CancelledCallsEndAndFreeTheEngine) {
  auto stub = v1::Cloud::NewStub(*channel_);
  for (int i = 0; i < 5; ++i) {
    grpc::ClientContext ctx;
    v1::GenerateRequest req;
    req.set_question("add twelve and seven; multiply 23 by 4; subtract nine from 40");
    auto reader = stub->Generate(&ctx, req);
    v1::GenerateEvent ev;
    reader->Read(&ev);
    ctx.TryCancel();
    while (reader->Read(&ev)) {
    }
    grpc::Status s = reader->Finish();
    EXPECT_TRUE(s.ok() || s.error_code() == grpc::StatusCode::CANCELLED) << s.error_message();
  }
  for (int i = 0; i < 100 && cloud_->backend().Stats().active > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(cloud_->backend().Stats().active, 0);
  EXPECT_EQ(cloud_->backend().Stats().queued, 0);
}

TEST_F(NodesTest, HealthIsServing) {
  grpc::GenericStub generic(*channel_);
  grpc::ClientContext ctx;
  grpc::ByteBuffer request, response;
  std::string service = "pice.v1.Edge";
  std::string bytes = "\x0a" + std::string(1, char(service.size())) + service;
  grpc::Slice slice(bytes);
  request = grpc::ByteBuffer(&slice, 1);
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  grpc::Status status;
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) {
                      std::lock_guard<std::mutex> l(mu);
                      status = s;
                      finished = true;
                      cv.notify_all();
                    });
  std::unique_lock<std::mutex> l(mu);
  cv.wait(l, [&] { return finished; });
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string got;
  for (auto& s : slices) got += std::string(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_EQ(got, std::string("\x08\x01"));  // status: SERVING
}

}  // namespace
}  // namespace pice

namespace pice {
namespace {

// Issue 8.6: an edge stopped and destroyed while expansions run. The slot is released
// before the call finishes and the engines stop before the service's members go, so no
// engine callback touches a destroyed service (run under scripts/sanitize.sh, ASan
// reports the use-after-free this ordering prevents).
TEST(NodeShutdownTest, AnEdgeDestroyedUnderLoadLetsEveryCallEnd) {
  for (int round = 0; round < 3; ++round) {
    auto eo = LoadEdgeOptions(Deploy("edge.yaml"));
    ASSERT_TRUE(eo.ok()) << eo.status();
    eo->max_slots = 4;
    eo->max_queue = 16;
    auto edge = EdgeService::Create(*eo);
    ASSERT_TRUE(edge.ok()) << edge.status();
    ServerOptions so;
    so.listen = "127.0.0.1:0";
    auto server = GrpcServer::Start(so, {{v1::Edge::service_full_name(), edge->get()}});
    ASSERT_TRUE(server.ok()) << server.status();
    auto stub = v1::Edge::NewStub(
        grpc::CreateChannel((*server)->address(), grpc::InsecureChannelCredentials()));
    std::atomic<bool> stop{false};
    std::atomic<int> ok{0}, ended{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < 6; ++t) {
      clients.emplace_back([&] {
        while (!stop) {
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
          v1::ExpandRequest req;
          req.set_question("add twelve and seven; multiply 23 by 4");
          req.add_sketch("12+7");
          req.add_sketch("23*4");
          req.set_index(1);
          v1::ExpandResponse resp;
          grpc::Status s = stub->Expand(&ctx, req, &resp);
          (s.ok() ? ok : ended)++;
        }
      });
    }
    // Under load (some answers in), then a little more so calls are mid-flight.
    for (int i = 0; i < 500 && ok.load() < 3; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + 10 * round));
    (*server)->Shutdown(0);
    edge->reset();  // engines stopped first, then the members
    stop = true;
    for (auto& c : clients) c.join();
    EXPECT_GT(ok.load(), 0);
    server->reset();
  }
}

}  // namespace
}  // namespace pice
