// QueryRun: an expansion's outcome: escalation to the cloud on low agreement or confidence,
// failover to another edge or the cloud (scheduler/query.h has the whole story).
#include "scheduler/query_internal.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "scheduler/scheduler_metrics.h"
#include "spdlog/spdlog.h"

namespace pice::scheduler {

void QueryRun::OnExpandDone(std::shared_ptr<ExpandCall> call, const grpc::Status& s) {
  const bool on_edge = call->edge >= 0;
  const bool answer_error = s.ok() && call->resp.finish_reason() == v1::ERROR;
  const CallOutcome outcome = answer_error ? CallOutcome::kFailed : Outcome(s);
  const std::string error = answer_error ? "the expansion finished with an error" : s.error_message();
  if (on_edge && Metrics::Enabled()) {
    SchedulerMetrics::Get().ExpandDone(
        registry_->EdgeName(call->edge), outcome == CallOutcome::kOk,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - call->started).count());
  }
  if (on_edge) {
    call->ReleaseEdge(outcome, RetryAfter(*call->ctx, absl::Seconds(options_->load_poll_s)), error);
  } else {
    registry_->CloudCallEnded(call->cloud, outcome, error);
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
          SchedulerMetrics::Get()
              .escalations.Add({{"cause", low_agreement ? "agreement" : "confidence"}})
              .Increment();
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

}  // namespace pice::scheduler
