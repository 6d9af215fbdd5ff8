#include "scheduler/service.h"

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

grpc::ServerWriteReactor<v1::QueryEvent>* PiceService::Query(grpc::CallbackServerContext* ctx,
                                                             const v1::QueryRequest* request) {
  auto reactor = StreamReactor<v1::QueryEvent>::Create();
  if (draining_) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the scheduler is draining"));
    return reactor.get();
  }
  if (absl::Status s = ValidateQuery(*request, options_); !s.ok()) {
    spdlog::info("refused a query: {}", std::string(s.message()));
    reactor->Finish(ToGrpcStatus(s));
    return reactor.get();
  }
  if (in_flight_.fetch_add(1) >= options_.max_concurrent_queries) {
    in_flight_.fetch_sub(1);
    reactor->Finish(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("more than limits.max_concurrent_queries = ",
                     options_.max_concurrent_queries, " queries in flight")));
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
      [reactor, this](grpc::Status s) {
        in_flight_.fetch_sub(1);
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
