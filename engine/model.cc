#include "engine/model.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"

namespace pice {
namespace {

using gguf::GgmlType;
using gguf::GgufFile;
using gguf::TensorInfo;

class Loader {
 public:
  // `owned` keeps copies of the small vectors (norms, biases).
  Loader(const GgufFile& f, std::deque<std::vector<float>>* owned) : f_(f), owned_(owned) {}

  // A 2-D matrix of `rows` rows by `cols` columns (GGUF ne = {cols, rows}).
  absl::StatusOr<kernels::Matrix> Matrix(const std::string& name, int64_t cols, int64_t rows) {
    const TensorInfo* t = f_.FindTensor(name);
    if (t == nullptr) return Missing(name);
    if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != 1 || t->ne[3] != 1) {
      return Shape(*t, absl::StrCat(cols, " x ", rows));
    }
    bytes_ += t->nbytes;
    kernels::Matrix m;
    m.type = t->type;
    m.data = t->data;
    m.cols = cols;
    m.rows = rows;
    m.row_bytes = gguf::RowBytes(t->type, cols);
    return m;
  }

  // An F32 vector of n elements; optional ones return nullptr when absent.
  absl::StatusOr<const float*> Vector(const std::string& name, int64_t n, bool optional = false) {
    const TensorInfo* t = f_.FindTensor(name);
    if (t == nullptr) {
      if (optional) return static_cast<const float*>(nullptr);
      return Missing(name);
    }
    if (t->NumElements() != n || t->ne[0] != n) return Shape(*t, absl::StrCat(n));
    if (t->type != GgmlType::kF32) {
      return f_.Error(absl::StatusCode::kUnimplemented,
                      absl::StrCat("tensor '", name, "' is ", gguf::GgmlTypeName(uint32_t(t->type)),
                                   "; norm and bias vectors must be f32"));
    }
    bytes_ += t->nbytes;
    // Copied: they sit between the large matrices in the file, and reading one through
    // the mapping maps the whole folio around it (2 MB) back into the process.
    owned_->emplace_back(size_t(n));
    f_.CopyOut(t->data, size_t(n) * sizeof(float), owned_->back().data());
    return owned_->back().data();
  }

  size_t bytes() const { return bytes_; }

 private:
  absl::Status Missing(const std::string& name) {
    return f_.Error(absl::StatusCode::kInvalidArgument,
                    absl::StrCat("tensor '", name, "' is missing"));
  }
  absl::Status Shape(const TensorInfo& t, const std::string& want) {
    std::string got = absl::StrCat(t.ne[0]);
    for (int d = 1; d < t.n_dims; ++d) absl::StrAppend(&got, " x ", t.ne[d]);
    return f_.Error(absl::StatusCode::kInvalidArgument,
                    absl::StrCat("tensor '", t.name, "' has shape ", got, ", expected ", want,
                                 " for this architecture"));
  }

  const GgufFile& f_;
  std::deque<std::vector<float>>* owned_;
  size_t bytes_ = 0;
};

absl::Status CheckRange(const GgufFile& f, const std::string& key, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    return f.Error(absl::StatusCode::kInvalidArgument,
                   absl::StrCat("metadata key '", key, "' = ", v, " is out of range [", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}


absl::Status ReadHParams(const GgufFile& f, HParams* hp) {
  PICE_ASSIGN_OR_RETURN(hp->arch_name, f.GetString("general.architecture"));
  if (hp->arch_name == "llama") {
    hp->arch = Arch::kLlama;
    hp->rope_neox = false;
  } else if (hp->arch_name == "qwen2") {
    hp->arch = Arch::kQwen2;
    hp->rope_neox = true;
  } else {
    return f.Error(absl::StatusCode::kUnimplemented,
                   absl::StrCat("architecture '", hp->arch_name, "' is not supported (llama, qwen2)"));
  }
  const std::string a = hp->arch_name + ".";
  PICE_ASSIGN_OR_RETURN(hp->name, f.GetString("general.name", ""));
  int64_t v;
  PICE_ASSIGN_OR_RETURN(v, f.GetInt(a + "embedding_length"));
  PICE_RETURN_IF_ERROR(CheckRange(f, a + "embedding_length", v, 1, 1 << 16));
  hp->n_embd = int(v);
  PICE_ASSIGN_OR_RETURN(v, f.GetInt(a + "block_count"));
  PICE_RETURN_IF_ERROR(CheckRange(f, a + "block_count", v, 1, 1024));
  hp->n_layer = int(v);
  PICE_ASSIGN_OR_RETURN(v, f.GetInt(a + "attention.head_count"));
  PICE_RETURN_IF_ERROR(CheckRange(f, a + "attention.head_count", v, 1, 1024));
  hp->n_head = int(v);
  PICE_ASSIGN_OR_RETURN(v, f.GetInt(a + "attention.head_count_kv", hp->n_head));
  PICE_RETURN_IF_ERROR(CheckRange(f, a + "attention.head_count_kv", v, 1, hp->n_head));
  hp->n_head_kv = int(v);
  if (hp->n_head % hp->n_head_kv != 0) {
    return f.Error(absl::StatusCode::kInvalidArgument,
                   absl::StrCat("head_count ", hp->n_head, " is not a multiple of head_count_kv ", hp->n_head_kv));
  }
  PICE_ASSIGN_OR_RETURN(v, f.GetInt(a + "attention.key_length", hp->n_embd / hp->n_head));
  PICE_RETURN_IF_ERROR(CheckRange(f, a + "attention.key_length", v, 2, 1024));
  hp->head_dim = int(v);
  if (hp->head_dim % 2 != 0) {
    return f.Error(absl::StatusCode::kInvalidArgument, "head dimension must be even");
  }
  PICE_ASSIGN_OR_RETURN(v, f.GetInt(a + "feed_forward_length"));
  PICE_RETURN_IF_ERROR(CheckRange(f, a + "feed_forward_length", v, 1, 1 << 20));
  hp->n_ff = int(v);
  PICE_ASSIGN_OR_RETURN(v, f.GetInt(a + "context_length", 2048));
  PICE_RETURN_IF_ERROR(CheckRange(f, a + "context_length", v, 1, 1 << 24));
  hp->n_ctx_train = int(v);
  PICE_ASSIGN_OR_RETURN(v, f.GetInt(a + "rope.dimension_count", hp->head_dim));
  PICE_RETURN_IF_ERROR(CheckRange(f, a + "rope.dimension_count", v, 0, hp->head_dim));
  if (v % 2 != 0) return f.Error(absl::StatusCode::kInvalidArgument, "rope.dimension_count must be even");
  hp->n_rot = int(v);
  double d;
  PICE_ASSIGN_OR_RETURN(d, f.GetFloat(a + "attention.layer_norm_rms_epsilon", 1e-5));
  if (!(d > 0 && d < 1)) return f.Error(absl::StatusCode::kInvalidArgument, "layer_norm_rms_epsilon out of range");
  hp->rms_eps = float(d);
  PICE_ASSIGN_OR_RETURN(d, f.GetFloat(a + "rope.freq_base", 10000.0));
  if (!(d > 0 && std::isfinite(d))) return f.Error(absl::StatusCode::kInvalidArgument, "rope.freq_base must be positive");
  hp->rope_base = float(d);
  std::string scaling;
  PICE_ASSIGN_OR_RETURN(scaling, f.GetString(a + "rope.scaling.type", "none"));
  if (scaling == "linear") {
    PICE_ASSIGN_OR_RETURN(d, f.GetFloat(a + "rope.scaling.factor", 1.0));
    if (!(d >= 1 && std::isfinite(d))) return f.Error(absl::StatusCode::kInvalidArgument, "rope.scaling.factor must be >= 1");
    hp->rope_freq_scale = float(1.0 / d);
  } else if (scaling != "none") {
    return f.Error(absl::StatusCode::kUnimplemented,
                   absl::StrCat("rope.scaling.type '", scaling, "' is not supported (none, linear)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& path) {
  std::unique_ptr<Model> m(new Model());
  PICE_ASSIGN_OR_RETURN(m->file_, gguf::GgufFile::Open(path));
  const GgufFile& f = *m->file_;
  HParams& hp = m->hp_;
  PICE_RETURN_IF_ERROR(ReadHParams(f, &hp));
  if (hp.name.empty()) hp.name = path.substr(path.find_last_of('/') + 1);
  PICE_ASSIGN_OR_RETURN(m->tokenizer_, Tokenizer::FromGguf(f));

  const gguf::TensorInfo* embd = f.FindTensor("token_embd.weight");
  if (embd == nullptr) return f.Error(absl::StatusCode::kInvalidArgument, "tensor 'token_embd.weight' is missing");
  hp.n_vocab = int(embd->ne[1]);
  if (hp.n_vocab < m->tokenizer_->n_vocab()) {
    return f.Error(absl::StatusCode::kInvalidArgument,
                   absl::StrCat("token_embd.weight has ", hp.n_vocab, " rows but the vocabulary has ",
                                m->tokenizer_->n_vocab(), " tokens"));
  }

  Loader ld(f, &m->vectors_);
  const int64_t n_embd = hp.n_embd, q_dim = int64_t(hp.n_head) * hp.head_dim,
                kv_dim = int64_t(hp.n_head_kv) * hp.head_dim;
  PICE_ASSIGN_OR_RETURN(m->token_embd_, ld.Matrix("token_embd.weight", n_embd, hp.n_vocab));
  PICE_ASSIGN_OR_RETURN(m->output_norm_, ld.Vector("output_norm.weight", n_embd));
  if (f.FindTensor("output.weight") != nullptr) {
    PICE_ASSIGN_OR_RETURN(m->output_, ld.Matrix("output.weight", n_embd, hp.n_vocab));
  } else {
    m->output_ = m->token_embd_;  // tied embeddings
  }
  PICE_ASSIGN_OR_RETURN(m->rope_freqs_, ld.Vector("rope_freqs.weight", hp.n_rot / 2, true));
  const bool biases = hp.arch == Arch::kQwen2;
  m->layers_.resize(hp.n_layer);
  for (int il = 0; il < hp.n_layer; ++il) {
    const std::string p = absl::StrCat("blk.", il, ".");
    LayerWeights& L = m->layers_[il];
    PICE_ASSIGN_OR_RETURN(L.attn_norm, ld.Vector(p + "attn_norm.weight", n_embd));
    PICE_ASSIGN_OR_RETURN(L.wq, ld.Matrix(p + "attn_q.weight", n_embd, q_dim));
    PICE_ASSIGN_OR_RETURN(L.wk, ld.Matrix(p + "attn_k.weight", n_embd, kv_dim));
    PICE_ASSIGN_OR_RETURN(L.wv, ld.Matrix(p + "attn_v.weight", n_embd, kv_dim));
    PICE_ASSIGN_OR_RETURN(L.wo, ld.Matrix(p + "attn_output.weight", q_dim, n_embd));
    PICE_ASSIGN_OR_RETURN(L.bq, ld.Vector(p + "attn_q.bias", q_dim, !biases));
    PICE_ASSIGN_OR_RETURN(L.bk, ld.Vector(p + "attn_k.bias", kv_dim, !biases));
    PICE_ASSIGN_OR_RETURN(L.bv, ld.Vector(p + "attn_v.bias", kv_dim, !biases));
    PICE_ASSIGN_OR_RETURN(L.ffn_norm, ld.Vector(p + "ffn_norm.weight", n_embd));
    PICE_ASSIGN_OR_RETURN(L.w_gate, ld.Matrix(p + "ffn_gate.weight", n_embd, hp.n_ff));
    PICE_ASSIGN_OR_RETURN(L.w_up, ld.Matrix(p + "ffn_up.weight", n_embd, hp.n_ff));
    PICE_ASSIGN_OR_RETURN(L.w_down, ld.Matrix(p + "ffn_down.weight", hp.n_ff, n_embd));
  }
  // Repack the matrices the forward pass multiplies with (not token_embd, whose rows
  // are looked up in place; `output` gets its own packed copy even when tied).
  {
    std::vector<kernels::Matrix*> ms = {&m->output_};
    for (LayerWeights& L : m->layers_) {
      for (kernels::Matrix* x : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) ms.push_back(x);
    }
    const int n_threads = int(std::clamp<unsigned>(std::thread::hardware_concurrency(), 1, 4));
    // The packed copy is what the forward pass reads: the mapped pages of a packed
    // matrix go back (token_embd's too when tied: its rows fault in again when looked up).
    const gguf::GgufFile* file = m->file_.get();
    kernels::PackMatrices(ms, n_threads, &m->packed_,
                          [file](const void* p, size_t n) { file->Release(p, n); });
  }
  // The embedding is read one row per token, not whole, unless it doubles as output.
  m->weight_bytes_ = ld.bytes();
  if (m->output_.data != m->token_embd_.data) {
    m->weight_bytes_ -= size_t(m->token_embd_.row_bytes * m->token_embd_.rows);
  }
  return m;
}

}  // namespace pice
