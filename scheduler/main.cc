// pice-scheduler: serves pice.v1.Pice for clients; routes each query to the cloud alone or
// to the cloud's sketch plus the edges' expansions (scheduler.yaml: deploy/scheduler.yaml).
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/logging.h"
#include "common/server.h"
#include "scheduler/config.h"
#include "scheduler/service.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, config, "", "scheduler YAML file (required)");
ABSL_FLAG(std::string, port_file, "", "write the bound port to this file once serving");
ABSL_FLAG(std::string, listen, "", "host:port to listen on; overrides the file's `listen`");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off");
ABSL_FLAG(double, drain_seconds, -1,
          "on SIGTERM: time running queries get to finish; overrides timeouts.drain "
          "(default 30 s)");

int main(int argc, char** argv) {
  pice::BlockShutdownSignals();
  absl::SetProgramUsageMessage("pice-scheduler --config scheduler.yaml [--port_file FILE]");
  absl::ParseCommandLine(argc, argv);
  if (auto s = pice::InitLogging("scheduler", absl::GetFlag(FLAGS_log_level)); !s.ok()) {
    std::fprintf(stderr, "pice-scheduler: --log_level: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  const std::string config = absl::GetFlag(FLAGS_config);
  if (config.empty()) {
    std::fprintf(stderr, "pice-scheduler: --config FILE.yaml is required\n");
    return 2;
  }
  auto options = pice::scheduler::LoadSchedulerOptions(config);
  if (!options.ok()) {
    std::fprintf(stderr, "pice-scheduler: %s\n", std::string(options.status().message()).c_str());
    return 1;
  }
  if (!absl::GetFlag(FLAGS_listen).empty()) options->listen = absl::GetFlag(FLAGS_listen);

  auto scheduler = pice::scheduler::Scheduler::Create(*options);
  pice::ServerOptions so;
  so.listen = options->listen;
  so.port_file = absl::GetFlag(FLAGS_port_file);
  so.drain_seconds = absl::GetFlag(FLAGS_drain_seconds) >= 0 ? absl::GetFlag(FLAGS_drain_seconds)
                                                              : options->drain_timeout_s;
  so.name = "pice-scheduler";
  auto server = pice::GrpcServer::Start(
      so, {{std::string(pice::v1::Pice::service_full_name()), scheduler->service()}});
  if (!server.ok()) {
    std::fprintf(stderr, "pice-scheduler: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  spdlog::info("cloud {}, {} edge(s), policy '{}', escalation threshold {}", options->cloud,
               options->edges.size(), options->policy.name, options->escalation_threshold);
  pice::WaitForShutdownSignal();
  // Draining: health NOT_SERVING, new queries UNAVAILABLE, admitted ones finish (up to
  // the drain timeout), then the server stops and the process exits 0.
  scheduler->service()->SetDraining();
  (*server)->Shutdown(-1, [s = scheduler->service()] { return s->in_flight() == 0; });
  spdlog::info("drained; exiting");
  return 0;
}
