// Chat templates for the common model families, formatted as llama.cpp's
// llm_chat_apply_template does (no Jinja: the family is detected from the template
// text, or from the architecture and vocabulary when the file has no template).
//
// BOS is never written into the text: Encode(add_special = true) adds it where the
// vocabulary says so, so a Llama 3 prompt starts at the first <|start_header_id|>
// (llama.cpp does the same) and does not get <|begin_of_text|> twice.
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "engine/gguf/gguf.h"
#include "engine/tokenizer/tokenizer.h"

namespace pice {

namespace {

enum class Family { kPlain, kChatml, kLlama3, kLlama2, kLlama2Sys, kLlama2SysBos, kLlama2SysStrip,
                    kPhi3, kZephyr };

bool Contains(std::string_view s, std::string_view sub) { return s.find(sub) != std::string_view::npos; }

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && absl::ascii_isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && absl::ascii_isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

Family FromTemplate(std::string_view t) {
  if (Contains(t, "<|im_start|>")) return Family::kChatml;
  if (Contains(t, "[INST]")) {
    if (Contains(t, "content.strip()")) return Family::kLlama2SysStrip;
    if (Contains(t, "bos_token + '[INST]")) return Family::kLlama2SysBos;
    if (Contains(t, "<<SYS>>")) return Family::kLlama2Sys;
    return Family::kLlama2;
  }
  if (Contains(t, "<|assistant|>") && Contains(t, "<|end|>")) return Family::kPhi3;
  if (Contains(t, "<|user|>")) return Family::kZephyr;
  if (Contains(t, "<|start_header_id|>") && Contains(t, "<|end_header_id|>")) {
    return Family::kLlama3;
  }
  return Family::kPlain;
}

bool VocabHas(const gguf::GgufFile& file, std::string_view text) {
  auto tokens = file.GetStringArray("tokenizer.ggml.tokens");
  if (!tokens.ok()) return false;
  for (const std::string& t : **tokens) {
    if (t == text) return true;
  }
  return false;
}

Family Detect(const gguf::GgufFile& file) {
  auto tmpl = file.GetString("tokenizer.chat_template", "");
  if (tmpl.ok() && !tmpl->empty()) {
    Family f = FromTemplate(*tmpl);
    if (f != Family::kPlain) return f;
  }
  auto arch = file.GetString("general.architecture", "");
  std::string a = arch.ok() ? *arch : "";
  if (a == "qwen2" || VocabHas(file, "<|im_start|>")) return Family::kChatml;
  if (VocabHas(file, "<|start_header_id|>") && VocabHas(file, "<|eot_id|>")) return Family::kLlama3;
  return Family::kPlain;
}

}  // namespace

std::string ApplyChatTemplate(const gguf::GgufFile& file, const std::vector<ChatMessage>& messages,
                              bool add_assistant) {
  const Family family = Detect(file);
  std::string out;
  switch (family) {
    case Family::kChatml:
      for (const ChatMessage& m : messages) {
        out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      }
      if (add_assistant) out += "<|im_start|>assistant\n";
      break;
    case Family::kLlama3:
      for (const ChatMessage& m : messages) {
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + Trim(m.content) +
               "<|eot_id|>";
      }
      if (add_assistant) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case Family::kLlama2:
    case Family::kLlama2Sys:
    case Family::kLlama2SysBos:
    case Family::kLlama2SysStrip: {
      const bool system = family != Family::kLlama2;
      const bool bos_inside = family == Family::kLlama2SysBos;
      const bool strip = family == Family::kLlama2SysStrip;
      bool inside_turn = true;  // the first [INST] follows the BOS Encode adds
      out += "[INST] ";
      for (const ChatMessage& m : messages) {
        std::string content = strip ? Trim(m.content) : m.content;
        if (!inside_turn) {
          inside_turn = true;
          out += bos_inside ? "<s>[INST] " : "[INST] ";
        }
        if (m.role == "system") {
          out += system ? "<<SYS>>\n" + content + "\n<</SYS>>\n\n" : content + "\n";
        } else if (m.role == "user") {
          out += content + " [/INST]";
        } else {
          out += content + "</s>";
          inside_turn = false;
        }
      }
      break;
    }
    case Family::kPhi3:
      for (const ChatMessage& m : messages) {
        out += "<|" + m.role + "|>\n" + m.content + "<|end|>\n";
      }
      if (add_assistant) out += "<|assistant|>\n";
      break;
    case Family::kZephyr:
      for (const ChatMessage& m : messages) {
        out += "<|" + m.role + "|>\n" + m.content + "<|endoftext|>\n";
      }
      if (add_assistant) out += "<|assistant|>\n";
      break;
    case Family::kPlain:
      // No recognisable template: a plain transcript, one "role: content" line each.
      for (const ChatMessage& m : messages) out += m.role + ": " + m.content + "\n";
      if (add_assistant) out += "assistant:";
      break;
  }
  return out;
}

}  // namespace pice
