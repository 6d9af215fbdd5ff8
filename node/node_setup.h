// A model node's start-up (common/node_main.h) from its options: the common keys give
// the name, listen address, log level and drain time; `Service::Create(options)` builds
// the service, which must offer SetDraining() and Idle(). pice-cloud and pice-edge:
//   return RunNodeMain(argc, argv, kSpec, [](const NodeFlags& f) -> StatusOr<NodeSetup> {
//     PICE_ASSIGN_OR_RETURN(CloudOptions o, LoadCloudOptions(f.config));
//     return ModelNodeSetup<CloudService>(o, v1::Cloud::service_full_name());
//   });
#ifndef PICE_NODE_NODE_SETUP_H_
#define PICE_NODE_NODE_SETUP_H_

#include <memory>
#include <string>

#include "common/node_main.h"
#include "node/node_config.h"

namespace pice {

template <typename Service, typename Options>
NodeSetup ModelNodeSetup(const Options& options, std::string service_name) {
  const NodeOptions& common = options;
  NodeSetup setup;
  setup.name = common.node;
  setup.listen = common.listen;
  setup.tls = common.tls;
  setup.metrics_listen = common.metrics_listen;
  setup.log_level = common.log_level;
  setup.log_format = common.log_format;
  setup.drain_seconds = common.drain_seconds;
  setup.create = [options, service_name]() -> absl::StatusOr<NodeServices> {
    auto created = Service::Create(options);
    if (!created.ok()) return created.status();
    std::shared_ptr<Service> s = std::move(*created);
    return NodeServices{{{service_name, s.get()}},
                        [s] { s->SetDraining(); },
                        [s] { return s->Idle(); },
                        nullptr,  // SIGHUP: nothing to reload (certificates reload by themselves)
                        s};
  };
  return setup;
}

}  // namespace pice

#endif  // PICE_NODE_NODE_SETUP_H_
