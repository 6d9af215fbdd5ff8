#include "scheduler/registry.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>

#include "absl/strings/numbers.h"
#include "grpcpp/create_channel.h"
#include "scheduler/scheduler_metrics.h"
#include "grpcpp/security/credentials.h"
#include "scheduler/health_check.h"
#include "spdlog/spdlog.h"

namespace pice::scheduler {
namespace {

constexpr double kFirstRoundTimeoutS = 10;  // see Create

// The node's name in a log's "edge edge-1 (host:port)" / "cloud (host:port)": a metric label.
std::string NodeLabel(const std::string& who) {
  std::string s = who.substr(0, who.find(" ("));
  return s.rfind("edge ", 0) == 0 ? s.substr(5) : s;
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, const ClientTls& tls) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  // Reconnect quickly after a node restarts: the next attempt 100 ms after a failed one, at
  // most 1 s apart. gRPC's "min reconnect backoff" is also the least time a connection
  // attempt gets (MIN_CONNECT_TIMEOUT in grpc/doc/connection-backoff.md): at 100 ms a loaded
  // host's TCP + HTTP/2 handshake was cut ("handshaker shutdown"), so the first probe of a
  // healthy node could fail and leave it out for a poll period. 5 s.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 5000);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  auto credentials = MakeChannelCredentials(tls, &args);
  return grpc::CreateCustomChannel(address, credentials, args);
}

// One probe of one node: Health/Check and Load, concurrently.
struct Probe {
  grpc::ClientContext load_ctx;
  v1::LoadRequest req;
  v1::LoadResponse resp;
  grpc::Status load_status;
  std::unique_ptr<HealthCheck> health;
};

}  // namespace

CallOutcome ClassifyStatus(const grpc::Status& s) {
  switch (s.error_code()) {
    case grpc::StatusCode::OK: return CallOutcome::kOk;
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return CallOutcome::kBusy;
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS: return CallOutcome::kNeutral;
    default: return CallOutcome::kFailed;
  }
}

absl::Duration RetryAfter(const grpc::ClientContext& ctx, absl::Duration fallback) {
  const auto& md = ctx.GetServerTrailingMetadata();
  auto it = md.find("retry-after-ms");
  if (it == md.end()) return fallback;
  int64_t ms = 0;
  if (!absl::SimpleAtoi(std::string(it->second.data(), it->second.size()), &ms) || ms < 0) {
    return fallback;
  }
  return absl::Milliseconds(std::min<int64_t>(ms, 60000));
}

NodeRegistry::NodeRegistry(const SchedulerOptions& o)
    : poll_s_(o.load_poll_s), eject_after_(o.eject_after_failures),
      eject_base_(absl::Seconds(o.eject_base_s)), eject_max_(absl::Seconds(o.eject_max_s)),
      node_tls_(o.node_tls), sources_(o.edge_sources),
      next_discovery_(o.edge_sources.size(), absl::InfinitePast()) {
  cloud_address_ = o.cloud;
  cloud_channel_ = MakeChannel(o.cloud, o.node_tls);
  cloud_stub_ = v1::Cloud::NewStub(cloud_channel_);
  cloud_health_.next_backoff = eject_base_;
  edges_.reserve(kMaxEdges);
  absl::MutexLock lock(&mu_);
  for (const EdgeAddress& a : o.edges) AddEdgeLocked(a, "");
  SchedulerMetrics::Get().AddNode("cloud", false);
}

int NodeRegistry::AddEdgeLocked(const EdgeAddress& a, const std::string& source) {
  auto e = std::make_unique<Edge>();
  const int i = static_cast<int>(edges_.size());
  e->config_name = a.name.empty() ? absl::StrCat("edge-", i) : a.name;
  e->address = a.address;
  e->channel = MakeChannel(a.address, node_tls_);
  e->stub = v1::Edge::NewStub(e->channel);
  EdgeSnapshot s;
  s.name = e->config_name;
  s.address = a.address;
  s.source = source;
  s.health.next_backoff = eject_base_;
  state_.push_back(s);
  edges_.push_back(std::move(e));
  SchedulerMetrics::Get().AddNode(s.name, true);
  return i;
}

int NodeRegistry::edge_count() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(state_.size());
}

void NodeRegistry::Discover(bool all) {
  const absl::Time now = absl::Now();
  for (size_t k = 0; k < sources_.size(); ++k) {
    if (!all && now < next_discovery_[k]) continue;
    next_discovery_[k] = now + absl::Seconds(sources_[k].refresh_s);
    auto found = DiscoverEdges(sources_[k]);
    if (!found.ok()) {
      // Keep what it named last: a DNS server or a file that fails is not "no edges".
      spdlog::warn("{}: {}; keeping its edges", sources_[k].Describe(),
                   std::string(found.status().message()));
      continue;
    }
    ApplyDiscovered(sources_[k], *found);
  }
}

void NodeRegistry::ApplyDiscovered(const EdgeSource& source, const std::vector<EdgeAddress>& found) {
  const std::string src = source.Describe();
  absl::MutexLock lock(&mu_);
  std::set<std::string> wanted;
  for (const EdgeAddress& a : found) wanted.insert(a.address);
  for (EdgeSnapshot& s : state_) {
    if (s.source != src || s.removed || wanted.count(s.address)) continue;
    s.removed = true;
    s.health.serving = false;
    spdlog::info("edge {} ({}): gone from {}; no new work, running calls finish", s.name,
                 s.address, src);
  }
  for (const EdgeAddress& a : found) {
    auto it = std::find_if(state_.begin(), state_.end(),
                           [&](const EdgeSnapshot& s) { return s.address == a.address; });
    if (it != state_.end()) {
      if (it->removed && it->source == src) {
        it->removed = false;  // back: probed before it gets work
        it->health.reachable = false;
        spdlog::info("edge {} ({}): back in {}", it->name, it->address, src);
      }
      continue;
    }
    if (static_cast<int>(edges_.size()) >= kMaxEdges) {
      spdlog::error("{}: {} edges already; {} not added", src, kMaxEdges, a.address);
      continue;
    }
    const int i = AddEdgeLocked(a, src);
    spdlog::info("edge {} ({}): found by {}; probing it", state_[i].name, a.address, src);
  }
}

std::unique_ptr<NodeRegistry> NodeRegistry::Create(const SchedulerOptions& options) {
  std::unique_ptr<NodeRegistry> r(new NodeRegistry(options));
  r->Discover(/*all=*/true);
  // The first round decides what the first queries see; a node still starting (or a loaded
  // host) gets longer to answer it than a routine round gives, since a node missed here stays
  // out for a whole poll period.
  r->PollOnce(kFirstRoundTimeoutS);
  r->poller_ = std::thread([p = r.get()] { p->PollLoop(); });
  return r;
}

NodeRegistry::~NodeRegistry() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (poller_.joinable()) poller_.join();
  absl::MutexLock lock(&mu_);
  while (!mu_.AwaitWithTimeout(absl::Condition(
                                   +[](int* uses) { return *uses == 0; }, &uses_),
                               absl::Seconds(5))) {
    spdlog::warn("registry: waiting for {} queries to let go of their node calls", uses_);
  }
}

std::shared_ptr<void> NodeRegistry::Use() {
  absl::MutexLock lock(&mu_);
  ++uses_;
  return std::shared_ptr<void>(this, [](NodeRegistry* r) {
    absl::MutexLock lock(&r->mu_);
    --r->uses_;
  });
}

void NodeRegistry::PollLoop() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Seconds(poll_s_));
    if (stop_) break;
    mu_.Unlock();
    Discover(/*all=*/false);
    PollOnce();
    mu_.Lock();
  }
}

bool NodeRegistry::HealthyLocked(const NodeHealth& h, absl::Time now) const {
  return h.reachable && h.serving && !h.suspect && now >= h.ejected_until;
}

void NodeRegistry::FailLocked(NodeHealth* h, const std::string& who, const std::string& error,
                              absl::Time now) {
  h->last_error = error;
  h->suspect = true;
  ++h->consecutive_failures;
  if (h->consecutive_failures >= eject_after_ && now >= h->ejected_until) {
    h->ejected_until = now + h->next_backoff;
    ++h->ejections;
    SchedulerMetrics::Get().ejections.Add({{"node", NodeLabel(who)}}).Increment();
    spdlog::warn("{}: ejected for {} after {} failures in a row ({})", who,
                 absl::FormatDuration(h->next_backoff), h->consecutive_failures, error);
    h->next_backoff = std::min(h->next_backoff * 2, eject_max_);
    h->consecutive_failures = 0;
  }
}

void NodeRegistry::SucceedLocked(NodeHealth* h) {
  h->consecutive_failures = 0;
  h->next_backoff = eject_base_;
  h->suspect = false;
}

void NodeRegistry::PollOnce(double timeout_s) {
  // The calls run concurrently, so one slow node delays a round by one deadline at most.
  // At least 1 s: one slow probe on a loaded host marks a healthy node unreachable until the
  // next round (a query meanwhile goes degraded), which a 0.5 s deadline at a 100 ms poll did.
  if (timeout_s <= 0) timeout_s = std::clamp(poll_s_ * 5, 1.0, 2.0);
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6));
  // Probes [0, n) are the edges, n the cloud; null = not probed (ejected, or removed by
  // discovery). Edges discovered meanwhile wait for the next round.
  size_t n = 0;
  std::vector<std::unique_ptr<Probe>> probes;
  {
    absl::MutexLock lock(&mu_);
    n = state_.size();
    probes.resize(n + 1);
    const absl::Time now = absl::Now();
    for (size_t i = 0; i < n; ++i) {
      if (!state_[i].removed && now >= state_[i].health.ejected_until) {
        probes[i] = std::make_unique<Probe>();
      }
    }
    if (now >= cloud_health_.ejected_until) probes[n] = std::make_unique<Probe>();
  }
  std::mutex done_mu;
  std::condition_variable done_cv;
  int pending = 0;
  auto one_done = [&] {
    std::lock_guard<std::mutex> lock(done_mu);
    if (--pending == 0) done_cv.notify_all();
  };
  for (size_t i = 0; i <= n; ++i) {
    if (probes[i]) ++pending;
  }
  for (size_t i = 0; i <= n; ++i) {
    Probe* p = probes[i].get();
    if (!p) continue;
    p->load_ctx.set_deadline(deadline);
    auto on_load = [p, &one_done](grpc::Status s) {
      p->load_status = std::move(s);
      one_done();
    };
    if (i < n) {
      edges_[i]->stub->async()->Load(&p->load_ctx, &p->req, &p->resp, on_load);
    } else {
      cloud_stub_->async()->Load(&p->load_ctx, &p->req, &p->resp, on_load);
    }
    const auto& channel = i < n ? edges_[i]->channel : cloud_channel_;
    const char* service = i < n ? v1::Edge::service_full_name() : v1::Cloud::service_full_name();
    p->health = std::make_unique<HealthCheck>(channel, service, deadline);
  }
  {
    std::unique_lock<std::mutex> lock(done_mu);
    done_cv.wait(lock, [&] { return pending == 0; });
  }
  for (auto& p : probes) {
    if (p) p->health->Wait();
  }

  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  for (size_t i = 0; i <= n; ++i) {
    const Probe* p = probes[i].get();
    if (!p || (i < n && state_[i].removed)) continue;
    NodeHealth& h = i < n ? state_[i].health : cloud_health_;
    const std::string who = i < n ? "edge " + state_[i].name + " (" + state_[i].address + ")"
                                  : "cloud (" + cloud_address_ + ")";
    const bool was_healthy = HealthyLocked(h, now);
    const bool was_ejected = h.ejected_until != absl::InfinitePast();
    // The cloud's Load is optional (older nodes do not have it).
    const bool load_ok = p->load_status.ok() ||
                         (i == n && p->load_status.error_code() == grpc::StatusCode::UNIMPLEMENTED);
    const grpc::Status& health_status = p->health->status();
    const ServingStatus serving = p->health->serving();
    if (health_status.ok() && load_ok) {
      if (p->load_status.ok()) {
        if (i < n) {
          state_[i].load = p->resp;
          if (!p->resp.node().empty() && state_[i].name != p->resp.node()) {
            state_[i].name = p->resp.node();
            SchedulerMetrics::Get().AddNode(state_[i].name, true);
          }
        } else {
          cloud_load_ = p->resp;
        }
      }
      h.reachable = true;
      h.draining = serving == ServingStatus::kNotServing ||
                   (p->load_status.ok() && p->resp.draining());
      h.serving = serving == ServingStatus::kServing && !h.draining;
      // A good probe lifts suspicion (the node may take a call again) but ends neither
      // the failure streak nor the back-off: only a successful call proves the node
      // does its work, so a node that passes probes and fails every call is ejected.
      h.suspect = false;
      if (was_ejected) {
        h.ejected_until = absl::InfinitePast();
        spdlog::info("{}: probed back in after its ejection", who);
        SchedulerMetrics::Get().recoveries.Add({{"node", NodeLabel(who)}}).Increment();
      }
    } else {
      const grpc::Status& bad = health_status.ok() ? p->load_status : health_status;
      h.reachable = false;
      h.serving = false;
      FailLocked(&h, who, "probe: " + bad.error_message(), now);
    }
    const bool healthy = HealthyLocked(h, now);
    if (was_healthy != healthy) {
      spdlog::info("{} is {}{}", who, healthy ? "healthy" : "unhealthy",
                   h.draining ? " (draining)" : (h.reachable ? "" : " (" + h.last_error + ")"));
    }
  }
}

int NodeRegistry::AcquireEdge(const std::vector<int>& exclude) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  const int n = static_cast<int>(state_.size());
  int best = -1;
  double best_load = 0;
  for (int k = 0; k < n; ++k) {
    const int i = static_cast<int>((rr_ + k) % n);
    const EdgeSnapshot& s = state_[i];
    if (!HealthyLocked(s.health, now) || now < s.health.busy_until) continue;
    if (std::find(exclude.begin(), exclude.end(), i) != exclude.end()) continue;
    const int slots = std::max(1, s.load.max_slots());
    // Room: the node's slots plus its queue, against what it runs (ours and others').
    const int used = std::max(s.outstanding, s.load.active() + s.load.queue_depth());
    if (s.load.max_queue() > 0 && used >= slots + s.load.max_queue()) continue;
    // Outstanding calls per slot first; the edge's own queue breaks ties.
    const double load = (s.outstanding + 1.0) / slots;
    if (best < 0 || load < best_load ||
        (load == best_load && s.load.queue_depth() < state_[best].load.queue_depth())) {
      best = i;
      best_load = load;
    }
  }
  if (best >= 0) {
    ++state_[best].outstanding;
    rr_ = (best + 1) % n;
  }
  return best;
}

void NodeRegistry::ReleaseEdge(int i, CallOutcome outcome, absl::Duration retry_after,
                               const std::string& error) {
  absl::MutexLock lock(&mu_);
  EdgeSnapshot& s = state_[i];
  s.outstanding = std::max(0, s.outstanding - 1);
  ++s.expansions;
  const absl::Time now = absl::Now();
  switch (outcome) {
    case CallOutcome::kOk:
      SucceedLocked(&s.health);
      break;
    case CallOutcome::kFailed: {
      ++s.failures;
      const bool was = HealthyLocked(s.health, now);
      FailLocked(&s.health, "edge " + s.name + " (" + s.address + ")", error, now);
      if (was) spdlog::warn("edge {} ({}) failed a call: unhealthy until its next good probe ({})",
                            s.name, s.address, error);
      break;
    }
    case CallOutcome::kBusy:
      s.health.busy_until = std::max(s.health.busy_until, now + retry_after);
      break;
    case CallOutcome::kNeutral:
      break;
  }
}

std::string NodeRegistry::EdgeName(int i) const {
  absl::MutexLock lock(&mu_);
  return state_[i].name;
}

void NodeRegistry::RecordCloudRate(int64_t generated, double seconds) {
  absl::MutexLock lock(&mu_);
  if (generated <= 0 || seconds <= 0) return;
  const double tps = generated / seconds;
  cloud_tps_ = cloud_tps_ == 0 ? tps : 0.8 * cloud_tps_ + 0.2 * tps;
}

void NodeRegistry::CloudCallStarted() {
  absl::MutexLock lock(&mu_);
  ++cloud_in_flight_;
}

void NodeRegistry::CloudCallEnded(CallOutcome outcome, const std::string& error) {
  absl::MutexLock lock(&mu_);
  cloud_in_flight_ = std::max(0, cloud_in_flight_ - 1);
  if (outcome == CallOutcome::kOk) SucceedLocked(&cloud_health_);
  if (outcome == CallOutcome::kFailed) {
    FailLocked(&cloud_health_, "cloud (" + cloud_address_ + ")", error, absl::Now());
  }
}

bool NodeRegistry::CloudHealthy() const {
  absl::MutexLock lock(&mu_);
  return HealthyLocked(cloud_health_, absl::Now());
}

std::vector<std::string> NodeRegistry::CloudModels() const {
  absl::MutexLock lock(&mu_);
  return {cloud_load_.models().begin(), cloud_load_.models().end()};
}

std::string NodeRegistry::CloudName() const {
  absl::MutexLock lock(&mu_);
  return cloud_load_.node().empty() ? "cloud" : cloud_load_.node();
}

std::string NodeRegistry::AnswerVersions() const {
  absl::MutexLock lock(&mu_);
  if (cloud_load_.model_version().empty()) return "";
  std::set<std::string> edges;
  for (const EdgeSnapshot& e : state_) {
    if (!e.removed && !e.load.model_version().empty()) edges.insert(e.load.model_version());
  }
  std::string out = "cloud " + cloud_load_.model_version();
  for (const std::string& v : edges) out += " edge " + v;
  return out;
}

NodeHealth NodeRegistry::CloudHealth() const {
  absl::MutexLock lock(&mu_);
  return cloud_health_;
}

LiveState NodeRegistry::Live() const {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  LiveState l;
  l.cloud_available = HealthyLocked(cloud_health_, now);
  l.cloud_tokens_per_s = cloud_tps_;
  l.cloud_queue = cloud_in_flight_;
  l.cloud_max_slots = cloud_load_.max_slots();
  l.cloud_queue_depth = cloud_load_.queue_depth();
  double tps = 0;
  int with_tps = 0;
  for (const EdgeSnapshot& s : state_) {
    if (!HealthyLocked(s.health, now)) continue;
    ++l.healthy_edges;
    const int slots = std::max(1, s.load.max_slots());
    l.edge_max_slots += slots;
    l.edge_free_slots += std::max(0, std::min(s.load.free_slots(), slots - s.outstanding));
    l.edge_queue_depth += s.load.queue_depth();
    if (s.load.tokens_per_s() > 0) {
      tps += s.load.tokens_per_s();
      ++with_tps;
    }
  }
  if (with_tps > 0) l.edge_tokens_per_s = tps / with_tps;
  return l;
}

std::vector<EdgeSnapshot> NodeRegistry::Edges() const {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  std::vector<EdgeSnapshot> out = state_;
  for (EdgeSnapshot& s : out) {
    s.healthy = HealthyLocked(s.health, now);
    s.ejected = now < s.health.ejected_until;
    s.busy = now < s.health.busy_until;
  }
  return out;
}

}  // namespace pice::scheduler
