#include "edge/edge_service.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/reactors.h"
#include "common/status.h"
#include "node/model_version.h"
#include "node/expand_rpc.h"
#include "engine/status_macros.h"
#include "spdlog/spdlog.h"

namespace pice {

absl::StatusOr<std::unique_ptr<EdgeService>> EdgeService::Create(const EdgeOptions& options) {
  std::unique_ptr<EdgeService> s(new EdgeService());
  s->options_ = options;
  PICE_ASSIGN_OR_RETURN(PromptTemplate tmpl, LoadPromptTemplate(options.template_path));
  EngineOptions eo;
  eo.n_threads = options.threads;
  eo.max_batch = options.max_batch;
  eo.max_queue = std::max(64, options.max_batch);
  eo.n_ctx = options.n_ctx;
  PICE_ASSIGN_OR_RETURN(auto backends, CreateMemberBackends(options.members, eo));
  PICE_ASSIGN_OR_RETURN(s->ensemble_, Ensemble::Create(options.members, options.vote, tmpl, backends));
  const VoteOptions& v = options.vote;
  PICE_ASSIGN_OR_RETURN(
      s->model_version_,
      ModelVersion(options.template_path, options.members,
                   absl::StrCat("edge n_ctx ", options.n_ctx, " vote ", static_cast<int>(v.method), " ",
                                static_cast<int>(v.similarity), " ", v.hybrid_weight, " ",
                                v.agree_similarity)));
  s->metrics_ = std::make_unique<NodeMetrics>(options.node, [e = s->ensemble_.get()] {
    std::vector<BackendStats> out;
    for (const auto& b : e->backends()) out.push_back(b->Stats());
    return out;
  });
  std::string names;
  for (const auto& m : options.members) absl::StrAppend(&names, names.empty() ? "" : ", ", m.name);
  spdlog::info("{}: ensemble [{}] on {} model(s), selection {}, template {}", options.node,
               names, s->ensemble_->backends().size(), SelectionMethodName(options.vote.method), tmpl.family);
  return s;
}

EdgeService::~EdgeService() {
  if (ensemble_) {
    for (const auto& b : ensemble_->backends()) b->Stop();
  }
}

grpc::ServerUnaryReactor* EdgeService::Expand(grpc::CallbackServerContext* ctx,
                                              const v1::ExpandRequest* req,
                                              v1::ExpandResponse* resp) {
  auto reactor = UnaryReactor<v1::ExpandResponse>::Create(resp);
  if (draining_) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the node is draining; retry elsewhere"));
    return reactor.get();
  }
  auto job = ValidateExpandRequest(*req, options_.limits, ensemble_->prompt_template());
  if (!job.ok()) {
    reactor->Finish(ToGrpcStatus(job.status()));
    return reactor.get();
  }
  job->cancelled = reactor->cancelled();
  auto req_copy = std::make_shared<v1::ExpandRequest>(*req);

  // Runs the call in a slot already taken; releases the slot when done.
  std::function<void()> start = [this, reactor, req_copy, job = *std::move(job)]() {
    if (reactor->IsCancelled()) {
      Release(-1);
      reactor->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled while queued"));
      return;
    }
    absl::Status s = ensemble_->ExpandAsync(job, [this, reactor, req_copy](
                                                     absl::StatusOr<ExpandOutcome> out) {
      // The slot is released before the call finishes: once the client has its answer,
      // a drain may see the node idle and destroy the service.
      double rate = -1, seconds = -1;
      if (!out.ok()) {
        Release(rate, seconds);
        reactor->Finish(ToGrpcStatus(out.status()));
        return;
      }
      if (out->seconds > 0 && !out->candidates.empty()) {
        rate = double(out->generated_tokens) / out->candidates.size() / out->seconds;
        seconds = out->seconds;
      }
      for (const auto& f : out->failures) spdlog::warn("expand {}: {}", req_copy->request_id(), f);
      spdlog::info("expand {}: point {}: \"{}\" by {} (agreement {:.2f}, {:.1f} ms)",
                   req_copy->request_id(), req_copy->index(), out->answer,
                   out->selected >= 0 ? out->candidates[out->selected].member : "-", out->agreement,
                   out->seconds * 1000);
      v1::ExpandResponse response;
      FillExpandResponse(*req_copy, *out, options_.node, SelectionMethodName(options_.vote.method),
                         &response);
      Release(rate, seconds);
      reactor->Finish(grpc::Status::OK,
                      [&](v1::ExpandResponse* r) { *r = std::move(response); });
    });
    if (!s.ok()) {
      Release(-1);
      reactor->Finish(ToGrpcStatus(s));
    }
  };

  bool run_now = false;
  {
    absl::MutexLock lock(&mu_);
    if (active_ < options_.max_slots) {
      ++active_;
      run_now = true;
    } else if (static_cast<int>(queue_.size()) < options_.max_queue) {
      const uint64_t id = next_id_++;
      queue_.push_back({id, std::move(start)});
      // A waiting call that is cancelled leaves the queue at once.
      std::weak_ptr<UnaryReactor<v1::ExpandResponse>> weak = reactor;
      reactor->SetOnCancel([this, id, weak] {
        bool removed = false;
        {
          absl::MutexLock lock(&mu_);
          for (auto it = queue_.begin(); it != queue_.end(); ++it) {
            if (it->id == id) {
              queue_.erase(it);
              removed = true;
              break;
            }
          }
        }
        if (auto r = weak.lock(); r && removed) {
          r->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled while queued"));
        }
      });
    } else {
      const int retry_ms = RetryAfterMsLocked();
      ctx->AddTrailingMetadata("retry-after-ms", std::to_string(retry_ms));
      reactor->Finish(grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat(options_.node, " is busy: ", active_, " expansions running, ",
                       queue_.size(), " waiting; retry after ", retry_ms,
                       " ms or elsewhere")));
      return reactor.get();
    }
  }
  if (run_now) start();
  return reactor.get();
}

int EdgeService::RetryAfterMsLocked() const {
  // The calls ahead finish in waves of max_slots, each about one expansion long.
  const double per = expand_s_ > 0 ? expand_s_ * 1000 : 50;
  const double waves = 1.0 + static_cast<double>(queue_.size()) / std::max(1, options_.max_slots);
  return static_cast<int>(std::clamp(per * waves, 5.0, 5000.0));
}

bool EdgeService::Idle() {
  absl::MutexLock lock(&mu_);
  return active_ == 0 && queue_.empty();
}

void EdgeService::Release(double tokens_per_s, double seconds) {
  std::vector<std::function<void()>> to_start;
  {
    absl::MutexLock lock(&mu_);
    if (tokens_per_s > 0) {
      tokens_per_s_ = tokens_per_s_ == 0 ? tokens_per_s : 0.8 * tokens_per_s_ + 0.2 * tokens_per_s;
    }
    if (seconds > 0) expand_s_ = expand_s_ == 0 ? seconds : 0.8 * expand_s_ + 0.2 * seconds;
    --active_;
    // Hand the slot to the next waiting call; cancelled ones start only to finish at once.
    if (!queue_.empty() && active_ < options_.max_slots) {
      ++active_;
      to_start.push_back(std::move(queue_.front().start));
      queue_.pop_front();
    }
  }
  for (auto& f : to_start) f();
}

void EdgeService::FillLoad(v1::LoadResponse* resp) {
  absl::MutexLock lock(&mu_);
  resp->set_node(options_.node);
  resp->set_queue_depth(static_cast<int>(queue_.size()));
  resp->set_active(active_);
  resp->set_max_slots(options_.max_slots);
  resp->set_free_slots(std::max(0, options_.max_slots - active_));
  resp->set_tokens_per_s(tokens_per_s_);
  for (const auto& m : ensemble_->members()) resp->add_models(m.name);
  resp->set_model_version(model_version_);
  resp->set_draining(draining_.load());
  resp->set_max_queue(options_.max_queue);
  for (const auto& b : ensemble_->backends()) {
    for (std::string& n : b->Notes()) resp->add_notes(std::move(n));
    const BackendStats st = b->Stats();
    resp->set_engine_active(resp->engine_active() + st.active);
    resp->set_engine_queued(resp->engine_queued() + st.queued);
    resp->set_kv_bytes(resp->kv_bytes() + static_cast<int64_t>(st.kv_bytes));
    resp->set_kv_committed_bytes(resp->kv_committed_bytes() +
                                 static_cast<int64_t>(st.kv_committed_bytes));
  }
}

grpc::ServerUnaryReactor* EdgeService::Load(grpc::CallbackServerContext* ctx,
                                            const v1::LoadRequest* req, v1::LoadResponse* resp) {
  FillLoad(resp);
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(grpc::Status::OK);
  (void)req;
  return r;
}

}  // namespace pice
