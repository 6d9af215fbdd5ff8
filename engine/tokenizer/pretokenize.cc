// BPE pre-tokenization: the regex lists llama.cpp's llama-vocab.cpp uses per
// `tokenizer.ggml.pre`, run with ICU's regex engine, which handles \p{L}, \p{N},
// \p{P} and lookahead as written.
//
// As in llama.cpp's unicode_regex_split, the regexes of a list are applied one after
// another, each to every piece the previous one left; text between two matches stays
// a piece of its own. Each piece is matched with opaque region bounds, so `(?!\S)` and
// `$` see the end of the piece, as std::regex does on a sub-range in llama.cpp.
//
// The two patterns llama.cpp runs through hand-written code (GPT-2's and Llama 3's,
// which Qwen2's differs from only in taking one digit at a time) go through an
// equivalent hand-written splitter here too: it is several times faster than the
// regex engine, and reproduces llama.cpp's treatment of unassigned code points.
// tokenizer_test checks the fast paths against ICU on every test string.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <unicode/regex.h>
#include <unicode/unistr.h>
#include <unicode/utext.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/tokenizer_internal.h"

namespace pice::tokenizer_internal {

namespace {

// The patterns, as in llama.cpp's llm_tokenizer_bpe (C++ string escapes resolved the
// same way; characters outside ASCII written as ICU \u escapes).
constexpr const char* kGpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
constexpr const char* kLlama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kQwen2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kDeepseekLlmLetters =
    "\\s?[A-Za-z\\u00B5\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u01BA\\u01BC-\\u01BF"
    "\\u01C4-\\u0293\\u0295-\\u02AF\\u0370-\\u0373\\u0376\\u0377\\u037B-\\u037D\\u037F"
    "\\u0386\\u0388-\\u038A\\u038C\\u038E-\\u03A1\\u03A3-\\u03F5\\u03F7-\\u0481"
    "\\u048A-\\u052F\\u0531-\\u0556\\u10A0-\\u10C5\\u13A0-\\u13F5\\u13F8-\\u13FD"
    "\\u1C90-\\u1CBA\\u1CBD-\\u1CBF\\u1D00-\\u1D2B\\u1D6B-\\u1D77\\u1D79-\\u1D9A"
    "\\u1E00-\\u1F15\\u1F18-\\u1F1D\\u1F20-\\u1F45\\u1F48-\\u1F4D\\u1F50-\\u1F57\\u1F59"
    "\\u1F5B\\u1F5D\\u1F5F-\\u1F7D\\u1F80-\\u1FB4\\u1FB6-\\u1FBC\\u1FBE\\u1FC2-\\u1FC4"
    "\\u1FC6-\\u1FCC\\u1FD0-\\u1FD3\\u1FD6-\\u1FDB\\u1FE0-\\u1FEC\\u1FF2-\\u1FF4"
    "\\u1FF6-\\u1FFC\\u2102\\u2107\\u210A-\\u2113\\u2115\\u2119-\\u211D\\u2124\\u2126"
    "\\u2128\\u212A-\\u212D\\u212F-\\u2134\\u2139\\u213C-\\u213F\\u2145-\\u2149\\u214E"
    "\\u2183\\u2184\\u2C00-\\u2C7B\\u2C7E-\\u2CE4\\u2CEB-\\u2CEE\\u2CF2\\u2CF3"
    "\\uA640-\\uA66D\\uA680-\\uA69B\\uA722-\\uA76F\\uA771-\\uA787\\uA78B-\\uA78E"
    "\\uAB70-\\uABBF\\uFB00-\\uFB06\\uFB13-\\uFB17\\uFF21-\\uFF3A\\uFF41-\\uFF5A"
    "\\U00010400-\\U0001044F\\U000104B0-\\U000104D3\\U000104D8-\\U000104FB"
    "\\U00010C80-\\U00010CB2\\U00010CC0-\\U00010CF2\\U000118A0-\\U000118DF"
    "\\U0001E900-\\U0001E943]+";
constexpr const char* kDeepseekLlmPunct =
    "\\s?[!-/:-~\\uFF01-\\uFF0F\\uFF1A-\\uFF5E\\u2018-\\u201F\\u3000-\\u3002]+";
constexpr const char* kDeepseekCjk = "[\\u4E00-\\u9FA5\\u0800-\\u4E00\\uAC00-\\uD7FF]+";
constexpr const char* kDeepseekV3Cjk = "[\\u4E00-\\u9FA5\\u3040-\\u309F\\u30A0-\\u30FF]+";
constexpr const char* kDeepseekV3Main =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?"
    "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kPoro = " ?[^(\\s|.,!?\\u2026\\u3002\\uFF0C\\u3001\\u0964\\u06D4\\u060C)]+";
constexpr const char* kTekken =
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?"
    "((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

enum class FastPath { kNone, kGpt2, kLlama3, kQwen2 };

FastPath FastPathFor(const std::string& re) {
  if (re == kGpt2) return FastPath::kGpt2;
  if (re == kLlama3) return FastPath::kLlama3;
  if (re == kQwen2) return FastPath::kQwen2;
  return FastPath::kNone;
}

// Hand-written GPT-2 splitter over code points [0, n); appends piece end indices.
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// Unassigned code points are not taken by [^\s\p{L}\p{N}] (llama.cpp does the same).
void SplitGpt2(const std::vector<CodePoint>& cps, const std::vector<CpFlags>& fl,
               std::vector<size_t>& ends) {
  const size_t n = cps.size();
  auto F = [&](size_t p) { return p < n ? fl[p] : CpFlags{}; };
  auto C = [&](size_t p) -> uint32_t { return p < n ? cps[p].cp : 0xFFFFFFFFu; };
  auto other = [](const CpFlags& f) { return !(f.whitespace || f.letter || f.number) && f.defined; };
  size_t pos = 0;
  while (pos < n) {
    const uint32_t cp = C(pos);
    const CpFlags f = F(pos);
    if (cp == '\'' && pos + 1 < n) {
      uint32_t c1 = C(pos + 1);
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        pos += 2;
        ends.push_back(pos);
        continue;
      }
      if (pos + 2 < n) {
        uint32_t c2 = C(pos + 2);
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
          pos += 3;
          ends.push_back(pos);
          continue;
        }
      }
    }
    const CpFlags f2 = cp == ' ' ? F(pos + 1) : f;
    if (f2.letter || f2.number) {
      const bool letter = f2.letter;
      pos += (cp == ' ');
      while (letter ? F(pos).letter : F(pos).number) ++pos;
      ends.push_back(pos);
      continue;
    }
    if (other(f2)) {
      pos += (cp == ' ');
      while (other(F(pos))) ++pos;
      ends.push_back(pos);
      continue;
    }
    size_t nws = 0;
    while (F(pos + nws).whitespace) ++nws;
    if (nws > 1 && pos + nws < n) {  // \s+(?!\S): leave the last one for the next word
      pos += nws - 1;
    } else if (nws > 0) {
      pos += nws;
    } else {
      ++pos;
    }
    ends.push_back(pos);
  }
}

// Hand-written Llama 3 (max_digits 3) / Qwen2 (max_digits 1) splitter:
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max}|
//   ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// llama.cpp runs Llama 3's through the same kind of code (unassigned code points not
// taken as "other"), and Qwen2's through std::regex (where they are); `exact_regex`
// selects the latter.
void SplitLlama3(const std::vector<CodePoint>& cps, const std::vector<CpFlags>& fl,
                 int max_digits, bool exact_regex, std::vector<size_t>& ends) {
  const size_t n = cps.size();
  auto F = [&](size_t p) {
    if (p >= n) return CpFlags{};
    CpFlags f = fl[p];
    if (exact_regex) f.defined = true;
    return f;
  };
  auto C = [&](size_t p) -> uint32_t { return p < n ? cps[p].cp : 0xFFFFFFFFu; };
  auto other = [](const CpFlags& f) { return !(f.whitespace || f.letter || f.number) && f.defined; };
  size_t pos = 0;
  while (pos < n) {
    const uint32_t cp = C(pos);
    const CpFlags f = F(pos);
    if (cp == '\'' && pos + 1 < n) {
      uint32_t c1 = ToLower(C(pos + 1));
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        pos += 2;
        ends.push_back(pos);
        continue;
      }
      if (pos + 2 < n) {
        uint32_t c2 = ToLower(C(pos + 2));
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
          pos += 3;
          ends.push_back(pos);
          continue;
        }
      }
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!(cp == '\r' || cp == '\n' || f.number) && (f.letter || F(pos + 1).letter)) {
      ++pos;
      while (F(pos).letter) ++pos;
      ends.push_back(pos);
      continue;
    }
    // \p{N}{1,max}
    if (f.number) {
      size_t ini = pos;
      while (F(pos).number) {
        if (++pos - ini >= static_cast<size_t>(max_digits)) {
          ends.push_back(pos);
          ini = pos;
        }
      }
      if (ends.empty() || ends.back() != pos) ends.push_back(pos);
      continue;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n]*
    const CpFlags f2 = cp == ' ' ? F(pos + 1) : f;
    if (!(f2.whitespace || f2.letter || f2.number) && f.defined) {
      pos += (cp == ' ');
      while (other(F(pos))) ++pos;
      while (C(pos) == '\r' || C(pos) == '\n') ++pos;
      ends.push_back(pos);
      continue;
    }
    size_t nws = 0, last_rn = 0;
    while (F(pos + nws).whitespace) {
      uint32_t c = C(pos + nws);
      if (c == '\r' || c == '\n') last_rn = pos + nws + 1;
      ++nws;
    }
    if (last_rn > 0) {  // \s*[\r\n]+
      pos = last_rn;
    } else if (nws > 1 && pos + nws < n) {  // \s+(?!\S)
      pos += nws - 1;
    } else if (nws > 0) {  // \s+
      pos += nws;
    } else {
      ++pos;
    }
    ends.push_back(pos);
  }
}

}  // namespace

struct PreTokenizer::Step {
  FastPath fast = FastPath::kNone;
  std::unique_ptr<icu::RegexPattern> pattern;
};

PreTokenizer::~PreTokenizer() = default;

bool PreTokenizerRegexes(const std::string& pre, std::vector<std::string>* re,
                         bool* ignore_merges) {
  *ignore_merges = false;
  re->clear();
  if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3") {
    *re = {kLlama3};
    *ignore_merges = true;
  } else if (pre == "dbrx" || pre == "smaug-bpe" || pre == "chatglm-bpe") {
    *re = {kLlama3};
  } else if (pre == "deepseek-llm") {
    *re = {"[\\r\\n]", kDeepseekLlmLetters, kDeepseekLlmPunct, "\\s+$", kDeepseekCjk, "\\p{N}+"};
  } else if (pre == "deepseek-v3") {
    *re = {"\\p{N}{1,3}", kDeepseekV3Cjk, kDeepseekV3Main};
  } else if (pre == "deepseek-coder") {
    *re = {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", kDeepseekCjk, "\\p{N}"};
  } else if (pre == "falcon") {
    *re = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2, "[0-9][0-9][0-9]"};
  } else if (pre == "starcoder" || pre == "refact" || pre == "command-r" || pre == "smollm" ||
             pre == "codeshell" || pre == "exaone" || pre == "minerva-7b") {
    *re = {"\\p{N}", kGpt2};
  } else if (pre == "gpt-2" || pre == "phi-2" || pre == "jina-es" || pre == "jina-de" ||
             pre == "gigachat" || pre == "jina-v1-en" || pre == "jina-v2-es" ||
             pre == "jina-v2-de" || pre == "jina-v2-code" || pre == "roberta-bpe" ||
             pre == "mpt" || pre == "olmo" || pre == "jais") {
    *re = {kGpt2};
  } else if (pre == "qwen2" || pre == "stablelm2" || pre == "megrez") {
    *re = {kQwen2};
  } else if (pre == "poro-chat" || pre == "bloom" || pre == "gpt3-finnish") {
    *re = {kPoro};
  } else if (pre == "viking") {
    *re = {kPoro, "\\p{N}"};
  } else if (pre == "tekken") {
    *re = {kTekken};
    *ignore_merges = true;
  } else if (pre == "chameleon") {
    *re = {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )",
           "\\p{N}", "[\\p{P}!-/:-@\\[-`{-~]", kGpt2};
  } else if (pre.empty() || pre == "default") {
    *re = {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2, "\\p{N}+", "[0-9][0-9][0-9]"};
  } else {
    return false;
  }
  return true;
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::Create(const std::string& pre) {
  std::vector<std::string> regexes;
  bool ignore_merges = false;
  if (!PreTokenizerRegexes(pre, &regexes, &ignore_merges)) {
    return absl::UnimplementedError(absl::StrCat("unknown pre-tokenizer type '", pre, "'"));
  }
  return FromRegexes(regexes, /*allow_fast_paths=*/true);
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::FromRegexes(
    const std::vector<std::string>& regexes, bool allow_fast_paths) {
  std::unique_ptr<PreTokenizer> p(new PreTokenizer());
  for (const std::string& re : regexes) {
    auto step = std::make_unique<Step>();
    if (allow_fast_paths) step->fast = FastPathFor(re);
    if (step->fast == FastPath::kNone) {
      UErrorCode status = U_ZERO_ERROR;
      UParseError pe;
      step->pattern.reset(
          icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(re), 0, pe, status));
      if (U_FAILURE(status)) {
        return absl::InternalError(absl::StrCat("pre-tokenizer regex '", re,
                                                "' does not compile: ", u_errorName(status),
                                                " at offset ", pe.offset));
      }
    }
    p->steps_.push_back(std::move(step));
  }
  return p;
}

std::vector<std::pair<size_t, size_t>> PreTokenizer::Split(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> pieces;
  if (text.empty()) return pieces;
  pieces.push_back({0, text.size()});
  UText* ut = nullptr;
  std::vector<std::pair<size_t, size_t>> next;
  std::vector<CodePoint> cps;
  std::vector<CpFlags> fl;
  std::vector<size_t> ends;
  for (const auto& step : steps_) {
    next.clear();
    next.reserve(pieces.size() * 2);
    if (step->fast != FastPath::kNone) {
      for (const auto& [off, len] : pieces) {
        cps = DecodeUtf8(text, off, off + len);
        fl.resize(cps.size());
        for (size_t i = 0; i < cps.size(); ++i) fl[i] = GetCpFlags(cps[i].cp);
        ends.clear();
        if (step->fast == FastPath::kGpt2) {
          SplitGpt2(cps, fl, ends);
        } else {
          SplitLlama3(cps, fl, step->fast == FastPath::kLlama3 ? 3 : 1,
                      /*exact_regex=*/step->fast == FastPath::kQwen2, ends);
        }
        size_t prev = 0;
        for (size_t e : ends) {
          if (e <= prev) continue;
          size_t b_off = cps[prev].offset;
          size_t e_off = e < cps.size() ? cps[e].offset : off + len;
          next.push_back({b_off, e_off - b_off});
          prev = e;
        }
      }
    } else {
      UErrorCode status = U_ZERO_ERROR;
      if (ut == nullptr) {
        ut = utext_openUTF8(nullptr, text.data(), static_cast<int64_t>(text.size()), &status);
      }
      std::unique_ptr<icu::RegexMatcher> m(step->pattern->matcher(status));
      if (U_FAILURE(status)) {  // out of memory: keep the pieces as they are
        next = pieces;
      } else {
        m->reset(ut);
        for (const auto& [off, len] : pieces) {
          status = U_ZERO_ERROR;
          m->region(static_cast<int64_t>(off), static_cast<int64_t>(off + len), status);
          size_t prev = off;
          while (U_SUCCESS(status) && m->find()) {
            size_t s = static_cast<size_t>(m->start64(status));
            size_t e = static_cast<size_t>(m->end64(status));
            if (e <= s) continue;
            if (s > prev) next.push_back({prev, s - prev});
            next.push_back({s, e - s});
            prev = e;
          }
          if (prev < off + len) next.push_back({prev, off + len - prev});
        }
      }
    }
    pieces.swap(next);
  }
  if (ut != nullptr) utext_close(ut);
  return pieces;
}

}  // namespace pice::tokenizer_internal
