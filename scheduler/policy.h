// The scheduler's routing policy: pure logic, no gRPC or protobuf.
//
// A policy is an ordered list of rules; the first rule whose every condition matches
// decides the route (`cloud`, `sketch` or `auto`). When no rule matches, the policy's
// `default` route applies. `auto` estimates both routes' completion time from live state
// (edge queue depth, free slots and tokens/s from Edge.Load, the cloud's measured
// tokens/s) and the expected answer length, and picks the faster route among those the
// deciding rule allows. Every decision carries a reason naming the rule or the estimate.
//
// YAML form (the value of `policy:` in scheduler.yaml, or a whole policy file):
//
//   name: general
//   default: auto                 # route when no rule matches: auto | cloud | sketch
//   rules:
//     - name: math-and-code-to-cloud
//       match:                    # every listed condition must hold; none = always
//         categories: [math, code]      # request category, any of (case-insensitive)
//         keywords: [integral, "def "]  # prompt contains any of (case-insensitive)
//         min_prompt_chars: 0           # prompt length in code points, inclusive
//         max_prompt_chars: 0           # 0 = no upper bound
//         hint: sketch                  # the client's route hint is this
//         keys: [alice, batch-jobs]     # the API key's name (tenant) is one of these
//         regex: "(?i)\\bprove\\b"        # RE2 syntax, searched in the prompt
//       route: cloud
//       allow: [cloud, sketch]    # only for route: auto — the routes it may pick
//       cache: tenant             # response cache for what this rule decides: tenant
//                                 # (default: answers shared within one API key's name),
//                                 # shared (across keys: public content), off
//   estimates:                    # inputs of `auto` when nothing is measured yet
//     expected_points: 4
//     point_separator: ";"        # when set: expected points = separators + 1
//     sketch_tokens_per_point: 8
//     answer_tokens_per_point: 9
//     expand_tokens: 4
//     cloud_tokens_per_s: 300
//     edge_tokens_per_s: 1000
//     rtt_ms: 1
//     sketch_advantage: 1.0       # sketch wins only when est_sketch * this < est_cloud
#ifndef PICE_SCHEDULER_POLICY_H_
#define PICE_SCHEDULER_POLICY_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"

namespace re2 {
class RE2;
}  // namespace re2

namespace pice::scheduler {

enum class RouteChoice { kAuto, kCloud, kSketch };

// "auto", "cloud", "sketch".
std::string_view RouteChoiceName(RouteChoice r);
// Accepts the names above (case-insensitive) and "cloud_full" for kCloud.
absl::StatusOr<RouteChoice> ParseRouteChoice(std::string_view s);

struct RuleMatch {
  std::vector<std::string> categories;  // lower-cased; empty = any category
  std::vector<std::string> keywords;    // lower-cased; empty = any prompt
  int min_prompt_chars = 0;             // inclusive
  int max_prompt_chars = 0;             // inclusive; 0 = unbounded
  bool has_hint = false;                // when true the request's hint must equal `hint`
  RouteChoice hint = RouteChoice::kAuto;
  std::vector<std::string> keys;        // API key names (tenants), any of; empty = any
  // RE2 (linear time whatever the prompt: prompts are the clients'), searched in the
  // prompt; null = any prompt.
  std::shared_ptr<const re2::RE2> regex;
};

// Who may receive an answer cached for a query a rule decided (scheduler/response_cache.h).
enum class CacheScope { kOff, kTenant, kShared };

struct Rule {
  std::string name;
  CacheScope cache = CacheScope::kTenant;
  RuleMatch match;
  RouteChoice route = RouteChoice::kAuto;
  std::vector<RouteChoice> allow = {RouteChoice::kCloud, RouteChoice::kSketch};  // for kAuto
};

struct Estimates {
  int expected_points = 4;
  std::string point_separator;          // empty = use expected_points
  double sketch_tokens_per_point = 8;   // cloud tokens per sketch point
  double answer_tokens_per_point = 9;   // cloud tokens per part of a full answer
  double expand_tokens = 4;             // edge tokens per expansion
  double cloud_tokens_per_s = 300;      // until the scheduler has measured the cloud
  double edge_tokens_per_s = 1000;      // until an edge reports its rate
  double rtt_ms = 1;                    // per network hop
  double sketch_advantage = 1.0;        // sketch must be this factor faster to win
};

struct Policy {
  std::string name;
  std::vector<Rule> rules;
  Rule fallback;                        // the `default` route as a rule named "default"
  Estimates estimates;
};

// What the policy may look at in a request.
struct QueryFacts {
  std::string_view prompt;
  std::string_view category;
  std::string_view key_name;              // the API key's name; "" without keys
  RouteChoice hint = RouteChoice::kAuto;  // kAuto = no hint
  int max_points = 0;                     // the client's point budget; 0 = none
};

// Live state of the nodes, summed over healthy edges.
struct LiveState {
  bool cloud_available = true;
  int healthy_edges = 0;
  int edge_free_slots = 0;     // sum of free slots
  int edge_max_slots = 0;      // sum of slots
  int edge_queue_depth = 0;    // sum of queued requests
  double edge_tokens_per_s = 0;   // mean reported rate; 0 = unknown
  double cloud_tokens_per_s = 0;  // measured by the scheduler; 0 = unknown
  double cloud_queue = 0;         // calls this scheduler has in flight on the cloud
  int cloud_max_slots = 0;        // the cloud's batch slots (its Load); 0 = unknown (1)
  int cloud_queue_depth = 0;      // requests waiting in the cloud's engine (its Load)
};

// How much longer the cloud takes per token under its current load: calls beyond its
// batch slots (this scheduler's in flight + what waits there already + the new one)
// wait in waves of `slots`. 1 when it has room.
double CloudLoadFactor(const LiveState& live);

struct Decision {
  RouteChoice route = RouteChoice::kCloud;  // never kAuto
  std::string rule;                         // the deciding rule, or "default"
  CacheScope cache = CacheScope::kTenant;   // the deciding rule's
  std::string reason;                       // one line for the route event and the log
  double est_cloud_ms = 0;                  // set when `auto` ran
  double est_sketch_ms = 0;
};

// Decides a route. Never fails: a sketch decision without a healthy edge becomes cloud,
// with the reason saying so.
Decision Decide(const Policy& policy, const QueryFacts& facts, const LiveState& live);

// The completion-time estimates `auto` compares, in milliseconds.
double EstimateCloudMs(const Estimates& e, int points, const LiveState& live);
double EstimateSketchMs(const Estimates& e, int points, const LiveState& live);
// Expected number of points for a prompt under `e` (at least 1).
int ExpectedPoints(const Estimates& e, const QueryFacts& facts);

// Parses a policy from a YAML mapping. Errors name the file, the key path (e.g.
// `policy.rules[1].route`) and what was expected.
absl::StatusOr<Policy> ParsePolicy(const ConfigNode& node);
absl::StatusOr<Policy> LoadPolicyFile(const std::string& path);
// `where` stands for the file in errors.
absl::StatusOr<Policy> ParsePolicyText(const std::string& yaml, const std::string& where);

// The built-in policies. `general`: for instruct models — client hints first, math and
// code to the cloud (sketching hurts them), very short prompts to the cloud, else auto.
// `pice-arith`: hints first, else sketch (its cloud answers ` -` for questions whose
// parts depend on each other, and such a sketch falls back to the full route).
std::string_view BuiltinPolicyYaml(std::string_view name);  // "" when unknown
absl::StatusOr<Policy> BuiltinPolicy(std::string_view name);

}  // namespace pice::scheduler

#endif  // PICE_SCHEDULER_POLICY_H_
