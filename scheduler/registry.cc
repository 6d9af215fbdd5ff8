#include "scheduler/registry.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "spdlog/spdlog.h"

namespace pice::scheduler {
namespace {

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  // Reconnect quickly after a node restarts.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

}  // namespace

NodeRegistry::NodeRegistry(const SchedulerOptions& o) : poll_s_(o.load_poll_s) {
  cloud_address_ = o.cloud;
  cloud_channel_ = MakeChannel(o.cloud);
  cloud_stub_ = v1::Cloud::NewStub(cloud_channel_);
  for (const EdgeAddress& a : o.edges) {
    auto e = std::make_unique<Edge>();
    e->config_name = a.name;
    e->address = a.address;
    e->channel = MakeChannel(a.address);
    e->stub = v1::Edge::NewStub(e->channel);
    EdgeSnapshot s;
    s.name = a.name;
    s.address = a.address;
    state_.push_back(s);
    edges_.push_back(std::move(e));
  }
}

std::unique_ptr<NodeRegistry> NodeRegistry::Create(const SchedulerOptions& options) {
  std::unique_ptr<NodeRegistry> r(new NodeRegistry(options));
  r->PollOnce();
  r->poller_ = std::thread([p = r.get()] { p->PollLoop(); });
  return r;
}

NodeRegistry::~NodeRegistry() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (poller_.joinable()) poller_.join();
}

void NodeRegistry::PollLoop() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Seconds(poll_s_));
    if (stop_) break;
    mu_.Unlock();
    PollOnce();
    mu_.Lock();
  }
}

void NodeRegistry::PollOnce() {
  // The calls run concurrently, so one slow edge delays a round by one deadline at most.
  const double timeout_s = std::clamp(poll_s_ * 5, 0.2, 2.0);
  struct Call {
    grpc::ClientContext ctx;
    v1::LoadRequest req;
    v1::LoadResponse resp;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Call>> calls;
  std::mutex done_mu;
  std::condition_variable done_cv;
  size_t done = 0;
  for (auto& e : edges_) {
    auto c = std::make_unique<Call>();
    c->ctx.set_deadline(std::chrono::system_clock::now() +
                        std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6)));
    Call* raw = c.get();
    calls.push_back(std::move(c));
    e->stub->async()->Load(&raw->ctx, &raw->req, &raw->resp,
                           [raw, &done_mu, &done_cv, &done](grpc::Status s) {
                             std::lock_guard<std::mutex> lock(done_mu);
                             raw->status = std::move(s);
                             ++done;
                             done_cv.notify_all();
                           });
  }
  {
    std::unique_lock<std::mutex> lock(done_mu);
    done_cv.wait(lock, [&] { return done == calls.size(); });
  }
  bool cloud_bad = false;
  {
    const grpc_connectivity_state st = cloud_channel_->GetState(/*try_to_connect=*/true);
    cloud_bad = st == GRPC_CHANNEL_TRANSIENT_FAILURE || st == GRPC_CHANNEL_SHUTDOWN;
  }
  absl::MutexLock lock(&mu_);
  if (cloud_bad) cloud_failed_ = true;
  for (size_t i = 0; i < calls.size(); ++i) {
    EdgeSnapshot& s = state_[i];
    const bool was = s.healthy;
    if (calls[i]->status.ok()) {
      s.load = calls[i]->resp;
      if (!s.load.node().empty()) s.name = s.load.node();
      s.healthy = !s.load.draining();
    } else {
      s.healthy = false;
    }
    if (was != s.healthy) {
      spdlog::info("edge {} ({}) is {}{}", s.name, s.address, s.healthy ? "healthy" : "unhealthy",
                   calls[i]->status.ok() ? (s.load.draining() ? " (draining)" : "")
                                         : " (" + calls[i]->status.error_message() + ")");
    }
  }
}

int NodeRegistry::AcquireEdge(const std::vector<int>& exclude) {
  absl::MutexLock lock(&mu_);
  const int n = static_cast<int>(state_.size());
  int best = -1;
  for (int k = 0; k < n; ++k) {
    const int i = static_cast<int>((rr_ + k) % n);
    const EdgeSnapshot& s = state_[i];
    if (!s.healthy || std::find(exclude.begin(), exclude.end(), i) != exclude.end()) continue;
    if (best < 0) {
      best = i;
      continue;
    }
    const EdgeSnapshot& b = state_[best];
    // Outstanding calls per slot first; the edge's own queue breaks ties.
    const double ls = (s.outstanding + 1.0) / std::max(1, s.load.max_slots());
    const double lb = (b.outstanding + 1.0) / std::max(1, b.load.max_slots());
    if (ls < lb || (ls == lb && s.load.queue_depth() < b.load.queue_depth())) best = i;
  }
  if (best >= 0) {
    ++state_[best].outstanding;
    rr_ = (best + 1) % n;
  }
  return best;
}

void NodeRegistry::ReleaseEdge(int i, bool failed) {
  absl::MutexLock lock(&mu_);
  EdgeSnapshot& s = state_[i];
  --s.outstanding;
  ++s.expansions;
  if (failed) {
    ++s.failures;
    if (s.healthy) spdlog::warn("edge {} ({}) failed a call: unhealthy until its next poll", s.name, s.address);
    s.healthy = false;
  }
}

std::string NodeRegistry::EdgeName(int i) const {
  absl::MutexLock lock(&mu_);
  return state_[i].name;
}

void NodeRegistry::RecordCloud(int64_t generated, double seconds, bool failed) {
  absl::MutexLock lock(&mu_);
  cloud_failed_ = failed;
  if (failed || generated <= 0 || seconds <= 0) return;
  const double tps = generated / seconds;
  cloud_tps_ = cloud_tps_ == 0 ? tps : 0.8 * cloud_tps_ + 0.2 * tps;
}

void NodeRegistry::CloudCallStarted() {
  absl::MutexLock lock(&mu_);
  ++cloud_in_flight_;
}

void NodeRegistry::CloudCallEnded() {
  absl::MutexLock lock(&mu_);
  --cloud_in_flight_;
}

LiveState NodeRegistry::Live() const {
  absl::MutexLock lock(&mu_);
  LiveState l;
  l.cloud_available = !cloud_failed_;
  l.cloud_tokens_per_s = cloud_tps_;
  l.cloud_queue = cloud_in_flight_;
  double tps = 0;
  int with_tps = 0;
  for (const EdgeSnapshot& s : state_) {
    if (!s.healthy) continue;
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
  return state_;
}

}  // namespace pice::scheduler
