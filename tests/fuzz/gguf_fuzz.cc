// libFuzzer target: the GGUF reader must reject or accept any byte string without
// crashing or reading out of bounds; accepted files are walked completely.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/gguf/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = pice::gguf::GgufFile::Parse(
      std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.gguf");
  if (!f.ok()) return 0;
  volatile uint64_t sink = 0;
  for (const auto& t : (*f)->tensors()) {
    if (t.nbytes > 0) sink += t.data[0] + t.data[t.nbytes - 1];
  }
  for (const auto& [k, v] : (*f)->metadata()) sink += k.size() + v.ArraySize();
  (void)sink;
  return 0;
}
