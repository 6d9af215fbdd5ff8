#include "scheduler/scheduler_metrics.h"

#include <algorithm>

#include "absl/status/status.h"

namespace pice::scheduler {
namespace {

using Buckets = prometheus::Histogram::BucketBoundaries;

const char* RouteLabel(v1::Route r) {
  switch (r) {
    case v1::ROUTE_CLOUD: return "cloud";
    case v1::ROUTE_SKETCH: return "sketch";
    default: return "auto";
  }
}

const char* FinishLabel(v1::FinishReason f) {
  switch (f) {
    case v1::STOP: return "stop";
    case v1::LENGTH: return "length";
    case v1::CANCELLED: return "cancelled";
    case v1::ERROR: return "error";
    default: return "unknown";
  }
}

const Buckets& AgreementBuckets() {
  static const Buckets* b = new Buckets{0.2, 0.34, 0.5, 0.67, 0.75, 0.9, 0.99, 1.0};
  return *b;
}

const Buckets& PointBuckets() {
  static const Buckets* b = new Buckets{1, 2, 3, 4, 6, 8, 12, 16, 32};
  return *b;
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

SchedulerMetrics& SchedulerMetrics::Get() {
  static SchedulerMetrics* m = new SchedulerMetrics();
  return *m;
}

SchedulerMetrics::SchedulerMetrics()
    : success(Metrics::Get().Counter("pice_request_success_total",
                                     "Answered queries by route, finish reason and whether the "
                                     "response cache answered")),
      failure(Metrics::Get().Counter("pice_request_failure_total",
                                     "Queries refused or failed, by gRPC status code")),
      ttft(Metrics::Get().Histogram("pice_time_to_first_token_seconds",
                                    "Time to the first answer content (a delta or an "
                                    "expansion) by route")),
      e2e(Metrics::Get().Histogram("pice_e2e_request_latency_seconds",
                                   "Query latency to the answer, by route")),
      itl(Metrics::Get().Histogram("pice_inter_token_latency_seconds",
                                   "Time between answer content events, by route")),
      decisions(Metrics::Get().Counter("pice_route_decisions_total",
                                       "Policy decisions by route and deciding rule")),
      sketch_points(Metrics::Get().Histogram("pice_sketch_points", "Sketch points per sketched query")),
      expansions(Metrics::Get().Counter("pice_expansions_total",
                                        "Expansions by the node that produced the selected text "
                                        "and the ensemble member it came from")),
      agreement(Metrics::Get().Histogram("pice_vote_agreement",
                                         "Weighted share of an edge ensemble agreeing with the "
                                         "selected expansion")),
      escalations(Metrics::Get().Counter("pice_escalations_total",
                                         "Points re-expanded by the cloud, by cause (agreement, "
                                         "confidence)")),
      failovers(Metrics::Get().Counter("pice_failovers_total",
                                       "Points expanded elsewhere after an edge failed")),
      degraded(Metrics::Get().Counter("pice_degraded_answers_total",
                                      "Answers the edges gave alone while the cloud was down")),
      gen_tokens(Metrics::Get().Counter("pice_query_generation_tokens_total",
                                        "Tokens generated for answers, on the cloud or the edges")),
      prompt_tokens(Metrics::Get().Counter("pice_query_prompt_tokens_total",
                                           "Prompt tokens processed for answers, on the cloud or "
                                           "the edges")),
      estimated(Metrics::Get().Histogram("pice_route_estimated_seconds",
                                         "The policy's estimate of the route `auto` chose")),
      measured(Metrics::Get().Histogram("pice_route_measured_seconds",
                                        "What queries `auto` routed took, by route (compare "
                                        "with pice_route_estimated_seconds)")),
      by_key(Metrics::Get().Counter("pice_api_key_requests_total",
                                    "Queries admitted per API key name")),
      expand_latency(Metrics::Get().Histogram("pice_edge_expand_latency_seconds",
                                              "Expand calls to each edge, by outcome")),
      ejections(Metrics::Get().Counter("pice_node_ejections_total",
                                       "Nodes ejected after failures in a row")),
      recoveries(Metrics::Get().Counter("pice_node_recoveries_total",
                                        "Ejected nodes probed back in")),
      cache(Metrics::Get().Counter("pice_response_cache_total",
                                   "Response cache lookups and stores by result (hit, miss, "
                                   "store, error)")),
      cache_available(Metrics::Get().Gauge("pice_response_cache_available",
                                           "1 while the response cache's store answers (Redis)")),
      running(Metrics::Get().Gauge("pice_num_requests_running", "Requests running")) {
  // Series that exist from the start at 0, so that rate() and alerts see them before the
  // first event (the per-node ones are added by the registry for its nodes).
  for (const char* route : {"cloud", "sketch"}) {
    for (auto* h : {&ttft, &e2e, &itl, &estimated, &measured}) {
      h->Add({{"route", route}}, Metrics::LatencyBuckets());
    }
  }
  for (const char* cause : {"agreement", "confidence"}) escalations.Add({{"cause", cause}});
  degraded.Add({});
  for (const char* where : {"cloud", "edge"}) {
    gen_tokens.Add({{"where", where}});
    prompt_tokens.Add({{"where", where}});
  }
  for (const char* code : {"INVALID_ARGUMENT", "UNAUTHENTICATED", "RESOURCE_EXHAUSTED",
                           "UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "INTERNAL"}) {
    failure.Add({{"code", code}});
  }
  agreement_all = &agreement.Add({}, AgreementBuckets());
  failovers_all = &failovers.Add({});
  sketch_points.Add({}, PointBuckets());
}

void SchedulerMetrics::AddNode(const std::string& node, bool edge) {
  ejections.Add({{"node", node}});
  recoveries.Add({{"node", node}});
  if (edge) {
    for (const char* outcome : {"ok", "error"}) {
      expand_latency.Add({{"edge", node}, {"outcome", outcome}}, Metrics::LatencyBuckets());
    }
  }
}

void SchedulerMetrics::Failure(const grpc::Status& s) {
  failure.Add({{"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code()))}})
      .Increment();
}

void SchedulerMetrics::ExpandDone(const std::string& edge, bool ok, double seconds) {
  expand_latency.Add({{"edge", edge}, {"outcome", ok ? "ok" : "error"}}, Metrics::LatencyBuckets())
      .Observe(seconds);
}

QueryMetrics::QueryMetrics(const Decision& decision, const std::string& key_name,
                           std::string cloud_node)
    : route_(decision.route == RouteChoice::kSketch ? "sketch" : "cloud"),
      decision_(decision),
      key_(key_name),
      cloud_node_(std::move(cloud_node)) {
  SchedulerMetrics& m = SchedulerMetrics::Get();
  m.decisions.Add({{"route", route_}, {"rule", decision.rule}}).Increment();
  if (!key_.empty()) m.by_key.Add({{"key", key_}}).Increment();
}

void QueryMetrics::OnEvent(const v1::QueryEvent& ev) {
  SchedulerMetrics& m = SchedulerMetrics::Get();
  std::lock_guard<std::mutex> lock(mu_);
  if (ev.has_route()) route_ = RouteLabel(ev.route().route());
  if (ev.has_sketch_point()) ++points_;
  if (ev.has_expansion()) {
    const v1::ExpansionEvent& x = ev.expansion();
    m.expansions.Add({{"node", x.node()}, {"member", x.model()}}).Increment();
    if (x.candidates_size() > 0) m.agreement_all->Observe(x.agreement());
    if (x.failed_over()) m.failovers_all->Increment();
  }
  if (ev.has_delta() || ev.has_expansion()) {
    const auto now = Clock::now();
    if (series_route_ != route_) {
      series_route_ = route_;
      ttft_ = &m.ttft.Add({{"route", route_}}, Metrics::LatencyBuckets());
      itl_ = &m.itl.Add({{"route", route_}}, Metrics::LatencyBuckets());
    }
    if (!any_content_) {
      ttft_->Observe(Seconds(now - start_));
    } else {
      itl_->Observe(Seconds(now - last_content_));
    }
    any_content_ = true;
    last_content_ = now;
  }
  if (ev.has_answer()) {
    answer_ = ev.answer();
    answered_ = true;
  }
}

void QueryMetrics::OnFinish(const grpc::Status& s) {
  SchedulerMetrics& m = SchedulerMetrics::Get();
  std::lock_guard<std::mutex> lock(mu_);
  if (!s.ok() || !answered_) {
    m.Failure(s.ok() ? grpc::Status(grpc::StatusCode::INTERNAL, "no answer") : s);
    return;
  }
  const std::string route = RouteLabel(answer_.route());
  const double total = Seconds(Clock::now() - start_);
  m.success.Add({{"route", route},
                 {"finished_reason", FinishLabel(answer_.finish_reason())},
                 {"cached", answer_.cached() ? "true" : "false"}})
      .Increment();
  m.e2e.Add({{"route", route}}, Metrics::LatencyBuckets()).Observe(total);
  if (!any_content_) {
    m.ttft.Add({{"route", route}}, Metrics::LatencyBuckets()).Observe(total);
  }
  if (answer_.cached()) return;  // no node worked for it
  if (answer_.route() == v1::ROUTE_SKETCH && points_ > 0) {
    m.sketch_points.Add({}, PointBuckets()).Observe(points_);
  }
  if (answer_.degraded()) m.degraded.Add({}).Increment();
  for (const v1::NodeTokens& t : answer_.tokens()) {
    const char* where = t.node() == cloud_node_ ? "cloud" : "edge";
    m.gen_tokens.Add({{"where", where}}).Increment(static_cast<double>(t.generated_tokens()));
    m.prompt_tokens.Add({{"where", where}}).Increment(static_cast<double>(t.prompt_tokens()));
  }
  if (decision_.est_cloud_ms > 0 || decision_.est_sketch_ms > 0) {
    const double est = (answer_.route() == v1::ROUTE_SKETCH ? decision_.est_sketch_ms
                                                            : decision_.est_cloud_ms) / 1000;
    m.estimated.Add({{"route", route}}, Metrics::LatencyBuckets()).Observe(est);
    m.measured.Add({{"route", route}}, Metrics::LatencyBuckets()).Observe(total);
  }
}

}  // namespace pice::scheduler
