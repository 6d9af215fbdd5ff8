#include "scheduler/policy.h"

#include <re2/re2.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace pice::scheduler {
namespace {

int CodePoints(std::string_view s) {
  int n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool Allowed(const Rule& rule, RouteChoice r) {
  return std::find(rule.allow.begin(), rule.allow.end(), r) != rule.allow.end();
}

bool Matches(const RuleMatch& m, const QueryFacts& f, const std::string& lower_prompt) {
  if (m.has_hint && f.hint != m.hint) return false;
  const int chars = CodePoints(f.prompt);
  if (chars < m.min_prompt_chars) return false;
  if (m.max_prompt_chars > 0 && chars > m.max_prompt_chars) return false;
  if (!m.categories.empty()) {
    const std::string cat = absl::AsciiStrToLower(std::string(f.category));
    if (std::find(m.categories.begin(), m.categories.end(), cat) == m.categories.end()) {
      return false;
    }
  }
  if (!m.keywords.empty()) {
    bool any = false;
    for (const std::string& k : m.keywords) any = any || absl::StrContains(lower_prompt, k);
    if (!any) return false;
  }
  if (!m.keys.empty() &&
      std::find(m.keys.begin(), m.keys.end(), std::string(f.key_name)) == m.keys.end()) {
    return false;
  }
  if (m.regex && !re2::RE2::PartialMatch(re2::StringPiece(f.prompt.data(), f.prompt.size()), *m.regex)) {
    return false;
  }
  return true;
}

std::string DescribeMatch(const RuleMatch& m, const QueryFacts& f, const std::string& lower) {
  std::vector<std::string> why;
  if (m.has_hint) why.push_back(absl::StrCat("hint ", std::string(RouteChoiceName(m.hint))));
  if (!m.categories.empty()) why.push_back(absl::StrCat("category ", std::string(f.category)));
  for (const std::string& k : m.keywords) {
    if (absl::StrContains(lower, k)) {
      why.push_back(absl::StrCat("keyword '", k, "'"));
      break;
    }
  }
  if (m.min_prompt_chars > 0 || m.max_prompt_chars > 0) {
    why.push_back(absl::StrCat("prompt ", CodePoints(f.prompt), " chars"));
  }
  if (!m.keys.empty()) why.push_back(absl::StrCat("key ", std::string(f.key_name)));
  if (m.regex) why.push_back(absl::StrCat("regex /", m.regex->pattern(), "/"));
  return why.empty() ? "always" : absl::StrJoin(why, ", ");
}

}  // namespace

std::string_view RouteChoiceName(RouteChoice r) {
  switch (r) {
    case RouteChoice::kAuto: return "auto";
    case RouteChoice::kCloud: return "cloud";
    case RouteChoice::kSketch: return "sketch";
  }
  return "?";
}

absl::StatusOr<RouteChoice> ParseRouteChoice(std::string_view s) {
  const std::string l = absl::AsciiStrToLower(std::string(s));
  if (l == "auto") return RouteChoice::kAuto;
  if (l == "cloud" || l == "cloud_full") return RouteChoice::kCloud;
  if (l == "sketch") return RouteChoice::kSketch;
  return absl::InvalidArgumentError(
      absl::StrCat("expected one of auto, cloud, sketch, got '", std::string(s), "'"));
}

int ExpectedPoints(const Estimates& e, const QueryFacts& f) {
  int points = std::max(1, e.expected_points);
  if (!e.point_separator.empty()) {
    points = 1;
    for (size_t pos = f.prompt.find(e.point_separator); pos != std::string_view::npos;
         pos = f.prompt.find(e.point_separator, pos + e.point_separator.size())) {
      ++points;
    }
  }
  if (f.max_points > 0) points = std::min(points, f.max_points);
  return points;
}

double CloudLoadFactor(const LiveState& live) {
  const double slots = std::max(1, live.cloud_max_slots);
  const double waiting = std::max(0.0, live.cloud_queue + live.cloud_queue_depth + 1 - slots);
  return 1.0 + waiting / slots;
}

double EstimateCloudMs(const Estimates& e, int points, const LiveState& live) {
  const double tps = live.cloud_tokens_per_s > 0 ? live.cloud_tokens_per_s : e.cloud_tokens_per_s;
  const double tokens = points * e.answer_tokens_per_point;
  return 2 * e.rtt_ms + 1000.0 * tokens / std::max(tps, 1e-3) * CloudLoadFactor(live);
}

double EstimateSketchMs(const Estimates& e, int points, const LiveState& live) {
  const double cloud_tps =
      live.cloud_tokens_per_s > 0 ? live.cloud_tokens_per_s : e.cloud_tokens_per_s;
  const double edge_tps = live.edge_tokens_per_s > 0 ? live.edge_tokens_per_s : e.edge_tokens_per_s;
  const double sketch_ms = 1000.0 * points * e.sketch_tokens_per_point /
                           std::max(cloud_tps, 1e-3) * CloudLoadFactor(live);
  const double expand_ms = 1000.0 * e.expand_tokens / std::max(edge_tps, 1e-3);
  // Points are expanded while the sketch is still being written, so only the last
  // point's expansion adds to the sketch time, stretched by the edges' queues and by
  // extra waves when there are fewer free slots than points.
  const int slots = std::max(1, live.edge_max_slots);
  const double queue_factor = 1.0 + static_cast<double>(live.edge_queue_depth) / slots;
  const int free = std::max(1, live.edge_free_slots);
  const double waves = std::ceil(static_cast<double>(points) / free);
  return 4 * e.rtt_ms + sketch_ms + expand_ms * queue_factor * waves;
}

Decision Decide(const Policy& policy, const QueryFacts& facts, const LiveState& live) {
  const std::string lower = absl::AsciiStrToLower(std::string(facts.prompt));
  const Rule* rule = &policy.fallback;
  std::string why = "no rule matched";
  for (const Rule& r : policy.rules) {
    if (Matches(r.match, facts, lower)) {
      rule = &r;
      why = DescribeMatch(r.match, facts, lower);
      break;
    }
  }
  Decision d;
  d.rule = rule->name;
  d.cache = rule->cache;
  RouteChoice route = rule->route;
  std::string reason = absl::StrCat("rule '", rule->name, "' (", why, ")");
  if (route == RouteChoice::kAuto) {
    const int points = ExpectedPoints(policy.estimates, facts);
    d.est_cloud_ms = EstimateCloudMs(policy.estimates, points, live);
    d.est_sketch_ms = EstimateSketchMs(policy.estimates, points, live);
    const bool may_cloud = Allowed(*rule, RouteChoice::kCloud);
    const bool may_sketch = Allowed(*rule, RouteChoice::kSketch) && live.healthy_edges > 0;
    const bool sketch_faster =
        d.est_sketch_ms * policy.estimates.sketch_advantage < d.est_cloud_ms;
    route = (may_sketch && (sketch_faster || !may_cloud)) ? RouteChoice::kSketch
                                                           : RouteChoice::kCloud;
    const double load = CloudLoadFactor(live);
    reason = absl::StrFormat("%s: auto, %d points, est. sketch %.1f ms vs cloud %.1f ms%s%s",
                             reason, points, d.est_sketch_ms, d.est_cloud_ms,
                             load > 1 ? absl::StrFormat(" (cloud busy: x%.2f)", load) : "",
                             live.healthy_edges == 0 ? ", no healthy edge" : "");
  }
  if (route == RouteChoice::kSketch && live.healthy_edges == 0) {
    route = RouteChoice::kCloud;
    absl::StrAppend(&reason, "; sketch needs an edge and none is healthy: cloud");
  }
  d.route = route;
  d.reason = absl::StrCat(std::string(RouteChoiceName(route)), " by ", reason);
  return d;
}

// ---- YAML ----------------------------------------------------------------------------

namespace {

absl::Status ReadRoute(const ConfigNode& n, std::string_view key, RouteChoice* out) {
  if (!n.Has(key)) return absl::OkStatus();
  std::string s;
  PICE_RETURN_IF_ERROR(n.ReadEnum(key, &s, {"auto", "cloud", "cloud_full", "sketch"}));
  *out = *ParseRouteChoice(s);
  return absl::OkStatus();
}

absl::Status ReadLowerList(const ConfigNode& n, std::string_view key,
                           std::vector<std::string>* out) {
  PICE_RETURN_IF_ERROR(n.ReadStringList(key, out));
  for (std::string& s : *out) s = absl::AsciiStrToLower(s);
  return absl::OkStatus();
}

absl::StatusOr<Rule> ParseRule(const ConfigNode& n) {
  PICE_RETURN_IF_ERROR(n.CheckKeys({"name", "match", "route", "allow", "cache"}));
  PICE_RETURN_IF_ERROR(n.Require("route"));
  Rule rule;
  rule.name = n.key_path();
  PICE_RETURN_IF_ERROR(n.ReadString("name", &rule.name, /*allow_empty=*/false));
  PICE_RETURN_IF_ERROR(ReadRoute(n, "route", &rule.route));
  if (n.Has("cache")) {
    std::string c;
    PICE_RETURN_IF_ERROR(n.ReadEnum("cache", &c, {"tenant", "shared", "off"}));
    rule.cache = c == "off" ? CacheScope::kOff : c == "shared" ? CacheScope::kShared : CacheScope::kTenant;
  }
  if (n.Has("allow")) {
    std::vector<std::string> allow;
    PICE_RETURN_IF_ERROR(n.ReadStringList("allow", &allow));
    rule.allow.clear();
    for (const std::string& a : allow) {
      auto r = ParseRouteChoice(a);
      if (!r.ok() || *r == RouteChoice::kAuto) {
        return n.ChildError("allow", absl::StrCat("expected a list of cloud, sketch, got '", a, "'"));
      }
      rule.allow.push_back(*r);
    }
    if (rule.allow.empty()) return n.ChildError("allow", "expected at least one route");
  }
  if (n.Has("match")) {
    const ConfigNode m = n.Child("match");
    PICE_RETURN_IF_ERROR(
        m.CheckKeys({"categories", "keywords", "min_prompt_chars", "max_prompt_chars", "hint",
                     "keys", "regex"}));
    PICE_RETURN_IF_ERROR(m.ReadStringList("keys", &rule.match.keys));
    if (m.Has("regex")) {
      std::string pattern;
      PICE_RETURN_IF_ERROR(m.ReadString("regex", &pattern, false));
      re2::RE2::Options ro;
      ro.set_log_errors(false);
      auto re = std::make_shared<const re2::RE2>(pattern, ro);
      if (!re->ok()) {
        return m.ChildError("regex", absl::StrCat("not a valid RE2 expression: ", re->error()));
      }
      rule.match.regex = std::move(re);
    }
    PICE_RETURN_IF_ERROR(ReadLowerList(m, "categories", &rule.match.categories));
    PICE_RETURN_IF_ERROR(ReadLowerList(m, "keywords", &rule.match.keywords));
    PICE_RETURN_IF_ERROR(m.ReadInt("min_prompt_chars", &rule.match.min_prompt_chars, 0, 1 << 30));
    PICE_RETURN_IF_ERROR(m.ReadInt("max_prompt_chars", &rule.match.max_prompt_chars, 0, 1 << 30));
    if (m.Has("hint")) {
      std::string h;
      PICE_RETURN_IF_ERROR(m.ReadEnum("hint", &h, {"cloud", "cloud_full", "sketch"}));
      rule.match.has_hint = true;
      rule.match.hint = *ParseRouteChoice(h);
    }
  }
  return rule;
}

absl::Status ParseEstimates(const ConfigNode& n, Estimates* e) {
  PICE_RETURN_IF_ERROR(n.CheckKeys({"expected_points", "point_separator",
                                    "sketch_tokens_per_point", "answer_tokens_per_point",
                                    "expand_tokens", "cloud_tokens_per_s", "edge_tokens_per_s",
                                    "rtt_ms", "sketch_advantage"}));
  PICE_RETURN_IF_ERROR(n.ReadInt("expected_points", &e->expected_points, 1, 64));
  PICE_RETURN_IF_ERROR(n.ReadString("point_separator", &e->point_separator));
  PICE_RETURN_IF_ERROR(n.ReadDouble("sketch_tokens_per_point", &e->sketch_tokens_per_point, 0.01, 1e4));
  PICE_RETURN_IF_ERROR(n.ReadDouble("answer_tokens_per_point", &e->answer_tokens_per_point, 0.01, 1e5));
  PICE_RETURN_IF_ERROR(n.ReadDouble("expand_tokens", &e->expand_tokens, 0.01, 1e5));
  PICE_RETURN_IF_ERROR(n.ReadDouble("cloud_tokens_per_s", &e->cloud_tokens_per_s, 1e-3, 1e9));
  PICE_RETURN_IF_ERROR(n.ReadDouble("edge_tokens_per_s", &e->edge_tokens_per_s, 1e-3, 1e9));
  PICE_RETURN_IF_ERROR(n.ReadDouble("rtt_ms", &e->rtt_ms, 0, 1e6));
  PICE_RETURN_IF_ERROR(n.ReadDouble("sketch_advantage", &e->sketch_advantage, 0.01, 100));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Policy> ParsePolicy(const ConfigNode& node) {
  PICE_RETURN_IF_ERROR(node.CheckKeys({"name", "default", "rules", "estimates"}));
  Policy p;
  p.fallback.name = "default";
  PICE_RETURN_IF_ERROR(node.ReadString("name", &p.name));
  PICE_RETURN_IF_ERROR(ReadRoute(node, "default", &p.fallback.route));
  if (node.Has("rules")) {
    const ConfigNode rules = node.Child("rules");
    if (!rules.IsList()) return rules.Error("expected a list of rules");
    for (size_t i = 0; i < rules.size(); ++i) {
      PICE_ASSIGN_OR_RETURN(Rule r, ParseRule(rules.At(i)));
      p.rules.push_back(std::move(r));
    }
  }
  if (node.Has("estimates")) {
    PICE_RETURN_IF_ERROR(ParseEstimates(node.Child("estimates"), &p.estimates));
  }
  return p;
}

absl::StatusOr<Policy> ParsePolicyText(const std::string& yaml, const std::string& where) {
  PICE_ASSIGN_OR_RETURN(ConfigNode root, ConfigNode::LoadString(yaml, where));
  return ParsePolicy(root);
}

absl::StatusOr<Policy> LoadPolicyFile(const std::string& path) {
  PICE_ASSIGN_OR_RETURN(ConfigNode root, ConfigNode::LoadFile(path));
  return ParsePolicy(root);
}

namespace {

constexpr char kGeneralPolicy[] = R"(name: general
default: auto
rules:
  - name: client-hint-cloud
    match: {hint: cloud}
    route: cloud
  - name: client-hint-sketch
    match: {hint: sketch}
    route: sketch
  - name: math-and-code-to-cloud
    match:
      categories: [math, code, arithmetic, programming]
    route: cloud
  - name: math-and-code-keywords
    match:
      keywords: [calculate, compute, solve, equation, integral, derivative, "def ",
                 "function ", "class ", code, program, algorithm, "#include", sql]
    route: cloud
  - name: short-prompt
    match: {max_prompt_chars: 24}
    route: cloud
estimates:
  expected_points: 5
  sketch_tokens_per_point: 8
  answer_tokens_per_point: 60
  expand_tokens: 60
  cloud_tokens_per_s: 30
  edge_tokens_per_s: 60
  rtt_ms: 5
)";

constexpr char kArithPolicy[] = R"(name: pice-arith
default: sketch
rules:
  - name: client-hint-cloud
    match: {hint: cloud}
    route: cloud
  - name: client-hint-sketch
    match: {hint: sketch}
    route: sketch
estimates:
  point_separator: ";"
  sketch_tokens_per_point: 7
  answer_tokens_per_point: 8
  expand_tokens: 3
  cloud_tokens_per_s: 2000
  edge_tokens_per_s: 8000
  rtt_ms: 0.3
)";

}  // namespace

std::string_view BuiltinPolicyYaml(std::string_view name) {
  if (name == "general") return kGeneralPolicy;
  if (name == "pice-arith") return kArithPolicy;
  return "";
}

absl::StatusOr<Policy> BuiltinPolicy(std::string_view name) {
  const std::string_view text = BuiltinPolicyYaml(name);
  if (text.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown built-in policy '", std::string(name), "' (general, pice-arith)"));
  }
  return ParsePolicyText(std::string(text),
                         absl::StrCat("<built-in policy ", std::string(name), ">"));
}

}  // namespace pice::scheduler
