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

// ParallelFor makes up to this many chunks per thread, claimed dynamically, so a
// thread that is descheduled (shared machine) or slower does not hold the others up.
constexpr int64_t kChunksPerThread = 4;

constexpr uint32_t kClosed = 0xFFFFFFFFu;

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

// Polls `done()` with the spin-then-yield policy above.
template <typename F>
void WaitUntil(const F& done) {
  if (done()) return;
  const int64_t start = NowNs();
  bool yielding = false;
  for (int i = 1; !done(); ++i) {
    if (yielding) {
      std::this_thread::yield();
    } else {
      CpuRelax();
      if ((i & 15) == 0) yielding = NowNs() - start > kPureSpinNs;
    }
  }
}

}  // namespace

// Jobs are announced through `generation` = (counter << 1) | is_run.
//
// Run jobs: the caller publishes `run_fn`, sets `pending` to the number of workers and
// bumps `generation`; each worker runs the task once and decrements `pending`; the
// caller waits for `pending == 0`. A worker therefore never misses a Run job.
//
// ParallelFor jobs: chunks are claimed with a CAS on `claim` = (uint32 counter << 32) |
// next chunk; the caller returns when `done` reaches the chunk count, without waiting
// for workers that never showed up. A late worker validates every claim against the
// job's counter, and the caller closes a job's claim word (next = kClosed) before it
// writes the next job's fields (release stores, read with acquire), so a successful
// CAS proves the fields it read belong to a still-running job.
//
// Sleeping: a worker that waited kSleepAfterNs registers in `sleepers` and blocks on
// `cv`; the caller notifies under `mu` when `sleepers > 0`. Both sides use seq_cst on
// `generation`/`sleepers`, so either the worker sees the new generation before sleeping
// or the caller sees the sleeper and wakes it (the worker holds `mu` from its check
// until it waits, so the notification cannot be lost).
struct ThreadPool::State {
  std::vector<std::thread> workers;
  std::atomic<uint64_t> generation{0};
  std::atomic<bool> stop{false};
  std::atomic<int> sleepers{0};
  std::mutex mu;
  std::condition_variable cv;
  uint64_t counter = 0;  // caller-side job counter

  // Run jobs.
  const std::function<void(int, int)>* run_fn = nullptr;  // valid while pending > 0
  std::atomic<int> pending{0};

  // ParallelFor jobs.
  std::atomic<uint64_t> claim{kClosed};
  std::atomic<const std::function<void(int64_t, int64_t)>*> pf_fn{nullptr};
  std::atomic<int64_t> pf_n{0};
  std::atomic<int64_t> pf_chunks{0};
  std::atomic<int64_t> done{0};

  // Claims and runs chunks of ParallelFor job `id` until none is left.
  void RunChunks(uint32_t id) {
    for (;;) {
      uint64_t c = claim.load(std::memory_order_acquire);
      if (static_cast<uint32_t>(c >> 32) != id) return;
      const uint32_t i = static_cast<uint32_t>(c);
      const auto* fn = pf_fn.load(std::memory_order_acquire);
      const int64_t n = pf_n.load(std::memory_order_acquire);
      const int64_t chunks = pf_chunks.load(std::memory_order_acquire);
      if (i == kClosed || i >= chunks) return;
      if (!claim.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel)) continue;
      (*fn)(n * i / chunks, n * (i + 1) / chunks);
      done.fetch_add(1, std::memory_order_release);
    }
  }

  void WorkerLoop(int ith, int nth) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t gen = generation.load(std::memory_order_acquire);
      if (gen == seen) {
        const int64_t start = NowNs();
        bool yielding = false;
        for (int i = 1;; ++i) {
          if (yielding) {
            std::this_thread::yield();
          } else {
            CpuRelax();
          }
          gen = generation.load(std::memory_order_acquire);
          if (gen != seen) break;
          if ((i & 15) == 0) {
            const int64_t waited = NowNs() - start;
            yielding = waited > kPureSpinNs;
            if (waited > kSleepAfterNs) {
              std::unique_lock<std::mutex> lock(mu);
              sleepers.fetch_add(1);
              cv.wait(lock, [&] { return generation.load() != seen; });
              sleepers.fetch_sub(1);
              gen = generation.load();
              break;
            }
          }
        }
      }
      seen = gen;
      if (stop.load(std::memory_order_acquire)) return;
      if (gen & 1) {
        (*run_fn)(ith, nth);
        pending.fetch_sub(1, std::memory_order_acq_rel);
      } else {
        RunChunks(static_cast<uint32_t>(gen >> 1));
      }
    }
  }

  // Publishes a new generation and wakes sleeping workers.
  void Publish(uint64_t gen) {
    generation.store(gen);  // seq_cst, pairs with the sleepers check below
    if (sleepers.load() > 0) {
      { std::lock_guard<std::mutex> lock(mu); }
      cv.notify_all();
    }
  }
};

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)), state_(new State) {
  state_->workers.reserve(n_threads_ - 1);
  for (int i = 1; i < n_threads_; ++i) {
    State* s = state_;
    const int nth = n_threads_;
    state_->workers.emplace_back([s, i, nth] { s->WorkerLoop(i, nth); });
  }
}

ThreadPool::~ThreadPool() {
  State* s = state_;
  s->stop.store(true);
  {
    std::lock_guard<std::mutex> lock(s->mu);
    s->generation.store(((++s->counter) << 1) | 1);
  }
  s->cv.notify_all();
  for (std::thread& t : s->workers) t.join();
  delete s;
}

void ThreadPool::Run(const std::function<void(int ith, int nth)>& fn) {
  if (n_threads_ == 1) {
    fn(0, 1);
    return;
  }
  State* s = state_;
  s->run_fn = &fn;
  s->pending.store(n_threads_ - 1, std::memory_order_relaxed);
  s->Publish(((++s->counter) << 1) | 1);
  fn(0, n_threads_);
  WaitUntil([s] { return s->pending.load(std::memory_order_acquire) == 0; });
  s->run_fn = nullptr;
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t chunks =
      std::max<int64_t>(1, std::min<int64_t>(n_threads_ * kChunksPerThread, n / grain));
  if (chunks == 1 || n_threads_ == 1) {
    fn(0, n);
    return;
  }
  State* s = state_;
  const uint64_t id = ++s->counter;
  // Close the previous job's claim word before its fields change (see State).
  s->claim.store(s->claim.load(std::memory_order_relaxed) | kClosed, std::memory_order_release);
  s->pf_fn.store(&fn, std::memory_order_release);
  s->pf_n.store(n, std::memory_order_release);
  s->pf_chunks.store(chunks, std::memory_order_release);
  s->done.store(0, std::memory_order_relaxed);
  s->claim.store(static_cast<uint64_t>(static_cast<uint32_t>(id)) << 32, std::memory_order_release);
  s->Publish(id << 1);
  s->RunChunks(static_cast<uint32_t>(id));
  WaitUntil([s, chunks] { return s->done.load(std::memory_order_acquire) == chunks; });
}

}  // namespace pice
