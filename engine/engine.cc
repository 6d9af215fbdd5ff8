#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <limits>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/prefix_cache.h"
#include "engine/status_macros.h"

namespace pice {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}


// The smallest prompt chunk a step feeds, however many sequences decode.
constexpr int kMinChunk = 32;

}  // namespace

// A request in the running batch.
struct LiveSeq {
  EngineRequest req;
  std::unique_ptr<SequenceState> state;
  std::unique_ptr<KvCache> kv;
  size_t committed = 0;   // bytes committed at admission
  int start = 0;          // prompt tokens already in the KV (a forked prefix, then the
                          // chunks prefilled so far)
  int chunk = 0;          // prompt tokens fed in the current step
  bool prefilled = false;
  bool done = false;
  absl::Status error;     // why it ended early (its own KV could not grow)
  Token next = 0;
};

struct Engine::Impl {
  explicit Impl(Engine* e, const EngineOptions& o)
      : engine(e),
        opts(o),
        ctx(*e->model_, o.n_threads),
        pool(std::make_shared<KvBlockPool>(e->model_->hparams(), o.kv_block_size, o.max_kv_bytes)),
        prefix_cache(o.prefix_cache_entries, std::max(1, o.min_shared_prefix)) {}

  void Loop();
  // Moves queued requests into `live`; needs mu. Requests that can never fit are moved
  // to `failed` for the caller to answer outside the lock.
  void Admit(std::vector<EngineRequest>* failed);
  void Finish(LiveSeq& s, absl::Status error);
  // Remembers a prefilled prompt's KV in the prefix cache when the memory budget allows:
  // cache blocks count against max_kv_bytes beside the live sequences' worst case, so
  // what admission promised a sequence is never taken by the cache (evicts first).
  // Worker thread.
  void CachePrefix(const LiveSeq& s);
  // Whether `extra` more bytes fit max_kv_bytes (0 = unbounded) beside the live
  // sequences' worst case and the prefix cache, evicting cached prefixes (LRU) until
  // they do. The one budget rule of admission and the cache. Worker thread.
  bool MakeKvRoom(size_t live_committed, size_t extra);

  Engine* engine;
  EngineOptions opts;
  Context ctx;  // used by the worker thread only
  std::shared_ptr<KvBlockPool> pool;
  PrefixCache prefix_cache;            // worker thread only (Admit runs there)

  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<EngineRequest> queue;     // guarded by mu
  bool stopping = false;               // guarded by mu
  size_t committed = 0;                // guarded by mu: worst case of live sequences
  uint64_t prefix_hits = 0, prefix_tokens = 0;  // guarded by mu
  int active = 0;                      // guarded by mu
  double tokens_per_s = 0;             // guarded by mu
  uint64_t completed = 0, rejected = 0;  // guarded by mu
  uint64_t prompt_total = 0, generated_total = 0;  // guarded by mu
  int peak_batch = 0;                  // guarded by mu
  uint64_t steps = 0;                  // guarded by mu

  std::vector<std::unique_ptr<LiveSeq>> live;  // worker thread only
  std::mutex join_mu;                  // serializes Stop()'s join
  std::thread worker;
};

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options) {
  if (options.n_threads < 1 || options.n_threads > 256) {
    return absl::InvalidArgumentError("threads must be in [1, 256]");
  }
  if (options.max_batch < 1 || options.max_batch > 1024) {
    return absl::InvalidArgumentError("max_batch must be in [1, 1024]");
  }
  if (options.max_queue < 0) return absl::InvalidArgumentError("max_queue must be >= 0");
  if (options.kv_block_size < 1 || options.kv_block_size > 4096 ||
      (options.kv_block_size & (options.kv_block_size - 1)) != 0) {
    return absl::InvalidArgumentError("kv_block_size must be a power of two in [1, 4096]");
  }
  std::unique_ptr<Engine> e(new Engine());
  PICE_ASSIGN_OR_RETURN(e->model_, Model::Load(options.model_path));
  e->name_ = options.name.empty() ? e->model_->hparams().name : options.name;
  e->n_ctx_ = options.n_ctx > 0 ? options.n_ctx : e->model_->hparams().n_ctx_train;
  e->impl_ = std::make_unique<Impl>(e.get(), options);
  e->impl_->worker = std::thread([impl = e->impl_.get()] { impl->Loop(); });
  return e;
}

Engine::~Engine() { Stop(); }

void Engine::Stop() {
  if (!impl_) return;
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  std::lock_guard<std::mutex> l(impl_->join_mu);
  if (impl_->worker.joinable()) impl_->worker.join();
}

absl::Status Engine::Submit(EngineRequest r) {
  PICE_RETURN_IF_ERROR(ValidateGenerateOptions(r.options));
  if (r.prompt.empty()) return absl::InvalidArgumentError("prompt has no tokens");
  const int n_vocab = model_->hparams().n_vocab;
  for (Token t : r.prompt) {
    if (t < 0 || t >= n_vocab) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token ", t, " is outside the vocabulary"));
    }
  }
  if (int(r.prompt.size()) >= n_ctx_) {
    return absl::InvalidArgumentError(absl::StrCat("prompt of ", r.prompt.size(),
                                                   " tokens does not fit the model context of ", n_ctx_));
  }
  std::lock_guard<std::mutex> l(impl_->mu);
  if (impl_->stopping) return absl::UnavailableError("engine is shutting down");
  if (int(impl_->queue.size()) >= impl_->opts.max_queue + impl_->opts.max_batch) {
    impl_->rejected++;
    return absl::ResourceExhaustedError(absl::StrCat("engine '", name_, "' queue is full (",
                                                     impl_->queue.size(), " waiting); retry later"));
  }
  impl_->queue.push_back(std::move(r));
  impl_->cv.notify_one();
  return absl::OkStatus();
}

void Engine::Impl::Admit(std::vector<EngineRequest>* failed) {
  const size_t block_bytes = pool->block_bytes();
  const int bs = pool->block_size();
  for (auto it = queue.begin(); it != queue.end() && int(live.size()) < opts.max_batch;) {
    EngineRequest& r = *it;
    const int prompt_len = int(r.prompt.size());
    // A sequence admitted in this same step and not yet prefilled shares a prefix with
    // this one: wait a step and fork its blocks instead of computing them twice.
    bool defer = false;
    for (const auto& s : live) {
      if (!s->prefilled && CommonPrefix(s->req.prompt, r.prompt) >= prefix_cache.min_tokens()) {
        defer = true;
        break;
      }
    }
    if (defer) {
      ++it;
      continue;
    }
    const int n_ctx = std::min(engine->n_ctx_, std::max<int>(prompt_len + r.options.max_tokens, 1));
    const size_t need = size_t((n_ctx + bs - 1) / bs) * block_bytes;
    // Make room by dropping cached prefixes, then wait for running sequences to finish.
    if (!MakeKvRoom(committed, need)) {
      if (live.empty() && prefix_cache.size() == 0) {
        // Can never fit: fail it rather than block the queue forever.
        failed->push_back(std::move(r));
        it = queue.erase(it);
        rejected++;
        continue;
      }
      break;
    }
    auto s = std::make_unique<LiveSeq>();
    s->kv = std::make_unique<KvCache>(pool, n_ctx);
    // Fork the longest shared prefix: a running sequence's prompt or a cached one. At
    // least one prompt token is always computed, for its logits.
    int best = 0;
    const KvCache* src = nullptr;
    for (const auto& o : live) {
      int n = std::min(CommonPrefix(o->req.prompt, r.prompt), o->kv->n_past());
      if (o->prefilled && n > best) {
        best = n;
        src = o->kv.get();
      }
    }
    int cached = 0;
    const KvCache* c = prefix_cache.Lookup(r.prompt, &cached);
    if (c != nullptr && cached > best) {
      best = cached;
      src = c;
    }
    best = std::min(best, prompt_len - 1);
    if (src != nullptr && best >= prefix_cache.min_tokens()) {
      s->kv->ForkFrom(*src, best);
      s->start = best;
      prefix_hits++;
      prefix_tokens += uint64_t(best);
    }
    s->state = std::make_unique<SequenceState>(r.prompt, r.options);
    prompt_total += uint64_t(prompt_len);
    s->committed = need;
    committed += need;
    s->req = std::move(r);
    it = queue.erase(it);
    live.push_back(std::move(s));
  }
  active = int(live.size());
}

bool Engine::Impl::MakeKvRoom(size_t live_committed, size_t extra) {
  if (opts.max_kv_bytes == 0) return true;
  auto fits = [&] { return live_committed + extra + prefix_cache.bytes() <= opts.max_kv_bytes; };
  while (!fits() && prefix_cache.EvictOne()) {
  }
  return fits();
}

void Engine::Impl::CachePrefix(const LiveSeq& s) {
  if (prefix_cache.max_entries() == 0 || int(s.req.prompt.size()) < prefix_cache.min_tokens()) {
    return;  // the cache would not take it: evict nothing for it
  }
  const int bs = pool->block_size();
  const size_t entry = size_t((s.req.prompt.size() + bs - 1) / bs) * pool->block_bytes();
  size_t live_committed;
  {
    std::lock_guard<std::mutex> l(mu);
    live_committed = committed;
  }
  if (MakeKvRoom(live_committed, entry)) prefix_cache.Insert(s.req.prompt, *s.kv);
}

void Engine::Impl::Finish(LiveSeq& s, absl::Status error) {
  if (s.req.on_done) {
    if (error.ok()) {
      s.req.on_done(s.state->TakeResult(engine->tokenizer()));
    } else {
      s.req.on_done(error);
    }
  }
}

void Engine::Impl::Loop() {
  const Tokenizer& tok = engine->tokenizer();
  const int n_vocab = engine->model_->hparams().n_vocab;
  std::vector<SeqInput> batch;
  std::vector<std::pair<Token, float>> sampled;  // per batch row: token, log-probability
  std::vector<EngineRequest> failed;
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu);
      cv.wait(l, [&] { return stopping || !queue.empty() || !live.empty(); });
      if (stopping) {
        for (auto& s : live) {
          s->state->Finish(FinishReason::kCancelled);
          l.unlock();
          Finish(*s, absl::OkStatus());
          l.lock();
        }
        for (EngineRequest& r : queue) {
          if (r.on_done) {
            l.unlock();
            r.on_done(absl::UnavailableError("engine is shutting down"));
            l.lock();
          }
        }
        live.clear();
        queue.clear();
        return;
      }
      failed.clear();
      Admit(&failed);
    }
    for (EngineRequest& r : failed) {
      if (r.on_done) {
        r.on_done(absl::ResourceExhaustedError(
            absl::StrCat("request needs more KV memory than the engine allows (", opts.max_kv_bytes >> 20, " MiB)")));
      }
    }
    // Drop cancelled sequences before spending compute on them. Chunked prefill: each
    // step feeds at most opts.step_tokens tokens; the running decodes come first (one
    // token each), prompts share the rest in arrival order (at least kMinChunk, so a
    // prompt always progresses), so a long prompt joining never stalls the decodes for
    // more than one chunk.
    batch.clear();
    std::vector<LiveSeq*> in_batch;
    int budget = std::numeric_limits<int>::max();
    if (opts.step_tokens > 0) {
      int decoding = 0;
      for (auto& s : live) decoding += s->prefilled;
      budget = std::max(opts.step_tokens - decoding, kMinChunk);
    }
    for (auto& s : live) {
      if (s->req.cancelled && s->req.cancelled->load()) {
        s->state->Finish(FinishReason::kCancelled);
        s->done = true;
        continue;
      }
      // Memory for this step's positions, per sequence: one that cannot get it ends
      // alone (RESOURCE_EXHAUSTED) instead of failing the whole batch's Decode.
      int n_new = 1;
      if (!s->prefilled) {
        n_new = std::min(int(s->req.prompt.size()) - s->start, budget);
        if (n_new <= 0) continue;  // this step's budget is spent: next step
        budget -= n_new;
        s->chunk = n_new;
      }
      if (absl::Status r = s->kv->Reserve(n_new); !r.ok()) {
        s->state->Finish(FinishReason::kError);
        s->error = r;
        s->done = true;
        continue;
      }
      if (!s->prefilled) {
        batch.push_back({s->kv.get(), s->req.prompt.data() + s->start, n_new, false});
      } else {
        batch.push_back({s->kv.get(), &s->next, 1, false});
      }
      in_batch.push_back(s.get());
    }
    double t0 = Now();
    absl::Status st = batch.empty() ? absl::OkStatus() : ctx.Decode(batch);
    double dt = Now() - t0;
    int generated = 0;
    // Sample every sequence's next token in parallel on the forward pass's threads
    // (each touches only its own sampler); callbacks and stop checks follow in order.
    sampled.resize(in_batch.size());
    if (st.ok()) {
      ctx.pool().ParallelFor(int64_t(in_batch.size()), 1, [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) {
          const LiveSeq& ls = *in_batch[b];
          SequenceState& seq = *ls.state;
          sampled[b] = {-1, 0.0f};
          const bool mid_prompt =
              !ls.prefilled && ls.start + ls.chunk < int(ls.req.prompt.size());
          if (!mid_prompt && seq.WantsToken()) {
            sampled[b].first = seq.Sample(ctx.Logits(int(b)), n_vocab, &sampled[b].second);
          }
        }
      });
    }
    for (size_t b = 0; b < in_batch.size(); ++b) {
      LiveSeq& s = *in_batch[b];
      s.done = true;  // unless it goes on below
      if (!st.ok()) {
        s.state->Finish(FinishReason::kError);
        continue;
      }
      GenerateResult& r = s.state->result();
      if (!s.prefilled) {
        r.prefill_seconds += dt;
        s.start += s.chunk;
        if (s.start < int(s.req.prompt.size())) {  // more chunks to come: no token yet
          s.done = false;
          continue;
        }
        s.prefilled = true;
        CachePrefix(s);
      } else {
        r.decode_seconds += dt;
        r.decode_steps++;
      }
      if (!s.state->Accept(sampled[b].first, sampled[b].second, tok, s.req.on_token)) continue;
      ++generated;
      if (s.kv->n_past() >= s.kv->n_ctx()) {
        s.state->Finish(FinishReason::kLength);  // context full
        continue;
      }
      s.next = s.state->next_token();
      s.done = false;
    }
    // Retire finished sequences (and cancelled ones) at once.
    std::vector<std::unique_ptr<LiveSeq>> done;
    for (auto it = live.begin(); it != live.end();) {
      if ((*it)->done) {
        done.push_back(std::move(*it));
        it = live.erase(it);
      } else {
        ++it;
      }
    }
    {
      std::lock_guard<std::mutex> l(mu);
      for (auto& s : done) committed -= s->committed;
      completed += done.size();
      generated_total += uint64_t(generated);
      if (!in_batch.empty()) {
        ++steps;
        peak_batch = std::max(peak_batch, int(in_batch.size()));
      }
      active = int(live.size());
      if (dt > 0 && generated > 0) {
        const double rate = generated / dt;
        tokens_per_s = tokens_per_s == 0 ? rate : 0.9 * tokens_per_s + 0.1 * rate;
      }
    }
    for (auto& s : done) {
      if (s->state->result().finish == FinishReason::kError) {
        Finish(*s, !s->error.ok() ? s->error
                   : st.ok()      ? absl::InternalError("generation failed")
                                  : st);
      } else {
        Finish(*s, absl::OkStatus());
      }
    }
  }
}

absl::StatusOr<GenerateResult> Engine::Run(std::vector<Token> prompt, const GenerateOptions& options,
                                           std::function<bool(Token, float)> on_token,
                                           std::shared_ptr<std::atomic<bool>> cancelled) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<GenerateResult>>>();
  auto future = promise->get_future();
  EngineRequest r;
  r.prompt = std::move(prompt);
  r.options = options;
  r.on_token = std::move(on_token);
  r.cancelled = std::move(cancelled);
  r.on_done = [promise](absl::StatusOr<GenerateResult> res) { promise->set_value(std::move(res)); };
  PICE_RETURN_IF_ERROR(Submit(std::move(r)));
  return future.get();
}

absl::StatusOr<std::vector<GenerateResult>> Engine::RunBatch(
    const std::vector<std::vector<Token>>& prompts, const std::vector<GenerateOptions>& options,
    std::shared_ptr<std::atomic<bool>> cancelled) {
  if (prompts.size() != options.size()) {
    return absl::InvalidArgumentError("RunBatch needs one options entry per prompt");
  }
  if (!cancelled) cancelled = std::make_shared<std::atomic<bool>>(false);
  std::vector<std::future<absl::StatusOr<GenerateResult>>> futures;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto promise = std::make_shared<std::promise<absl::StatusOr<GenerateResult>>>();
    futures.push_back(promise->get_future());
    EngineRequest r;
    r.prompt = prompts[i];
    r.options = options[i];
    r.cancelled = cancelled;
    r.on_done = [promise](absl::StatusOr<GenerateResult> res) { promise->set_value(std::move(res)); };
    absl::Status s = Submit(std::move(r));
    if (!s.ok()) {
      cancelled->store(true);  // stop the ones already submitted
      for (auto& f : futures) {
        if (f.valid() && &f != &futures.back()) f.wait();
      }
      return s;
    }
  }
  std::vector<GenerateResult> out;
  for (auto& f : futures) {
    absl::StatusOr<GenerateResult> r = f.get();
    if (!r.ok()) return r.status();
    out.push_back(*std::move(r));
  }
  return out;
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> l(impl_->mu);
  EngineStats s;
  s.queued = int(impl_->queue.size());
  s.active = impl_->active;
  s.max_batch = impl_->opts.max_batch;
  s.kv_bytes = impl_->pool->used_bytes();
  s.kv_committed_bytes = impl_->committed;
  s.prefix_hits = impl_->prefix_hits;
  s.prefix_tokens_reused = impl_->prefix_tokens;
  s.max_kv_bytes = impl_->opts.max_kv_bytes;
  s.tokens_per_s = impl_->tokens_per_s;
  s.completed = impl_->completed;
  s.rejected = impl_->rejected;
  s.prompt_tokens = impl_->prompt_total;
  s.generated_tokens = impl_->generated_total;
  s.peak_batch = impl_->peak_batch;
  s.steps = impl_->steps;
  return s;
}

}  // namespace pice
