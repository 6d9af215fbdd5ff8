#include "engine/threadpool.h"

#include <gtest/gtest.h>

#include <filesystem>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace pice {
namespace {

TEST(ThreadPoolTest, RunCallsEveryThreadIndexOnce) {
  for (int n_threads : {1, 2, 3}) {
    ThreadPool pool(n_threads);
    EXPECT_EQ(pool.size(), n_threads);
    for (int rep = 0; rep < 50; ++rep) {
      std::vector<std::atomic<int>> calls(n_threads);
      pool.Run([&](int ith, int nth) {
        EXPECT_EQ(nth, n_threads);
        ASSERT_GE(ith, 0);
        ASSERT_LT(ith, n_threads);
        calls[ith].fetch_add(1);
      });
      for (int i = 0; i < n_threads; ++i) EXPECT_EQ(calls[i].load(), 1) << i;
    }
  }
}

TEST(ThreadPoolTest, ParallelForCoversEveryIndexExactlyOnce) {
  for (int n_threads : {1, 3}) {
    ThreadPool pool(n_threads);
    for (int64_t n : {0, 1, 2, 5, 16, 100, 1001}) {
      for (int64_t grain : {0, 1, 7, 64, 5000}) {
        std::vector<std::atomic<int>> hits(n);
        std::mutex mu;
        std::vector<std::pair<int64_t, int64_t>> chunks;
        pool.ParallelFor(n, grain, [&](int64_t b, int64_t e) {
          {
            std::lock_guard<std::mutex> lock(mu);
            chunks.emplace_back(b, e);
          }
          for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
        EXPECT_LE(static_cast<int>(chunks.size()), 4 * n_threads);
        // Chunks hold at least `grain` items unless the whole range is one chunk.
        if (chunks.size() > 1) {
          for (auto [b, e] : chunks) EXPECT_GE(e - b, grain);
        }
      }
    }
  }
}

TEST(ThreadPoolTest, ManySmallCallsBackToBack) {
  for (int n_threads : {1, 3}) {
    ThreadPool pool(n_threads);
    std::atomic<int64_t> total{0};
    constexpr int kCalls = 20000;
    for (int c = 0; c < kCalls; ++c) {
      pool.ParallelFor(6, 1, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
    }
    EXPECT_EQ(total.load(), int64_t{6} * kCalls);
  }
}

TEST(ThreadPoolTest, MixedRunAndParallelForStress) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(64);
  for (int iter = 0; iter < 5000; ++iter) {
    const int64_t n = 1 + (iter * 7919) % 64;
    for (int64_t i = 0; i < n; ++i) hits[i].store(0, std::memory_order_relaxed);
    pool.ParallelFor(n, 1 + iter % 3, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1, std::memory_order_relaxed);
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "iter " << iter << " i " << i;
    if (iter % 5 == 0) {
      std::atomic<int> calls{0};
      pool.Run([&](int, int) { calls.fetch_add(1); });
      ASSERT_EQ(calls.load(), 3);
    }
  }
}

TEST(ThreadPoolTest, WakesSleepingWorkers) {
  ThreadPool pool(3);
  for (int rep = 0; rep < 3; ++rep) {
    // Longer than the spin window, so the workers have gone to sleep.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::mutex mu;
    std::set<std::thread::id> ids;
    pool.Run([&](int, int) {
      std::lock_guard<std::mutex> lock(mu);
      ids.insert(std::this_thread::get_id());
    });
    EXPECT_EQ(ids.size(), 3u);
  }
}

// The process's threads, from /proc/self/task.
int ThreadCount() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// The thread count once it is down to `want` or below (a joined thread's /proc entry can
// outlive the join by a moment: the kernel wakes the joiner before it has fully reaped
// the task), or what it still is after 2 s.
int ThreadCountSettledAt(int want) {
  int n = ThreadCount();
  for (int i = 0; i < 200 && n > want; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    n = ThreadCount();
  }
  return n;
}

TEST(ThreadPoolTest, DestroysCleanlyWhileSpinningOrSleeping) {
  // Destruction joins every worker, whatever it was doing: the thread count is back to
  // where it was (a pool that leaked or detached a worker would leave it higher).
  const int before = ThreadCount();
  {
    ThreadPool pool(3);
    EXPECT_EQ(ThreadCount(), before + 2);  // the caller is the third thread
  }  // never used
  EXPECT_LE(ThreadCountSettledAt(before), before);
  {
    ThreadPool pool(3);
    pool.ParallelFor(10, 1, [](int64_t, int64_t) {});
  }  // workers still spinning
  EXPECT_LE(ThreadCountSettledAt(before), before);
  {
    ThreadPool pool(2);
    pool.ParallelFor(10, 1, [](int64_t, int64_t) {});
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }  // workers asleep
  EXPECT_LE(ThreadCountSettledAt(before), before);
}

}  // namespace
}  // namespace pice
