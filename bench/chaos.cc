// pice bench chaos: failover under fire (the process supervision — start, SIGKILL,
// restart on the same port, wait for SERVING — is bench/procs.h). Starts pice-cloud, E
// pice-edge nodes and
// pice-scheduler as real processes on loopback (the binaries next to this executable, the
// bundled pice-arith models), sends N pice-arith questions from C concurrent clients, and
// meanwhile SIGKILLs a random edge every M ms and restarts it on the same port a third
// of an interval later. Every query must come back with a full answer: on the sketch
// route one expansion per sketch point, each answering its own point, in sketch order;
// on the full route a non-empty text. A client refused with RESOURCE_EXHAUSTED waits for
// the `retry-after-ms` hint and resends (bounded); anything else is lost.
//
//   pice bench chaos --queries N --edges E --kill-interval-ms M [--concurrency C] [--json]
//                    [--eval FILE] [--models DIR] [--seed S] [--timeout SECONDS] [--keep]
//
// --json prints one line: {"sent", "completed", "failed_over", "rejected", "kills",
// "lost", ...}; failed_over counts points another node expanded after an edge failed.
// Exit status 0 when nothing was lost, 1 otherwise (the node logs are kept then).
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/args.h"
#include "cli/client.h"
#include "bench/bench.h"
#include "bench/procs.h"
#include "bench/stats.h"
#include "cli/commands.h"
#include "cli/eval_file.h"
#include "cli/local_stack.h"
#include "nlohmann/json.hpp"
#include "pice/v1/pice.grpc.pb.h"
#include "scheduler/health_check.h"

namespace pice::bench {

// The client helpers, eval files and the embedded stack of the pice CLI.
using namespace ::pice::cli;  // NOLINT(build/namespaces)
using namespace ::pice::bench::procs;  // NOLINT(build/namespaces)
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

// Whether a successful query's events make a full answer; why not in *why.
bool Complete(const std::vector<v1::QueryEvent>& events, std::string* why) {
  if (events.empty() || !events.back().has_answer()) {
    *why = "no answer event";
    return false;
  }
  const v1::AnswerEvent& a = events.back().answer();
  if (a.route() == v1::ROUTE_CLOUD || a.degraded()) {
    if (a.text().empty()) *why = "empty answer";
    return !a.text().empty();
  }
  std::vector<std::string> points;
  std::vector<int> expansions_seen(a.points_size(), 0);
  for (const v1::QueryEvent& e : events) {
    if (e.has_sketch_point()) {
      if (e.sketch_point().index() != static_cast<int>(points.size())) {
        *why = absl::StrCat("sketch point ", e.sketch_point().index(), " out of order");
        return false;
      }
      points.push_back(e.sketch_point().text());
    }
    if (e.has_expansion()) {
      const int i = e.expansion().index();
      if (i < 0 || i >= a.points_size()) {
        *why = absl::StrCat("expansion index ", i, " outside the sketch");
        return false;
      }
      if (++expansions_seen[i] > 1) {
        *why = absl::StrCat("point ", i, " expanded twice");
        return false;
      }
      if (e.expansion().text() != a.expansions(i)) {
        *why = absl::StrCat("point ", i, ": the answer differs from its expansion event");
        return false;
      }
    }
  }
  if (points.empty() || static_cast<int>(points.size()) != a.points_size() ||
      a.expansions_size() != a.points_size()) {
    *why = absl::StrCat(points.size(), " points, ", a.points_size(), " in the answer, ",
                        a.expansions_size(), " expansions");
    return false;
  }
  std::string joined;
  for (int i = 0; i < a.points_size(); ++i) {
    if (points[i] != a.points(i) || expansions_seen[i] != 1) {
      *why = absl::StrCat("point ", i, " missing or changed");
      return false;
    }
    // pice-arith: each expansion reads "<point>=<result>".
    if (a.expansions(i).rfind(a.points(i) + "=", 0) != 0) {
      *why = absl::StrCat("expansion ", i, " \"", a.expansions(i), "\" does not answer \"",
                          a.points(i), "\"");
      return false;
    }
    absl::StrAppend(&joined, i ? " " : "", a.expansions(i), ".");
  }
  if (joined != a.text()) {
    *why = "the answer text is not the expansions in sketch order";
    return false;
  }
  return true;
}

struct Totals {
  std::mutex mu;
  int completed = 0, lost = 0, rejected = 0, failed_over_points = 0, failed_over_queries = 0;
  int degraded = 0, escalated = 0, sketch = 0, cloud = 0;
  std::vector<double> latency_ms;
  std::vector<std::string> lost_why;
};

}  // namespace

int RunBenchChaos(const std::vector<std::string>& argv) {
  const char* c = "bench chaos";
  auto a = Args::Parse(argv,
                       {"queries", "edges", "kill-interval-ms", "concurrency", "eval", "models",
                        "seed", "timeout"},
                       {"json", "keep"});
  if (!a.ok()) return Fail(c, std::string(a.status().message()), 2);
  auto n = a->Int("queries", 200, 1, 1000000);
  auto n_edges = a->Int("edges", 3, 2, 32);
  auto interval = a->Int("kill-interval-ms", 300, 10, 3600000);
  auto conc = a->Int("concurrency", 4, 1, 256);
  auto seed = a->Int("seed", 1, 0, 1LL << 40);
  auto timeout = a->Float("timeout", 60, 1, 3600);
  for (const absl::Status& s : {n.status(), n_edges.status(), interval.status(), conc.status(),
                                seed.status(), timeout.status()}) {
    if (!s.ok()) return Fail(c, std::string(s.message()), 2);
  }
  const bool as_json = a->Flag("json");

  // Binaries, models, templates, questions.
  const fs::path bin = ExeDir();
  for (const char* b : {"pice-cloud", "pice-edge", "pice-scheduler"}) {
    std::error_code ec;
    if (!fs::exists(bin / b, ec)) {
      return Fail(c, absl::StrCat("no ", b, " next to this executable (", bin.string(), ")"));
    }
  }
  auto models = FindModelsDir(a->Str("models"));
  if (!models.ok()) return Fail(c, std::string(models.status().message()));
  const std::string templates = FindTemplates(*models);
  if (templates.empty()) return Fail(c, "no templates/pice-arith.yaml found near the models");
  std::string eval = a->Str("eval");
  if (eval.empty()) eval = *models + "/../../tests/data/pice-arith/eval.jsonl";
  std::vector<std::string> questions;
  if (auto qs = LoadEval(eval); qs.ok()) {
    for (const Question& q : *qs) questions.push_back(q.question);
  } else if (!a->Str("eval").empty()) {
    return Fail(c, std::string(qs.status().message()));
  } else {
    // The examples of models/pice-arith/README.md.
    questions = {"add twelve and seven; multiply 23 by 4; subtract nine from 40",
                 "add 3 and 4, then multiply that by 6", "add 26 and 19; subtract 9 from 62"};
  }

  // The cluster.
  char tmpl[] = "/tmp/pice-chaos-XXXXXX";
  if (!mkdtemp(tmpl)) return Fail(c, "cannot create a temporary directory");
  const std::string dir = tmpl;
  WriteText(dir + "/cloud.yaml",
            absl::StrCat("node: cloud\nlisten: 127.0.0.1:0\nmodel: ", *models,
                         "/arith-cloud-f16.gguf\ntemplate: ", templates,
                         "/pice-arith.yaml\nthreads: 1\nlog_level: warn\ndrain_seconds: 5\n"));
  std::string edge_yaml = absl::StrCat("listen: 127.0.0.1:0\ntemplate: ", templates,
                                       "/pice-arith.yaml\nthreads: 1\nlog_level: warn\n"
                                       "drain_seconds: 5\nensemble:\n");
  for (const char* m : {"a", "b", "c"}) {
    absl::StrAppend(&edge_yaml, "  - {name: arith-edge-", m, ", model: ", *models, "/arith-edge-",
                    m, "-q8_0.gguf}\n");
  }
  WriteText(dir + "/edge.yaml", edge_yaml);
  NodeProc cloud((bin / "pice-cloud").string(), dir + "/cloud.yaml", dir, "cloud",
                 v1::Cloud::service_full_name());
  std::vector<std::unique_ptr<NodeProc>> edges;
  cloud.Start(0);
  for (int i = 0; i < *n_edges; ++i) {
    const std::string name = absl::StrCat("edge-", i + 1);
    WriteText(dir + "/" + name + ".yaml", absl::StrCat("node: ", name, "\n", edge_yaml));
    edges.push_back(std::make_unique<NodeProc>((bin / "pice-edge").string(),
                                               dir + "/" + name + ".yaml", dir, name,
                                               v1::Edge::service_full_name()));
    edges.back()->Start(0);
  }
  const auto boot = std::chrono::milliseconds(60000);
  if (auto s = cloud.Ready(boot); !s.ok()) return Fail(c, std::string(s.message()));
  for (auto& e : edges) {
    if (auto s = e->Ready(boot); !s.ok()) return Fail(c, std::string(s.message()));
  }
  std::string sched_yaml = absl::StrCat("listen: 127.0.0.1:0\ncloud: ", cloud.address(),
                                        "\nedges:\n");
  for (auto& e : edges) absl::StrAppend(&sched_yaml, "  - ", e->address(), "\n");
  absl::StrAppend(&sched_yaml,
                  "policy: pice-arith\n"
                  "answer: {point_format: \"{expansion}.\", separator: \" \"}\n"
                  "limits: {max_concurrent_queries: 64, max_queries_per_client: 0}\n"
                  "health: {eject_after: 2, eject_base: 200ms, eject_max: 2s}\n"
                  "timeouts: {load_poll: 100ms, expand: 5s, drain: 3s}\n");
  WriteText(dir + "/scheduler.yaml", sched_yaml);
  NodeProc sched((bin / "pice-scheduler").string(), dir + "/scheduler.yaml", dir, "scheduler",
                 v1::Pice::service_full_name());
  sched.Start(0);
  if (auto s = sched.Ready(boot); !s.ok()) return Fail(c, std::string(s.message()));

  // The killer: one edge down at a time, restarted on its port a third of an interval on.
  std::atomic<bool> done{false};
  std::atomic<int> kills{0}, restarts{0};
  std::mutex kill_mu;
  std::condition_variable kill_cv;
  std::thread killer([&] {
    std::mt19937_64 rng(static_cast<uint64_t>(*seed));
    auto sleep = [&](int64_t ms) {
      std::unique_lock<std::mutex> lock(kill_mu);
      return !kill_cv.wait_for(lock, std::chrono::milliseconds(ms), [&] { return done.load(); });
    };
    while (sleep(*interval * 2 / 3)) {
      NodeProc& victim = *edges[rng() % edges.size()];
      victim.Kill();
      ++kills;
      sleep(std::max<int64_t>(1, *interval / 3));
      victim.Start(victim.port());
      ++restarts;
    }
  });

  // The clients.
  Totals t;
  std::atomic<int64_t> next{0};
  const auto t0 = Clock::now();
  auto stub = v1::Pice::NewStub(MakeClientChannel(sched.address()));
  std::vector<std::thread> clients;
  for (int k = 0; k < *conc; ++k) {
    clients.emplace_back([&, k] {
      for (int64_t i; (i = next++) < *n;) {
        v1::QueryRequest req;
        req.set_prompt(questions[size_t(i) % questions.size()]);
        req.set_request_id(absl::StrCat("chaos-", i));
        const auto start = Clock::now();
        std::string why;
        bool ok = false;
        int rejected = 0;
        std::vector<v1::QueryEvent> events;
        for (int attempt = 0; attempt < 100; ++attempt) {
          events.clear();
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::milliseconds(int64_t(*timeout * 1000)));
          ctx.AddMetadata("x-api-key", absl::StrCat("chaos-client-", k));
          auto reader = stub->Query(&ctx, req);
          v1::QueryEvent ev;
          while (reader->Read(&ev)) events.push_back(ev);
          const grpc::Status s = reader->Finish();
          if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED && events.empty()) {
            ++rejected;
            int ms = 50;
            const auto& md = ctx.GetServerTrailingMetadata();
            if (auto it = md.find("retry-after-ms"); it != md.end()) {
              ms = std::atoi(std::string(it->second.data(), it->second.size()).c_str());
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(std::clamp(ms, 1, 2000)));
            continue;
          }
          if (s.ok()) {
            ok = Complete(events, &why);
          } else {
            why = absl::StrCat(StatusCodeName(s.error_code()), ": ", s.error_message());
          }
          break;
        }
        if (!ok && why.empty()) why = "still refused after 100 attempts";
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        std::lock_guard<std::mutex> lock(t.mu);
        t.rejected += rejected;
        if (!ok) {
          ++t.lost;
          t.lost_why.push_back(absl::StrCat(req.request_id(), " (", req.prompt(), "): ", why));
          continue;
        }
        ++t.completed;
        t.latency_ms.push_back(ms);
        const v1::AnswerEvent& ans = events.back().answer();
        t.failed_over_points += ans.failed_over();
        t.failed_over_queries += ans.failed_over() > 0;
        t.degraded += ans.degraded();
        (ans.route() == v1::ROUTE_SKETCH ? t.sketch : t.cloud)++;
        for (const auto& e : events) t.escalated += e.has_expansion() && e.expansion().escalated() &&
                                                    !e.expansion().failed_over();
      }
    });
  }
  for (auto& th : clients) th.join();
  const double wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  {
    std::lock_guard<std::mutex> lock(kill_mu);
    done = true;
  }
  kill_cv.notify_all();
  killer.join();

  // Stop: the scheduler drains first, then the nodes.
  const int sched_status = sched.Terminate();
  for (auto& e : edges) e->Terminate();
  cloud.Terminate();
  const bool sched_clean = WIFEXITED(sched_status) && WEXITSTATUS(sched_status) == 0;

  json out{{"sent", *n},
           {"completed", t.completed},
           {"failed_over", t.failed_over_points},
           {"rejected", t.rejected},
           {"kills", kills.load()},
           {"lost", t.lost},
           {"failed_over_queries", t.failed_over_queries},
           {"restarts", restarts.load()},
           {"escalated", t.escalated},
           {"degraded", t.degraded},
           {"sketch_route", t.sketch},
           {"cloud_route", t.cloud},
           {"latency_ms_p50", Percentile(t.latency_ms, 0.5)},
           {"latency_ms_p99", Percentile(t.latency_ms, 0.99)},
           {"wall_s", wall_s},
           {"edges", *n_edges},
           {"kill_interval_ms", *interval},
           {"concurrency", *conc},
           {"scheduler_exit_clean", sched_clean}};
  for (size_t i = 0; i < t.lost_why.size() && i < 10; ++i) {
    std::fprintf(stderr, "pice bench chaos: lost %s\n", t.lost_why[i].c_str());
  }
  if (as_json) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf(
        "chaos: %lld queries from %lld clients, %d edges, a kill every %lld ms\n"
        "  completed %d, lost %d, rejected (then resent) %d\n"
        "  edge kills %d (restarts %d); points failed over %d in %d queries; escalated %d; "
        "degraded %d\n"
        "  routes: sketch %d, cloud %d; latency p50 %.1f ms, p99 %.1f ms; %.1f s\n",
        static_cast<long long>(*n), static_cast<long long>(*conc), static_cast<int>(*n_edges),
        static_cast<long long>(*interval), t.completed, t.lost, t.rejected, kills.load(),
        restarts.load(), t.failed_over_points, t.failed_over_queries, t.escalated, t.degraded,
        t.sketch, t.cloud, Percentile(t.latency_ms, 0.5), Percentile(t.latency_ms, 0.99), wall_s);
  }
  const bool keep = a->Flag("keep") || t.lost > 0 || !sched_clean;
  if (keep) {
    std::fprintf(stderr, "pice bench chaos: node logs in %s\n", dir.c_str());
  } else {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  return t.lost == 0 && sched_clean ? 0 : 1;
}

}  // namespace pice::bench
