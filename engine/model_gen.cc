#include "engine/model_gen.h"

#include <cstring>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/kernels/quantize_k.h"
#include "engine/quant_mix.h"
#include "engine/status_macros.h"

namespace pice {
namespace {

using gguf::GgmlType;

// GPT-2's byte -> printable code point mapping, as UTF-8 strings.
std::vector<std::string> ByteSymbols() {
  std::vector<int> cps(256, -1);
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    cps[b] = printable ? b : 256 + n++;
  }
  std::vector<std::string> out(256);
  for (int b = 0; b < 256; ++b) {
    int cp = cps[b];
    std::string s;
    if (cp < 0x80) {
      s.push_back(char(cp));
    } else {
      s.push_back(char(0xC0 | (cp >> 6)));
      s.push_back(char(0x80 | (cp & 0x3F)));
    }
    out[b] = s;
  }
  return out;
}

std::string Encode(const std::vector<float>& w, GgmlType type, int64_t cols) {
  const int64_t rows = int64_t(w.size()) / cols;
  const int64_t row_bytes = gguf::RowBytes(type, cols);
  std::string out(size_t(row_bytes * rows), '\0');
  for (int64_t r = 0; r < rows; ++r) {
    kernels::QuantizeRowRef(type, w.data() + r * cols, out.data() + r * row_bytes, cols);
  }
  return out;
}

}  // namespace

absl::Status ValidateGenModelOptions(const GenModelOptions& o) {
  auto bad = [](const char* name, const std::string& want) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, " must be ", want));
  };
  if (o.arch != "llama" && o.arch != "qwen2") return bad("arch", "llama or qwen2");
  if (o.n_embd < 32 || o.n_embd > 16384 || o.n_embd % 32 != 0) return bad("n-embd", "a multiple of 32 in [32, 16384]");
  if (o.n_layer < 1 || o.n_layer > 256) return bad("n-layer", "in [1, 256]");
  if (o.n_head < 1 || o.n_embd % o.n_head != 0) return bad("n-head", "a divisor of n-embd");
  if ((o.n_embd / o.n_head) % 2 != 0) return bad("n-head", "such that the head dimension is even");
  if (o.n_head_kv < 1 || o.n_head % o.n_head_kv != 0) return bad("n-head-kv", "a divisor of n-head");
  if (int64_t(o.n_embd / o.n_head) * o.n_head_kv % 32 != 0) return bad("n-head-kv", "such that n_head_kv * head_dim is a multiple of 32");
  if (o.n_ff < 32 || o.n_ff > 131072 || o.n_ff % 32 != 0) return bad("n-ff", "a multiple of 32 in [32, 131072]");
  if (o.n_vocab < 300 || o.n_vocab > 1000000) return bad("n-vocab", "in [300, 1000000]");
  if (o.n_ctx < 16 || o.n_ctx > (1 << 20)) return bad("n-ctx", "in [16, 1048576]");
  if (!(o.stddev > 0)) return bad("stddev", "positive");
  if (!MixFileType(o.type).ok()) return bad("type", "one of " + MixNameList() + " (got '" + o.type + "')");
  return absl::OkStatus();
}

absl::Status WriteRandomModel(const GenModelOptions& o, const std::string& path) {
  PICE_RETURN_IF_ERROR(ValidateGenModelOptions(o));
  const bool qwen = o.arch == "qwen2";
  const std::string a = o.arch + ".";
  const int head_dim = o.n_embd / o.n_head, kv_dim = head_dim * o.n_head_kv;
  gguf::GgufWriter w;
  w.SetString("general.architecture", o.arch);
  w.SetString("general.name", absl::StrCat("random-", o.arch, "-", o.n_embd, "x", o.n_layer));
  w.SetUint32("general.file_type", *MixFileType(o.type));
  const GgmlType base = *MixBaseType(o.type);
  if (base != GgmlType::kF32 && base != GgmlType::kF16 && base != GgmlType::kBF16) {
    w.SetUint32("general.quantization_version", 2);
  }
  w.SetUint32(a + "context_length", o.n_ctx);
  w.SetUint32(a + "embedding_length", o.n_embd);
  w.SetUint32(a + "block_count", o.n_layer);
  w.SetUint32(a + "feed_forward_length", o.n_ff);
  w.SetUint32(a + "attention.head_count", o.n_head);
  w.SetUint32(a + "attention.head_count_kv", o.n_head_kv);
  w.SetFloat32(a + "attention.layer_norm_rms_epsilon", qwen ? 1e-6f : 1e-5f);
  w.SetFloat32(a + "rope.freq_base", qwen ? 1e6f : 5e5f);
  w.SetUint32(a + "rope.dimension_count", head_dim);

  // Vocabulary: 256 byte symbols, a few merges, control tokens, then fillers.
  std::vector<std::string> tokens = ByteSymbols();
  std::vector<int32_t> types(256, 1);
  std::vector<std::string> merges = {"Ġ t", "h e", "Ġ a", "i n", "Ġt he", "e r", "o n", "Ġ s"};
  for (const std::string& m : merges) {
    std::string merged = m;
    merged.erase(merged.find(' '), 1);
    tokens.push_back(merged);
    types.push_back(1);
  }
  const std::vector<std::string> controls =
      qwen ? std::vector<std::string>{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
           : std::vector<std::string>{"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
                                      "<|start_header_id|>", "<|end_header_id|>"};
  const int first_control = int(tokens.size());
  for (const std::string& c : controls) {
    tokens.push_back(c);
    types.push_back(3);
  }
  // Fillers are ordinary word tokens (" w123" in GPT-2's byte alphabet, where 'Ġ' is a
  // space), so a random model's output is readable, valid UTF-8 text of roughly one
  // word per token: benchmarks can split and measure it. No merge produces them, so
  // tokenization is unaffected.
  while (int(tokens.size()) < o.n_vocab) {
    tokens.push_back(absl::StrCat("\xC4\xA0w", tokens.size()));
    types.push_back(1);
  }
  w.SetString("tokenizer.ggml.model", "gpt2");
  w.SetString("tokenizer.ggml.pre", qwen ? "qwen2" : "llama-bpe");
  w.SetStringArray("tokenizer.ggml.tokens", tokens);
  w.SetInt32Array("tokenizer.ggml.token_type", types);
  w.SetStringArray("tokenizer.ggml.merges", merges);
  if (qwen) {
    w.SetUint32("tokenizer.ggml.bos_token_id", first_control);
    w.SetUint32("tokenizer.ggml.eos_token_id", first_control);
    w.SetBool("tokenizer.ggml.add_bos_token", false);
  } else {
    w.SetUint32("tokenizer.ggml.bos_token_id", first_control);
    w.SetUint32("tokenizer.ggml.eos_token_id", first_control + 1);
    w.SetBool("tokenizer.ggml.add_bos_token", true);
  }

  // The tensors in file order: matrices (cols, rows) get random values, vectors a
  // constant. Types come from the mix, chosen over the whole list as llama-quantize does.
  struct Spec {
    std::string name;
    int64_t cols, rows;  // rows 0: a vector
    float value;
  };
  std::vector<Spec> specs;
  auto mat = [&](const std::string& name, int64_t cols, int64_t rows) {
    specs.push_back({name, cols, rows, 0.0f});
  };
  auto vec = [&](const std::string& name, int64_t n, float value) {
    specs.push_back({name, n, 0, value});
  };
  mat("token_embd.weight", o.n_embd, o.n_vocab);
  vec("output_norm.weight", o.n_embd, 1.0f);
  if (!qwen) mat("output.weight", o.n_embd, o.n_vocab);
  for (int il = 0; il < o.n_layer; ++il) {
    const std::string p = absl::StrCat("blk.", il, ".");
    vec(p + "attn_norm.weight", o.n_embd, 1.0f);
    mat(p + "attn_q.weight", o.n_embd, o.n_embd);
    mat(p + "attn_k.weight", o.n_embd, kv_dim);
    mat(p + "attn_v.weight", o.n_embd, kv_dim);
    if (qwen) {
      vec(p + "attn_q.bias", o.n_embd, 0.0f);
      vec(p + "attn_k.bias", kv_dim, 0.0f);
      vec(p + "attn_v.bias", kv_dim, 0.0f);
    }
    mat(p + "attn_output.weight", o.n_embd, o.n_embd);
    vec(p + "ffn_norm.weight", o.n_embd, 1.0f);
    mat(p + "ffn_gate.weight", o.n_embd, o.n_ff);
    mat(p + "ffn_up.weight", o.n_embd, o.n_ff);
    mat(p + "ffn_down.weight", o.n_ff, o.n_embd);
  }
  std::vector<MixTensor> mix_tensors;
  for (const Spec& s : specs) {
    mix_tensors.push_back({s.name, s.rows > 0 ? std::vector<int64_t>{s.cols, s.rows}
                                              : std::vector<int64_t>{s.cols}});
  }
  MixOptions mix_options;
  mix_options.is_70b = IsLlamaType70B(o.arch, o.n_layer, o.n_head, o.n_head_kv);
  PICE_ASSIGN_OR_RETURN(const std::vector<GgmlType> tensor_types,
                        ChooseTensorTypes(o.type, mix_tensors, o.n_layer, nullptr, mix_options));

  std::mt19937_64 rng(o.seed);
  std::normal_distribution<float> normal(0.0f, o.stddev);
  for (size_t i = 0; i < specs.size(); ++i) {
    const Spec& s = specs[i];
    if (s.rows > 0) {
      std::vector<float> v(size_t(s.cols * s.rows));
      for (float& x : v) x = normal(rng);
      w.AddTensor(s.name, tensor_types[i], {s.cols, s.rows}, Encode(v, tensor_types[i], s.cols));
    } else {
      w.AddTensor(s.name, tensor_types[i], {s.cols},
                  Encode(std::vector<float>(size_t(s.cols), s.value), tensor_types[i], s.cols));
    }
  }
  return w.WriteFile(path);
}

}  // namespace pice
