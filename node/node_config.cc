#include "node/node_config.h"

#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/server.h"
#include "common/status_macros.h"

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

absl::Status ReadNodeOptions(const ConfigNode& root, const std::set<std::string>& own_keys,
                             NodeOptions* o) {
  std::vector<std::string> keys = {"node",  "listen", "tls", "metrics_listen", "template",  "threads",   "max_batch",
                                   "n_ctx", "limits", "drain_seconds", "log_level",
                                   "log_format"};
  keys.insert(keys.end(), own_keys.begin(), own_keys.end());
  PICE_RETURN_IF_ERROR(root.CheckKeys(keys));
  PICE_RETURN_IF_ERROR(root.ReadString("node", &o->node, false));
  PICE_RETURN_IF_ERROR(root.ReadString("listen", &o->listen, false));
  if (!ValidateListenAddress(o->listen, "listen").ok()) {
    return root.ChildError("listen", absl::StrCat("expected host:port with a port in [0, 65535], got \"",
                                                  o->listen, "\""));
  }
  PICE_RETURN_IF_ERROR(ReadServerTls(root, "tls", &o->tls));
  if (root.Has("metrics_listen")) {
    PICE_RETURN_IF_ERROR(root.ReadString("metrics_listen", &o->metrics_listen, false));
    if (auto s = ValidateListenAddress(o->metrics_listen, "metrics_listen"); !s.ok()) {
      return root.ChildError("metrics_listen", std::string(s.message()));
    }
  }
  PICE_RETURN_IF_ERROR(root.Require("template"));
  PICE_RETURN_IF_ERROR(root.ReadPath("template", &o->template_path));
  if (std::error_code ec; !std::filesystem::is_regular_file(o->template_path, ec)) {
    return root.ChildError("template", absl::StrCat("no such file: ", o->template_path));
  }
  PICE_RETURN_IF_ERROR(root.ReadInt("threads", &o->threads, 1, 256));
  PICE_RETURN_IF_ERROR(root.ReadInt("max_batch", &o->max_batch, 1, 1024));
  PICE_RETURN_IF_ERROR(root.ReadInt("n_ctx", &o->n_ctx, 0, 1 << 20));
  PICE_RETURN_IF_ERROR(root.ReadSeconds("drain_seconds", &o->drain_seconds, 0, 3600));
  PICE_RETURN_IF_ERROR(root.ReadEnum("log_level", &o->log_level,
                                     {"trace", "debug", "info", "warn", "error", "off"}));
  PICE_RETURN_IF_ERROR(root.ReadEnum("log_format", &o->log_format, {"text", "json"}));
  return ReadRequestLimits(root, &o->limits);
}

}  // namespace pice
