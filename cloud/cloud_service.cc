#include "cloud/cloud_service.h"

#include <algorithm>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "common/reactors.h"
#include "common/status.h"
#include "node/model_version.h"
#include "node/local_backend.h"
#include "node/request.h"
#include "node/expand_rpc.h"
#include "engine/status_macros.h"
#include "spdlog/spdlog.h"

namespace pice {
namespace {

absl::Status Draining() { return absl::UnavailableError("the node is draining; retry elsewhere"); }

// Finish reason on the wire: a generation the service stopped on purpose is STOP.
v1::FinishReason WireFinish(FinishReason r, bool stopped_by_us) {
  if (r == FinishReason::kCancelled && stopped_by_us) return v1::STOP;
  return ToProtoFinish(r);
}

// Adds the `retry-after-ms` hint to a RESOURCE_EXHAUSTED answer: the remote's own hint
// (its Retry-After), else about one batch step per queued batch, 20 ms to 2 s.
void AddRetryHint(grpc::CallbackServerContext* ctx, const absl::Status& s,
                  const ModelBackend& backend) {
  if (s.code() != absl::StatusCode::kResourceExhausted) return;
  const BackendStats st = backend.Stats();
  const int ms = RetryAfterMs(s).value_or(
      std::clamp(50 * (1 + st.queued / std::max(1, st.max_batch)), 20, 2000));
  ctx->AddTrailingMetadata("retry-after-ms", std::to_string(ms));
}

}  // namespace

absl::Status CloudService::CheckRequest(
    const std::string& request_id, const std::string& question,
    const google::protobuf::RepeatedPtrField<v1::ChatTurn>& history) const {
  if (draining_) return Draining();
  PICE_RETURN_IF_ERROR(ValidateRequestId(request_id));
  PICE_RETURN_IF_ERROR(ValidateText(question, "question", options_.limits.max_question_bytes));
  return ValidateHistory(history, question.size(), options_.limits.max_question_bytes);
}

BackendRequest CloudService::NewRequest(
    BuiltPrompt prompt, const google::protobuf::RepeatedPtrField<v1::ChatTurn>& history,
    const GenerateOptions& options) const {
  BackendRequest r;
  r.prompt = std::move(prompt);
  for (const v1::ChatTurn& t : history) r.history.push_back({t.role(), t.content()});
  r.chat = template_.chat;
  r.system = template_.system;
  r.options = options;
  r.max_prompt_tokens = options_.limits.max_question_tokens;
  return r;
}

const Tokenizer* CloudService::tokenizer() const {
  const auto* local = dynamic_cast<const LocalBackend*>(backend_.get());
  return local ? &local->engine()->tokenizer() : nullptr;
}

bool CloudService::Idle() const {
  const BackendStats st = backend_->Stats();
  return st.queued == 0 && st.active == 0;
}

void CloudService::FillLoad(v1::LoadResponse* resp) const {
  const BackendStats st = backend_->Stats();
  resp->set_node(options_.node);
  resp->set_queue_depth(st.queued);
  resp->set_active(st.active);
  resp->set_max_slots(st.max_batch);
  resp->set_free_slots(std::max(0, st.max_batch - st.active));
  resp->set_max_queue(options_.max_queue);
  resp->set_tokens_per_s(st.tokens_per_s);
  resp->add_models(backend_->name());
  resp->set_model_version(model_version_);
  for (std::string& n : backend_->Notes()) resp->add_notes(std::move(n));
  resp->set_draining(draining_.load());
  resp->set_engine_active(st.active);
  resp->set_engine_queued(st.queued);
  resp->set_kv_bytes(static_cast<int64_t>(st.kv_bytes));
  resp->set_kv_committed_bytes(static_cast<int64_t>(st.kv_committed_bytes));
}

grpc::ServerUnaryReactor* CloudService::Load(grpc::CallbackServerContext* ctx,
                                             const v1::LoadRequest* req, v1::LoadResponse* resp) {
  FillLoad(resp);
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(grpc::Status::OK);
  (void)req;
  return r;
}

absl::StatusOr<std::unique_ptr<CloudService>> CloudService::Create(const CloudOptions& options) {
  std::unique_ptr<CloudService> s(new CloudService());
  s->options_ = options;
  PICE_ASSIGN_OR_RETURN(s->template_, LoadPromptTemplate(options.template_path));
  EngineOptions eo;
  eo.n_threads = options.threads;
  eo.max_batch = options.max_batch;
  eo.max_queue = options.max_queue;
  eo.n_ctx = options.n_ctx;
  EnsembleMember self{"cloud", options.model_path, options.remote, std::nullopt, std::nullopt, 1.0};
  PICE_ASSIGN_OR_RETURN(auto backends, CreateMemberBackends({self}, eo));
  s->backend_ = backends[0];
  self.name = s->backend_->name();
  VoteOptions vote;
  vote.method = SelectionMethod::kConfidence;
  PICE_ASSIGN_OR_RETURN(s->expander_, Ensemble::Create({self}, vote, s->template_, backends));
  PICE_ASSIGN_OR_RETURN(s->model_version_,
                        ModelVersion(options.template_path, {self}, absl::StrCat("cloud n_ctx ", options.n_ctx)));
  s->metrics_ = std::make_unique<NodeMetrics>(
      options.node, [b = s->backend_.get()] { return std::vector<BackendStats>{b->Stats()}; });
  spdlog::info("{}: model {} ({}), template {} ({})", options.node, s->backend_->name(),
               options.remote ? options.remote->base_url : options.model_path,
               s->template_.family, options.template_path);
  return s;
}

CloudService::~CloudService() {
  if (backend_) backend_->Stop();
}

absl::StatusOr<GenerateOptions> CloudService::Options(const v1::SamplingParams& p,
                                                      const PromptPart& part) const {
  PICE_ASSIGN_OR_RETURN(GenerateOptions o,
                        ToGenerateOptions(p, NodeSamplingLimits(options_.limits, part.max_tokens),
                                          "params"));
  o.stop.insert(o.stop.end(), part.stop.begin(), part.stop.end());
  return o;
}

// ---- Sketch ---------------------------------------------------------------------------

grpc::ServerWriteReactor<v1::SketchEvent>* CloudService::Sketch(grpc::CallbackServerContext* ctx,
                                                                const v1::SketchRequest* req) {
  auto reactor = StreamReactor<v1::SketchEvent>::Create();
  const std::string id = RequestIdOr(req->request_id());
  auto fail = [&](const absl::Status& s) {
    AddRetryHint(ctx, s, *backend_);
    reactor->Finish(ToGrpcStatus(s));
    return reactor.get();
  };
  if (auto s = CheckRequest(req->request_id(), req->question(), req->history()); !s.ok()) {
    return fail(s);
  }
  if (req->max_points() < 0 || req->max_points() > options_.limits.max_points) {
    return fail(absl::InvalidArgumentError(absl::StrCat(
        "max_points: must be in [0, ", options_.limits.max_points, "] (0 = template default ",
        template_.max_points, "), got ", req->max_points())));
  }
  auto gen = Options(req->params(), template_.sketch);
  if (!gen.ok()) return fail(gen.status());
  const int budget = req->max_points() > 0 ? req->max_points() : template_.max_points;
  BuiltPrompt built = BuildSketchPrompt(template_, req->question(), budget);

  // Per-call state, touched only by the backend's thread.
  struct State {
    std::string prefix;       // the response prefix: part of the sketch text
    std::string text;         // prefix + the pieces generated so far
    std::unique_ptr<IncrementalSketchParser> parser;
    int sent = 0;
    bool stopped_by_us = false;
  };
  auto st = std::make_shared<State>();
  st->prefix = built.response_prefix;
  st->text = st->prefix;
  SketchParseOptions po = template_.parse;
  po.max_points = budget;
  st->parser = std::make_unique<IncrementalSketchParser>(po);

  BackendRequest r = NewRequest(std::move(built), req->history(), *gen);
  r.cancelled = reactor->cancelled();
  r.on_piece = [st, reactor, id](std::string_view piece, const std::vector<float>&) {
    // The text grows by this piece; the parser resumes where it stopped.
    st->text += piece;
    for (auto& p : st->parser->Update(st->text)) {
      v1::SketchEvent ev;
      ev.set_request_id(id);
      ev.mutable_point()->set_index(st->sent++);
      ev.mutable_point()->set_text(ToValidUtf8(p));
      reactor->Write(std::move(ev));
    }
    if (st->parser->Saturated()) {
      st->stopped_by_us = true;
      return false;
    }
    return !reactor->IsCancelled();
  };
  const std::string node = options_.node;
  r.on_done = [st, reactor, id, node](absl::StatusOr<BackendResult> res) {
    if (reactor->IsCancelled() && !st->stopped_by_us) {
      reactor->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "sketch cancelled"));
      return;
    }
    if (!res.ok()) {
      reactor->Finish(ToGrpcStatus(res.status()));
      return;
    }
    std::string text = st->prefix + res->text;
    ParsedSketch parsed = st->parser->Finish(text);
    for (size_t k = st->sent; parsed.split && k < parsed.points.size(); ++k) {
      v1::SketchEvent ev;
      ev.set_request_id(id);
      ev.mutable_point()->set_index(static_cast<int>(k));
      ev.mutable_point()->set_text(ToValidUtf8(parsed.points[k]));
      reactor->Write(std::move(ev));
    }
    v1::SketchEvent ev;
    ev.set_request_id(id);
    v1::SketchDone* d = ev.mutable_done();
    d->set_split(parsed.split);
    d->set_finish_reason(WireFinish(res->finish, st->stopped_by_us));
    d->set_raw(ToValidUtf8(text));
    d->set_prompt_tokens(res->prompt_tokens);
    d->set_generated_tokens(res->generated_tokens);
    d->set_node(node);
    spdlog::debug("sketch {}: split={} points={} ({}) raw=\"{}\"", id, parsed.split,
                  parsed.points.size(), parsed.reason, text);
    spdlog::info("sketch {}: {} points, {}+{} tokens", id, parsed.split ? parsed.points.size() : 0,
                 res->prompt_tokens, res->generated_tokens);
    reactor->Write(std::move(ev));
    reactor->Finish(grpc::Status::OK);
  };
  if (absl::Status s = backend_->Submit(std::move(r)); !s.ok()) return fail(s);
  (void)ctx;
  return reactor.get();
}

// ---- Generate -------------------------------------------------------------------------

grpc::ServerWriteReactor<v1::GenerateEvent>* CloudService::Generate(
    grpc::CallbackServerContext* ctx, const v1::GenerateRequest* req) {
  auto reactor = StreamReactor<v1::GenerateEvent>::Create();
  const std::string id = RequestIdOr(req->request_id());
  auto fail = [&](const absl::Status& s) {
    AddRetryHint(ctx, s, *backend_);
    reactor->Finish(ToGrpcStatus(s));
    return reactor.get();
  };
  if (auto s = CheckRequest(req->request_id(), req->question(), req->history()); !s.ok()) {
    return fail(s);
  }
  const bool raw = req->format() != v1::PROMPT_TEMPLATE;
  if (!v1::PromptFormat_IsValid(req->format())) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat("format: unknown value ", static_cast<int>(req->format()))));
  }
  if (req->format() == v1::PROMPT_RAW_TEXT && req->history_size() > 0) {
    return fail(absl::InvalidArgumentError(
        "history: not allowed with format PROMPT_RAW_TEXT (use PROMPT_RAW_CHAT)"));
  }
  // Raw: no template part (max_tokens 0 = the node's limit, no template stop strings).
  PromptPart raw_part;
  raw_part.max_tokens = options_.limits.max_tokens;
  auto gen = Options(req->params(), raw ? raw_part : template_.full);
  if (!gen.ok()) return fail(gen.status());
  BuiltPrompt built = raw ? BuiltPrompt{req->question(), ""} : BuildFullPrompt(template_, req->question());
  BackendRequest r = NewRequest(std::move(built), req->history(), *gen);
  if (raw) {
    r.chat = req->format() == v1::PROMPT_RAW_CHAT;
    r.system.clear();
  }

  // Touched only by the backend's thread.
  struct State {
    explicit State(std::vector<std::string> stop) : streamer(std::move(stop)) {}
    DeltaStreamer streamer;
    std::vector<float> logprobs;  // of the tokens since the last delta sent
  };
  auto st = std::make_shared<State>(gen->stop);
  auto write_delta = [reactor, id, st](std::string text) {
    if (text.empty()) return;
    v1::GenerateEvent ev;
    ev.set_request_id(id);
    ev.mutable_delta()->set_text(ToValidUtf8(text));
    ev.mutable_delta()->mutable_logprobs()->Add(st->logprobs.begin(), st->logprobs.end());
    st->logprobs.clear();
    reactor->Write(std::move(ev));
  };
  r.cancelled = reactor->cancelled();
  r.on_piece = [st, reactor, write_delta](std::string_view piece, const std::vector<float>& lp) {
    // The final text is the concatenation of the pieces (cut at a stop string): send what
    // that makes safe (O(piece) per piece).
    st->logprobs.insert(st->logprobs.end(), lp.begin(), lp.end());
    write_delta(st->streamer.Push(piece));
    return !reactor->IsCancelled();
  };
  const std::string node = options_.node;
  r.on_done = [st, reactor, id, node, write_delta](absl::StatusOr<BackendResult> res) {
    if (reactor->IsCancelled()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "generation cancelled"));
      return;
    }
    if (!res.ok()) {
      reactor->Finish(ToGrpcStatus(res.status()));
      return;
    }
    bool mismatch = false;
    write_delta(st->streamer.Finish(res->text, &mismatch));
    if (mismatch) {
      spdlog::warn("generate {}: streamed text is not a prefix of the final text", id);
    }
    v1::GenerateEvent ev;
    ev.set_request_id(id);
    v1::GenerateDone* d = ev.mutable_done();
    d->set_finish_reason(ToProtoFinish(res->finish));
    d->set_prompt_tokens(res->prompt_tokens);
    d->set_generated_tokens(res->generated_tokens);
    d->set_node(node);
    spdlog::info("generate {}: {}+{} tokens", id, res->prompt_tokens, res->generated_tokens);
    reactor->Write(std::move(ev));
    reactor->Finish(grpc::Status::OK);
  };
  if (absl::Status s = backend_->Submit(std::move(r)); !s.ok()) return fail(s);
  (void)ctx;
  return reactor.get();
}

// ---- Expand ---------------------------------------------------------------------------

grpc::ServerUnaryReactor* CloudService::Expand(grpc::CallbackServerContext* ctx,
                                               const v1::ExpandRequest* req,
                                               v1::ExpandResponse* resp) {
  auto reactor = UnaryReactor<v1::ExpandResponse>::Create(resp);
  if (draining_) {
    reactor->Finish(ToGrpcStatus(Draining()));
    return reactor.get();
  }
  auto job = ValidateExpandRequest(*req, options_.limits, template_);
  if (!job.ok()) {
    reactor->Finish(ToGrpcStatus(job.status()));
    return reactor.get();
  }
  job->cancelled = reactor->cancelled();
  // The request outlives the reactor's Finish; copy what the response needs.
  auto req_copy = std::make_shared<v1::ExpandRequest>(*req);
  const std::string node = options_.node;
  absl::Status s = expander_->ExpandAsync(
      *job, [reactor, req_copy, node](absl::StatusOr<ExpandOutcome> out) {
        if (!out.ok()) {
          reactor->Finish(ToGrpcStatus(out.status()));
          return;
        }
        spdlog::info("expand {}: point {}: \"{}\" ({}+{} tokens)", req_copy->request_id(),
                     req_copy->index(), out->answer, out->prompt_tokens, out->generated_tokens);
        reactor->Finish(grpc::Status::OK, [&](v1::ExpandResponse* r) {
          FillExpandResponse(*req_copy, *out, node, "confidence", r);
        });
      });
  if (!s.ok()) {
    AddRetryHint(ctx, s, *backend_);
    reactor->Finish(ToGrpcStatus(s));
  }
  return reactor.get();
}

}  // namespace pice
