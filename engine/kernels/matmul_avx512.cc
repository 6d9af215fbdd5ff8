// MatMul for x86 with AVX-512 F/BW/VL + VNNI.
//
// Quantized weights (Q8_0, Q4_0) against activations rounded to Q8_0 blocks:
//  - Every block's integer dot is exact: the weight side is fed to vpdpbusd as
//    unsigned bytes (Q8_0: w ^ 0x80 = w + 128; Q4_0: the raw nibbles 0..15) and the
//    activation as signed bytes; the offset (128 or 8) times the activation block sum
//    is subtracted by starting the int32 accumulator at corr = -offset * sum(x).
//  - Few tokens (decode): kernel A streams the weight rows straight from the model,
//    4 rows at a time sharing each activation load, one 512-bit vpdpbusd per two blocks.
//  - Many tokens (prefill/batches): kernel B repacks 16 rows into a tile whose dword
//    lane r holds 4 bytes of row r, then for 8 tokens at a time broadcasts 4 activation
//    bytes per vpdpbusd (512-bit): 16 rows x 8 tokens of int32 accumulators per block.
// F16 / F32 weights: register-blocked FMA over 4 rows x up to 6 tokens, F16 widened with
// vcvtph2ps; F16 activations are rounded to FP16 first (as ggml) and kept as floats.
#include "engine/kernels/kernels_internal.h"

#if defined(PICE_KERNELS_AVX512VNNI)

#include <algorithm>
#include <atomic>
#include <cstdlib>

#include "engine/threadpool.h"

namespace pice::kernels::internal {
namespace {

// At or below this many tokens, kernel A (no repacking) is used. Measured: from two
// tokens on, kernel B's single pass over the weights beats kernel A's pass per token.
constexpr int64_t kMaxTokensKernelA = 1;
constexpr int kTileRows = 16;             // kernel B rows per tile
constexpr int kTileTokens = 8;            // kernel B tokens per register block
constexpr int64_t kTileBlockBytes = 576;  // 8 x 64 bytes of weights + 16 float scales

thread_local ScratchBuffer g_act_scratch;   // activations, on the calling thread
thread_local ScratchBuffer g_tile_scratch;  // repacked weight tile, per thread

// Activations for quantized weights, block-major: block k of token t is entry k*nt+t.
// Kernel B reads them block-major (block k of token t is entry k*nt+t); kernel A reads
// them token-major (entry t*nb+k) plus, per pair of blocks (k, k+1) = (2p, 2p+1), the
// 16-lane vectors that its 512-bit steps use.
struct QActs {
  const int8_t* qs;      // [nb*nt][32], 32-byte aligned entries
  const float* dx;       // [nb*nt] scales
  const int32_t* corr;   // [nb*nt] = -offset * sum(qs)
  const float* dx2;      // token-major only: [nt][nb/2][16] = dx[k] x8, dx[k+1] x8
  const int32_t* corr2;  // token-major only: [nt][nb/2][16] = corr[k], 0 x7, corr[k+1], 0 x7
  int64_t nt;
  int64_t nb;
  bool token_major;
};

// Calls f(task) for task in [0, n_tasks), over the pool (whose ParallelFor hands out
// chunks dynamically).
template <typename F>
void ParallelTasks(ThreadPool* pool, int64_t n_tasks, const F& f) {
  if (pool == nullptr || pool->size() == 1 || n_tasks <= 1) {
    for (int64_t i = 0; i < n_tasks; ++i) f(i);
    return;
  }
  pool->ParallelFor(n_tasks, 1, [&f](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) f(i);
  });
}

inline float Hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __mmask16 RowMask(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
}

QActs PrepareQActs(const float* x, int64_t nt, int64_t cols, int32_t offset, bool token_major,
                   ThreadPool* pool) {
  const int64_t nb = cols / kQK, np = nb / 2;
  const size_t n = static_cast<size_t>(nb * nt);
  const size_t qs_bytes = AlignUp(n * 32, 64), f_bytes = AlignUp(n * 4, 64);
  const size_t v_bytes = token_major ? static_cast<size_t>(nt * np) * 64 : 0;
  uint8_t* base =
      static_cast<uint8_t*>(g_act_scratch.Get(qs_bytes + 2 * f_bytes + 2 * v_bytes));
  int8_t* qs = reinterpret_cast<int8_t*>(base);
  float* dx = reinterpret_cast<float*>(base + qs_bytes);
  int32_t* corr = reinterpret_cast<int32_t*>(base + qs_bytes + f_bytes);
  float* dx2 = reinterpret_cast<float*>(base + qs_bytes + 2 * f_bytes);
  int32_t* corr2 = reinterpret_cast<int32_t*>(base + qs_bytes + 2 * f_bytes + v_bytes);
  auto quantize = [&](int64_t t) {
    for (int64_t k = 0; k < nb; ++k) {
      BlockQ8_0 b;
      const int32_t sum = QuantizeBlockQ8_0(x + t * cols + k * kQK, &b);
      const int64_t i = token_major ? t * nb + k : k * nt + t;
      std::memcpy(qs + i * 32, b.qs, 32);
      dx[i] = Fp16ToFp32Fast(b.d);
      corr[i] = -offset * sum;
    }
    if (token_major) {
      for (int64_t p = 0; p < np; ++p) {
        const int64_t i = t * nb + 2 * p, v = (t * np + p) * 16;
        for (int j = 0; j < 8; ++j) {
          dx2[v + j] = dx[i];
          dx2[v + 8 + j] = dx[i + 1];
          corr2[v + j] = j == 0 ? corr[i] : 0;
          corr2[v + 8 + j] = j == 0 ? corr[i + 1] : 0;
        }
      }
    }
  };
  if (nt >= 4) {
    ParallelTasks(pool, nt, quantize);
  } else {
    for (int64_t t = 0; t < nt; ++t) quantize(t);
  }
  return QActs{qs, dx, corr, dx2, corr2, nt, nb, token_major};
}

// ---- kernel A: R rows x 1 token, weights read in place ------------------------------

template <bool kQ4>
inline __m256i LoadWeightU8(const uint8_t* row, int64_t k) {
  if constexpr (kQ4) {
    const BlockQ4_0* b = reinterpret_cast<const BlockQ4_0*>(row) + k;
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qs));
    const __m128i m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
  } else {
    const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(row) + k;
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs)),
                            _mm256_set1_epi8(static_cast<char>(0x80)));
  }
}

template <bool kQ4>
inline uint16_t WeightScale(const uint8_t* row, int64_t k) {
  if constexpr (kQ4) {
    return (reinterpret_cast<const BlockQ4_0*>(row) + k)->d;
  } else {
    return (reinterpret_cast<const BlockQ8_0*>(row) + k)->d;
  }
}

// Blocks k and k+1 of a row as one vector of unsigned bytes: lanes 0..7 hold block k,
// lanes 8..15 block k+1, matching the token-major activation pair.
template <bool kQ4>
inline __m512i LoadWeightPairU8(const uint8_t* row, int64_t k) {
  if constexpr (kQ4) {
    const BlockQ4_0* b = reinterpret_cast<const BlockQ4_0*>(row) + k;
#if defined(__AVX512VBMI__)
    // One masked 36-byte load, one byte permute placing each block's 16 bytes twice,
    // then a per-16-bit-lane shift (0 for low nibbles, 4 for high) and a mask.
    const __m512i raw = _mm512_maskz_loadu_epi8(0xFFFFFFFFFull, b);
    const __m512i idx = _mm512_set_epi8(
        35, 34, 33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20,
        35, 34, 33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20,
        17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2,
        17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2);
    const __m512i shift = _mm512_set_epi64(0x0004000400040004, 0x0004000400040004, 0, 0,
                                           0x0004000400040004, 0x0004000400040004, 0, 0);
    return _mm512_and_si512(_mm512_srlv_epi16(_mm512_permutexvar_epi8(idx, raw), shift),
                            _mm512_set1_epi8(0x0F));
#else
    const __m256i q = _mm256_set_m128i(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[1].qs)),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[0].qs)));
    const __m256i m = _mm256_set1_epi8(0x0F);
    const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(q, m)),
                                         _mm256_and_si256(_mm256_srli_epi16(q, 4), m), 1);
    // [lo k, lo k+1, hi k, hi k+1] -> [lo k, hi k, lo k+1, hi k+1]
    return _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0));
#endif
  } else {
    const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(row) + k;
    const __m512i v = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[0].qs))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[1].qs)), 1);
    return _mm512_xor_si512(v, _mm512_set1_epi8(static_cast<char>(0x80)));
  }
}

// The FP16 scales of blocks k, k+1 widened to [d_k x8, d_k+1 x8].
template <bool kQ4>
inline __m512 WeightScalePair(const uint8_t* row, int64_t k) {
  const __m256i h = _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(WeightScale<kQ4>(row, k + 1))),
                                     _mm_set1_epi16(static_cast<short>(WeightScale<kQ4>(row, k))));
  return _mm512_cvtph_ps(h);
}

// out[r] = dot(row r, token t) for r < R; rows start at w0, row_bytes apart; `a` is
// token-major. Two blocks per 512-bit step.
// Rows are short (~1 KB) and read R at a time, which the hardware prefetchers follow
// poorly; when `prefetch_rows` > 0 the kernel prefetches (into L2) the rows that far
// ahead at the same offsets, which streams at close to the memory bandwidth.
template <int R, bool kQ4>
void KernelA(const uint8_t* w0, int64_t row_bytes, int64_t nb, const QActs& a, int64_t t,
             float* out, int64_t prefetch_rows) {
  constexpr int64_t kBlockBytes = kQ4 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0);
  const int64_t pf_off = prefetch_rows * row_bytes;
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const int8_t* xq = a.qs + t * nb * 32;
  const int64_t np = nb / 2;
  const float* dx2 = a.dx2 + t * np * 16;
  const int32_t* corr2 = a.corr2 + t * np * 16;
  for (int64_t p = 0; p < np; ++p) {
    const int64_t k = 2 * p;
    const __m512i xk = _mm512_loadu_si512(xq + k * 32);
    const __m512i init = _mm512_load_si512(corr2 + p * 16);
    const __m512 dxv = _mm512_load_ps(dx2 + p * 16);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const uint8_t* row = w0 + r * row_bytes;
      if (pf_off != 0) {
        const char* pf = reinterpret_cast<const char*>(row + pf_off + k * kBlockBytes);
        _mm_prefetch(pf, _MM_HINT_T1);
        if constexpr (2 * kBlockBytes > 64) _mm_prefetch(pf + 2 * kBlockBytes - 1, _MM_HINT_T1);
      }
      const __m512i dp = _mm512_dpbusd_epi32(init, LoadWeightPairU8<kQ4>(row, k), xk);
      const __m512 d = _mm512_mul_ps(WeightScalePair<kQ4>(row, k), dxv);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), d, acc[r]);
    }
  }
  float tail[R] = {};
  if (nb & 1) {  // last block alone, 256-bit
    const int64_t k = nb - 1;
    const __m256i xk = _mm256_load_si256(reinterpret_cast<const __m256i*>(xq + k * 32));
    const __m256i init = _mm256_zextsi128_si256(_mm_cvtsi32_si128(a.corr[t * nb + k]));
    const float dxk = a.dx[t * nb + k];
    for (int r = 0; r < R; ++r) {
      const uint8_t* row = w0 + r * row_bytes;
      const __m256i dp = _mm256_dpbusd_epi32(init, LoadWeightU8<kQ4>(row, k), xk);
      tail[r] = Hsum256(_mm256_cvtepi32_ps(dp)) * (Fp16ToFp32Fast(WeightScale<kQ4>(row, k)) * dxk);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]) + tail[r];
}

template <bool kQ4>
void MatVecQuant(const Matrix& w, const QActs& a, float* y, ThreadPool* pool) {
  const int64_t rows = w.rows, nb = w.cols / kQK;
  const int nth = pool ? pool->size() : 1;
  // ~8 tasks per thread for balance on a shared machine, at least 16 rows each.
  const int64_t chunk = std::max<int64_t>(16, AlignUp(rows / (nth * 8) + 1, 4));
  const int64_t n_tasks = (rows + chunk - 1) / chunk;
  const uint8_t* wd = static_cast<const uint8_t*>(w.data);
  // Prefetch ~16 KB ahead, in whole groups of 4 rows.
  const int64_t pf_rows = std::clamp<int64_t>(AlignUp(16384 / w.row_bytes + 1, 4), 4, 64);
  ParallelTasks(pool, n_tasks, [&](int64_t task) {
    const int64_t r0 = task * chunk, r1 = std::min(rows, r0 + chunk);
    for (int64_t t = 0; t < a.nt; ++t) {
      float* yt = y + t * rows;
      int64_t r = r0;
      for (; r + 4 <= r1; r += 4) {
        const int64_t pf = r + 4 + pf_rows <= rows ? pf_rows : 0;  // stay inside the matrix
        KernelA<4, kQ4>(wd + r * w.row_bytes, w.row_bytes, nb, a, t, yt + r, pf);
      }
      for (; r < r1; ++r) KernelA<1, kQ4>(wd + r * w.row_bytes, w.row_bytes, nb, a, t, yt + r, 0);
    }
  });
}

// ---- kernel B: 16 rows x up to 8 tokens from a repacked tile -------------------------

// Repacks rows [r0, r0 + n_rows) (n_rows <= 16) into `tile`: per block, 8 vectors whose
// dword lane r holds weight bytes 4g..4g+3 of row r as unsigned (Q8_0: w + 128, Q4_0:
// nibbles), then 16 float scales. Missing rows are zero. With `prefetch`, the next 16
// rows (which must exist) are prefetched into L2 at the same offsets.
template <bool kQ4>
void RepackTile(const uint8_t* w0, int64_t row_bytes, int64_t nb, int64_t n_rows,
                uint8_t* tile, bool prefetch) {
  const __mmask16 m = RowMask(n_rows);
  const __m512i idx = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
      _mm512_set1_epi32(static_cast<int32_t>(row_bytes)));
  const __m512i zero = _mm512_setzero_si512();
  const int64_t block_bytes = kQ4 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0);
  for (int64_t k = 0; k < nb; ++k) {
    const uint8_t* b = w0 + k * block_bytes;
    uint8_t* out = tile + k * kTileBlockBytes;
    if (prefetch) {
      for (int r = kTileRows; r < 2 * kTileRows; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(b + r * row_bytes), _MM_HINT_T1);
      }
    }
    const __m512i d16 = _mm512_mask_i32gather_epi32(zero, m, idx, b, 1);
    _mm512_store_ps(out + 512, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d16)));
    if constexpr (kQ4) {
      const __m512i lo = _mm512_set1_epi8(0x0F);
      for (int g = 0; g < 4; ++g) {
        const __m512i v = _mm512_mask_i32gather_epi32(zero, m, idx, b + 2 + 4 * g, 1);
        _mm512_store_si512(out + 64 * g, _mm512_and_si512(v, lo));
        _mm512_store_si512(out + 64 * (g + 4), _mm512_and_si512(_mm512_srli_epi32(v, 4), lo));
      }
    } else {
      const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
      for (int g = 0; g < 8; ++g) {
        const __m512i v = _mm512_mask_i32gather_epi32(zero, m, idx, b + 2 + 4 * g, 1);
        _mm512_store_si512(out + 64 * g, _mm512_xor_si512(v, flip));
      }
    }
  }
}

// y[t * ldy + r] = dot(tile row r, token t0 + t) for t < T and rows in `mask`.
template <int T>
void KernelB(const uint8_t* tile, int64_t nb, const QActs& a, int64_t t0, float* y,
             int64_t ldy, __mmask16 mask) {
  __m512 out[T];
  for (int t = 0; t < T; ++t) out[t] = _mm512_setzero_ps();
  const int64_t nt = a.nt;
  for (int64_t k = 0; k < nb; ++k) {
    const uint8_t* tk = tile + k * kTileBlockBytes;
    const int8_t* xk = a.qs + (k * nt + t0) * 32;
    const int32_t* ck = a.corr + k * nt + t0;
    const float* dk = a.dx + k * nt + t0;
    __m512i acc[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[t] = _mm512_set1_epi32(ck[t]);
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
      const __m512i wg = _mm512_load_si512(tk + 64 * g);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        int32_t xv;
        std::memcpy(&xv, xk + 32 * t + 4 * g, 4);
        acc[t] = _mm512_dpbusd_epi32(acc[t], wg, _mm512_set1_epi32(xv));
      }
    }
    const __m512 dw = _mm512_load_ps(tk + 512);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      out[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[t]),
                               _mm512_mul_ps(dw, _mm512_set1_ps(dk[t])), out[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(y + t * ldy, mask, out[t]);
}

using KernelBFn = void (*)(const uint8_t*, int64_t, const QActs&, int64_t, float*, int64_t,
                           __mmask16);
constexpr KernelBFn kKernelB[kTileTokens + 1] = {
    nullptr,     KernelB<1>, KernelB<2>, KernelB<3>, KernelB<4>,
    KernelB<5>, KernelB<6>, KernelB<7>, KernelB<8>};

template <bool kQ4>
void GemmQuant(const Matrix& w, const QActs& a, float* y, ThreadPool* pool) {
  const int64_t rows = w.rows, nb = w.cols / kQK, nt = a.nt;
  const int64_t n_tiles = (rows + kTileRows - 1) / kTileRows;
  const int nth = pool ? pool->size() : 1;
  // Consecutive tiles per task (~8 tasks per thread), so the prefetch of the next tile
  // usually serves this thread.
  const int64_t tiles_per_task = std::max<int64_t>(1, n_tiles / (nth * 8));
  const int64_t n_tasks = (n_tiles + tiles_per_task - 1) / tiles_per_task;
  const uint8_t* wd = static_cast<const uint8_t*>(w.data);
  ParallelTasks(pool, n_tasks, [&](int64_t task) {
    uint8_t* tile = static_cast<uint8_t*>(g_tile_scratch.Get(nb * kTileBlockBytes));
    const int64_t tile_end = std::min(n_tiles, (task + 1) * tiles_per_task);
    for (int64_t tile_i = task * tiles_per_task; tile_i < tile_end; ++tile_i) {
      const int64_t r0 = tile_i * kTileRows;
      const int64_t n_rows = std::min<int64_t>(kTileRows, rows - r0);
      RepackTile<kQ4>(wd + r0 * w.row_bytes, w.row_bytes, nb, n_rows, tile,
                      r0 + 2 * kTileRows <= rows);
      const __mmask16 mask = RowMask(n_rows);
      for (int64_t t0 = 0; t0 < nt; t0 += kTileTokens) {
        const int64_t tn = std::min<int64_t>(kTileTokens, nt - t0);
        kKernelB[tn](tile, nb, a, t0, y + t0 * rows + r0, rows, mask);
      }
    }
  });
}

// ---- F16 / F32 weights ---------------------------------------------------------------

constexpr int kFTokens = 6;  // tokens per register block (4 rows x 6 tokens = 24 zmm)

template <bool kF16>
inline __m512 LoadW(const uint8_t* row, int64_t k, __mmask16 m) {
  if constexpr (kF16) {
    return _mm512_cvtph_ps(
        _mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(row) + k));
  } else {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + k);
  }
}

// y[t * ldy + r] = dot(row r, xs[t]) for r < R, t < T.
template <int R, int T, bool kF16>
void KernelF(const uint8_t* w0, int64_t row_bytes, const float* xs, int64_t cols, float* y,
             int64_t ldy) {
  __m512 acc[R][T];
  // Every loop over acc is fully unrolled so that GCC keeps it in registers.
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < cols; k += 16) {
    const __mmask16 m = RowMask(cols - k);
    __m512 wv[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) wv[r] = LoadW<kF16>(w0 + r * row_bytes, k, m);
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, xs + t * cols + k);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
}

template <int T, bool kF16>
void KernelFRows(const uint8_t* w0, int64_t row_bytes, int64_t n_rows, const float* xs,
                 int64_t cols, float* y, int64_t ldy) {
  int64_t r = 0;
  for (; r + 4 <= n_rows; r += 4) KernelF<4, T, kF16>(w0 + r * row_bytes, row_bytes, xs, cols, y + r, ldy);
  for (; r < n_rows; ++r) KernelF<1, T, kF16>(w0 + r * row_bytes, row_bytes, xs, cols, y + r, ldy);
}

template <bool kF16>
void MatMulFloat(const Matrix& w, const float* xs, int64_t nt, float* y, ThreadPool* pool) {
  const int64_t rows = w.rows, cols = w.cols;
  const int nth = pool ? pool->size() : 1;
  const int64_t chunk = std::max<int64_t>(16, AlignUp(rows / (nth * 8) + 1, 4));
  const int64_t n_tasks = (rows + chunk - 1) / chunk;
  const uint8_t* wd = static_cast<const uint8_t*>(w.data);
  ParallelTasks(pool, n_tasks, [&](int64_t task) {
    const int64_t r0 = task * chunk, n_rows = std::min(rows, r0 + chunk) - r0;
    // Token tiles outside, so the chunk's rows stay in cache across tiles.
    for (int64_t t0 = 0; t0 < nt; t0 += kFTokens) {
      const float* xt = xs + t0 * cols;
      float* yt = y + t0 * rows + r0;
      const uint8_t* w0 = wd + r0 * w.row_bytes;
      switch (std::min<int64_t>(kFTokens, nt - t0)) {
        case 1: KernelFRows<1, kF16>(w0, w.row_bytes, n_rows, xt, cols, yt, rows); break;
        case 2: KernelFRows<2, kF16>(w0, w.row_bytes, n_rows, xt, cols, yt, rows); break;
        case 3: KernelFRows<3, kF16>(w0, w.row_bytes, n_rows, xt, cols, yt, rows); break;
        case 4: KernelFRows<4, kF16>(w0, w.row_bytes, n_rows, xt, cols, yt, rows); break;
        case 5: KernelFRows<5, kF16>(w0, w.row_bytes, n_rows, xt, cols, yt, rows); break;
        default: KernelFRows<6, kF16>(w0, w.row_bytes, n_rows, xt, cols, yt, rows); break;
      }
    }
  });
}

}  // namespace

void MatMulAvx512(const Matrix& w, const float* x, int64_t n_tokens, float* y,
                  ThreadPool* pool) {
  switch (w.type) {
    case gguf::GgmlType::kQ8_0:
    case gguf::GgmlType::kQ4_0: {
      const bool q4 = w.type == gguf::GgmlType::kQ4_0;
      const bool kernel_a = n_tokens <= kMaxTokensKernelA;
      const QActs a = PrepareQActs(x, n_tokens, w.cols, q4 ? 8 : 128, kernel_a, pool);
      if (kernel_a) {
        q4 ? MatVecQuant<true>(w, a, y, pool) : MatVecQuant<false>(w, a, y, pool);
      } else {
        q4 ? GemmQuant<true>(w, a, y, pool) : GemmQuant<false>(w, a, y, pool);
      }
      return;
    }
    case gguf::GgmlType::kF16: {
      const int64_t cols = w.cols;
      float* xs = static_cast<float*>(g_act_scratch.Get(static_cast<size_t>(n_tokens * cols) * 4));
      auto round_token = [&](int64_t t) {
        const float* src = x + t * cols;
        float* dst = xs + t * cols;
        int64_t i = 0;
        for (; i + 16 <= cols; i += 16) {
          const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
          _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
        }
        for (; i < cols; ++i) dst[i] = Fp16ToFp32Fast(Fp32ToFp16(src[i]));
      };
      if (n_tokens >= 4) {
        ParallelTasks(pool, n_tokens, round_token);
      } else {
        for (int64_t t = 0; t < n_tokens; ++t) round_token(t);
      }
      MatMulFloat<true>(w, xs, n_tokens, y, pool);
      return;
    }
    case gguf::GgmlType::kF32:
      MatMulFloat<false>(w, x, n_tokens, y, pool);
      return;
  }
  std::abort();
}

}  // namespace pice::kernels::internal

#endif  // PICE_KERNELS_AVX512VNNI
