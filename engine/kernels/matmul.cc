// MatMul entry point, its scalar reference, and the portable (non-AVX-512) path built
// on the Dot* kernels.
#include <atomic>
#include <cstdlib>
#include <vector>

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

#if !defined(PICE_KERNELS_AVX512VNNI)
// Activations converted for the portable path, reused across calls on this thread.
thread_local internal::ScratchBuffer g_portable_scratch;

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

}  // namespace

void MatMul(const Matrix& w, const float* x, int64_t n_tokens, float* y, ThreadPool* pool) {
  if (n_tokens <= 0 || w.rows <= 0) return;
#if defined(PICE_KERNELS_AVX512VNNI)
  internal::MatMulAvx512(w, x, n_tokens, y, pool);
#else
  MatMulPortable(w, x, n_tokens, y, pool);
#endif
}

void MatMulRef(const Matrix& w, const float* x, int64_t n_tokens, float* y) {
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
