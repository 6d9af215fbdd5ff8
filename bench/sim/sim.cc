// The simulator's event loop and its model of the nodes (see sim.h for what is modelled).
#include "bench/sim/sim.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <queue>
#include <random>
#include <set>

namespace pice::bench::sim {

namespace {

// Tokens/s at batch b from measured (batch, tokens/s) points: below the first measured
// batch a step costs what it costs there (memory bound); between two, tokens/s is linear
// in the batch; past the last, flat (compute bound).
double Rate(const std::vector<std::pair<int, double>>& d, int b) {
  if (d.empty() || b <= 0) return 0;
  if (b <= d.front().first) return d.front().second * b / d.front().first;
  for (size_t i = 1; i < d.size(); ++i) {
    if (b <= d[i].first) {
      const auto [b0, r0] = d[i - 1];
      const auto [b1, r1] = d[i];
      return r0 + (r1 - r0) * double(b - b0) / double(b1 - b0);
    }
  }
  return d.back().second;
}

}  // namespace

double EngineProfile::TokensPerSecond(int b) const { return Rate(decode, b); }

double EngineProfile::StepSeconds(int b, double ctx) const {
  const double r = Rate(decode, b);
  const double t = r > 0 ? b / r : 0;
  if (ctx < 0 || decode_short.empty() || context <= context_short) return t;
  const double rs = Rate(decode_short, b);
  const double ts = rs > 0 ? b / rs : t;
  return ts + (t - ts) * std::max(0.0, (ctx - context_short) / (context - context_short));
}

namespace {

class Loop {
 public:
  double now() const { return now_; }
  void At(double t, std::function<void()> fn) { q_.push(Ev{std::max(t, now_), seq_++, std::move(fn)}); }
  void After(double dt, std::function<void()> fn) { At(now_ + dt, std::move(fn)); }
  // Runs events until `done()` holds or none is left; returns how many ran.
  int64_t Run(const std::function<bool()>& done) {
    int64_t n = 0;
    while (!q_.empty() && !done()) {
      Ev ev = std::move(const_cast<Ev&>(q_.top()));  // popped at once; its key is intact
      q_.pop();
      now_ = ev.t;
      ev.fn();
      ++n;

    }
    return n;
  }

 private:
  struct Ev {
    double t;
    uint64_t seq;  // FIFO among equal times: runs are reproducible
    std::function<void()> fn;
    bool operator>(const Ev& o) const { return t != o.t ? t > o.t : seq > o.seq; }
  };
  std::priority_queue<Ev, std::vector<Ev>, std::greater<Ev>> q_;
  double now_ = 0;
  uint64_t seq_ = 0;
};

// Engines on one CPU set share it.
struct CpuGroup {
  int stepping = 0;
  double busy_s = 0;
};

struct Seq {
  int prefill = 0;             // prompt tokens, prefilled in the step the sequence joins
  int prompt = 0;              // its prompt's length (the context is prompt + done)
  // The engine's prefix cache (engine/prefix_cache.h): a prompt whose first `shared`
  // tokens (the question) an earlier or running sequence of the same query (`key`)
  // computed forks them and prefills only the rest.
  uint64_t key = 0;
  int shared = 0;
  int total = 0;               // tokens to generate
  int done = 0;
  std::vector<int> marks;      // ascending token counts; on_mark(k) when done reaches marks[k]
  size_t next = 0;
  std::function<void(size_t)> on_mark;
  std::function<void()> on_fail;
};
using SeqP = std::shared_ptr<Seq>;

// A continuous-batching engine. Callbacks only schedule events (every reply crosses a
// link), so nothing re-enters the engine while it updates.
class Engine {
 public:
  Engine(Loop* loop, const EngineProfile* p, CpuGroup* g) : loop_(loop), p_(p), group_(g) {}
  void Submit(SeqP s) {
    s->prompt = s->prefill;
    waiting_.push_back(std::move(s));
    MaybeStep();
  }
  // The node died: every sequence fails; a step in progress is abandoned.
  void Fail() {
    ++epoch_;
    if (stepping_) --group_->stepping;
    stepping_ = false;
    std::vector<SeqP> all = std::move(active_);
    all.insert(all.end(), waiting_.begin(), waiting_.end());
    active_.clear();
    waiting_.clear();
    for (const SeqP& s : all) {
      if (s->on_fail) s->on_fail();
    }
  }
  int waiting() const { return static_cast<int>(waiting_.size()); }

 private:
  void MaybeStep() {
    if (stepping_) return;
    const int decoding = static_cast<int>(active_.size());
    double context = 0;
    for (const SeqP& s : active_) context += s->prompt + s->done;
    if (decoding > 0) context /= decoding;
    int prefill = 0;
    while (!waiting_.empty() && static_cast<int>(active_.size()) < p_->max_batch) {
      Seq& s = *waiting_.front();
      if (s.key != 0 && s.shared > 0) {
        const bool hit = std::find(recent_.begin(), recent_.end(), s.key) != recent_.end();
        if (hit) {
          recent_.remove(s.key);
          s.prefill = std::max(1, s.prefill - s.shared);
        }
        recent_.push_front(s.key);
        if (int(recent_.size()) > kPrefixEntries) recent_.pop_back();
      }
      prefill += waiting_.front()->prefill;
      active_.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
    }
    if (active_.empty()) return;
    const double cpu = p_->StepSeconds(decoding, context) + prefill / p_->prefill_tokens_per_s;
    ++group_->stepping;
    stepping_ = true;
    const uint64_t e = epoch_;
    loop_->After(cpu * group_->stepping, [this, e, cpu] {
      if (e == epoch_) EndStep(cpu);
    });
  }
  void EndStep(double cpu) {
    stepping_ = false;
    --group_->stepping;
    group_->busy_s += cpu;
    std::vector<SeqP> keep;
    keep.reserve(active_.size());
    for (SeqP& s : active_) {
      s->prefill = 0;
      ++s->done;
      while (s->next < s->marks.size() && s->done >= s->marks[s->next]) s->on_mark(s->next++);
      if (s->done < s->total) keep.push_back(std::move(s));
    }
    active_ = std::move(keep);
    MaybeStep();
  }

  Loop* loop_;
  const EngineProfile* p_;
  CpuGroup* group_;
  std::vector<SeqP> active_;
  std::deque<SeqP> waiting_;
  bool stepping_ = false;
  uint64_t epoch_ = 0;
  static constexpr int kPrefixEntries = 16;  // EngineOptions::prefix_cache_entries
  std::list<uint64_t> recent_;               // prefixes cached, most recent first
};

// One scheduler's view of a set of nodes: its own calls in flight and their health. The
// pick is the registry's: fewest own calls (equal slots everywhere), ties in a rotation
// of this scheduler's own (a random order per scheduler, so replicas do not herd).
class Pool {
 public:
  // Node i is listed when i % shards == shard.
  Pool(int n, std::mt19937_64& rng, int shard = 0, int shards = 1)
      : own_(n, 0), healthy_(n, 0), listed_(n, 0), rank_(n), by_rank_(n) {
    for (int i = 0; i < n; ++i) by_rank_[i] = i;
    std::shuffle(by_rank_.begin(), by_rank_.end(), rng);
    for (int r = 0; r < n; ++r) rank_[by_rank_[r]] = r;
    for (int i = shard; i < n; i += shards) {
      listed_[i] = 1;
      SetHealthy(i, true);
    }
  }
  // The listed, healthy, not busy node with the fewest own calls, below `cap` calls; -1
  // when none.
  int Pick(const std::vector<int>& exclude, int cap = 1 << 30, double now = 0) const {
    for (const auto& [calls, r] : order_) {
      if (calls >= cap) break;
      const int i = by_rank_[r];
      if (!busy_until_.empty() && busy_until_[size_t(i)] > now) continue;
      if (std::find(exclude.begin(), exclude.end(), i) == exclude.end()) return i;
    }
    return -1;
  }
  void Add(int i, int d) {
    if (healthy_[i]) order_.erase({own_[i], rank_[i]});
    own_[i] += d;
    total_ += d;
    if (healthy_[i]) order_.insert({own_[i], rank_[i]});
  }
  void SetHealthy(int i, bool h) {
    if (!listed_[i] || healthy_[i] == h) return;
    healthy_[i] = h;
    healthy_count_ += h ? 1 : -1;
    if (h) {
      order_.insert({own_[i], rank_[i]});
    } else {
      order_.erase({own_[i], rank_[i]});
    }
  }
  // RESOURCE_EXHAUSTED with retry-after: skipped until `until` (health is not touched).
  void SetBusyUntil(int i, double until) {
    if (busy_until_.empty()) busy_until_.assign(own_.size(), 0.0);
    busy_until_[size_t(i)] = std::max(busy_until_[size_t(i)], until);
  }
  int healthy_count() const { return healthy_count_; }
  int total() const { return total_; }
  int size() const { return static_cast<int>(own_.size()); }

 private:
  std::vector<int> own_;
  std::vector<char> healthy_, listed_;
  std::vector<double> busy_until_;
  std::vector<int> rank_, by_rank_;
  std::set<std::pair<int, int>> order_;
  int healthy_count_ = 0, total_ = 0;
};

struct Scheduler {
  Pool edges, clouds;
  std::vector<double> core_free;
  double busy_s = 0;
};

struct Query {
  size_t index = 0;  // in the run's arrivals
  int sched = 0;
  double t0 = 0, first = -1;
  int points_left = 0;
  bool finished = false;
  QueryResult r;
};
using QueryP = std::shared_ptr<Query>;

class Sim {
 public:
  Sim(const Topology& t, const Workload& w, const RunSpec& run)
      : t_(t), w_(w), run_(run), rng_(run.seed ^ 0x9e3779b97f4a7c15ull) {
    const int groups = (t.edges + t.edges_per_cpu - 1) / t.edges_per_cpu;
    edge_cpus_.resize(std::max(groups, 1));
    cloud_cpus_.resize(t.clouds);
    for (int c = 0; c < t.clouds; ++c) {
      clouds_.push_back(std::make_unique<Engine>(&loop_, &t.cloud, &cloud_cpus_[c]));
    }
    edges_ = std::vector<EdgeNode>(size_t(t.edges));  // in place: EdgeNode is not nothrow-movable
    for (int e = 0; e < t.edges; ++e) {
      for (int m = 0; m < t.members; ++m) {
        edges_[e].members.push_back(
            std::make_unique<Engine>(&loop_, &t.edge, &edge_cpus_[e / t.edges_per_cpu]));
      }
    }
    const int replicas = std::max(1, t.sched.replicas);
    const int shards = t.sched.shard_edges ? std::min(replicas, t.edges) : 1;
    for (int s = 0; s < replicas; ++s) {
      scheds_.push_back(Scheduler{Pool(t.edges, rng_, s % shards, shards), Pool(t.clouds, rng_),
                                  std::vector<double>(std::max(1, t.sched.threads), 0.0), 0});
    }
    listed_edges_ = (t.edges + shards - 1) / shards;
    probe_share_ = listed_edges_ * t.sched.cpu_s_per_probe / t.sched.load_poll_s / std::max(1, t.sched.threads);
    prompt_.assign(size_t(w.prompt_tokens) * 4, 'x');
  }

  RunResult Go() {
    // The arrivals exactly as the testbed draws them from the same seed (bench/testbed.cc),
    // so a calibration replays the very arrival times the testbed sent.
    std::mt19937_64 arrivals(run_.seed);
    std::exponential_distribution<double> gap(run_.rate);
    std::vector<double> at;
    for (double s = gap(arrivals); run_.queries > 0 ? at.size() < size_t(run_.queries) : s < run_.duration_s;
         s += gap(arrivals)) {
      at.push_back(s);
    }
    results_.resize(at.size());
    for (size_t i = 0; i < at.size(); ++i) {
      loop_.At(at[i], [this, i] { Arrive(i); });
    }
    for (size_t s = 0; s < scheds_.size(); ++s) {
      loop_.At(t_.sched.load_poll_s * double(s + 1) / double(scheds_.size()), [this, s] { Poll(s); });
    }
    if (t_.mttf_s > 0) {
      for (int e = 0; e < t_.edges; ++e) ScheduleFailure(e);
    }
    RunResult out;
    out.events = loop_.Run([&] { return finished_ == at.size(); });
    out.span_s = loop_.now();
    out.queries = results_;
    double cloud = 0, edge = 0, sched = 0;
    for (const CpuGroup& g : cloud_cpus_) cloud += g.busy_s;
    for (const CpuGroup& g : edge_cpus_) edge += g.busy_s;
    for (const Scheduler& s : scheds_) sched += s.busy_s;
    const double span = std::max(out.span_s, 1e-9);
    out.cloud_utilization = cloud / (span * t_.clouds);
    out.edge_utilization = edge / (span * double(edge_cpus_.size()));
    const double cores = double(scheds_.size()) * std::max(1, t_.sched.threads);
    out.scheduler_utilization = std::min(1.0, sched / (span * cores) + probe_share_);
    return out;
  }

 private:
  struct EdgeNode {
    std::vector<std::unique_ptr<Engine>> members;
    bool up = true;
    int running = 0;                              // admitted Expand calls
    double expand_s = 0.05;                       // the last call's time (retry-after)
    // Queued calls (max edge_queue): how to run each, and how it fails if the edge dies.
    std::deque<std::pair<std::function<void()>, std::function<void()>>> waiting;
  };

  double Uniform() { return std::uniform_real_distribution<double>(0, 1)(rng_); }

  // One message's time on a link.
  double Delay(const LinkModel& l, double bytes) {
    double d = l.rtt_s / 2;
    if (l.jitter_s > 0) d += (Uniform() * 2 - 1) * l.jitter_s;
    d = std::max(d, 0.0);
    if (l.mbit > 0) d += bytes * 8 / (l.mbit * 1e6);
    if (l.loss > 0 && Uniform() < l.loss) d += l.rto_s;
    return d;
  }

  // `cpu` seconds of scheduler `s`'s CPU (on its first free core, slowed by the share its
  // probes take), then `then`.
  void SchedWork(int s, double cpu, std::function<void()> then) {
    Scheduler& sc = scheds_[s];
    if (probe_share_ >= 0.99) return;  // probes alone saturate it: the query times out
    auto core = std::min_element(sc.core_free.begin(), sc.core_free.end());
    const double start = std::max(loop_.now(), *core);
    *core = start + cpu / (1 - probe_share_);
    sc.busy_s += cpu;
    loop_.At(*core, std::move(then));
  }

  void Arrive(size_t i) {
    auto q = std::make_shared<Query>();
    q->sched = static_cast<int>(i % scheds_.size());
    q->t0 = loop_.now();
    q->r.end_s = q->t0;
    q->index = i;
    loop_.After(run_.timeout_s, [this, q] {
      if (!q->finished) Finish(q, false);
    });
    bool sketch = run_.route == "sketch";
    if (run_.route == "auto") sketch = DecideSketch(q->sched);
    q->r.sketch = sketch;
    const double cpu = sketch ? t_.sched.cpu_s_sketch_query +
                                    w_.points * listed_edges_ * t_.sched.cpu_s_per_edge_scan
                              : t_.sched.cpu_s_cloud_query;
    SchedWork(q->sched, cpu, [this, q, sketch] { sketch ? Sketch(q) : Full(q); });
  }

  bool DecideSketch(int s) {
    const Scheduler& sc = scheds_[s];
    scheduler::LiveState live;
    live.healthy_edges = sc.edges.healthy_count();
    live.edge_max_slots = live.healthy_edges * t_.edge.max_batch;
    live.edge_free_slots = std::max(0, live.edge_max_slots - sc.edges.total());
    live.edge_queue_depth = std::max(0, sc.edges.total() - live.edge_max_slots);
    live.edge_tokens_per_s = t_.edge.TokensPerSecond(1) / std::max(1, t_.members);
    live.cloud_tokens_per_s = t_.cloud.TokensPerSecond(1);
    live.cloud_queue = sc.clouds.total();
    live.cloud_max_slots = t_.cloud.max_batch * t_.clouds;
    for (const auto& c : clouds_) live.cloud_queue_depth += c->waiting();
    scheduler::QueryFacts facts;
    facts.prompt = prompt_;
    return scheduler::Decide(t_.policy, facts, live).route == scheduler::RouteChoice::kSketch;
  }

  // A sequence of query q: `prompt` tokens to prefill (the first w_.prompt_tokens of them
  // the question, which the engine's prefix cache shares), `total` to generate, `marks`.
  SeqP NewSeq(const QueryP& q, int prompt, int total, std::vector<int> marks) const {
    auto seq = std::make_shared<Seq>();
    seq->prefill = prompt;
    seq->key = q->index + 1;
    seq->shared = w_.prompt_tokens;
    seq->total = total;
    seq->marks = std::move(marks);
    return seq;
  }

  int PickCloud(int s) {
    const int c = scheds_[s].clouds.Pick({});
    scheds_[s].clouds.Add(c, 1);
    return c;
  }

  void Full(const QueryP& q) {
    const int s = q->sched, c = PickCloud(s);
    SeqP seq = NewSeq(q, w_.prompt_tokens, w_.full_tokens, {1, w_.full_tokens});
    seq->on_mark = [this, q, s, c](size_t k) {
      loop_.After(Delay(t_.cloud_link, 64), [this, q, s, c, k] {
        if (k == 0) {
          if (q->first < 0) q->first = loop_.now() - q->t0;
          return;
        }
        scheds_[s].clouds.Add(c, -1);
        q->r.cloud_tokens += w_.full_tokens;
        q->r.useful_tokens = w_.full_tokens;
        Finish(q, true);
      });
    };
    loop_.After(Delay(t_.cloud_link, 4.0 * w_.prompt_tokens + 64), [this, c, seq] { clouds_[c]->Submit(seq); });
  }

  void Sketch(const QueryP& q) {
    const int s = q->sched, c = PickCloud(s);
    const double whole = std::floor(w_.sketch_tokens);
    const int n = std::max(1, int(whole) + (Uniform() < w_.sketch_tokens - whole ? 1 : 0));
    const int points = std::max(1, std::min(w_.points, n));
    q->points_left = points;
    q->r.cloud_tokens += n;
    std::vector<int> marks;
    for (int k = 0; k < points; ++k) marks.push_back(std::max(1, int(std::lround(double(k + 1) * n / points))));
    SeqP seq = NewSeq(q, w_.prompt_tokens, n, std::move(marks));
    seq->on_mark = [this, q, s, c, points](size_t k) {
      loop_.After(Delay(t_.cloud_link, 64), [this, q, s, c, k, points] {
        if (int(k) + 1 == points) scheds_[s].clouds.Add(c, -1);
        Dispatch(q, int(k), {});
      });
    };
    loop_.After(Delay(t_.cloud_link, 4.0 * w_.prompt_tokens + 64), [this, c, seq] { clouds_[c]->Submit(seq); });
  }

  // One point to an edge; after max_edge_attempts failed or full edges (or none with
  // room), the cloud.
  void Dispatch(const QueryP& q, int k, std::vector<int> tried) {
    Scheduler& sc = scheds_[q->sched];
    const int e = int(tried.size()) < t_.sched.max_edge_attempts
                      ? sc.edges.Pick(tried, t_.edge_slots + t_.edge_queue, loop_.now())
                      : -1;
    if (e < 0) return CloudExpand(q);
    sc.edges.Add(e, 1);
    tried.push_back(e);
    const double bytes = 4.0 * w_.expand_prompt_tokens + 64;
    loop_.After(Delay(t_.edge_link, bytes), [this, q, k, e, tried] { Admit(q, k, e, tried); });
  }

  // The call reaches edge e: refused (down: the scheduler marks it unhealthy; full:
  // RESOURCE_EXHAUSTED), queued, or run on every member.
  void Admit(const QueryP& q, int k, int e, const std::vector<int>& tried) {
    const int s = q->sched;
    // The edge's answer to a full queue carries retry-after: its last expansion's time per
    // wave of max_slots calls ahead (edge_service.cc), which the scheduler waits out.
    const double retry_s = std::clamp(edges_[e].expand_s * (1.0 + double(edges_[e].waiting.size()) /
                                                                      std::max(1, t_.edge_slots)),
                                      0.005, 5.0);
    auto back = [this, q, k, e, s, tried, retry_s](bool down) {
      loop_.After(Delay(t_.edge_link, 64), [this, q, k, e, s, tried, down, retry_s] {
        scheds_[s].edges.Add(e, -1);
        if (down) {
          scheds_[s].edges.SetHealthy(e, false);
        } else {
          scheds_[s].edges.SetBusyUntil(e, loop_.now() + retry_s);
        }
        ++q->r.retries;
        Dispatch(q, k, tried);
      });
    };
    EdgeNode& edge = edges_[e];
    if (!edge.up) return back(true);
    auto run = [this, q, e, s, back] {
      EdgeNode& node = edges_[e];
      ++node.running;
      const double started = loop_.now();
      auto left = std::make_shared<int>(t_.members);
      auto failed = std::make_shared<bool>(false);
      for (auto& m : node.members) {
        SeqP seq = NewSeq(q, w_.expand_prompt_tokens, w_.expand_tokens, {w_.expand_tokens});
        seq->on_mark = [this, q, e, s, left, started](size_t) {
          if (--*left > 0) return;  // the vote waits for every member
          edges_[e].expand_s = loop_.now() - started;
          loop_.After(0, [this, e] { EndCall(e); });  // not inside the engine's step
          loop_.After(Delay(t_.edge_link, 4.0 * w_.expand_tokens * t_.members + 64), [this, q, e, s] {
            scheds_[s].edges.Add(e, -1);
            if (w_.escalation > 0 && Uniform() < w_.escalation) return CloudExpand(q);
            PointDone(q);
          });
        };
        seq->on_fail = [failed, back] {  // the edge died under the call
          if (!*failed) *failed = true, back(true);
        };
        m->Submit(seq);
      }
    };
    if (edge.running < t_.edge_slots) return run();
    if (int(edge.waiting.size()) < t_.edge_queue) {
      return edge.waiting.push_back({std::move(run), [back] { back(true); }});
    }
    back(false);  // RESOURCE_EXHAUSTED: another edge, or the cloud
  }

  // An admitted call ended: the next waiting one runs.
  void EndCall(int e) {
    EdgeNode& node = edges_[e];
    --node.running;
    if (node.running < t_.edge_slots && !node.waiting.empty()) {
      auto next = std::move(node.waiting.front().first);
      node.waiting.pop_front();
      next();
    }
  }

  void CloudExpand(const QueryP& q) {
    const int s = q->sched, c = PickCloud(s);
    SeqP seq = NewSeq(q, w_.expand_prompt_tokens, w_.expand_tokens, {w_.expand_tokens});
    seq->on_mark = [this, q, s, c](size_t) {
      loop_.After(Delay(t_.cloud_link, 4.0 * w_.expand_tokens + 64), [this, q, s, c] {
        scheds_[s].clouds.Add(c, -1);
        q->r.cloud_tokens += w_.expand_tokens;
        PointDone(q);
      });
    };
    loop_.After(Delay(t_.cloud_link, 4.0 * w_.expand_prompt_tokens + 64),
                [this, c, seq] { clouds_[c]->Submit(seq); });
  }

  void PointDone(const QueryP& q) {
    if (q->first < 0) q->first = loop_.now() - q->t0;
    q->r.useful_tokens += w_.expand_tokens;
    if (--q->points_left == 0) Finish(q, true);
  }

  void Finish(const QueryP& q, bool ok) {
    if (q->finished) return;
    q->finished = true;
    ++finished_;
    QueryResult& r = q->r;
    r.ok = ok;
    r.latency_s = loop_.now() - q->t0;
    r.first_s = q->first < 0 ? r.latency_s : q->first;
    r.end_s = loop_.now();
    results_[q->index] = r;
  }

  // Every load_poll each scheduler probes every edge: health as it is now.
  void Poll(size_t s) {
    for (int e = 0; e < t_.edges; ++e) scheds_[s].edges.SetHealthy(e, edges_[e].up);
    loop_.After(t_.sched.load_poll_s, [this, s] { Poll(s); });
  }

  void ScheduleFailure(int e) {
    loop_.After(std::exponential_distribution<double>(1 / t_.mttf_s)(rng_), [this, e] {
      edges_[e].up = false;
      edges_[e].running = 0;
      auto queued = std::move(edges_[e].waiting);  // queued calls die with the edge too
      edges_[e].waiting.clear();
      for (auto& m : edges_[e].members) m->Fail();
      for (auto& w : queued) w.second();
      loop_.After(std::exponential_distribution<double>(1 / t_.mttr_s)(rng_), [this, e] {
        edges_[e].up = true;
        ScheduleFailure(e);
      });
    });
  }

  const Topology& t_;
  const Workload& w_;
  const RunSpec& run_;
  std::mt19937_64 rng_;
  Loop loop_;
  std::vector<CpuGroup> cloud_cpus_, edge_cpus_;
  std::vector<std::unique_ptr<Engine>> clouds_;
  std::vector<EdgeNode> edges_;
  std::vector<Scheduler> scheds_;
  double probe_share_ = 0;
  int listed_edges_ = 0;  // edges each scheduler lists (probes and scans)
  std::string prompt_;
  std::vector<QueryResult> results_;
  size_t finished_ = 0;
};

}  // namespace

RunResult Simulate(const Topology& topo, const Workload& work, const RunSpec& run) {
  Sim sim(topo, work, run);
  return sim.Go();
}

}  // namespace pice::bench::sim
