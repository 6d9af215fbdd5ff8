// Writes small vocabulary-only GGUF files, seeds for gguf_fuzz (which also builds a
// tokenizer from every file it accepts): each input model's metadata is copied with its
// vocabulary cut down to the first N tokens plus its special (non-normal) tokens, the
// token ids in the metadata remapped, the BPE merges kept only where both parts and the
// result survive, and no tensors. A few KB each instead of MBs, so libFuzzer's max_len
// keeps them whole.
//   vocab_seeds OUT_DIR N MODEL.gguf...
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/gguf/gguf.h"

namespace g = pice::gguf;

namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  std::string b = slash == std::string::npos ? path : path.substr(slash + 1);
  if (EndsWith(b, ".gguf")) b.resize(b.size() - 5);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s OUT_DIR N MODEL.gguf...\n", argv[0]);
    return 2;
  }
  const std::string out_dir = argv[1];
  const size_t keep_first = std::strtoul(argv[2], nullptr, 10);
  int failures = 0;
  {
    // One more seed: a 1-row tensor of every supported weight type, bytes at random, so
    // the fuzzer's dequantization sees every format (the vocabulary seeds have none).
    g::GgufWriter w;
    std::mt19937 rng(1);
    for (uint32_t id : {0u, 1u, 2u, 3u, 6u, 7u, 8u, 12u, 13u, 14u, 30u}) {
      const auto type = static_cast<g::GgmlType>(id);
      const int64_t n = g::BlockSize(type) == 256 ? 256 : 64;
      std::string bytes(size_t(g::RowBytes(type, n)), '\0');
      for (char& c : bytes) c = static_cast<char>(rng());
      w.AddTensor("t" + std::to_string(id), type, {n, 1}, bytes);
    }
    if (!w.WriteFile(out_dir + "/types.gguf").ok()) ++failures;
  }
  for (int a = 3; a < argc; ++a) {
    auto f = g::GgufFile::Open(argv[a]);
    if (!f.ok()) {
      std::fprintf(stderr, "%s\n", std::string(f.status().message()).c_str());
      ++failures;
      continue;
    }
    const g::GgufFile& file = **f;
    auto tokens = file.GetStringArray("tokenizer.ggml.tokens");
    if (!tokens.ok()) continue;  // no vocabulary: nothing to seed
    const std::vector<std::string>& tok = **tokens;
    const std::vector<int64_t>* types = nullptr;
    if (auto t = file.GetIntArray("tokenizer.ggml.token_type"); t.ok()) types = *t;

    // Kept ids, in order: the first N, then every special token.
    std::vector<size_t> kept;
    std::map<int64_t, int64_t> remap;
    for (size_t i = 0; i < tok.size(); ++i) {
      bool special = types && i < types->size() && (*types)[i] != 1 && (*types)[i] != 6;
      if (i < keep_first || (special && kept.size() < keep_first + 64)) {
        remap[static_cast<int64_t>(i)] = static_cast<int64_t>(kept.size());
        kept.push_back(i);
      }
    }
    std::set<std::string> kept_text;
    for (size_t i : kept) kept_text.insert(tok[i]);

    g::GgufWriter w;
    for (const auto& [key, v] : file.metadata()) {
      if (key == "tokenizer.ggml.tokens") {
        std::vector<std::string> s;
        for (size_t i : kept) s.push_back(tok[i]);
        w.SetStringArray(key, s);
      } else if (key == "tokenizer.ggml.scores" && v.floats.size() == tok.size()) {
        std::vector<float> s;
        for (size_t i : kept) s.push_back(static_cast<float>(v.floats[i]));
        w.SetFloat32Array(key, s);
      } else if (key == "tokenizer.ggml.token_type" && v.ints.size() == tok.size()) {
        std::vector<int32_t> s;
        for (size_t i : kept) s.push_back(static_cast<int32_t>(v.ints[i]));
        w.SetInt32Array(key, s);
      } else if (key == "tokenizer.ggml.merges") {
        std::vector<std::string> s;
        for (const std::string& m : v.strings) {
          size_t sp = m.find(' ', 1);
          if (sp == std::string::npos) continue;
          std::string l = m.substr(0, sp), r = m.substr(sp + 1);
          if (kept_text.count(l) && kept_text.count(r) && kept_text.count(l + r)) s.push_back(m);
        }
        w.SetStringArray(key, s);
      } else if (EndsWith(key, "_token_id") && v.IsInteger()) {
        auto it = remap.find(v.i);
        if (it != remap.end()) w.SetUint32(key, static_cast<uint32_t>(it->second));
      } else if (v.type == g::ValueType::kString) {
        w.SetString(key, v.s);
      } else if (v.type == g::ValueType::kBool) {
        w.SetBool(key, v.i != 0);
      } else if (v.type == g::ValueType::kInt32 || v.type == g::ValueType::kInt8 ||
                 v.type == g::ValueType::kInt16) {
        w.SetInt32(key, static_cast<int32_t>(v.i));
      } else if (v.IsInteger()) {
        w.SetUint32(key, static_cast<uint32_t>(v.i));
      } else if (v.IsFloat()) {
        w.SetFloat32(key, static_cast<float>(v.f));
      } else if (v.type == g::ValueType::kArray && v.ArraySize() <= 64) {
        if (!v.strings.empty()) w.SetStringArray(key, v.strings);
        if (!v.floats.empty()) w.SetFloat32Array(key, std::vector<float>(v.floats.begin(), v.floats.end()));
        if (!v.ints.empty()) w.SetInt32Array(key, std::vector<int32_t>(v.ints.begin(), v.ints.end()));
      }
    }
    const std::string path = out_dir + "/" + BaseName(argv[a]) + ".vocab.gguf";
    if (absl::Status s = w.WriteFile(path); !s.ok()) {
      std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
      ++failures;
    }
  }
  return failures ? 1 : 0;
}
