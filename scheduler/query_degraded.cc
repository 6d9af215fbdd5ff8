// QueryRun: degraded mode, the edges answering alone while the cloud is unreachable
// (scheduler/query.h has the whole story).
#include "scheduler/query_internal.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "spdlog/spdlog.h"

namespace pice::scheduler {

using query_internal::kDegradedCaveat;

// ---- degraded mode: the edges answer alone ----------------------------------------------

void QueryRun::StartDegraded(const std::string& why) {
  auto call = std::make_shared<ExpandCall>();
  call->whole = true;
  call->req.set_request_id(request_.request_id());
  call->req.set_question(request_.prompt());
  call->req.set_whole_question(true);
  *call->req.mutable_history() = request_.history();
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

}  // namespace pice::scheduler
