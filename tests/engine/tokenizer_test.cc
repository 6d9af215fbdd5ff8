// Tokenizer tests against llama.cpp's own outputs: the vocab vectors of its
// test-tokenizer-0 (tests/data/vocab), the tiny-qwen2 / tiny-llama3 tokenizer vectors,
// the stories260K prompts and the pice-arith vocabulary; plus special-token parsing,
// pre-tokenizer fast paths against ICU, malformed vocabularies and load speed.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/gguf/gguf.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/tokenizer_internal.h"
#include "tests/engine/test_util.h"

namespace pice {
namespace {

using ::pice::testing::DataPath;
using ::pice::testing::ModelPath;
using ::pice::testing::ReadFileOrDie;

std::unique_ptr<gguf::GgufFile> OpenOrDie(const std::string& path) {
  auto f = gguf::GgufFile::Open(path);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? *std::move(f) : nullptr;
}

std::unique_ptr<Tokenizer> LoadOrDie(const std::string& path) {
  auto f = OpenOrDie(path);
  if (!f) return nullptr;
  auto t = Tokenizer::FromGguf(*f);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

std::string Ids(const std::vector<Token>& ids) {
  std::string s;
  for (Token t : ids) s += " " + std::to_string(t);
  return s;
}

// test-tokenizer-0's format: cases separated by "\n__ggml_vocab_test__\n".
std::vector<std::string> SplitInp(const std::string& text) {
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> out;
  size_t prev = 0, pos;
  while ((pos = text.find(sep, prev)) != std::string::npos) {
    out.push_back(text.substr(prev, pos - prev));
    prev = pos + sep.size();
  }
  return out;
}

std::vector<std::vector<Token>> ReadOut(const std::string& text) {
  std::vector<std::vector<Token>> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<Token> ids;
    Token t;
    while (ls >> t) ids.push_back(t);
    out.push_back(ids);
  }
  return out;
}

class TokenizerVocabTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerVocabTest, MatchesLlamaCpp) {
  const std::string base = DataPath("vocab/ggml-vocab-" + GetParam() + ".gguf");
  auto tok = LoadOrDie(base);
  ASSERT_NE(tok, nullptr);
  auto cases = SplitInp(ReadFileOrDie(base + ".inp"));
  auto expected = ReadOut(ReadFileOrDie(base + ".out"));
  ASSERT_EQ(cases.size(), 46u);
  ASSERT_EQ(expected.size(), cases.size());
  int pass = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    auto ids = tok->Encode(cases[i], /*add_special=*/false, /*parse_special=*/false);
    if (ids == expected[i]) {
      ++pass;
    } else {
      ADD_FAILURE() << GetParam() << " case " << i << " '" << cases[i] << "'\n  got:     "
                    << Ids(ids) << "\n  expected:" << Ids(expected[i]);
    }
  }
  std::printf("[ vocab %-15s ] %d/%zu cases match llama.cpp\n", GetParam().c_str(), pass,
              cases.size());
}

INSTANTIATE_TEST_SUITE_P(TokenizerVocab, TokenizerVocabTest,
                         ::testing::Values("deepseek-coder", "deepseek-llm", "falcon", "gpt-2",
                                           "llama-spm", "mpt", "phi-3", "refact", "starcoder"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) if (c == '-') c = '_';
                           return n;
                         });

void CheckTinyVectors(const std::string& model, const std::string& json) {
  auto tok = LoadOrDie(ModelPath(model));
  ASSERT_NE(tok, nullptr);
  auto j = nlohmann::json::parse(ReadFileOrDie(DataPath(json)));
  ASSERT_EQ(j["cases"].size(), 25u);
  for (const auto& c : j["cases"]) {
    const std::string text = c["text"];
    const std::vector<Token> want = c["ids"].get<std::vector<Token>>();
    auto ids = tok->Encode(text, false, false);
    EXPECT_EQ(ids, want) << "'" << text << "'";
    EXPECT_EQ(tok->Decode(ids), text);
    std::vector<std::string> texts = c["token_texts"];
    for (size_t i = 0; i < ids.size() && i < texts.size(); ++i) {
      EXPECT_EQ(tok->TokenText(ids[i]), texts[i]);
    }
  }
}

TEST(TokenizerTiny, Qwen2Vectors) { CheckTinyVectors("tiny-qwen2-f32.gguf", "tiny-qwen2_tokenize.json"); }
TEST(TokenizerTiny, Llama3Vectors) {
  CheckTinyVectors("tiny-llama3-f32.gguf", "tiny-llama3_tokenize.json");
}

TEST(TokenizerTiny, SpecialsAndBos) {
  auto q = LoadOrDie(ModelPath("tiny-qwen2-f32.gguf"));
  auto l = LoadOrDie(ModelPath("tiny-llama3-f32.gguf"));
  ASSERT_TRUE(q && l);
  EXPECT_STREQ(q->model_kind(), "gpt2");
  // qwen2: add_bos_token = false; llama-bpe: BOS 561 first.
  EXPECT_FALSE(q->add_bos());
  EXPECT_EQ(q->Encode("Hello world", true, false), (std::vector<Token>{629, 449}));
  EXPECT_TRUE(l->add_bos());
  EXPECT_EQ(l->Encode("Hello world", true, false), (std::vector<Token>{561, 556, 433}));
  EXPECT_EQ(l->Encode("  spaces, numbers 12345 and \xC3\xBCn\xC3\xAF" "c\xC3\xB6" "d\xC3\xA9!", true,
                      false),
            (std::vector<Token>{561, 220, 276, 79, 64, 309, 82, 11, 560, 220, 378, 19, 20, 324,
                                472, 454, 0}));
  // EOG: qwen2's <|endoftext|> (EOS) and <|im_end|>; llama3's <|end_of_text|> and <|eot_id|>.
  EXPECT_TRUE(q->IsEog(698));
  EXPECT_TRUE(q->IsEog(700));
  EXPECT_FALSE(q->IsEog(699));
  EXPECT_TRUE(l->IsEog(562));
  EXPECT_TRUE(l->IsEog(565));
  EXPECT_FALSE(l->IsEog(563));
  EXPECT_FALSE(l->IsEog(100));
  EXPECT_TRUE(l->IsControl(563));
  EXPECT_FALSE(l->IsControl(100));
}

TEST(TokenizerTiny, ParseSpecial) {
  auto q = LoadOrDie(ModelPath("tiny-qwen2-f32.gguf"));
  ASSERT_NE(q, nullptr);
  const std::string text = "<|im_start|>user\nHi<|im_end|>";
  auto on = q->Encode(text, false, true);
  ASSERT_GE(on.size(), 3u);
  EXPECT_EQ(on.front(), 699);
  EXPECT_EQ(on.back(), 700);
  EXPECT_EQ(q->Decode(on, /*special=*/true), text);
  EXPECT_EQ(q->Decode(on, /*special=*/false), "user\nHi");
  auto off = q->Encode(text, false, false);
  for (Token t : off) EXPECT_FALSE(q->IsControl(t)) << t;
  EXPECT_EQ(q->Decode(off), text);
  EXPECT_EQ(q->TokenToPiece(699), "");
  EXPECT_EQ(q->TokenToPiece(699, true), "<|im_start|>");
  // Middle of the text, longest match first.
  auto mid = q->Encode("a<|im_end|><|im_end|>b", false, true);
  EXPECT_EQ(q->Decode(mid, true), "a<|im_end|><|im_end|>b");
  EXPECT_EQ(std::count(mid.begin(), mid.end(), 700), 2);

  auto l = LoadOrDie(ModelPath("tiny-llama3-f32.gguf"));
  ASSERT_NE(l, nullptr);
  auto ids = l->Encode("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", true, true);
  ASSERT_GE(ids.size(), 5u);
  EXPECT_EQ(ids[0], 561);
  EXPECT_EQ(ids[1], 563);
  EXPECT_EQ(ids.back(), 565);
}

TEST(TokenizerSpm, Stories260KPrompts) {
  auto tok = LoadOrDie(ModelPath("stories260K.gguf"));
  ASSERT_NE(tok, nullptr);
  EXPECT_STREQ(tok->model_kind(), "llama");
  EXPECT_EQ(tok->bos(), 1);
  EXPECT_EQ(tok->eos(), 2);
  EXPECT_TRUE(tok->IsEog(2));
  auto j = nlohmann::json::parse(ReadFileOrDie(DataPath("stories260K_greedy.json")));
  ASSERT_EQ(j["cases"].size(), 4u);
  for (const auto& c : j["cases"]) {
    const std::string prompt = c["prompt"];
    const std::vector<Token> want = c["prompt_tokens"].get<std::vector<Token>>();
    auto ids = tok->Encode(prompt, /*add_special=*/true, /*parse_special=*/false);
    EXPECT_EQ(ids, want) << "'" << prompt << "'";
    // Pieces: U+2581 back to spaces; the leading one is the added space prefix.
    if (!prompt.empty()) EXPECT_EQ(tok->Decode(ids), " " + prompt);
  }
}

TEST(TokenizerSpm, PiceArith) {
  const std::vector<Token> want = {1, 259, 280, 277, 259, 282, 285, 285, 259, 263,
                                   259, 282, 295, 285, 259, 264, 13, 281, 277};
  for (const char* m : {"arith-cloud-f16.gguf", "arith-edge-a.gguf", "arith-edge-b-q8_0.gguf"}) {
    auto tok = LoadOrDie(ModelPath(std::string("pice-arith/") + m));
    ASSERT_NE(tok, nullptr);
    EXPECT_EQ(tok->n_vocab(), 308);
    const std::string prompt = "Q: add 3 and 4\nS:";
    auto ids = tok->Encode(prompt, true, false);
    EXPECT_EQ(ids, want) << m;
    EXPECT_EQ(tok->Decode(ids), " " + prompt);
    EXPECT_EQ(tok->TokenToPiece(13), "\n");
    EXPECT_EQ(tok->TokenToPiece(1), "");
    EXPECT_EQ(tok->TokenToPiece(1, true), "<s>");
    EXPECT_TRUE(tok->IsEog(2));
    const std::string answer = " 12+7=19. 23*4=92.";
    EXPECT_EQ(tok->Decode(tok->Encode(answer, false, false)), " " + answer);
    // Each character is one token.
    EXPECT_EQ(tok->Encode("P: 23*4=", false, false).size(), 1 + std::string("P: 23*4=").size());
  }
}

TEST(TokenizerSpm, LlamaSpecialsAndBytes) {
  auto tok = LoadOrDie(DataPath("vocab/ggml-vocab-llama-spm.gguf"));
  ASSERT_NE(tok, nullptr);
  // parse_special: "<s>" is BOS; the space prefix is added after it.
  auto on = tok->Encode("<s>Hello", false, true);
  ASSERT_FALSE(on.empty());
  EXPECT_EQ(on[0], 1);
  EXPECT_EQ(tok->Decode(on), " Hello");
  auto off = tok->Encode("<s>Hello", false, false);
  EXPECT_NE(off[0], 1);
  // Byte fallback round trip (emoji) and EOS appending rules.
  const std::string emoji = "\xF0\x9F\xA6\x99";
  auto ids = tok->Encode(emoji, true, false);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(tok->Decode(ids), " " + emoji);
  EXPECT_FALSE(tok->add_eos());
}

// The hand-written splitters must agree with ICU running the same regexes.
TEST(TokenizerPreTokenizer, FastPathsMatchIcu) {
  std::vector<std::string> texts = SplitInp(ReadFileOrDie(DataPath("vocab/ggml-vocab-gpt-2.gguf.inp")));
  auto j = nlohmann::json::parse(ReadFileOrDie(DataPath("tiny-qwen2_tokenize.json")));
  for (const auto& c : j["cases"]) texts.push_back(c["text"]);
  texts.push_back("a\t\tb  \n\n c'S 'LL 1234567 \xC2\xA0\xC2\xA0x \r\n\r\n  !!\n");
  texts.push_back("\xE2\x80\x83\xE3\x80\x80 x\xE2\x80\xA8y  ");
  for (const std::string pre : {"gpt-2", "llama-bpe", "qwen2"}) {
    std::vector<std::string> regexes;
    bool im;
    ASSERT_TRUE(tokenizer_internal::PreTokenizerRegexes(pre, &regexes, &im));
    auto fast = tokenizer_internal::PreTokenizer::FromRegexes(regexes, true);
    auto icu = tokenizer_internal::PreTokenizer::FromRegexes(regexes, false);
    ASSERT_TRUE(fast.ok() && icu.ok());
    for (const std::string& t : texts) {
      EXPECT_EQ((*fast)->Split(t), (*icu)->Split(t)) << pre << ": '" << t << "'";
    }
  }
}

// Random strings over a mix of classes (assigned code points only: for unassigned ones
// llama.cpp's hand-written GPT-2 / Llama 3 splitters deliberately differ from the regex).
TEST(TokenizerPreTokenizer, FastPathsMatchIcuRandom) {
  const std::vector<std::string> alphabet = {
      "a", "Z", "s", "S", "t", "e", "l", "'", " ", " ", "  ", "\t", "\n", "\r", "0", "7",
      "!", ".", "$", "+", "-", "\xC3\xA9", "\xC2\xA0", "\xE2\x80\x83", "\xE3\x80\x80",
      "\xE4\xBD\xA0", "\xD9\xA3", "\xC2\xBD", "\xE2\x85\xAB", "\xCC\x81",
      "\xE0\xA4\xBF", "\xF0\x9F\x98\x80", "\xE2\x80\x8D", "\x0B", "\x0C",
      "\xC2\x85", "\xE2\x80\xA8", "\x1C"};
  uint64_t state = 12345;
  auto next = [&]() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(state >> 33);
  };
  std::vector<std::string> texts;
  for (int i = 0; i < 1500; ++i) {
    std::string t;
    int len = 1 + next() % 24;
    for (int k = 0; k < len; ++k) t += alphabet[next() % alphabet.size()];
    texts.push_back(t);
  }
  for (const std::string pre : {"gpt-2", "llama-bpe", "qwen2"}) {
    std::vector<std::string> regexes;
    bool im;
    ASSERT_TRUE(tokenizer_internal::PreTokenizerRegexes(pre, &regexes, &im));
    auto fast = tokenizer_internal::PreTokenizer::FromRegexes(regexes, true);
    auto icu = tokenizer_internal::PreTokenizer::FromRegexes(regexes, false);
    ASSERT_TRUE(fast.ok() && icu.ok());
    int bad = 0;
    for (const std::string& t : texts) {
      if ((*fast)->Split(t) != (*icu)->Split(t) && ++bad <= 5) {
        ADD_FAILURE() << pre << ": '" << t << "'";
      }
    }
    EXPECT_EQ(bad, 0) << pre;
  }
}

TEST(TokenizerRobustness, ConcurrentEncode) {
  auto tok = LoadOrDie(ModelPath("tiny-llama3-f32.gguf"));
  ASSERT_NE(tok, nullptr);
  const std::string text = "The quick brown fox jumps over the lazy dog. 12345 <|eot_id|>";
  const auto want = tok->Encode(text, true, true);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        if (tok->Encode(text, true, true) != want) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(TokenizerPreTokenizer, AllListsCompile) {
  for (const std::string pre :
       {"llama-bpe", "dbrx", "deepseek-llm", "deepseek-v3", "deepseek-coder", "falcon", "starcoder",
        "gpt-2", "qwen2", "poro-chat", "viking", "tekken", "chameleon", "default", ""}) {
    auto p = tokenizer_internal::PreTokenizer::Create(pre);
    ASSERT_TRUE(p.ok()) << pre << ": " << p.status();
    auto pieces = (*p)->Split("Hello, world! 123 \xE4\xBD\xA0\xE5\xA5\xBD  x");
    size_t covered = 0;
    for (auto& [o, n] : pieces) {
      EXPECT_EQ(o, covered);
      covered += n;
    }
    EXPECT_EQ(covered, std::string("Hello, world! 123 \xE4\xBD\xA0\xE5\xA5\xBD  x").size());
  }
  EXPECT_FALSE(tokenizer_internal::PreTokenizer::Create("no-such-pre").ok());
}

TEST(TokenizerRobustness, InvalidUtf8DoesNotCrash) {
  for (const char* path : {"tiny-qwen2-f32.gguf", "tiny-llama3-f32.gguf", "stories260K.gguf"}) {
    auto tok = LoadOrDie(ModelPath(path));
    ASSERT_NE(tok, nullptr);
    const std::string bad = std::string("a\xFF\xC3 b\xE2\x82", 7) + "\x80\x80z";
    auto ids = tok->Encode(bad, true, true);
    EXPECT_FALSE(ids.empty());
    EXPECT_EQ(tok->TokenToPiece(-1), "");
    EXPECT_EQ(tok->TokenToPiece(tok->n_vocab()), "");
  }
  auto q = LoadOrDie(ModelPath("tiny-qwen2-f32.gguf"));
  const std::string bad = "x\xFF\xFEy";
  EXPECT_EQ(q->Decode(q->Encode(bad, false, false)), bad);
}

// --- malformed vocabularies, built in memory ---

struct VocabSpec {
  std::string model = "llama";
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b",
                                     "\xE2\x96\x81" "a", "ab"};
  std::vector<float> scores = {0, 0, 0, -1, -2, -3, -0.5f, -0.25f};
  std::vector<int32_t> types = {2, 3, 3, 1, 1, 1, 1, 1};
};

absl::StatusOr<std::unique_ptr<Tokenizer>> Build(const VocabSpec& s,
                                                 void (*extra)(gguf::GgufWriter&) = nullptr) {
  gguf::GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetString("tokenizer.ggml.model", s.model);
  w.SetStringArray("tokenizer.ggml.tokens", s.tokens);
  w.SetFloat32Array("tokenizer.ggml.scores", s.scores);
  w.SetInt32Array("tokenizer.ggml.token_type", s.types);
  if (extra) extra(w);
  auto f = gguf::GgufFile::Parse(w.Serialize(), "mem.gguf");
  if (!f.ok()) return f.status();
  return Tokenizer::FromGguf(**f);
}

TEST(TokenizerMalformed, GoodSmallVocab) {
  auto t = Build(VocabSpec{});
  ASSERT_TRUE(t.ok()) << t.status();
  // " ab" -> "▁a" (score -0.5) wins over "ab" (-0.25)? No: merges go highest score
  // first, "ab" (-0.25) then "▁" + "ab" is not a token.
  EXPECT_EQ((*t)->Encode("ab", true, false), (std::vector<Token>{1, 3, 7}));
  EXPECT_EQ((*t)->Encode("a", false, false), (std::vector<Token>{6}));
  // No byte tokens: unknown characters become <unk>.
  EXPECT_EQ((*t)->Encode("z", false, false), (std::vector<Token>{3, 0}));
}

TEST(TokenizerMalformed, Errors) {
  {
    VocabSpec s;
    s.scores.pop_back();
    auto t = Build(s);
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.status().message().find("tokenizer.ggml.scores"), absl::string_view::npos)
        << t.status();
    EXPECT_NE(t.status().message().find("mem.gguf"), absl::string_view::npos) << t.status();
  }
  {
    VocabSpec s;
    s.types.push_back(1);
    auto t = Build(s);
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.status().message().find("tokenizer.ggml.token_type"), absl::string_view::npos);
  }
  {
    auto t = Build(VocabSpec{}, [](gguf::GgufWriter& w) {
      w.SetUint32("tokenizer.ggml.bos_token_id", 100);
    });
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.status().message().find("tokenizer.ggml.bos_token_id"), absl::string_view::npos);
    EXPECT_NE(t.status().message().find("mem.gguf"), absl::string_view::npos);
  }
  {
    // 0xFFFFFFFF means "none".
    auto t = Build(VocabSpec{}, [](gguf::GgufWriter& w) {
      w.SetUint32("tokenizer.ggml.eos_token_id", 0xFFFFFFFFu);
    });
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ((*t)->eos(), -1);
  }
  {
    VocabSpec s;
    s.model = "bert";
    auto t = Build(s);
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), absl::StatusCode::kUnimplemented);
    EXPECT_NE(t.status().message().find("bert"), absl::string_view::npos);
    EXPECT_NE(t.status().message().find("mem.gguf"), absl::string_view::npos);
  }
  {
    VocabSpec s;
    s.model = "gpt2";  // no merges
    auto t = Build(s);
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.status().message().find("tokenizer.ggml.merges"), absl::string_view::npos);
  }
  {
    VocabSpec s;
    s.model = "gpt2";
    auto t = Build(s, [](gguf::GgufWriter& w) {
      w.SetStringArray("tokenizer.ggml.merges", {"a b"});
      w.SetString("tokenizer.ggml.pre", "klingon");
    });
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.status().message().find("klingon"), absl::string_view::npos);
  }
  {
    gguf::GgufWriter w;
    w.SetString("tokenizer.ggml.model", "llama");
    auto f = gguf::GgufFile::Parse(w.Serialize(), "mem.gguf");
    ASSERT_TRUE(f.ok());
    auto t = Tokenizer::FromGguf(**f);
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.status().message().find("tokenizer.ggml.tokens"), absl::string_view::npos);
  }
  {
    gguf::GgufWriter w;
    w.SetString("general.architecture", "llama");
    auto f = gguf::GgufFile::Parse(w.Serialize(), "mem.gguf");
    ASSERT_TRUE(f.ok());
    auto t = Tokenizer::FromGguf(**f);
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.status().message().find("tokenizer.ggml.model"), absl::string_view::npos);
  }
  {
    // Wrong value type for the token list.
    gguf::GgufWriter w;
    w.SetString("tokenizer.ggml.model", "llama");
    w.SetFloat32Array("tokenizer.ggml.tokens", {1.0f});
    auto f = gguf::GgufFile::Parse(w.Serialize(), "mem.gguf");
    ASSERT_TRUE(f.ok());
    auto t = Tokenizer::FromGguf(**f);
    ASSERT_FALSE(t.ok());
  }
}

// --- speed ---

TEST(TokenizerSpeed, LoadAndEncode) {
  auto f = OpenOrDie(DataPath("vocab/ggml-vocab-deepseek-llm.gguf"));
  ASSERT_NE(f, nullptr);
  auto t0 = std::chrono::steady_clock::now();
  auto tok = Tokenizer::FromGguf(*f);
  auto t1 = std::chrono::steady_clock::now();
  ASSERT_TRUE(tok.ok());
  double load_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();

  auto llama = OpenOrDie(DataPath("vocab/ggml-vocab-gpt-2.gguf"));
  auto gpt2 = Tokenizer::FromGguf(*llama);
  ASSERT_TRUE(gpt2.ok());
  std::string text;
  for (const auto& s : SplitInp(ReadFileOrDie(DataPath("vocab/ggml-vocab-gpt-2.gguf.inp")))) {
    text += s + "\n";
  }
  while (text.size() < (1 << 16)) text += text;
  auto t2 = std::chrono::steady_clock::now();
  auto ids = (*gpt2)->Encode(text, false, false);
  auto t3 = std::chrono::steady_clock::now();
  double enc_ms = std::chrono::duration<double, std::milli>(t3 - t2).count();
  auto t4 = std::chrono::steady_clock::now();
  auto ids2 = (*tok)->Encode(text, false, false);
  auto t5 = std::chrono::steady_clock::now();
  double enc2_ms = std::chrono::duration<double, std::milli>(t5 - t4).count();
  std::printf("[ speed ] load deepseek-llm (102400 tokens, 99757 merges): %.1f ms; encode %zu "
              "bytes: gpt-2 %.1f ms (%.1f MB/s, fast path), deepseek-llm %.1f ms (%.1f MB/s, ICU)\n",
              load_ms, text.size(), enc_ms, text.size() / enc_ms / 1e3, enc2_ms,
              text.size() / enc2_ms / 1e3);
  EXPECT_FALSE(ids.empty());
  EXPECT_FALSE(ids2.empty());
  EXPECT_LT(load_ms, 2000);  // generous: shared CI machines; typically well under 100 ms
}

}  // namespace
}  // namespace pice

namespace pice {
namespace {

TEST(TokenizerUtf8Test, ToValidUtf8ReplacesOnlyInvalidSequences) {
  EXPECT_EQ(ToValidUtf8("plain ascii"), "plain ascii");
  EXPECT_EQ(ToValidUtf8("na\xC3\xAFve \xE2\x82\xAC \xF0\x9F\xA6\x99"), "na\xC3\xAFve \xE2\x82\xAC \xF0\x9F\xA6\x99");
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(ToValidUtf8("a\xFF" "b"), "a" + fffd + "b");            // never valid
  EXPECT_EQ(ToValidUtf8("a\xE2\x82"), "a" + fffd + fffd);           // truncated at the end
  EXPECT_EQ(ToValidUtf8("\xC0\xAF"), fffd + fffd);                  // overlong '/'
  EXPECT_EQ(ToValidUtf8("\xED\xA0\x80"), fffd + fffd + fffd);       // a surrogate
  EXPECT_EQ(ToValidUtf8("\xF4\x90\x80\x80"), fffd + fffd + fffd + fffd);  // past U+10FFFF
  EXPECT_EQ(ToValidUtf8(std::string("a\0b", 3)), std::string("a\0b", 3));
}

}  // namespace
}  // namespace pice
