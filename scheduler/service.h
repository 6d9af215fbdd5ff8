// pice.v1.Pice: the client API of the scheduler. Validates each request, evaluates the
// policy against the registry's live state, logs and emits the route, and runs the query
// (scheduler/query.h). Callback API: the reactor only moves messages.
#ifndef PICE_SCHEDULER_SERVICE_H_
#define PICE_SCHEDULER_SERVICE_H_

#include <atomic>
#include <memory>

#include "pice/v1/pice.grpc.pb.h"
#include "scheduler/config.h"
#include "scheduler/registry.h"

namespace pice::scheduler {

class PiceService final : public v1::Pice::CallbackService {
 public:
  // `registry` must outlive the service.
  PiceService(SchedulerOptions options, NodeRegistry* registry);

  grpc::ServerWriteReactor<v1::QueryEvent>* Query(grpc::CallbackServerContext* ctx,
                                                  const v1::QueryRequest* request) override;

  // New queries are refused with UNAVAILABLE; running ones continue.
  void SetDraining() { draining_ = true; }
  int in_flight() const { return in_flight_.load(); }
  const SchedulerOptions& options() const { return options_; }

 private:
  const SchedulerOptions options_;
  NodeRegistry* const registry_;
  std::atomic<bool> draining_{false};
  std::atomic<int> in_flight_{0};
};

// The scheduler as one object: registry + service, for main.cc and `pice local`.
class Scheduler {
 public:
  static std::unique_ptr<Scheduler> Create(const SchedulerOptions& options);
  PiceService* service() { return service_.get(); }
  NodeRegistry* registry() { return registry_.get(); }

 private:
  std::unique_ptr<NodeRegistry> registry_;
  std::unique_ptr<PiceService> service_;
};

}  // namespace pice::scheduler

#endif  // PICE_SCHEDULER_SERVICE_H_
