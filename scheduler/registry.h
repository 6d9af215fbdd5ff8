// The scheduler's view of its nodes: one cloud and N edges, their gRPC stubs, health and
// live load. A poller thread calls Edge.Load on every edge each `load_poll_s`; an edge
// that fails a poll (or an Expand) is unhealthy until its next good poll. The cloud has
// no Load call: its health is its channel state and its last call's outcome, and its
// tokens/s is measured here from finished calls.
//
// Thread safety: every method may be called from any thread.
#ifndef PICE_SCHEDULER_REGISTRY_H_
#define PICE_SCHEDULER_REGISTRY_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "pice/v1/pice.grpc.pb.h"
#include "scheduler/config.h"
#include "scheduler/policy.h"

namespace pice::scheduler {

struct EdgeSnapshot {
  std::string name;         // the name the edge reports (config name until it does)
  std::string address;
  bool healthy = false;
  int outstanding = 0;      // this scheduler's Expand calls in flight on it
  v1::LoadResponse load;    // last good Load
  uint64_t expansions = 0;  // finished Expand calls sent by this scheduler
  uint64_t failures = 0;
};

class NodeRegistry {
 public:
  // Creates the channels, polls every edge once (so the first query sees live state),
  // then starts the poller. Never fails on unreachable nodes: they are unhealthy.
  static std::unique_ptr<NodeRegistry> Create(const SchedulerOptions& options);
  ~NodeRegistry();  // stops the poller
  NodeRegistry(const NodeRegistry&) = delete;
  NodeRegistry& operator=(const NodeRegistry&) = delete;

  v1::Cloud::Stub* cloud() { return cloud_stub_.get(); }
  const std::string& cloud_address() const { return cloud_address_; }
  int edge_count() const { return static_cast<int>(edges_.size()); }
  v1::Edge::Stub* edge_stub(int i) { return edges_[i]->stub.get(); }

  // Picks the healthy edge with the fewest outstanding calls (then the shortest reported
  // queue, then round robin), skipping `exclude`, and counts a call on it. -1 when none.
  int AcquireEdge(const std::vector<int>& exclude);
  // Ends a call counted by AcquireEdge. `failed` (UNAVAILABLE, deadline, ...) marks the
  // edge unhealthy until its next good poll.
  void ReleaseEdge(int i, bool failed);
  std::string EdgeName(int i) const;

  // Records a finished cloud call: `generated` tokens in `seconds` (EWMA of tokens/s).
  void RecordCloud(int64_t generated, double seconds, bool failed);
  void CloudCallStarted();
  void CloudCallEnded();

  LiveState Live() const;
  std::vector<EdgeSnapshot> Edges() const;
  // One polling round now (tests, and the first round in Create).
  void PollOnce();

 private:
  struct Edge {
    std::string config_name;
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::Edge::Stub> stub;
  };
  explicit NodeRegistry(const SchedulerOptions& options);
  void PollLoop();

  const double poll_s_;
  std::string cloud_address_;
  std::shared_ptr<grpc::Channel> cloud_channel_;
  std::unique_ptr<v1::Cloud::Stub> cloud_stub_;
  std::vector<std::unique_ptr<Edge>> edges_;  // fixed after construction

  mutable absl::Mutex mu_;
  std::vector<EdgeSnapshot> state_ ABSL_GUARDED_BY(mu_);
  size_t rr_ ABSL_GUARDED_BY(mu_) = 0;
  double cloud_tps_ ABSL_GUARDED_BY(mu_) = 0;
  bool cloud_failed_ ABSL_GUARDED_BY(mu_) = false;
  int cloud_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread poller_;
};

}  // namespace pice::scheduler

#endif  // PICE_SCHEDULER_REGISTRY_H_
