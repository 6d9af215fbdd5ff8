#include "cloud/cloud_config.h"

#include "common/status_macros.h"

namespace pice {

absl::StatusOr<CloudOptions> ParseCloudOptions(const ConfigNode& root) {
  CloudOptions o;
  PICE_RETURN_IF_ERROR(ReadNodeOptions(root, {"model", "backend", "max_queue"}, &o));
  PICE_RETURN_IF_ERROR(ReadModelOrBackend(root, &o.model_path, &o.remote));
  PICE_RETURN_IF_ERROR(root.ReadInt("max_queue", &o.max_queue, 0, 100000));
  return o;
}

absl::StatusOr<CloudOptions> LoadCloudOptions(const std::string& path) {
  PICE_ASSIGN_OR_RETURN(ConfigNode root, ConfigNode::LoadFile(path));
  return ParseCloudOptions(root);
}

}  // namespace pice
