// Hostile input, tried against the real binaries: every row is one bad request, what it
// changes in a good one, the status code it must get and a substring of the message (the
// field it names). The limits come from the YAML below (scheduler.yaml `limits`, cloud.yaml
// and edge.yaml `limits`). The test prints what each row got; the nodes must keep
// serving good requests afterwards.
//
// Invalid UTF-8 in a string field never reaches the services over gRPC: protobuf refuses
// to parse such a proto3 string, and gRPC's callback server then answers UNIMPLEMENTED
// with no message before any handler runs (measured with Debian 12's gRPC 1.51; the
// validators themselves are tested in tests/unit/dispatch_test.cc and fuzzed).
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/integration/harness.h"

namespace pice::testing {
namespace {

using Mutation = std::function<void(v1::QueryRequest*)>;

struct QueryCase {
  const char* description;
  Mutation mutate;
  grpc::StatusCode code;
  const char* substring;
};

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
using C = grpc::StatusCode;

// scheduler.yaml limits: max_prompt_bytes 2048, max_points 8, max_tokens 256, max_stop 4,
// max_stop_bytes 16, max_category_bytes 32; cloud.yaml: max_question_tokens 100.
const std::vector<QueryCase>& QueryCases() {
  static const auto* cases = new std::vector<QueryCase>{
      {"empty prompt", [](auto* r) { r->set_prompt(""); }, C::INVALID_ARGUMENT,
       "prompt: must not be empty"},
      {"prompt of 2049 bytes (max_prompt_bytes 2048)",
       [](auto* r) { r->set_prompt(std::string(2049, 'a')); }, C::INVALID_ARGUMENT,
       "prompt: at most 2048 bytes"},
      {"prompt of 300 tokens, within the bytes (cloud max_question_tokens 100)",
       [](auto* r) { r->set_prompt(std::string(300, 'a')); }, C::INVALID_ARGUMENT,
       "prompt: the cloud refused it"},
      {"prompt with invalid UTF-8 (rejected by protobuf before the service)",
       [](auto* r) { r->set_prompt("bad \xff\xfe"); }, C::UNIMPLEMENTED, ""},
      {"route 9 (not in the enum)", [](auto* r) { r->set_route(static_cast<v1::Route>(9)); },
       C::INVALID_ARGUMENT, "route: unknown value 9"},
      {"max_points -1", [](auto* r) { r->set_max_points(-1); }, C::INVALID_ARGUMENT,
       "max_points: must be in [0, 8]"},
      {"max_points 9 (limit 8)", [](auto* r) { r->set_max_points(9); }, C::INVALID_ARGUMENT,
       "max_points: must be in [0, 8]"},
      {"request_id of 129 characters", [](auto* r) { r->set_request_id(std::string(129, 'x')); },
       C::INVALID_ARGUMENT, "request_id: at most 128"},
      {"request_id with a space and a slash", [](auto* r) { r->set_request_id("a b/c"); },
       C::INVALID_ARGUMENT, "request_id: only letters"},
      {"category of 33 bytes (max_category_bytes 32)",
       [](auto* r) { r->set_category(std::string(33, 'c')); }, C::INVALID_ARGUMENT,
       "category: at most 32 bytes"},
      {"params.max_tokens -1", [](auto* r) { r->mutable_params()->set_max_tokens(-1); },
       C::INVALID_ARGUMENT, "params.max_tokens: must be in [0, 256]"},
      {"params.max_tokens 257 (limit 256)",
       [](auto* r) { r->mutable_params()->set_max_tokens(257); }, C::INVALID_ARGUMENT,
       "params.max_tokens: must be in [0, 256]"},
      {"params.max_tokens INT32_MAX",
       [](auto* r) { r->mutable_params()->set_max_tokens(2147483647); }, C::INVALID_ARGUMENT,
       "params.max_tokens"},
      {"params.temperature -0.5", [](auto* r) { r->mutable_params()->set_temperature(-0.5f); },
       C::INVALID_ARGUMENT, "params.temperature: must be in [0, 100]"},
      {"params.temperature 101", [](auto* r) { r->mutable_params()->set_temperature(101); },
       C::INVALID_ARGUMENT, "params.temperature"},
      {"params.temperature NaN", [](auto* r) { r->mutable_params()->set_temperature(kNaN); },
       C::INVALID_ARGUMENT, "params.temperature"},
      {"params.temperature +inf", [](auto* r) { r->mutable_params()->set_temperature(kInf); },
       C::INVALID_ARGUMENT, "params.temperature"},
      {"params.top_p 1.5", [](auto* r) { r->mutable_params()->set_top_p(1.5f); },
       C::INVALID_ARGUMENT, "params.top_p: must be in [0, 1]"},
      {"params.top_p -0.1", [](auto* r) { r->mutable_params()->set_top_p(-0.1f); },
       C::INVALID_ARGUMENT, "params.top_p"},
      {"params.top_p NaN", [](auto* r) { r->mutable_params()->set_top_p(kNaN); },
       C::INVALID_ARGUMENT, "params.top_p"},
      {"params.top_k -1", [](auto* r) { r->mutable_params()->set_top_k(-1); },
       C::INVALID_ARGUMENT, "params.top_k"},
      {"params.top_k 2000000", [](auto* r) { r->mutable_params()->set_top_k(2000000); },
       C::INVALID_ARGUMENT, "params.top_k"},
      {"params.min_p 1.0", [](auto* r) { r->mutable_params()->set_min_p(1.0f); },
       C::INVALID_ARGUMENT, "params.min_p: must be in [0, 1)"},
      {"params.min_p -inf", [](auto* r) { r->mutable_params()->set_min_p(-kInf); },
       C::INVALID_ARGUMENT, "params.min_p"},
      {"params.repeat_penalty 11", [](auto* r) { r->mutable_params()->set_repeat_penalty(11); },
       C::INVALID_ARGUMENT, "params.repeat_penalty: must be in [0, 10]"},
      {"params.repeat_penalty -1", [](auto* r) { r->mutable_params()->set_repeat_penalty(-1); },
       C::INVALID_ARGUMENT, "params.repeat_penalty"},
      {"5 stop strings (max_stop 4)",
       [](auto* r) {
         for (int i = 0; i < 5; ++i) r->mutable_params()->add_stop("s" + std::to_string(i));
       },
       C::INVALID_ARGUMENT, "params.stop: must be at most 4 strings"},
      {"an empty stop string", [](auto* r) { r->mutable_params()->add_stop(""); },
       C::INVALID_ARGUMENT, "params.stop[0]: must be 1 to 16 bytes"},
      {"a stop string of 17 bytes (max_stop_bytes 16)",
       [](auto* r) {
         r->mutable_params()->add_stop("ok");
         r->mutable_params()->add_stop(std::string(17, 's'));
       },
       C::INVALID_ARGUMENT, "params.stop[1]: must be 1 to 16 bytes"},
  };
  return *cases;
}

// Requests straight to the nodes (what a broken or hostile scheduler could send).
struct NodeCase {
  const char* description;
  bool to_cloud;  // else the edge
  std::function<void(v1::ExpandRequest*)> mutate;
  grpc::StatusCode code;
  const char* substring;
};

const std::vector<NodeCase>& NodeCases() {
  static const auto* cases = new std::vector<NodeCase>{
      {"Edge.Expand with no sketch", false, [](auto* r) { r->clear_sketch(); },
       C::INVALID_ARGUMENT, "sketch: must hold at least one point"},
      {"Edge.Expand index 5 of 1 point", false, [](auto* r) { r->set_index(5); },
       C::INVALID_ARGUMENT, "index: must be in [0, 0]"},
      {"Edge.Expand index -1", false, [](auto* r) { r->set_index(-1); }, C::INVALID_ARGUMENT,
       "index:"},
      {"Edge.Expand an empty point", false, [](auto* r) { r->set_sketch(0, ""); },
       C::INVALID_ARGUMENT, "sketch[0]: must not be empty"},
      {"Edge.Expand a point of 2000 bytes (max_point_bytes 1024)", false,
       [](auto* r) { r->set_sketch(0, std::string(2000, '1')); }, C::INVALID_ARGUMENT,
       "sketch[0]: at most 1024 bytes"},
      {"Edge.Expand 65 points (max_sketch_points 64)", false,
       [](auto* r) {
         for (int i = 0; i < 64; ++i) r->add_sketch("1+1");
       },
       C::INVALID_ARGUMENT, "sketch: at most 64 points"},
      {"Edge.Expand params.max_tokens 100000", false,
       [](auto* r) { r->mutable_params()->set_max_tokens(100000); }, C::INVALID_ARGUMENT,
       "params.max_tokens"},
      {"Edge.Expand whole_question with an empty question", false,
       [](auto* r) {
         r->set_whole_question(true);
         r->set_question("");
       },
       C::INVALID_ARGUMENT, "question: must not be empty"},
      {"Edge.Expand a question of 200 tokens (edge max_question_tokens 100)", false,
       [](auto* r) {
         r->set_whole_question(true);
         r->set_question(std::string(200, 'a'));
       },
       C::INVALID_ARGUMENT, "question: the prompt is"},
      {"Cloud.Expand params.top_p 7", true, [](auto* r) { r->mutable_params()->set_top_p(7); },
       C::INVALID_ARGUMENT, "params.top_p"},
      {"Cloud.Expand request_id with a newline", true,
       [](auto* r) { r->set_request_id("a\nb"); }, C::INVALID_ARGUMENT, "request_id"},
  };
  return *cases;
}

TEST(BadInputsTest, EveryBadRequestGetsItsCodeNamingTheField) {
  TempDir dir;
  Node cloud(dir, "cloud", "pice-cloud",
             "listen: 127.0.0.1:0\nmodel: " + ModelsDir() + "/arith-cloud-f16.gguf\ntemplate: " +
                 TemplatesDir() +
                 "/pice-arith.yaml\nthreads: 1\nlog_level: error\n"
                 "limits: {max_question_tokens: 100}\n");
  Node edge(dir, "edge", "pice-edge",
            "node: edge-1\nlisten: 127.0.0.1:0\ntemplate: " + TemplatesDir() +
                "/pice-arith.yaml\nthreads: 1\nlog_level: error\n"
                "limits: {max_question_tokens: 100}\nensemble:\n  - {name: a, model: " +
                ModelsDir() + "/arith-edge-a-q8_0.gguf}\n");
  std::string why;
  ASSERT_TRUE(cloud.Ready(&why)) << why;
  ASSERT_TRUE(edge.Ready(&why)) << why;
  Node sched(dir, "scheduler", "pice-scheduler",
             "listen: 127.0.0.1:0\ncloud: " + cloud.address() + "\nedges: [" + edge.address() +
                 "]\nlimits: {max_prompt_bytes: 2048, max_points: 8, max_tokens: 256, "
                 "default_max_tokens: 64, max_stop: 4, max_stop_bytes: 16, "
                 "max_category_bytes: 32}\n");
  ASSERT_TRUE(sched.Ready(&why)) << why;
  auto stub =
      v1::Pice::NewStub(grpc::CreateChannel(sched.address(), grpc::InsecureChannelCredentials()));

  std::printf("%-66s | %-16s | %s\n", "bad input (through pice.v1.Pice/Query)", "code", "message");
  for (const QueryCase& c : QueryCases()) {
    v1::QueryRequest req;
    req.set_prompt("add 3 and 4");
    c.mutate(&req);
    std::vector<v1::QueryEvent> ev;
    const grpc::Status s = RunQuery(stub.get(), req, &ev, 30);
    std::printf("%-66s | %-16d | %s\n", c.description, static_cast<int>(s.error_code()),
                s.error_message().c_str());
    EXPECT_EQ(s.error_code(), c.code) << c.description << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(c.substring), std::string::npos)
        << c.description << ": " << s.error_message();
    for (const auto& e : ev) EXPECT_FALSE(e.has_answer()) << c.description;
  }

  auto edge_stub =
      v1::Edge::NewStub(grpc::CreateChannel(edge.address(), grpc::InsecureChannelCredentials()));
  auto cloud_stub =
      v1::Cloud::NewStub(grpc::CreateChannel(cloud.address(), grpc::InsecureChannelCredentials()));
  std::printf("%-66s | %-16s | %s\n", "bad input (straight to a node)", "code", "message");
  for (const NodeCase& c : NodeCases()) {
    v1::ExpandRequest req;
    req.set_question("add 3 and 4");
    req.add_sketch("3+4");
    req.set_index(0);
    c.mutate(&req);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ExpandResponse resp;
    const grpc::Status s = c.to_cloud ? cloud_stub->Expand(&ctx, req, &resp)
                                      : edge_stub->Expand(&ctx, req, &resp);
    std::printf("%-66s | %-16d | %s\n", c.description, static_cast<int>(s.error_code()),
                s.error_message().c_str());
    EXPECT_EQ(s.error_code(), c.code) << c.description << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(c.substring), std::string::npos)
        << c.description << ": " << s.error_message();
  }

  // Everyone still serves.
  for (Node* n : {&cloud, &edge, &sched}) EXPECT_TRUE(n->process().Running());
  v1::QueryRequest good;
  good.set_prompt("add 3 and 4; multiply 6 by 7");
  std::vector<v1::QueryEvent> ev;
  const grpc::Status s = RunQuery(stub.get(), good, &ev);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(ev.back().has_answer());
  EXPECT_NE(ev.back().answer().text().find("6*7=42"), std::string::npos)
      << ev.back().answer().text();
}

}  // namespace
}  // namespace pice::testing
