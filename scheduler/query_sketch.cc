// QueryRun: the sketch route: the cloud's sketch, its points dispatched to edges as they
// arrive, each expansion emitted (scheduler/query.h has the whole story).
#include "scheduler/query_internal.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "spdlog/spdlog.h"

namespace pice::scheduler {

using query_internal::CloudError;
using query_internal::kNoCloud;

// ---- sketch route -----------------------------------------------------------------------

void QueryRun::StartSketch() {
  // A lambda, so that every early return still flushes what FailLocked queued.
  [&] {
    absl::MutexLock lock(&mu_);
    if (ending_ || finished_) return;
    stream_cloud_ = registry_->AcquireCloud();
    if (stream_cloud_ < 0) {
      FailLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, kNoCloud));
      return;
    }
    auto call = std::make_shared<SketchCall>();
    call->ctx = NewContext();
    call->req.set_request_id(request_.request_id());
    call->req.set_question(request_.prompt());
    *call->req.mutable_history() = request_.history();
    call->req.set_max_points(request_.max_points());
    // No max_tokens: the sketch's budget is the cloud template's sketch.max_tokens.
    auto self = shared_from_this();
    call->on_event = [this](const v1::SketchEvent& ev) { OnSketchEvent(ev); };
    call->on_done = [self](const grpc::Status& s) { self->OnSketchDone(s); };
    calls_.push_back(call);
    cloud_call_start_ = absl::Now();
    registry_->cloud_stub(stream_cloud_)->async()->Sketch(call->ctx.get(), &call->req, call.get());
    call->Begin();
  }();
  Flush();
}

void QueryRun::OnSketchEvent(const v1::SketchEvent& ev) {
  std::shared_ptr<ExpandCall> dispatch;
  {
    absl::MutexLock lock(&mu_);
    if (ending_ || finished_ || fell_back_) return;
    if (ev.has_point()) {
      const int limit = request_.max_points() > 0 ? request_.max_points() : options_->max_points;
      if (static_cast<int>(points_.size()) >= limit) return;  // over budget: dropped
      const int index = static_cast<int>(points_.size());
      points_.push_back(ev.point().text());
      expansions_.emplace_back();
      v1::QueryEvent out;
      out.mutable_sketch_point()->set_index(index);
      out.mutable_sketch_point()->set_text(ev.point().text());
      Push(std::move(out));
      dispatch = std::make_shared<ExpandCall>();
      dispatch->index = index;
      dispatch->req.set_request_id(request_.request_id());
      dispatch->req.set_question(request_.prompt());
      for (const std::string& p : points_) dispatch->req.add_sketch(p);  // known so far
      dispatch->req.set_index(index);
      *dispatch->req.mutable_params() = request_.params();
    } else if (ev.has_done()) {
      const v1::SketchDone& d = ev.done();
      sketch_done_ms_ = MsSinceStart();
      AddTokensLocked(d.node().empty() ? "cloud" : d.node(), d.prompt_tokens(),
                      d.generated_tokens());
      registry_->RecordCloudRate(stream_cloud_, d.generated_tokens(),
                                 absl::ToDoubleSeconds(absl::Now() - cloud_call_start_));
      if (!d.split() || points_.empty()) fell_back_ = true;
    }
  }
  Flush();
  if (dispatch) {
    dispatch->AcquireEdge(registry_, {});
    if (dispatch->edge < 0) dispatch->why_cloud = "no healthy edge with room";
    LaunchExpand(dispatch);
  }
}

void QueryRun::OnSketchDone(const grpc::Status& s) {
  const CallOutcome outcome = Outcome(s);
  registry_->CloudCallEnded(StreamCloud(), outcome, s.error_message());
  bool fallback = false;
  bool degrade = false;
  bool retry = false;
  std::string reason;
  {
    absl::MutexLock lock(&mu_);
    if (!s.ok() && !ending_) {
      if (RetryOnAnotherCloudLocked(outcome, points_.empty())) {
        retry = true;  // nothing of it was seen: another replica sketches
        spdlog::info("query {}: cloud Sketch failed ({}); another cloud replica sketches",
                     request_.request_id(), s.error_message());
      } else if (outcome == CallOutcome::kFailed && DegradedAllowed()) {
        // The sketch broke off: its points are not known, so the edges answer the whole
        // question instead; expansions already out are not needed any more.
        degrade = true;
        fell_back_ = true;
        for (grpc::ClientContext* c : live_contexts_) c->TryCancel();
        points_.clear();
        expansions_.clear();
      } else {
        FailLocked(CloudError("Sketch", s));
      }
    } else if (s.ok() && !ending_) {
      sketch_done_ = true;
      if (sketch_done_ms_ == 0) sketch_done_ms_ = MsSinceStart();
      if (fell_back_ || points_.empty()) {
        fell_back_ = true;
        fallback = true;
        reason = points_.empty()
                     ? "cloud by fallback: the sketch says do not split (or has no usable point)"
                     : "cloud by fallback: the sketch says do not split";
        // Points already out (a sketch that changed its mind) are not needed any more.
        for (grpc::ClientContext* c : live_contexts_) c->TryCancel();
        points_.clear();
        expansions_.clear();
      }
      MaybeAnswerLocked();
    }
    CallEndedLocked();
  }
  Flush();
  if (retry) StartSketch();
  if (fallback) StartFull(reason, true);
  if (degrade) StartDegraded(absl::StrCat("cloud Sketch failed: ", s.error_message()));
}

void QueryRun::LaunchExpand(std::shared_ptr<ExpandCall> call) {
  bool no_cloud = false;
  {
    absl::MutexLock lock(&mu_);
    if (ending_ || finished_ || (fell_back_ && !call->whole)) {
      call->ReleaseEdge(CallOutcome::kNeutral);
      return;
    }
    call->ctx = NewContext();
    ++call->attempts;
    if (call->edge >= 0) {
      call->tried.push_back(call->edge);
      const auto per_try = std::chrono::system_clock::now() +
                           std::chrono::microseconds(
                               static_cast<int64_t>(options_->expand_timeout_s * 1e6));
      call->ctx->set_deadline(std::min(deadline_, per_try));
    } else {
      call->cloud = registry_->AcquireCloud();
      no_cloud = call->cloud < 0;
    }
    calls_.push_back(call);  // owns call->ctx, which live_contexts_ points at, either way
    if (!no_cloud) {
      auto self = shared_from_this();
      auto done = [self, call](grpc::Status s) { self->OnExpandDone(call, s); };
      call->started = std::chrono::steady_clock::now();
      if (call->edge >= 0) {
        registry_->edge_stub(call->edge)->async()->Expand(call->ctx.get(), &call->req, &call->resp,
                                                          std::move(done));
      } else {
        registry_->cloud_stub(call->cloud)->async()->Expand(call->ctx.get(), &call->req,
                                                            &call->resp, std::move(done));
      }
    }
  }
  if (no_cloud) OnExpandDone(call, grpc::Status(grpc::StatusCode::UNAVAILABLE, kNoCloud));
}

void QueryRun::EmitExpansionLocked(const ExpandCall& call, const v1::ExpandResponse& r,
                                   bool from_edge) {
  v1::QueryEvent ev;
  v1::ExpansionEvent* x = ev.mutable_expansion();
  x->set_index(call.index);
  x->set_text(r.text());
  x->set_node(r.node().empty() ? (call.edge >= 0 ? registry_->EdgeName(call.edge) : "cloud")
                               : r.node());
  x->set_model(r.model());
  x->set_confidence(r.confidence());
  const bool escalated = !from_edge;
  const bool beside_edge = escalated && call.edge_answer.has_value();
  x->set_agreement(beside_edge ? call.edge_answer->agreement() : r.agreement());
  x->set_selection(beside_edge ? call.edge_answer->selection() : r.selection());
  if (beside_edge) {
    for (v1::Candidate c : call.edge_answer->candidates()) {
      c.set_selected(false);
      *x->add_candidates() = std::move(c);
    }
  }
  for (const v1::Candidate& c : r.candidates()) {
    v1::Candidate* added = x->add_candidates();
    *added = c;
    if (escalated) {
      added->set_selected(c.selected() || r.candidates_size() == 1);
      if (added->model().empty()) added->set_model(r.model());
    }
  }
  if (escalated && r.candidates_size() == 0) {
    // The cloud's answer as the selected candidate, beside the edge's.
    v1::Candidate* c = x->add_candidates();
    c->set_model(r.model().empty() ? x->node() : r.model());
    c->set_text(r.text());
    c->set_mean_logprob(r.confidence());
    c->set_score(r.confidence());
    c->set_tokens(static_cast<int>(r.generated_tokens()));
    c->set_selected(true);
  }
  x->set_escalated(escalated);
  x->set_attempts(call.attempts);
  x->set_failed_over(call.failed_over);
  if (call.failed_over) ++failed_over_;
  if (r.finish_reason() == v1::LENGTH) finish_reason_ = v1::LENGTH;
  expansions_[call.index] = *x;
  Push(std::move(ev));
  MaybeAnswerLocked();
}

}  // namespace pice::scheduler
