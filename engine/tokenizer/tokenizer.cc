// Tokenizer loading from GGUF metadata and the parts SPM and BPE share: special token
// partitioning, BOS/EOS, end-of-generation detection and pieces. llama.cpp's
// llama-vocab.cpp (llama_vocab::impl::load / tokenize / token_to_piece) is the
// reference for every default and rule here.
#include <algorithm>
#include <cctype>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/gguf/gguf.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/tokenizer_internal.h"

namespace pice {

using tokenizer_internal::AV;
using tokenizer_internal::Fragment;
using tokenizer_internal::VocabData;
namespace ti = tokenizer_internal;

namespace {

constexpr std::string_view kModelKey = "tokenizer.ggml.model";

// Reads an optional token id. Absent -> `def` (or -1 when `def` is out of range);
// -1 / 0xFFFFFFFF (what converters write for "none") -> -1; any other value outside
// [0, n) is an error naming the file and key.
absl::Status ReadId(const gguf::GgufFile& file, std::string_view key, int64_t n, Token def,
                    Token* out) {
  const gguf::Value* v = file.Find(key);
  if (v == nullptr) {
    *out = (def >= 0 && def < n) ? def : -1;
    return absl::OkStatus();
  }
  auto id = file.GetInt(key);
  if (!id.ok()) return id.status();
  if (*id == -1 || *id == 0xFFFFFFFFll) {
    *out = -1;
    return absl::OkStatus();
  }
  if (*id < 0 || *id >= n) {
    return file.Error(absl::StatusCode::kInvalidArgument,
                      absl::StrCat(AV(key), " = ", *id, " is out of range: the vocabulary has ", n,
                                   " tokens"));
  }
  *out = static_cast<Token>(*id);
  return absl::OkStatus();
}

absl::Status ReadBool(const gguf::GgufFile& file, std::string_view key, bool* inout) {
  if (!file.Has(key)) return absl::OkStatus();
  auto b = file.GetBool(key);
  if (!b.ok()) return b.status();
  *inout = *b;
  return absl::OkStatus();
}

uint32_t AttrFromType(int64_t type) {
  switch (type) {
    case 1: return ti::kAttrNormal;
    case 2: return ti::kAttrUnknown;
    case 3: return ti::kAttrControl;
    case 4: return ti::kAttrUserDefined;
    case 5: return ti::kAttrUnused;
    case 6: return ti::kAttrByte;
    default: return ti::kAttrUndefined;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(const gguf::GgufFile& file) {
  VocabData d;
  if (!file.Has(kModelKey)) {
    return file.Error(absl::StatusCode::kNotFound,
                      absl::StrCat("missing key ", AV(kModelKey), " (no tokenizer in this file)"));
  }
  auto model = file.GetString(kModelKey);
  if (!model.ok()) return model.status();
  d.model = *model;
  if (d.model != "llama" && d.model != "gpt2") {
    return file.Error(absl::StatusCode::kUnimplemented,
                      absl::StrCat(AV(kModelKey), " = '", d.model,
                                   "' is not supported (only 'llama' and 'gpt2')"));
  }
  auto pre = file.GetString("tokenizer.ggml.pre", "");
  if (!pre.ok()) return pre.status();
  d.pre = *pre;
  auto name = file.GetString("general.name", "");
  if (!name.ok()) return name.status();
  d.general_name = *name;

  // Tokens, scores, types.
  if (!file.Has("tokenizer.ggml.tokens")) {
    return file.Error(absl::StatusCode::kNotFound, "missing key tokenizer.ggml.tokens");
  }
  auto tokens = file.GetStringArray("tokenizer.ggml.tokens");
  if (!tokens.ok()) return tokens.status();
  d.tokens = **tokens;
  const int64_t n = static_cast<int64_t>(d.tokens.size());
  if (n == 0) {
    return file.Error(absl::StatusCode::kInvalidArgument, "tokenizer.ggml.tokens is empty");
  }
  if (n > INT32_MAX) {
    return file.Error(absl::StatusCode::kInvalidArgument, "tokenizer.ggml.tokens is too long");
  }
  d.scores.assign(n, 0.0f);
  if (file.Has("tokenizer.ggml.scores")) {
    auto scores = file.GetFloatArray("tokenizer.ggml.scores");
    if (!scores.ok()) return scores.status();
    if (static_cast<int64_t>((*scores)->size()) != n) {
      return file.Error(absl::StatusCode::kInvalidArgument,
                        absl::StrCat("tokenizer.ggml.scores has ", (*scores)->size(),
                                     " entries but tokenizer.ggml.tokens has ", n));
    }
    for (int64_t i = 0; i < n; ++i) d.scores[i] = static_cast<float>((**scores)[i]);
  }
  d.types.assign(n, 1);
  if (file.Has("tokenizer.ggml.token_type")) {
    auto types = file.GetIntArray("tokenizer.ggml.token_type");
    if (!types.ok()) return types.status();
    if (static_cast<int64_t>((*types)->size()) != n) {
      return file.Error(absl::StatusCode::kInvalidArgument,
                        absl::StrCat("tokenizer.ggml.token_type has ", (*types)->size(),
                                     " entries but tokenizer.ggml.tokens has ", n));
    }
    for (int64_t i = 0; i < n; ++i) d.types[i] = static_cast<int32_t>((**types)[i]);
  }

  // Defaults per vocabulary type (llama.cpp), then the keys.
  Token def_bos = -1, def_eos = -1, def_unk = -1;
  if (d.model == "llama") {
    def_bos = 1;
    def_eos = 2;
    def_unk = 0;
    d.add_bos = true;
    d.add_eos = false;
    d.add_space_prefix = true;
  } else {
    if (!file.Has("tokenizer.ggml.merges")) {
      return file.Error(absl::StatusCode::kNotFound,
                        "missing key tokenizer.ggml.merges (required for 'gpt2' vocabularies)");
    }
    auto merges = file.GetStringArray("tokenizer.ggml.merges");
    if (!merges.ok()) return merges.status();
    d.merges = *merges;
    def_bos = 11;
    def_eos = 11;
    d.add_space_prefix = false;
    std::vector<std::string> unused;
    bool ignore_merges = false;
    if (!ti::PreTokenizerRegexes(d.pre, &unused, &ignore_merges)) {
      return file.Error(absl::StatusCode::kUnimplemented,
                        absl::StrCat("tokenizer.ggml.pre = '", d.pre,
                                     "' is not a supported pre-tokenizer"));
    }
    if (d.pre == "llama3" || d.pre == "llama-v3" || d.pre == "llama-bpe" || d.pre == "falcon3" ||
        d.pre == "tekken" || d.pre == "chameleon") {
      d.add_bos = true;
    }
    if (d.pre == "chatglm-bpe") def_bos = -1;
  }
  absl::Status st;
  if (!(st = ReadBool(file, "tokenizer.ggml.add_space_prefix", &d.add_space_prefix)).ok()) return st;
  if (!(st = ReadId(file, "tokenizer.ggml.bos_token_id", n, def_bos, &d.bos)).ok()) return st;
  if (!(st = ReadId(file, "tokenizer.ggml.eos_token_id", n, def_eos, &d.eos)).ok()) return st;
  if (!(st = ReadId(file, "tokenizer.ggml.eot_token_id", n, -1, &d.eot)).ok()) return st;
  if (!(st = ReadId(file, "tokenizer.ggml.eom_token_id", n, -1, &d.eom)).ok()) return st;
  if (!(st = ReadId(file, "tokenizer.ggml.unknown_token_id", n, def_unk, &d.unk)).ok()) return st;
  if (!(st = ReadBool(file, "tokenizer.ggml.add_bos_token", &d.add_bos)).ok()) return st;
  if (!(st = ReadBool(file, "tokenizer.ggml.add_eos_token", &d.add_eos)).ok()) return st;

  if (d.model == "llama") return ti::MakeSpmTokenizer(file, std::move(d));
  return ti::MakeBpeTokenizer(file, std::move(d));
}

std::string Tokenizer::Decode(const std::vector<Token>& ids, bool special) const {
  std::string out;
  for (Token id : ids) out += TokenToPiece(id, special);
  return out;
}

std::string ToValidUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int len = 0;
    uint32_t cp = 0;
    if (c < 0x80) { len = 1; cp = c; }
    else if ((c >> 5) == 6) { len = 2; cp = c & 0x1F; }
    else if ((c >> 4) == 14) { len = 3; cp = c & 0x0F; }
    else if ((c >> 3) == 30) { len = 4; cp = c & 0x07; }
    bool ok = len > 0 && i + len <= s.size();
    for (int k = 1; ok && k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      ok = (cc >> 6) == 2;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Reject overlong forms, surrogates and values past U+10FFFF.
    if (ok) {
      ok = !(len == 2 && cp < 0x80) && !(len == 3 && cp < 0x800) && !(len == 4 && cp < 0x10000) &&
           !(cp >= 0xD800 && cp <= 0xDFFF) && cp <= 0x10FFFF;
    }
    if (ok) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

bool Tokenizer::IsEog(Token id) const {
  return id >= 0 && std::binary_search(eog_.begin(), eog_.end(), id);
}

bool Tokenizer::IsControl(Token id) const {
  return id >= 0 && id < n_vocab() && types_[id] == 3;
}

namespace tokenizer_internal {

absl::Status VocabTokenizer::Init(const gguf::GgufFile& file, VocabData d) {
  const int32_t n = static_cast<int32_t>(d.tokens.size());
  tokens_ = std::move(d.tokens);
  types_ = std::move(d.types);
  scores_ = std::move(d.scores);
  bos_ = d.bos;
  eos_ = d.eos;
  unk_ = d.unk;
  add_bos_ = d.add_bos;
  add_eos_ = d.add_eos;
  add_space_prefix_ = d.add_space_prefix;

  attrs_.resize(n);
  token_to_id_.reserve(n);
  for (int32_t i = 0; i < n; ++i) {
    if (tokens_[i].empty()) tokens_[i] = absl::StrCat("[EMPTY_", i, "]");  // as llama.cpp
    token_to_id_[tokens_[i]] = i;  // a repeated text maps to its last id, as llama.cpp
    attrs_[i] = AttrFromType(types_[i]);
  }

  // End-of-turn / end-of-message / FIM tokens found by their text (llama.cpp's
  // workaround for converters that do not set the ids); these become control tokens.
  static const char* const kEot[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                     "<|endoftext|>", "<EOT>",
                                     "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"};
  static const char* const kEogText[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                         "<|endoftext|>", "<|eom_id|>", "<EOT>"};
  auto make_control = [&](Token id) {
    attrs_[id] |= kAttrControl;
    types_[id] = 3;
  };
  eot_ = d.eot;
  eom_ = d.eom;
  if (eot_ < 0) {
    for (const char* t : kEot) {
      Token id = TextToToken(t);
      if (id >= 0) {
        if (eot_ < 0) eot_ = id;
        make_control(id);
      }
    }
  }
  if (eom_ < 0) {
    Token id = TextToToken("<|eom_id|>");
    if (id >= 0) {
      eom_ = id;
      make_control(id);
    }
  }
  absl::flat_hash_set<Token> eog;
  // FIM tokens: from their keys, else by text (then made control). PAD, REPO and SEP
  // end generation.
  struct Fim {
    const char* key;
    std::vector<const char*> texts;
    bool eog;
  };
  const Fim kFim[] = {
      {"tokenizer.ggml.fim_pre_token_id",
       {"<|fim_prefix|>", "<fim-prefix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>", "<PRE>"},
       false},
      {"tokenizer.ggml.fim_suf_token_id",
       {"<|fim_suffix|>", "<fim-suffix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "hole\xEF\xBD\x9C>", "<SUF>"},
       false},
      {"tokenizer.ggml.fim_mid_token_id",
       {"<|fim_middle|>", "<fim-middle>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", "<MID>"},
       false},
      {"tokenizer.ggml.fim_pad_token_id", {"<|fim_pad|>", "<fim-pad>", "<PAD>"}, true},
      {"tokenizer.ggml.fim_rep_token_id",
       {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>"}, true},
      {"tokenizer.ggml.fim_sep_token_id", {"<|file_sep|>"}, true},
  };
  for (const Fim& fim : kFim) {
    Token fid = -1;
    if (file.Has(fim.key)) {
      absl::Status st = ReadId(file, fim.key, n, -1, &fid);
      if (!st.ok()) return st;
    } else {
      for (const char* t : fim.texts) {
        Token id = TextToToken(t);
        if (id >= 0) {
          if (fid < 0) fid = id;
          make_control(id);
        }
      }
    }
    if (fim.eog && fid >= 0) eog.insert(fid);
  }
  for (const char* t : kEogText) {
    Token id = TextToToken(t);
    if (id >= 0) {
      make_control(id);
      eog.insert(id);
    }
  }
  // Not in llama.cpp's text list, but every vocabulary that has them uses them as EOS.
  for (const char* t : {"</s>", "<|end_of_text|>"}) {
    Token id = TextToToken(t);
    if (id >= 0 && (attrs_[id] & kAttrControl)) eog.insert(id);
  }
  for (Token id : {eos_, eot_, eom_}) {
    if (id >= 0) eog.insert(id);
  }
  eog_.assign(eog.begin(), eog.end());
  std::sort(eog_.begin(), eog_.end());

  // Special tokens matched in the text before tokenizing, longest first.
  for (Token id = 0; id < n; ++id) {
    if (attrs_[id] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) special_tokens_.push_back(id);
  }
  std::stable_sort(special_tokens_.begin(), special_tokens_.end(), [&](Token a, Token b) {
    return tokens_[a].size() > tokens_[b].size();
  });

  // Per-model strip attributes (llama.cpp sets these by name too).
  std::string name = absl::AsciiStrToLower(d.general_name);
  auto contains = [](const std::string& s, std::string_view sub) {
    return s.find(sub) != std::string::npos;
  };
  if (contains(d.pre, "jina-v2-de") || contains(d.pre, "jina-v2-es") ||
      contains(d.pre, "jina-v2-code")) {
    Token id = TextToToken("<mask>");
    if (id >= 0) attrs_[id] |= kAttrLstrip;
  } else if (contains(name, "phi-3") || contains(name, "phi3")) {
    for (Token id : special_tokens_) attrs_[id] |= kAttrRstrip;
    if (Token id = TextToToken("</s>"); id >= 0) attrs_[id] |= kAttrRstrip;
    for (const char* t : {"<unk>", "<s>", "<|endoftext|>"}) {
      if (Token id = TextToToken(t); id >= 0) attrs_[id] &= ~kAttrRstrip;
    }
  }

  pieces_.resize(n);
  for (Token id = 0; id < n; ++id) pieces_[id] = ComputePiece(id);
  return absl::OkStatus();
}

std::vector<Fragment> VocabTokenizer::Partition(std::string_view text, bool parse_special) const {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({false, -1, 0, text.size()});
  std::vector<Fragment> next;
  for (Token sid : special_tokens_) {
    const uint32_t a = attrs_[sid];
    if (!parse_special && (a & (kAttrControl | kAttrUnknown))) continue;
    const std::string& st = tokens_[sid];
    // Skip quickly when the token does not occur at all.
    if (text.find(st) == std::string_view::npos) continue;
    next.clear();
    for (const Fragment& f : frags) {
      if (f.is_token) {
        next.push_back(f);
        continue;
      }
      size_t off = f.offset, len = f.length;
      while (true) {
        size_t match = text.substr(0, off + len).find(st, off);
        if (match == std::string_view::npos) break;
        if (match > off) {
          size_t llen = match - off;
          if (a & kAttrLstrip) {
            while (llen > 0 && std::isspace(static_cast<unsigned char>(text[off + llen - 1]))) --llen;
          }
          if (llen > 0) next.push_back({false, -1, off, llen});
        }
        next.push_back({true, sid, 0, 0});
        size_t roff = match + st.size();
        size_t rlen = off + len - roff;
        if (a & kAttrRstrip) {
          while (rlen > 0 && std::isspace(static_cast<unsigned char>(text[roff]))) {
            ++roff;
            --rlen;
          }
        }
        off = roff;
        len = rlen;
        if (len == 0) break;
      }
      if (len > 0) next.push_back({false, -1, off, len});
    }
    frags.swap(next);
  }
  return frags;
}

std::vector<Token> VocabTokenizer::Encode(std::string_view text, bool add_special,
                                          bool parse_special) const {
  std::vector<Token> out;
  if (add_special && add_bos_ && bos_ >= 0) out.push_back(bos_);
  bool prev_special = true;  // SPM: prefix a space at the start and after special tokens
  for (const Fragment& f : Partition(text, parse_special)) {
    if (f.is_token) {
      out.push_back(f.token);
      prev_special = true;
    } else {
      TokenizeFragment(text.substr(f.offset, f.length), prev_special, out);
      prev_special = false;
    }
  }
  if (add_special && add_eos_ && eos_ >= 0) out.push_back(eos_);
  return out;
}

std::string VocabTokenizer::TokenToPiece(Token id, bool special) const {
  if (id < 0 || id >= n_vocab()) return "";
  if (!special && (attrs_[id] & (kAttrUnknown | kAttrControl))) return "";
  return pieces_[id];
}

}  // namespace tokenizer_internal
}  // namespace pice
