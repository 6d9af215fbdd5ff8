// pice-edge: serves pice.v1.Edge (Expand with an ensemble vote, Load).
//   pice-edge --config edge.yaml [--port_file FILE] [--listen HOST:PORT] [--node NAME]
//             [--log_level L]
// Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when the server cannot start,
// 2 for a bad flag or config.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/logging.h"
#include "common/server.h"
#include "edge/edge_config.h"
#include "edge/edge_service.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, config, "", "edge.yaml (required)");
ABSL_FLAG(std::string, port_file, "", "write the bound port here once serving (for port 0)");
ABSL_FLAG(std::string, listen, "", "host:port; overrides the config's listen");
ABSL_FLAG(std::string, node, "", "node name; overrides the config's node (several edges, one file)");
ABSL_FLAG(std::string, log_level, "", "trace|debug|info|warn|error|off; overrides the config");

int main(int argc, char** argv) {
  pice::BlockShutdownSignals();
  absl::SetProgramUsageMessage(
      "pice-edge --config edge.yaml [--port_file FILE] [--listen HOST:PORT] [--node NAME] "
      "[--log_level L]");
  absl::ParseCommandLine(argc, argv);
  const std::string config = absl::GetFlag(FLAGS_config);
  if (config.empty()) {
    std::fprintf(stderr, "pice-edge: --config FILE.yaml is required\n");
    return 2;
  }
  auto options = pice::LoadEdgeOptions(config);
  if (!options.ok()) {
    std::fprintf(stderr, "pice-edge: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  if (!absl::GetFlag(FLAGS_listen).empty()) options->listen = absl::GetFlag(FLAGS_listen);
  if (!absl::GetFlag(FLAGS_node).empty()) options->node = absl::GetFlag(FLAGS_node);
  if (!absl::GetFlag(FLAGS_log_level).empty()) options->log_level = absl::GetFlag(FLAGS_log_level);
  if (auto s = pice::ValidateListenAddress(options->listen, "--listen"); !s.ok()) {
    std::fprintf(stderr, "pice-edge: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (auto s = pice::InitLogging(options->node, options->log_level); !s.ok()) {
    std::fprintf(stderr, "pice-edge: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  auto service = pice::EdgeService::Create(*options);
  if (!service.ok()) {
    spdlog::error("{}", std::string(service.status().message()));
    return 2;
  }
  pice::ServerOptions so;
  so.listen = options->listen;
  so.port_file = absl::GetFlag(FLAGS_port_file);
  so.drain_seconds = options->drain_seconds;
  so.name = options->node;
  auto server = pice::GrpcServer::Start(
      so, {{pice::v1::Edge::service_full_name(), service->get()}});
  if (!server.ok()) {
    spdlog::error("{}", std::string(server.status().message()));
    return 1;
  }
  pice::WaitForShutdownSignal();
  // Draining: Expand refuses new calls (UNAVAILABLE), Load and health say so, running
  // calls finish (up to drain_seconds), then the server stops.
  (*service)->SetDraining();
  (*server)->Shutdown(-1, [s = service->get()] { return s->Idle(); });
  return 0;
}
