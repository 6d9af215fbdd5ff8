// Internal pieces shared by the SPM and BPE tokenizers (not part of the public API).
//
// VocabTokenizer holds what both vocabulary types need: the token table and its
// text -> id map, per-token attributes (llama.cpp's llama_token_attr), the special
// token list used to cut the input before tokenizing, and a precomputed piece per
// token. Subclasses implement TokenizeFragment for one run of plain text.
#ifndef PICE_ENGINE_TOKENIZER_TOKENIZER_INTERNAL_H_
#define PICE_ENGINE_TOKENIZER_TOKENIZER_INTERNAL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/gguf/gguf.h"
#include "engine/tokenizer/tokenizer.h"

namespace pice::tokenizer_internal {

// Debian's Abseil has its own string_view type; convert explicitly.
inline absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Token attributes, as llama.cpp's llama_token_attr (bit set).
enum Attr : uint32_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1u << 0,
  kAttrUnused = 1u << 1,
  kAttrNormal = 1u << 2,
  kAttrControl = 1u << 3,
  kAttrUserDefined = 1u << 4,
  kAttrByte = 1u << 5,
  kAttrLstrip = 1u << 7,
  kAttrRstrip = 1u << 8,
};

// Everything FromGguf reads from the `tokenizer.ggml.*` keys.
struct VocabData {
  std::string model;  // "llama" / "gpt2"
  std::string pre;    // tokenizer.ggml.pre ("" when absent)
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  const std::vector<std::string>* merges = nullptr;  // owned by the GgufFile
  Token bos = -1, eos = -1, unk = -1, eot = -1, eom = -1;
  bool add_bos = false, add_eos = false, add_space_prefix = false;
  std::string general_name;
};

// One piece of the input after special tokens were cut out: either a token or a
// byte range [offset, offset + length) of the text.
struct Fragment {
  bool is_token;
  Token token;
  size_t offset;
  size_t length;
};

class VocabTokenizer : public Tokenizer {
 public:
  std::vector<Token> Encode(std::string_view text, bool add_special,
                            bool parse_special) const override;
  std::string TokenToPiece(Token id, bool special = false) const override;

  // Id of `text`, or -1.
  Token TextToToken(std::string_view text) const {
    auto it = token_to_id_.find(AV(text));
    return it == token_to_id_.end() ? -1 : it->second;
  }
  uint32_t attr(Token id) const { return attrs_[id]; }
  float score(Token id) const { return scores_[id]; }
  Token unk() const { return unk_; }

  // Cuts `text` on special tokens as llama.cpp's tokenizer_st_partition does:
  // control/unknown tokens only when parse_special, user-defined tokens always.
  std::vector<Fragment> Partition(std::string_view text, bool parse_special) const;

 protected:
  // Shared construction: tables, attributes, EOG set, special list, pieces.
  absl::Status Init(const gguf::GgufFile& file, VocabData data);
  // Appends the tokens of one plain-text fragment. `prev_special`: the fragment
  // starts the text or follows a special token (SPM prepends a space then).
  virtual void TokenizeFragment(std::string_view text, bool prev_special,
                                std::vector<Token>& out) const = 0;
  // Piece of a token with special = true (cached at load).
  virtual std::string ComputePiece(Token id) const = 0;

  absl::flat_hash_map<std::string, Token> token_to_id_;
  std::vector<uint32_t> attrs_;
  std::vector<float> scores_;
  std::vector<Token> special_tokens_;  // longest text first
  std::vector<std::string> pieces_;
  Token unk_ = -1, eot_ = -1, eom_ = -1;
  bool add_space_prefix_ = false;
};

absl::StatusOr<std::unique_ptr<Tokenizer>> MakeSpmTokenizer(const gguf::GgufFile& file,
                                                            VocabData data);
absl::StatusOr<std::unique_ptr<Tokenizer>> MakeBpeTokenizer(const gguf::GgufFile& file,
                                                            VocabData data);

// --- Unicode helpers (unicode.cc) ---

// Length of the UTF-8 sequence starting with byte `c` (1 for stray bytes), as
// llama.cpp's unicode_len_utf8.
inline size_t Utf8Len(char c) {
  static const uint8_t kLookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLookup[static_cast<uint8_t>(c) >> 4];
}
void AppendUtf8(uint32_t cp, std::string& out);

// One decoded code point and the bytes it came from. Invalid UTF-8 bytes become
// U+FFFD spanning one byte, so every byte of the input is covered.
struct CodePoint {
  uint32_t cp;
  uint32_t offset;  // byte offset in the text
  uint32_t len;     // bytes
};
std::vector<CodePoint> DecodeUtf8(std::string_view text, size_t begin, size_t end);

// Code point classes as llama.cpp's unicode tables give them.
struct CpFlags {
  bool defined = false;  // assigned code point (flags non-zero in llama.cpp)
  bool letter = false;   // \p{L}
  bool number = false;   // \p{N}
  bool whitespace = false;  // White_Space
};
CpFlags GetCpFlags(uint32_t cp);
uint32_t ToLower(uint32_t cp);

// GPT-2 byte <-> unicode mapping.
const std::string& ByteToUnicode(uint8_t b);  // UTF-8 of the symbol for byte b
// Byte for code point `cp` of the byte-level alphabet, or -1.
int UnicodeToByte(uint32_t cp);

// --- Pre-tokenizer (pretokenize.cc) ---

// Splits text into words with a sequence of regexes, each applied to the pieces the
// previous one produced (text between matches stays a piece), as llama.cpp's
// unicode_regex_split. Patterns are compiled once; Split is thread-safe.
class PreTokenizer {
 public:
  // `pre` is tokenizer.ggml.pre. Unknown names are an error naming the value.
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> Create(const std::string& pre);
  // Builds one from explicit regexes (ICU syntax); for tests.
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> FromRegexes(
      const std::vector<std::string>& regexes, bool allow_fast_paths);
  ~PreTokenizer();

  // Byte ranges (offset, length) of the words of `text`.
  std::vector<std::pair<size_t, size_t>> Split(std::string_view text) const;

  struct Step;

 private:
  PreTokenizer() = default;
  std::vector<std::unique_ptr<Step>> steps_;
};

// The regex list llama.cpp uses for a pre-tokenizer name, or empty when unknown.
// `ignore_merges` is set for the llama3 family.
bool PreTokenizerRegexes(const std::string& pre, std::vector<std::string>* regexes,
                         bool* ignore_merges);

}  // namespace pice::tokenizer_internal

#endif  // PICE_ENGINE_TOKENIZER_TOKENIZER_INTERNAL_H_
