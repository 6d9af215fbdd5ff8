// One query's way through the nodes (DESIGN.md "A query's way").
//
// Sketch route: the cloud's Sketch stream is read with a callback reactor; every point is
// forwarded to the client and dispatched to the least-loaded edge the moment it arrives.
// Each Expand lands as an `expansion` event. An edge that errs, times out, vanishes or is
// busy is retried on another edge (limits.max_edge_attempts edges per point), then on the
// cloud (`failed_over`); an edge answer whose agreement is below the escalation threshold
// is re-expanded by the cloud (escalated). A sketch that says "do not split" (or has no
// usable point) falls back to the full route. When the sketch and every expansion are in,
// the `answer` joins the points' expansions in sketch order.
// Full route: the cloud's Generate deltas are forwarded as `delta` events, then `answer`.
//
// Degraded mode (degraded.enabled): when the cloud is unreachable (unhealthy at the start,
// or its Sketch/Generate fails before any text was sent) edges answer alone: one edge
// answers the whole question with its ensemble (ExpandRequest.whole_question: the
// template's full prompt, every member, the vote), retried on the other edges; the text
// comes as one `delta`, then the `answer`, both route and answer marked `degraded`. Edge
// models may not be tuned for whole answers (the bundled demo edges compute only one
// expression), so such an answer may be partial or wrong; the route reason says so. When only the
// cloud's Expand fails, an escalated point keeps its edge answer and a failed-over point
// tries the remaining edges (degraded too).
//
// Cancellation and deadlines: every downstream call gets the client's deadline (capped by
// the scheduler's query timeout); Cancel() cancels every call in flight. The run finishes
// (calls `finish`) exactly once, and only after every downstream call has completed, so
// no node is left working for a query that is over.
//
// Threading: all reactions run on gRPC's callback threads and only move messages; events
// are emitted in order through a single outbox.
#ifndef PICE_SCHEDULER_QUERY_H_
#define PICE_SCHEDULER_QUERY_H_

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "pice/v1/pice.grpc.pb.h"
#include "scheduler/config.h"
#include "scheduler/policy.h"
#include "scheduler/registry.h"

namespace pice::scheduler {

// Checks a client request against the limits. INVALID_ARGUMENT naming the field:
// request_id, prompt (empty, too long, not UTF-8), route (unknown value), params.*,
// max_points, category.
absl::Status ValidateQuery(const v1::QueryRequest& request, const SchedulerOptions& options);

// Point i's part of the answer text: the separator (for i > 0), then point_format filled
// with the point, its expansion and n = i + 1. JoinAnswer is the concatenation of the
// parts, so a client can stream the answer in sketch order as expansions land.
std::string AnswerPart(const SchedulerOptions& options, size_t i, const std::string& point,
                       const std::string& expansion);
// Joins expansions into the answer text with options.point_format / answer_separator.
std::string JoinAnswer(const SchedulerOptions& options, const std::vector<std::string>& points,
                       const std::vector<std::string>& expansions);

class QueryRun : public std::enable_shared_from_this<QueryRun> {
 public:
  using EmitFn = std::function<void(v1::QueryEvent)>;
  using FinishFn = std::function<void(grpc::Status)>;

  // `request` must have passed ValidateQuery. `deadline` bounds every downstream call.
  // `emit` and `finish` are called from gRPC threads, serially, never after finish.
  QueryRun(NodeRegistry* registry, const SchedulerOptions* options, v1::QueryRequest request,
           std::chrono::system_clock::time_point deadline, EmitFn emit, FinishFn finish);

  // Emits the route event and starts the route. Call once.
  void Start(const Decision& decision);
  // Cancels every downstream call; the run then finishes with CANCELLED. Thread-safe,
  // non-blocking, idempotent.
  void Cancel();

 private:
  class SketchCall;
  class GenerateCall;
  struct ExpandCall;
  enum class Next { kNone, kEscalate, kRetry, kEdgesOnly };
  struct Outbox {
    std::optional<v1::QueryEvent> event;
    std::optional<grpc::Status> finish;
  };

  void StartFull(const std::string& reason, bool announce) ABSL_LOCKS_EXCLUDED(mu_);
  void StartSketch() ABSL_LOCKS_EXCLUDED(mu_);
  void OnSketchEvent(const v1::SketchEvent& ev) ABSL_LOCKS_EXCLUDED(mu_);
  void OnSketchDone(const grpc::Status& s) ABSL_LOCKS_EXCLUDED(mu_);
  void OnGenerateEvent(const v1::GenerateEvent& ev) ABSL_LOCKS_EXCLUDED(mu_);
  void OnGenerateDone(const grpc::Status& s) ABSL_LOCKS_EXCLUDED(mu_);
  // Sends point `index` to an edge (or the cloud when `edge` < 0).
  void LaunchExpand(std::shared_ptr<ExpandCall> call) ABSL_LOCKS_EXCLUDED(mu_);
  void OnExpandDone(std::shared_ptr<ExpandCall> call, const grpc::Status& s)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Routes a point that an edge could not settle to another edge, the cloud, or fails
  // the query. `edges_only`: the cloud failed; try the edges not tried yet.
  void ToCloudOrFail(std::shared_ptr<ExpandCall> call, bool edges_only) ABSL_LOCKS_EXCLUDED(mu_);
  // Degraded mode: an edge answers the whole question (see the header comment).
  void StartDegraded(const std::string& why) ABSL_LOCKS_EXCLUDED(mu_);
  void OnWholeDone(std::shared_ptr<ExpandCall> call, const grpc::Status& s, bool answer_error)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Emits point call.index's expansion from `r` (an edge's or the cloud's answer).
  void EmitExpansionLocked(const ExpandCall& call, const v1::ExpandResponse& r, bool from_edge)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks the query degraded and tells the client once, with a route event.
  void MarkDegradedLocked(const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ClassifyStatus, except that a deadline this query's own deadline explains is the
  // caller's doing, not the node's.
  CallOutcome Outcome(const grpc::Status& s) const;
  bool DegradedAllowed() const;

  std::unique_ptr<grpc::ClientContext> NewContext() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Push(v1::QueryEvent ev) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fails the query: cancels what runs, finishes when it has stopped.
  void FailLocked(grpc::Status s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CallEndedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues the finish once the run is ending and no downstream call is in flight.
  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeAnswerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddTokensLocked(const std::string& node, int64_t prompt, int64_t generated)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  double MsSinceStart() const;
  // Delivers the outbox in order; call after releasing mu_.
  void Flush() ABSL_LOCKS_EXCLUDED(mu_, emit_mu_);

  // Declared first, destroyed last: the calls' ClientContexts (calls_) go before the
  // registry may destroy the channels they refer to.
  const std::shared_ptr<void> registry_use_;
  NodeRegistry* const registry_;
  const SchedulerOptions* const options_;
  const v1::QueryRequest request_;
  const std::chrono::system_clock::time_point deadline_;
  const absl::Time start_;

  absl::Mutex emit_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  EmitFn emit_ ABSL_GUARDED_BY(emit_mu_);
  FinishFn finish_ ABSL_GUARDED_BY(emit_mu_);

  absl::Mutex mu_;
  std::deque<Outbox> outbox_ ABSL_GUARDED_BY(mu_);
  std::vector<grpc::ClientContext*> live_contexts_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<void>> calls_ ABSL_GUARDED_BY(mu_);  // keeps call state alive
  int outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool ending_ ABSL_GUARDED_BY(mu_) = false;   // no new calls; finish once outstanding_ == 0
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status end_status_ ABSL_GUARDED_BY(mu_);
  v1::Route route_ ABSL_GUARDED_BY(mu_) = v1::ROUTE_CLOUD;
  bool sketch_done_ ABSL_GUARDED_BY(mu_) = false;
  bool fell_back_ ABSL_GUARDED_BY(mu_) = false;  // the sketch was abandoned
  bool degraded_ ABSL_GUARDED_BY(mu_) = false;
  bool whole_started_ ABSL_GUARDED_BY(mu_) = false;
  int failed_over_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> points_ ABSL_GUARDED_BY(mu_);
  std::vector<std::optional<v1::ExpansionEvent>> expansions_ ABSL_GUARDED_BY(mu_);
  v1::FinishReason finish_reason_ ABSL_GUARDED_BY(mu_) = v1::STOP;
  std::string full_text_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::NodeTokens> tokens_ ABSL_GUARDED_BY(mu_);
  double first_event_ms_ ABSL_GUARDED_BY(mu_) = 0;
  double sketch_done_ms_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time cloud_call_start_ ABSL_GUARDED_BY(mu_);
  // The cloud replica of the running Sketch or Generate (they never overlap).
  int stream_cloud_ ABSL_GUARDED_BY(mu_) = -1;
  int cloud_retries_ ABSL_GUARDED_BY(mu_) = 0;
  // A failed Sketch/Generate of which the client saw nothing (`unseen`) goes once more to
  // another cloud replica, when one is healthy (the failed one is suspect by now).
  bool RetryOnAnotherCloudLocked(CallOutcome outcome, bool unseen) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (outcome != CallOutcome::kFailed || !unseen || cloud_retries_ >= 1) return false;
    if (!registry_->CloudHealthy()) return false;
    ++cloud_retries_;
    return true;
  }
  int StreamCloud() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return stream_cloud_;
  }
};

}  // namespace pice::scheduler

#endif  // PICE_SCHEDULER_QUERY_H_
