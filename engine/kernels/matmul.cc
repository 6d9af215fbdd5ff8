// MatMul entry point, its scalar reference, and the portable (non-AVX-512) path built
// on the Dot* kernels.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "engine/kernels/kernels.h"
#include "engine/kernels/kernels_internal.h"
#include "engine/threadpool.h"

namespace pice::kernels {
namespace internal {

ScratchBuffer::~ScratchBuffer() { std::free(data_); }

void* ScratchBuffer::Get(size_t bytes) {
  if (bytes > size_) {
    std::free(data_);
    size_ = AlignUp(bytes + bytes / 4, 64);  // grow with headroom
    data_ = std::aligned_alloc(64, size_);
    if (data_ == nullptr) std::abort();
  }
  return data_;
}

}  // namespace internal

namespace {

// Runs fn(row_begin, row_end) over the rows, on the pool when there is one.
template <typename F>
void ForRows(ThreadPool* pool, int64_t rows, const F& fn) {
  if (pool == nullptr || pool->size() == 1) {
    fn(int64_t{0}, rows);
    return;
  }
  pool->ParallelFor(rows, 16, [&fn](int64_t b, int64_t e) { fn(b, e); });
}

template <typename F>
void ForTokens(ThreadPool* pool, int64_t n_tokens, const F& fn) {
  if (pool == nullptr || n_tokens < 2) {
    fn(int64_t{0}, n_tokens);
    return;
  }
  pool->ParallelFor(n_tokens, 1, [&fn](int64_t b, int64_t e) { fn(b, e); });
}

#if !defined(PICE_KERNELS_AVX512VNNI)
// Activations converted for the portable path, reused across calls on this thread.
thread_local internal::ScratchBuffer g_portable_scratch;

void MatMulPortable(const Matrix& w, const float* x, int64_t n_tokens, float* y,
                    ThreadPool* pool) {
  const int64_t cols = w.cols, rows = w.rows;
  const uint8_t* wd = static_cast<const uint8_t*>(w.data);
  switch (w.type) {
    case gguf::GgmlType::kQ8_0:
    case gguf::GgmlType::kQ4_0: {
      const int64_t nb = cols / kQK;
      BlockQ8_0* xq = static_cast<BlockQ8_0*>(
          g_portable_scratch.Get(static_cast<size_t>(n_tokens * nb) * sizeof(BlockQ8_0)));
      ForTokens(pool, n_tokens, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) QuantizeRowQ8_0(x + t * cols, xq + t * nb, cols);
      });
      const bool q4 = w.type == gguf::GgmlType::kQ4_0;
      ForRows(pool, rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const void* row = wd + r * w.row_bytes;
          for (int64_t t = 0; t < n_tokens; ++t) {
            y[t * rows + r] =
                q4 ? DotQ4_0Q8_0(static_cast<const BlockQ4_0*>(row), xq + t * nb, cols)
                   : DotQ8_0Q8_0(static_cast<const BlockQ8_0*>(row), xq + t * nb, cols);
          }
        }
      });
      return;
    }
    case gguf::GgmlType::kF16: {
      uint16_t* xh = static_cast<uint16_t*>(
          g_portable_scratch.Get(static_cast<size_t>(n_tokens * cols) * sizeof(uint16_t)));
      for (int64_t i = 0; i < n_tokens * cols; ++i) xh[i] = Fp32ToFp16(x[i]);
      ForRows(pool, rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const uint16_t* row = reinterpret_cast<const uint16_t*>(wd + r * w.row_bytes);
          for (int64_t t = 0; t < n_tokens; ++t) {
            y[t * rows + r] = DotF16F16(row, xh + t * cols, cols);
          }
        }
      });
      return;
    }
    case gguf::GgmlType::kF32: {
      ForRows(pool, rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const float* row = reinterpret_cast<const float*>(wd + r * w.row_bytes);
          for (int64_t t = 0; t < n_tokens; ++t) {
            y[t * rows + r] = DotF32(row, x + t * cols, cols);
          }
        }
      });
      return;
    }
  }
  std::abort();
}
#endif  // !PICE_KERNELS_AVX512VNNI

// The types with a DotKernel (Q4_1, Q5_0, Q5_1, the K-quants, BF16): activations
// converted once per token row, then every weight row dotted with every token.
thread_local internal::ScratchBuffer g_kernel_scratch;
void MatMulKernel(const DotKernel& k, const Matrix& w, const float* x, int64_t n_tokens,
                  float* y, ThreadPool* pool) {
  const int64_t cols = w.cols, rows = w.rows;
  const int64_t act = k.act_bytes(cols);
  uint8_t* xq = static_cast<uint8_t*>(g_kernel_scratch.Get(static_cast<size_t>(n_tokens * act)));
  ForTokens(pool, n_tokens, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) k.quantize(x + t * cols, xq + t * act, cols);
  });
  const uint8_t* wd = static_cast<const uint8_t*>(w.data);
  ForRows(pool, rows, [&](int64_t r0, int64_t r1) {
    float out[16];
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* row = wd + r * w.row_bytes;
      if (k.dot_n != nullptr && n_tokens > 1) {
        for (int64_t t0 = 0; t0 < n_tokens; t0 += 16) {
          const int nt = static_cast<int>(std::min<int64_t>(16, n_tokens - t0));
          k.dot_n(row, xq + t0 * act, act, nt, cols, out);
          for (int t = 0; t < nt; ++t) y[(t0 + t) * rows + r] = out[t];
        }
        continue;
      }
      for (int64_t t = 0; t < n_tokens; ++t) y[t * rows + r] = k.dot(row, xq + t * act, cols);
    }
  });
}

}  // namespace

void MatMul(const Matrix& w, const float* x, int64_t n_tokens, float* y, ThreadPool* pool) {
  if (n_tokens <= 0 || w.rows <= 0) return;
#if defined(PICE_KERNELS_AVX512VNNI)
  // Q5_0 goes through the AVX-512 tiles like Q4_0 (its DotKernel is the other builds').
  const bool tiles = w.type == gguf::GgmlType::kQ5_0;
#else
  const bool tiles = false;
#endif
  if (const DotKernel* k = KernelFor(w.type); k != nullptr && !tiles) {
    MatMulKernel(*k, w, x, n_tokens, y, pool);
    return;
  }
#if defined(PICE_KERNELS_AVX512VNNI)
  internal::MatMulAvx512(w, x, n_tokens, y, pool);
#else
  MatMulPortable(w, x, n_tokens, y, pool);
#endif
}

// ---- packing ---------------------------------------------------------------------------

namespace {

#if defined(PICE_KERNELS_AVX512VNNI)
// Packed weights live in anonymous memory, on huge pages where the kernel allows: the
// decode streams all of them per token, and 2 MiB pages spare the TLB.
uint8_t* AllocPacked(size_t bytes) {
#if defined(__linux__)
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) std::abort();
#if defined(MADV_HUGEPAGE)
  if (bytes >= (size_t{2} << 20)) madvise(p, bytes, MADV_HUGEPAGE);
#endif
#if defined(MADV_POPULATE_WRITE)
  // Fault it in with one call (Linux >= 5.14; elsewhere the packing faults it in):
  // about as fast as the packing's own faults, and keeps them out of its threads.
  madvise(p, bytes, MADV_POPULATE_WRITE);
#endif
  return static_cast<uint8_t*>(p);
#else
  void* p = std::aligned_alloc(64, internal::AlignUp(bytes, 64));
  if (p == nullptr) std::abort();
  return static_cast<uint8_t*>(p);
#endif
}

// An unfilled PackedWeights for w, or nullptr when w is not packed.
std::unique_ptr<PackedWeights> AllocPackedWeights(const Matrix& w) {
  const int64_t tb = internal::PackedTileBytes(w.type, w.cols);
  if (tb == 0 || w.rows <= 0) return nullptr;
  auto p = std::make_unique<PackedWeights>();
  p->type = w.type;
  p->rows = w.rows;
  p->cols = w.cols;
  p->tile_bytes = tb;
  const int64_t n_tiles = (w.rows + internal::kPackTileRows - 1) / internal::kPackTileRows;
  p->bytes = static_cast<size_t>(n_tiles * tb);
  p->data = AllocPacked(p->bytes);
  return p;
}
#endif

}  // namespace

PackedWeights::~PackedWeights() {
  if (data == nullptr) return;
#if defined(__linux__)
  munmap(data, bytes);
#else
  std::free(data);
#endif
}

std::unique_ptr<PackedWeights> PackWeights(const Matrix& w) {
#if defined(PICE_KERNELS_AVX512VNNI)
  auto p = AllocPackedWeights(w);
  if (p != nullptr) internal::PackTiles(w, 0, int64_t(p->bytes) / p->tile_bytes, p->data);
  return p;
#else
  (void)w;
  return nullptr;
#endif
}

void PackMatrices(const std::vector<Matrix*>& ms, int n_threads,
                  std::vector<std::unique_ptr<PackedWeights>>* owners,
                  const std::function<void(const void*, size_t)>& release) {
#if defined(PICE_KERNELS_AVX512VNNI)
  // Jobs of up to 64 tiles (~1-2 MB for common widths), claimed dynamically.
  struct Job {
    const Matrix* m;
    PackedWeights* p;
    int64_t tile_begin, tile_end;
  };
  constexpr int64_t kJobTiles = 64;
  std::vector<Job> jobs;
  for (Matrix* m : ms) {
    std::unique_ptr<PackedWeights> p = AllocPackedWeights(*m);
    if (p == nullptr) continue;
    const int64_t n_tiles = int64_t(p->bytes) / p->tile_bytes;
    for (int64_t b = 0; b < n_tiles; b += kJobTiles) {
      jobs.push_back(Job{m, p.get(), b, std::min(n_tiles, b + kJobTiles)});
    }
    m->packed = p.get();
    owners->push_back(std::move(p));
  }
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < jobs.size();) {
      const Job& j = jobs[i];
      internal::PackTiles(*j.m, j.tile_begin, j.tile_end, j.p->data + j.tile_begin * j.p->tile_bytes);
      if (release) {
        const int64_t r0 = j.tile_begin * internal::kPackTileRows;
        const int64_t r1 = std::min(j.m->rows, j.tile_end * internal::kPackTileRows);
        release(static_cast<const uint8_t*>(j.m->data) + r0 * j.m->row_bytes,
                static_cast<size_t>((r1 - r0) * j.m->row_bytes));
      }
    }
  };
  const int n = int(std::max<int64_t>(1, std::min<int64_t>(n_threads, int64_t(jobs.size()))));
  std::vector<std::thread> threads;
  for (int i = 1; i < n; ++i) threads.emplace_back(work);
  work();
  for (std::thread& t : threads) t.join();
  // Again over each whole matrix: a thread reading its rows maps back the whole folio
  // around them (2 MB for a large folio), neighbours' released pages included.
  if (release) {
    for (const Matrix* m : ms) {
      if (m->packed != nullptr) release(m->data, static_cast<size_t>(m->rows * m->row_bytes));
    }
  }
#else
  (void)ms;
  (void)n_threads;
  (void)owners;
  (void)release;
#endif
}

void MatMulRef(const Matrix& w, const float* x, int64_t n_tokens, float* y) {
  if (const DotKernel* k = KernelFor(w.type, /*reference=*/true)) {
    MatMulKernel(*k, w, x, n_tokens, y, nullptr);
    return;
  }
  const int64_t cols = w.cols, rows = w.rows;
  const uint8_t* wd = static_cast<const uint8_t*>(w.data);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * cols;
    switch (w.type) {
      case gguf::GgmlType::kQ8_0:
      case gguf::GgmlType::kQ4_0: {
        std::vector<BlockQ8_0> xq(cols / kQK);
        ref::QuantizeRowQ8_0(xt, xq.data(), cols);
        for (int64_t r = 0; r < rows; ++r) {
          const void* row = wd + r * w.row_bytes;
          y[t * rows + r] =
              w.type == gguf::GgmlType::kQ4_0
                  ? ref::DotQ4_0Q8_0(static_cast<const BlockQ4_0*>(row), xq.data(), cols)
                  : ref::DotQ8_0Q8_0(static_cast<const BlockQ8_0*>(row), xq.data(), cols);
        }
        break;
      }
      case gguf::GgmlType::kF16: {
        std::vector<uint16_t> xh(cols);
        for (int64_t i = 0; i < cols; ++i) xh[i] = internal::Fp32ToFp16Scalar(xt[i]);
        for (int64_t r = 0; r < rows; ++r) {
          y[t * rows + r] = ref::DotF16F16(
              reinterpret_cast<const uint16_t*>(wd + r * w.row_bytes), xh.data(), cols);
        }
        break;
      }
      case gguf::GgmlType::kF32:
        for (int64_t r = 0; r < rows; ++r) {
          y[t * rows + r] =
              ref::DotF32(reinterpret_cast<const float*>(wd + r * w.row_bytes), xt, cols);
        }
        break;
      default:
        std::abort();
    }
  }
}

}  // namespace pice::kernels
