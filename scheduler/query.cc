#include "scheduler/query.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status.h"
#include "spdlog/spdlog.h"

namespace pice::scheduler {

absl::Status ValidateQuery(const v1::QueryRequest& r, const SchedulerOptions& o) {
  if (absl::Status s = ValidateRequestId(r.request_id()); !s.ok()) return s;
  if (absl::Status s = ValidateText(r.prompt(), "prompt", o.max_prompt_bytes); !s.ok()) return s;
  if (!v1::Route_IsValid(r.route())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "route: unknown value ", static_cast<int>(r.route()),
        " (expected ROUTE_AUTO, ROUTE_CLOUD or ROUTE_SKETCH)"));
  }
  if (r.max_points() < 0 || r.max_points() > o.max_points) {
    return absl::InvalidArgumentError(absl::StrCat("max_points: must be in [0, ", o.max_points,
                                                   "], got ", r.max_points()));
  }
  if (absl::Status s = ValidateText(r.category(), "category", o.max_category_bytes,
                                    /*allow_empty=*/true);
      !s.ok()) {
    return s;
  }
  SamplingLimits limits;
  limits.default_max_tokens = 0;  // the nodes' templates decide
  limits.max_tokens = o.max_tokens;
  limits.max_stop = o.max_stop;
  limits.max_stop_bytes = o.max_stop_bytes;
  if (auto g = ToGenerateOptions(r.params(), limits, "params"); !g.ok()) return g.status();
  return absl::OkStatus();
}

std::string JoinAnswer(const SchedulerOptions& o, const std::vector<std::string>& points,
                       const std::vector<std::string>& expansions) {
  std::string out;
  for (size_t i = 0; i < expansions.size(); ++i) {
    if (i > 0) out += o.answer_separator;
    out += absl::StrReplaceAll(o.point_format,
                               {{"{point}", i < points.size() ? points[i] : ""},
                                {"{expansion}", expansions[i]},
                                {"{n}", absl::StrCat(i + 1)}});
  }
  return out;
}

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
  NodeRegistry* slot_owner = nullptr;  // set while a slot on `edge` is held
  bool whole = false;           // degraded mode: the whole question on an edge
  bool failed_over = false;     // an edge failed this point before
  std::vector<int> tried;       // edges tried for this point
  int attempts = 0;
  std::unique_ptr<grpc::ClientContext> ctx;
  v1::ExpandRequest req;
  v1::ExpandResponse resp;
  std::optional<v1::ExpandResponse> edge_answer;  // kept when escalating
  std::string why_cloud;                          // reason the cloud expands it
};

// ---- QueryRun ---------------------------------------------------------------------------

namespace {

// A cloud's INVALID_ARGUMENT about the question is about the client's prompt.
grpc::Status CloudError(const char* call, const grpc::Status& s) {
  std::string msg = s.error_message();
  if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT && msg.rfind("question", 0) == 0) {
    return grpc::Status(s.error_code(), absl::StrCat("prompt: the cloud refused it (", call,
                                                     "): ", msg));
  }
  return grpc::Status(s.error_code(), absl::StrCat("cloud ", call, ": ", msg));
}

constexpr char kDegradedCaveat[] =
    "edge models are smaller than the cloud's and may not be tuned for whole answers, so the "
    "answer may be partial or wrong";

}  // namespace

QueryRun::QueryRun(NodeRegistry* registry, const SchedulerOptions* options,
                   v1::QueryRequest request, std::chrono::system_clock::time_point deadline,
                   EmitFn emit, FinishFn finish)
    : registry_use_(registry->Use()), registry_(registry), options_(options), request_(std::move(request)), deadline_(deadline),
      start_(absl::Now()), emit_(std::move(emit)), finish_(std::move(finish)) {}

double QueryRun::MsSinceStart() const { return absl::ToDoubleMilliseconds(absl::Now() - start_); }

CallOutcome QueryRun::Outcome(const grpc::Status& s) const {
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
      std::chrono::system_clock::now() + std::chrono::milliseconds(5) >= deadline_) {
    return CallOutcome::kNeutral;
  }
  return ClassifyStatus(s);
}

bool QueryRun::DegradedAllowed() const {
  return options_->degraded_enabled && registry_->edge_count() > 0;
}

std::unique_ptr<grpc::ClientContext> QueryRun::NewContext() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(deadline_);
  live_contexts_.push_back(ctx.get());
  ++outstanding_;
  return ctx;
}

void QueryRun::Push(v1::QueryEvent ev) {
  if (finished_ || ending_) return;
  ev.set_request_id(request_.request_id());
  if (first_event_ms_ == 0 && (ev.has_sketch_point() || ev.has_delta())) {
    first_event_ms_ = MsSinceStart();
  }
  outbox_.push_back(Outbox{std::move(ev), std::nullopt});
}

void QueryRun::Flush() {
  absl::MutexLock emit_lock(&emit_mu_);
  while (true) {
    std::deque<Outbox> batch;
    {
      absl::MutexLock lock(&mu_);
      batch.swap(outbox_);
    }
    if (batch.empty()) return;
    for (Outbox& o : batch) {
      if (!finish_) return;
      if (o.event) emit_(std::move(*o.event));
      if (o.finish) {
        FinishFn f = std::move(finish_);
        finish_ = nullptr;
        emit_ = nullptr;
        f(*o.finish);
        return;
      }
    }
  }
}

void QueryRun::FailLocked(grpc::Status s) {
  if (ending_ || finished_) return;
  ending_ = true;
  end_status_ = std::move(s);
  for (grpc::ClientContext* c : live_contexts_) c->TryCancel();
  MaybeFinishLocked();
}

void QueryRun::CallEndedLocked() {
  --outstanding_;
  MaybeFinishLocked();
}

void QueryRun::MaybeFinishLocked() {
  if (ending_ && outstanding_ == 0 && !finished_) {
    finished_ = true;
    outbox_.push_back(Outbox{std::nullopt, end_status_});
  }
}

void QueryRun::Cancel() {
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_ || finished_) return;
    cancelled_ = true;
    spdlog::info("query {}: cancelled by the client after {:.1f} ms", request_.request_id(),
                 MsSinceStart());
    FailLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
  }
  Flush();
}

void QueryRun::AddTokensLocked(const std::string& node, int64_t prompt, int64_t generated) {
  v1::NodeTokens& t = tokens_[node];
  t.set_node(node);
  t.set_prompt_tokens(t.prompt_tokens() + prompt);
  t.set_generated_tokens(t.generated_tokens() + generated);
}

void QueryRun::MarkDegradedLocked(const std::string& why) {
  if (degraded_) return;
  degraded_ = true;
  spdlog::warn("query {}: degraded: {}", request_.request_id(), why);
  v1::QueryEvent ev;
  ev.mutable_route()->set_route(route_);
  ev.mutable_route()->set_reason(absl::StrCat("degraded: ", why));
  ev.mutable_route()->set_degraded(true);
  Push(std::move(ev));
}

void QueryRun::Start(const Decision& d) {
  const bool cloud_down = !registry_->CloudHealthy() && DegradedAllowed() &&
                          registry_->Live().healthy_edges > 0;
  if (cloud_down) {
    const NodeHealth h = registry_->CloudHealth();
    StartDegraded(absl::StrCat("the cloud is unreachable (", h.draining ? "draining" : h.last_error,
                               "); policy said: ", d.reason));
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    route_ = d.route == RouteChoice::kSketch ? v1::ROUTE_SKETCH : v1::ROUTE_CLOUD;
    v1::QueryEvent ev;
    ev.mutable_route()->set_route(route_);
    ev.mutable_route()->set_reason(d.reason);
    Push(std::move(ev));
  }
  Flush();
  if (d.route == RouteChoice::kSketch) {
    StartSketch();
  } else {
    StartFull("", false);
  }
}

// ---- full route -------------------------------------------------------------------------

void QueryRun::StartFull(const std::string& reason, bool announce) {
  {
    absl::MutexLock lock(&mu_);
    if (ending_ || finished_) return;
    route_ = v1::ROUTE_CLOUD;
    if (announce) {
      v1::QueryEvent ev;
      ev.mutable_route()->set_route(v1::ROUTE_CLOUD);
      ev.mutable_route()->set_reason(reason);
      Push(std::move(ev));
    }
    auto call = std::make_shared<GenerateCall>();
    call->ctx = NewContext();
    call->req.set_request_id(request_.request_id());
    call->req.set_question(request_.prompt());
    // max_tokens 0 stays 0: the cloud applies its template's full.max_tokens.
    *call->req.mutable_params() = request_.params();
    auto self = shared_from_this();
    call->on_event = [this](const v1::GenerateEvent& ev) { OnGenerateEvent(ev); };
    call->on_done = [self](const grpc::Status& s) { self->OnGenerateDone(s); };
    calls_.push_back(call);
    cloud_call_start_ = absl::Now();
    registry_->CloudCallStarted();
    registry_->cloud()->async()->Generate(call->ctx.get(), &call->req, call.get());
    call->Begin();
  }
  Flush();
}

void QueryRun::OnGenerateEvent(const v1::GenerateEvent& ev) {
  {
    absl::MutexLock lock(&mu_);
    if (ev.has_delta()) {
      full_text_ += ev.delta().text();
      v1::QueryEvent out;
      *out.mutable_delta() = ev.delta();
      Push(std::move(out));
    } else if (ev.has_done()) {
      const v1::GenerateDone& d = ev.done();
      finish_reason_ = d.finish_reason();
      AddTokensLocked(d.node().empty() ? "cloud" : d.node(), d.prompt_tokens(),
                      d.generated_tokens());
      registry_->RecordCloudRate(d.generated_tokens(),
                                 absl::ToDoubleSeconds(absl::Now() - cloud_call_start_));
    }
  }
  Flush();
}

void QueryRun::OnGenerateDone(const grpc::Status& s) {
  const CallOutcome outcome = Outcome(s);
  registry_->CloudCallEnded(outcome, s.error_message());
  bool degrade = false;
  {
    absl::MutexLock lock(&mu_);
    if (!s.ok() && !ending_) {
      // Nothing was sent yet: the edges can still answer alone.
      if (outcome == CallOutcome::kFailed && full_text_.empty() && DegradedAllowed()) {
        degrade = true;
      } else {
        FailLocked(CloudError("Generate", s));
      }
    } else if (s.ok() && !ending_) {
      v1::QueryEvent ev;
      v1::AnswerEvent* a = ev.mutable_answer();
      a->set_text(full_text_);
      a->set_route(v1::ROUTE_CLOUD);
      a->set_finish_reason(finish_reason_);
      for (const auto& [node, t] : tokens_) *a->add_tokens() = t;
      a->mutable_timings()->set_first_event_ms(first_event_ms_);
      a->mutable_timings()->set_sketch_done_ms(fell_back_ ? sketch_done_ms_ : 0);
      a->mutable_timings()->set_total_ms(MsSinceStart());
      for (const std::string& p : points_) a->add_points(p);
      Push(std::move(ev));
      spdlog::info("query {}: cloud answer in {:.1f} ms", request_.request_id(), MsSinceStart());
      ending_ = true;
      end_status_ = grpc::Status::OK;
    }
    CallEndedLocked();
  }
  Flush();
  if (degrade) StartDegraded(absl::StrCat("cloud Generate failed: ", s.error_message()));
}

// ---- sketch route -----------------------------------------------------------------------

void QueryRun::StartSketch() {
  {
    absl::MutexLock lock(&mu_);
    if (ending_ || finished_) return;
    auto call = std::make_shared<SketchCall>();
    call->ctx = NewContext();
    call->req.set_request_id(request_.request_id());
    call->req.set_question(request_.prompt());
    call->req.set_max_points(request_.max_points());
    // No max_tokens: the sketch's budget is the cloud template's sketch.max_tokens.
    auto self = shared_from_this();
    call->on_event = [this](const v1::SketchEvent& ev) { OnSketchEvent(ev); };
    call->on_done = [self](const grpc::Status& s) { self->OnSketchDone(s); };
    calls_.push_back(call);
    cloud_call_start_ = absl::Now();
    registry_->CloudCallStarted();
    registry_->cloud()->async()->Sketch(call->ctx.get(), &call->req, call.get());
    call->Begin();
  }
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
      registry_->RecordCloudRate(d.generated_tokens(),
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
  registry_->CloudCallEnded(outcome, s.error_message());
  bool fallback = false;
  bool degrade = false;
  std::string reason;
  {
    absl::MutexLock lock(&mu_);
    if (!s.ok() && !ending_) {
      if (outcome == CallOutcome::kFailed && DegradedAllowed()) {
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
  if (fallback) StartFull(reason, true);
  if (degrade) StartDegraded(absl::StrCat("cloud Sketch failed: ", s.error_message()));
}

void QueryRun::LaunchExpand(std::shared_ptr<ExpandCall> call) {
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
      registry_->CloudCallStarted();
    }
    calls_.push_back(call);
    auto self = shared_from_this();
    auto done = [self, call](grpc::Status s) { self->OnExpandDone(call, s); };
    if (call->edge >= 0) {
      registry_->edge_stub(call->edge)->async()->Expand(call->ctx.get(), &call->req, &call->resp,
                                                        std::move(done));
    } else {
      registry_->cloud()->async()->Expand(call->ctx.get(), &call->req, &call->resp,
                                          std::move(done));
    }
  }
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

void QueryRun::OnExpandDone(std::shared_ptr<ExpandCall> call, const grpc::Status& s) {
  const bool on_edge = call->edge >= 0;
  const bool answer_error = s.ok() && call->resp.finish_reason() == v1::ERROR;
  const CallOutcome outcome = answer_error ? CallOutcome::kFailed : Outcome(s);
  const std::string error = answer_error ? "the expansion finished with an error" : s.error_message();
  if (on_edge) {
    call->ReleaseEdge(outcome, RetryAfter(*call->ctx, absl::Seconds(options_->load_poll_s)), error);
  } else {
    registry_->CloudCallEnded(outcome, error);
  }
  if (call->whole) {
    OnWholeDone(call, s, answer_error);
    return;
  }
  Next next = Next::kNone;
  {
    absl::MutexLock lock(&mu_);
    if (ending_ || finished_ || fell_back_) {
      // The query is over or went another way.
    } else if (s.ok() && !answer_error) {
      const v1::ExpandResponse& r = call->resp;
      AddTokensLocked(r.node().empty() ? (on_edge ? registry_->EdgeName(call->edge) : "cloud")
                                       : r.node(),
                      r.prompt_tokens(), r.generated_tokens());
      const bool low_agreement = options_->escalation_threshold > 0 &&
                                 r.agreement() < options_->escalation_threshold;
      const bool low_confidence = r.confidence() < options_->escalation_min_confidence;
      if (on_edge && (low_agreement || low_confidence)) {
        const std::string why =
            low_agreement ? absl::StrCat("agreement ", r.agreement(), " < threshold ",
                                         options_->escalation_threshold)
                          : absl::StrCat("confidence ", r.confidence(), " < min_confidence ",
                                         options_->escalation_min_confidence);
        if (!registry_->CloudHealthy() && DegradedAllowed()) {
          // No cloud to escalate to: the edge's answer stands.
          MarkDegradedLocked(absl::StrCat("the cloud is unreachable; point ", call->index,
                                          " keeps edge ",
                                          r.node().empty() ? registry_->EdgeName(call->edge)
                                                           : r.node(),
                                          "'s answer (", why,
                                          ")"));
          EmitExpansionLocked(*call, r, true);
        } else {
          next = Next::kEscalate;
          call->edge_answer = r;
          call->why_cloud = why;
        }
      } else {
        EmitExpansionLocked(*call, r, on_edge);
      }
    } else if (!on_edge) {
      // The cloud was the last resort.
      if (outcome == CallOutcome::kFailed && DegradedAllowed() && call->edge_answer) {
        MarkDegradedLocked(absl::StrCat("cloud Expand failed (", error, "); point ", call->index,
                                        " keeps its edge answer (", call->why_cloud, ")"));
        EmitExpansionLocked(*call, *call->edge_answer, true);
      } else if (outcome == CallOutcome::kFailed && DegradedAllowed()) {
        next = Next::kEdgesOnly;
        call->why_cloud = absl::StrCat(call->why_cloud, "; cloud Expand failed: ", error);
      } else {
        FailLocked(grpc::Status(
            answer_error ? grpc::StatusCode::INTERNAL : s.error_code(),
            absl::StrCat("point ", call->index, ": cloud Expand (", call->why_cloud, "): ", error)));
      }
    } else {
      spdlog::warn("query {}: point {} on edge {}: {}", request_.request_id(), call->index,
                   registry_->EdgeName(call->edge), error);
      call->why_cloud = absl::StrCat("edge ", registry_->EdgeName(call->edge), " failed: ", error);
      if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
          outcome == CallOutcome::kNeutral) {
        // The query's own deadline passed: no other node has time either.
        FailLocked(grpc::Status(s.error_code(), absl::StrCat("point ", call->index, ": edge ",
                                                             registry_->EdgeName(call->edge),
                                                             ": ", error)));
      } else {
        next = Next::kRetry;
      }
    }
    CallEndedLocked();
  }
  Flush();
  if (next == Next::kEscalate) {
    auto cloud = std::make_shared<ExpandCall>();
    cloud->index = call->index;
    cloud->edge = -1;
    cloud->tried = call->tried;
    cloud->attempts = call->attempts;
    cloud->failed_over = call->failed_over;
    cloud->req = call->req;
    cloud->edge_answer = call->edge_answer;
    cloud->why_cloud = call->why_cloud;
    LaunchExpand(cloud);
  } else if (next == Next::kRetry || next == Next::kEdgesOnly) {
    ToCloudOrFail(call, next == Next::kEdgesOnly);
  }
}

void QueryRun::ToCloudOrFail(std::shared_ptr<ExpandCall> call, bool edges_only) {
  auto next = std::make_shared<ExpandCall>();
  next->index = call->index;
  next->tried = call->tried;
  next->attempts = call->attempts;
  next->req = call->req;
  next->why_cloud = call->why_cloud;
  next->failed_over = true;
  next->edge = -1;
  const bool cloud_ok = !edges_only && registry_->CloudHealthy();
  // Within the attempt budget, or beyond it when the cloud cannot take the point: every
  // edge is tried once at most, so the attempts stay bounded.
  if (static_cast<int>(call->tried.size()) < options_->max_edge_attempts ||
      (!cloud_ok && DegradedAllowed())) {
    next->AcquireEdge(registry_, call->tried);
  }
  if (next->edge < 0 && (edges_only || !options_->escalate_on_edge_failure)) {
    {
      absl::MutexLock lock(&mu_);
      FailLocked(grpc::Status(
          grpc::StatusCode::UNAVAILABLE,
          absl::StrCat("point ", call->index, ": ", call->why_cloud,
                       edges_only ? ", and no other edge is healthy"
                                  : " and escalation.on_edge_failure is off")));
    }
    Flush();
    return;
  }
  if (next->edge >= 0 && !cloud_ok && !edges_only) {
    absl::MutexLock lock(&mu_);
    MarkDegradedLocked(absl::StrCat("point ", call->index, ": ", call->why_cloud,
                                    "; the cloud is unreachable, so another edge expands it"));
  }
  if (next->edge >= 0 && edges_only) {
    absl::MutexLock lock(&mu_);
    MarkDegradedLocked(absl::StrCat("point ", call->index, ": ", call->why_cloud,
                                    "; another edge expands it"));
  }
  LaunchExpand(next);
  Flush();
}

// ---- degraded mode: the edges answer alone ----------------------------------------------

void QueryRun::StartDegraded(const std::string& why) {
  auto call = std::make_shared<ExpandCall>();
  call->whole = true;
  call->req.set_request_id(request_.request_id());
  call->req.set_question(request_.prompt());
  call->req.set_whole_question(true);
  *call->req.mutable_params() = request_.params();
  call->AcquireEdge(registry_, {});
  {
    absl::MutexLock lock(&mu_);
    if (ending_ || finished_) return;
    if (call->edge < 0) {
      FailLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              absl::StrCat(why, "; no edge is healthy to answer alone")));
    } else {
      whole_started_ = true;
      route_ = v1::ROUTE_SKETCH;
      MarkDegradedLocked(absl::StrCat(why, "; edges answer alone: ", registry_->EdgeName(call->edge),
                                      " answers the whole question with its ensemble vote; ",
                                      kDegradedCaveat));
    }
  }
  Flush();
  if (call->edge >= 0) LaunchExpand(call);
}

void QueryRun::OnWholeDone(std::shared_ptr<ExpandCall> call, const grpc::Status& s,
                           bool answer_error) {
  bool retry = false;
  {
    absl::MutexLock lock(&mu_);
    if (ending_ || finished_) {
      // Over already.
    } else if (s.ok() && !answer_error) {
      const v1::ExpandResponse& r = call->resp;
      const std::string node = r.node().empty() ? registry_->EdgeName(call->edge) : r.node();
      AddTokensLocked(node, r.prompt_tokens(), r.generated_tokens());
      v1::QueryEvent delta;
      delta.mutable_delta()->set_text(r.text());
      Push(std::move(delta));
      v1::QueryEvent ev;
      v1::AnswerEvent* a = ev.mutable_answer();
      a->set_text(r.text());
      a->set_route(v1::ROUTE_SKETCH);
      a->set_finish_reason(r.finish_reason());
      a->set_degraded(true);
      a->set_failed_over(call->attempts > 1 ? 1 : 0);
      for (const auto& [n, t] : tokens_) *a->add_tokens() = t;
      a->mutable_timings()->set_first_event_ms(first_event_ms_);
      a->mutable_timings()->set_total_ms(MsSinceStart());
      Push(std::move(ev));
      spdlog::info("query {}: degraded answer by {} in {:.1f} ms", request_.request_id(), node,
                   MsSinceStart());
      ending_ = true;
      end_status_ = grpc::Status::OK;
    } else if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
               Outcome(s) == CallOutcome::kNeutral) {
      FailLocked(grpc::Status(s.error_code(), absl::StrCat("degraded answer: ", s.error_message())));
    } else {
      call->why_cloud = absl::StrCat("edge ", registry_->EdgeName(call->edge), " failed: ",
                                     answer_error ? "error" : s.error_message());
      retry = true;
    }
    CallEndedLocked();
  }
  Flush();
  if (!retry) return;
  auto next = std::make_shared<ExpandCall>();
  next->whole = true;
  next->req = call->req;
  next->tried = call->tried;
  next->attempts = call->attempts;
  next->failed_over = true;
  next->why_cloud = call->why_cloud;
  next->AcquireEdge(registry_, call->tried);
  if (next->edge < 0) {
    {
      absl::MutexLock lock(&mu_);
      FailLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              absl::StrCat("the cloud is unreachable and no edge could answer "
                                           "alone (", call->why_cloud, ")")));
    }
    Flush();
    return;
  }
  LaunchExpand(next);
}

void QueryRun::MaybeAnswerLocked() {
  if (!sketch_done_ || fell_back_ || ending_) return;
  for (const auto& x : expansions_) {
    if (!x) return;
  }
  std::vector<std::string> texts;
  for (const auto& x : expansions_) texts.push_back(x->text());
  v1::QueryEvent ev;
  v1::AnswerEvent* a = ev.mutable_answer();
  a->set_text(JoinAnswer(*options_, points_, texts));
  a->set_route(v1::ROUTE_SKETCH);
  a->set_finish_reason(finish_reason_);
  for (const auto& [node, t] : tokens_) *a->add_tokens() = t;
  a->mutable_timings()->set_first_event_ms(first_event_ms_);
  a->mutable_timings()->set_sketch_done_ms(sketch_done_ms_);
  a->mutable_timings()->set_total_ms(MsSinceStart());
  for (const std::string& p : points_) a->add_points(p);
  for (const std::string& t : texts) a->add_expansions(t);
  a->set_degraded(degraded_);
  a->set_failed_over(failed_over_);
  Push(std::move(ev));
  spdlog::info("query {}: sketch answer, {} points, in {:.1f} ms", request_.request_id(),
               points_.size(), MsSinceStart());
  ending_ = true;
  end_status_ = grpc::Status::OK;
}

}  // namespace pice::scheduler
