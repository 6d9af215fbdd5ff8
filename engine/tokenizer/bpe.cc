// Byte-level BPE tokenizer (`tokenizer.ggml.model` = "gpt2"), following llama.cpp's
// llm_tokenizer_bpe_session: the pre-tokenizer cuts the text into words, each word's
// bytes are written in the GPT-2 byte alphabet, and adjacent symbols are merged
// lowest merge rank first (ties: leftmost). With `ignore_merges` (the Llama 3 family)
// a word that is itself a vocabulary entry is taken whole. A final symbol that is not
// a token falls back to its single bytes where those are tokens.
#include <memory>
#include <queue>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/tokenizer/tokenizer_internal.h"

namespace pice::tokenizer_internal {

namespace {

struct Symbol {
  int prev;
  int next;
  size_t offset;  // into the encoded word
  size_t n;
};

struct Bigram {
  int left;
  int right;
  int rank;
  std::string text;
};

struct BigramGreater {
  bool operator()(const Bigram& l, const Bigram& r) const {
    return l.rank > r.rank || (l.rank == r.rank && l.left > r.left);
  }
};

class BpeTokenizer : public VocabTokenizer {
 public:
  absl::Status Load(const gguf::GgufFile& file, VocabData d) {
    std::vector<std::string> regexes;
    if (!PreTokenizerRegexes(d.pre, &regexes, &ignore_merges_)) {
      return file.Error(absl::StatusCode::kUnimplemented,
                        absl::StrCat("tokenizer.ggml.pre = '", d.pre,
                                     "' is not a supported pre-tokenizer"));
    }
    auto pre = PreTokenizer::FromRegexes(regexes, /*allow_fast_paths=*/true);
    if (!pre.ok()) {
      return file.Error(absl::StatusCode::kInternal, std::string(pre.status().message()));
    }
    pre_ = *std::move(pre);
    // Merges "left right", split at the first space after the first byte.
    const std::vector<std::string>& merges = *d.merges;
    ranks_.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
      const std::string& m = merges[i];
      size_t pos = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
      std::string key;
      if (pos != std::string::npos) {
        key.reserve(m.size());
        key.append(m, 0, pos);
        key.push_back('\0');
        key.append(m, pos + 1);
      } else {
        key.push_back('\0');  // llama.cpp stores ("", "") for a merge without a space
      }
      ranks_.try_emplace(std::move(key), static_cast<int>(i));  // first occurrence wins
    }
    d.merges = nullptr;
    return Init(file, std::move(d));
  }

  const char* model_kind() const override { return "gpt2"; }

 protected:
  void TokenizeFragment(std::string_view text, bool /*prev_special*/,
                        std::vector<Token>& out) const override {
    std::string word;
    std::string key;
    std::vector<Symbol> symbols;
    std::priority_queue<Bigram, std::vector<Bigram>, BigramGreater> queue;
    for (const auto& [off, len] : pre_->Split(text)) {
      word.clear();
      for (size_t i = off; i < off + len; ++i) {
        word.append(ByteToUnicode(static_cast<uint8_t>(text[i])));
      }
      if (ignore_merges_) {
        Token id = TextToToken(word);
        if (id >= 0) {
          out.push_back(id);
          continue;
        }
      }
      symbols.clear();
      int index = 0;
      for (size_t o = 0; o < word.size();) {
        size_t n = std::min(Utf8Len(word[o]), word.size() - o);
        symbols.push_back({index - 1, o + n == word.size() ? -1 : index + 1, o, n});
        o += n;
        ++index;
      }
      auto add_bigram = [&](int left, int right) {
        if (left < 0 || right < 0) return;
        key.assign(word, symbols[left].offset, symbols[left].n);
        key.push_back('\0');
        key.append(word, symbols[right].offset, symbols[right].n);
        auto it = ranks_.find(key);
        if (it == ranks_.end()) return;
        queue.push({left, right, it->second,
                    word.substr(symbols[left].offset, symbols[left].n + symbols[right].n)});
      };
      for (int i = 1; i < static_cast<int>(symbols.size()); ++i) add_bigram(i - 1, i);
      while (!queue.empty()) {
        Bigram b = queue.top();
        queue.pop();
        Symbol& l = symbols[b.left];
        Symbol& r = symbols[b.right];
        if (l.n == 0 || r.n == 0) continue;
        // Outdated when either side has changed since the pair was queued.
        if (l.n + r.n != b.text.size() || r.offset != l.offset + l.n ||
            word.compare(l.offset, l.n + r.n, b.text) != 0) {
          continue;
        }
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) symbols[r.next].prev = b.left;
        add_bigram(l.prev, b.left);
        add_bigram(b.left, l.next);
      }
      for (const Symbol& s : symbols) {
        if (s.n == 0) continue;
        std::string_view t(word.data() + s.offset, s.n);
        Token id = TextToToken(t);
        if (id >= 0) {
          out.push_back(id);
        } else {
          for (char c : t) {
            Token b = TextToToken(std::string_view(&c, 1));
            if (b >= 0) out.push_back(b);
          }
        }
      }
    }
  }

  std::string ComputePiece(Token id) const override {
    const uint32_t a = attrs_[id];
    const std::string& t = tokens_[id];
    if (a & (kAttrUnknown | kAttrControl | kAttrUserDefined)) return t;
    if (a & (kAttrNormal | kAttrByte)) {
      // Byte-level symbols back to bytes.
      std::string r;
      r.reserve(t.size());
      for (size_t i = 0; i < t.size();) {
        // Fast path: the byte alphabet is U+0021..U+0143, one or two UTF-8 bytes.
        const uint8_t c0 = static_cast<uint8_t>(t[i]);
        if (c0 < 0x80 && c0 > 0x20 && c0 < 0x7F) {
          r.push_back(static_cast<char>(c0));
          ++i;
          continue;
        }
        if (c0 >= 0xC2 && c0 <= 0xDF && i + 1 < t.size() &&
            (static_cast<uint8_t>(t[i + 1]) & 0xC0) == 0x80) {
          int b = UnicodeToByte(((c0 & 0x1Fu) << 6) | (static_cast<uint8_t>(t[i + 1]) & 0x3Fu));
          if (b >= 0) {
            r.push_back(static_cast<char>(b));
            i += 2;
            continue;
          }
        }
        const CodePoint cp = DecodeUtf8(t, i, std::min(t.size(), i + 4)).front();
        i += cp.len;
        int b = UnicodeToByte(cp.cp);
        if (b >= 0) {
          r.push_back(static_cast<char>(b));
        } else {
          // Not in the byte alphabet: llama.cpp writes a marker with the bytes.
          r += "[UNK_BYTE_0x";
          for (uint32_t k = 0; k < cp.len; ++k) {
            r += absl::StrFormat("%02x", static_cast<uint8_t>(t[cp.offset + k]));
          }
          r += t + "]";
        }
      }
      return r;
    }
    return "";
  }

 private:
  std::unique_ptr<PreTokenizer> pre_;
  bool ignore_merges_ = false;
  absl::flat_hash_map<std::string, int> ranks_;  // "left\0right" -> rank
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> MakeBpeTokenizer(const gguf::GgufFile& file,
                                                            VocabData data) {
  auto t = std::make_unique<BpeTokenizer>();
  absl::Status st = t->Load(file, std::move(data));
  if (!st.ok()) return st;
  return std::unique_ptr<Tokenizer>(std::move(t));
}

}  // namespace pice::tokenizer_internal
