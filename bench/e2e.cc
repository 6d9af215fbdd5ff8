// pice bench e2e: end-to-end speed of the two routes and the scheduler's own overhead.
//
// For each route (cloud = the cloud writes the whole answer; sketch = the cloud sketches
// and edges expand the points) runs the same questions — every question of the eval
// file, the dependent ones (where a sketch is wasted) included — through the scheduler at
// a given concurrency, `--repeat` times with the routes alternating, and reports for each
// metric the median over the repeats with its [min, max]:
//   latency p50/p99; time to first answer content (the first delta or expansion, not a
//   sketch point: that is not answer text); queries/s; useful tokens/s (the final answer
//   text's tokens under the cloud model's tokenizer: the selected text only, the same
//   measure on both routes) and generated tokens/s (every node, every ensemble member,
//   the sketch included: the work spent). Both routes get the same answer budget: the
//   request leaves max_tokens at 0 and each node applies its template's budget.
// The scheduler's overhead is the p50 latency of a full-route query through the
// scheduler minus the same question sent straight to the cloud's Generate (paired per
// question, sequential, each after a warm-up of both, so the model time cancels out).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/gguf/gguf.h"
#include "engine/tokenizer/tokenizer.h"
#include "common/args.h"
#include "cli/client.h"
#include "bench/bench.h"
#include "bench/http_client.h"
#include "bench/stats.h"
#include "cli/commands.h"
#include "cli/eval_file.h"
#include "cli/local_stack.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "nlohmann/json.hpp"
#include "pice/v1/pice.grpc.pb.h"

namespace pice::bench {

// The client helpers, eval files and the embedded stack of the pice CLI.
using namespace ::pice::cli;  // NOLINT(build/namespaces)
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct QueryResult {
  bool cached = false;           // answered from the scheduler's response cache
  double scheduler_ms = 0;       // the answer's own total_ms (the scheduler's time)
  double latency_ms = 0;
  double first_content_ms = 0;
  std::string answer;            // the answer text (its tokens are counted after the run)
  int64_t generated_tokens = 0;  // every node's generated tokens
};

struct RouteStats {
  std::vector<QueryResult> ok;
  int failed = 0;
  double wall_s = 0;
};

// Runs every question on `route` with `concurrency` client threads, past the response
// cache unless `use_cache` (then with `seed`, which keys the cache and changes no greedy
// answer).
RouteStats RunRoute(v1::Pice::Stub* stub, const std::vector<Question>& qs, v1::Route route,
                    int concurrency, double timeout_s, bool use_cache = false,
                    uint64_t seed = 0) {
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
        req.set_no_cache(!use_cache);
        req.mutable_params()->set_seed(seed);
        auto start = Clock::now();
        QueryResult r;
        double first = -1;
        std::string answer;
        grpc::Status s = RunQuery(stub, req, timeout_s, "", [&](const v1::QueryEvent& ev) {
          if (first < 0 && (ev.has_delta() || ev.has_expansion() || ev.has_answer())) {
            first = Ms(Clock::now() - start);
          }
          if (ev.has_answer()) {
            answer = ev.answer().text();
            r.cached = ev.answer().cached();
            r.scheduler_ms = ev.answer().timings().total_ms();
            for (const auto& n : ev.answer().tokens()) r.generated_tokens += n.generated_tokens();
          }
        });
        r.latency_ms = Ms(Clock::now() - start);
        r.first_content_ms = first < 0 ? r.latency_ms : first;
        r.answer = std::move(answer);
        std::lock_guard<std::mutex> l(mu);
        if (s.ok()) {
          st.ok.push_back(r);
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

// One repeat's figures for a route.
// `tok` counts the useful tokens (null: not counted), outside the timed run: the client
// shares the machine with the nodes.
std::map<std::string, double> Figures(const RouteStats& s, const Tokenizer* tok) {
  std::vector<double> lat, first;
  double useful_tokens = 0, generated = 0;
  for (const QueryResult& r : s.ok) {
    lat.push_back(r.latency_ms);
    first.push_back(r.first_content_ms);
    if (tok) useful_tokens += double(tok->Encode(r.answer, false, false).size());
    generated += double(r.generated_tokens);
  }
  std::map<std::string, double> f = {
      {"latency_ms_p50", Percentile(lat, 0.5)},
      {"latency_ms_p99", Percentile(lat, 0.99)},
      {"first_content_ms_p50", Percentile(first, 0.5)},
      {"queries_per_s", s.wall_s > 0 ? s.ok.size() / s.wall_s : 0.0},
      {"generated_tokens_per_s", s.wall_s > 0 ? generated / s.wall_s : 0.0},
      {"failed", double(s.failed)}};
  if (tok) {
    f["useful_tokens_per_s"] = s.wall_s > 0 ? useful_tokens / s.wall_s : 0.0;
    f["useful_tokens_per_query"] = s.ok.empty() ? 0.0 : useful_tokens / s.ok.size();
  }
  return f;
}

// --repeat-share F: a stream of questions of which a share F repeats an earlier one (chosen
// uniformly, fixed seed), on the auto route, once past the response cache and once through
// it, the order alternating per repeat. Each repeat keys its own cache entries (the seed),
// so no repeat finds the previous one's. Median [min, max] over the repeats.
json CacheRuns(v1::Pice::Stub* stub, const std::vector<Question>& fresh, double share,
               int concurrency, double timeout_s, int repeats) {
  std::vector<Question> qs;
  std::mt19937 rng(20261206);
  size_t next_fresh = 0;
  for (size_t i = 0; i < fresh.size(); ++i) {
    if (!qs.empty() && std::uniform_real_distribution<double>(0, 1)(rng) < share) {
      qs.push_back(qs[std::uniform_int_distribution<size_t>(0, qs.size() - 1)(rng)]);
    } else {
      qs.push_back(fresh[next_fresh++]);
    }
  }
  std::vector<std::map<std::string, double>> with, without;
  for (int r = 0; r < repeats; ++r) {
    for (int k = 0; k < 2; ++k) {
      const bool cached = (k == 0) == (r % 2 == 0);
      RouteStats st = RunRoute(stub, qs, v1::ROUTE_AUTO, concurrency, timeout_s, cached,
                               /*seed=*/1000 + uint64_t(r));
      std::map<std::string, double> f = Figures(st, nullptr);
      std::vector<double> hit_ms, hit_sched_ms;
      for (const QueryResult& q : st.ok) {
        if (!q.cached) continue;
        hit_ms.push_back(q.latency_ms);
        hit_sched_ms.push_back(q.scheduler_ms);
      }
      f["hit_rate"] = st.ok.empty() ? 0.0 : double(hit_ms.size()) / double(st.ok.size());
      if (!hit_ms.empty()) {
        f["hit_latency_ms_p50"] = Percentile(hit_ms, 0.5);
        f["hit_scheduler_ms_p50"] = Percentile(hit_sched_ms, 0.5);
        f["hit_scheduler_ms_p99"] = Percentile(hit_sched_ms, 0.99);
      }
      (cached ? with : without).push_back(f);
      std::fprintf(stderr, "bench e2e: cache repeat %d/%d, %s: %zu ok, %d failed, %.1f s\n", r + 1,
                   repeats, cached ? "with the cache" : "without", st.ok.size(), st.failed, st.wall_s);
    }
  }
  return {{"repeat_share", share},
          {"questions", qs.size()},
          {"repeated", qs.size() - next_fresh},
          {"route", "auto"},
          {"with_cache", SummarizeRuns(with)},
          {"without_cache", SummarizeRuns(without)}};
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
  auto a = Args::Parse(argv, WithClientTlsFlags({"eval", "target", "cloud", "queries", "concurrency",
                                                  "timeout", "config", "models", "overhead-queries",
                                                  "repeat", "tokenizer", "http-target",
                                                  "repeat-share"}),
                       {"json", "http", "no-metrics"});
  if (!a.ok()) return Fail(c, std::string(a.status().message()), 2);
  auto tls = ParseClientTlsFlags(*a);
  if (!tls.ok()) return Fail(c, std::string(tls.status().message()), 2);
  auto n = a->Int("queries", 0, 0, 100000);  // 0 = every question of the file
  auto conc = a->Int("concurrency", 4, 1, 256);
  auto timeout = a->Float("timeout", 60, 0, 3600);
  auto overhead_n = a->Int("overhead-queries", 40, 0, 100000);
  auto repeat = a->Int("repeat", 3, 1, 100);
  auto repeat_share = a->Float("repeat-share", 0, 0, 0.95);
  // The embedded stack records no metrics: what they cost is the difference.
  if (a->Flag("no-metrics")) Metrics::SetEnabled(false);
  if (!repeat_share.ok()) return Fail(c, std::string(repeat_share.status().message()), 2);
  if (!repeat.ok()) return Fail(c, std::string(repeat.status().message()), 2);
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
  auto all = LoadEval(eval);
  if (!all.ok()) return Fail(c, std::string(all.status().message()));
  if (all->empty()) return Fail(c, eval + ": no questions");
  // N questions spread evenly over the file (so the mix of kinds is kept), cycling when
  // N is larger than the file.
  const int64_t count = *n > 0 ? *n : int64_t(all->size());
  std::vector<Question> qs;
  for (int64_t i = 0; i < count; ++i) {
    qs.push_back((*all)[size_t(i * int64_t(all->size()) / count) % all->size()]);
  }
  int dependent = 0;
  for (const Question& q : qs) dependent += q.dependent;

  std::unique_ptr<LocalStack> stack;
  std::unique_ptr<gguf::GgufFile> tok_file;
  std::unique_ptr<Tokenizer> tok_own;
  const Tokenizer* tok = nullptr;
  std::string target = a->Str("target"), cloud_addr = a->Str("cloud");
  if (target.empty()) {
    (void)InitLogging("bench", "warn");
    LocalOptions lo;
    lo.port = 0;
    lo.config_path = a->Str("config");
    lo.models_dir = a->Str("models");
    if (a->Flag("http")) lo.http_port = 0;
    auto s = LocalStack::Start(lo);
    if (!s.ok()) return Fail(c, std::string(s.status().message()));
    stack = *std::move(s);
    target = stack->address();
    cloud_addr = stack->node_addresses().at(0);  // "name=host:port", the cloud first
    if (size_t eq = cloud_addr.find('='); eq != std::string::npos) cloud_addr = cloud_addr.substr(eq + 1);
    tok = stack->cloud_tokenizer();
  }
  if (a->Has("tokenizer")) {
    auto f = gguf::GgufFile::Open(a->Str("tokenizer"));
    if (!f.ok()) return Fail(c, std::string(f.status().message()), 2);
    auto t = Tokenizer::FromGguf(**f);
    if (!t.ok()) return Fail(c, std::string(t.status().message()), 2);
    tok_file = *std::move(f);
    tok_own = *std::move(t);
    tok = tok_own.get();
  }
  auto stub = v1::Pice::NewStub(MakeClientChannel(target, *tls));

  json out;
  out["target"] = target;
  out["questions"] = qs.size();
  out["dependent_questions"] = dependent;
  out["concurrency"] = *conc;
  out["repeats"] = *repeat;
  out["useful_tokens"] = tok ? "answer text tokens (cloud tokenizer)" : "not counted (--tokenizer)";
  // Warm-up: a few queries on each route.
  std::vector<Question> warm(qs.begin(), qs.begin() + std::min<size_t>(2, qs.size()));
  RunRoute(stub.get(), warm, v1::ROUTE_CLOUD, 1, *timeout);
  RunRoute(stub.get(), warm, v1::ROUTE_SKETCH, 1, *timeout);
  std::vector<std::map<std::string, double>> cloud_runs, sketch_runs;
  for (int64_t r = 0; r < *repeat; ++r) {
    // Alternate which route goes first, so drift (caches, clocks) favours neither.
    for (int k = 0; k < 2; ++k) {
      const bool cloud_now = (k == 0) == (r % 2 == 0);
      RouteStats st = RunRoute(stub.get(), qs, cloud_now ? v1::ROUTE_CLOUD : v1::ROUTE_SKETCH,
                               int(*conc), *timeout);
      (cloud_now ? cloud_runs : sketch_runs).push_back(Figures(st, tok));
      std::fprintf(stderr, "bench e2e: repeat %lld/%lld, %s route: %zu ok, %d failed, %.1f s\n",
                   static_cast<long long>(r + 1), static_cast<long long>(*repeat),
                   cloud_now ? "cloud" : "sketch", st.ok.size(), st.failed, st.wall_s);
    }
  }
  out["routes"]["cloud"] = SummarizeRuns(cloud_runs);
  out["routes"]["sketch"] = SummarizeRuns(sketch_runs);
  if (*repeat_share > 0) out["cache"] = CacheRuns(stub.get(), qs, *repeat_share, int(*conc), *timeout, int(*repeat));
  if (!cloud_addr.empty() && *overhead_n > 0) {
    auto cloud = v1::Cloud::NewStub(MakeClientChannel(cloud_addr, *tls));
    std::vector<double> via, direct, diff;
    const size_t m = std::min<size_t>(qs.size(), size_t(*overhead_n));
    for (size_t i = 0; i < m; ++i) {
      // Each question once each way first, so both measured calls find the cloud's
      // prefix cache equally warm; then the measured pair.
      DirectCloudMs(cloud.get(), qs[i].question, *timeout);
      RunRoute(stub.get(), {qs[i]}, v1::ROUTE_CLOUD, 1, *timeout);
      // The measured pair, in alternating order so that neither side always goes second.
      double d = -1;
      RouteStats s;
      if (i % 2 == 0) d = DirectCloudMs(cloud.get(), qs[i].question, *timeout);
      s = RunRoute(stub.get(), {qs[i]}, v1::ROUTE_CLOUD, 1, *timeout);
      if (i % 2 == 1) d = DirectCloudMs(cloud.get(), qs[i].question, *timeout);
      if (d >= 0 && s.ok.size() == 1) {
        direct.push_back(d);
        via.push_back(s.ok[0].latency_ms);
        diff.push_back(s.ok[0].latency_ms - d);
      }
    }
    out["direct_cloud_ms_p50"] = Percentile(direct, 0.5);
    out["via_scheduler_cloud_ms_p50"] = Percentile(via, 0.5);
    out["scheduler_overhead_ms_p50"] = Percentile(diff, 0.5);  // paired, per question
  }
  // --http: the HTTP layer's own cost per query, paired per question against the same
  // query over gRPC (cloud route, non-streamed chat on one keep-alive connection).
  if (a->Flag("http") && *overhead_n > 0) {
    std::string http_target = a->Str("http-target");
    if (http_target.empty() && stack && stack->http_port() >= 0) {
      http_target = absl::StrCat("127.0.0.1:", stack->http_port());
    }
    const size_t colon = http_target.rfind(':');
    if (colon == std::string::npos) return Fail(c, "--http needs the local stack or --http-target HOST:PORT", 2);
    HttpClient http(http_target.substr(0, colon), std::atoi(http_target.c_str() + colon + 1));
    std::vector<double> grpc_ms, http_ms, diff;
    const size_t m = std::min<size_t>(qs.size(), size_t(*overhead_n));
    for (size_t i = 0; i < m; ++i) {
      const json body = {{"model", "pice-cloud"},
                         {"messages", json::array({{{"role", "user"}, {"content", qs[i].question}}})},
                         {"pice", {{"cache", false}}}};
      std::string reply;
      // A warm-up pair, then the measured one, in alternating order.
      for (int warm = 0; warm < 2; ++warm) {
        const bool http_first = (i + warm) % 2 == 0;
        RouteStats g;
        if (!http_first) g = RunRoute(stub.get(), {qs[i]}, v1::ROUTE_CLOUD, 1, *timeout);
        const auto t0 = Clock::now();
        const int status = http.Post("/v1/chat/completions", body.dump(), &reply);
        const double h = Ms(Clock::now() - t0);
        if (http_first) g = RunRoute(stub.get(), {qs[i]}, v1::ROUTE_CLOUD, 1, *timeout);
        if (warm == 0 || status != 200 || g.ok.size() != 1) continue;
        http_ms.push_back(h);
        grpc_ms.push_back(g.ok[0].latency_ms);
        diff.push_back(h - g.ok[0].latency_ms);
      }
    }
    out["http_target"] = http_target;
    out["http_cloud_ms_p50"] = Percentile(http_ms, 0.5);
    out["grpc_cloud_ms_p50"] = Percentile(grpc_ms, 0.5);
    out["http_overhead_ms_p50"] = Percentile(diff, 0.5);  // paired, per question
    out["http_overhead_ms_p10"] = Percentile(diff, 0.1);
    out["http_overhead_ms_p90"] = Percentile(diff, 0.9);
  }
  if (a->Flag("json")) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("%zu questions (%d dependent), concurrency %lld, median of %lld repeats [min, max]\n",
                qs.size(), dependent, static_cast<long long>(*conc),
                static_cast<long long>(*repeat));
    std::printf("%-7s %24s %24s %22s %22s %24s\n", "route", "latency p50 ms", "latency p99 ms",
                "first content p50 ms", "queries/s", "useful tokens/s");
    for (const char* route : {"cloud", "sketch"}) {
      const json& r = out["routes"][route];
      auto cell = [&](const char* key) {
        if (!r.contains(key)) return std::string("-");
        return absl::StrFormat("%.1f [%.1f, %.1f]", r[key].get<double>(),
                               r[std::string(key) + "_range"][0].get<double>(),
                               r[std::string(key) + "_range"][1].get<double>());
      };
      std::printf("%-7s %24s %24s %22s %22s %24s\n", route, cell("latency_ms_p50").c_str(),
                  cell("latency_ms_p99").c_str(), cell("first_content_ms_p50").c_str(),
                  cell("queries_per_s").c_str(), cell("useful_tokens_per_s").c_str());
    }
    if (out.contains("http_overhead_ms_p50")) {
      std::printf("HTTP layer overhead p50 %.2f ms [p10 %.2f, p90 %.2f] (HTTP %.2f ms vs gRPC %.2f ms)\n",
                  out["http_overhead_ms_p50"].get<double>(), out["http_overhead_ms_p10"].get<double>(),
                  out["http_overhead_ms_p90"].get<double>(),
                  out["http_cloud_ms_p50"].get<double>(), out["grpc_cloud_ms_p50"].get<double>());
    }
    if (out.contains("scheduler_overhead_ms_p50")) {
      std::printf("scheduler overhead p50 %.2f ms\n", out["scheduler_overhead_ms_p50"].get<double>());
    }
    if (out.contains("cache")) {
      const json& w = out["cache"]["with_cache"];
      const json& wo = out["cache"]["without_cache"];
      auto get = [](const json& j, const char* k) { return j.contains(k) ? j[k].get<double>() : -1.0; };
      std::printf("response cache, %.0f %% repeated questions (auto route): hit rate %.2f; latency "
                  "p50 %.1f ms with, %.1f ms without; queries/s %.1f with, %.1f without; a hit "
                  "p50 %.2f ms at the client, %.3f ms at the scheduler\n",
                  100 * out["cache"]["repeat_share"].get<double>(), get(w, "hit_rate"),
                  get(w, "latency_ms_p50"), get(wo, "latency_ms_p50"), get(w, "queries_per_s"),
                  get(wo, "queries_per_s"), get(w, "hit_latency_ms_p50"), get(w, "hit_scheduler_ms_p50"));
    }
    std::printf("%s\n", out.dump().c_str());
  }
  if (stack) stack->Shutdown();
  return 0;
}

}  // namespace pice::bench
