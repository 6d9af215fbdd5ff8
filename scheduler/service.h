// pice.v1.Pice: the client API of the scheduler. Validates each request, evaluates the
// policy against the registry's live state, logs and emits the route, and runs the query
// (scheduler/query.h). Callback API: the reactor only moves messages.
//
// Admission: at most limits.max_concurrent_queries queries run at once, and at most
// limits.max_queries_per_client per client (metadata `x-api-key`, else the peer's
// address without its port); beyond, RESOURCE_EXHAUSTED with trailing metadata
// `retry-after-ms` (half the recent mean query time, 10 ms to 5 s) repeated in the
// message. While draining, new queries get UNAVAILABLE; the running ones go on.
#ifndef PICE_SCHEDULER_SERVICE_H_
#define PICE_SCHEDULER_SERVICE_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/file_watch.h"
#include "pice/v1/pice.grpc.pb.h"
#include "scheduler/config.h"
#include "scheduler/api_keys.h"
#include "scheduler/registry.h"
#include "scheduler/response_cache.h"

namespace pice::scheduler {

class PiceService final : public v1::Pice::CallbackService {
 public:
  // `registry` must outlive the service.
  PiceService(SchedulerOptions options, NodeRegistry* registry);

  grpc::ServerWriteReactor<v1::QueryEvent>* Query(grpc::CallbackServerContext* ctx,
                                                  const v1::QueryRequest* request) override;

  // Runs one query for any front door (gRPC here, HTTP in scheduler/http_server.h):
  // validation, admission, policy, the run. `emit` gets the events in order and
  // `finish` the end status exactly once (both on gRPC threads; they must not block).
  // A refusal (invalid, over a limit, draining) calls neither and returns the status;
  // for RESOURCE_EXHAUSTED *retry_after_ms is set. On success *cancel (when given) is a
  // function that cancels the query (safe to call any time, also after it finished).
  grpc::Status Start(const std::string& client, v1::QueryRequest request,
                     std::chrono::system_clock::time_point deadline,
                     std::function<void(v1::QueryEvent)> emit,
                     std::function<void(grpc::Status)> finish, std::function<void()>* cancel,
                     int* retry_after_ms);

  // New queries are refused with UNAVAILABLE; running ones continue.
  void SetDraining() { draining_ = true; }
  bool draining() const { return draining_.load(); }
  // Queries admitted and not finished yet.
  int in_flight() const { return in_flight_.load(); }
  const SchedulerOptions& options() const { return options_; }
  NodeRegistry* registry() const { return registry_; }
  // The response cache (scheduler/response_cache.h); null when off.
  ResponseCache* cache() const { return cache_.get(); }
  // The client a query counts against, the same for every front door: "key:<api key>"
  // when one is given, else "peer:<host address>" (no port). With an API keys file
  // (scheduler/api_keys.h) Start turns "key:..." into the key's name, or refuses it.
  static std::string ClientKey(std::string_view api_key, std::string_view peer_host);
  // The same for a gRPC call: metadata `authorization: Bearer K` or `x-api-key`, else the
  // peer of ctx.peer().
  static std::string ClientKey(const grpc::CallbackServerContext& ctx);
  // The retry hint for a refused query, in milliseconds.
  int RetryAfterMs() const;
  // Reads the policy again from options().policy_file or the scheduler's file; a bad one
  // is refused (the error logged and returned) and the running policy kept. Queries in
  // flight keep the decision they had. Called on SIGHUP, and at most once a second by
  // queries when the file's modification time changed.
  absl::Status ReloadPolicy();
  // The policy decisions are made with now.
  std::shared_ptr<const Policy> policy() const;

 private:
  // Admits one query for `client`; false (and nothing counted) when a limit is reached,
  // with the message in *why.
  bool Admit(const std::string& client, int max_per_client, std::string* why);
  void Done(const std::string& client, double ms);

  const SchedulerOptions options_;
  NodeRegistry* const registry_;
  // Start without counting its refusal (Start counts it in pice:request_failure_total).
  grpc::Status StartQuery(const std::string& client, v1::QueryRequest request,
                          std::chrono::system_clock::time_point deadline,
                          std::function<void(v1::QueryEvent)> emit,
                          std::function<void(grpc::Status)> finish, std::function<void()>* cancel,
                          int* retry_after_ms);
  std::shared_ptr<void> scrape_;  // refreshes the running gauge and the cache's counters
  // A cache hit: replays `hit`'s events through emit and finish; false when they do not
  // decode (the caller runs the query).
  bool Replay(const std::string& hit, const v1::QueryRequest& req,
              const std::function<void(v1::QueryEvent)>& emit,
              const std::function<void(grpc::Status)>& finish,
              std::chrono::steady_clock::time_point start);

  void MaybeReloadPolicy();

  mutable absl::Mutex policy_mu_;
  std::shared_ptr<const Policy> policy_ ABSL_GUARDED_BY(policy_mu_);
  std::string policy_source_;  // the file re-read on a change ("" = none)
  std::unique_ptr<FileWatch> policy_watch_;
  std::unique_ptr<ApiKeys> keys_;  // null without api_keys_file
  std::unique_ptr<ResponseCache> cache_;  // null when cache.kind is off
  bool keys_failed_ = false;       // the file did not load: every query is refused
  KeyBuckets buckets_;
  std::atomic<bool> draining_{false};
  std::atomic<int> in_flight_{0};
  mutable absl::Mutex mu_;
  std::map<std::string, int> per_client_ ABSL_GUARDED_BY(mu_);
  double mean_query_ms_ ABSL_GUARDED_BY(mu_) = 0;  // EWMA of finished queries
};

// The scheduler as one object: registry + service, for main.cc and `pice local`.
class Scheduler {
 public:
  static std::unique_ptr<Scheduler> Create(const SchedulerOptions& options);
  PiceService* service() { return service_.get(); }
  NodeRegistry* registry() { return registry_.get(); }
  // Serves the OpenAI-compatible HTTP API on `listen` (scheduler/http_server.h) until the
  // Scheduler is destroyed; returns the bound port.
  absl::StatusOr<int> ServeHttp(const std::string& listen);
  ~Scheduler();

 private:
  std::unique_ptr<NodeRegistry> registry_;
  std::unique_ptr<PiceService> service_;
  std::unique_ptr<class HttpServer> http_;  // stopped first
};

}  // namespace pice::scheduler

#endif  // PICE_SCHEDULER_SERVICE_H_
