#include "cloud/cloud_config.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace pice {

absl::StatusOr<CloudOptions> ParseCloudOptions(const ConfigNode& root) {
  CloudOptions o;
  PICE_RETURN_IF_ERROR(ReadNodeOptions(root, {"model", "max_queue"}, &o));
  PICE_RETURN_IF_ERROR(root.Require("model"));
  PICE_RETURN_IF_ERROR(root.ReadPath("model", &o.model_path));
  if (!std::filesystem::is_regular_file(o.model_path)) {
    return root.ChildError("model", absl::StrCat("no such file: ", o.model_path));
  }
  PICE_RETURN_IF_ERROR(root.ReadInt("max_queue", &o.max_queue, 0, 100000));
  return o;
}

absl::StatusOr<CloudOptions> LoadCloudOptions(const std::string& path) {
  PICE_ASSIGN_OR_RETURN(ConfigNode root, ConfigNode::LoadFile(path));
  return ParseCloudOptions(root);
}

}  // namespace pice
