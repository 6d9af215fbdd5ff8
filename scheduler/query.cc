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
  if (absl::Status s = ValidateText(r.category(), "category", 64, /*allow_empty=*/true); !s.ok()) {
    return s;
  }
  SamplingLimits limits;
  limits.default_max_tokens = o.default_max_tokens;
  limits.max_tokens = o.max_tokens;
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
  int index = 0;
  int edge = -1;                // -1: the cloud
  std::vector<int> tried;       // edges tried for this point
  int attempts = 0;
  std::unique_ptr<grpc::ClientContext> ctx;
  v1::ExpandRequest req;
  v1::ExpandResponse resp;
  std::optional<v1::ExpandResponse> edge_answer;  // kept when escalating
  std::string why_cloud;                          // reason the cloud expands it
};

// ---- QueryRun ---------------------------------------------------------------------------

QueryRun::QueryRun(NodeRegistry* registry, const SchedulerOptions* options,
                   v1::QueryRequest request, std::chrono::system_clock::time_point deadline,
                   EmitFn emit, FinishFn finish)
    : registry_(registry), options_(options), request_(std::move(request)), deadline_(deadline),
      start_(absl::Now()), emit_(std::move(emit)), finish_(std::move(finish)) {}

double QueryRun::MsSinceStart() const { return absl::ToDoubleMilliseconds(absl::Now() - start_); }

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

void QueryRun::Start(const Decision& d) {
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
    *call->req.mutable_params() = request_.params();
    if (call->req.params().max_tokens() == 0) {
      call->req.mutable_params()->set_max_tokens(options_->default_max_tokens);
    }
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
      registry_->RecordCloud(d.generated_tokens(),
                             absl::ToDoubleSeconds(absl::Now() - cloud_call_start_), false);
    }
  }
  Flush();
}

void QueryRun::OnGenerateDone(const grpc::Status& s) {
  registry_->CloudCallEnded();
  {
    absl::MutexLock lock(&mu_);
    if (!s.ok() && !ending_) {
      registry_->RecordCloud(0, 0, s.error_code() == grpc::StatusCode::UNAVAILABLE);
      FailLocked(grpc::Status(s.error_code(), absl::StrCat("cloud Generate: ", s.error_message())));
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
    call->req.mutable_params()->set_max_tokens(options_->default_max_tokens);
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
    if (ending_ || finished_) return;
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
      registry_->RecordCloud(d.generated_tokens(),
                             absl::ToDoubleSeconds(absl::Now() - cloud_call_start_), false);
      if (!d.split() || points_.empty()) fell_back_ = true;
    }
  }
  Flush();
  if (dispatch) {
    dispatch->edge = registry_->AcquireEdge({});
    if (dispatch->edge < 0) dispatch->why_cloud = "no healthy edge";
    LaunchExpand(dispatch);
  }
}

void QueryRun::OnSketchDone(const grpc::Status& s) {
  registry_->CloudCallEnded();
  bool fallback = false;
  std::string reason;
  {
    absl::MutexLock lock(&mu_);
    if (!s.ok() && !ending_) {
      registry_->RecordCloud(0, 0, s.error_code() == grpc::StatusCode::UNAVAILABLE);
      FailLocked(grpc::Status(s.error_code(), absl::StrCat("cloud Sketch: ", s.error_message())));
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
}

void QueryRun::LaunchExpand(std::shared_ptr<ExpandCall> call) {
  {
    absl::MutexLock lock(&mu_);
    if (ending_ || finished_ || fell_back_) {
      if (call->edge >= 0) registry_->ReleaseEdge(call->edge, false);
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

void QueryRun::OnExpandDone(std::shared_ptr<ExpandCall> call, const grpc::Status& s) {
  const bool on_edge = call->edge >= 0;
  if (on_edge) {
    registry_->ReleaseEdge(call->edge, !s.ok() && s.error_code() != grpc::StatusCode::CANCELLED &&
                                           s.error_code() != grpc::StatusCode::INVALID_ARGUMENT);
  } else {
    registry_->CloudCallEnded();
  }
  const bool answer_error = s.ok() && call->resp.finish_reason() == v1::ERROR;
  bool escalate = false;
  bool retry = false;
  {
    absl::MutexLock lock(&mu_);
    if (ending_ || finished_ || fell_back_) {
      CallEndedLocked();
    } else if (s.ok() && !answer_error) {
      const v1::ExpandResponse& r = call->resp;
      AddTokensLocked(r.node().empty() ? (on_edge ? registry_->EdgeName(call->edge) : "cloud")
                                       : r.node(),
                      r.prompt_tokens(), r.generated_tokens());
      const bool low_agreement = options_->escalation_threshold > 0 &&
                                 r.agreement() < options_->escalation_threshold;
      const bool low_confidence = r.confidence() < options_->escalation_min_confidence;
      if (on_edge && (low_agreement || low_confidence)) {
        escalate = true;
        call->edge_answer = r;
        call->why_cloud =
            low_agreement ? absl::StrCat("agreement ", r.agreement(), " < threshold ",
                                         options_->escalation_threshold)
                          : absl::StrCat("confidence ", r.confidence(), " < min_confidence ",
                                         options_->escalation_min_confidence);
      } else {
        v1::QueryEvent ev;
        v1::ExpansionEvent* x = ev.mutable_expansion();
        x->set_index(call->index);
        x->set_text(r.text());
        x->set_node(r.node().empty() ? (on_edge ? registry_->EdgeName(call->edge) : "cloud")
                                     : r.node());
        x->set_model(r.model());
        x->set_confidence(r.confidence());
        x->set_agreement(call->edge_answer ? call->edge_answer->agreement() : r.agreement());
        x->set_selection(call->edge_answer ? call->edge_answer->selection() : r.selection());
        if (call->edge_answer) {
          for (v1::Candidate c : call->edge_answer->candidates()) {
            c.set_selected(false);
            *x->add_candidates() = std::move(c);
          }
        }
        for (const v1::Candidate& c : r.candidates()) {
          v1::Candidate* added = x->add_candidates();
          *added = c;
          if (!on_edge) {
            added->set_selected(c.selected() || r.candidates_size() == 1);
            if (added->model().empty()) added->set_model(r.model());
          }
        }
        if (!on_edge && r.candidates_size() == 0) {
          // The cloud's answer as the selected candidate, beside the edge's.
          v1::Candidate* c = x->add_candidates();
          c->set_model(r.model().empty() ? x->node() : r.model());
          c->set_text(r.text());
          c->set_mean_logprob(r.confidence());
          c->set_score(r.confidence());
          c->set_tokens(static_cast<int>(r.generated_tokens()));
          c->set_selected(true);
        }
        x->set_escalated(!on_edge);
        x->set_attempts(call->attempts);
        if (r.finish_reason() == v1::LENGTH) finish_reason_ = v1::LENGTH;
        expansions_[call->index] = *x;
        Push(std::move(ev));
        MaybeAnswerLocked();
      }
      CallEndedLocked();
    } else if (!on_edge) {
      // The cloud was the last resort.
      const grpc::Status why = answer_error ? grpc::Status(grpc::StatusCode::INTERNAL,
                                                           "expansion finished with an error")
                                            : s;
      registry_->RecordCloud(0, 0, why.error_code() == grpc::StatusCode::UNAVAILABLE);
      FailLocked(grpc::Status(why.error_code(),
                              absl::StrCat("point ", call->index, ": cloud Expand (",
                                           call->why_cloud, "): ", why.error_message())));
      CallEndedLocked();
    } else {
      spdlog::warn("query {}: point {} on edge {}: {}", request_.request_id(), call->index,
                   registry_->EdgeName(call->edge),
                   answer_error ? "finished with an error" : s.error_message());
      call->why_cloud = absl::StrCat("edge ", registry_->EdgeName(call->edge), " failed: ",
                                     answer_error ? "error" : s.error_message());
      retry = true;
      CallEndedLocked();
    }
  }
  Flush();
  if (escalate) {
    auto next = std::make_shared<ExpandCall>();
    next->index = call->index;
    next->edge = -1;
    next->tried = call->tried;
    next->attempts = call->attempts;
    next->req = call->req;
    next->edge_answer = call->edge_answer;
    next->why_cloud = call->why_cloud;
    LaunchExpand(next);
  } else if (retry) {
    ToCloudOrFail(call, s);
  }
}

void QueryRun::ToCloudOrFail(std::shared_ptr<ExpandCall> call, const grpc::Status& why) {
  auto next = std::make_shared<ExpandCall>();
  next->index = call->index;
  next->tried = call->tried;
  next->attempts = call->attempts;
  next->req = call->req;
  next->why_cloud = call->why_cloud;
  next->edge = -1;
  if (static_cast<int>(call->tried.size()) < options_->max_edge_attempts) {
    next->edge = registry_->AcquireEdge(call->tried);
  }
  if (next->edge < 0 && !options_->escalate_on_edge_failure) {
    {
      absl::MutexLock lock(&mu_);
      FailLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              absl::StrCat("point ", call->index, ": ", call->why_cloud,
                                           " and escalation.on_edge_failure is off")));
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
  Push(std::move(ev));
  spdlog::info("query {}: sketch answer, {} points, in {:.1f} ms", request_.request_id(),
               points_.size(), MsSinceStart());
  ending_ = true;
  end_status_ = grpc::Status::OK;
}

}  // namespace pice::scheduler
