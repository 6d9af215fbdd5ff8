// QueryRun: the full route, the cloud writing the whole answer (scheduler/query.h has the whole
// story).
#include "scheduler/query_internal.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "spdlog/spdlog.h"

namespace pice::scheduler {

using query_internal::CloudError;
using query_internal::kNoCloud;

// ---- full route -------------------------------------------------------------------------

void QueryRun::StartFull(const std::string& reason, bool announce) {
  // A lambda, so that every early return still flushes what FailLocked queued.
  [&] {
    absl::MutexLock lock(&mu_);
    if (ending_ || finished_) return;
    route_ = v1::ROUTE_CLOUD;
    if (announce) {
      v1::QueryEvent ev;
      ev.mutable_route()->set_route(v1::ROUTE_CLOUD);
      ev.mutable_route()->set_reason(reason);
      Push(std::move(ev));
    }
    stream_cloud_ = registry_->AcquireCloud();
    if (stream_cloud_ < 0) {
      FailLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, kNoCloud));
      return;
    }
    auto call = std::make_shared<GenerateCall>();
    call->ctx = NewContext();
    call->req.set_request_id(request_.request_id());
    call->req.set_question(request_.prompt());
    *call->req.mutable_history() = request_.history();
    if (!request_.model().empty()) {
      call->req.set_format(request_.format() != v1::PROMPT_TEMPLATE ? request_.format()
                           : request_.history_size() > 0          ? v1::PROMPT_RAW_CHAT
                                                                   : v1::PROMPT_RAW_TEXT);
    }
    // max_tokens 0 stays 0: the cloud applies its template's full.max_tokens.
    *call->req.mutable_params() = request_.params();
    auto self = shared_from_this();
    call->on_event = [this](const v1::GenerateEvent& ev) { OnGenerateEvent(ev); };
    call->on_done = [self](const grpc::Status& s) { self->OnGenerateDone(s); };
    calls_.push_back(call);
    cloud_call_start_ = absl::Now();
    registry_->cloud_stub(stream_cloud_)->async()->Generate(call->ctx.get(), &call->req, call.get());
    call->Begin();
  }();
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
      registry_->RecordCloudRate(stream_cloud_, d.generated_tokens(),
                                 absl::ToDoubleSeconds(absl::Now() - cloud_call_start_));
    }
  }
  Flush();
}

void QueryRun::OnGenerateDone(const grpc::Status& s) {
  const CallOutcome outcome = Outcome(s);
  registry_->CloudCallEnded(StreamCloud(), outcome, s.error_message());
  bool degrade = false;
  bool retry = false;
  {
    absl::MutexLock lock(&mu_);
    if (!s.ok() && !ending_) {
      if (RetryOnAnotherCloudLocked(outcome, full_text_.empty())) {
        retry = true;  // nothing was sent yet: another replica answers
        spdlog::info("query {}: cloud Generate failed ({}); another cloud replica answers",
                     request_.request_id(), s.error_message());
      } else if (outcome == CallOutcome::kFailed && full_text_.empty() && DegradedAllowed()) {
        // Nothing was sent yet: the edges can still answer alone.
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
  if (retry) StartFull("", /*announce=*/false);
  if (degrade) StartDegraded(absl::StrCat("cloud Generate failed: ", s.error_message()));
}

}  // namespace pice::scheduler
