// pice.v1.Edge on the callback API: Expand runs every ensemble member on one sketch point
// and returns all candidates with the selected one; Load reports live capacity.
//
// Admission: at most max_slots Expand calls run at once and max_queue more wait (FIFO);
// beyond that Expand answers RESOURCE_EXHAUSTED at once, with trailing metadata
// `retry-after-ms` (the recent mean expansion time times the waves ahead, 5 ms to 5 s).
// A waiting call that is cancelled leaves the queue; a running one that is cancelled
// stops its engine requests (EngineRequest.cancelled), freeing the batch slots and KV
// (Load reports both). While draining, Expand answers UNAVAILABLE. No model work runs on
// gRPC threads: calls are started from the handler or from the engine thread that
// finished the previous one.
#ifndef PICE_EDGE_EDGE_SERVICE_H_
#define PICE_EDGE_EDGE_SERVICE_H_

#include <atomic>
#include <deque>
#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "edge/edge_config.h"
#include "node/node_metrics.h"
#include "node/ensemble.h"
#include "pice/v1/pice.grpc.pb.h"

namespace pice {

class EdgeService final : public v1::Edge::CallbackService {
 public:
  // Loads the template and each distinct model file once.
  static absl::StatusOr<std::unique_ptr<EdgeService>> Create(const EdgeOptions& options);
  // Stops the ensemble's engines first: their callbacks (which take mu_ and touch the
  // queue) all return before any member is destroyed.
  ~EdgeService();

  grpc::ServerUnaryReactor* Expand(grpc::CallbackServerContext* ctx, const v1::ExpandRequest* req,
                                   v1::ExpandResponse* resp) override;
  grpc::ServerUnaryReactor* Load(grpc::CallbackServerContext* ctx, const v1::LoadRequest* req,
                                 v1::LoadResponse* resp) override;

  void SetDraining() { draining_ = true; }
  // No Expand call running or waiting (for the drain).
  bool Idle();
  // Fills a LoadResponse with the current state (what Load returns).
  void FillLoad(v1::LoadResponse* resp);

 private:
  struct Pending {
    uint64_t id;
    std::function<void()> start;  // runs the call in the slot handed to it
  };
  EdgeService() = default;
  // Called when a running call ends: frees its slot and starts the next waiting call.
  // `seconds` < 0: nothing to learn from the call.
  void Release(double tokens_per_s, double seconds = -1);
  int RetryAfterMsLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  EdgeOptions options_;
  std::string model_version_;  // node/model_version.h
  std::unique_ptr<Ensemble> ensemble_;
  std::atomic<bool> draining_{false};

  absl::Mutex mu_;
  int active_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  double tokens_per_s_ ABSL_GUARDED_BY(mu_) = 0;  // EWMA of one expansion's rate
  double expand_s_ ABSL_GUARDED_BY(mu_) = 0;      // EWMA of one expansion's time
  std::unique_ptr<NodeMetrics> metrics_;  // last: gone before what it reads
};

}  // namespace pice

#endif  // PICE_EDGE_EDGE_SERVICE_H_
