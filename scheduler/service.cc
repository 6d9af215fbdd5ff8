#include "scheduler/service.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/reactors.h"
#include "common/status.h"
#include "scheduler/policy.h"
#include "scheduler/query.h"
#include "spdlog/spdlog.h"

namespace pice::scheduler {

PiceService::PiceService(SchedulerOptions options, NodeRegistry* registry)
    : options_(std::move(options)), registry_(registry) {}

std::string PiceService::ClientKey(const grpc::CallbackServerContext& ctx) {
  const auto& md = ctx.client_metadata();
  auto it = md.find("x-api-key");
  if (it != md.end() && it->second.size() > 0) {
    return "key:" + std::string(it->second.data(), it->second.size());
  }
  std::string peer = ctx.peer();  // "ipv4:127.0.0.1:5555", "ipv6:[::1]:5555", "unix:..."
  const size_t colon = peer.rfind(':');
  if (colon != std::string::npos && colon > peer.find(':')) peer.resize(colon);
  return "peer:" + peer;
}

int PiceService::RetryAfterMs() const {
  absl::MutexLock lock(&mu_);
  const double ms = mean_query_ms_ > 0 ? mean_query_ms_ / 2 : 100;
  return static_cast<int>(std::clamp(ms, 10.0, 5000.0));
}

bool PiceService::Admit(const std::string& client, std::string* why) {
  absl::MutexLock lock(&mu_);
  if (in_flight_.load() >= options_.max_concurrent_queries) {
    *why = absl::StrCat("the scheduler runs limits.max_concurrent_queries = ",
                        options_.max_concurrent_queries, " queries");
    return false;
  }
  int& mine = per_client_[client];
  if (options_.max_queries_per_client > 0 && mine >= options_.max_queries_per_client) {
    *why = absl::StrCat("this client (", client.rfind("key:", 0) == 0 ? "x-api-key" : client,
                        ") runs limits.max_queries_per_client = ",
                        options_.max_queries_per_client, " queries");
    if (mine == 0) per_client_.erase(client);
    return false;
  }
  ++mine;
  ++in_flight_;
  return true;
}

void PiceService::Done(const std::string& client, double ms) {
  absl::MutexLock lock(&mu_);
  auto it = per_client_.find(client);
  if (it != per_client_.end() && --it->second <= 0) per_client_.erase(it);
  if (ms >= 0) mean_query_ms_ = mean_query_ms_ == 0 ? ms : 0.9 * mean_query_ms_ + 0.1 * ms;
  --in_flight_;
}

grpc::ServerWriteReactor<v1::QueryEvent>* PiceService::Query(grpc::CallbackServerContext* ctx,
                                                             const v1::QueryRequest* request) {
  auto reactor = StreamReactor<v1::QueryEvent>::Create();
  if (absl::Status s = ValidateQuery(*request, options_); !s.ok()) {
    spdlog::info("refused a query: {}", std::string(s.message()));
    reactor->Finish(ToGrpcStatus(s));
    return reactor.get();
  }
  const std::string client = ClientKey(*ctx);
  std::string why;
  if (!Admit(client, &why)) {
    const int retry_ms = RetryAfterMs();
    ctx->AddTrailingMetadata("retry-after-ms", std::to_string(retry_ms));
    reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 absl::StrCat(why, "; retry after ", retry_ms, " ms")));
    return reactor.get();
  }
  // Checked after counting the query in, so that a drain waiting for in_flight() == 0
  // never misses a query admitted at the same moment.
  if (draining_) {
    Done(client, -1);
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                 "the scheduler is draining; retry elsewhere"));
    return reactor.get();
  }
  v1::QueryRequest req = *request;
  req.set_request_id(RequestIdOr(req.request_id()));

  QueryFacts facts;
  facts.prompt = req.prompt();
  facts.category = req.category();
  facts.hint = req.route() == v1::ROUTE_CLOUD    ? RouteChoice::kCloud
               : req.route() == v1::ROUTE_SKETCH ? RouteChoice::kSketch
                                                 : RouteChoice::kAuto;
  facts.max_points = req.max_points();
  const Decision decision = Decide(options_.policy, facts, registry_->Live());
  spdlog::info("query {}: {}", req.request_id(), decision.reason);

  auto deadline = std::chrono::system_clock::now() +
                  std::chrono::microseconds(static_cast<int64_t>(options_.query_timeout_s * 1e6));
  deadline = std::min(deadline, ctx->deadline());

  auto run = std::make_shared<QueryRun>(
      registry_, &options_, std::move(req), deadline,
      [reactor](v1::QueryEvent ev) { reactor->Write(std::move(ev)); },
      [reactor, this, client, start = std::chrono::steady_clock::now()](grpc::Status s) {
        Done(client, std::chrono::duration<double, std::milli>(
                         std::chrono::steady_clock::now() - start).count());
        reactor->Finish(std::move(s));
      });
  std::weak_ptr<QueryRun> weak = run;
  reactor->SetOnCancel([weak] {
    if (auto r = weak.lock()) r->Cancel();
  });
  run->Start(decision);
  // A cancel that arrived before SetOnCancel was set.
  if (reactor->IsCancelled()) run->Cancel();
  return reactor.get();
}

std::unique_ptr<Scheduler> Scheduler::Create(const SchedulerOptions& options) {
  auto s = std::make_unique<Scheduler>();
  s->registry_ = NodeRegistry::Create(options);
  s->service_ = std::make_unique<PiceService>(options, s->registry_.get());
  return s;
}

}  // namespace pice::scheduler
