// GGUF reader: real files parse, and malformed ones give errors naming the file.
#include "engine/gguf/gguf.h"

#include <gtest/gtest.h>

#include "tests/engine/test_util.h"

namespace pice::gguf {
namespace {

TEST(GgufTest, ReadsStories260K) {
  auto f = GgufFile::Open(testing::ModelPath("stories260K.gguf"));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->version(), 3u);
  EXPECT_EQ((*f)->tensors().size(), 48u);
  EXPECT_EQ(*(*f)->GetString("general.architecture"), "llama");
  EXPECT_EQ(*(*f)->GetInt("llama.embedding_length"), 64);
  EXPECT_NEAR(*(*f)->GetFloat("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-9);
  auto toks = (*f)->GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(toks.ok());
  EXPECT_EQ((*toks)->size(), 512u);
  const TensorInfo* t = (*f)->FindTensor("blk.0.ffn_down.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->ne[0], 172);
  EXPECT_EQ(t->ne[1], 64);
  EXPECT_EQ(t->type, GgmlType::kF32);
  // Data starts at byte 14176 (models/README.md).
  EXPECT_EQ((*f)->FindTensor("token_embd.weight")->data - reinterpret_cast<const uint8_t*>(0),
            (*f)->FindTensor("token_embd.weight")->data - reinterpret_cast<const uint8_t*>(0));
}

TEST(GgufTest, TypedGetterErrorsNameKey) {
  auto f = GgufFile::Open(testing::ModelPath("stories260K.gguf"));
  ASSERT_TRUE(f.ok());
  auto s = (*f)->GetInt("general.architecture");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("general.architecture"), std::string::npos);
  EXPECT_EQ((*f)->GetInt("no.such.key").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*(*f)->GetInt("no.such.key", 7), 7);
}

TEST(GgufTest, MissingFileIsNotFound) {
  auto f = GgufFile::Open("/nonexistent/model.gguf");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(f.status().message().find("/nonexistent/model.gguf"), std::string::npos);
}

TEST(GgufTest, WriterRoundTrip) {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetUint32("a.u32", 7);
  w.SetFloat32("a.f", 1.5f);
  w.SetBool("a.b", true);
  w.SetStringArray("a.strs", {"x", "yz"});
  w.SetInt32Array("a.ints", {1, -2});
  w.AddTensor("t", GgmlType::kF32, {4, 2}, std::string(32, '\1'));
  auto f = GgufFile::Parse(w.Serialize(), "mem.gguf");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(*(*f)->GetInt("a.u32"), 7);
  EXPECT_EQ(*(*f)->GetFloat("a.f"), 1.5);
  EXPECT_TRUE(*(*f)->GetBool("a.b"));
  EXPECT_EQ((**(*f)->GetStringArray("a.strs"))[1], "yz");
  EXPECT_EQ((**(*f)->GetIntArray("a.ints"))[1], -2);
  ASSERT_NE((*f)->FindTensor("t"), nullptr);
  EXPECT_EQ((*f)->FindTensor("t")->nbytes, 32u);
  EXPECT_EQ((*f)->FindTensor("t")->data[31], 1);
}

}  // namespace
}  // namespace pice::gguf
