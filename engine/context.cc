#include "engine/context.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace pice {
namespace {

// y = x / sqrt(mean(x^2) + eps) * w, summing squares in double as ggml does.
void RmsNorm(const float* x, const float* w, float* y, int n, float eps) {
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += double(x[i] * x[i]);
  const float mean = float(sum / n);
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

// Rotates the first 2*n_pairs dimensions of each of n_heads heads of `x`.
// neox: pairs (i, i + n_rot/2); otherwise adjacent pairs (2i, 2i + 1).
void Rope(float* x, int n_heads, int head_dim, int n_pairs, bool neox, const float* cos_t,
          const float* sin_t) {
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + size_t(h) * head_dim;
    for (int i = 0; i < n_pairs; ++i) {
      const int a = neox ? i : 2 * i;
      const int b = neox ? i + n_pairs : 2 * i + 1;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cos_t[i] - x1 * sin_t[i];
      v[b] = x0 * sin_t[i] + x1 * cos_t[i];
    }
  }
}

inline float Silu(float x) { return x / (1.0f + std::exp(-x)); }

}  // namespace

Context::Context(const Model& model, int n_threads)
    : model_(model), pool_(std::max(1, n_threads)) {}

void Context::EnsureCapacity(int n_tokens, int n_out) {
  const HParams& hp = model_.hparams();
  if (n_tokens > cap_tokens_) {
    cap_tokens_ = n_tokens;
    const size_t T = size_t(n_tokens);
    const size_t q_dim = size_t(hp.n_head) * hp.head_dim, kv_dim = size_t(hp.n_head_kv) * hp.head_dim;
    x_.resize(T * hp.n_embd);
    xn_.resize(T * std::max<size_t>(hp.n_embd, q_dim));
    q_.resize(T * q_dim);
    k_.resize(T * kv_dim);
    v_.resize(T * kv_dim);
    att_.resize(T * q_dim);
    ffn_a_.resize(T * hp.n_ff);
    ffn_b_.resize(T * hp.n_ff);
    tmp_.resize(T * hp.n_embd);
    rope_cos_.resize(T * std::max(1, hp.n_rot / 2));
    rope_sin_.resize(T * std::max(1, hp.n_rot / 2));
  }
  if (n_out > cap_out_) {
    cap_out_ = n_out;
    logits_.resize(size_t(n_out) * hp.n_vocab);
  }
}

const float* Context::Logits(int entry, int i) const {
  if (entry < 0 || entry >= int(out_offset_.size())) return nullptr;
  const int n = out_count_[entry];
  if (i < 0) i = n - 1;
  if (i >= n) return nullptr;
  return logits_.data() + size_t(out_offset_[entry] + i) * model_.hparams().n_vocab;
}

absl::Status Context::Decode(std::span<const SeqInput> batch) {
  const HParams& hp = model_.hparams();
  // Validate everything before touching any state.
  int T = 0, n_out = 0;
  for (size_t e = 0; e < batch.size(); ++e) {
    const SeqInput& in = batch[e];
    if (in.kv == nullptr || in.n_tokens <= 0 || in.tokens == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("batch entry ", e, " has no tokens"));
    }
    for (size_t f = 0; f < e; ++f) {
      if (batch[f].kv == in.kv) {
        return absl::InvalidArgumentError("a sequence appears twice in one batch");
      }
    }
    for (int i = 0; i < in.n_tokens; ++i) {
      if (in.tokens[i] < 0 || in.tokens[i] >= hp.n_vocab) {
        return absl::InvalidArgumentError(absl::StrCat("token id ", in.tokens[i],
                                                       " is outside the vocabulary [0, ", hp.n_vocab, ")"));
      }
    }
    T += in.n_tokens;
    n_out += in.all_logits ? in.n_tokens : 1;
  }
  if (T == 0) return absl::OkStatus();
  for (const SeqInput& in : batch) {
    absl::Status s = in.kv->Reserve(in.n_tokens);
    if (!s.ok()) return s;
  }
  EnsureCapacity(T, n_out);

  const int n_embd = hp.n_embd, hd = hp.head_dim, n_head = hp.n_head, n_kv = hp.n_head_kv;
  const int q_dim = n_head * hd, kv_dim = n_kv * hd, n_ff = hp.n_ff, n_pairs = hp.n_rot / 2;
  const int group = n_head / n_kv;
  const float kq_scale = 1.0f / std::sqrt(float(hd));
  // xn = RMSNorm(x) * w for every token; per token, so any split gives the same values.
  auto NormRows = [&](const float* w, int n_rows) {
    auto rows = [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        RmsNorm(&x_[size_t(t) * n_embd], w, &xn_[size_t(t) * n_embd], n_embd, hp.rms_eps);
      }
    };
    if (n_rows >= 4) pool_.ParallelFor(n_rows, 1, rows); else rows(0, n_rows);
  };

  // Per-token bookkeeping: which entry, which position.
  std::vector<int> tok_entry(T), tok_pos(T);
  {
    int t = 0;
    for (size_t e = 0; e < batch.size(); ++e) {
      for (int i = 0; i < batch[e].n_tokens; ++i, ++t) {
        tok_entry[t] = int(e);
        tok_pos[t] = batch[e].kv->n_past() + i;
      }
    }
  }

  // Embeddings. The rows are read from the file, not through the mapping: a tied
  // embedding's mapped pages were released once `output` was packed, and faulting them
  // back (the kernel maps whole folios around each row) would make the model resident
  // twice over a long run.
  const kernels::Matrix& emb = model_.token_embd();
  {
    thread_local std::vector<uint8_t> row_bytes;
    row_bytes.resize(size_t(emb.row_bytes));
    int t = 0;
    for (const SeqInput& in : batch) {
      for (int i = 0; i < in.n_tokens; ++i, ++t) {
        const uint8_t* row = static_cast<const uint8_t*>(emb.data) + size_t(in.tokens[i]) * emb.row_bytes;
        model_.file().CopyOut(row, row_bytes.size(), row_bytes.data());
        kernels::DequantizeRow(emb.type, row_bytes.data(), x_.data() + size_t(t) * n_embd, n_embd);
      }
    }
  }

  // RoPE angles per token, computed as ggml does: theta_i = p * base^(-2i/n_rot),
  // the power taken by repeated multiplication in float.
  if (n_pairs > 0) {
    const float theta_scale = std::pow(hp.rope_base, -2.0f / float(hp.n_rot));
    const float* ff = model_.rope_freq_factors();
    for (int t = 0; t < T; ++t) {
      float theta = float(tok_pos[t]);
      for (int i = 0; i < n_pairs; ++i) {
        const float th = hp.rope_freq_scale * (ff ? theta / ff[i] : theta);
        rope_cos_[size_t(t) * n_pairs + i] = std::cos(th);
        rope_sin_[size_t(t) * n_pairs + i] = std::sin(th);
        theta *= theta_scale;
      }
    }
  }

  for (int il = 0; il < hp.n_layer; ++il) {
    const LayerWeights& L = model_.layers()[il];
    NormRows(L.attn_norm, T);
    kernels::MatMul(L.wq, xn_.data(), T, q_.data(), &pool_);
    kernels::MatMul(L.wk, xn_.data(), T, k_.data(), &pool_);
    kernels::MatMul(L.wv, xn_.data(), T, v_.data(), &pool_);
    for (int t = 0; t < T; ++t) {
      float* q = &q_[size_t(t) * q_dim];
      float* k = &k_[size_t(t) * kv_dim];
      float* v = &v_[size_t(t) * kv_dim];
      if (L.bq) for (int i = 0; i < q_dim; ++i) q[i] += L.bq[i];
      if (L.bk) for (int i = 0; i < kv_dim; ++i) k[i] += L.bk[i];
      if (L.bv) for (int i = 0; i < kv_dim; ++i) v[i] += L.bv[i];
      if (n_pairs > 0) {
        const float* c = &rope_cos_[size_t(t) * n_pairs];
        const float* s = &rope_sin_[size_t(t) * n_pairs];
        Rope(q, n_head, hd, n_pairs, hp.rope_neox, c, s);
        Rope(k, n_kv, hd, n_pairs, hp.rope_neox, c, s);
      }
      KvCache* kv = batch[tok_entry[t]].kv;
      std::memcpy(kv->K(il, tok_pos[t]), k, sizeof(float) * kv_dim);
      std::memcpy(kv->V(il, tok_pos[t]), v, sizeof(float) * kv_dim);
    }

    // Causal attention, one task per (token, KV head): the `group` query heads that share
    // a KV head read each cached key and value row once. Per query head the arithmetic
    // and its order are those of one head alone.
    pool_.ParallelFor(int64_t(T) * n_kv, 1, [&](int64_t begin, int64_t end) {
      thread_local std::vector<float> scores, mx, inv;  // [group][n_keys], [group], [group]
      if (mx.size() < size_t(group)) {
        mx.resize(group);
        inv.resize(group);
      }
      for (int64_t task = begin; task < end; ++task) {
        const int t = int(task / n_kv), kvh = int(task % n_kv), h0 = kvh * group;
        const KvCache* kv = batch[tok_entry[t]].kv;
        const int n_keys = tok_pos[t] + 1;
        if (scores.size() < size_t(group) * n_keys) scores.resize(size_t(group) * n_keys);
        const float* q0 = &q_[size_t(t) * q_dim + size_t(h0) * hd];
        for (int g = 0; g < group; ++g) mx[g] = -INFINITY;
        for (int j = 0; j < n_keys; ++j) {
          const float* kr = kv->K(il, j) + size_t(kvh) * hd;
          for (int g = 0; g < group; ++g) {
            const float sc = kernels::DotF32(q0 + size_t(g) * hd, kr, hd) * kq_scale;
            scores[size_t(g) * n_keys + j] = sc;
            mx[g] = std::max(mx[g], sc);
          }
        }
        for (int g = 0; g < group; ++g) {
          float* sg = &scores[size_t(g) * n_keys];
          double sum = 0.0;
          for (int j = 0; j < n_keys; ++j) {
            const float e = std::exp(sg[j] - mx[g]);
            sg[j] = e;
            sum += e;
          }
          inv[g] = float(1.0 / sum);
        }
        float* out0 = &att_[size_t(t) * q_dim + size_t(h0) * hd];
        std::fill(out0, out0 + size_t(group) * hd, 0.0f);
        for (int j = 0; j < n_keys; ++j) {
          const float* vr = kv->V(il, j) + size_t(kvh) * hd;
          for (int g = 0; g < group; ++g) {
            const float w = scores[size_t(g) * n_keys + j] * inv[g];
            float* out = out0 + size_t(g) * hd;
            for (int d = 0; d < hd; ++d) out[d] += w * vr[d];
          }
        }
      }
    });

    kernels::MatMul(L.wo, att_.data(), T, tmp_.data(), &pool_);
    for (size_t i = 0; i < size_t(T) * n_embd; ++i) x_[i] += tmp_[i];

    NormRows(L.ffn_norm, T);
    kernels::MatMul(L.w_gate, xn_.data(), T, ffn_a_.data(), &pool_);
    kernels::MatMul(L.w_up, xn_.data(), T, ffn_b_.data(), &pool_);
    // SwiGLU, elementwise (so any split over threads gives the same values).
    const int64_t n_act = int64_t(T) * n_ff;
    auto swiglu = [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ffn_a_[i] = Silu(ffn_a_[i]) * ffn_b_[i];
    };
    if (n_act >= 16384) pool_.ParallelFor(n_act, 4096, swiglu); else swiglu(0, n_act);
    kernels::MatMul(L.w_down, ffn_a_.data(), T, tmp_.data(), &pool_);
    for (size_t i = 0; i < size_t(T) * n_embd; ++i) x_[i] += tmp_[i];
  }

  // Final norm and output projection, only for the rows that want logits.
  out_offset_.assign(batch.size(), 0);
  out_count_.assign(batch.size(), 0);
  int row = 0, t0 = 0;
  for (size_t e = 0; e < batch.size(); ++e) {
    const SeqInput& in = batch[e];
    out_offset_[e] = row;
    const int first = in.all_logits ? 0 : in.n_tokens - 1;
    for (int i = first; i < in.n_tokens; ++i, ++row) {
      RmsNorm(&x_[size_t(t0 + i) * n_embd], model_.output_norm(), &xn_[size_t(row) * n_embd], n_embd,
              hp.rms_eps);
    }
    out_count_[e] = in.n_tokens - first;
    t0 += in.n_tokens;
  }
  kernels::MatMul(model_.output(), xn_.data(), row, logits_.data(), &pool_);
  for (const SeqInput& in : batch) in.kv->Commit(in.n_tokens);
  return absl::OkStatus();
}

}  // namespace pice
