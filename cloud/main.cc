// pice-cloud: serves pice.v1.Cloud (Sketch, Generate, Expand) with the large model.
//   pice-cloud --config cloud.yaml [--listen HOST:PORT] [--port-file FILE] [--log-level L]
//              [--drain-seconds S]     (--help: the flags; exit status in common/node_main.h)
#include "cloud/cloud_config.h"
#include "cloud/cloud_service.h"
#include "node/node_setup.h"

int main(int argc, char** argv) {
  static constexpr pice::NodeSpec kSpec = {
      "pice-cloud", "Serves pice.v1.Cloud (Sketch, Generate, Expand) with the large model.",
      "cloud.yaml"};
  return pice::RunNodeMain(argc, argv, kSpec, [](const pice::NodeFlags& f)
                                                  -> absl::StatusOr<pice::NodeSetup> {
    auto options = pice::LoadCloudOptions(f.config);
    if (!options.ok()) return options.status();
    return pice::ModelNodeSetup<pice::CloudService>(*options,
                                                    pice::v1::Cloud::service_full_name());
  });
}
