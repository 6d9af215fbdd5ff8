// A port of llama.cpp's src/llama-quant.cpp (b4748): the counting pass and the
// "which tensors are quantized" test of llama_model_quantize_impl, and
// llama_tensor_get_type for the ftypes of MixNames() (the IQ*, Q2_K and Q3_K branches,
// MoE and Falcon rules do not apply to them or to llama/qwen2 and are left out).
#include "engine/quant_mix.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace pice {
namespace {

using gguf::GgmlType;

// llama_ftype values (llama.h).
enum class Ftype : uint32_t {
  kAllF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 7, kQ5_0 = 8, kQ5_1 = 9,
  kQ4_K_S = 14, kQ4_K_M = 15, kQ5_K_S = 16, kQ5_K_M = 17, kQ6_K = 18, kBF16 = 32,
};

struct Mix {
  const char* name;
  Ftype ftype;
  GgmlType base;
};

constexpr Mix kMixes[] = {
    {"q4_k_m", Ftype::kQ4_K_M, GgmlType::kQ4_K}, {"q4_k_s", Ftype::kQ4_K_S, GgmlType::kQ4_K},
    {"q5_k_m", Ftype::kQ5_K_M, GgmlType::kQ5_K}, {"q5_k_s", Ftype::kQ5_K_S, GgmlType::kQ5_K},
    {"q6_k", Ftype::kQ6_K, GgmlType::kQ6_K},     {"q8_0", Ftype::kQ8_0, GgmlType::kQ8_0},
    {"q4_0", Ftype::kQ4_0, GgmlType::kQ4_0},     {"q4_1", Ftype::kQ4_1, GgmlType::kQ4_1},
    {"q5_0", Ftype::kQ5_0, GgmlType::kQ5_0},     {"q5_1", Ftype::kQ5_1, GgmlType::kQ5_1},
    {"bf16", Ftype::kBF16, GgmlType::kBF16},     {"f16", Ftype::kF16, GgmlType::kF16},
    {"f32", Ftype::kAllF32, GgmlType::kF32},
};

absl::StatusOr<const Mix*> FindMix(const std::string& mix) {
  std::string lower = mix;
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (const Mix& m : kMixes) {
    if (lower == m.name) return &m;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown quantization type '", mix, "' (one of ", MixNameList(), ")"));
}

bool IsQuantized(GgmlType t) {
  return t != GgmlType::kF32 && t != GgmlType::kF16 && t != GgmlType::kBF16;
}

bool Contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// ggml_n_dims: 1 + the index of the last dimension above 1 (at least 1).
int NumDims(const std::vector<int64_t>& ne) {
  for (int i = static_cast<int>(ne.size()) - 1; i >= 1; --i) {
    if (ne[i] > 1) return i + 1;
  }
  return 1;
}

// llama_model_quantize_impl's test of whether a tensor is quantized at all.
bool ShouldQuantize(const MixTensor& t) {
  const std::string& name = t.name;
  bool quantize = name.size() >= 6 && name.rfind("weight") == name.size() - 6;
  quantize &= NumDims(t.ne) >= 2;
  quantize &= !Contains(name, "_norm.weight");
  quantize &= !Contains(name, "ffn_gate_inp.weight");
  // (position_embd / token_types are excluded only for architectures that have them;
  // llama and qwen2 do not.)
  quantize &= !Contains(name, "ssm_conv1d.weight");
  quantize &= !Contains(name, "time_mix_first.weight");
  quantize &= !Contains(name, "time_mix_w1.weight");
  quantize &= !Contains(name, "time_mix_w2.weight");
  quantize &= !Contains(name, "time_mix_decay_w1.weight");
  quantize &= !Contains(name, "time_mix_decay_w2.weight");
  quantize &= !Contains(name, "time_mix_lerp_fused.weight");
  quantize &= !Contains(name, "attn_rel_b.weight");
  return quantize;
}

bool UseMoreBits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

// quantize_state_impl: the counters llama_tensor_get_type advances.
struct State {
  int n_attention_wv = 0;
  int n_ffn_down = 0;
  int i_attention_wv = 0;
  int i_ffn_down = 0;
  int i_ffn_gate = 0;
  int i_ffn_up = 0;
  int n_fallback = 0;
  bool has_output = false;
};

std::string RowsDoNotFit(const MixTensor& t, GgmlType type) {
  return absl::StrCat("tensor '", t.name, "': rows of ", t.ne.empty() ? 0 : t.ne[0],
                      " values cannot be stored as ", gguf::GgmlTypeName(uint32_t(type)),
                      " (blocks of ", gguf::BlockSize(type), ")");
}

// llama_tensor_get_type for the ftypes of kMixes.
absl::StatusOr<GgmlType> TensorGetType(State& qs, GgmlType new_type, const MixTensor& t,
                                       Ftype ftype, const MixOptions& opt) {
  const std::string& name = t.name;
  const int64_t nx = t.ne.empty() ? 0 : t.ne[0];
  if (name == "output.weight" || (!qs.has_output && name == "token_embd.weight")) {
    if (nx % gguf::BlockSize(new_type) != 0) {
      new_type = GgmlType::kQ8_0;
    } else if (new_type != GgmlType::kQ8_0) {
      new_type = GgmlType::kQ6_K;
    }
  } else if (name == "token_embd.weight") {
    // only IQ/TQ ftypes change it
  } else if (Contains(name, "attn_v.weight")) {
    if ((ftype == Ftype::kQ4_K_M || ftype == Ftype::kQ5_K_M) &&
        UseMoreBits(qs.i_attention_wv, qs.n_attention_wv)) {
      new_type = GgmlType::kQ6_K;
    } else if (ftype == Ftype::kQ4_K_S && qs.i_attention_wv < 4) {
      new_type = GgmlType::kQ5_K;
    }
    if (opt.is_70b && new_type == GgmlType::kQ4_K) new_type = GgmlType::kQ5_K;  // (or Q3_K)
    ++qs.i_attention_wv;
  } else if (Contains(name, "attn_k.weight") || Contains(name, "attn_q.weight")) {
    // only MoE and IQ ftypes change them
  } else if (Contains(name, "ffn_down")) {
    // Dense models: the layer is the running count (layer_info).
    const int i_layer = qs.i_ffn_down, n_layer = qs.n_ffn_down;
    if (ftype == Ftype::kQ4_K_M) {
      if (UseMoreBits(i_layer, n_layer)) new_type = GgmlType::kQ6_K;
    } else if (ftype == Ftype::kQ5_K_M && UseMoreBits(i_layer, n_layer)) {
      new_type = GgmlType::kQ6_K;
    } else if (ftype == Ftype::kQ4_K_S && i_layer < n_layer / 8) {
      new_type = GgmlType::kQ5_K;
    }
    ++qs.i_ffn_down;
  } else if (Contains(name, "attn_output.weight")) {
    // only Q2_K/Q3_K/IQ ftypes (and MoE) change it
  } else if (Contains(name, "attn_qkv.weight")) {
    if (ftype == Ftype::kQ4_K_M) new_type = GgmlType::kQ5_K;
    else if (ftype == Ftype::kQ5_K_M) new_type = GgmlType::kQ6_K;
  } else if (Contains(name, "ffn_gate")) {
    ++qs.i_ffn_gate;
  } else if (Contains(name, "ffn_up")) {
    ++qs.i_ffn_up;
  }

  if (nx % gguf::BlockSize(new_type) != 0) {
    switch (new_type) {
      case GgmlType::kQ4_K: new_type = GgmlType::kQ5_0; break;
      case GgmlType::kQ5_K: new_type = GgmlType::kQ5_1; break;
      case GgmlType::kQ6_K: new_type = GgmlType::kQ8_0; break;
      default:  // llama-quantize: "Unsupported tensor size encountered"
        return absl::InvalidArgumentError(RowsDoNotFit(t, new_type));
    }
    if (nx % gguf::BlockSize(new_type) != 0) new_type = GgmlType::kF16;
    ++qs.n_fallback;
  }
  return new_type;
}

}  // namespace

const std::vector<std::string>& MixNames() {
  static const std::vector<std::string>* names = [] {
    auto* v = new std::vector<std::string>;
    for (const Mix& m : kMixes) v->push_back(m.name);
    return v;
  }();
  return *names;
}

std::string MixNameList() { return absl::StrJoin(MixNames(), ", "); }

absl::StatusOr<uint32_t> MixFileType(const std::string& mix) {
  absl::StatusOr<const Mix*> m = FindMix(mix);
  if (!m.ok()) return m.status();
  return static_cast<uint32_t>((*m)->ftype);
}

absl::StatusOr<gguf::GgmlType> MixBaseType(const std::string& mix) {
  absl::StatusOr<const Mix*> m = FindMix(mix);
  if (!m.ok()) return m.status();
  return (*m)->base;
}

bool IsLlamaType70B(const std::string& arch, int n_layer, int n_head, int n_head_kv) {
  if (n_layer != 80) return false;
  if (arch == "llama") return n_head != n_head_kv;  // else 65B
  return arch == "qwen2";
}

std::vector<size_t> LlamaTensorOrder(const std::vector<MixTensor>& tensors) {
  // llama_model_loader's weight_name_comparer.
  auto layer = [](const std::string& name) {
    int l = -1;
    std::sscanf(name.c_str(), "blk.%d.", &l);
    return l;
  };
  std::vector<int> layers(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) layers[i] = layer(tensors[i].name);
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (layers[a] != layers[b]) return layers[a] < layers[b];
    return tensors[a].name < tensors[b].name;
  });
  return order;
}

absl::StatusOr<std::vector<gguf::GgmlType>> ChooseTensorTypes(const std::string& mix,
                                                               const std::vector<MixTensor>& tensors,
                                                               int n_layer, int* n_fallback,
                                                               const MixOptions& options) {
  absl::StatusOr<const Mix*> found = FindMix(mix);
  if (!found.ok()) return found.status();
  const Mix& m = **found;

  State qs;
  for (const MixTensor& t : tensors) {
    if (Contains(t.name, "attn_v.weight") || Contains(t.name, "attn_qkv.weight") ||
        Contains(t.name, "attn_kv_b.weight")) {
      ++qs.n_attention_wv;
    } else if (t.name == "output.weight") {
      qs.has_output = true;
    }
  }
  qs.n_ffn_down = n_layer;

  std::vector<GgmlType> types(tensors.size());
  for (size_t idx : LlamaTensorOrder(tensors)) {
    const MixTensor& t = tensors[idx];
    GgmlType new_type = t.type;
    if (ShouldQuantize(t)) {
      new_type = m.base;
      if (!options.pure && IsQuantized(m.base)) {
        absl::StatusOr<GgmlType> chosen = TensorGetType(qs, new_type, t, m.ftype, options);
        if (!chosen.ok()) return chosen.status();
        new_type = *chosen;
      }
      const int64_t nx = t.ne.empty() ? 0 : t.ne[0];
      if (nx % gguf::BlockSize(new_type) != 0) {  // only with --pure
        return absl::InvalidArgumentError(RowsDoNotFit(t, new_type));
      }
    }
    types[idx] = new_type;
  }
  if (n_fallback != nullptr) *n_fallback = qs.n_fallback;
  return types;
}

}  // namespace pice
