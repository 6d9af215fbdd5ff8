// UTF-8 decoding, code point classes and the GPT-2 byte alphabet.
//
// Classes come from ICU (the same Unicode general categories llama.cpp's generated
// tables hold): letter = L*, number = N*, whitespace = the White_Space property,
// "defined" = anything but unassigned (Cn).
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include <unicode/uchar.h>

#include "engine/tokenizer/tokenizer_internal.h"

namespace pice::tokenizer_internal {

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp <= 0x7F) {
    out.push_back(static_cast<char>(cp));
  } else if (cp <= 0x7FF) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp <= 0xFFFF) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | ((cp >> 18) & 0x07)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::vector<CodePoint> DecodeUtf8(std::string_view text, size_t begin, size_t end) {
  std::vector<CodePoint> out;
  out.reserve(end - begin);
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  size_t i = begin;
  while (i < end) {
    uint8_t c = s[i];
    uint32_t cp = 0xFFFD;
    size_t n = 1;
    if (c < 0x80) {
      cp = c;
    } else {
      size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
      if (need != 0 && i + need <= end) {
        uint32_t v = need == 2 ? (c & 0x1F) : need == 3 ? (c & 0x0F) : (c & 0x07);
        bool ok = true;
        for (size_t k = 1; k < need; ++k) {
          if ((s[i + k] & 0xC0) != 0x80) { ok = false; break; }
          v = (v << 6) | (s[i + k] & 0x3F);
        }
        if (ok && v <= 0x10FFFF) {
          cp = v;
          n = need;
        }
      }
    }
    out.push_back({cp, static_cast<uint32_t>(i), static_cast<uint32_t>(n)});
    i += n;
  }
  return out;
}

namespace {

CpFlags ComputeFlags(uint32_t cp) {
  CpFlags f;
  int8_t t = u_charType(static_cast<UChar32>(cp));
  f.defined = t != U_UNASSIGNED;
  switch (t) {
    case U_UPPERCASE_LETTER: case U_LOWERCASE_LETTER: case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER: case U_OTHER_LETTER:
      f.letter = true;
      break;
    case U_DECIMAL_DIGIT_NUMBER: case U_LETTER_NUMBER: case U_OTHER_NUMBER:
      f.number = true;
      break;
    default:
      break;
  }
  f.whitespace = u_isUWhiteSpace(static_cast<UChar32>(cp));
  return f;
}

struct Latin1Flags {
  std::array<CpFlags, 256> f;
  Latin1Flags() {
    for (uint32_t c = 0; c < 256; ++c) f[c] = ComputeFlags(c);
  }
};

struct ByteTables {
  std::array<std::string, 256> byte_to_utf8;
  std::array<int16_t, 512> cp_to_byte;
  ByteTables() {
    cp_to_byte.fill(-1);
    std::array<bool, 256> direct{};
    for (int c = 0x21; c <= 0x7E; ++c) direct[c] = true;
    for (int c = 0xA1; c <= 0xAC; ++c) direct[c] = true;
    for (int c = 0xAE; c <= 0xFF; ++c) direct[c] = true;
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      uint32_t cp = direct[b] ? b : 256 + n++;
      AppendUtf8(cp, byte_to_utf8[b]);
      cp_to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteTables& Bytes() {
  static const ByteTables* t = new ByteTables();
  return *t;
}

}  // namespace

CpFlags GetCpFlags(uint32_t cp) {
  static const Latin1Flags* latin1 = new Latin1Flags();
  if (cp < 256) return latin1->f[cp];
  return ComputeFlags(cp);
}

uint32_t ToLower(uint32_t cp) { return static_cast<uint32_t>(u_tolower(static_cast<UChar32>(cp))); }

const std::string& ByteToUnicode(uint8_t b) { return Bytes().byte_to_utf8[b]; }

int UnicodeToByte(uint32_t cp) { return cp < 512 ? Bytes().cp_to_byte[cp] : -1; }

}  // namespace pice::tokenizer_internal
