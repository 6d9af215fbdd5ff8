// pice bench sim: the discrete-event simulator (bench/sim/sim.h) from a YAML file.
//
//   pice bench sim --config bench/sim/two-core-random.yaml [--json] [--out DIR]
//       the load curves of every route, as `pice bench testbed` prints them
//   pice bench sim --config FILE --calibrate TESTBED_JSON [--json] [--out DIR]
//       the testbed's runs again in the simulator (the same routes, rates, arrivals per
//       run and repeats) and both side by side with the relative error of each figure
//   pice bench sim --config FILE --scale [--json] [--out DIR]
//       the file's `scale:` grid: edges x scheduler replicas x load_poll, with churn
//
// The file (every figure measured, see bench/README.md "Simulator"):
//   cloud: {replicas: 1, batch: [1, 4, 16], decode_tokens_per_s: [8.9, 30.1, 56.4],
//           context: 181,   # the mean context of that measurement; optionally the same
//           short_context: {context: 40, batch: [...], decode_tokens_per_s: [...]},
//           prefill_tokens_per_s: 102, max_batch: 16, link: {rtt: 1ms}}
//   edges: {count: 2, members: 1, per_cpu: 2, batch: [...], decode_tokens_per_s: [...],
//           prefill_tokens_per_s: 224, max_batch: 16, max_slots: 4, max_queue: 4,
//           link: {rtt: 20ms, jitter: 5ms, bandwidth_mbit: 50, loss: 0.001},
//           churn: {mttf: 600s, mttr: 60s}}
//   scheduler: {replicas: 1, threads: 1, cpu_per_query: {cloud: 1ms, sketch: 2ms},
//               cpu_per_probe: 0.04ms, cpu_per_edge_scan_ns: 5, load_poll: 200ms,
//               max_edge_attempts: 2, policy: {...scheduler.yaml's policy...}}
//   workload: {prompt_tokens: 24, expand_prompt_tokens: 64, sketch_tokens: 22.5, points: 4,
//              expand_tokens: 64, full_tokens: 256, escalation: 0}
//   load: {rates: [...], queries: 40 | duration: 10s, routes: [cloud, sketch], repeat: 3,
//          timeout: 600s, seed: 1}
//   slo_p99: 120s, moderate_rate: 0.2
//   scale: {edges: [10, 100, 1000, 10000], rate_per_edge: 0.2, edges_per_cloud: 10,
//           schedulers: [1, 4], load_poll: [200ms, 2s], duration: 60s, route: sketch,
//           churn: {mttf: 600s, mttr: 60s}}
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench.h"
#include "bench/curves.h"
#include "bench/relay.h"
#include "bench/sim/sim.h"
#include "bench/stats.h"
#include "cli/commands.h"
#include "common/args.h"
#include "common/config.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace pice::bench {
namespace {

using json = nlohmann::json;
using cli::Fail;

struct Scale {
  std::vector<int> edges;
  std::vector<int> schedulers = {1};
  std::vector<double> load_polls;
  std::vector<bool> shard = {false};
  double rate_per_edge = 0.1, duration_s = 30, mttf_s = 0, mttr_s = 60;
  int edges_per_cloud = 10;
  std::string route = "sketch";
};

struct SimFile {
  sim::Topology topo;
  sim::Workload work;
  std::vector<std::string> routes = {"cloud", "sketch"};
  std::vector<double> rates;
  sim::RunSpec run;            // queries, duration, timeout, seed
  int repeat = 3;
  double slo_p99_ms = 0, moderate_rate = 0;
  bool has_scale = false;
  Scale scale;
};

// The link as the testbed reads it (bench/relay.h), in the simulator's seconds.
absl::Status ReadLink(const ConfigNode& n, sim::LinkModel* l) {
  LinkSpec spec;
  PICE_RETURN_IF_ERROR(LinkSpec::Read(n, &spec));
  *l = {spec.rtt_ms / 1e3, spec.jitter_ms / 1e3, spec.mbit, spec.loss, spec.rto_ms / 1e3};
  return absl::OkStatus();
}

// batch + decode_tokens_per_s (the same length, batches ascending), prefill, max_batch.
absl::Status ReadProfile(const ConfigNode& n, sim::EngineProfile* p) {
  for (const char* k : {"batch", "decode_tokens_per_s", "prefill_tokens_per_s"}) {
    PICE_RETURN_IF_ERROR(n.Require(k));
  }
  std::vector<double> b, r;
  PICE_RETURN_IF_ERROR(n.ReadDoubleList("batch", &b, 1, 1e6));
  PICE_RETURN_IF_ERROR(n.ReadDoubleList("decode_tokens_per_s", &r, 1e-6, 1e9));
  if (b.empty() || b.size() != r.size()) {
    return n.ChildError("decode_tokens_per_s", "expected one rate per entry of `batch`");
  }
  p->decode.clear();
  for (size_t i = 0; i < b.size(); ++i) {
    if (i > 0 && b[i] <= b[i - 1]) return n.ChildError("batch", "expected ascending batch sizes");
    p->decode.push_back({int(b[i]), r[i]});
  }
  PICE_RETURN_IF_ERROR(n.ReadDouble("prefill_tokens_per_s", &p->prefill_tokens_per_s, 1e-6, 1e9));
  PICE_RETURN_IF_ERROR(n.ReadInt("max_batch", &p->max_batch, 1, 4096));
  PICE_RETURN_IF_ERROR(n.ReadDouble("context", &p->context, 0, 1e7));
  if (!n.Has("short_context")) return absl::OkStatus();
  const ConfigNode s = n.Child("short_context");
  PICE_RETURN_IF_ERROR(s.CheckKeys({"context", "batch", "decode_tokens_per_s"}));
  for (const char* k : {"context", "batch", "decode_tokens_per_s"}) PICE_RETURN_IF_ERROR(s.Require(k));
  PICE_RETURN_IF_ERROR(s.ReadDouble("context", &p->context_short, 0, 1e7));
  if (p->context <= p->context_short) {
    return n.ChildError("context", "expected the mean context of decode_tokens_per_s, above short_context's");
  }
  PICE_RETURN_IF_ERROR(s.ReadDoubleList("batch", &b, 1, 1e6));
  PICE_RETURN_IF_ERROR(s.ReadDoubleList("decode_tokens_per_s", &r, 1e-6, 1e9));
  if (b.empty() || b.size() != r.size()) {
    return s.ChildError("decode_tokens_per_s", "expected one rate per entry of `batch`");
  }
  for (size_t i = 0; i < b.size(); ++i) {
    if (i > 0 && b[i] <= b[i - 1]) return s.ChildError("batch", "expected ascending batch sizes");
    p->decode_short.push_back({int(b[i]), r[i]});
  }
  return absl::OkStatus();
}

absl::StatusOr<SimFile> LoadSimFile(const std::string& path) {
  PICE_ASSIGN_OR_RETURN(ConfigNode root, ConfigNode::LoadFile(path));
  PICE_RETURN_IF_ERROR(root.CheckKeys(
      {"cloud", "edges", "scheduler", "workload", "load", "slo_p99", "moderate_rate", "scale"}));
  for (const char* k : {"cloud", "edges", "scheduler", "workload", "load"}) PICE_RETURN_IF_ERROR(root.Require(k));
  SimFile f;
  sim::Topology& t = f.topo;
  const ConfigNode c = root.Child("cloud");
  PICE_RETURN_IF_ERROR(c.CheckKeys({"replicas", "batch", "decode_tokens_per_s", "prefill_tokens_per_s",
                                    "max_batch", "context", "short_context", "link"}));
  PICE_RETURN_IF_ERROR(c.ReadInt("replicas", &t.clouds, 1, 100000));
  PICE_RETURN_IF_ERROR(ReadProfile(c, &t.cloud));
  PICE_RETURN_IF_ERROR(ReadLink(c, &t.cloud_link));
  const ConfigNode e = root.Child("edges");
  PICE_RETURN_IF_ERROR(e.CheckKeys({"count", "members", "per_cpu", "batch", "decode_tokens_per_s",
                                    "prefill_tokens_per_s", "max_batch", "max_slots", "max_queue", "link",
                                    "churn", "context", "short_context"}));
  PICE_RETURN_IF_ERROR(e.ReadInt("max_slots", &t.edge_slots, 1, 100000));
  PICE_RETURN_IF_ERROR(e.ReadInt("max_queue", &t.edge_queue, 0, 100000));
  PICE_RETURN_IF_ERROR(e.ReadInt("count", &t.edges, 1, 1000000));
  PICE_RETURN_IF_ERROR(e.ReadInt("members", &t.members, 1, 64));
  PICE_RETURN_IF_ERROR(e.ReadInt("per_cpu", &t.edges_per_cpu, 1, 1024));
  PICE_RETURN_IF_ERROR(ReadProfile(e, &t.edge));
  PICE_RETURN_IF_ERROR(ReadLink(e, &t.edge_link));
  if (e.Has("churn")) {
    const ConfigNode ch = e.Child("churn");
    PICE_RETURN_IF_ERROR(ch.CheckKeys({"mttf", "mttr"}));
    PICE_RETURN_IF_ERROR(ch.ReadSeconds("mttf", &t.mttf_s, 0, 1e9));
    PICE_RETURN_IF_ERROR(ch.ReadSeconds("mttr", &t.mttr_s, 0.001, 1e9));
  }
  const ConfigNode s = root.Child("scheduler");
  PICE_RETURN_IF_ERROR(s.CheckKeys({"replicas", "threads", "cpu_per_query", "cpu_per_probe",
                                    "cpu_per_edge_scan_ns", "load_poll", "max_edge_attempts", "shard_edges",
                                    "policy"}));
  sim::SchedulerModel& m = t.sched;
  PICE_RETURN_IF_ERROR(s.ReadInt("replicas", &m.replicas, 1, 1024));
  PICE_RETURN_IF_ERROR(s.ReadInt("threads", &m.threads, 1, 1024));
  if (s.Has("cpu_per_query")) {
    const ConfigNode q = s.Child("cpu_per_query");
    PICE_RETURN_IF_ERROR(q.CheckKeys({"cloud", "sketch"}));
    PICE_RETURN_IF_ERROR(q.ReadSeconds("cloud", &m.cpu_s_cloud_query, 0, 10));
    PICE_RETURN_IF_ERROR(q.ReadSeconds("sketch", &m.cpu_s_sketch_query, 0, 10));
  }
  PICE_RETURN_IF_ERROR(s.ReadSeconds("cpu_per_probe", &m.cpu_s_per_probe, 0, 10));
  double scan_ns = m.cpu_s_per_edge_scan * 1e9;
  PICE_RETURN_IF_ERROR(s.ReadDouble("cpu_per_edge_scan_ns", &scan_ns, 0, 1e6));
  m.cpu_s_per_edge_scan = scan_ns * 1e-9;
  PICE_RETURN_IF_ERROR(s.ReadSeconds("load_poll", &m.load_poll_s, 0.001, 60));
  PICE_RETURN_IF_ERROR(s.ReadInt("max_edge_attempts", &m.max_edge_attempts, 1, 64));
  PICE_RETURN_IF_ERROR(s.ReadBool("shard_edges", &m.shard_edges));
  if (s.Has("policy")) {
    PICE_ASSIGN_OR_RETURN(t.policy, scheduler::ParsePolicy(s.Child("policy")));
  } else {
    PICE_ASSIGN_OR_RETURN(t.policy, scheduler::BuiltinPolicy("general"));
  }
  const ConfigNode w = root.Child("workload");
  PICE_RETURN_IF_ERROR(w.CheckKeys({"prompt_tokens", "expand_prompt_tokens", "sketch_tokens", "points",
                                    "expand_tokens", "full_tokens", "escalation"}));
  sim::Workload& k = f.work;
  PICE_RETURN_IF_ERROR(w.ReadInt("prompt_tokens", &k.prompt_tokens, 1, 1 << 20));
  PICE_RETURN_IF_ERROR(w.ReadInt("expand_prompt_tokens", &k.expand_prompt_tokens, 1, 1 << 20));
  PICE_RETURN_IF_ERROR(w.ReadDouble("sketch_tokens", &k.sketch_tokens, 1, 1 << 20));
  PICE_RETURN_IF_ERROR(w.ReadInt("points", &k.points, 1, 256));
  PICE_RETURN_IF_ERROR(w.ReadInt("expand_tokens", &k.expand_tokens, 1, 1 << 20));
  PICE_RETURN_IF_ERROR(w.ReadInt("full_tokens", &k.full_tokens, 1, 1 << 20));
  PICE_RETURN_IF_ERROR(w.ReadDouble("escalation", &k.escalation, 0, 1));
  const ConfigNode l = root.Child("load");
  PICE_RETURN_IF_ERROR(l.CheckKeys({"rates", "queries", "duration", "routes", "repeat", "timeout", "seed"}));
  PICE_RETURN_IF_ERROR(l.ReadDoubleList("rates", &f.rates, 1e-9, 1e9));
  PICE_RETURN_IF_ERROR(l.ReadInt("queries", &f.run.queries, 0, 10000000));
  PICE_RETURN_IF_ERROR(l.ReadSeconds("duration", &f.run.duration_s, 0.001, 1e7));
  PICE_RETURN_IF_ERROR(l.ReadSeconds("timeout", &f.run.timeout_s, 0.001, 1e7));
  PICE_RETURN_IF_ERROR(l.ReadInt("repeat", &f.repeat, 1, 1000));
  int seed = 1;
  PICE_RETURN_IF_ERROR(l.ReadInt("seed", &seed, 0, 1 << 30));
  f.run.seed = uint64_t(seed);
  if (l.Has("routes")) {
    PICE_RETURN_IF_ERROR(l.ReadStringList("routes", &f.routes));
    for (const std::string& r : f.routes) {
      if (r != "cloud" && r != "sketch" && r != "auto") return l.ChildError("routes", "expected cloud, sketch or auto");
    }
  }
  double slo = 0;
  PICE_RETURN_IF_ERROR(root.ReadSeconds("slo_p99", &slo, 0, 1e7));
  f.slo_p99_ms = slo * 1e3;
  PICE_RETURN_IF_ERROR(root.ReadDouble("moderate_rate", &f.moderate_rate, 0, 1e9));
  if (root.Has("scale")) {
    const ConfigNode g = root.Child("scale");
    PICE_RETURN_IF_ERROR(g.CheckKeys({"edges", "schedulers", "load_poll", "rate_per_edge", "edges_per_cloud",
                                      "duration", "route", "churn", "shard_edges"}));
    PICE_RETURN_IF_ERROR(g.Require("edges"));
    f.has_scale = true;
    Scale& sc = f.scale;
    std::vector<double> v;
    PICE_RETURN_IF_ERROR(g.ReadDoubleList("edges", &v, 1, 1e7));
    for (double x : v) sc.edges.push_back(int(x));
    if (g.Has("schedulers")) {
      PICE_RETURN_IF_ERROR(g.ReadDoubleList("schedulers", &v, 1, 1024));
      sc.schedulers.clear();
      for (double x : v) sc.schedulers.push_back(int(x));
    }
    if (g.Has("load_poll")) {
      std::vector<std::string> polls;
      PICE_RETURN_IF_ERROR(g.ReadStringList("load_poll", &polls));
      for (size_t i = 0; i < polls.size(); ++i) {
        auto one = ConfigNode::LoadString(absl::StrCat("p: ", polls[i]), path, "scale.load_poll");
        double p = 0;
        if (!one.ok() || !one->ReadSeconds("p", &p, 0.001, 60).ok() || p <= 0) {
          return g.ChildError("load_poll", "expected durations such as 200ms or 2s");
        }
        sc.load_polls.push_back(p);
      }
    } else {
      sc.load_polls = {t.sched.load_poll_s};
    }
    if (g.Has("shard_edges")) {
      std::vector<std::string> v;
      PICE_RETURN_IF_ERROR(g.ReadStringList("shard_edges", &v));
      sc.shard.clear();
      for (const std::string& x : v) {
        if (x != "true" && x != "false") return g.ChildError("shard_edges", "expected true and/or false");
        sc.shard.push_back(x == "true");
      }
    }
    PICE_RETURN_IF_ERROR(g.ReadDouble("rate_per_edge", &sc.rate_per_edge, 1e-9, 1e6));
    PICE_RETURN_IF_ERROR(g.ReadInt("edges_per_cloud", &sc.edges_per_cloud, 1, 1000000));
    PICE_RETURN_IF_ERROR(g.ReadSeconds("duration", &sc.duration_s, 0.001, 1e7));
    PICE_RETURN_IF_ERROR(g.ReadEnum("route", &sc.route, {"cloud", "sketch", "auto"}));
    if (g.Has("churn")) {
      const ConfigNode ch = g.Child("churn");
      PICE_RETURN_IF_ERROR(ch.CheckKeys({"mttf", "mttr"}));
      PICE_RETURN_IF_ERROR(ch.ReadSeconds("mttf", &sc.mttf_s, 0, 1e9));
      PICE_RETURN_IF_ERROR(ch.ReadSeconds("mttr", &sc.mttr_s, 0.001, 1e9));
    }
  }
  return f;
}

// One simulated run's figures, as the testbed's (bench/curves.h) plus utilizations.
std::map<std::string, double> SimFigures(const sim::RunResult& r, double rate) {
  std::vector<Sample> ss;
  int retries = 0;
  for (const sim::QueryResult& q : r.queries) {
    ss.push_back({q.ok, q.latency_s * 1e3, q.first_s * 1e3, q.end_s, q.cloud_tokens, q.useful_tokens, {}});
    retries += q.retries;
  }
  std::map<std::string, double> f = RunFigures(ss, rate);
  f["cloud_cpu_utilization"] = r.cloud_utilization;
  f["edges_cpu_utilization"] = r.edge_utilization;
  f["scheduler_utilization"] = r.scheduler_utilization;
  f["retries_per_query"] = ss.empty() ? 0 : double(retries) / double(ss.size());
  return f;
}

// Every repeat x route x rate, in the testbed's order and with its seeds (seed * 1000 + the
// run's index; routes reversed on odd repeats): the same arrival times as a testbed run.
RunsByRoute Curves(const SimFile& f, const std::vector<std::string>& routes,
                   const std::map<std::pair<std::string, double>, int>& queries) {
  RunsByRoute runs;
  uint64_t index = 0;
  for (int rep = 0; rep < f.repeat; ++rep) {
    std::vector<std::string> order = routes;
    if (rep % 2) std::reverse(order.begin(), order.end());
    for (const std::string& route : order) {
      for (double rate : f.rates) {
        sim::RunSpec run = f.run;
        run.route = route;
        run.rate = rate;
        run.seed = f.run.seed * 1000 + index++;
        if (auto it = queries.find({route, rate}); it != queries.end()) run.queries = it->second;
        runs[route][rate].push_back(SimFigures(sim::Simulate(f.topo, f.work, run), rate));
      }
    }
  }
  return runs;
}

// The testbed run's route order and seed: in its JSON, else its config file's `load:`,
// else the defaults.
void TestbedOrder(const json& tb, std::vector<std::string>* routes, uint64_t* seed) {
  std::vector<std::string> listed;
  int s = 1;
  if (tb.contains("routes")) {
    listed = tb["routes"].get<std::vector<std::string>>();
    s = tb.value("seed", 1);
  } else if (auto cfg = ConfigNode::LoadFile(tb.value("config", "")); cfg.ok() && cfg->Has("load")) {
    const ConfigNode l = cfg->Child("load");
    (void)l.ReadStringList("routes", &listed);
    (void)l.ReadInt("seed", &s, 0, 1 << 30);
  }
  if (listed.empty()) listed = {"cloud", "sketch", "auto"};
  std::vector<std::string> out;
  for (const std::string& r : listed) {
    if (tb["curves"].contains(r)) out.push_back(r);
  }
  *routes = out;
  *seed = uint64_t(s);
}

// The testbed's figures against the simulator's, point by point.
json Calibrate(SimFile& f, const json& tb, std::vector<std::string>* routes) {
  std::map<std::pair<std::string, double>, int> queries;
  TestbedOrder(tb, routes, &f.run.seed);
  std::set<double> rates;
  for (const std::string& route : *routes) {
    for (const json& p : tb["curves"][route]) {
      rates.insert(p["offered_qps"].get<double>());
      queries[{route, p["offered_qps"].get<double>()}] = int(std::lround(p["sent"].get<double>()));
    }
  }
  f.rates.assign(rates.begin(), rates.end());
  if (tb.contains("repeat")) f.repeat = tb["repeat"].get<int>();
  json sim = SummarizeCurves(Curves(f, *routes, queries), {*routes, f.rates, f.slo_p99_ms, f.moderate_rate});
  json out = json::object(), worst = json::object();
  const std::vector<std::string> keys = {"latency_p50_ms", "latency_mean_ms", "latency_p99_ms",
                                         "throughput_qps", "first_content_p50_ms"};
  int within = 0, compared = 0;
  for (const std::string& r : *routes) {
    out[r] = json::array();
    for (size_t i = 0; i < tb["curves"][r].size() && i < sim["curves"][r].size(); ++i) {
      const json& m = tb["curves"][r][i];
      const json& s = sim["curves"][r][i];
      json row = {{"offered_qps", m["offered_qps"]}};
      for (const std::string& k : keys) {
        const double a = m[k].get<double>(), b = s[k].get<double>();
        const double err = a > 0 ? (b - a) / a : 0;
        row[k] = {{"testbed", a}, {"sim", b}, {"error", err}};
        worst[k] = std::max(worst.value(k, 0.0), std::fabs(err));
        ++compared;
        within += std::fabs(err) <= 0.10;
      }
      out[r].push_back(row);
    }
  }
  return {{"points", out}, {"max_abs_error", worst}, {"within_10pct", within}, {"compared", compared},
          {"sim", sim}};
}

void PrintCalibration(const json& c, const std::vector<std::string>& routes) {
  std::printf("%-7s %8s | %-23s | %-23s | %-23s | %-21s | %-21s\n", "route", "q/s", "p50 latency s (tb/sim)",
              "mean latency s", "p99 latency s", "throughput q/s", "first content s");
  for (const std::string& r : routes) {
    for (const json& row : c["points"][r]) {
      std::printf("%-7s %8g", r.c_str(), row["offered_qps"].get<double>());
      for (const char* k : {"latency_p50_ms", "latency_mean_ms", "latency_p99_ms", "throughput_qps",
                            "first_content_p50_ms"}) {
        const double scale = std::string(k).find("_ms") != std::string::npos ? 1e-3 : 1;
        std::printf(" | %7.2f %7.2f %+5.0f%%", row[k]["testbed"].get<double>() * scale,
                    row[k]["sim"].get<double>() * scale, row[k]["error"].get<double>() * 100);
      }
      std::printf("\n");
    }
  }
  std::printf("within 10 %%: %d of %d figures\n", c["within_10pct"].get<int>(), c["compared"].get<int>());
}

// The scale grid: one run per (edges, schedulers, load_poll) at rate_per_edge * edges.
json ScaleStudy(const SimFile& f, bool quiet) {
  const Scale& sc = f.scale;
  json rows = json::array();
  size_t total = 0;
  for (int s : sc.schedulers) {
    for (bool shard : sc.shard) total += (shard && s == 1) ? 0 : sc.edges.size() * sc.load_polls.size();
  }
  size_t done = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int n : sc.edges) {
    for (int s : sc.schedulers) {
      for (double poll : sc.load_polls) {
       for (bool shard : sc.shard) {
        if (shard && s == 1) continue;  // one scheduler lists every edge either way
        sim::Topology t = f.topo;
        t.sched.shard_edges = shard;
        t.edges = n;
        t.clouds = std::max(1, (n + sc.edges_per_cloud - 1) / sc.edges_per_cloud);
        t.sched.replicas = s;
        t.sched.load_poll_s = poll;
        t.mttf_s = sc.mttf_s;
        t.mttr_s = sc.mttr_s;
        sim::RunSpec run = f.run;
        run.route = sc.route;
        run.rate = sc.rate_per_edge * n;
        run.queries = 0;
        run.duration_s = sc.duration_s;
        const auto t0 = std::chrono::steady_clock::now();
        const sim::RunResult r = sim::Simulate(t, f.work, run);
        const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::map<std::string, double> fig = SimFigures(r, run.rate);
        json row(fig);
        row["edges"] = n;
        row["clouds"] = t.clouds;
        row["schedulers"] = s;
        row["load_poll_s"] = poll;
        const int listed = shard ? (n + s - 1) / s : n;
        row["sharded"] = shard;
        row["probes_per_s_per_scheduler"] = listed / poll;
        row["scheduler_cpu_ms_per_query"] =
            (t.sched.cpu_s_sketch_query + f.work.points * listed * t.sched.cpu_s_per_edge_scan) * 1e3;
        row["simulated_s"] = r.span_s;
        row["events"] = r.events;
        row["wall_s"] = wall;
        std::string bound = "none";
        if (fig["scheduler_utilization"] >= 0.9) bound = "scheduler";
        else if (fig["cloud_cpu_utilization"] >= 0.9) bound = "cloud";
        else if (fig["edges_cpu_utilization"] >= 0.9) bound = "edges";
        row["saturated"] = bound;
        rows.push_back(row);
        ++done;
        const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (!quiet) {
          std::fprintf(stderr, "bench sim: [%zu/%zu] %d edges, %d scheduler(s), poll %gs: %.0f q/s, p99 %.0f ms; "
                       "elapsed %s, about %s left\n", done, total, n, s, poll, fig["throughput_qps"],
                       fig["latency_p99_ms"], Hms(el).c_str(), Hms(el / double(done) * double(total - done)).c_str());
        }
       }
      }
    }
  }
  return rows;
}

// scale.dat / scale.gp and the PNGs: p99 latency and scheduler utilization against the
// edge count, one line per (schedulers, load_poll).
void WriteScalePlots(const std::string& dir, const json& rows) {
  std::map<std::tuple<int, double, bool>, std::string> lines;
  for (const json& r : rows) {
    lines[{r["schedulers"].get<int>(), r["load_poll_s"].get<double>(), r["sharded"].get<bool>()}] +=
        absl::StrFormat("%d %g %g %g\n", r["edges"].get<int>(), r["latency_p99_ms"].get<double>() / 1e3,
                        r["scheduler_utilization"].get<double>() * 100, r["cloud_cpu_utilization"].get<double>() * 100);
  }
  std::string dat, gp = "set terminal pngcairo size 900,560\nset key top left\nset grid\nset logscale x\n"
                        "set xlabel 'edges (offered load grows with them)'\n";
  std::vector<std::string> titles;
  for (const auto& [key, text] : lines) {
    const auto& [n, poll, shard] = key;
    titles.push_back(absl::StrFormat("%d scheduler%s%s, load_poll %gs", n, n > 1 ? "s" : "",
                                     shard ? " (edges sharded)" : "", poll));
    dat += "# " + titles.back() + "\n" + text + "\n\n";
  }
  std::ofstream(dir + "/scale.dat", std::ios::trunc) << dat;
  for (const auto& [png, col, label] : std::vector<std::tuple<std::string, int, std::string>>{
           {"scale_p99.png", 2, "p99 latency (s)"}, {"scale_scheduler.png", 3, "scheduler CPU (% of its cores)"}}) {
    gp += "set output '" + dir + "/" + png + "'\nset ylabel '" + label + "'\nplot ";
    for (size_t i = 0; i < titles.size(); ++i) {
      absl::StrAppend(&gp, i ? ", " : "", "'", dir, "/scale.dat' index ", i, " using 1:", col,
                      " with linespoints title '", titles[i], "'");
    }
    gp += "\n";
  }
  std::ofstream(dir + "/scale.gp", std::ios::trunc) << gp;
  RunGnuplot(dir + "/scale.gp", "bench sim");
}

void PrintScale(const json& rows) {
  std::printf("%7s %6s %5s %5s %7s | %9s %9s %9s %9s | %5s %5s %5s | %8s %6s %s\n", "edges", "clouds", "scheds",
              "shard", "poll s", "offered", "answered", "p50 ms", "p99 ms", "sched", "cloud", "edge", "retry/q", "failed",
              "saturated");
  for (const json& r : rows) {
    std::printf("%7d %6d %5d %5s %7.2f | %9.1f %8.1f%% %9.0f %9.0f | %4.0f%% %4.0f%% %4.0f%% | %8.3f %6.0f %s\n",
                r["edges"].get<int>(), r["clouds"].get<int>(), r["schedulers"].get<int>(),
                r["sharded"].get<bool>() ? "yes" : "no", r["load_poll_s"].get<double>(), r["offered_qps"].get<double>(),
                100 * (1 - r["failed"].get<double>() / std::max(1.0, r["sent"].get<double>())),
                r["latency_p50_ms"].get<double>(), r["latency_p99_ms"].get<double>(),
                r["scheduler_utilization"].get<double>() * 100, r["cloud_cpu_utilization"].get<double>() * 100,
                r["edges_cpu_utilization"].get<double>() * 100, r["retries_per_query"].get<double>(),
                r["failed"].get<double>(), r["saturated"].get<std::string>().c_str());
  }
}

}  // namespace

int RunBenchSim(const std::vector<std::string>& argv) {
  const char* c = "bench sim";
  auto a = Args::Parse(argv, {"config", "out", "calibrate"}, {"json", "scale"});
  if (!a.ok()) return Fail(c, std::string(a.status().message()), 2);
  if (a->Str("config").empty()) return Fail(c, "--config FILE is required", 2);
  auto file = LoadSimFile(a->Str("config"));
  if (!file.ok()) return Fail(c, std::string(file.status().message()), 2);
  SimFile f = *std::move(file);
  const std::string dir = a->Str("out");
  if (!dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
  }
  json out;
  out["config"] = a->Str("config");
  if (a->Flag("scale")) {
    if (!f.has_scale) return Fail(c, a->Str("config") + ": --scale needs a `scale:` section", 2);
    out["scale"] = ScaleStudy(f, false);
    if (!a->Flag("json")) PrintScale(out["scale"]);
    if (!dir.empty()) WriteScalePlots(dir, out["scale"]);
  } else if (!a->Str("calibrate").empty()) {
    std::ifstream in(a->Str("calibrate"));
    json tb = json::parse(in, nullptr, false);
    if (!in || tb.is_discarded() || !tb.contains("curves")) {
      return Fail(c, a->Str("calibrate") + ": expected the testbed.json of `pice bench testbed --out`", 2);
    }
    std::vector<std::string> routes;
    out["calibration"] = Calibrate(f, tb, &routes);
    if (!a->Flag("json")) PrintCalibration(out["calibration"], routes);
    if (!dir.empty()) {
      Series series;
      for (const std::string& r : routes) {
        series.push_back({r + " testbed", tb["curves"][r]});
        series.push_back({r + " sim", out["calibration"]["sim"]["curves"][r]});
      }
      WriteCurvePlots(dir, series, "calibration", "calibration_");
    }
  } else {
    out.update(SummarizeCurves(Curves(f, f.routes, {}), {f.routes, f.rates, f.slo_p99_ms, f.moderate_rate}));
    if (!a->Flag("json")) PrintCurves(out, f.routes);
    if (!dir.empty()) {
      Series series;
      for (const std::string& r : f.routes) series.push_back({r, out["curves"][r]});
      WriteCurvePlots(dir, series, "sim", "sim_");
    }
  }
  if (!dir.empty()) {
    const char* name = a->Flag("scale") ? "/scale.json" : a->Str("calibrate").empty() ? "/sim.json" : "/calibration.json";
    std::ofstream(dir + name, std::ios::trunc) << out.dump(2) << "\n";
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace pice::bench
