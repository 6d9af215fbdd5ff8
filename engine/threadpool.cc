#include "engine/threadpool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif

namespace pice {
namespace {

// Waiting, in three phases. A decode step issues a few hundred loops a few tens of
// microseconds apart, so a waiting thread first spins with `pause` (cheapest wake-up),
// then keeps polling but yields the core at each poll (so an oversubscribed machine
// still runs the threads being waited for), and after kSleepAfterNs an idle worker
// blocks on the condition variable (generation stopped; no core is burnt).
constexpr int64_t kPureSpinNs = 50'000;
constexpr int64_t kSleepAfterNs = 2'000'000;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// Protocol: the caller publishes `fn`, sets `pending` to the number of workers, then
// bumps `generation`. Each worker that observes a new generation runs the task and
// decrements `pending`; the caller runs its own share and waits for `pending == 0`.
// A worker that waited kSleepAfterNs without a new generation registers in `sleepers`
// and blocks on `cv`; the caller notifies under `mu` when `sleepers > 0`. Both sides
// use seq_cst on `generation`/`sleepers`, so either the worker sees the new generation
// before sleeping or the caller sees the sleeper and wakes it (the worker holds `mu`
// from its check until it waits, so the notification cannot be lost).
struct ThreadPool::State {
  std::vector<std::thread> workers;
  std::atomic<uint64_t> generation{0};
  std::atomic<int> pending{0};
  std::atomic<int> sleepers{0};
  std::atomic<bool> stop{false};
  const std::function<void(int, int)>* fn = nullptr;  // valid while pending > 0
  std::mutex mu;
  std::condition_variable cv;

  static void WorkerLoop(State* s, int ith, int nth);
};

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)), state_(new State) {
  state_->workers.reserve(n_threads_ - 1);
  for (int i = 1; i < n_threads_; ++i) {
    State* s = state_;
    int nth = n_threads_;
    state_->workers.emplace_back([s, i, nth] { State::WorkerLoop(s, i, nth); });
  }
}

ThreadPool::~ThreadPool() {
  state_->stop.store(true);
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->generation.fetch_add(1);
  }
  state_->cv.notify_all();
  for (std::thread& t : state_->workers) t.join();
  delete state_;
}

void ThreadPool::State::WorkerLoop(State* s, int ith, int nth) {
  uint64_t seen = 0;
  for (;;) {
    // Wait for a new generation: spin first, then block.
    uint64_t gen = s->generation.load(std::memory_order_acquire);
    if (gen == seen) {
      const int64_t start = NowNs();
      bool yielding = false;
      for (int i = 1;; ++i) {
        if (yielding) {
          std::this_thread::yield();
        } else {
          CpuRelax();
        }
        gen = s->generation.load(std::memory_order_acquire);
        if (gen != seen) break;
        if (!yielding && (i & 15) == 0) yielding = NowNs() - start > kPureSpinNs;
        if (yielding && (i & 15) == 0 && NowNs() - start > kSleepAfterNs) {
          std::unique_lock<std::mutex> lock(s->mu);
          s->sleepers.fetch_add(1);
          s->cv.wait(lock, [&] { return s->generation.load() != seen; });
          s->sleepers.fetch_sub(1);
          gen = s->generation.load();
          break;
        }
      }
    }
    seen = gen;
    if (s->stop.load(std::memory_order_acquire)) return;
    (*s->fn)(ith, nth);
    s->pending.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::Run(const std::function<void(int ith, int nth)>& fn) {
  if (n_threads_ == 1) {
    fn(0, 1);
    return;
  }
  State* s = state_;
  s->fn = &fn;
  s->pending.store(n_threads_ - 1, std::memory_order_relaxed);
  s->generation.fetch_add(1);  // seq_cst: publishes fn and pending
  if (s->sleepers.load() > 0) {
    { std::lock_guard<std::mutex> lock(s->mu); }
    s->cv.notify_all();
  }
  fn(0, n_threads_);
  if (s->pending.load(std::memory_order_acquire) != 0) {
    const int64_t start = NowNs();
    bool yielding = false;
    for (int i = 1; s->pending.load(std::memory_order_acquire) != 0; ++i) {
      if (yielding) {
        std::this_thread::yield();
      } else {
        CpuRelax();
        if ((i & 15) == 0) yielding = NowNs() - start > kPureSpinNs;
      }
    }
  }
  s->fn = nullptr;
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(n_threads_, n / grain));
  if (chunks == 1) {
    fn(0, n);
    return;
  }
  struct Ctx {
    int64_t n, chunks;
    const std::function<void(int64_t, int64_t)>* fn;
  } ctx{n, chunks, &fn};
  const Ctx* c = &ctx;
  // One pointer capture: stored inline by std::function, no allocation.
  Run([c](int ith, int) {
    if (ith >= c->chunks) return;
    const int64_t begin = c->n * ith / c->chunks;
    const int64_t end = c->n * (ith + 1) / c->chunks;
    (*c->fn)(begin, end);
  });
}

}  // namespace pice
