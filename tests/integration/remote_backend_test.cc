// A pice-cloud whose model is remote (`backend: {kind: openai}`): the remote is another
// PICE stack's OpenAI HTTP API (pice-cloud on the pice-arith cloud model behind a
// pice-scheduler with http_listen), serving raw completions of its cloud model. The
// answers through the remote-backed cloud must equal those of the in-process cloud on
// 50 pice-arith questions, on both routes (sketch, full answer and escalations all go
// through the remote); and a remote that dies or stalls must end in the scheduler's
// degraded answer, not a hang.
#include <csignal>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "nlohmann/json.hpp"
#include "tests/integration/harness.h"

namespace pice::testing {
namespace {

std::string CloudYaml(const std::string& model_lines) {
  return "node: cloud\nlisten: 127.0.0.1:0\n" + model_lines + "template: " + TemplatesDir() +
         "/pice-arith.yaml\nthreads: 1\nlog_level: warn\n";
}

std::string LocalModel() { return "model: " + ModelsDir() + "/arith-cloud-f16.gguf\n"; }

std::string RemoteModel(int http_port, const std::string& timeout) {
  return "backend:\n  kind: openai\n  base_url: http://127.0.0.1:" + std::to_string(http_port) +
         "/v1\n  model: arith-cloud\n  timeout: " + timeout + "\n  max_retries: 1\n";
}

std::string EdgeYaml(const std::string& name) {
  std::string y = "node: " + name + "\nlisten: 127.0.0.1:0\ntemplate: " + TemplatesDir() +
                  "/pice-arith.yaml\nthreads: 1\nlog_level: warn\nensemble:\n";
  for (const char* m : {"a", "b", "c"}) {
    y += std::string("  - {name: arith-edge-") + m + ", model: " + ModelsDir() + "/arith-edge-" +
         m + "-q8_0.gguf}\n";
  }
  return y;
}

// Routes forced by category (c: cloud, s: sketch); escalation below full agreement, so
// escalated points go through the cloud's Expand too.
std::string SchedulerYaml(const std::string& cloud, const std::vector<std::string>& edges,
                          const std::string& extra = "") {
  std::string y = "listen: 127.0.0.1:0\ncloud: " + cloud + "\nedges:\n";
  for (const auto& e : edges) y += "  - " + e + "\n";
  return y +
         "answer: {point_format: \"{expansion}.\", separator: \" \"}\n"
         "timeouts: {load_poll: 100ms}\n"
         "escalation: {threshold: 0.9}\n"
         "policy:\n  default: auto\n  rules:\n"
         "    - {name: force-cloud, match: {categories: [c]}, route: cloud}\n"
         "    - {name: force-sketch, match: {categories: [s]}, route: sketch}\n" +
         extra;
}

std::vector<std::string> EvalQuestions(size_t n) {
  std::ifstream in(SourceDir() + "/tests/data/pice-arith/eval.jsonl");
  std::vector<std::string> out;
  std::string line;
  while (out.size() < n && std::getline(in, line)) {
    out.push_back(nlohmann::json::parse(line)["question"].get<std::string>());
  }
  return out;
}

class RemoteBackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    http_port_ = FreePort();
    std::string why;
    // The remote: a PICE stack serving its cloud model over the OpenAI API.
    remote_cloud_ = new Node(*dir_, "remote-cloud", "pice-cloud", CloudYaml(LocalModel()));
    ASSERT_TRUE(remote_cloud_->Ready(&why)) << why;
    remote_sched_ = new Node(*dir_, "remote-sched", "pice-scheduler",
                             "listen: 127.0.0.1:0\ncloud: " + remote_cloud_->address() +
                                 "\nhttp_listen: 127.0.0.1:" + std::to_string(http_port_) +
                                 "\ntimeouts: {load_poll: 100ms}\n");
    local_cloud_ = new Node(*dir_, "local-cloud", "pice-cloud", CloudYaml(LocalModel()));
    cloud_ = new Node(*dir_, "cloud", "pice-cloud", CloudYaml(RemoteModel(http_port_, "2s")));
    edge1_ = new Node(*dir_, "edge-1", "pice-edge", EdgeYaml("edge-1"));
    edge2_ = new Node(*dir_, "edge-2", "pice-edge", EdgeYaml("edge-2"));
    for (Node* n : {remote_sched_, local_cloud_, cloud_, edge1_, edge2_}) {
      ASSERT_TRUE(n->Ready(&why)) << why;
    }
    const std::vector<std::string> edges = {edge1_->address(), edge2_->address()};
    local_ = new Node(*dir_, "local", "pice-scheduler", SchedulerYaml(local_cloud_->address(), edges));
    remote_ = new Node(*dir_, "remote", "pice-scheduler", SchedulerYaml(cloud_->address(), edges));
    for (Node* n : {local_, remote_}) ASSERT_TRUE(n->Ready(&why)) << why;
    // The remote scheduler learns its cloud's model name from Load: wait until its
    // /v1/models lists it.
    std::string out;
    for (int i = 0; i < 200; ++i) {
      RunCommand("curl -s http://127.0.0.1:" + std::to_string(http_port_) + "/v1/models", &out);
      if (out.find("arith-cloud") != std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_NE(out.find("arith-cloud"), std::string::npos) << out;
  }
  static void TearDownTestSuite() {
    for (Node* n : {remote_, local_, edge2_, edge1_, cloud_, local_cloud_, remote_sched_,
                    remote_cloud_}) {
      delete n;
    }
    delete dir_;
  }
  void SetUp() override {
    ASSERT_NE(remote_, nullptr);
    ASSERT_GT(remote_->port(), 0) << "the stacks did not start";
  }

  static v1::QueryRequest Req(const std::string& q, const std::string& category) {
    v1::QueryRequest r;
    r.set_prompt(q);
    r.set_category(category);
    return r;
  }

  static TempDir* dir_;
  static int http_port_;
  static Node *remote_cloud_, *remote_sched_, *local_cloud_, *cloud_, *edge1_, *edge2_, *local_,
      *remote_;
};
TempDir* RemoteBackendTest::dir_ = nullptr;
int RemoteBackendTest::http_port_ = 0;
Node* RemoteBackendTest::remote_cloud_ = nullptr;
Node* RemoteBackendTest::remote_sched_ = nullptr;
Node* RemoteBackendTest::local_cloud_ = nullptr;
Node* RemoteBackendTest::cloud_ = nullptr;
Node* RemoteBackendTest::edge1_ = nullptr;
Node* RemoteBackendTest::edge2_ = nullptr;
Node* RemoteBackendTest::local_ = nullptr;
Node* RemoteBackendTest::remote_ = nullptr;

TEST_F(RemoteBackendTest, AnswersEqualTheInProcessCloudOn50QuestionsBothRoutes) {
  auto local = PiceStub(local_);
  auto remote = PiceStub(remote_);
  const std::vector<std::string> questions = EvalQuestions(50);
  ASSERT_EQ(questions.size(), 50u);
  int escalated = 0, split = 0;
  for (const char* category : {"c", "s"}) {
    for (const std::string& q : questions) {
      std::vector<v1::QueryEvent> a, b;
      grpc::Status sa = RunQuery(local.get(), Req(q, category), &a);
      grpc::Status sb = RunQuery(remote.get(), Req(q, category), &b);
      ASSERT_TRUE(sa.ok()) << q << ": " << sa.error_message();
      ASSERT_TRUE(sb.ok()) << q << ": " << sb.error_message();
      EXPECT_EQ(FinalAnswer(b).text(), FinalAnswer(a).text()) << category << ": " << q;
      EXPECT_EQ(FinalAnswer(b).route(), FinalAnswer(a).route()) << category << ": " << q;
      EXPECT_FALSE(FinalAnswer(b).degraded()) << q;
      EXPECT_EQ(FinalAnswer(b).points_size(), FinalAnswer(a).points_size()) << q;
      split += FinalAnswer(b).points_size() > 0;
      for (const auto& ev : b) escalated += ev.has_expansion() && ev.expansion().escalated();
    }
  }
  // The remote did the cloud's work on every kind of call.
  EXPECT_GT(split, 20) << "the sketch route should split most questions";
  std::printf("escalated points through the remote: %d\n", escalated);
  auto load_stub = v1::Cloud::NewStub(
      grpc::CreateChannel(cloud_->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::LoadResponse load;
  ASSERT_TRUE(load_stub->Load(&ctx, v1::LoadRequest(), &load).ok());
  ASSERT_EQ(load.models_size(), 1);
  EXPECT_EQ(load.models(0), "arith-cloud");
  EXPECT_EQ(load.notes_size(), 0) << load.notes(0);  // the remote returns logprobs
}

TEST_F(RemoteBackendTest, EscalationsGoThroughTheRemoteCloud) {
  // Cloud.Expand on the remote-backed cloud equals the in-process cloud's.
  auto a = v1::Cloud::NewStub(grpc::CreateChannel(local_cloud_->address(), grpc::InsecureChannelCredentials()));
  auto b = v1::Cloud::NewStub(grpc::CreateChannel(cloud_->address(), grpc::InsecureChannelCredentials()));
  v1::ExpandRequest req;
  req.set_question("add 12 and 7; multiply 23 by 4");
  req.add_sketch("12+7");
  req.add_sketch("23*4");
  req.set_index(1);
  v1::ExpandResponse ra, rb;
  grpc::ClientContext ca, cb;
  ASSERT_TRUE(a->Expand(&ca, req, &ra).ok());
  grpc::Status s = b->Expand(&cb, req, &rb);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(rb.text(), ra.text());
  EXPECT_EQ(rb.text(), "23*4=92");
  EXPECT_NEAR(rb.confidence(), ra.confidence(), 0.05);  // the EOG token is not in the remote's
  EXPECT_EQ(rb.model(), "arith-cloud");
}

TEST_F(RemoteBackendTest, AStalledThenKilledRemoteEndsInDegradedAnswers) {
  auto remote = PiceStub(remote_);
  const std::string q = "add 3 and 4; multiply 6 by 7";
  // Stalled: the remote accepts connections but answers nothing (SIGSTOP); backend.timeout
  // (2 s) cuts the call, the scheduler degrades to the edges.
  remote_sched_->process().Signal(SIGSTOP);
  for (const char* category : {"s", "c"}) {
    std::vector<v1::QueryEvent> ev;
    const auto t0 = std::chrono::steady_clock::now();
    grpc::Status s = RunQuery(remote.get(), Req(q, category), &ev, 30);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(s.ok()) << category << ": " << s.error_message();
    EXPECT_TRUE(FinalAnswer(ev).degraded()) << category;
    EXPECT_FALSE(FinalAnswer(ev).text().empty());  // the edges' own answer (the models are small)
    EXPECT_LT(secs, 10) << "the stall must be cut by backend.timeout";
  }
  remote_sched_->process().Signal(SIGCONT);
  // Killed: connection refused -> UNAVAILABLE at once -> degraded.
  remote_sched_->process().Kill(std::chrono::milliseconds(0));
  std::vector<v1::QueryEvent> ev;
  grpc::Status s = RunQuery(remote.get(), Req(q, "s"), &ev, 30);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(FinalAnswer(ev).degraded());
  EXPECT_FALSE(FinalAnswer(ev).text().empty());
}

}  // namespace
}  // namespace pice::testing
