// pice local: the embedded default. Starts the cloud, the edges and the scheduler in this
// process on 127.0.0.1 with the bundled pice-arith models (cli/local_stack.cc), then either
// answers a question given on the command line and exits, or serves until SIGINT/SIGTERM.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "common/args.h"
#include "cli/commands.h"
#include "cli/local_stack.h"
#include "cli/query_options.h"
#include "common/logging.h"
#include "common/server.h"

namespace pice::cli {

int RunLocal(const std::vector<std::string>& args) {
  // Before any thread starts, so that the serving mode can wait for SIGINT/SIGTERM.
  BlockShutdownSignals();
  auto a = Args::Parse(args, QueryValueFlags({"config", "port", "models", "log-level", "http-port", "api-keys",
                                             "metrics-port", "log-format"}),
                       {"json", "print-config"});
  if (!a.ok()) return Fail("local", std::string(a.status().message()), 2);
  if (a->Flag("print-config")) {
    std::fputs(DefaultLocalConfig(), stdout);
    return 0;
  }
  const bool one_shot = !a->positional().empty();
  // A one-shot question takes a free port unless --port says otherwise, so that it never
  // collides with a running scheduler.
  auto port = a->Int("port", one_shot ? 0 : 50051, 0, 65535);
  if (!port.ok()) return Fail("local", std::string(port.status().message()), 2);
  QueryFlags q;
  if (one_shot) {
    auto parsed = ParseQueryFlags(*a);
    if (!parsed.ok()) return Fail("local", std::string(parsed.status().message()), 2);
    q = *std::move(parsed);
  }
  const std::string level = a->Str("log-level", one_shot ? "warn" : "info");
  if (auto s = InitLogging("local", level, a->Str("log-format", "text")); !s.ok()) {
    return Fail("local", std::string(s.message()), 2);
  }

  LocalOptions lo;
  lo.config_path = a->Str("config");
  lo.port = static_cast<int>(*port);
  lo.models_dir = a->Str("models");
  auto http_port = a->Int("http-port", -1, -1, 65535);
  if (!http_port.ok()) return Fail("local", std::string(http_port.status().message()), 2);
  lo.http_port = static_cast<int>(*http_port);
  lo.api_keys_file = a->Str("api-keys");
  lo.tls_dir = a->Str("tls-dir");
  auto metrics_port = a->Int("metrics-port", -1, -1, 65535);
  if (!metrics_port.ok()) return Fail("local", std::string(metrics_port.status().message()), 2);
  lo.metrics_port = static_cast<int>(*metrics_port);
  auto stack = LocalStack::Start(lo);
  if (!stack.ok()) return Fail("local", std::string(stack.status().message()));

  if (one_shot) {
    const int rc = SendQuery("local", (*stack)->address(), q);
    (*stack)->Shutdown();
    return rc;
  }
  std::printf("pice local: scheduler on %s (nodes: %s); try\n  pice query --target %s%s "
              "\"add 3 and 4; multiply 6 by 7\"\nCtrl-C stops.\n",
              (*stack)->address().c_str(), absl::StrJoin((*stack)->node_addresses(), ", ").c_str(),
              (*stack)->address().c_str(),
              lo.tls_dir.empty() ? "" : (" --tls-dir " + lo.tls_dir).c_str());
  if ((*stack)->http_port() >= 0) {
    std::printf("OpenAI API on %s://127.0.0.1:%d/v1 (models pice-auto, pice-sketch, pice-cloud)\n",
                lo.tls_dir.empty() ? "http" : "https", (*stack)->http_port());
  }
  if ((*stack)->metrics_port() >= 0) {
    std::printf("Prometheus metrics on http://127.0.0.1:%d/metrics\n", (*stack)->metrics_port());
  }
  std::fflush(stdout);
  WaitForShutdownSignal();
  (*stack)->Shutdown();
  return 0;
}

}  // namespace pice::cli
