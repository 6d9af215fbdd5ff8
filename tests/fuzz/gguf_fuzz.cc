// libFuzzer target: the GGUF reader must reject or accept any byte string without
// crashing or reading out of bounds; accepted files are walked completely. An accepted
// file with a vocabulary must then yield a tokenizer or a clean error (Tokenizer::FromGguf
// on hostile metadata), and a tokenizer must encode, decode and chat-format text.
// Seeds: vocabulary-only GGUFs cut from the bundled models and one file with a row of
// every weight type (tests/fuzz/vocab_seeds.cc); each tensor's first row is dequantized.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "engine/gguf/gguf.h"
#include "engine/kernels/kernels.h"
#include "engine/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = pice::gguf::GgufFile::Parse(
      std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.gguf");
  if (!f.ok()) return 0;
  uint64_t sink = 0;
  std::vector<float> row;
  for (const auto& t : (*f)->tensors()) {
    if (t.nbytes > 0) sink += t.data[0] + t.data[t.nbytes - 1];
    // The first row through the dequantizer of its type (any bytes are some block).
    if (t.nbytes > 0 && t.ne[0] <= 4096) {
      row.resize(size_t(t.ne[0]));
      pice::kernels::DequantizeRow(t.type, t.data, row.data(), t.ne[0]);
      sink += static_cast<uint64_t>(row[0] != row[0]);
    }
  }
  for (const auto& [k, v] : (*f)->metadata()) sink += k.size() + v.ArraySize();

  auto tok = pice::Tokenizer::FromGguf(**f);
  if (!tok.ok()) return 0;
  const pice::Tokenizer& t = **tok;
  const int32_t n = t.n_vocab();
  std::vector<pice::ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hi <|im_end|> 12+7?"}};
  const std::string chat = pice::ApplyChatTemplate(**f, msgs, /*add_assistant=*/true);
  for (const std::string& text : {std::string("Hello world, 12+7=19.\n  caf\xC3\xA9 \xE2\x96\x81"), chat}) {
    for (bool special : {false, true}) {
      std::vector<pice::Token> ids = t.Encode(text, /*add_special=*/special, /*parse_special=*/special);
      for (pice::Token id : ids) {
        if (id < 0 || id >= n) std::abort();  // every id must index the vocabulary
      }
      sink += t.Decode(ids, special).size();
    }
  }
  for (pice::Token id : {-1, 0, n - 1, n, t.bos(), t.eos()}) {
    sink += t.TokenToPiece(id, true).size() + t.IsEog(id) + t.IsControl(id);
  }
  volatile uint64_t keep = sink;
  (void)keep;
  return 0;
}
