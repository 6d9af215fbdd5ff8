// libFuzzer target: the tokenizers on arbitrary text (any bytes: invalid UTF-8, control
// characters, partial special tokens). The vocabularies are the bundled models':
// SentencePiece (stories260K) and byte-level BPE with the qwen2 and llama3 pre-tokenizers.
//
// Input: byte 0 chooses the vocabulary (bits 0-1: 0 SPM, 1 qwen2, 2 llama3, 3 all three)
// and the flags (bit 2 add_special, bit 3 parse_special, bit 4 decode specials); the rest
// is the text. Checked: every id is in the vocabulary; with parse_special off the ids
// of valid UTF-8 decode back to the text (byte-level BPE: exactly; SPM: up to its
// leading space);
// decoding arbitrary ids (also out of range) never fails.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/gguf/gguf.h"
#include "engine/tokenizer/tokenizer.h"

#ifndef PICE_SOURCE_DIR
#define PICE_SOURCE_DIR "."
#endif

namespace {

struct Vocab {
  std::unique_ptr<pice::gguf::GgufFile> file;
  std::unique_ptr<pice::Tokenizer> tok;
  bool spm = false;
};

std::vector<Vocab>* g_vocabs = nullptr;

Vocab Load(const char* name) {
  std::string path = std::string(PICE_SOURCE_DIR) + "/models/" + name;
  auto f = pice::gguf::GgufFile::Open(path);
  if (!f.ok()) {
    std::fprintf(stderr, "tokenizer_fuzz: %s\n", std::string(f.status().message()).c_str());
    std::exit(1);
  }
  auto t = pice::Tokenizer::FromGguf(**f);
  if (!t.ok()) {
    std::fprintf(stderr, "tokenizer_fuzz: %s\n", std::string(t.status().message()).c_str());
    std::exit(1);
  }
  Vocab v;
  v.spm = std::string_view((*t)->model_kind()) == "llama";
  v.file = *std::move(f);
  v.tok = *std::move(t);
  return v;
}

// Valid UTF-8: no overlong forms, surrogates or code points above U+10FFFF.
bool ValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (int k = 1; k < len; ++k) {
      const unsigned char d = s[i + k];
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

void Check(const Vocab& v, std::string_view text, bool add_special, bool parse_special,
           bool decode_special) {
  const pice::Tokenizer& t = *v.tok;
  const int32_t n = t.n_vocab();
  std::vector<pice::Token> ids = t.Encode(text, add_special, parse_special);
  for (pice::Token id : ids) {
    if (id < 0 || id >= n) {
      std::fprintf(stderr, "token id %d outside [0, %d)\n", id, n);
      std::abort();
    }
  }
  std::string back = t.Decode(ids, decode_special);
  // (Invalid UTF-8 never reaches a tokenizer in the servers; U+2581 is SPM's space.)
  if (!parse_special && !add_special && ValidUtf8(text) &&
      !(v.spm && text.find("\xE2\x96\x81") != std::string_view::npos)) {
    // Plain text must survive the round trip: byte-level BPE maps every byte, SPM falls
    // back to byte tokens and adds one leading space.
    bool ok = back == text || (v.spm && back == " " + std::string(text)) ||
              (v.spm && !text.empty() && text[0] == ' ' && back == text.substr(1));
    if (!ok) {
      std::fprintf(stderr, "round trip (%s): %zu bytes in, %zu bytes out\n", t.model_kind(),
                   text.size(), back.size());
      std::abort();
    }
  }
  // Arbitrary ids, some out of range.
  std::vector<pice::Token> any;
  for (size_t i = 0; i + 1 < text.size() && any.size() < 64; i += 2) {
    int32_t raw = static_cast<uint8_t>(text[i]) | (static_cast<uint8_t>(text[i + 1]) << 8);
    any.push_back(raw % (n + 4) - 2);
  }
  volatile size_t sink = t.Decode(any, decode_special).size();
  (void)sink;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_vocabs = new std::vector<Vocab>();
  g_vocabs->push_back(Load("stories260K.gguf"));
  g_vocabs->push_back(Load("tiny-qwen2-f32.gguf"));
  g_vocabs->push_back(Load("tiny-llama3-f32.gguf"));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > 4096) return 0;
  const uint8_t flags = data[0];
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const bool add_special = flags & 4, parse_special = flags & 8, decode_special = flags & 16;
  const int which = flags & 3;
  for (int i = 0; i < 3; ++i) {
    if (which == 3 || which == i) Check((*g_vocabs)[i], text, add_special, parse_special, decode_special);
  }
  return 0;
}
