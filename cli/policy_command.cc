// pice policy check FILE | pice policy explain FILE --prompt TEXT [--hint R] [--category C]
//   [--key NAME] [--max-points N] [--load JSON] [--json]
// For policy authors: `check` loads a policy file (or a scheduler.yaml, or a built-in name)
// as the scheduler would and says what it holds or exactly what is wrong; `explain` shows
// which rule decides a request and why, with both routes' estimates under a given load.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/commands.h"
#include "common/args.h"
#include "nlohmann/json.hpp"
#include "scheduler/config.h"
#include "scheduler/policy.h"

namespace pice::cli {
namespace {

using json = nlohmann::json;
using scheduler::Policy;
using scheduler::RouteChoiceName;

// A policy file, the policy of a scheduler.yaml (`policy:` or `policy_file:`), or a
// built-in policy's name.
absl::StatusOr<Policy> LoadAnyPolicy(const std::string& what) {
  if (!scheduler::BuiltinPolicyYaml(what).empty()) return scheduler::BuiltinPolicy(what);
  auto as_policy = scheduler::LoadPolicyFile(what);
  if (as_policy.ok()) return as_policy;
  // A scheduler.yaml has `cloud:`; its policy is what the scheduler would run.
  auto root = ConfigNode::LoadFile(what);
  if (root.ok() && root->Has("cloud")) {
    auto o = scheduler::ParseSchedulerOptions(*root);
    if (!o.ok()) return o.status();
    return std::move(o->policy);
  }
  return as_policy.status();
}

// --load '{"healthy_edges": 2, "edge_free_slots": 8, ...}': LiveState's fields by name.
absl::StatusOr<scheduler::LiveState> ParseLoad(const std::string& text) {
  scheduler::LiveState live;
  live.healthy_edges = 1;
  live.edge_free_slots = 4;
  live.edge_max_slots = 4;
  if (text.empty()) return live;
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("--load: expected a JSON object, e.g. {\"healthy_edges\": 2}");
  }
  for (auto& [k, v] : j.items()) {
    if (!v.is_number() && !v.is_boolean()) {
      return absl::InvalidArgumentError(absl::StrCat("--load: ", k, ": expected a number"));
    }
    const double x = v.is_boolean() ? double(v.get<bool>()) : v.get<double>();
    if (k == "cloud_available") live.cloud_available = x != 0;
    else if (k == "healthy_edges") live.healthy_edges = int(x);
    else if (k == "edge_free_slots") live.edge_free_slots = int(x);
    else if (k == "edge_max_slots") live.edge_max_slots = int(x);
    else if (k == "edge_queue_depth") live.edge_queue_depth = int(x);
    else if (k == "edge_tokens_per_s") live.edge_tokens_per_s = x;
    else if (k == "cloud_tokens_per_s") live.cloud_tokens_per_s = x;
    else if (k == "cloud_queue") live.cloud_queue = x;
    else if (k == "cloud_max_slots") live.cloud_max_slots = int(x);
    else if (k == "cloud_queue_depth") live.cloud_queue_depth = int(x);
    else {
      return absl::InvalidArgumentError(absl::StrCat(
          "--load: unknown field '", k, "' (cloud_available, healthy_edges, edge_free_slots, "
          "edge_max_slots, edge_queue_depth, edge_tokens_per_s, cloud_tokens_per_s, cloud_queue, "
          "cloud_max_slots, cloud_queue_depth)"));
    }
  }
  return live;
}

int Check(const std::string& file, bool as_json) {
  auto p = LoadAnyPolicy(file);
  if (!p.ok()) return Fail("policy check", std::string(p.status().message()), 2);
  std::vector<std::string> rules;
  for (const auto& r : p->rules) {
    rules.push_back(absl::StrCat(r.name, " -> ", std::string(RouteChoiceName(r.route))));
  }
  if (as_json) {
    std::printf("%s\n", json{{"ok", true},
                             {"name", p->name},
                             {"rules", rules},
                             {"default", std::string(RouteChoiceName(p->fallback.route))}}
                            .dump()
                            .c_str());
  } else {
    std::printf("%s: policy '%s' OK: %zu rules (%s), default %s\n", file.c_str(), p->name.c_str(),
                rules.size(), absl::StrJoin(rules, "; ").c_str(),
                std::string(RouteChoiceName(p->fallback.route)).c_str());
  }
  return 0;
}

int Explain(const std::string& file, const Args& a) {
  const char* c = "policy explain";
  auto p = LoadAnyPolicy(file);
  if (!p.ok()) return Fail(c, std::string(p.status().message()), 2);
  auto live = ParseLoad(a.Str("load"));
  if (!live.ok()) return Fail(c, std::string(live.status().message()), 2);
  auto max_points = a.Int("max-points", 0, 0, 1 << 20);
  if (!max_points.ok()) return Fail(c, std::string(max_points.status().message()), 2);
  const std::string prompt = a.Str("prompt"), category = a.Str("category"), key = a.Str("key");
  if (prompt.empty()) return Fail(c, "--prompt TEXT is required", 2);
  scheduler::QueryFacts f;
  f.prompt = prompt;
  f.category = category;
  f.key_name = key;
  f.max_points = int(*max_points);
  if (a.Has("hint")) {
    auto h = scheduler::ParseRouteChoice(a.Str("hint"));
    if (!h.ok()) return Fail(c, "--hint: " + std::string(h.status().message()), 2);
    f.hint = *h;
  }
  const scheduler::Decision d = scheduler::Decide(*p, f, *live);
  const int points = scheduler::ExpectedPoints(p->estimates, f);
  const double cloud_ms = scheduler::EstimateCloudMs(p->estimates, points, *live);
  const double sketch_ms = scheduler::EstimateSketchMs(p->estimates, points, *live);
  if (a.Flag("json")) {
    std::printf("%s\n", json{{"route", std::string(RouteChoiceName(d.route))},
                             {"rule", d.rule},
                             {"reason", d.reason},
                             {"expected_points", points},
                             {"estimated_cloud_ms", cloud_ms},
                             {"estimated_sketch_ms", sketch_ms}}
                            .dump()
                            .c_str());
  } else {
    std::printf("route %s, by rule '%s'\n  %s\n  expected points %d; estimates: cloud %.1f ms, "
                "sketch %.1f ms\n",
                std::string(RouteChoiceName(d.route)).c_str(), d.rule.c_str(), d.reason.c_str(),
                points, cloud_ms, sketch_ms);
  }
  return 0;
}

}  // namespace

int RunPolicy(const std::vector<std::string>& args) {
  auto a = Args::Parse(args, {"prompt", "hint", "category", "key", "max-points", "load"}, {"json"});
  if (!a.ok()) return Fail("policy", std::string(a.status().message()), 2);
  const auto& pos = a->positional();
  if (pos.size() != 2 || (pos[0] != "check" && pos[0] != "explain")) {
    return Fail("policy", "usage: pice policy check FILE | pice policy explain FILE --prompt TEXT", 2);
  }
  return pos[0] == "check" ? Check(pos[1], a->Flag("json")) : Explain(pos[1], *a);
}

}  // namespace pice::cli
