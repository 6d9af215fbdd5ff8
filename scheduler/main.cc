// pice-scheduler: serves pice.v1.Pice for clients; routes each query to the cloud alone or
// to the cloud's sketch plus the edges' expansions (scheduler.yaml: deploy/scheduler.yaml).
//   pice-scheduler --config scheduler.yaml [--listen HOST:PORT] [--port-file FILE]
//                  [--log-level L] [--drain-seconds S]
//                  (--help: the flags; exit status in common/node_main.h)
#include <memory>

#include "common/node_main.h"
#include "scheduler/config.h"
#include "scheduler/service.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  static constexpr pice::NodeSpec kSpec = {
      "pice-scheduler",
      "Serves pice.v1.Pice (Query) for clients in front of pice-cloud replicas and N pice-edge nodes.",
      "scheduler.yaml"};
  return pice::RunNodeMain(argc, argv, kSpec, [](const pice::NodeFlags& f)
                                                  -> absl::StatusOr<pice::NodeSetup> {
    auto options = pice::scheduler::LoadSchedulerOptions(f.config);
    if (!options.ok()) return options.status();
    pice::NodeSetup setup;
    setup.name = "scheduler";
    setup.listen = options->listen;
    setup.tls = options->tls;
    setup.metrics_listen = options->metrics_listen;
    setup.log_format = options->log_format;
    setup.log_level = "info";
    setup.drain_seconds = options->drain_timeout_s;
    setup.create = [o = *options]() -> absl::StatusOr<pice::NodeServices> {
      std::shared_ptr<pice::scheduler::Scheduler> s = pice::scheduler::Scheduler::Create(o);
      if (!o.http_listen.empty()) {
        if (auto port = s->ServeHttp(o.http_listen); !port.ok()) return port.status();
      }
      return pice::NodeServices{{{pice::v1::Pice::service_full_name(), s->service()}},
                                [s] { s->service()->SetDraining(); },
                                [s] { return s->service()->in_flight() == 0; },
                                [s] { (void)s->service()->ReloadPolicy(); },
                                s};
    };
    setup.after_start = [o = *options] {
      std::string clouds;
      for (const auto& c : o.clouds) clouds += (clouds.empty() ? "" : ", ") + c.address;
      for (const auto& c : o.cloud_sources) clouds += (clouds.empty() ? "" : ", ") + c.Describe();
      spdlog::info("cloud {}, {} edge(s), policy '{}', escalation threshold {}", clouds,
                   o.edges.size() + o.edge_sources.size(), o.policy.name, o.escalation_threshold);
    };
    return setup;
  });
}
