// SentencePiece-style tokenizer (`tokenizer.ggml.model` = "llama"), following
// llama.cpp's llm_tokenizer_spm_session: spaces become U+2581 (and one is prepended
// at the start and after a special token when add_space_prefix), the text is split
// into UTF-8 characters, adjacent pairs that spell a vocabulary entry are merged
// highest score first (ties: leftmost), and a symbol that is not a token is re-split
// along the merges that built it, falling back to <0xXX> byte tokens.
#include <memory>
#include <queue>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
#include "engine/tokenizer/tokenizer_internal.h"

namespace pice::tokenizer_internal {

namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581

struct Symbol {
  int prev;
  int next;
  size_t offset;  // into the session text
  size_t n;       // bytes; 0 once merged into its left neighbour
};

struct Bigram {
  int left;
  int right;
  float score;
  size_t size;
};

struct BigramLess {
  bool operator()(const Bigram& l, const Bigram& r) const {
    return l.score < r.score || (l.score == r.score && l.left > r.left);
  }
};

class SpmTokenizer : public VocabTokenizer {
 public:
  absl::Status Load(const gguf::GgufFile& file, VocabData d) {
    absl::Status st = Init(file, std::move(d));
    if (!st.ok()) return st;
    for (int b = 0; b < 256; ++b) {
      Token id = TextToToken(absl::StrFormat("<0x%02X>", b));
      if (id < 0) id = TextToToken(std::string(1, static_cast<char>(b)));
      byte_tokens_[b] = id;
    }
    return absl::OkStatus();
  }

  const char* model_kind() const override { return "llama"; }

 protected:
  void TokenizeFragment(std::string_view fragment, bool prev_special,
                        std::vector<Token>& out) const override {
    std::string text;
    text.reserve(fragment.size() + 8);
    if (add_space_prefix_ && prev_special) text.append(kSpace);
    for (char c : fragment) {
      if (c == ' ') {
        text.append(kSpace);
      } else {
        text.push_back(c);
      }
    }
    Session s{this, text};
    s.Run(out);
  }

  std::string ComputePiece(Token id) const override {
    const uint32_t a = attrs_[id];
    const std::string& t = tokens_[id];
    if (a & (kAttrUnknown | kAttrControl | kAttrUserDefined)) return t;
    if (a & kAttrNormal) {
      std::string r;
      r.reserve(t.size());
      for (size_t i = 0; i < t.size();) {
        if (t.compare(i, kSpace.size(), kSpace) == 0) {
          r.push_back(' ');
          i += kSpace.size();
        } else {
          r.push_back(t[i++]);
        }
      }
      return r;
    }
    if (a & kAttrByte) {
      // "<0xXX>"
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0) {
        int v = 0;
        for (int k = 3; k < 5; ++k) {
          char c = t[k];
          int d = (c >= '0' && c <= '9') ? c - '0'
                  : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                  : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
          if (d < 0) return "";
          v = v * 16 + d;
        }
        return std::string(1, static_cast<char>(v));
      }
      return "";
    }
    return "";  // unused / undefined types, as llama.cpp
  }

 private:
  struct Session {
    const SpmTokenizer* tok;
    const std::string& text;
    std::vector<Symbol> symbols;
    std::priority_queue<Bigram, std::vector<Bigram>, BigramLess> queue;
    absl::flat_hash_map<std::string, std::pair<int, int>> rev_merge;

    void TryAddBigram(int left, int right) {
      if (left < 0 || right < 0) return;
      std::string_view t(text.data() + symbols[left].offset, symbols[left].n + symbols[right].n);
      Token id = tok->TextToToken(t);
      if (id < 0) return;
      queue.push({left, right, tok->score(id), t.size()});
      rev_merge[std::string(t)] = {left, right};
    }

    void Resegment(const Symbol& sym, std::vector<Token>& out) const {
      std::string_view t(text.data() + sym.offset, sym.n);
      Token id = tok->TextToToken(t);
      if (id >= 0) {
        out.push_back(id);
        return;
      }
      auto it = rev_merge.find(AV(t));
      if (it == rev_merge.end()) {
        for (char c : t) {
          // Its byte token, else the unknown token; a vocabulary with neither (a malformed
          // file: no <0xXX> tokens, unknown_token_id = -1) has no id for it: dropped, as the
          // BPE path does, never a -1 in the output (the GGUF fuzzer found one).
          Token b = tok->byte_tokens_[static_cast<uint8_t>(c)];
          if (b < 0) b = tok->unk();
          if (b >= 0) out.push_back(b);
        }
        return;
      }
      Resegment(symbols[it->second.first], out);
      Resegment(symbols[it->second.second], out);
    }

    void Run(std::vector<Token>& out) {
      int index = 0;
      size_t offs = 0;
      while (offs < text.size()) {
        size_t len = std::min(Utf8Len(text[offs]), text.size() - offs);
        Symbol sym{index - 1, offs + len == text.size() ? -1 : index + 1, offs, len};
        offs += len;
        ++index;
        symbols.push_back(sym);
      }
      for (int i = 1; i < static_cast<int>(symbols.size()); ++i) TryAddBigram(i - 1, i);
      while (!queue.empty()) {
        Bigram b = queue.top();
        queue.pop();
        Symbol& l = symbols[b.left];
        Symbol& r = symbols[b.right];
        if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) symbols[r.next].prev = b.left;
        TryAddBigram(l.prev, b.left);
        TryAddBigram(b.left, l.next);
      }
      if (symbols.empty()) return;
      for (int i = 0; i != -1; i = symbols[i].next) Resegment(symbols[i], out);
    }
  };

  Token byte_tokens_[256];
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> MakeSpmTokenizer(const gguf::GgufFile& file,
                                                            VocabData data) {
  auto t = std::make_unique<SpmTokenizer>();
  absl::Status st = t->Load(file, std::move(data));
  if (!st.ok()) return st;
  return std::unique_ptr<Tokenizer>(std::move(t));
}

}  // namespace pice::tokenizer_internal
