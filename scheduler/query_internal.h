// Internals of QueryRun shared by its files (query.cc: the run's life; query_full.cc,
// query_sketch.cc, query_expand.cc, query_degraded.cc: one concern each): the downstream
// call objects and helpers. Not a public header.
#ifndef PICE_SCHEDULER_QUERY_INTERNAL_H_
#define PICE_SCHEDULER_QUERY_INTERNAL_H_

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "scheduler/query.h"

namespace pice::scheduler {

// ---- downstream calls -------------------------------------------------------------------

// A streaming read whose events go to `on_event` and whose end goes to `on_done`. Holds
// its run until OnDone, then lets go (the run owns the reactor through calls_).
template <typename Event>
class StreamCall : public grpc::ClientReadReactor<Event> {
 public:
  std::unique_ptr<grpc::ClientContext> ctx;
  std::function<void(const Event&)> on_event;
  std::function<void(const grpc::Status&)> on_done;

  void Begin() {
    this->StartRead(&event_);
    this->StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    on_event(event_);
    this->StartRead(&event_);
  }
  void OnDone(const grpc::Status& s) override {
    auto done = std::move(on_done);
    on_event = nullptr;
    done(s);  // may release the last reference to the run (and to this)
  }

 private:
  Event event_;
};

class QueryRun::SketchCall : public StreamCall<v1::SketchEvent> {
 public:
  v1::SketchRequest req;
};
class QueryRun::GenerateCall : public StreamCall<v1::GenerateEvent> {
 public:
  v1::GenerateRequest req;
};

struct QueryRun::ExpandCall {
  ExpandCall() = default;
  ExpandCall(const ExpandCall&) = delete;
  ExpandCall& operator=(const ExpandCall&) = delete;
  // A slot still held is given back (neutral outcome): no path can leak one.
  ~ExpandCall() { ReleaseEdge(CallOutcome::kNeutral); }
  // Picks an edge (not in `exclude`) and holds a slot on it; edge = -1 when none.
  void AcquireEdge(NodeRegistry* registry, const std::vector<int>& exclude) {
    ReleaseEdge(CallOutcome::kNeutral);
    edge = registry->AcquireEdge(exclude);
    slot_owner = edge >= 0 ? registry : nullptr;
  }
  // Gives the slot back with the call's outcome; a no-op when none is held.
  void ReleaseEdge(CallOutcome outcome, absl::Duration retry_after = absl::ZeroDuration(),
                   const std::string& error = "") {
    if (slot_owner) slot_owner->ReleaseEdge(edge, outcome, retry_after, error);
    slot_owner = nullptr;
  }

  int index = 0;
  int edge = -1;                // -1: the cloud
  int cloud = -1;               // the cloud replica (NodeRegistry::AcquireCloud) when on it
  NodeRegistry* slot_owner = nullptr;  // set while a slot on `edge` is held
  bool whole = false;           // degraded mode: the whole question on an edge
  bool failed_over = false;     // an edge failed this point before
  std::vector<int> tried;       // edges tried for this point
  int attempts = 0;
  std::chrono::steady_clock::time_point started;  // the current attempt's call
  std::unique_ptr<grpc::ClientContext> ctx;
  v1::ExpandRequest req;
  v1::ExpandResponse resp;
  std::optional<v1::ExpandResponse> edge_answer;  // kept when escalating
  std::string why_cloud;                          // reason the cloud expands it
};

namespace query_internal {

inline constexpr char kNoCloud[] = "no cloud replica is known (cloud: names none yet)";

// A cloud's INVALID_ARGUMENT about the question is about the client's prompt.
inline grpc::Status CloudError(const char* call, const grpc::Status& s) {
  std::string msg = s.error_message();
  if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT && msg.rfind("question", 0) == 0) {
    return grpc::Status(s.error_code(), absl::StrCat("prompt: the cloud refused it (", call,
                                                     "): ", msg));
  }
  return grpc::Status(s.error_code(), absl::StrCat("cloud ", call, ": ", msg));
}

inline constexpr char kDegradedCaveat[] =
    "edge models are smaller than the cloud's and may not be tuned for whole answers, so the "
    "answer may be partial or wrong";

}  // namespace query_internal

}  // namespace pice::scheduler

#endif  // PICE_SCHEDULER_QUERY_INTERNAL_H_
