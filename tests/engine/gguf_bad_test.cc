// Hand-made malformed GGUF files: each must give a clear error naming the file and the
// problem, never a crash or an out-of-bounds read (ASan builds check the latter).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "engine/gguf/gguf.h"
#include "engine/model.h"
#include "engine/model_gen.h"
#include "tests/engine/test_util.h"

namespace pice::gguf {
namespace {

template <typename T>
void Put(std::string* s, T v) { s->append(reinterpret_cast<const char*>(&v), sizeof(T)); }
void PutStr(std::string* s, const std::string& v) { Put<uint64_t>(s, v.size()); s->append(v); }

std::string Header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
  std::string s;
  Put<uint32_t>(&s, 0x46554747);
  Put<uint32_t>(&s, version);
  Put<uint64_t>(&s, n_tensors);
  Put<uint64_t>(&s, n_kv);
  return s;
}

// Parses `bytes` and expects an error whose message contains `what` and the name.
void ExpectError(const std::string& bytes, const std::string& what) {
  auto f = GgufFile::Parse(bytes, "bad.gguf");
  ASSERT_FALSE(f.ok()) << "accepted a file that should fail with: " << what;
  std::string msg(f.status().message());
  EXPECT_NE(msg.find("bad.gguf"), std::string::npos) << msg;
  EXPECT_NE(msg.find(what), std::string::npos) << msg;
}

TEST(GgufBadTest, HeaderProblems) {
  ExpectError("", "too short");
  ExpectError("GGU", "too short");
  ExpectError("XXXX" + std::string(20, '\0'), "bad magic");
  ExpectError(Header(0, 0, 1), "unsupported version 1");
  ExpectError(Header(0, 0, 99), "unsupported version 99");
  ExpectError(Header(0, 0).substr(0, 12), "truncated header");
  ExpectError(Header(0, uint64_t{1} << 40), "metadata count");
  ExpectError(Header(uint64_t{1} << 40, 0), "tensor count");
}

TEST(GgufBadTest, MetadataProblems) {
  std::string s = Header(0, 1);
  Put<uint64_t>(&s, 1000);  // key length past the end
  ExpectError(s, "truncated key");

  s = Header(0, 1);
  PutStr(&s, "k");
  Put<uint32_t>(&s, 77);  // unknown value type
  ExpectError(s, "unknown value type 77");

  s = Header(0, 1);
  PutStr(&s, "k");
  Put<uint32_t>(&s, 8);  // string
  Put<uint64_t>(&s, uint64_t{1} << 62);
  ExpectError(s, "key 'k'");

  s = Header(0, 1);
  PutStr(&s, "arr");
  Put<uint32_t>(&s, 9);
  Put<uint32_t>(&s, 4);  // uint32 elements
  Put<uint64_t>(&s, uint64_t{1} << 27);  // far more than the file holds
  ExpectError(s, "runs past the end");

  s = Header(0, 1);
  PutStr(&s, "nest");
  for (int i = 0; i < 6; ++i) { Put<uint32_t>(&s, 9); if (i == 0) continue; }
  // type array -> elements of type array ... deeper than allowed
  s = Header(0, 1);
  PutStr(&s, "nest");
  Put<uint32_t>(&s, 9);
  for (int i = 0; i < 6; ++i) { Put<uint32_t>(&s, 9); Put<uint64_t>(&s, 1); }
  s.append(64, '\0');
  ExpectError(s, "nested too deeply");

  s = Header(0, 2);
  for (int i = 0; i < 2; ++i) { PutStr(&s, "dup"); Put<uint32_t>(&s, 4); Put<uint32_t>(&s, 1); }
  ExpectError(s, "duplicate key 'dup'");

  s = Header(0, 1);
  PutStr(&s, "general.alignment");
  Put<uint32_t>(&s, 4);
  Put<uint32_t>(&s, 24);
  ExpectError(s, "power of two");
}

std::string OneTensor(uint32_t n_dims, std::vector<uint64_t> ne, uint32_t type, uint64_t offset,
                      size_t data_bytes, const std::string& name = "t") {
  std::string s = Header(1, 0);
  PutStr(&s, name);
  Put<uint32_t>(&s, n_dims);
  for (uint64_t d : ne) Put<uint64_t>(&s, d);
  Put<uint32_t>(&s, type);
  Put<uint64_t>(&s, offset);
  s.resize((s.size() + 31) / 32 * 32, '\0');
  s.append(data_bytes, '\0');
  return s;
}

TEST(GgufBadTest, TensorProblems) {
  EXPECT_TRUE(GgufFile::Parse(OneTensor(2, {4, 2}, 0, 0, 32), "ok.gguf").ok());
  ExpectError(OneTensor(0, {}, 0, 0, 32), "0 dimensions");
  ExpectError(OneTensor(5, {1, 1, 1, 1, 1}, 0, 0, 32), "5 dimensions");
  ExpectError(OneTensor(2, {4, 0}, 0, 0, 32), "bad dimension 0");
  ExpectError(OneTensor(4, {1u << 30, 1u << 30, 1u << 30, 1u << 30}, 0, 0, 32), "overflows");
  ExpectError(OneTensor(2, {4, 2}, 10, 0, 32), "type q2_K");      // known, not supported
  ExpectError(OneTensor(2, {4, 2}, 99, 0, 32), "type type99");    // unknown id
  ExpectError(OneTensor(2, {896, 2}, 12, 0, 4096), "not a multiple of the q4_K block");
  ExpectError(OneTensor(2, {256, 2}, 14, 0, 2 * 210 - 1), "runs past the end");  // q6_K
  ExpectError(OneTensor(2, {4, 2}, 0, 3, 64), "not aligned");
  ExpectError(OneTensor(2, {4, 2}, 0, 0, 31), "runs past the end");
  ExpectError(OneTensor(2, {4, 2}, 0, uint64_t{1} << 63, 32), "runs past the end");
  ExpectError(OneTensor(2, {30, 2}, 8, 0, 128), "not a multiple");  // q8_0 rows of 30
  std::string trunc = OneTensor(2, {4, 2}, 0, 0, 32);
  ExpectError(trunc.substr(0, 40), "truncated");
}

TEST(GgufBadTest, EveryTruncationOfARealFileFailsCleanly) {
  std::string bytes = testing::ReadFileOrDie(testing::ModelPath("stories260K-q8_0.gguf"));
  // Truncate at many points across the header and data; none may be accepted as whole.
  for (size_t n = 0; n < bytes.size(); n += (n < 16384 ? 97 : 40000)) {
    auto f = GgufFile::Parse(std::string_view(bytes).substr(0, n), "cut.gguf");
    EXPECT_FALSE(f.ok()) << "accepted a file cut at " << n;
  }
}

// Files that are valid GGUF but do not make a model of their architecture.
class BadModelTest : public ::testing::Test {
 protected:
  std::string Write(GgufWriter& w) {
    std::string path = ::testing::TempDir() + "/bad_model_" + std::to_string(counter_++) + ".gguf";
    EXPECT_TRUE(w.WriteFile(path).ok());
    return path;
  }
  int counter_ = 0;
};

TEST_F(BadModelTest, ArchitectureAndShapeErrors) {
  // Start from a valid generated model, then break one thing at a time.
  std::string good = ::testing::TempDir() + "/good_model.gguf";
  GenModelOptions o;
  o.n_embd = 64; o.n_layer = 1; o.n_head = 2; o.n_head_kv = 1; o.n_ff = 96; o.n_vocab = 320;
  ASSERT_TRUE(WriteRandomModel(o, good).ok());
  ASSERT_TRUE(Model::Load(good).ok()) << Model::Load(good).status();

  auto f = GgufFile::Open(good);
  ASSERT_TRUE(f.ok());
  auto rebuild = [&](const std::string& drop_tensor, const std::string& set_key, uint32_t value,
                     const std::string& arch = "llama", const std::string& reshape = "") {
    GgufWriter w;
    for (const auto& [k, v] : (*f)->metadata()) {
      if (k == set_key) { w.SetUint32(k, value); continue; }
      if (k == "general.architecture") { w.SetString(k, arch); continue; }
      switch (v.type) {
        case ValueType::kString: w.SetString(k, v.s); break;
        case ValueType::kFloat32: w.SetFloat32(k, float(v.f)); break;
        case ValueType::kBool: w.SetBool(k, v.i != 0); break;
        case ValueType::kArray:
          if (v.array_type == ValueType::kString) w.SetStringArray(k, v.strings);
          else { std::vector<int32_t> ints(v.ints.begin(), v.ints.end()); w.SetInt32Array(k, ints); }
          break;
        default: w.SetUint32(k, uint32_t(v.i)); break;
      }
    }
    if (!set_key.empty() && !(*f)->Has(set_key)) w.SetUint32(set_key, value);
    for (const TensorInfo& t : (*f)->tensors()) {
      if (t.name == drop_tensor) continue;
      std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
      if (t.name == reshape) std::swap(ne[0], ne[1]);
      w.AddTensor(t.name, t.type, ne, std::string(reinterpret_cast<const char*>(t.data), t.nbytes));
    }
    return Write(w);
  };
  auto expect = [&](const std::string& path, const std::string& what) {
    auto m = Model::Load(path);
    ASSERT_FALSE(m.ok()) << what;
    EXPECT_NE(m.status().message().find(what), std::string::npos) << m.status();
    EXPECT_NE(m.status().message().find(path), std::string::npos) << m.status();
  };
  expect(rebuild("blk.0.ffn_up.weight", "", 0), "tensor 'blk.0.ffn_up.weight' is missing");
  expect(rebuild("", "", 0, "gpt-neox"), "architecture 'gpt-neox' is not supported");
  expect(rebuild("", "llama.attention.head_count", 0), "head_count");
  expect(rebuild("", "llama.attention.head_count_kv", 3), "head_count_kv");
  expect(rebuild("", "llama.embedding_length", 96), "expected");
  expect(rebuild("", "", 0, "llama", "blk.0.ffn_gate.weight"), "blk.0.ffn_gate.weight");
  expect(rebuild("", "tokenizer.ggml.bos_token_id", 100000), "bos");
}

}  // namespace
}  // namespace pice::gguf
