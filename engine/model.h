// An immutable, loaded GGUF model: hyper-parameters, weights (pointing into the mapped
// file) and tokenizer. Shared read-only by any number of Contexts.
#ifndef PICE_ENGINE_MODEL_H_
#define PICE_ENGINE_MODEL_H_

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/gguf/gguf.h"
#include "engine/kernels/kernels.h"
#include "engine/tokenizer/tokenizer.h"

namespace pice {

enum class Arch { kLlama, kQwen2 };

struct HParams {
  Arch arch = Arch::kLlama;
  std::string arch_name;    // general.architecture
  std::string name;         // general.name, or the file name
  int n_vocab = 0;
  int n_embd = 0;
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;         // n_embd / n_head unless attention.key_length says otherwise
  int n_ff = 0;
  int n_ctx_train = 0;
  int n_rot = 0;            // rotated dimensions per head (rope.dimension_count)
  float rms_eps = 1e-5f;
  float rope_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // 1 / rope.scaling.factor for linear scaling
  bool rope_neox = false;   // NEOX layout (pairs i, i + n_rot/2) vs adjacent pairs
};

struct LayerWeights {
  const float* attn_norm = nullptr;  // [n_embd]
  kernels::Matrix wq, wk, wv, wo;    // wq: rows n_head*head_dim, cols n_embd
  const float* bq = nullptr;         // optional biases (qwen2)
  const float* bk = nullptr;
  const float* bv = nullptr;
  const float* ffn_norm = nullptr;   // [n_embd]
  kernels::Matrix w_gate, w_up;      // rows n_ff, cols n_embd
  kernels::Matrix w_down;            // rows n_embd, cols n_ff
};

class Model {
 public:
  // Maps `path`, validates that every tensor the architecture needs is present with the
  // right shape and a supported type, and builds the tokenizer. Errors name the file
  // and the key or tensor at fault.
  static absl::StatusOr<std::unique_ptr<Model>> Load(const std::string& path);

  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const HParams& hparams() const { return hp_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const gguf::GgufFile& file() const { return *file_; }
  const std::string& path() const { return file_->path(); }

  const kernels::Matrix& token_embd() const { return token_embd_; }
  const kernels::Matrix& output() const { return output_; }  // may alias token_embd
  const float* output_norm() const { return output_norm_; }
  const float* rope_freq_factors() const { return rope_freqs_; }  // optional [n_rot/2]
  const std::vector<LayerWeights>& layers() const { return layers_; }
  // Bytes of weights read per decoded token (all matrices + norms).
  size_t weight_bytes() const { return weight_bytes_; }

 private:
  Model() = default;

  std::unique_ptr<gguf::GgufFile> file_;
  std::unique_ptr<Tokenizer> tokenizer_;
  HParams hp_;
  kernels::Matrix token_embd_, output_;
  const float* output_norm_ = nullptr;
  const float* rope_freqs_ = nullptr;
  std::vector<LayerWeights> layers_;
  std::deque<std::vector<float>> vectors_;  // norms and biases, copied out of the file
  size_t weight_bytes_ = 0;
  // The matrices repacked at load for the compiled MatMul path (Matrix::packed points
  // here); empty when that path reads the file in place.
  std::vector<std::unique_ptr<kernels::PackedWeights>> packed_;
};

}  // namespace pice

#endif  // PICE_ENGINE_MODEL_H_
