// One request id end to end (issue 13): the scheduler's id reaches the cloud and the edge (in
// the requests and as x-request-id metadata), and every node's log has a line about the query
// carrying it; with `log_format: json` every log line is one JSON object with the id as a field.
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "nlohmann/json.hpp"
#include "tests/integration/harness.h"

namespace pice::testing {
namespace {

using json = nlohmann::json;

TEST(TraceTest, OneRequestIdInEveryNodesJsonLog) {
  TempDir dir;
  const std::string logs = "log_level: info\nlog_format: json\n";
  Node cloud(dir, "cloud", "pice-cloud",
             "node: cloud\nlisten: 127.0.0.1:0\nmodel: " + ModelsDir() +
                 "/arith-cloud-f16.gguf\ntemplate: " + TemplatesDir() +
                 "/pice-arith.yaml\nthreads: 1\n" + logs);
  Node edge(dir, "edge-1", "pice-edge",
            "node: edge-1\nlisten: 127.0.0.1:0\ntemplate: " + TemplatesDir() +
                "/pice-arith.yaml\nthreads: 1\nensemble:\n  - {name: a, model: " + ModelsDir() +
                "/arith-edge-a-q8_0.gguf}\n" + logs);
  std::string why;
  ASSERT_TRUE(cloud.Ready(&why)) << why;
  ASSERT_TRUE(edge.Ready(&why)) << why;
  Node sched(dir, "scheduler", "pice-scheduler",
             "listen: 127.0.0.1:0\ncloud: " + cloud.address() + "\nedges: [" + edge.address() +
                 "]\ntimeouts: {load_poll: 100ms}\nescalation: {threshold: 0}\nlog_format: json\n");
  ASSERT_TRUE(sched.Ready(&why)) << why;

  std::string out;
  ASSERT_EQ(RunCommand(BinDir() + "/pice query --json --route sketch --request-id trace-me-123 "
                       "--target " + sched.address() + " 'add 3 and 4; multiply 6 by 7'", &out),
            0) << out;
  EXPECT_NE(out.find("\"request_id\":\"trace-me-123\""), std::string::npos) << "pice query --json";

  for (Node* n : {&sched, &cloud, &edge}) {
    // The log lines reach the file as they are written; give the last ones a moment.
    bool found = false;
    std::string text;
    for (int i = 0; i < 50 && !found; ++i) {
      text = n->process().Stderr();
      found = text.find("\"request_id\":\"trace-me-123\"") != std::string::npos;
      if (!found) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_TRUE(found) << "no line about the query in this node's log:\n" << text;
    std::istringstream lines(text);
    std::string line;
    int parsed = 0;
    while (std::getline(lines, line)) {
      if (line.empty()) continue;
      json j = json::parse(line, nullptr, false);
      ASSERT_FALSE(j.is_discarded()) << "not JSON: " << line;
      EXPECT_TRUE(j.contains("time") && j.contains("level") && j.contains("msg")) << line;
      if (j.value("request_id", "") == "trace-me-123") {
        EXPECT_NE(j["msg"].get<std::string>().find("trace-me-123"), std::string::npos);
      }
      ++parsed;
    }
    EXPECT_GT(parsed, 0);
  }
}

}  // namespace
}  // namespace pice::testing
