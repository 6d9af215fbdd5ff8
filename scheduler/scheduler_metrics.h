// The scheduler's Prometheus series (common/metrics.h), vLLM's serving metrics plus what
// only PICE knows. Per query, a QueryMetrics watches the events the client gets:
//   pice_request_success_total{route, finished_reason, cached}  answers
//   pice_request_failure_total{code}                      refused or failed queries
//   pice_time_to_first_token_seconds{route}               first answer content (delta or
//                                                         expansion; a sketch point is not)
//   pice_e2e_request_latency_seconds{route}
//   pice_inter_token_latency_seconds{route}               between content events
//   pice_route_decisions_total{route, rule}               what the policy decided
//   pice_sketch_points                                    points per sketched query
//   pice_expansions_total{node, member}                   who expanded, whose text won
//   pice_vote_agreement                                   edges' agreement per expansion
//   pice_escalations_total{cause}                         agreement | confidence
//   pice_failovers_total, pice_degraded_answers_total
//   pice_query_generation_tokens_total{where}             cloud | edge: the work PICE moves
//   pice_query_prompt_tokens_total{where}
//   pice_route_estimated_seconds{route}, pice_route_measured_seconds{route}
//                                                         `auto`'s estimate of the route it
//                                                         chose and what the query took
//   pice_api_key_requests_total{key}                      per API key name (never the key)
// and from the registry and the cache:
//   pice_edge_expand_latency_seconds{edge, outcome}, pice_node_ejections_total{node},
//   pice_node_recoveries_total{node}, pice_response_cache_total{result},
//   pice_response_cache_available, pice_num_requests_running{node="scheduler"}.
#ifndef PICE_SCHEDULER_SCHEDULER_METRICS_H_
#define PICE_SCHEDULER_SCHEDULER_METRICS_H_

#include <chrono>
#include <mutex>
#include <string>

#include "common/metrics.h"
#include "grpcpp/support/status.h"
#include "pice/v1/pice.pb.h"
#include "scheduler/policy.h"

namespace pice::scheduler {

struct SchedulerMetrics {
  static SchedulerMetrics& Get();

  prometheus::Family<prometheus::Counter>& success;
  prometheus::Family<prometheus::Counter>& failure;
  prometheus::Family<prometheus::Histogram>& ttft;
  prometheus::Family<prometheus::Histogram>& e2e;
  prometheus::Family<prometheus::Histogram>& itl;
  prometheus::Family<prometheus::Counter>& decisions;
  prometheus::Family<prometheus::Histogram>& sketch_points;
  prometheus::Family<prometheus::Counter>& expansions;
  prometheus::Family<prometheus::Histogram>& agreement;
  prometheus::Family<prometheus::Counter>& escalations;
  prometheus::Family<prometheus::Counter>& failovers;
  prometheus::Family<prometheus::Counter>& degraded;
  prometheus::Family<prometheus::Counter>& gen_tokens;
  prometheus::Family<prometheus::Counter>& prompt_tokens;
  prometheus::Family<prometheus::Histogram>& estimated;
  prometheus::Family<prometheus::Histogram>& measured;
  prometheus::Family<prometheus::Counter>& by_key;
  prometheus::Family<prometheus::Histogram>& expand_latency;
  prometheus::Family<prometheus::Counter>& ejections;
  prometheus::Family<prometheus::Counter>& recoveries;
  prometheus::Family<prometheus::Counter>& cache;
  prometheus::Family<prometheus::Gauge>& cache_available;
  prometheus::Family<prometheus::Gauge>& running;

  // The label-less series, looked up once.
  prometheus::Histogram* agreement_all = nullptr;
  prometheus::Counter* failovers_all = nullptr;

  void Failure(const grpc::Status& s);
  // A node's series at 0 (ejections, recoveries; an edge's Expand latency).
  void AddNode(const std::string& node, bool edge);
  void ExpandDone(const std::string& edge, bool ok, double seconds);

 private:
  SchedulerMetrics();
};

// One query's observer: fed every event the client gets and the final status.
class QueryMetrics {
 public:
  // `cloud_node`: the cloud's node name (tokens on it count as cloud, others as edge).
  QueryMetrics(const Decision& decision, const std::string& key_name, std::string cloud_node);
  void OnEvent(const v1::QueryEvent& ev);
  void OnFinish(const grpc::Status& s);

 private:
  using Clock = std::chrono::steady_clock;
  std::mutex mu_;
  const Clock::time_point start_ = Clock::now();
  Clock::time_point last_content_{};
  bool any_content_ = false;
  int points_ = 0;
  std::string route_;  // the route label: the decision's, then the answer's
  // route_'s latency series, looked up once per route rather than once per event.
  std::string series_route_;
  prometheus::Histogram* ttft_ = nullptr;
  prometheus::Histogram* itl_ = nullptr;
  Decision decision_;
  std::string key_;
  std::string cloud_node_;
  v1::AnswerEvent answer_;
  bool answered_ = false;
};

}  // namespace pice::scheduler

#endif  // PICE_SCHEDULER_SCHEDULER_METRICS_H_
