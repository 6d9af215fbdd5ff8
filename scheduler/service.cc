#include "scheduler/service.h"

#include <algorithm>
#include <chrono>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/reactors.h"
#include "common/status.h"
#include "scheduler/http_server.h"
#include "scheduler/policy.h"
#include "scheduler/query.h"
#include "scheduler/scheduler_metrics.h"
#include "spdlog/spdlog.h"

namespace pice::scheduler {

PiceService::PiceService(SchedulerOptions options, NodeRegistry* registry)
    : options_(std::move(options)), registry_(registry) {
  if (!options_.api_keys_file.empty()) {
    auto keys = ApiKeys::Load(options_.api_keys_file);
    if (keys.ok()) {
      keys_ = *std::move(keys);
      spdlog::info("API keys: {} from {}", keys_->size(), options_.api_keys_file);
    } else {
      keys_failed_ = true;  // fail closed
      spdlog::error("API keys: {}; every query is refused", std::string(keys.status().message()));
    }
  }
  policy_ = std::make_shared<const Policy>(options_.policy);
  policy_source_ = !options_.policy_file.empty() ? options_.policy_file : options_.config_file;
  policy_watch_ = std::make_unique<FileWatch>(policy_source_);
  cache_ = ResponseCache::Create(options_.cache);
  SchedulerMetrics::Get();  // every family exposed from the start (dashboards, alerts)
  scrape_ = Metrics::Get().OnScrape([this, last = std::make_shared<CacheStats>()] {
    SchedulerMetrics& m = SchedulerMetrics::Get();
    m.running.Add({{"node", "scheduler"}}).Set(in_flight_.load());
    if (!cache_) return;
    const CacheStats s = cache_->Stats();
    // Totals of this service's cache, added to the process's counters as they grow.
    m.cache.Add({{"result", "hit"}}).Increment(double(s.hits - last->hits));
    m.cache.Add({{"result", "miss"}}).Increment(double(s.misses - last->misses));
    m.cache.Add({{"result", "store"}}).Increment(double(s.stores - last->stores));
    m.cache.Add({{"result", "error"}}).Increment(double(s.errors - last->errors));
    m.cache_available.Add({}).Set(s.available ? 1 : 0);
    *last = s;
  });
  if (cache_) {
    spdlog::info("response cache: {}{}, ttl {:.0f} s", cache_->kind(),
                 options_.cache.kind == "redis" ? " at " + options_.cache.address : "",
                 options_.cache.ttl_s);
  }
}

std::shared_ptr<const Policy> PiceService::policy() const {
  absl::MutexLock lock(&policy_mu_);
  return policy_;
}

absl::Status PiceService::ReloadPolicy() {
  if (policy_source_.empty()) return absl::OkStatus();
  absl::StatusOr<Policy> p = !options_.policy_file.empty()
                                 ? LoadPolicyFile(options_.policy_file)
                                 : [&]() -> absl::StatusOr<Policy> {
    auto o = LoadSchedulerOptions(options_.config_file);
    if (!o.ok()) return o.status();
    return std::move(o->policy);
  }();
  if (!p.ok()) {
    spdlog::error("policy not reloaded, the running one is kept: {}", std::string(p.status().message()));
    return p.status();
  }
  const size_t rules = p->rules.size();
  const std::string name = p->name;
  {
    absl::MutexLock lock(&policy_mu_);
    policy_ = std::make_shared<const Policy>(*std::move(p));
  }
  spdlog::info("policy reloaded from {}: '{}', {} rules", policy_source_, name, rules);
  return absl::OkStatus();
}

void PiceService::MaybeReloadPolicy() {
  if (policy_watch_->Changed()) (void)ReloadPolicy();
}

bool PiceService::Replay(const std::string& hit, const v1::QueryRequest& req,
                         const std::function<void(v1::QueryEvent)>& emit,
                         const std::function<void(grpc::Status)>& finish,
                         std::chrono::steady_clock::time_point start) {
  std::vector<v1::QueryEvent> events;
  if (!DecodeEvents(hit, &events)) return false;
  const double first_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  for (v1::QueryEvent& ev : events) {
    ev.set_request_id(req.request_id());
    if (ev.has_answer()) {
      v1::AnswerEvent* a = ev.mutable_answer();
      a->set_cached(true);
      a->mutable_timings()->set_first_event_ms(first_ms);
      a->mutable_timings()->set_sketch_done_ms(0);
      a->mutable_timings()->set_total_ms(std::chrono::duration<double, std::milli>(
                                             std::chrono::steady_clock::now() - start)
                                             .count());
    }
    emit(std::move(ev));
  }
  finish(grpc::Status::OK);
  return true;
}

std::string PiceService::ClientKey(std::string_view api_key, std::string_view peer_host) {
  return api_key.empty() ? "peer:" + std::string(peer_host) : "key:" + std::string(api_key);
}

std::string PiceService::ClientKey(const grpc::CallbackServerContext& ctx) {
  const auto& md = ctx.client_metadata();
  std::string_view key;
  if (auto a = md.find("authorization"); a != md.end()) {
    const std::string_view v(a->second.data(), a->second.size());
    if (v.size() > 7 && v.substr(0, 7) == "Bearer ") key = v.substr(7);
  }
  if (auto it = md.find("x-api-key"); key.empty() && it != md.end()) {
    key = std::string_view(it->second.data(), it->second.size());
  }
  // "ipv4:127.0.0.1:5555", "ipv6:[::1]:5555", "unix:/path": the host, as HTTP sees it.
  std::string peer = ctx.peer();
  if (const size_t scheme = peer.find(':'); scheme != std::string::npos &&
                                            peer.compare(0, 3, "ipv") == 0) {
    peer = peer.substr(scheme + 1);
    if (const size_t colon = peer.rfind(':'); colon != std::string::npos) peer.resize(colon);
    if (peer.size() >= 2 && peer.front() == '[') peer = peer.substr(1, peer.size() - 2);
  }
  return ClientKey(key, peer);
}

int PiceService::RetryAfterMs() const {
  absl::MutexLock lock(&mu_);
  const double ms = mean_query_ms_ > 0 ? mean_query_ms_ / 2 : 100;
  return static_cast<int>(std::clamp(ms, 10.0, 5000.0));
}

bool PiceService::Admit(const std::string& client, int max_per_client, std::string* why) {
  absl::MutexLock lock(&mu_);
  if (in_flight_.load() >= options_.max_concurrent_queries) {
    *why = absl::StrCat("the scheduler runs limits.max_concurrent_queries = ",
                        options_.max_concurrent_queries, " queries");
    return false;
  }
  int& mine = per_client_[client];
  if (max_per_client > 0 && mine >= max_per_client) {
    *why = absl::StrCat("this client (", client.rfind("key:", 0) == 0 ? "x-api-key" : client, ") runs ",
                        client.rfind("name:", 0) == 0 && max_per_client != options_.max_queries_per_client
                            ? "its API key's concurrent = "
                            : "limits.max_queries_per_client = ",
                        max_per_client, " queries");
    if (mine == 0) per_client_.erase(client);
    return false;
  }
  ++mine;
  ++in_flight_;
  return true;
}

void PiceService::Done(const std::string& client, double ms) {
  absl::MutexLock lock(&mu_);
  auto it = per_client_.find(client);
  if (it != per_client_.end() && --it->second <= 0) per_client_.erase(it);
  if (ms >= 0) mean_query_ms_ = mean_query_ms_ == 0 ? ms : 0.9 * mean_query_ms_ + 0.1 * ms;
  --in_flight_;
}

grpc::Status PiceService::Start(const std::string& client, v1::QueryRequest req,
                                std::chrono::system_clock::time_point deadline,
                                std::function<void(v1::QueryEvent)> emit,
                                std::function<void(grpc::Status)> finish,
                                std::function<void()>* cancel, int* retry_after_ms) {
  grpc::Status s = StartQuery(client, std::move(req), deadline, std::move(emit), std::move(finish),
                              cancel, retry_after_ms);
  if (!s.ok()) SchedulerMetrics::Get().Failure(s);
  return s;
}

grpc::Status PiceService::StartQuery(const std::string& client_in, v1::QueryRequest req,
                                     std::chrono::system_clock::time_point deadline,
                                     std::function<void(v1::QueryEvent)> emit,
                                     std::function<void(grpc::Status)> finish,
                                     std::function<void()>* cancel, int* retry_after_ms) {
  if (absl::Status s = ValidateQuery(req, options_); !s.ok()) {
    spdlog::info("refused a query: {}", std::string(s.message()));
    return ToGrpcStatus(s);
  }
  // API keys: the key's name is the client; its limits apply; no key, no query.
  std::string client = client_in;
  std::optional<ApiKey> key;
  int max_per_client = options_.max_queries_per_client;
  if (keys_ != nullptr || keys_failed_) {
    if (keys_ != nullptr && client.rfind("key:", 0) == 0) key = keys_->Find(client.substr(4));
    if (!key) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "a valid API key is required (authorization: Bearer KEY or x-api-key)");
    }
    client = "name:" + key->name;
    if (key->limits.concurrent > 0) max_per_client = key->limits.concurrent;
    if (int ms = 0; !buckets_.Admit(*key, &ms)) {
      if (retry_after_ms) *retry_after_ms = ms;
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrCat("API key ", key->name,
                                       ": its queries or tokens per minute are used up; retry after ",
                                       ms, " ms"));
    }
  }
  std::string why;
  if (!Admit(client, max_per_client, &why)) {
    const int retry_ms = RetryAfterMs();
    if (retry_after_ms) *retry_after_ms = retry_ms;
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat(why, "; retry after ", retry_ms, " ms"));
  }
  // Checked after counting the query in, so that a drain waiting for in_flight() == 0
  // never misses a query admitted at the same moment.
  if (draining_) {
    Done(client, -1);
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the scheduler is draining; retry elsewhere");
  }
  req.set_request_id(RequestIdOr(req.request_id()));

  QueryFacts facts;
  if (!req.model().empty()) {
    const std::vector<std::string> models = registry_->CloudModels();
    if (std::find(models.begin(), models.end(), req.model()) == models.end()) {
      Done(client, -1);
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("model: the cloud serves no model \"", req.model(), "\" (",
                                       models.empty() ? "it has not answered Load yet"
                                                      : absl::StrJoin(models, ", "),
                                       ")"));
    }
    req.set_route(v1::ROUTE_CLOUD);  // a raw completion is the cloud model's alone
  }
  facts.prompt = req.prompt();
  facts.category = req.category();
  const std::string key_name = key ? key->name : "";
  facts.key_name = key_name;
  facts.hint = req.route() == v1::ROUTE_CLOUD    ? RouteChoice::kCloud
               : req.route() == v1::ROUTE_SKETCH ? RouteChoice::kSketch
                                                 : RouteChoice::kAuto;
  facts.max_points = req.max_points();
  MaybeReloadPolicy();
  Decision decision = Decide(*policy(), facts, registry_->Live());
  if (!req.model().empty()) {
    decision.route = RouteChoice::kCloud;
    decision.reason = absl::StrCat("model ", req.model(), ": a raw completion on the cloud's model");
  }
  // Metrics see what the client sees (cache hits included).
  if (Metrics::Enabled()) {
    auto qm = std::make_shared<QueryMetrics>(decision, key ? key->name : "", registry_->CloudName());
    emit = [qm, emit = std::move(emit)](v1::QueryEvent ev) {
      qm->OnEvent(ev);
      emit(std::move(ev));
    };
    finish = [qm, finish = std::move(finish)](grpc::Status s) {
      qm->OnFinish(s);
      finish(std::move(s));
    };
  }
  // The response cache: a deterministic request whose rule allows it, once every node's
  // model version is known.
  std::string cache_key;
  if (cache_ && decision.cache != CacheScope::kOff && !req.no_cache() && Deterministic(req)) {
    const std::string versions = registry_->AnswerVersions();
    if (!versions.empty()) {
      const std::string tenant =
          decision.cache == CacheScope::kShared || !key ? std::string() : key->name;
      cache_key = CacheKey(req, tenant, versions);
      if (auto hit = cache_->Get(cache_key)) {
        const auto start = std::chrono::steady_clock::now();
        if (cancel) *cancel = [] {};
        if (Replay(*hit, req, emit, finish, start)) {
          spdlog::info("query {}: {}answered from the cache", req.request_id(),
                       key ? absl::StrCat("key ", key->name, ": ") : "");
          Done(client, -1);
          return grpc::Status::OK;
        }
      }
    }
  }
  spdlog::info("query {}: {}{}", req.request_id(), key ? absl::StrCat("key ", key->name, ": ") : "",
               decision.reason);
  if (!cache_key.empty()) {
    // Keep the events; a whole answer is stored when the query ends well.
    struct Record {
      std::mutex mu;
      std::vector<v1::QueryEvent> events;
    };
    auto record = std::make_shared<Record>();
    emit = [record, emit = std::move(emit)](v1::QueryEvent ev) {
      {
        std::lock_guard<std::mutex> lock(record->mu);
        record->events.push_back(ev);
      }
      emit(std::move(ev));
    };
    finish = [this, record, cache_key, finish = std::move(finish)](grpc::Status s) {
      if (s.ok()) {
        std::lock_guard<std::mutex> lock(record->mu);
        if (WorthCaching(record->events)) cache_->Put(cache_key, EncodeEvents(record->events));
      }
      finish(std::move(s));
    };
  }
  if (key && key->limits.tpm > 0) {
    // Generated tokens count against the key's tokens per minute once the answer is in.
    emit = [this, k = *key, emit = std::move(emit)](v1::QueryEvent ev) {
      if (ev.has_answer()) {
        int64_t generated = 0;
        for (const auto& t : ev.answer().tokens()) generated += t.generated_tokens();
        buckets_.Charge(k, generated);
      }
      emit(std::move(ev));
    };
  }

  deadline = std::min(deadline, std::chrono::system_clock::now() +
                                    std::chrono::microseconds(
                                        static_cast<int64_t>(options_.query_timeout_s * 1e6)));
  auto run = std::make_shared<QueryRun>(
      registry_, &options_, std::move(req), deadline, std::move(emit),
      [this, client, finish = std::move(finish),
       start = std::chrono::steady_clock::now()](grpc::Status s) {
        Done(client, std::chrono::duration<double, std::milli>(
                         std::chrono::steady_clock::now() - start).count());
        finish(std::move(s));
      });
  if (cancel) {
    std::weak_ptr<QueryRun> weak = run;
    *cancel = [weak] {
      if (auto r = weak.lock()) r->Cancel();
    };
  }
  run->Start(decision);
  return grpc::Status::OK;
}

grpc::ServerWriteReactor<v1::QueryEvent>* PiceService::Query(grpc::CallbackServerContext* ctx,
                                                             const v1::QueryRequest* request) {
  auto reactor = StreamReactor<v1::QueryEvent>::Create();
  std::function<void()> cancel;
  int retry_ms = 0;
  grpc::Status s = Start(
      ClientKey(*ctx), *request, ctx->deadline(),
      [reactor](v1::QueryEvent ev) { reactor->Write(std::move(ev)); },
      [reactor](grpc::Status st) { reactor->Finish(std::move(st)); }, &cancel, &retry_ms);
  if (!s.ok()) {
    if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ctx->AddTrailingMetadata("retry-after-ms", std::to_string(retry_ms));
    }
    reactor->Finish(s);
    return reactor.get();
  }
  reactor->SetOnCancel(cancel);
  // A cancel that arrived before SetOnCancel was set.
  if (reactor->IsCancelled()) cancel();
  return reactor.get();
}

absl::StatusOr<int> Scheduler::ServeHttp(const std::string& listen) {
  HttpOptions o;
  o.listen = listen;
  o.max_body_bytes = static_cast<size_t>(service_->options().http_max_body_bytes);
  o.tls = service_->options().tls;
  auto http = HttpServer::Start(o, service_.get());
  if (!http.ok()) return http.status();
  http_ = *std::move(http);
  return http_->port();
}

Scheduler::~Scheduler() {
  if (http_) http_->Stop();
}

std::unique_ptr<Scheduler> Scheduler::Create(const SchedulerOptions& options) {
  auto s = std::make_unique<Scheduler>();
  s->registry_ = NodeRegistry::Create(options);
  s->service_ = std::make_unique<PiceService>(options, s->registry_.get());
  return s;
}

}  // namespace pice::scheduler
