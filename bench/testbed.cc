// pice bench testbed: the speed-up on an emulated cloud–edge testbed, under open-loop load.
//
//   pice bench testbed --config bench/testbed/two-core.yaml [--json] [--out DIR]
//                      [--rates 5,10] [--duration 5s] [--repeat 1]   (override the file)
//
// Starts pice-cloud, the edges and pice-scheduler as their own processes, each pinned to
// its CPUs (sched_setaffinity, as taskset), and puts an emulated link between the
// scheduler and every node (bench/relay.h: delay, jitter, bandwidth, loss on a user-space
// relay — this kernel has no netem; the output says so). Then, for every route (cloud,
// sketch, auto), offered rate and repeat, sends the eval file's questions (all kinds, the
// dependent ones included, in file order) as a Poisson stream for `duration`: open loop,
// arrivals do not wait for answers. Both routes get the templates' answer budgets.
// (`queries: N` instead: exactly N arrivals per run, for slow real-size models.)
// Per point: completed queries/s (completed / time to the last answer), useful tokens/s
// (answer text tokens under the cloud tokenizer), latency p50/p99/mean, time to first
// answer content (a delta or an expansion), cloud tokens per query and pice-arith part
// accuracy. Every figure is the median of the repeats with its [min, max].
//
// Summary: the knee of each route (the highest offered rate still served at >= 90 %),
// throughput_ratio = sketch over cloud-only queries/s at equal p99 (the best throughput
// of each route among rates whose median p99 is within the SLO: `slo_p99` in the file,
// else 5x the cloud route's p99 at the lowest rate), latency_ratio = sketch over cloud
// mean latency at `moderate_rate`, quality_delta_points = sketch minus cloud part
// accuracy in points. With --out DIR: testbed.json, testbed.dat and, when gnuplot is
// installed, latency.png, throughput.png and first_content.png.
//
// The edges are extra hardware by design: the comparison is cloud-only on the cloud's CPUs
// against the same cloud plus edges on other CPUs.
#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/bench.h"
#include "bench/curves.h"
#include "bench/netns.h"
#include "bench/procs.h"
#include "bench/stats.h"
#include "bench/relay.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/eval_file.h"
#include "common/args.h"
#include "common/config.h"
#include "common/status_macros.h"
#include "engine/gguf/gguf.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "pice/v1/pice.grpc.pb.h"

namespace pice::bench {

using namespace ::pice::cli;            // NOLINT(build/namespaces)
using namespace ::pice::bench::procs;   // NOLINT(build/namespaces)
namespace {

using json = nlohmann::json;

struct Placement {
  std::string cpus;   // "" = any
  int threads = 1;
  LinkSpec link;
};

struct Testbed {
  std::string models, tmpl, eval, cloud_model;
  std::vector<std::string> members;  // each edge's ensemble (model files)
  int edges = 2;
  Placement cloud, edge, scheduler;
  std::string scheduler_extra;       // YAML appended to the scheduler's config
  std::string edge_extra;            // YAML appended to every edge's config
  bool namespaces = false;           // network: {namespaces: true}: bench/netns.h
  std::vector<double> rates;
  double duration_s = 10, timeout_s = 60, slo_p99_ms = 0, moderate_rate = 0;
  int queries = 0;  // > 0: exactly this many arrivals per run (instead of `duration`)
  std::vector<std::string> routes = {"cloud", "sketch", "auto"};
  int repeat = 3;
  uint64_t seed = 1;
};

absl::Status ReadPlacement(const ConfigNode& n, Placement* p) {
  PICE_RETURN_IF_ERROR(n.ReadString("cpus", &p->cpus));
  cpu_set_t set;
  if (!p->cpus.empty() && !ParseCpus(p->cpus, &set)) {
    return n.ChildError("cpus", "expected CPU numbers like \"0\", \"1-3\" or \"0,2\"");
  }
  PICE_RETURN_IF_ERROR(n.ReadInt("threads", &p->threads, 1, 256));
  return LinkSpec::Read(n, &p->link);
}

absl::StatusOr<Testbed> LoadTestbed(const std::string& path) {
  PICE_ASSIGN_OR_RETURN(ConfigNode root, ConfigNode::LoadFile(path));
  PICE_RETURN_IF_ERROR(root.CheckKeys(
      {"models", "template", "eval", "cloud", "edges", "scheduler", "load", "slo_p99", "moderate_rate", "network"}));
  Testbed t;
  PICE_RETURN_IF_ERROR(root.ReadPath("models", &t.models));
  PICE_RETURN_IF_ERROR(root.ReadPath("template", &t.tmpl));
  PICE_RETURN_IF_ERROR(root.ReadPath("eval", &t.eval));
  for (const char* k : {"models", "template", "eval"}) PICE_RETURN_IF_ERROR(root.Require(k));
  for (std::string* p : {&t.models, &t.tmpl, &t.eval}) {
    std::error_code ec;
    *p = fs::absolute(*p, ec).lexically_normal().string();  // the nodes' configs are elsewhere
  }
  for (const char* k : {"cloud", "edges", "scheduler", "load"}) PICE_RETURN_IF_ERROR(root.Require(k));
  const ConfigNode c = root.Child("cloud");
  PICE_RETURN_IF_ERROR(c.CheckKeys({"model", "cpus", "threads", "link"}));
  PICE_RETURN_IF_ERROR(c.ReadString("model", &t.cloud_model, false));
  PICE_RETURN_IF_ERROR(ReadPlacement(c, &t.cloud));
  const ConfigNode e = root.Child("edges");
  PICE_RETURN_IF_ERROR(e.CheckKeys({"count", "members", "cpus", "threads", "link", "extra"}));
  PICE_RETURN_IF_ERROR(e.ReadString("extra", &t.edge_extra));
  PICE_RETURN_IF_ERROR(e.ReadInt("count", &t.edges, 1, 64));
  PICE_RETURN_IF_ERROR(e.ReadStringList("members", &t.members));
  if (t.members.empty()) return e.ChildError("members", "expected at least one model file");
  PICE_RETURN_IF_ERROR(ReadPlacement(e, &t.edge));
  const ConfigNode s = root.Child("scheduler");
  PICE_RETURN_IF_ERROR(s.CheckKeys({"cpus", "extra"}));
  PICE_RETURN_IF_ERROR(ReadPlacement(s, &t.scheduler));
  PICE_RETURN_IF_ERROR(s.ReadString("extra", &t.scheduler_extra));
  if (root.Has("network")) {
    const ConfigNode net = root.Child("network");
    PICE_RETURN_IF_ERROR(net.CheckKeys({"namespaces"}));
    PICE_RETURN_IF_ERROR(net.ReadBool("namespaces", &t.namespaces));
  }
  const ConfigNode l = root.Child("load");
  PICE_RETURN_IF_ERROR(l.CheckKeys({"rates", "duration", "queries", "routes", "repeat", "timeout", "seed"}));
  PICE_RETURN_IF_ERROR(l.ReadInt("queries", &t.queries, 0, 1000000));
  PICE_RETURN_IF_ERROR(l.ReadDoubleList("rates", &t.rates, 1e-9, 1e9));  // queries/s
  if (t.rates.empty()) return l.ChildError("rates", "expected at least one rate");
  PICE_RETURN_IF_ERROR(l.ReadSeconds("duration", &t.duration_s, 0.5, 3600));
  PICE_RETURN_IF_ERROR(l.ReadSeconds("timeout", &t.timeout_s, 1, 3600));
  PICE_RETURN_IF_ERROR(l.ReadInt("repeat", &t.repeat, 1, 100));
  int seed = 1;
  PICE_RETURN_IF_ERROR(l.ReadInt("seed", &seed, 0, 1 << 30));
  t.seed = static_cast<uint64_t>(seed);
  if (l.Has("routes")) {
    PICE_RETURN_IF_ERROR(l.ReadStringList("routes", &t.routes));
    for (const std::string& r : t.routes) {
      if (r != "cloud" && r != "sketch" && r != "auto") {
        return l.ChildError("routes", "expected cloud, sketch or auto");
      }
    }
  }
  double slo = 0;
  if (root.Has("slo_p99")) PICE_RETURN_IF_ERROR(root.ReadSeconds("slo_p99", &slo, 0, 3600));
  t.slo_p99_ms = slo * 1e3;
  PICE_RETURN_IF_ERROR(root.ReadDouble("moderate_rate", &t.moderate_rate, 0, 1e6));
  return t;
}

std::string ModelPath(const Testbed& t, const std::string& m) {
  return m.find('/') == std::string::npos ? t.models + "/" + m : m;
}


v1::Route RouteOf(const std::string& r) {
  return r == "cloud" ? v1::ROUTE_CLOUD : r == "sketch" ? v1::ROUTE_SKETCH : v1::ROUTE_AUTO;
}

// One open-loop run: Poisson arrivals at `rate` for `duration_s`; returns every sample.
// `answers` gets each answer's text (its tokens are counted after the run).
std::vector<Sample> RunOpenLoop(v1::Pice::Stub* stub, const std::vector<Question>& qs,
                                const std::string& route, double rate, const Testbed& t,
                                uint64_t seed, size_t* next_question, std::vector<std::string>* answers) {
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> gap(rate);
  std::vector<double> at;
  for (double s = gap(rng); t.queries > 0 ? at.size() < size_t(t.queries) : s < t.duration_s;
       s += gap(rng)) {
    at.push_back(s);
  }
  std::vector<Sample> out(at.size());
  answers->assign(at.size(), "");
  std::vector<std::thread> threads;
  threads.reserve(at.size());
  const auto t0 = Clock::now();
  for (size_t i = 0; i < at.size(); ++i) {
    std::this_thread::sleep_until(t0 + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(at[i])));
    const Question& q = qs[(*next_question)++ % qs.size()];
    threads.emplace_back([&, i, q] {
      Sample& s = out[i];
      v1::QueryRequest req;
      req.set_prompt(q.question);
      req.set_route(RouteOf(route));
      req.set_no_cache(true);
      const auto start = Clock::now();
      double first = -1;
      v1::AnswerEvent answer;
      grpc::Status st = RunQuery(stub, req, t.timeout_s, "", [&](const v1::QueryEvent& ev) {
        if (first < 0 && (ev.has_delta() || ev.has_expansion())) {
          first = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        }
        if (ev.has_answer()) answer = ev.answer();
      });
      const auto end = Clock::now();
      s.latency_ms = std::chrono::duration<double, std::milli>(end - start).count();
      s.first_ms = first < 0 ? s.latency_ms : first;
      s.end_s = std::chrono::duration<double>(end - t0).count();
      s.ok = st.ok() && !answer.text().empty();
      (*answers)[i] = answer.text();
      for (const v1::NodeTokens& n : answer.tokens()) {
        if (n.node().rfind("cloud", 0) == 0) s.cloud_tokens += double(n.generated_tokens());
      }
      s.parts = ScoreAnswer(q, answer);
    });
  }
  for (auto& th : threads) th.join();
  return out;
}

// CPU seconds each kind of process used during one run, and the run's wall time.
struct CpuUse {
  double scheduler = 0, cloud = 0, edges = 0, wall = 0;
  double load = 0;  // this process: the clients and the links (on the scheduler's CPUs)
};

double SelfCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

// RunFigures plus the per-query scheduler cost and the nodes' utilization (the
// simulator's inputs, bench/sim).
std::map<std::string, double> Figures(const std::vector<Sample>& ss, double rate, const CpuUse& cpu) {
  std::map<std::string, double> f = RunFigures(ss, rate);
  f["scheduler_cpu_ms_per_query"] = ss.empty() ? 0 : cpu.scheduler * 1e3 / double(ss.size());
  f["cloud_cpu_utilization"] = cpu.wall > 0 ? cpu.cloud / cpu.wall : 0;
  f["edges_cpu_utilization"] = cpu.wall > 0 ? cpu.edges / cpu.wall : 0;
  f["scheduler_cpu_utilization"] = cpu.wall > 0 ? cpu.scheduler / cpu.wall : 0;
  f["load_cpu_utilization"] = cpu.wall > 0 ? cpu.load / cpu.wall : 0;
  return f;
}

}  // namespace

int RunBenchTestbed(const std::vector<std::string>& argv) {
  const char* c = "bench testbed";
  auto a = Args::Parse(argv, {"config", "out", "rates", "duration", "repeat"}, {"json", "keep"});
  if (!a.ok()) return Fail(c, std::string(a.status().message()), 2);
  if (a->Str("config").empty()) return Fail(c, "--config FILE is required", 2);
  auto tb = LoadTestbed(a->Str("config"));
  if (!tb.ok()) return Fail(c, std::string(tb.status().message()), 2);
  Testbed t = *std::move(tb);
  if (!a->Str("rates").empty()) {
    t.rates.clear();
    for (absl::string_view r : absl::StrSplit(a->Str("rates"), ',')) {
      double v = 0;
      if (!absl::SimpleAtod(r, &v) || v <= 0) return Fail(c, "--rates: expected positive numbers", 2);
      t.rates.push_back(v);
    }
  }
  if (!a->Str("duration").empty() && !absl::SimpleAtod(a->Str("duration"), &t.duration_s)) {
    return Fail(c, "--duration: expected seconds", 2);
  }
  if (auto r = a->Int("repeat", t.repeat, 1, 100); r.ok()) {
    t.repeat = static_cast<int>(*r);
  } else {
    return Fail(c, std::string(r.status().message()), 2);
  }
  auto all = LoadEval(t.eval);
  if (!all.ok()) return Fail(c, std::string(all.status().message()), 2);
  const fs::path bin = ExeDir();

  // The nodes, each on its CPUs; this process (clients and links) on the scheduler's.
  char tmpl[] = "/tmp/pice-testbed-XXXXXX";
  if (!mkdtemp(tmpl)) return Fail(c, "cannot create a temporary directory");
  const std::string dir = tmpl;
  cpu_set_t self;
  if (ParseCpus(t.scheduler.cpus, &self)) sched_setaffinity(0, sizeof self, &self);
  // Namespaces when the file asks and the machine allows: each node behind its own veth,
  // bandwidth shaped by tc; otherwise loopback, every link property in the relay.
  std::unique_ptr<NetnsLab> lab;
  std::string network = "loopback; delay, jitter, bandwidth and loss in a user-space relay (no netem here)";
  if (t.namespaces) {
    auto l = NetnsLab::Create();
    if (l.ok()) {
      lab = *std::move(l);
      network = "a network namespace per node (veth to a bridge), bandwidth by tc tbf; delay, jitter and "
                "loss in a user-space relay (no netem here)";
    } else {
      std::fprintf(stderr, "bench testbed: no network namespaces (%s): the nodes run on loopback\n",
                   std::string(l.status().message()).c_str());
      network = "loopback (namespaces unavailable: " + std::string(l.status().message()) +
                "); every link property in a user-space relay";
    }
  }
  // Where a node listens; with namespaces, its link's bandwidth moves from the relay to tc.
  auto place = [&](NodeProc* p, LinkSpec* link) -> absl::StatusOr<std::string> {
    if (!lab) return std::string("127.0.0.1");
    PICE_ASSIGN_OR_RETURN(std::string addr, lab->AddNode(link->mbit));
    p->SetNetwork(addr, lab->Exec(lab->size() - 1));
    link->mbit = 0;
    return addr;
  };
  auto node_yaml = [&](const std::string& name, const Placement& p, const std::string& host) {
    return absl::StrCat("node: ", name, "\nlisten: ", host, ":0\ntemplate: ", t.tmpl,
                        "\nthreads: ", p.threads, "\nlog_level: warn\n");
  };
  NodeProc cloud((bin / "pice-cloud").string(), dir + "/cloud.yaml", dir, "cloud",
                 v1::Cloud::service_full_name(), t.cloud.cpus);
  LinkSpec cloud_spec = t.cloud.link;
  auto cloud_host = place(&cloud, &cloud_spec);
  if (!cloud_host.ok()) return Fail(c, std::string(cloud_host.status().message()));
  WriteText(dir + "/cloud.yaml",
            node_yaml("cloud", t.cloud, *cloud_host) + "model: " + ModelPath(t, t.cloud_model) + "\n");
  cloud.Start(0);
  std::vector<std::unique_ptr<NodeProc>> edges;
  std::vector<LinkSpec> edge_specs(size_t(t.edges), t.edge.link);
  for (int i = 0; i < t.edges; ++i) {
    const std::string name = absl::StrCat("edge-", i + 1);
    edges.push_back(std::make_unique<NodeProc>((bin / "pice-edge").string(), dir + "/" + name + ".yaml",
                                               dir, name, v1::Edge::service_full_name(), t.edge.cpus));
    auto host = place(edges.back().get(), &edge_specs[size_t(i)]);
    if (!host.ok()) return Fail(c, std::string(host.status().message()));
    std::string y = node_yaml(name, t.edge, *host) + "ensemble:\n";
    for (const std::string& m : t.members) {
      absl::StrAppend(&y, "  - {name: ", fs::path(m).stem().string(), ", model: ", ModelPath(t, m), "}\n");
    }
    WriteText(dir + "/" + name + ".yaml", y + t.edge_extra + "\n");
    edges.back()->Start(0);
  }
  const auto boot = std::chrono::milliseconds(120000);
  if (auto s = cloud.Ready(boot); !s.ok()) return Fail(c, std::string(s.message()));
  for (auto& e : edges) {
    if (auto s = e->Ready(boot); !s.ok()) return Fail(c, std::string(s.message()));
  }
  std::vector<std::unique_ptr<LinkRelay>> links;
  auto link = [&](const std::string& upstream, const LinkSpec& spec) -> absl::StatusOr<std::string> {
    PICE_ASSIGN_OR_RETURN(auto r, LinkRelay::Start(upstream, spec, t.seed + links.size()));
    links.push_back(std::move(r));
    return links.back()->address();
  };
  auto cloud_link = link(cloud.address(), cloud_spec);
  if (!cloud_link.ok()) return Fail(c, std::string(cloud_link.status().message()));
  std::string sched_yaml = absl::StrCat("listen: 127.0.0.1:0\ncloud: ", *cloud_link, "\nedges:\n");
  for (size_t i = 0; i < edges.size(); ++i) {
    auto l = link(edges[i]->address(), edge_specs[i]);
    if (!l.ok()) return Fail(c, std::string(l.status().message()));
    absl::StrAppend(&sched_yaml, "  - ", *l, "\n");
  }
  // Open-loop load must not be shed by the per-client limit; the file's `extra` may set both.
  if (t.scheduler_extra.find("limits:") == std::string::npos) {
    sched_yaml += "limits: {max_concurrent_queries: 4096, max_queries_per_client: 0}\n";
  }
  if (t.scheduler_extra.find("timeouts:") == std::string::npos) sched_yaml += "timeouts: {load_poll: 200ms}\n";
  absl::StrAppend(&sched_yaml, t.scheduler_extra, "\n");
  WriteText(dir + "/scheduler.yaml", sched_yaml);
  NodeProc sched((bin / "pice-scheduler").string(), dir + "/scheduler.yaml", dir, "scheduler",
                 v1::Pice::service_full_name(), t.scheduler.cpus);
  sched.Start(0);
  if (auto s = sched.Ready(boot); !s.ok()) return Fail(c, std::string(s.message()));
  auto stub = v1::Pice::NewStub(MakeClientChannel(sched.address()));

  // The cloud tokenizer counts useful tokens.
  auto tok_file = gguf::GgufFile::Open(ModelPath(t, t.cloud_model));
  std::unique_ptr<Tokenizer> tok;
  if (tok_file.ok()) {
    if (auto tk = Tokenizer::FromGguf(**tok_file); tk.ok()) tok = *std::move(tk);
  }

  // Warm-up: every route once.
  size_t next_q = 0;
  for (const std::string& r : t.routes) {
    for (int i = 0; i < 1; ++i) {
      v1::QueryRequest req;
      req.set_prompt((*all)[size_t(i) % all->size()].question);
      req.set_route(RouteOf(r));
      req.set_no_cache(true);
      (void)RunQuery(stub.get(), req, t.timeout_s, "", [](const v1::QueryEvent&) {});
    }
  }

  // The runs: repeats outermost, routes in an order that alternates per repeat.
  RunsByRoute runs;
  const int total = t.repeat * int(t.routes.size()) * int(t.rates.size());
  int done = 0;
  const auto start = Clock::now();
  for (int rep = 0; rep < t.repeat; ++rep) {
    std::vector<std::string> order = t.routes;
    if (rep % 2) std::reverse(order.begin(), order.end());
    for (const std::string& r : order) {
      for (double rate : t.rates) {
        auto cpu_now = [&] {
          CpuUse u{sched.CpuSeconds(), cloud.CpuSeconds(), 0,
                   std::chrono::duration<double>(Clock::now().time_since_epoch()).count()};
          for (auto& e : edges) u.edges += e->CpuSeconds();
          u.load = SelfCpuSeconds();
          return u;
        };
        const CpuUse before = cpu_now();
        std::vector<std::string> answers;
        auto ss = RunOpenLoop(stub.get(), *all, r, rate, t, t.seed * 1000 + done, &next_q, &answers);
        const CpuUse after = cpu_now();
        for (size_t i = 0; tok && i < ss.size(); ++i) {
          ss[i].useful_tokens = double(tok->Encode(answers[i], false, false).size());
        }
        const CpuUse used{after.scheduler - before.scheduler, after.cloud - before.cloud,
                          after.edges - before.edges, after.wall - before.wall, after.load - before.load};
        auto f = Figures(ss, rate, used);
        runs[r][rate].push_back(f);
        ++done;
        const double el = std::chrono::duration<double>(Clock::now() - start).count();
        std::fprintf(stderr,
                     "bench testbed: [%d/%d] repeat %d, %s route, %g q/s offered: %.0f ok, %.0f "
                     "failed, %.1f q/s, p99 %.0f ms; elapsed %s, about %s left\n",
                     done, total, rep + 1, r.c_str(), rate, f["sent"] - f["failed"], f["failed"],
                     f["throughput_qps"], f["latency_p99_ms"], Hms(el).c_str(),
                     Hms(el / done * (total - done)).c_str());
      }
    }
  }

  // Curves, knees and the ratios.
  json out = SummarizeCurves(runs, {t.routes, t.rates, t.slo_p99_ms, t.moderate_rate});
  out["config"] = a->Str("config");
  out["layout"] = {{"cloud_cpus", t.cloud.cpus}, {"edge_cpus", t.edge.cpus},
                   {"scheduler_cpus", t.scheduler.cpus}, {"edges", t.edges},
                   {"members", t.members}, {"cloud_model", t.cloud_model}};
  out["links"] = {{"cloud", t.cloud.link.Describe()}, {"edges", t.edge.link.Describe()}};
  out["note"] = "open-loop Poisson arrivals; edges are extra hardware (cloud-only runs on the "
                "cloud's CPUs alone)";
  out["network"] = network;
  out["questions"] = all->size();
  out["duration_s"] = t.duration_s;
  out["queries_per_run"] = t.queries;
  out["repeat"] = t.repeat;
  out["routes"] = t.routes;  // the run order and seeds: `pice bench sim --calibrate` replays them
  out["seed"] = t.seed;
  if (!a->Str("out").empty()) {
    std::error_code ec;
    fs::create_directories(a->Str("out"), ec);
    WriteText(a->Str("out") + "/testbed.json", out.dump(2) + "\n");
    Series series;
    for (const std::string& r : t.routes) series.push_back({r, out["curves"][r]});
    WriteCurvePlots(a->Str("out"), series, "testbed");
  }
  for (auto& l : links) l->Stop();
  (void)sched.Terminate();
  for (auto& e : edges) e->Kill();
  cloud.Kill();
  if (!a->Flag("keep")) fs::remove_all(dir);

  if (!a->Flag("json")) PrintCurves(out, t.routes);
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace pice::bench
