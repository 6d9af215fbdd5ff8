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
      node_tls_(o.node_tls) {
  for (Pool* pool : {&edges_, &clouds_}) {
    pool->cloud = pool == &clouds_;
    pool->max = pool->cloud ? kMaxClouds : kMaxEdges;
    pool->sources = pool->cloud ? o.cloud_sources : o.edge_sources;
    pool->next_discovery.assign(pool->sources.size(), absl::InfinitePast());
    pool->conns.reserve(pool->max);
  }
  absl::MutexLock lock(&mu_);
  for (const EdgeAddress& a : o.clouds) AddLocked(&clouds_, a, "");
  for (const EdgeAddress& a : o.edges) AddLocked(&edges_, a, "");
}

int NodeRegistry::AddLocked(Pool* pool, const EdgeAddress& a, const std::string& source) {
  auto c = std::make_unique<Conn>();
  const int i = static_cast<int>(pool->conns.size());
  const char* kind = pool->cloud ? "cloud" : "edge";
  // One cloud from the config is "cloud" (as before replicas); more are cloud-<i>.
  c->config_name = !a.name.empty()                        ? a.name
                   : pool->cloud && i == 0 && source.empty() ? std::string("cloud")
                                                          : absl::StrCat(kind, "-", i);
  c->address = a.address;
  c->channel = MakeChannel(a.address, node_tls_);
  if (pool->cloud) {
    c->cloud = v1::Cloud::NewStub(c->channel);
  } else {
    c->edge = v1::Edge::NewStub(c->channel);
  }
  NodeSnapshot s;
  s.name = c->config_name;
  s.address = a.address;
  s.source = source;
  s.health.next_backoff = eject_base_;
  pool->state.push_back(s);
  pool->conns.push_back(std::move(c));
  SchedulerMetrics::Get().AddNode(s.name, !pool->cloud);
  return i;
}

std::string NodeRegistry::Who(const Pool& pool, const NodeSnapshot& s) {
  if (pool.cloud) {
    return s.name == "cloud" ? "cloud (" + s.address + ")" : "cloud " + s.name + " (" + s.address + ")";
  }
  return "edge " + s.name + " (" + s.address + ")";
}

int NodeRegistry::edge_count() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(edges_.state.size());
}

void NodeRegistry::Discover(bool all) {
  const absl::Time now = absl::Now();
  for (Pool* pool : {&clouds_, &edges_}) {
    for (size_t k = 0; k < pool->sources.size(); ++k) {
      if (!all && now < pool->next_discovery[k]) continue;
      pool->next_discovery[k] = now + absl::Seconds(pool->sources[k].refresh_s);
      auto found = DiscoverEdges(pool->sources[k]);
      if (!found.ok()) {
        // Keep what it named last: a DNS server or a file that fails is not "no nodes".
        spdlog::warn("{}: {}; keeping its {}", pool->sources[k].Describe(),
                     std::string(found.status().message()), pool->cloud ? "clouds" : "edges");
        continue;
      }
      ApplyDiscovered(pool, pool->sources[k], *found);
    }
  }
}

void NodeRegistry::ApplyDiscovered(Pool* pool, const EdgeSource& source,
                                   const std::vector<EdgeAddress>& found) {
  const std::string src = source.Describe();
  absl::MutexLock lock(&mu_);
  std::set<std::string> wanted;
  for (const EdgeAddress& a : found) wanted.insert(a.address);
  for (NodeSnapshot& s : pool->state) {
    if (s.source != src || s.removed || wanted.count(s.address)) continue;
    s.removed = true;
    s.health.serving = false;
    spdlog::info("{}: gone from {}; no new work, running calls finish", Who(*pool, s), src);
  }
  for (const EdgeAddress& a : found) {
    auto it = std::find_if(pool->state.begin(), pool->state.end(),
                           [&](const NodeSnapshot& s) { return s.address == a.address; });
    if (it != pool->state.end()) {
      if (it->removed && it->source == src) {
        it->removed = false;  // back: probed before it gets work
        it->health.reachable = false;
        spdlog::info("{}: back in {}", Who(*pool, *it), src);
      }
      continue;
    }
    if (static_cast<int>(pool->conns.size()) >= pool->max) {
      spdlog::error("{}: {} nodes already; {} not added", src, pool->max, a.address);
      continue;
    }
    const int i = AddLocked(pool, a, src);
    spdlog::info("{}: found by {}; probing it", Who(*pool, pool->state[i]), src);
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
  // One probe per node of both pools; null = not probed (ejected, or removed by
  // discovery). Nodes discovered meanwhile wait for the next round.
  struct Target {
    Pool* pool;
    size_t i;
    std::unique_ptr<Probe> probe;
  };
  std::vector<Target> targets;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    for (Pool* pool : {&edges_, &clouds_}) {
      for (size_t i = 0; i < pool->state.size(); ++i) {
        const NodeSnapshot& st = pool->state[i];
        if (!st.removed && now >= st.health.ejected_until) {
          targets.push_back(Target{pool, i, std::make_unique<Probe>()});
        }
      }
    }
  }
  std::mutex done_mu;
  std::condition_variable done_cv;
  int pending = static_cast<int>(targets.size());
  auto one_done = [&] {
    std::lock_guard<std::mutex> lock(done_mu);
    if (--pending == 0) done_cv.notify_all();
  };
  for (Target& t : targets) {
    Probe* p = t.probe.get();
    const Conn& c = *t.pool->conns[t.i];
    p->load_ctx.set_deadline(deadline);
    auto on_load = [p, &one_done](grpc::Status s) {
      p->load_status = std::move(s);
      one_done();
    };
    if (t.pool->cloud) {
      c.cloud->async()->Load(&p->load_ctx, &p->req, &p->resp, on_load);
    } else {
      c.edge->async()->Load(&p->load_ctx, &p->req, &p->resp, on_load);
    }
    const char* service = t.pool->cloud ? v1::Cloud::service_full_name() : v1::Edge::service_full_name();
    p->health = std::make_unique<HealthCheck>(c.channel, service, deadline);
  }
  {
    std::unique_lock<std::mutex> lock(done_mu);
    done_cv.wait(lock, [&] { return pending == 0; });
  }
  for (Target& t : targets) t.probe->health->Wait();

  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  for (const Target& t : targets) {
    const Probe* p = t.probe.get();
    NodeSnapshot& st = t.pool->state[t.i];
    if (st.removed) continue;
    NodeHealth& h = st.health;
    const std::string who = Who(*t.pool, st);
    const bool was_healthy = HealthyLocked(h, now);
    const bool was_ejected = h.ejected_until != absl::InfinitePast();
    // The cloud's Load is optional (older nodes do not have it).
    const bool load_ok = p->load_status.ok() ||
                         (t.pool->cloud && p->load_status.error_code() == grpc::StatusCode::UNIMPLEMENTED);
    const grpc::Status& health_status = p->health->status();
    const ServingStatus serving = p->health->serving();
    if (health_status.ok() && load_ok) {
      if (p->load_status.ok()) {
        st.load = p->resp;
        if (!p->resp.node().empty() && st.name != p->resp.node()) {
          st.name = p->resp.node();
          SchedulerMetrics::Get().AddNode(st.name, !t.pool->cloud);
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
  std::vector<NodeSnapshot>& state = edges_.state;
  const int n = static_cast<int>(state.size());
  int best = -1;
  double best_load = 0;
  for (int k = 0; k < n; ++k) {
    const int i = static_cast<int>((edges_.rr + k) % n);
    const NodeSnapshot& s = state[i];
    if (!HealthyLocked(s.health, now) || now < s.health.busy_until) continue;
    if (std::find(exclude.begin(), exclude.end(), i) != exclude.end()) continue;
    const int slots = std::max(1, s.load.max_slots());
    // Room: the node's slots plus its queue, against what it runs (ours and others').
    const int used = std::max(s.outstanding, s.load.active() + s.load.queue_depth());
    if (s.load.max_queue() > 0 && used >= slots + s.load.max_queue()) continue;
    // Outstanding calls per slot first; the edge's own queue breaks ties.
    const double load = (s.outstanding + 1.0) / slots;
    if (best < 0 || load < best_load ||
        (load == best_load && s.load.queue_depth() < state[best].load.queue_depth())) {
      best = i;
      best_load = load;
    }
  }
  if (best >= 0) {
    ++state[best].outstanding;
    edges_.rr = (best + 1) % n;
  }
  return best;
}

void NodeRegistry::ReleaseEdge(int i, CallOutcome outcome, absl::Duration retry_after,
                               const std::string& error) {
  absl::MutexLock lock(&mu_);
  NodeSnapshot& s = edges_.state[i];
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
      FailLocked(&s.health, Who(edges_, s), error, now);
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
  return edges_.state[i].name;
}

int NodeRegistry::PickCloudLocked(absl::Time now) const {
  const std::vector<NodeSnapshot>& state = clouds_.state;
  const int n = static_cast<int>(state.size());
  int best = -1, fallback = -1;
  double best_load = 0;
  for (int k = 0; k < n; ++k) {
    const int i = static_cast<int>((clouds_.rr + k) % n);
    const NodeSnapshot& s = state[i];
    if (s.removed) continue;
    if (fallback < 0 || s.health.ejected_until < state[fallback].health.ejected_until) fallback = i;
    if (!HealthyLocked(s.health, now) || now < s.health.busy_until) continue;
    const double load = (s.outstanding + 1.0) / std::max(1, s.load.max_slots());
    if (best < 0 || load < best_load) {
      best = i;
      best_load = load;
    }
  }
  if (best >= 0) return best;
  if (fallback >= 0) return fallback;
  return n > 0 ? 0 : -1;  // every replica removed: the first still answers what it can
}

int NodeRegistry::AcquireCloud() {
  absl::MutexLock lock(&mu_);
  const int i = PickCloudLocked(absl::Now());
  if (i >= 0) {
    ++clouds_.state[i].outstanding;
    clouds_.rr = (i + 1) % clouds_.state.size();
  }
  return i;
}

void NodeRegistry::RecordCloudRate(int i, int64_t generated, double seconds) {
  absl::MutexLock lock(&mu_);
  if (i < 0 || generated <= 0 || seconds <= 0) return;
  double& r = clouds_.state[i].tokens_per_s;
  const double tps = generated / seconds;
  r = r == 0 ? tps : 0.8 * r + 0.2 * tps;
}

void NodeRegistry::CloudCallEnded(int i, CallOutcome outcome, const std::string& error) {
  absl::MutexLock lock(&mu_);
  if (i < 0) return;
  NodeSnapshot& s = clouds_.state[i];
  s.outstanding = std::max(0, s.outstanding - 1);
  ++s.expansions;
  if (outcome == CallOutcome::kOk) SucceedLocked(&s.health);
  if (outcome == CallOutcome::kFailed) {
    ++s.failures;
    FailLocked(&s.health, Who(clouds_, s), error, absl::Now());
  }
  if (outcome == CallOutcome::kBusy) {
    s.health.busy_until = std::max(s.health.busy_until, absl::Now() + absl::Seconds(poll_s_));
  }
}

bool NodeRegistry::CloudHealthy() const {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  for (const NodeSnapshot& s : clouds_.state) {
    if (!s.removed && HealthyLocked(s.health, now)) return true;
  }
  return false;
}

NodeHealth NodeRegistry::CloudHealth() const {
  absl::MutexLock lock(&mu_);
  const int i = PickCloudLocked(absl::Now());
  if (i < 0) {
    NodeHealth h;
    h.last_error = "no cloud replica known";
    return h;
  }
  return clouds_.state[i].health;
}

std::vector<std::string> NodeRegistry::CloudModels() const {
  absl::MutexLock lock(&mu_);
  for (const NodeSnapshot& s : clouds_.state) {
    if (!s.removed && s.load.models_size() > 0) return {s.load.models().begin(), s.load.models().end()};
  }
  return {};
}

std::string NodeRegistry::CloudName() const {
  absl::MutexLock lock(&mu_);
  for (const NodeSnapshot& s : clouds_.state) {
    if (!s.removed && !s.load.node().empty()) return s.load.node();
  }
  return "cloud";
}

std::string NodeRegistry::AnswerVersions() const {
  absl::MutexLock lock(&mu_);
  std::set<std::string> clouds, edges;
  for (const NodeSnapshot& c : clouds_.state) {
    if (!c.removed && !c.load.model_version().empty()) clouds.insert(c.load.model_version());
  }
  if (clouds.empty()) return "";
  for (const NodeSnapshot& e : edges_.state) {
    if (!e.removed && !e.load.model_version().empty()) edges.insert(e.load.model_version());
  }
  std::string out;
  for (const std::string& v : clouds) out += (out.empty() ? "cloud " : " cloud ") + v;
  for (const std::string& v : edges) out += " edge " + v;
  return out;
}

LiveState NodeRegistry::Live() const {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  LiveState l;
  // The replicas as one pool: AcquireCloud spreads calls over the healthy ones.
  l.cloud_available = false;
  double cloud_tps = 0;
  int cloud_with_tps = 0;
  for (const NodeSnapshot& c : clouds_.state) {
    if (c.removed) continue;
    l.cloud_queue += c.outstanding;
    if (!HealthyLocked(c.health, now)) continue;
    l.cloud_available = true;
    l.cloud_max_slots += c.load.max_slots();
    l.cloud_queue_depth += c.load.queue_depth();
    if (c.tokens_per_s > 0) {
      cloud_tps += c.tokens_per_s;
      ++cloud_with_tps;
    }
  }
  if (cloud_with_tps > 0) l.cloud_tokens_per_s = cloud_tps / cloud_with_tps;
  double tps = 0;
  int with_tps = 0;
  for (const NodeSnapshot& s : edges_.state) {
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

std::vector<NodeSnapshot> NodeRegistry::SnapshotsLocked(const Pool& pool) const {
  const absl::Time now = absl::Now();
  std::vector<NodeSnapshot> out = pool.state;
  for (NodeSnapshot& s : out) {
    s.healthy = !s.removed && HealthyLocked(s.health, now);
    s.ejected = now < s.health.ejected_until;
    s.busy = now < s.health.busy_until;
  }
  return out;
}

std::vector<EdgeSnapshot> NodeRegistry::Edges() const {
  absl::MutexLock lock(&mu_);
  return SnapshotsLocked(edges_);
}

std::vector<NodeSnapshot> NodeRegistry::Clouds() const {
  absl::MutexLock lock(&mu_);
  return SnapshotsLocked(clouds_);
}

}  // namespace pice::scheduler
