// pice-edge: serves pice.v1.Edge (Expand with an ensemble vote, Load).
//   pice-edge --config edge.yaml [--listen HOST:PORT] [--port-file FILE] [--node NAME]
//             [--log-level L] [--drain-seconds S]
//             (--help: the flags; exit status in common/node_main.h)
#include <memory>

#include "common/node_main.h"
#include "edge/edge_config.h"
#include "edge/edge_service.h"

int main(int argc, char** argv) {
  static constexpr pice::NodeSpec kSpec = {
      "pice-edge", "Serves pice.v1.Edge (Expand with an ensemble vote, Load) with small models.",
      "edge.yaml", /*node_flag=*/true};
  return pice::RunNodeMain(argc, argv, kSpec, [](const pice::NodeFlags& f)
                                                  -> absl::StatusOr<pice::NodeSetup> {
    auto options = pice::LoadEdgeOptions(f.config);
    if (!options.ok()) return options.status();
    if (!f.node.empty()) options->node = f.node;
    pice::NodeSetup setup;
    setup.name = options->node;
    setup.listen = options->listen;
    setup.log_level = options->log_level;
    setup.drain_seconds = options->drain_seconds;
    setup.create = [o = *options]() -> absl::StatusOr<pice::NodeServices> {
      auto service = pice::EdgeService::Create(o);
      if (!service.ok()) return service.status();
      std::shared_ptr<pice::EdgeService> s = std::move(*service);
      return pice::NodeServices{{{pice::v1::Edge::service_full_name(), s.get()}},
                                [s] { s->SetDraining(); },
                                [s] { return s->Idle(); },
                                s};
    };
    return setup;
  });
}
