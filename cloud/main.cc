// pice-cloud: serves pice.v1.Cloud (Sketch, Generate, Expand) with the large model.
//   pice-cloud --config cloud.yaml [--listen HOST:PORT] [--port-file FILE] [--log-level L]
//              [--drain-seconds S]     (--help: the flags; exit status in common/node_main.h)
#include <memory>

#include "cloud/cloud_config.h"
#include "cloud/cloud_service.h"
#include "common/node_main.h"

int main(int argc, char** argv) {
  static constexpr pice::NodeSpec kSpec = {
      "pice-cloud", "Serves pice.v1.Cloud (Sketch, Generate, Expand) with the large model.",
      "cloud.yaml"};
  return pice::RunNodeMain(argc, argv, kSpec, [](const pice::NodeFlags& f)
                                                  -> absl::StatusOr<pice::NodeSetup> {
    auto options = pice::LoadCloudOptions(f.config);
    if (!options.ok()) return options.status();
    pice::NodeSetup setup;
    setup.name = options->node;
    setup.listen = options->listen;
    setup.log_level = options->log_level;
    setup.drain_seconds = options->drain_seconds;
    setup.create = [o = *options]() -> absl::StatusOr<pice::NodeServices> {
      auto service = pice::CloudService::Create(o);
      if (!service.ok()) return service.status();
      std::shared_ptr<pice::CloudService> s = std::move(*service);
      return pice::NodeServices{{{pice::v1::Cloud::service_full_name(), s.get()}},
                                [s] { s->SetDraining(); },
                                [s] { return s->Idle(); },
                                s};
    };
    return setup;
  });
}
