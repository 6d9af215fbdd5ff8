// MatMul for x86 with AVX-512 F/BW/VL + VNNI.
//
// Quantized weights (Q8_0, Q4_0) against activations rounded to Q8_0 blocks:
//  - The weights are read from tiles of 16 rows (see "Packed tiles" below), built once
//    at model load by PackWeights, or per call into a scratch buffer for a Matrix
//    without `packed` (tests, other callers): both run the same kernel.
//  - Every block's integer dot is exact: the weight side is fed to vpdpbusd as
//    unsigned bytes (Q8_0: w ^ 0x80 = w + 128; Q4_0: the raw nibbles 0..15) and the
//    activation as signed bytes; the offset (128 or 8) times the activation block sum
//    is subtracted by starting the int32 accumulator at corr = -offset * sum(x).
//  - One kernel for every number of tokens: NT tiles (16 rows each) x T tokens of int32
//    accumulators per block, 4 activation bytes broadcast per vpdpbusd (512-bit).
//    NT and T only choose the register blocking. Each output is, whatever they are:
//      out = 0; for k = 0, 1, ..., nb-1: out = fma(float(isum_k), d_w[k] * d_x[k], out)
//    (the isum_k are exact integers), so a token's results do not depend on n_tokens,
//    its position in the batch, the thread count or the pool: batch invariance.
// F16 / F32 weights: register-blocked FMA over 4 rows x up to 6 tokens, F16 widened with
// vcvtph2ps; F16 activations are rounded to FP16 first (as ggml) and kept as floats.
// Each (row, token) has its own accumulator, walked over the columns in the same order
// and reduced the same way for any blocking, so these are batch invariant too.
#include "engine/kernels/kernels_internal.h"

#if defined(PICE_KERNELS_AVX512VNNI)

#include <algorithm>
#include <array>
#include <atomic>
#include <utility>
#include <cstdlib>

#include "engine/threadpool.h"

namespace pice::kernels::internal {
namespace {

// ---- Packed tiles ---------------------------------------------------------------------
//
// A tile holds 16 rows (the last tile of a matrix may hold fewer; the missing rows are
// zero). Its blocks are stored in pairs (2p, 2p+1); a pair is, 64-byte aligned:
//   qs of block 2p, qs of block 2p+1, FP16 scales of block 2p (16 x 2 bytes), of 2p+1.
// qs of a block, as vectors g whose dword lane r holds 4 bytes of row r:
//   Q8_0: 8 vectors, g = bytes 4g..4g+3 as unsigned (w ^ 0x80), 512 bytes;
//   Q4_0: 4 vectors, g = packed bytes 4g..4g+3 (low nibbles: elements 4g..4g+3, high
//         nibbles: elements 16+4g..16+4g+3), 256 bytes, unpacked in the kernel;
//   Q5_0: Q4_0's 4 vectors, then one vector of each row's 32 fifth bits rearranged
//         (Q5Bits) so that the kernel moves the 4 bits of group g to bit 4 of their bytes
//         with one shift and one mask; 320 bytes.
// So a tile has the file's bytes (Q4_0 and Q5_0 exactly, Q8_0 plus nothing: 34 bytes per
// row and block either way), plus one pair's padding for an odd block count.
// Kinds (template parameter kK): 0 = Q8_0, 1 = Q4_0, 2 = Q5_0.
constexpr int kTileRows = static_cast<int>(kPackTileRows);
constexpr int kMaxTokens = 8;   // tokens per register block
constexpr int kGroupTiles = 4;  // tiles per group: the weights reused across token blocks

template <int kK>
constexpr int64_t kQsBytes = kK == 0 ? 512 : kK == 1 ? 256 : 320;
template <int kK>
constexpr int64_t kPairBytes = 2 * kQsBytes<kK> + 64;

int64_t TileBytes(int kind, int64_t nb) {
  const int64_t pair = kind == 0 ? kPairBytes<0> : kind == 1 ? kPairBytes<1> : kPairBytes<2>;
  return (nb + 1) / 2 * pair;
}

// The kind of a packed weight type; -1 when the tiles do not take it.
int KindOf(gguf::GgmlType t) {
  return t == gguf::GgmlType::kQ8_0 ? 0 : t == gguf::GgmlType::kQ4_0 ? 1 : t == gguf::GgmlType::kQ5_0 ? 2 : -1;
}

// A Q5_0 row's fifth bits (bit e = element e) rearranged: element 4g+b (b < 4) at bit
// 8b+4+g, element 16+4g+b at bit 8b+g. Then (w >> g) & 0x10101010 holds group g's low
// elements' bits at bit 4 of bytes 0..3, and (w << (4-g)) & 0x10101010 the high ones'.
uint32_t Q5Bits(uint32_t qh) {
  uint32_t w = 0;
  for (int g = 0; g < 4; ++g) {
    for (int b = 0; b < 4; ++b) {
      w |= ((qh >> (4 * g + b)) & 1u) << (8 * b + 4 + g);
      w |= ((qh >> (16 + 4 * g + b)) & 1u) << (8 * b + g);
    }
  }
  return w;
}

thread_local ScratchBuffer g_act_scratch;   // activations, on the calling thread
thread_local ScratchBuffer g_tile_scratch;  // tiles packed per call, per thread

// Activations for quantized weights, block-major: block k of token t is entry k*nt+t.
struct QActs {
  const int8_t* qs;     // [nb*nt][32]
  const float* dx;      // [nb*nt] scales
  const int32_t* corr;  // [nb*nt] = -offset * sum(qs)
  int64_t nt;
  int64_t nb;
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

inline __mmask16 RowMask(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
}

QActs PrepareQActs(const float* x, int64_t nt, int64_t cols, int32_t offset, ThreadPool* pool) {
  const int64_t nb = cols / kQK;
  const size_t n = static_cast<size_t>(nb * nt);
  const size_t qs_bytes = AlignUp(n * 32, 64), f_bytes = AlignUp(n * 4, 64);
  uint8_t* base = static_cast<uint8_t*>(g_act_scratch.Get(qs_bytes + 2 * f_bytes));
  int8_t* qs = reinterpret_cast<int8_t*>(base);
  float* dx = reinterpret_cast<float*>(base + qs_bytes);
  int32_t* corr = reinterpret_cast<int32_t*>(base + qs_bytes + f_bytes);
  auto quantize = [&](int64_t t) {
    for (int64_t k = 0; k < nb; ++k) {
      BlockQ8_0 b;
      const int32_t sum = QuantizeBlockQ8_0(x + t * cols + k * kQK, &b);
      const int64_t i = k * nt + t;
      std::memcpy(qs + i * 32, b.qs, 32);
      dx[i] = Fp16ToFp32Fast(b.d);
      corr[i] = -offset * sum;
    }
  };
  if (nt >= 4) {
    ParallelTasks(pool, nt, quantize);
  } else {
    for (int64_t t = 0; t < nt; ++t) quantize(t);
  }
  return QActs{qs, dx, corr, nt, nb};
}

// Packs rows [0, n_rows) (n_rows <= 16) of the matrix at w0 into `tile` (layout above).
template <int kK>
void PackTile(const uint8_t* w0, int64_t row_bytes, int64_t nb, int64_t n_rows, uint8_t* tile) {
  constexpr int64_t kQs = kQsBytes<kK>, kPair = kPairBytes<kK>;
  constexpr bool kQ4 = kK != 0;
  const __mmask16 m = RowMask(n_rows);
  const __m512i idx = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
      _mm512_set1_epi32(static_cast<int32_t>(row_bytes)));
  const __m512i zero = _mm512_setzero_si512();
  const int64_t block_bytes =
      kK == 0 ? sizeof(BlockQ8_0) : kK == 1 ? sizeof(BlockQ4_0) : sizeof(BlockQ5_0);
  const int64_t qs_at = kK == 2 ? 6 : 2;  // the nibbles (or bytes) after d (and qh)
  for (int64_t k = 0; k < nb; ++k) {
    const uint8_t* b = w0 + k * block_bytes;
    uint8_t* qs = tile + (k >> 1) * kPair + (k & 1) * kQs;
    uint8_t* sc = tile + (k >> 1) * kPair + 2 * kQs + (k & 1) * 32;
    // 4 bytes from the start of each block: the FP16 scale in the low half.
    const __m512i d16 = _mm512_mask_i32gather_epi32(zero, m, idx, b, 1);
    _mm256_store_si256(reinterpret_cast<__m256i*>(sc), _mm512_cvtepi32_epi16(d16));
    if constexpr (kK == 2) {
      alignas(64) uint32_t qh[16];
      _mm512_store_si512(qh, _mm512_mask_i32gather_epi32(zero, m, idx, b + 2, 1));
      for (int r = 0; r < 16; ++r) qh[r] = Q5Bits(qh[r]);
      _mm512_store_si512(qs + 256, _mm512_load_si512(qh));
    }
    for (int g = 0; g < (kK == 0 ? 8 : 4); ++g) {
      const __m512i v = _mm512_mask_i32gather_epi32(zero, m, idx, b + qs_at + 4 * g, 1);
      _mm512_store_si512(qs + 64 * g,
                         kQ4 ? v : _mm512_xor_si512(v, _mm512_set1_epi8(static_cast<char>(0x80))));
    }
  }
  if (nb & 1) {  // the unused half of the last pair
    uint8_t* p = tile + (nb >> 1) * kPair;
    std::memset(p + kQs, 0, kQs);
    std::memset(p + 2 * kQs + 32, 0, 32);
  }
}

// For tiles j < NT (at tile + j * tile_bytes, rows 16j..16j+15) and tokens t < T:
// y[t * ldy + 16j + i] = dot(row i of tile j, token t0 + t). The rows of tile NT-1 are
// stored under `last_mask`. With pf_dist != 0, every line read is also prefetched (into
// L2) pf_dist bytes further on.
template <int kK, int NT, int T>
void TileKernel(const uint8_t* tile, int64_t tile_bytes, int64_t nb, const QActs& a, int64_t t0,
                float* y, int64_t ldy, __mmask16 last_mask, int64_t pf_dist) {
  constexpr int64_t kQs = kQsBytes<kK>, kPair = kPairBytes<kK>;
  __m512 out[NT][T];
#pragma GCC unroll 4
  for (int j = 0; j < NT; ++j)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) out[j][t] = _mm512_setzero_ps();
  const int64_t nt = a.nt;
  for (int64_t k = 0; k < nb; ++k) {
    const uint8_t* pair = tile + (k >> 1) * kPair;
    const int64_t qoff = (k & 1) * kQs;
    // Prefetches go with the loads, one line per weight vector (and the scales' line
    // once per pair): issued in a burst per pair they measured 20% slower at 8 tokens.
    // (Written out, not as a lambda: GCC takes a function of only prefetches for a
    // pure one and drops its calls.)
#define PICE_PREFETCH_LINE(j, g)                                                           \
  if (pf_dist != 0) {                                                                    \
    const char* pf = reinterpret_cast<const char*>(pair + (j) * tile_bytes + pf_dist);  \
    _mm_prefetch(pf + qoff + 64 * (g), _MM_HINT_T1);                                     \
    if ((g) == 0 && (k & 1) != 0) _mm_prefetch(pf + 2 * kQs, _MM_HINT_T1);               \
  }
    const int8_t* xk = a.qs + (k * nt + t0) * 32;
    const int32_t* ck = a.corr + k * nt + t0;
    const float* dk = a.dx + k * nt + t0;
    __m512i acc[NT][T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512i c = _mm512_set1_epi32(ck[t]);
#pragma GCC unroll 4
      for (int j = 0; j < NT; ++j) acc[j][t] = c;
    }
    if constexpr (kK != 0) {
      const __m512i m = _mm512_set1_epi8(0x0F);
      [[maybe_unused]] __m512i h5[NT];
      if constexpr (kK == 2) {
#pragma GCC unroll 4
        for (int j = 0; j < NT; ++j) h5[j] = _mm512_load_si512(pair + j * tile_bytes + qoff + 256);
      }
#pragma GCC unroll 4
      for (int g = 0; g < 4; ++g) {
        __m512i lo[NT], hi[NT];
#pragma GCC unroll 4
        for (int j = 0; j < NT; ++j) {
          const __m512i v = _mm512_load_si512(pair + j * tile_bytes + qoff + 64 * g);
          PICE_PREFETCH_LINE(j, g)
          lo[j] = _mm512_and_si512(v, m);
          hi[j] = _mm512_and_si512(_mm512_srli_epi32(v, 4), m);
          if constexpr (kK == 2) {
            const __m512i b4 = _mm512_set1_epi8(0x10);
            lo[j] = _mm512_or_si512(lo[j], _mm512_and_si512(_mm512_srl_epi32(h5[j], _mm_cvtsi32_si128(g)), b4));
            hi[j] = _mm512_or_si512(hi[j], _mm512_and_si512(_mm512_sll_epi32(h5[j], _mm_cvtsi32_si128(4 - g)), b4));
          }
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          int32_t xl, xh;
          std::memcpy(&xl, xk + 32 * t + 4 * g, 4);
          std::memcpy(&xh, xk + 32 * t + 16 + 4 * g, 4);
          const __m512i bl = _mm512_set1_epi32(xl), bh = _mm512_set1_epi32(xh);
#pragma GCC unroll 4
          for (int j = 0; j < NT; ++j) {
            acc[j][t] = _mm512_dpbusd_epi32(acc[j][t], lo[j], bl);
            acc[j][t] = _mm512_dpbusd_epi32(acc[j][t], hi[j], bh);
          }
        }
      }
    } else {
#pragma GCC unroll 8
      for (int g = 0; g < 8; ++g) {
        __m512i wv[NT];
#pragma GCC unroll 4
        for (int j = 0; j < NT; ++j) {
          wv[j] = _mm512_load_si512(pair + j * tile_bytes + qoff + 64 * g);
          PICE_PREFETCH_LINE(j, g)
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          int32_t xv;
          std::memcpy(&xv, xk + 32 * t + 4 * g, 4);
          const __m512i b = _mm512_set1_epi32(xv);
#pragma GCC unroll 4
          for (int j = 0; j < NT; ++j) acc[j][t] = _mm512_dpbusd_epi32(acc[j][t], wv[j], b);
        }
      }
    }
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) {
      const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256(
          reinterpret_cast<const __m256i*>(pair + j * tile_bytes + 2 * kQs + (k & 1) * 32)));
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        out[j][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[j][t]),
                                    _mm512_mul_ps(dw, _mm512_set1_ps(dk[t])), out[j][t]);
      }
    }
  }
#undef PICE_PREFETCH_LINE
#pragma GCC unroll 4
  for (int j = 0; j < NT; ++j)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      if (j + 1 < NT) {
        _mm512_storeu_ps(y + t * ldy + 16 * j, out[j][t]);
      } else {
        _mm512_mask_storeu_ps(y + t * ldy + 16 * j, last_mask, out[j][t]);
      }
    }
}

using TileKernelFn = void (*)(const uint8_t*, int64_t, int64_t, const QActs&, int64_t, float*,
                              int64_t, __mmask16, int64_t);

// Tiles per kernel call for a block of T tokens (the register budget: NT * T int32 and
// as many float accumulators).
constexpr int TilesFor(int T) { return T <= 2 ? 4 : T <= 4 ? 2 : 1; }

template <int kK, int NT, int... Ts>
constexpr std::array<TileKernelFn, kMaxTokens + 1> KernelRow(std::integer_sequence<int, Ts...>) {
  return {nullptr, (TilesFor(Ts + 1) >= NT ? &TileKernel<kK, NT, Ts + 1> : nullptr)...};
}

// kKernels<kind>[log2 NT][T]
template <int kK>
constexpr std::array<std::array<TileKernelFn, kMaxTokens + 1>, 3> kKernels = {
    KernelRow<kK, 1>(std::make_integer_sequence<int, kMaxTokens>()),
    KernelRow<kK, 2>(std::make_integer_sequence<int, kMaxTokens>()),
    KernelRow<kK, 4>(std::make_integer_sequence<int, kMaxTokens>())};

template <int kK>
void GemmQuant(const Matrix& w, const QActs& a, float* y, ThreadPool* pool) {
  const int64_t rows = w.rows, nb = a.nb, nt = a.nt;
  const int64_t n_tiles = (rows + kTileRows - 1) / kTileRows;
  const int64_t tb = TileBytes(kK, nb);
  const uint8_t* packed = w.packed != nullptr ? w.packed->data : nullptr;
  const int nth = pool ? pool->size() : 1;
  // ~8 tasks per thread for balance on a shared machine, in whole groups.
  const int64_t tiles_per_task =
      std::max<int64_t>(kGroupTiles, n_tiles / (nth * 8) / kGroupTiles * kGroupTiles);
  const int64_t n_tasks = (n_tiles + tiles_per_task - 1) / tiles_per_task;
  const __mmask16 tail_mask = RowMask(rows - (n_tiles - 1) * kTileRows);
  ParallelTasks(pool, n_tasks, [&](int64_t task) {
    const int64_t task_end = std::min(n_tiles, (task + 1) * tiles_per_task);
    for (int64_t g0 = task * tiles_per_task; g0 < task_end; g0 += kGroupTiles) {
      const int64_t ng = std::min<int64_t>(kGroupTiles, task_end - g0);
      const uint8_t* group;
      if (packed != nullptr) {
        group = packed + g0 * tb;
      } else {
        uint8_t* scratch = static_cast<uint8_t*>(g_tile_scratch.Get(kGroupTiles * tb));
        PackTiles(w, g0, g0 + ng, scratch);
        group = scratch;
      }
      for (int64_t t0 = 0; t0 < nt; t0 += kMaxTokens) {
        const int T = static_cast<int>(std::min<int64_t>(kMaxTokens, nt - t0));
        int64_t j = 0;
        for (int lg = 2; lg >= 0; --lg) {
          const int n = 1 << lg;
          if (n > TilesFor(T)) continue;
          for (; j + n <= ng; j += n) {
            const __mmask16 mask = g0 + j + n == n_tiles ? tail_mask : static_cast<__mmask16>(0xFFFF);
            // The first token block reads the tiles from memory: it prefetches the
            // tiles that the next call will read (n further on), when they exist.
            const bool pf = packed != nullptr && t0 == 0 && g0 + j + 2 * n <= n_tiles;
            kKernels<kK>[lg][T](group + j * tb, tb, nb, a, t0, y + t0 * rows + (g0 + j) * kTileRows,
                                 rows, mask, pf ? n * tb : 0);
          }
        }
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

int64_t PackedTileBytes(gguf::GgmlType type, int64_t cols) {
  const int kind = KindOf(type);
  return kind < 0 ? 0 : TileBytes(kind, cols / kQK);
}

void PackTiles(const Matrix& w, int64_t tile_begin, int64_t tile_end, uint8_t* dst) {
  const int kind = KindOf(w.type);
  const int64_t nb = w.cols / kQK, tb = TileBytes(kind, nb);
  const uint8_t* wd = static_cast<const uint8_t*>(w.data);
  for (int64_t i = tile_begin; i < tile_end; ++i) {
    const int64_t r0 = i * kTileRows, n_rows = std::min<int64_t>(kTileRows, w.rows - r0);
    uint8_t* tile = dst + (i - tile_begin) * tb;
    const uint8_t* src = wd + r0 * w.row_bytes;
    if (kind == 0) PackTile<0>(src, w.row_bytes, nb, n_rows, tile);
    if (kind == 1) PackTile<1>(src, w.row_bytes, nb, n_rows, tile);
    if (kind == 2) PackTile<2>(src, w.row_bytes, nb, n_rows, tile);
  }
}

void MatMulAvx512(const Matrix& w, const float* x, int64_t n_tokens, float* y,
                  ThreadPool* pool) {
  switch (w.type) {
    case gguf::GgmlType::kQ8_0:
    case gguf::GgmlType::kQ4_0:
    case gguf::GgmlType::kQ5_0: {
      const int kind = KindOf(w.type);
      if (w.packed != nullptr &&
          (w.packed->type != w.type || w.packed->rows != w.rows || w.packed->cols != w.cols)) {
        std::abort();  // packed from another matrix
      }
      // The weights' offset (stored unsigned): Q8_0 bytes ^ 0x80, Q4_0 - 8, Q5_0 - 16.
      const QActs a = PrepareQActs(x, n_tokens, w.cols, kind == 0 ? 128 : kind == 1 ? 8 : 16, pool);
      if (kind == 0) GemmQuant<0>(w, a, y, pool);
      if (kind == 1) GemmQuant<1>(w, a, y, pool);
      if (kind == 2) GemmQuant<2>(w, a, y, pool);
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
