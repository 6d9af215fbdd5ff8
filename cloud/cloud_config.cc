#include "cloud/cloud_config.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/server.h"
#include "engine/status_macros.h"

namespace pice {

absl::Status ReadRequestLimits(const ConfigNode& root, RequestLimits* l) {
  ConfigNode n = root.Child("limits");
  PICE_RETURN_IF_ERROR(n.CheckKeys({"max_question_bytes", "max_question_tokens", "max_tokens",
                                    "max_points",
                                    "max_sketch_points", "max_point_bytes", "max_stop",
                                    "max_stop_bytes"}));
  PICE_RETURN_IF_ERROR(n.ReadInt("max_question_bytes", &l->max_question_bytes, 1, 1 << 24));
  PICE_RETURN_IF_ERROR(n.ReadInt("max_question_tokens", &l->max_question_tokens, 1, 1 << 24));
  PICE_RETURN_IF_ERROR(n.ReadInt("max_tokens", &l->max_tokens, 1, 1 << 20));
  PICE_RETURN_IF_ERROR(n.ReadInt("max_points", &l->max_points, 1, 256));
  PICE_RETURN_IF_ERROR(n.ReadInt("max_sketch_points", &l->max_sketch_points, 1, 1024));
  PICE_RETURN_IF_ERROR(n.ReadInt("max_point_bytes", &l->max_point_bytes, 1, 1 << 20));
  PICE_RETURN_IF_ERROR(n.ReadInt("max_stop", &l->max_stop, 0, 64));
  PICE_RETURN_IF_ERROR(n.ReadInt("max_stop_bytes", &l->max_stop_bytes, 1, 4096));
  return absl::OkStatus();
}

absl::StatusOr<CloudOptions> ParseCloudOptions(const ConfigNode& root) {
  CloudOptions o;
  PICE_RETURN_IF_ERROR(root.CheckKeys({"node", "listen", "model", "template", "threads",
                                       "max_batch", "max_queue", "n_ctx", "drain_seconds",
                                       "log_level", "limits"}));
  PICE_RETURN_IF_ERROR(root.ReadString("node", &o.node, false));
  PICE_RETURN_IF_ERROR(root.ReadString("listen", &o.listen, false));
  if (absl::Status s = ValidateListenAddress(o.listen, "listen"); !s.ok()) {
    return root.ChildError("listen", absl::StrCat("expected host:port with a port in [0, 65535], got \"",
                                                  o.listen, "\""));
  }
  PICE_RETURN_IF_ERROR(root.Require("model"));
  PICE_RETURN_IF_ERROR(root.ReadPath("model", &o.model_path));
  if (!std::filesystem::is_regular_file(o.model_path)) {
    return root.ChildError("model", absl::StrCat("no such file: ", o.model_path));
  }
  PICE_RETURN_IF_ERROR(root.Require("template"));
  PICE_RETURN_IF_ERROR(root.ReadPath("template", &o.template_path));
  if (!std::filesystem::is_regular_file(o.template_path)) {
    return root.ChildError("template", absl::StrCat("no such file: ", o.template_path));
  }
  PICE_RETURN_IF_ERROR(root.ReadInt("threads", &o.threads, 1, 256));
  PICE_RETURN_IF_ERROR(root.ReadInt("max_batch", &o.max_batch, 1, 1024));
  PICE_RETURN_IF_ERROR(root.ReadInt("max_queue", &o.max_queue, 0, 100000));
  PICE_RETURN_IF_ERROR(root.ReadInt("n_ctx", &o.n_ctx, 0, 1 << 20));
  PICE_RETURN_IF_ERROR(root.ReadSeconds("drain_seconds", &o.drain_seconds, 0, 3600));
  PICE_RETURN_IF_ERROR(root.ReadEnum("log_level", &o.log_level,
                                     {"trace", "debug", "info", "warn", "error", "off"}));
  PICE_RETURN_IF_ERROR(ReadRequestLimits(root, &o.limits));
  return o;
}

absl::StatusOr<CloudOptions> LoadCloudOptions(const std::string& path) {
  PICE_ASSIGN_OR_RETURN(ConfigNode root, ConfigNode::LoadFile(path));
  return ParseCloudOptions(root);
}

}  // namespace pice
