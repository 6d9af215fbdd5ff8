// Tokenizers built from a GGUF file's `tokenizer.ggml.*` metadata:
//   - `llama`: SentencePiece-style (score-driven merges of UTF-8 symbols, byte fallback
//     <0xXX>, a space prepended and spaces shown as U+2581), as llama.cpp does;
//   - `gpt2`: byte-level BPE with merge ranks, and the pre-tokenizer regexes that
//     `tokenizer.ggml.pre` names (llama-bpe/llama3, qwen2, gpt-2, deepseek-*, falcon,
//     mpt, refact, starcoder, default).
// Special tokens (control / user-defined) are matched in the text only when asked.
//
// Thread safety: immutable after construction; Encode/Decode may run concurrently.
#ifndef PICE_ENGINE_TOKENIZER_TOKENIZER_H_
#define PICE_ENGINE_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/gguf/gguf.h"

namespace pice {

using Token = int32_t;

class Tokenizer {
 public:
  // Errors name the file and the key that is missing or malformed.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromGguf(const gguf::GgufFile& file);
  virtual ~Tokenizer() = default;

  // Tokenizes `text`. add_special: prepend BOS (and append EOS) where the vocabulary's
  // add_bos/add_eos settings say so. parse_special: text such as "<|im_start|>" that
  // spells a control/user-defined token becomes that token; otherwise it is plain text.
  virtual std::vector<Token> Encode(std::string_view text, bool add_special,
                                    bool parse_special) const = 0;

  // The bytes a token stands for (byte tokens give their byte, U+2581 / byte-level
  // symbols map back to raw bytes). Control tokens give "" unless `special`.
  virtual std::string TokenToPiece(Token id, bool special = false) const = 0;
  // Concatenation of pieces. May be invalid UTF-8 for partial sequences.
  std::string Decode(const std::vector<Token>& ids, bool special = false) const;

  int32_t n_vocab() const { return static_cast<int32_t>(tokens_.size()); }
  const std::string& TokenText(Token id) const { return tokens_[id]; }
  Token bos() const { return bos_; }  // -1 when none
  Token eos() const { return eos_; }  // -1 when none
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  // True for tokens that end generation (EOS, EOT, <|im_end|>, <|eot_id|>, ...).
  bool IsEog(Token id) const;
  // True for control tokens (type 3).
  bool IsControl(Token id) const;
  // "llama" or "gpt2".
  virtual const char* model_kind() const = 0;

 protected:
  std::vector<std::string> tokens_;
  std::vector<int32_t> types_;  // tokenizer.ggml.token_type (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte)
  std::vector<Token> eog_;
  Token bos_ = -1, eos_ = -1;
  bool add_bos_ = false, add_eos_ = false;
};

// `text` with every invalid or truncated UTF-8 sequence replaced by U+FFFD. Decoded
// model output may be invalid UTF-8 (byte tokens, random weights); protobuf string
// fields and JSON must not carry it.
std::string ToValidUtf8(std::string_view text);

// One chat message.
struct ChatMessage {
  std::string role;     // "system", "user", "assistant"
  std::string content;
};

// Formats `messages` for the model family the GGUF metadata names (ChatML for Qwen,
// Llama 3 headers, Llama 2 [INST], Zephyr), detected from `tokenizer.chat_template`
// or, when absent, from the architecture and vocabulary. add_assistant: end with the
// header that opens the assistant's turn. Returns the text to Encode with
// parse_special = true. Models with no recognisable template get a plain
// "role: content" transcript.
std::string ApplyChatTemplate(const gguf::GgufFile& file, const std::vector<ChatMessage>& messages,
                              bool add_assistant);

}  // namespace pice

#endif  // PICE_ENGINE_TOKENIZER_TOKENIZER_H_
