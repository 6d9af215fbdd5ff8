// pice-edge: serves pice.v1.Edge (Expand with an ensemble vote, Load).
//   pice-edge --config edge.yaml [--listen HOST:PORT] [--port-file FILE] [--node NAME]
//             [--log-level L] [--drain-seconds S]
//             (--help: the flags; exit status in common/node_main.h)
#include "edge/edge_config.h"
#include "edge/edge_service.h"
#include "node/node_setup.h"

int main(int argc, char** argv) {
  static constexpr pice::NodeSpec kSpec = {
      "pice-edge", "Serves pice.v1.Edge (Expand with an ensemble vote, Load) with small models.",
      "edge.yaml", /*node_flag=*/true};
  return pice::RunNodeMain(argc, argv, kSpec, [](const pice::NodeFlags& f)
                                                  -> absl::StatusOr<pice::NodeSetup> {
    auto options = pice::LoadEdgeOptions(f.config);
    if (!options.ok()) return options.status();
    if (!f.node.empty()) options->node = f.node;
    return pice::ModelNodeSetup<pice::EdgeService>(*options, pice::v1::Edge::service_full_name());
  });
}
