// Cancellation reaching the nodes, and configuration errors that name their key, with the
// real binaries as separate processes.
#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/integration/harness.h"

namespace pice::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

v1::LoadResponse Load(v1::Edge::Stub* stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + milliseconds(500));
  v1::LoadRequest req;
  v1::LoadResponse resp;
  (void)stub->Load(&ctx, req, &resp);
  return resp;
}

// An edge whose model is a random `pice gen-model` network: it never says EOS, so an
// expansion with a large max_tokens runs for seconds, long enough to cancel it.
TEST(CancellationTest, CancellingAQueryStopsTheEdgeWork) {
  TempDir dir;
  const std::string slow = dir.File("slow.gguf");
  std::string out;
  ASSERT_EQ(RunCommand(BinDir() + "/pice gen-model --arch llama --n-embd 384 --n-layer 8 "
                                  "--n-head 6 --n-head-kv 6 --n-ff 1024 --n-vocab 1024 "
                                  "--type f32 --n-ctx 2048 --out " + slow,
                       &out),
            0)
      << out;
  Node cloud(dir, "cloud", "pice-cloud",
             "listen: 127.0.0.1:0\nmodel: " + ModelsDir() + "/arith-cloud-f16.gguf\ntemplate: " +
                 TemplatesDir() + "/pice-arith.yaml\nthreads: 1\nlog_level: warn\n");
  Node edge(dir, "edge", "pice-edge",
            "node: slow-edge\nlisten: 127.0.0.1:0\ntemplate: " + TemplatesDir() +
                "/pice-arith.yaml\nthreads: 1\nlog_level: warn\nensemble:\n"
                "  - {name: slow, model: " + slow + "}\n");
  std::string why;
  ASSERT_TRUE(cloud.Ready(&why)) << why;
  ASSERT_TRUE(edge.Ready(&why)) << why;
  Node sched(dir, "scheduler", "pice-scheduler",
             "listen: 127.0.0.1:0\ncloud: " + cloud.address() + "\nedges: [" + edge.address() +
                 "]\nescalation: {threshold: 0}\ntimeouts: {load_poll: 100ms}\n");
  ASSERT_TRUE(sched.Ready(&why)) << why;

  auto edge_stub =
      v1::Edge::NewStub(grpc::CreateChannel(edge.address(), grpc::InsecureChannelCredentials()));
  auto stub =
      v1::Pice::NewStub(grpc::CreateChannel(sched.address(), grpc::InsecureChannelCredentials()));
  v1::QueryRequest req;
  req.set_prompt("add 3 and 4; multiply 6 by 7");
  req.set_route(v1::ROUTE_SKETCH);
  req.mutable_params()->set_max_tokens(1000);
  grpc::ClientContext ctx;
  auto reader = stub->Query(&ctx, req);
  v1::QueryEvent ev;
  bool point = false;
  while (!point && reader->Read(&ev)) point = ev.has_sketch_point();
  ASSERT_TRUE(point);
  // The expansion is running on the edge.
  const auto until = steady_clock::now() + std::chrono::seconds(10);
  while (Load(edge_stub.get()).active() == 0 && steady_clock::now() < until) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_GT(Load(edge_stub.get()).active(), 0);

  const auto t0 = steady_clock::now();
  ctx.TryCancel();
  while (reader->Read(&ev)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  v1::LoadResponse load = Load(edge_stub.get());
  while ((load.active() > 0 || load.queue_depth() > 0) &&
         steady_clock::now() - t0 < std::chrono::seconds(5)) {
    std::this_thread::sleep_for(milliseconds(10));
    load = Load(edge_stub.get());
  }
  EXPECT_EQ(load.active(), 0);
  EXPECT_EQ(load.queue_depth(), 0);
  // Generating 1000 tokens takes far longer than this on this model.
  EXPECT_LT(steady_clock::now() - t0, std::chrono::seconds(2));
}

// Each binary refuses a bad file: exit status 2 (as the README says), stderr names the
// file and the key.
TEST(ConfigErrorTest, EveryBinaryNamesTheBadKey) {
  TempDir dir;
  struct Case {
    std::string binary, yaml, key;
  };
  const std::string model = ModelsDir() + "/arith-cloud-f16.gguf";
  const std::string tmpl = TemplatesDir() + "/pice-arith.yaml";
  const std::vector<Case> cases = {
      {"pice-scheduler", "cloud: 127.0.0.1:1\nescalation: {threshold: high}\n",
       "escalation.threshold"},
      {"pice-scheduler", "cloud: 127.0.0.1:1\npolicy:\n  rules:\n    - {route: sideways}\n",
       "policy.rules[0].route"},
      {"pice-scheduler", "cloud: 127.0.0.1:1\nedgez: []\n", "edgez"},
      {"pice-cloud", "model: " + model + "\ntemplate: " + tmpl + "\nthreads: many\n", "threads"},
      {"pice-edge",
       "template: " + tmpl + "\nselection: {method: vote}\nensemble:\n  - {name: a, model: " +
           model + "}\n",
       "selection.method"},
  };
  int i = 0;
  for (const Case& c : cases) {
    const std::string name = "bad" + std::to_string(i++);
    Node node(dir, name, c.binary, c.yaml);
    const int rc = node.process().WaitExit(std::chrono::seconds(30));
    EXPECT_EQ(rc, 2) << c.binary << " should refuse: " << c.yaml;
    const std::string err = node.process().Stderr();
    EXPECT_NE(err.find(c.key), std::string::npos) << c.binary << ": " << err;
    EXPECT_NE(err.find(name + ".yaml"), std::string::npos) << c.binary << ": " << err;
  }
}

// Issue 8.11: every binary and every pice subcommand answers --help with its flags and
// exit status 0; the underscore spelling of a flag is the same flag.
TEST(HelpTest, EveryBinaryAndSubcommandAnswersHelp) {
  struct Case {
    std::vector<std::string> argv;
    std::string expect;  // a flag the text must name
  };
  const std::vector<Case> cases = {
      {{"pice-cloud", "--help"}, "--port-file"},
      {{"pice-edge", "--help"}, "--node"},
      {{"pice-scheduler", "-h"}, "--drain-seconds"},
      {{"pice", "--help"}, "bench chaos"},
      {{"pice", "generate", "--help"}, "--max-tokens"},
      {{"pice", "tokenize", "--help"}, "--parse-special"},
      {{"pice", "gen-model", "--help"}, "--n-head-kv"},
      {{"pice", "query", "--help"}, "--route"},
      {{"pice", "local", "--help"}, "--models"},
      {{"pice", "bench", "engine", "--help"}, "--shared-prefix"},
      {{"pice", "bench", "quality", "--help"}, "--thresholds"},
      {{"pice", "bench", "e2e", "--help"}, "--overhead-queries"},
      {{"pice", "bench", "chaos", "--help"}, "--kill-interval-ms"},
      {{"pice-engine", "generate", "--help"}, "--prompt"},
  };
  TempDir dir;
  int i = 0;
  for (const Case& c : cases) {
    std::vector<std::string> argv = c.argv;
    argv[0] = BinDir() + "/" + argv[0];
    Process p(argv, dir.File("help" + std::to_string(i++)));
    EXPECT_EQ(p.WaitExit(std::chrono::seconds(30)), 0) << argv[0] << " " << c.argv.back();
    EXPECT_NE(p.Stdout().find(c.expect), std::string::npos)
        << c.argv[0] << " " << c.argv.back() << ": " << p.Stdout();
  }
  // --port_file and --port-file are one flag: an unknown spelling is refused with 2.
  Process bad({BinDir() + "/pice-edge", "--config", "x.yaml", "--port_fiel", "p"},
              dir.File("bad"));
  EXPECT_EQ(bad.WaitExit(std::chrono::seconds(30)), 2);
  EXPECT_NE(bad.Stderr().find("--port-fiel"), std::string::npos) << bad.Stderr();
}

}  // namespace
}  // namespace pice::testing
