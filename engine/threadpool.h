// A fixed pool of worker threads for data-parallel loops on the forward pass.
//
// ParallelFor hands the range to all threads (the caller is thread 0) and returns when
// every chunk is done. Workers spin briefly before sleeping, so the hundreds of small
// loops of one decode step do not each pay a futex wake-up.
//
// Thread safety: ParallelFor must not be called concurrently on the same pool, nor from
// inside one of its own tasks.
#ifndef PICE_ENGINE_THREADPOOL_H_
#define PICE_ENGINE_THREADPOOL_H_

#include <cstdint>
#include <functional>

namespace pice {

class ThreadPool {
 public:
  // n_threads >= 1 counts the caller; n_threads - 1 workers are started.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(thread_index, n_threads) once on each of the pool's threads and waits.
  void Run(const std::function<void(int ith, int nth)>& fn);

  // Splits [0, n) into contiguous chunks of at least `grain` items over the threads and
  // calls fn(begin, end) for each; waits for all.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  struct State;
  int n_threads_;
  State* state_;
};

}  // namespace pice

#endif  // PICE_ENGINE_THREADPOOL_H_
