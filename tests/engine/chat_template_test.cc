// Chat template formatting per family (strings as llama.cpp's llm_chat_apply_template
// produces them), detection from the template text and from the architecture /
// vocabulary, and the plain fallback.
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/gguf/gguf.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/engine/test_util.h"

namespace pice {
namespace {

std::unique_ptr<gguf::GgufFile> Make(const std::string& arch, const std::string& tmpl,
                                     const std::vector<std::string>& tokens = {"a"}) {
  gguf::GgufWriter w;
  w.SetString("general.architecture", arch);
  if (!tmpl.empty()) w.SetString("tokenizer.chat_template", tmpl);
  w.SetString("tokenizer.ggml.model", "llama");
  w.SetStringArray("tokenizer.ggml.tokens", tokens);
  auto f = gguf::GgufFile::Parse(w.Serialize(), "chat.gguf");
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? *std::move(f) : nullptr;
}

const std::vector<ChatMessage> kChat = {
    {"system", "You are helpful."},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Add 3 and 4"},
};

TEST(ChatTemplate, ChatmlFromTemplate) {
  auto f = Make("llama",
                "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}");
  EXPECT_EQ(ApplyChatTemplate(*f, kChat, true),
            "<|im_start|>system\nYou are helpful.<|im_end|>\n"
            "<|im_start|>user\nHello<|im_end|>\n"
            "<|im_start|>assistant\nHi there<|im_end|>\n"
            "<|im_start|>user\nAdd 3 and 4<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(ApplyChatTemplate(*f, {{"user", "x"}}, false), "<|im_start|>user\nx<|im_end|>\n");
}

TEST(ChatTemplate, ChatmlFromQwen2Architecture) {
  auto f = Make("qwen2", "");
  EXPECT_EQ(ApplyChatTemplate(*f, {{"user", "Hi"}}, true),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // The bundled tiny-qwen2 model has no template; its architecture decides.
  auto q = gguf::GgufFile::Open(testing::ModelPath("tiny-qwen2-f32.gguf"));
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(ApplyChatTemplate(**q, {{"user", "Hi"}}, true),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, Llama3) {
  auto f = Make("llama",
                "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + "
                "message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + "
                "'<|eot_id|>' }}{% endfor %}");
  // No <|begin_of_text|>: Encode(add_special = true) adds BOS.
  EXPECT_EQ(ApplyChatTemplate(*f, {{"system", "Be brief. "}, {"user", " Hello"}}, true),
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // Detected from the vocabulary when the template is missing (tiny-llama3).
  auto l = gguf::GgufFile::Open(testing::ModelPath("tiny-llama3-f32.gguf"));
  ASSERT_TRUE(l.ok()) << l.status();
  std::string text = ApplyChatTemplate(**l, {{"user", "Hi"}}, true);
  EXPECT_EQ(text,
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // And it tokenizes to BOS + the control tokens with parse_special.
  auto tok = Tokenizer::FromGguf(**l);
  ASSERT_TRUE(tok.ok());
  auto ids = (*tok)->Encode(text, true, true);
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids[0], 561);
  EXPECT_EQ(ids[1], 563);
}

TEST(ChatTemplate, Llama2) {
  auto f = Make("llama",
                "{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + "
                "messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}{% endif %}{% for message in messages "
                "%}{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}{% endfor %}");
  EXPECT_EQ(ApplyChatTemplate(*f, kChat, true),
            "[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHello [/INST]Hi there</s>"
            "<s>[INST] Add 3 and 4 [/INST]");  // "bos_token + '[INST]": BOS inside history
  // Without <<SYS>> the system text is folded into the first turn.
  auto g = Make("llama", "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}");
  EXPECT_EQ(ApplyChatTemplate(*g, kChat, true),
            "[INST] You are helpful.\nHello [/INST]Hi there</s>[INST] Add 3 and 4 [/INST]");
}

TEST(ChatTemplate, ZephyrAndPhi3) {
  auto z = Make("llama", "{% for m in messages %}<|user|>{{ m['content'] }}</s>{% endfor %}");
  EXPECT_EQ(ApplyChatTemplate(*z, {{"user", "Hi"}}, true),
            "<|user|>\nHi<|endoftext|>\n<|assistant|>\n");
  auto p = gguf::GgufFile::Open(testing::DataPath("vocab/ggml-vocab-phi-3.gguf"));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(ApplyChatTemplate(**p, {{"user", "Hi"}}, true), "<|user|>\nHi<|end|>\n<|assistant|>\n");
}

TEST(ChatTemplate, PlainFallback) {
  auto f = Make("llama", "");
  EXPECT_EQ(ApplyChatTemplate(*f, {{"system", "S"}, {"user", "Q"}}, true),
            "system: S\nuser: Q\nassistant:");
  EXPECT_EQ(ApplyChatTemplate(*f, {{"user", "Q"}}, false), "user: Q\n");
  auto u = Make("llama", "{{ something unknown }}");
  EXPECT_EQ(ApplyChatTemplate(*u, {{"user", "Q"}}, false), "user: Q\n");
  // stories260K: no template, a plain SentencePiece vocabulary.
  auto s = gguf::GgufFile::Open(testing::ModelPath("stories260K.gguf"));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(ApplyChatTemplate(**s, {{"user", "Q"}}, true), "user: Q\nassistant:");
}

}  // namespace
}  // namespace pice
