#include "scheduler/query.h"
#include "scheduler/query_internal.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status.h"
#include "spdlog/spdlog.h"

namespace pice::scheduler {

absl::Status ValidateQuery(const v1::QueryRequest& r, const SchedulerOptions& o) {
  if (absl::Status s = ValidateRequestId(r.request_id()); !s.ok()) return s;
  if (absl::Status s = ValidateText(r.prompt(), "prompt", o.max_prompt_bytes); !s.ok()) return s;
  if (absl::Status s = ValidateHistory(r.history(), r.prompt().size(), o.max_prompt_bytes);
      !s.ok()) {
    return s;
  }
  if (!v1::PromptFormat_IsValid(r.format())) {
    return absl::InvalidArgumentError(
        absl::StrCat("format: unknown value ", static_cast<int>(r.format())));
  }
  if (r.model().empty() && r.format() != v1::PROMPT_TEMPLATE) {
    return absl::InvalidArgumentError("format: a raw format needs `model` (a cloud model's name)");
  }
  if (r.format() == v1::PROMPT_RAW_TEXT && r.history_size() > 0) {
    return absl::InvalidArgumentError(
        "history: not allowed with format PROMPT_RAW_TEXT (use PROMPT_RAW_CHAT)");
  }
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
  if (absl::Status g = ValidateWireSamplingParams(r.params(), limits, "params"); !g.ok()) return g;
  return absl::OkStatus();
}

std::string AnswerPart(const SchedulerOptions& o, size_t i, const std::string& point,
                       const std::string& expansion) {
  return absl::StrCat(i > 0 ? o.answer_separator : "",
                      absl::StrReplaceAll(o.point_format, {{"{point}", point},
                                                           {"{expansion}", expansion},
                                                           {"{n}", absl::StrCat(i + 1)}}));
}

std::string JoinAnswer(const SchedulerOptions& o, const std::vector<std::string>& points,
                       const std::vector<std::string>& expansions) {
  std::string out;
  for (size_t i = 0; i < expansions.size(); ++i) {
    out += AnswerPart(o, i, i < points.size() ? points[i] : "", expansions[i]);
  }
  return out;
}

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
  // A raw completion names the cloud's model: the edges cannot stand in for it.
  return options_->degraded_enabled && registry_->edge_count() > 0 && request_.model().empty();
}

std::unique_ptr<grpc::ClientContext> QueryRun::NewContext() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(deadline_);
  // The query's id on every node call (also in the request bodies): one id in every log.
  ctx->AddMetadata("x-request-id", request_.request_id());
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
