// The scheduler's view of its nodes: its cloud replicas and edges, their gRPC stubs,
// health and live load. Both come from a fixed list or discovery (`cloud:` and `edges:`
// take host:port entries, {dns: ...} and, for edges, edges_file: scheduler/discovery.h).
// Cloud calls go to the least-loaded healthy replica (calls in flight per slot), so
// replicas behind one DNS name or listed side by side share the work.
//
// Health comes from two sources. A poller probes every node each `load_poll_s` with
// grpc.health.v1 Health/Check and a Load call (Edge.Load, Cloud.Load): a node is healthy
// when it answers, says SERVING and is not draining. Call outcomes count too: a failed
// call (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, ...) makes the node suspect until its
// next good probe, and `eject_after_failures` consecutive failures (calls or probes)
// eject it for a back-off period (eject_base_s, doubling up to eject_max_s while it keeps
// failing; a successful call resets it). An ejected node is not probed until its back-off
// ends; the first good probe after that lets it back in. A node that answers
// RESOURCE_EXHAUSTED is busy (skipped) for its retry hint, which is not a failure. A
// draining node (NOT_SERVING) is skipped without being ejected.
//
// Probes never touch the scheduler's own counters (calls outstanding, expansions,
// failures): a node that comes back still has its old calls accounted for until they end.
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

// How the scheduler judges one node's health.
struct NodeHealth {
  bool reachable = false;        // the last probe got answers
  bool serving = false;          // SERVING and not draining, per the last probe
  bool draining = false;         // the node said so (NOT_SERVING or Load.draining)
  bool suspect = false;          // a call failed since the last good probe
  int consecutive_failures = 0;  // calls and probes, reset by a success
  absl::Time ejected_until = absl::InfinitePast();
  absl::Duration next_backoff;   // the next ejection's length
  absl::Time busy_until = absl::InfinitePast();  // RESOURCE_EXHAUSTED hint
  uint64_t ejections = 0;
  std::string last_error;
};

struct NodeSnapshot {
  std::string name;         // the name the node reports (config name until it does)
  std::string address;
  bool healthy = false;     // may get new calls now (health, ejection, suspicion)
  bool ejected = false;
  bool busy = false;        // within a RESOURCE_EXHAUSTED hint
  NodeHealth health;
  int outstanding = 0;      // this scheduler's calls in flight on it
  v1::LoadResponse load;    // last good Load
  std::string source;       // "" = the config's list; else the discovery source
  bool removed = false;     // its source no longer names it: no new work, no probes
  uint64_t expansions = 0;  // finished calls sent by this scheduler
  uint64_t failures = 0;
  double tokens_per_s = 0;  // clouds: measured generation rate (EWMA)
};
using EdgeSnapshot = NodeSnapshot;

// What a finished call says about its node.
enum class CallOutcome {
  kOk,        // success: resets failures and back-off
  kFailed,    // the node erred, timed out or vanished: counts toward ejection
  kBusy,      // RESOURCE_EXHAUSTED: skip the node for `retry_after`
  kNeutral,   // the caller's doing (CANCELLED, INVALID_ARGUMENT): says nothing
};
// Classifies a call's status. UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN,
// DATA_LOSS, ABORTED, UNIMPLEMENTED: kFailed.
CallOutcome ClassifyStatus(const grpc::Status& s);
// The `retry-after-ms` hint in a call's trailing metadata; `fallback` when absent.
absl::Duration RetryAfter(const grpc::ClientContext& ctx, absl::Duration fallback);

class NodeRegistry {
 public:
  // Creates the channels, probes every node once (so the first query sees live state),
  // then starts the poller. Never fails on unreachable nodes: they are unhealthy.
  static std::unique_ptr<NodeRegistry> Create(const SchedulerOptions& options);
  // Stops the poller, then waits until every Use() token is gone: what holds a
  // ClientContext on the registry's channels must end first, so that no channel's last
  // reference is dropped on a gRPC callback thread (health_check.h's lifetime rule).
  ~NodeRegistry();
  NodeRegistry(const NodeRegistry&) = delete;
  NodeRegistry& operator=(const NodeRegistry&) = delete;

  // A token that keeps the registry (and its channels) from being destroyed while held.
  // Whoever starts calls on the registry's stubs holds one for as long as it holds the
  // calls' ClientContexts (QueryRun keeps it as its last-destroyed member).
  std::shared_ptr<void> Use();

  // Edges known so far (discovered ones that went away included: they are `removed`).
  int edge_count() const;
  static constexpr int kMaxEdges = 4096;
  static constexpr int kMaxClouds = 256;
  v1::Edge::Stub* edge_stub(int i) { return edges_.conns[i]->edge.get(); }

  // Picks the healthy, not busy edge with room (outstanding calls below its slots +
  // queue) with the fewest outstanding calls per slot (then the shortest reported queue,
  // then round robin), skipping `exclude`, and counts a call on it. -1 when none.
  int AcquireEdge(const std::vector<int>& exclude);
  // Ends a call counted by AcquireEdge, with its outcome (see CallOutcome).
  void ReleaseEdge(int i, CallOutcome outcome, absl::Duration retry_after = absl::ZeroDuration(),
                   const std::string& error = "");
  std::string EdgeName(int i) const;

  // The cloud replica for a new call: the healthy, not busy one with the fewest calls in
  // flight per slot (then round robin); when none is healthy, the one least recently
  // failed, so the call fails as a call to an unhealthy cloud does. Counts the call.
  // -1 when no replica is known at all (a DNS name with no records yet).
  int AcquireCloud();
  v1::Cloud::Stub* cloud_stub(int i) { return clouds_.conns[i]->cloud.get(); }
  // Ends a call counted by AcquireCloud, with its outcome (health), and records a
  // finished call's speed (`generated` tokens in `seconds`, an EWMA of tokens/s).
  void CloudCallEnded(int i, CallOutcome outcome, const std::string& error = "");
  void RecordCloudRate(int i, int64_t generated, double seconds);
  // Whether any replica may take a call now.
  bool CloudHealthy() const;
  // The health of the replica that AcquireCloud would pick (for messages).
  NodeHealth CloudHealth() const;
  // The cloud's models as a replica's last Load named them (QueryRequest.model,
  // /v1/models; replicas serve the same models).
  std::vector<std::string> CloudModels() const;
  // What the answers depend on (the response cache's key part): the distinct
  // model_versions of the cloud replicas and of the edges that reported one, as one
  // string; "" while no cloud's is known.
  std::string AnswerVersions() const;
  // A cloud replica's node name as its Load reports it ("cloud" until one has).
  std::string CloudName() const;

  LiveState Live() const;
  std::vector<EdgeSnapshot> Edges() const;
  std::vector<NodeSnapshot> Clouds() const;
  // One probing round now (tests, and the first round in Create).
  // timeout_s = 0: the round's usual deadline (5 poll periods, within [1 s, 2 s]).
  void PollOnce(double timeout_s = 0);

 private:
  struct Conn {
    std::string config_name;
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::Edge::Stub> edge;    // edges
    std::unique_ptr<v1::Cloud::Stub> cloud;  // clouds
  };
  // Edges or cloud replicas: their connections, where they come from, and their state.
  struct Pool {
    bool cloud = false;
    int max = 0;
    // Appended to by discovery (under mu_; reserved to `max` so that it never moves: the
    // query threads index it without the lock); a node is never erased, only `removed`.
    std::vector<std::unique_ptr<Conn>> conns;
    std::vector<EdgeSource> sources;          // the poll thread's
    std::vector<absl::Time> next_discovery;   // per source
    std::vector<NodeSnapshot> state;          // guarded by mu_
    size_t rr = 0;                            // guarded by mu_
  };
  explicit NodeRegistry(const SchedulerOptions& options);
  void PollLoop();
  // Looks at the sources that are due (edges_file, DNS) and applies what they name.
  void Discover(bool all);
  void ApplyDiscovered(Pool* pool, const EdgeSource& source, const std::vector<EdgeAddress>& found);
  // Adds a node (the lock held); its index.
  int AddLocked(Pool* pool, const EdgeAddress& a, const std::string& source)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static std::string Who(const Pool& pool, const NodeSnapshot& s);
  // The pool's state with healthy/ejected/busy filled in as of now.
  std::vector<NodeSnapshot> SnapshotsLocked(const Pool& pool) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The index AcquireCloud picks, without counting it; -1 when there is no replica.
  int PickCloudLocked(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HealthyLocked(const NodeHealth& h, absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies a failure (call or probe); ejects after eject_after failures in a row.
  void FailLocked(NodeHealth* h, const std::string& who, const std::string& error,
                  absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SucceedLocked(NodeHealth* h) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const double poll_s_;
  const int eject_after_;
  const absl::Duration eject_base_, eject_max_;
  const ClientTls node_tls_;
  Pool edges_, clouds_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int uses_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread poller_;
};

}  // namespace pice::scheduler

#endif  // PICE_SCHEDULER_REGISTRY_H_
