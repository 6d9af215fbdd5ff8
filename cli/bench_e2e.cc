// pice bench e2e: end-to-end speed of the two routes and the scheduler's own overhead.
//
// For each route (cloud = the cloud writes the whole answer; sketch = the cloud sketches
// and edges expand the points) runs the eval questions through the scheduler at a given
// concurrency and reports latency (p50/p99), time to first content event, throughput and
// tokens. The scheduler's overhead is the p50 latency of a full-route query through the
// scheduler minus the same question sent straight to the cloud's Generate (paired per
// question, sequential, each after a warm-up of both, so the model time cancels out).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/eval_file.h"
#include "cli/local_stack.h"
#include "common/logging.h"
#include "nlohmann/json.hpp"
#include "pice/v1/pice.grpc.pb.h"

namespace pice::cli {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = size_t(p * double(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

struct RouteStats {
  std::vector<double> latency_ms, first_ms;
  int ok = 0, failed = 0;
  int64_t tokens = 0;
  double wall_s = 0;
};

// Runs every question on `route` with `concurrency` client threads.
RouteStats RunRoute(v1::Pice::Stub* stub, const std::vector<Question>& qs, v1::Route route,
                    int concurrency, double timeout_s) {
  RouteStats st;
  std::mutex mu;
  std::atomic<size_t> next{0};
  auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < concurrency; ++c) {
    threads.emplace_back([&] {
      for (size_t i; (i = next++) < qs.size();) {
        v1::QueryRequest req;
        req.set_prompt(qs[i].question);
        req.set_route(route);
        auto start = Clock::now();
        double first = -1;
        int64_t tokens = 0;
        grpc::Status s = RunQuery(stub, req, timeout_s, [&](const v1::QueryEvent& ev) {
          if (first < 0 && (ev.has_sketch_point() || ev.has_delta() || ev.has_answer())) {
            first = Ms(Clock::now() - start);
          }
          if (ev.has_answer()) {
            for (const auto& n : ev.answer().tokens()) tokens += n.generated_tokens();
          }
        });
        double lat = Ms(Clock::now() - start);
        std::lock_guard<std::mutex> l(mu);
        if (s.ok()) {
          st.ok++;
          st.latency_ms.push_back(lat);
          st.first_ms.push_back(first < 0 ? lat : first);
          st.tokens += tokens;
        } else {
          st.failed++;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  st.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  return st;
}

json RouteJson(const RouteStats& s) {
  return json{{"queries", s.ok},
              {"failed", s.failed},
              {"latency_ms_p50", Percentile(s.latency_ms, 0.5)},
              {"latency_ms_p99", Percentile(s.latency_ms, 0.99)},
              {"first_event_ms_p50", Percentile(s.first_ms, 0.5)},
              {"queries_per_s", s.wall_s > 0 ? s.ok / s.wall_s : 0.0},
              {"generated_tokens_per_s", s.wall_s > 0 ? double(s.tokens) / s.wall_s : 0.0}};
}

// Latency of a direct Cloud.Generate call for `question`, or -1 on error.
double DirectCloudMs(v1::Cloud::Stub* cloud, const std::string& question, double timeout_s) {
  grpc::ClientContext ctx;
  if (timeout_s > 0) {
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(int64_t(timeout_s * 1000)));
  }
  v1::GenerateRequest req;
  req.set_question(question);
  auto start = Clock::now();
  auto reader = cloud->Generate(&ctx, req);
  v1::GenerateEvent ev;
  while (reader->Read(&ev)) {
  }
  grpc::Status s = reader->Finish();
  if (!s.ok()) {
    std::fprintf(stderr, "pice bench e2e: direct Cloud.Generate: %s: %s\n",
                 StatusCodeName(s.error_code()).c_str(), s.error_message().c_str());
    return -1;
  }
  return Ms(Clock::now() - start);
}

}  // namespace

int RunBenchE2e(const std::vector<std::string>& argv) {
  const char* c = "bench e2e";
  auto a = Args::Parse(argv, {"eval", "target", "cloud", "queries", "concurrency", "timeout", "config",
                              "models", "overhead-queries"},
                       {"json"});
  if (!a.ok()) return Fail(c, std::string(a.status().message()), 2);
  auto n = a->Int("queries", 60, 1, 100000);
  auto conc = a->Int("concurrency", 4, 1, 256);
  auto timeout = a->Float("timeout", 60, 0, 3600);
  auto overhead_n = a->Int("overhead-queries", 40, 0, 100000);
  if (!overhead_n.ok()) return Fail(c, std::string(overhead_n.status().message()), 2);
  if (!n.ok() || !conc.ok() || !timeout.ok()) {
    return Fail(c, std::string((!n.ok() ? n.status() : !conc.ok() ? conc.status() : timeout.status()).message()), 2);
  }
  std::string eval = a->Str("eval");
  if (eval.empty()) {
    auto dir = FindModelsDir("");
    if (!dir.ok()) return Fail(c, "--eval is required (no bundled eval file found)", 2);
    eval = *dir + "/../../tests/data/pice-arith/eval.jsonl";
  }
  auto qs = LoadEval(eval);
  if (!qs.ok()) return Fail(c, std::string(qs.status().message()));
  std::vector<Question> independent;
  for (auto& q : *qs) if (!q.dependent) independent.push_back(q);
  while (independent.size() < size_t(*n) && !independent.empty()) {
    independent.push_back(independent[independent.size() % qs->size() % independent.size()]);
  }
  independent.resize(std::min(independent.size(), size_t(*n)));
  if (independent.empty()) return Fail(c, eval + ": no independent questions");

  std::unique_ptr<LocalStack> stack;
  std::string target = a->Str("target"), cloud_addr = a->Str("cloud");
  if (target.empty()) {
    (void)InitLogging("bench", "warn");
    LocalOptions lo;
    lo.port = 0;
    lo.config_path = a->Str("config");
    lo.models_dir = a->Str("models");
    auto s = LocalStack::Start(lo);
    if (!s.ok()) return Fail(c, std::string(s.status().message()));
    stack = *std::move(s);
    target = stack->address();
    cloud_addr = stack->node_addresses().at(0);  // "name=host:port", the cloud first
    if (size_t eq = cloud_addr.find('='); eq != std::string::npos) cloud_addr = cloud_addr.substr(eq + 1);
  }
  auto stub = v1::Pice::NewStub(MakeClientChannel(target));

  json out;
  out["target"] = target;
  out["questions"] = independent.size();
  out["concurrency"] = *conc;
  // Warm-up: a few queries on each route.
  std::vector<Question> warm(independent.begin(), independent.begin() + std::min<size_t>(2, independent.size()));
  RunRoute(stub.get(), warm, v1::ROUTE_CLOUD, 1, *timeout);
  RunRoute(stub.get(), warm, v1::ROUTE_SKETCH, 1, *timeout);
  for (auto [route, name] : {std::pair{v1::ROUTE_CLOUD, "cloud"}, std::pair{v1::ROUTE_SKETCH, "sketch"}}) {
    out["routes"][name] = RouteJson(RunRoute(stub.get(), independent, route, int(*conc), *timeout));
  }
  if (!cloud_addr.empty() && *overhead_n > 0) {
    auto cloud = v1::Cloud::NewStub(MakeClientChannel(cloud_addr));
    std::vector<double> via, direct, diff;
    const size_t m = std::min<size_t>(independent.size(), size_t(*overhead_n));
    for (size_t i = 0; i < m; ++i) {
      // Each question once each way first, so both measured calls find the cloud's
      // prefix cache equally warm; then the measured pair.
      DirectCloudMs(cloud.get(), independent[i].question, *timeout);
      RunRoute(stub.get(), {independent[i]}, v1::ROUTE_CLOUD, 1, *timeout);
      double d = DirectCloudMs(cloud.get(), independent[i].question, *timeout);
      RouteStats s = RunRoute(stub.get(), {independent[i]}, v1::ROUTE_CLOUD, 1, *timeout);
      if (d >= 0 && s.ok == 1) {
        direct.push_back(d);
        via.push_back(s.latency_ms[0]);
        diff.push_back(s.latency_ms[0] - d);
      }
    }
    out["direct_cloud_ms_p50"] = Percentile(direct, 0.5);
    out["via_scheduler_cloud_ms_p50"] = Percentile(via, 0.5);
    out["scheduler_overhead_ms_p50"] = Percentile(diff, 0.5);  // paired, per question
  }
  if (a->Flag("json")) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("%s\n", out.dump(2).c_str());
  }
  if (stack) stack->Shutdown();
  return 0;
}

}  // namespace pice::cli
