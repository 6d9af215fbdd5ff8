#include "scheduler/config.h"

#include "scheduler/discovery.h"

#include "scheduler/api_keys.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace pice::scheduler {
namespace {

absl::Status CheckAddress(const ConfigNode& n, std::string_view key, const std::string& a) {
  const size_t colon = a.rfind(':');
  if (a.empty() || colon == std::string::npos || colon + 1 == a.size()) {
    return n.ChildError(key, absl::StrCat("expected host:port, got \"", a, "\""));
  }
  return absl::OkStatus();
}

}  // namespace

// `key:` as one host:port (the cloud's old form) or a list of entries: host:port,
// {name, address} or {dns, refresh, server} (scheduler/discovery.h).
static absl::Status ReadNodeList(const ConfigNode& root, const std::string& key, const char* kind,
                          std::vector<EdgeAddress>* fixed, std::vector<EdgeSource>* sources) {
  const ConfigNode list = root.Child(key);
  if (list.IsScalar() && key == "cloud") {
    EdgeAddress a;
    PICE_RETURN_IF_ERROR(root.ReadString(key, &a.address, false));
    PICE_RETURN_IF_ERROR(CheckAddress(root, key, a.address));
    fixed->push_back(a);
    return absl::OkStatus();
  }
  if (!list.IsList()) return list.Error("expected a list of host:port addresses");
  if (list.size() == 0 && key == "cloud") return list.Error("expected at least one cloud");
  for (size_t i = 0; i < list.size(); ++i) {
    const ConfigNode e = list.At(i);
    EdgeAddress ea{absl::StrCat(kind, "-", i), ""};
    if (e.IsScalar()) {
      PICE_ASSIGN_OR_RETURN(ea.address, e.AsString());
      PICE_RETURN_IF_ERROR(CheckAddress(list, absl::StrCat("[", i, "]"), ea.address));
    } else if (e.Has("dns")) {
      // Every A/AAAA record of a name (scheduler/discovery.h).
      PICE_RETURN_IF_ERROR(e.CheckKeys({"dns", "refresh", "server"}));
      EdgeSource src;
      std::string dns;
      PICE_RETURN_IF_ERROR(e.ReadString("dns", &dns, false));
      PICE_RETURN_IF_ERROR(CheckAddress(e, "dns", dns));
      src.dns_host = dns.substr(0, dns.rfind(':'));
      (void)absl::SimpleAtoi(dns.substr(dns.rfind(':') + 1), &src.port);
      if (src.port <= 0) return e.ChildError("dns", "expected name:port with a port > 0");
      PICE_RETURN_IF_ERROR(e.ReadSeconds("refresh", &src.refresh_s, 0.05, 86400));
      PICE_RETURN_IF_ERROR(e.ReadString("server", &src.server));
      if (!src.server.empty()) PICE_RETURN_IF_ERROR(CheckAddress(e, "server", src.server));
      sources->push_back(std::move(src));
      continue;
    } else {
      PICE_RETURN_IF_ERROR(e.CheckKeys({"name", "address", "dns", "refresh", "server"}));
      PICE_RETURN_IF_ERROR(e.Require("address"));
      PICE_RETURN_IF_ERROR(e.ReadString("name", &ea.name, false));
      PICE_RETURN_IF_ERROR(e.ReadString("address", &ea.address, false));
      PICE_RETURN_IF_ERROR(CheckAddress(e, "address", ea.address));
    }
    fixed->push_back(ea);
  }
  return absl::OkStatus();
}

absl::StatusOr<SchedulerOptions> ParseSchedulerOptions(const ConfigNode& root) {
  PICE_RETURN_IF_ERROR(root.CheckKeys({"listen", "http_listen", "http_max_body_bytes", "api_keys_file", "cloud",
                                       "tls", "node_tls", "cache", "metrics_listen",
                                       "log_format",
                                       "edges", "edges_file", "policy", "policy_file",
                                       "escalation", "limits", "timeouts", "answer", "health",
                                       "degraded"}));
  SchedulerOptions o;
  PICE_RETURN_IF_ERROR(root.ReadString("listen", &o.listen, false));
  PICE_RETURN_IF_ERROR(CheckAddress(root, "listen", o.listen));
  if (root.Has("http_listen")) {
    PICE_RETURN_IF_ERROR(root.ReadString("http_listen", &o.http_listen, false));
    PICE_RETURN_IF_ERROR(CheckAddress(root, "http_listen", o.http_listen));
  }
  if (root.Has("metrics_listen")) {
    PICE_RETURN_IF_ERROR(root.ReadString("metrics_listen", &o.metrics_listen, false));
    PICE_RETURN_IF_ERROR(CheckAddress(root, "metrics_listen", o.metrics_listen));
  }
  PICE_RETURN_IF_ERROR(root.ReadEnum("log_format", &o.log_format, {"text", "json"}));
  PICE_RETURN_IF_ERROR(ReadServerTls(root, "tls", &o.tls));
  PICE_RETURN_IF_ERROR(ReadClientTls(root, "node_tls", &o.node_tls));
  PICE_RETURN_IF_ERROR(ReadCacheOptions(root, &o.cache));
  PICE_RETURN_IF_ERROR(root.ReadInt("http_max_body_bytes", &o.http_max_body_bytes, 1024, 1 << 28));
  if (root.Has("api_keys_file")) {
    PICE_RETURN_IF_ERROR(root.ReadPath("api_keys_file", &o.api_keys_file));
    if (auto keys = ApiKeys::Load(o.api_keys_file); !keys.ok()) {
      return root.ChildError("api_keys_file", std::string(keys.status().message()));
    }
  }
  PICE_RETURN_IF_ERROR(root.Require("cloud"));
  PICE_RETURN_IF_ERROR(ReadNodeList(root, "cloud", "cloud", &o.clouds, &o.cloud_sources));
  if (root.Has("edges")) {
    PICE_RETURN_IF_ERROR(ReadNodeList(root, "edges", "edge", &o.edges, &o.edge_sources));
  }
  if (root.Has("edges_file")) {
    EdgeSource src;
    PICE_RETURN_IF_ERROR(root.ReadPath("edges_file", &src.file));
    src.refresh_s = 1;
    if (auto edges = ReadEdgesFile(src.file); !edges.ok()) {
      return root.ChildError("edges_file", std::string(edges.status().message()));
    }
    o.edge_sources.push_back(std::move(src));
  }
  if (root.Has("policy") && root.Has("policy_file")) {
    return root.ChildError("policy_file", "give either policy or policy_file, not both");
  }
  if (root.Has("policy_file")) {
    std::string path;
    PICE_RETURN_IF_ERROR(root.ReadPath("policy_file", &path));
    auto p = LoadPolicyFile(path);
    if (!p.ok()) {
      return absl::Status(p.status().code(),
                          absl::StrCat(root.file(), ": policy_file: ", p.status().message()));
    }
    o.policy = *std::move(p);
    o.policy_file = path;
  } else if (root.Has("policy") && root.Child("policy").IsScalar()) {
    std::string name;
    PICE_RETURN_IF_ERROR(root.ReadEnum("policy", &name, {"general", "pice-arith"}));
    PICE_ASSIGN_OR_RETURN(o.policy, BuiltinPolicy(name));
  } else if (root.Has("policy")) {
    PICE_ASSIGN_OR_RETURN(o.policy, ParsePolicy(root.Child("policy")));
  } else {
    PICE_ASSIGN_OR_RETURN(o.policy, BuiltinPolicy("general"));
  }
  if (root.Has("escalation")) {
    const ConfigNode e = root.Child("escalation");
    PICE_RETURN_IF_ERROR(e.CheckKeys({"threshold", "min_confidence", "on_edge_failure"}));
    std::string off;
    if (e.Has("min_confidence") && e.ReadEnum("min_confidence", &off, {"off"}).ok()) {
      o.escalation_min_confidence = -std::numeric_limits<double>::infinity();
    } else {
      PICE_RETURN_IF_ERROR(e.ReadDouble("min_confidence", &o.escalation_min_confidence, -1e6, 0));
    }
    PICE_RETURN_IF_ERROR(e.ReadDouble("threshold", &o.escalation_threshold, 0, 1));
    PICE_RETURN_IF_ERROR(e.ReadBool("on_edge_failure", &o.escalate_on_edge_failure));
  }
  if (root.Has("limits")) {
    const ConfigNode l = root.Child("limits");
    PICE_RETURN_IF_ERROR(l.CheckKeys({"max_prompt_bytes", "max_points", "default_max_tokens",
                                      "max_tokens", "max_concurrent_queries",
                                      "max_queries_per_client", "max_edge_attempts",
                                      "max_stop", "max_stop_bytes", "max_category_bytes"}));
    PICE_RETURN_IF_ERROR(l.ReadInt("max_prompt_bytes", &o.max_prompt_bytes, 1, 1 << 24));
    PICE_RETURN_IF_ERROR(l.ReadInt("max_points", &o.max_points, 1, 256));
    PICE_RETURN_IF_ERROR(l.ReadInt("max_tokens", &o.max_tokens, 1, 1 << 20));
    PICE_RETURN_IF_ERROR(l.ReadInt("default_max_tokens", &o.default_max_tokens, 1, o.max_tokens));
    PICE_RETURN_IF_ERROR(l.ReadInt("max_concurrent_queries", &o.max_concurrent_queries, 1, 1 << 20));
    PICE_RETURN_IF_ERROR(l.ReadInt("max_edge_attempts", &o.max_edge_attempts, 1, 64));
    PICE_RETURN_IF_ERROR(
        l.ReadInt("max_queries_per_client", &o.max_queries_per_client, 0, 1 << 20));
    PICE_RETURN_IF_ERROR(l.ReadInt("max_stop", &o.max_stop, 0, 64));
    PICE_RETURN_IF_ERROR(l.ReadInt("max_stop_bytes", &o.max_stop_bytes, 1, 4096));
    PICE_RETURN_IF_ERROR(l.ReadInt("max_category_bytes", &o.max_category_bytes, 1, 4096));
  }
  if (root.Has("health")) {
    const ConfigNode h = root.Child("health");
    PICE_RETURN_IF_ERROR(h.CheckKeys({"eject_after", "eject_base", "eject_max"}));
    PICE_RETURN_IF_ERROR(h.ReadInt("eject_after", &o.eject_after_failures, 1, 1000));
    PICE_RETURN_IF_ERROR(h.ReadSeconds("eject_base", &o.eject_base_s, 0.001, 3600));
    PICE_RETURN_IF_ERROR(h.ReadSeconds("eject_max", &o.eject_max_s, 0.001, 86400));
    if (o.eject_max_s < o.eject_base_s) {
      if (h.Has("eject_max")) return h.ChildError("eject_max", "must be at least eject_base");
      o.eject_max_s = o.eject_base_s;
    }
  }
  if (root.Has("degraded")) {
    const ConfigNode d = root.Child("degraded");
    PICE_RETURN_IF_ERROR(d.CheckKeys({"enabled"}));
    PICE_RETURN_IF_ERROR(d.ReadBool("enabled", &o.degraded_enabled));
  }
  if (root.Has("timeouts")) {
    const ConfigNode t = root.Child("timeouts");
    PICE_RETURN_IF_ERROR(t.CheckKeys({"expand", "query", "load_poll", "drain"}));
    PICE_RETURN_IF_ERROR(t.ReadSeconds("drain", &o.drain_timeout_s, 0, 86400));
    PICE_RETURN_IF_ERROR(t.ReadSeconds("expand", &o.expand_timeout_s, 0.001, 3600));
    PICE_RETURN_IF_ERROR(t.ReadSeconds("query", &o.query_timeout_s, 0.001, 86400));
    PICE_RETURN_IF_ERROR(t.ReadSeconds("load_poll", &o.load_poll_s, 0.001, 60));
  }
  if (root.Has("answer")) {
    const ConfigNode a = root.Child("answer");
    PICE_RETURN_IF_ERROR(a.CheckKeys({"point_format", "separator"}));
    PICE_RETURN_IF_ERROR(a.ReadString("point_format", &o.point_format, false));
    PICE_RETURN_IF_ERROR(a.ReadString("separator", &o.answer_separator));
    if (o.point_format.find("{expansion}") == std::string::npos) {
      return a.ChildError("point_format", "must contain {expansion}");
    }
  }
  return o;
}

absl::StatusOr<SchedulerOptions> LoadSchedulerOptions(const std::string& path) {
  PICE_ASSIGN_OR_RETURN(ConfigNode root, ConfigNode::LoadFile(path));
  PICE_ASSIGN_OR_RETURN(SchedulerOptions o, ParseSchedulerOptions(root));
  o.config_file = path;
  return o;
}

}  // namespace pice::scheduler
