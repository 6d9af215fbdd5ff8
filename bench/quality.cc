// pice bench quality: answer quality of every route on an eval file of pice-arith questions
// (tests/data/pice-arith/eval.jsonl format). Runs each question twice through a scheduler:
// on the cloud route (cloud_full) and on the route the policy picks (pice, with
// escalation as configured). Every expansion event carries all ensemble candidates, so
// each edge model alone and each selection method are scored from the same run, against
// the value of the point's own expression.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/args.h"
#include "cli/client.h"
#include "bench/bench.h"
#include "cli/commands.h"
#include "cli/eval_file.h"
#include "cli/local_stack.h"
#include "common/logging.h"
#include "nlohmann/json.hpp"

namespace pice::bench {

// The client helpers, eval files and the embedded stack of the pice CLI.
using namespace ::pice::cli;  // NOLINT(build/namespaces)
namespace {


struct Outcome {
  bool ok = false;
  std::string error;
  v1::AnswerEvent answer;
  std::vector<v1::ExpansionEvent> expansions;
  int route_events = 0;
};

Outcome Ask(v1::Pice::Stub* stub, const std::string& prompt, v1::Route route) {
  v1::QueryRequest req;
  req.set_prompt(prompt);
  req.set_route(route);
  Outcome o;
  grpc::Status s = RunQuery(stub, req, 120, "", [&](const v1::QueryEvent& ev) {
    if (ev.has_answer()) o.answer = ev.answer();
    if (ev.has_expansion()) o.expansions.push_back(ev.expansion());
    if (ev.has_route()) ++o.route_events;
  });
  o.ok = s.ok();
  if (!s.ok()) o.error = StatusCodeName(s.error_code()) + ": " + s.error_message();
  return o;
}

struct Tally {
  int64_t right = 0, total = 0;
  void Add(bool r) {
    right += r;
    ++total;
  }
  double Rate() const { return total ? static_cast<double>(right) / total : 0; }
  nlohmann::json Json() const { return {{"correct", right}, {"total", total}, {"accuracy", Rate()}}; }
};

struct RouteResult {
  Tally parts, questions;
  std::vector<Outcome> outcomes;
  int errors = 0;
  std::string first_error;
  double total_ms = 0;
};

RouteResult RunRoute(const std::string& target, const ClientTls& tls,
                     const std::vector<Question>& qs, v1::Route route, int concurrency) {
  RouteResult r;
  r.outcomes.resize(qs.size());
  std::atomic<size_t> next{0};
  std::vector<std::thread> workers;
  auto channel = MakeClientChannel(target, tls);
  for (int w = 0; w < concurrency; ++w) {
    workers.emplace_back([&] {
      auto stub = v1::Pice::NewStub(channel);
      for (size_t i = next++; i < qs.size(); i = next++) {
        r.outcomes[i] = Ask(stub.get(), qs[i].question, route);
      }
    });
  }
  for (auto& t : workers) t.join();
  for (size_t i = 0; i < qs.size(); ++i) {
    const Outcome& o = r.outcomes[i];
    if (!o.ok) {
      if (r.errors++ == 0) r.first_error = o.error;
      for (size_t k = 0; k < qs[i].parts.size(); ++k) r.parts.Add(false);
      r.questions.Add(false);
      continue;
    }
    const auto right = ScoreAnswer(qs[i], o.answer);
    for (bool b : right) r.parts.Add(b);
    r.questions.Add(std::all_of(right.begin(), right.end(), [](bool b) { return b; }));
    r.total_ms += o.answer.timings().total_ms();
  }
  return r;
}

struct PointStats {
  std::map<std::string, Tally> per_model;
  Tally confidence, consensus, majority, hybrid, configured, any_correct, settled;
  Tally escalated_right;  // points escalated to the cloud: the cloud's answer right
  std::string method;
  int points = 0, escalated = 0;
};

// Scores every expansion's edge candidates against the value of its own point.
PointStats ScorePoints(const std::vector<Question>& qs, const RouteResult& pice) {
  PointStats st;
  for (size_t qi = 0; qi < qs.size(); ++qi) {
    const Outcome& o = pice.outcomes[qi];
    if (!o.ok || o.answer.route() != v1::ROUTE_SKETCH) continue;
    for (const v1::ExpansionEvent& x : o.expansions) {
      if (x.index() >= o.answer.points_size()) continue;
      const auto truth = Eval(o.answer.points(x.index()));
      if (!truth) continue;
      ++st.points;
      if (!x.selection().empty()) st.method = x.selection();
      std::vector<v1::Candidate> edge;
      for (const v1::Candidate& c : x.candidates()) {
        // An escalated event ends with the cloud's candidate (selected, the event's model).
        if (x.escalated() && c.selected() && c.model() == x.model()) continue;
        edge.push_back(c);
      }
      const auto right = [&](const v1::Candidate& c) {
        auto v = StatedNumber(c.text());
        return v && *v == *truth;
      };
      if (x.escalated()) {
        ++st.escalated;
        auto v = StatedNumber(x.text());
        st.escalated_right.Add(v && *v == *truth);
      }
      st.settled.Add(!x.escalated());
      if (edge.empty()) continue;
      bool any = false;
      for (const v1::Candidate& c : edge) {
        st.per_model[c.model()].Add(right(c));
        any = any || right(c);
      }
      st.any_correct.Add(any);
      const auto best = [&](auto key) {
        size_t b = 0;
        for (size_t k = 1; k < edge.size(); ++k) {
          const auto kb = key(edge[b]), kk = key(edge[k]);
          if (kk > kb || (kk == kb && edge[k].mean_logprob() > edge[b].mean_logprob())) b = k;
        }
        return edge[b];
      };
      const double n = static_cast<double>(edge.size());
      st.confidence.Add(right(best([](const v1::Candidate& c) { return c.mean_logprob(); })));
      st.consensus.Add(right(best([](const v1::Candidate& c) { return c.consensus(); })));
      st.hybrid.Add(right(best([n](const v1::Candidate& c) {
        const double support = (1 + (n - 1) * c.consensus()) / n;
        return 0.5 * support + 0.5 * std::exp(c.mean_logprob());
      })));
      st.configured.Add(right(best([](const v1::Candidate& c) { return c.score(); })));
      // Exact-match majority of the texts, ties by mean log-probability.
      st.majority.Add(right(best([&](const v1::Candidate& c) {
        int votes = 0;
        for (const v1::Candidate& d : edge) votes += Squeeze(d.text()) == Squeeze(c.text());
        return static_cast<double>(votes);
      })));
    }
  }
  return st;
}

std::string Pct(const Tally& t) { return absl::StrFormat("%6.2f %% (%d/%d)", 100 * t.Rate(), t.right, t.total); }

}  // namespace

int RunBenchQuality(const std::vector<std::string>& args) {
  auto a = Args::Parse(args, WithClientTlsFlags({"eval", "target", "concurrency", "limit",
                                                  "thresholds", "config"}),
                       {"json"});
  if (!a.ok()) return Fail("bench quality", std::string(a.status().message()), 2);
  auto tls = ParseClientTlsFlags(*a);
  if (!tls.ok()) return Fail("bench quality", std::string(tls.status().message()), 2);
  auto eval_path = a->Required("eval");
  if (!eval_path.ok()) return Fail("bench quality", std::string(eval_path.status().message()), 2);
  auto concurrency = a->Int("concurrency", 4, 1, 256);
  auto limit = a->Int("limit", 0, 0, 1 << 30);
  auto thresholds = a->Str("thresholds");
  if (!concurrency.ok()) return Fail("bench quality", std::string(concurrency.status().message()), 2);
  if (!limit.ok()) return Fail("bench quality", std::string(limit.status().message()), 2);
  auto qs = LoadEval(*eval_path);
  if (!qs.ok()) return Fail("bench quality", std::string(qs.status().message()));
  if (*limit > 0 && qs->size() > static_cast<size_t>(*limit)) qs->resize(*limit);
  const bool json = a->Flag("json");

  std::unique_ptr<LocalStack> stack;
  std::string target = a->Str("target");
  if (target.empty()) {
    (void)InitLogging("bench", "warn");
    LocalOptions lo;
    lo.port = 0;
    lo.config_path = a->Str("config");
    auto s = LocalStack::Start(lo);
    if (!s.ok()) return Fail("bench quality", std::string(s.status().message()));
    stack = *std::move(s);
    target = stack->address();
    if (!json) std::fprintf(stderr, "bench quality: local stack on %s\n", target.c_str());
  } else if (!thresholds.empty()) {
    return Fail("bench quality", "--thresholds needs the local stack (no --target)", 2);
  }

  const RouteResult cloud = RunRoute(target, *tls, *qs, v1::ROUTE_CLOUD, static_cast<int>(*concurrency));
  const RouteResult pice = RunRoute(target, *tls, *qs, v1::ROUTE_AUTO, static_cast<int>(*concurrency));
  const PointStats ps = ScorePoints(*qs, pice);

  // How the dependent questions went: which route answered, via the fallback or not.
  std::map<std::string, int> dependent_routes;
  Tally dependent_parts;
  for (size_t i = 0; i < qs->size(); ++i) {
    if (!(*qs)[i].dependent) continue;
    const Outcome& o = pice.outcomes[i];
    std::string how = !o.ok ? "error"
                      : o.answer.route() == v1::ROUTE_SKETCH ? "sketch"
                      : o.route_events > 1                  ? "cloud_after_no_split_sketch"
                                                            : "cloud_by_policy";
    ++dependent_routes[how];
    if (o.ok) {
      for (bool b : ScoreAnswer((*qs)[i], o.answer)) dependent_parts.Add(b);
    }
  }

  // Optional sweep of escalation thresholds on extra schedulers over the same nodes.
  nlohmann::json sweep = nlohmann::json::array();
  if (!thresholds.empty()) {
    for (absl::string_view t : absl::StrSplit(thresholds, ',')) {
      // "T" or "T/C": agreement threshold T, and min_confidence C (a mean log-prob).
      double th, mc = -std::numeric_limits<double>::infinity();
      std::vector<std::string> tc = absl::StrSplit(t, '/');
      if (!absl::SimpleAtod(tc[0], &th) || th < 0 || th > 1 ||
          (tc.size() > 1 && !absl::SimpleAtod(tc[1], &mc)) || tc.size() > 2) {
        return Fail("bench quality",
                    "--thresholds: expected T or T/C items, T in [0, 1], C a log-probability", 2);
      }
      auto addr = stack->AddScheduler([th, mc](scheduler::SchedulerOptions* o) {
        o->escalation_threshold = th;
        o->escalation_min_confidence = mc;
      });
      if (!addr.ok()) return Fail("bench quality", std::string(addr.status().message()));
      const RouteResult r = RunRoute(*addr, ClientTls{}, *qs, v1::ROUTE_AUTO, static_cast<int>(*concurrency));
      const PointStats p = ScorePoints(*qs, r);
      sweep.push_back({{"threshold", th},
                       {"min_confidence", std::isfinite(mc) ? nlohmann::json(mc) : nlohmann::json("off")},
                       {"part_accuracy", r.parts.Rate()},
                       {"question_exact", r.questions.Rate()},
                       {"edge_share", p.settled.Rate()},
                       {"errors", r.errors}});
    }
  }

  nlohmann::json edges = nlohmann::json::object();
  for (const auto& [model, t] : ps.per_model) edges[model] = t.Json();
  nlohmann::json out = {
      {"questions", qs->size()},
      {"cloud_full",
       {{"parts", cloud.parts.Json()},
        {"questions", cloud.questions.Json()},
        {"errors", cloud.errors},
        {"mean_total_ms", cloud.questions.total ? cloud.total_ms / cloud.questions.total : 0}}},
      {"edges", edges},
      {"selection",
       {{"configured_method", ps.method},
        {"configured", ps.configured.Json()},
        {"confidence", ps.confidence.Json()},
        {"consensus", ps.consensus.Json()},
        {"hybrid_0.5", ps.hybrid.Json()},
        {"majority", ps.majority.Json()},
        {"any_correct", ps.any_correct.Json()}}},
      {"pice",
       {{"parts", pice.parts.Json()},
        {"questions", pice.questions.Json()},
        {"errors", pice.errors},
        {"points", ps.points},
        {"escalated_points", ps.escalated},
        {"escalated_right", ps.escalated_right.Json()},
        {"dependent_routes", dependent_routes},
        {"dependent_parts", dependent_parts.Json()},
        {"mean_total_ms", pice.questions.total ? pice.total_ms / pice.questions.total : 0}}},
      {"edge_share", ps.settled.Rate()},
  };
  if (stack) {
    out["escalation_threshold"] = stack->scheduler_options().escalation_threshold;
    if (!sweep.empty()) out["threshold_sweep"] = sweep;
  }
  if (!cloud.first_error.empty()) out["cloud_full"]["first_error"] = cloud.first_error;
  if (!pice.first_error.empty()) out["pice"]["first_error"] = pice.first_error;

  if (json) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("pice bench quality: %zu questions from %s\n", qs->size(), eval_path->c_str());
    std::printf("  cloud alone (full route), per part: %s; questions exact %s\n",
                Pct(cloud.parts).c_str(), Pct(cloud.questions).c_str());
    for (const auto& [model, t] : ps.per_model) {
      std::printf("  edge model %-16s per point: %s\n", model.c_str(), Pct(t).c_str());
    }
    std::printf("  selection (per point): configured (%s) %s\n", ps.method.c_str(),
                Pct(ps.configured).c_str());
    std::printf("    confidence %s, consensus %s\n", Pct(ps.confidence).c_str(),
                Pct(ps.consensus).c_str());
    std::printf("    hybrid(0.5) %s, exact-match majority %s, at least one right %s\n",
                Pct(ps.hybrid).c_str(), Pct(ps.majority).c_str(), Pct(ps.any_correct).c_str());
    std::printf("  pice route as configured, per part: %s; questions exact %s\n",
                Pct(pice.parts).c_str(), Pct(pice.questions).c_str());
    std::printf("  points settled on edges: %s; escalated %d (cloud right on %s)\n",
                Pct(ps.settled).c_str(), ps.escalated, Pct(ps.escalated_right).c_str());
    std::printf("  dependent questions:");
    for (const auto& [how, n] : dependent_routes) std::printf(" %s %d;", how.c_str(), n);
    std::printf(" parts right %s\n", Pct(dependent_parts).c_str());
    for (const auto& row : sweep) {
      std::printf("  threshold %.2f, min_confidence %s: parts %.2f %%, questions %.2f %%, "
                  "edge share %.2f %%\n",
                  row["threshold"].get<double>(), row["min_confidence"].dump().c_str(),
                  100 * row["part_accuracy"].get<double>(),
                  100 * row["question_exact"].get<double>(), 100 * row["edge_share"].get<double>());
    }
    if (cloud.errors || pice.errors) {
      std::printf("  errors: cloud %d (%s), pice %d (%s)\n", cloud.errors, cloud.first_error.c_str(),
                  pice.errors, pice.first_error.c_str());
    }
  }
  if (stack) stack->Shutdown();
  return (cloud.errors || pice.errors) ? 1 : 0;
}

}  // namespace pice::bench
