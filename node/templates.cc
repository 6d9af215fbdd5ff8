#include "node/templates.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "engine/status_macros.h"

namespace pice {
namespace {

// Placeholder names used in `text`; error for an unbalanced brace.
absl::Status CheckPlaceholders(const ConfigNode& parent, const std::string& key,
                               const std::string& text, const std::set<std::string>& allowed) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '{') {
      if (i + 1 < text.size() && text[i + 1] == '{') {
        ++i;
        continue;
      }
      size_t close = text.find('}', i);
      if (close == std::string::npos) {
        return parent.ChildError(key, "unbalanced { (write {{ for a literal brace)");
      }
      std::string name = text.substr(i + 1, close - i - 1);
      if (!allowed.count(name)) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "{" : ", {") + a + "}";
        return parent.ChildError(key, absl::StrCat("unknown placeholder {", name,
                                                   "}; this field offers ", list));
      }
      i = close;
    }
  }
  return absl::OkStatus();
}

absl::Status LoadPart(const ConfigNode& root, const std::string& key, PromptPart* part,
                      const std::set<std::string>& vars, std::vector<std::string> extra_keys,
                      bool required) {
  if (required) PICE_RETURN_IF_ERROR(root.Require(key));
  ConfigNode n = root.Child(key);
  std::vector<std::string> keys = {"prompt", "response_prefix", "max_tokens", "stop"};
  keys.insert(keys.end(), extra_keys.begin(), extra_keys.end());
  PICE_RETURN_IF_ERROR(n.CheckKeys(keys));
  PICE_RETURN_IF_ERROR(n.Require("prompt"));
  PICE_RETURN_IF_ERROR(n.ReadString("prompt", &part->prompt));
  PICE_RETURN_IF_ERROR(n.ReadString("response_prefix", &part->response_prefix));
  if (part->prompt.empty() && part->response_prefix.empty()) {
    return n.ChildError("prompt", "must not be empty (or give a response_prefix)");
  }
  PICE_RETURN_IF_ERROR(n.ReadInt("max_tokens", &part->max_tokens, 1, 32768));
  PICE_RETURN_IF_ERROR(n.ReadStringList("stop", &part->stop));
  for (size_t i = 0; i < part->stop.size(); ++i) {
    if (part->stop[i].empty()) return n.ChildError(absl::StrCat("stop[", i, "]"), "must not be empty");
  }
  PICE_RETURN_IF_ERROR(CheckPlaceholders(n, "prompt", part->prompt, vars));
  PICE_RETURN_IF_ERROR(CheckPlaceholders(n, "response_prefix", part->response_prefix, vars));
  return absl::OkStatus();
}

absl::Status LoadParse(const ConfigNode& n, SketchParseOptions* p) {
  PICE_RETURN_IF_ERROR(n.CheckKeys({"mode", "no_split", "min_points", "max_point_chars",
                                    "point_regex", "over_budget", "points_end_at_newline",
                                    "strip", "chunk_chars"}));
  std::string mode = "numbered";
  PICE_RETURN_IF_ERROR(n.ReadEnum("mode", &mode, {"numbered", "sentences", "chunks"}));
  p->mode = mode == "sentences" ? SketchParseOptions::Mode::kSentences
            : mode == "chunks"  ? SketchParseOptions::Mode::kChunks
                                : SketchParseOptions::Mode::kNumbered;
  int chunk = static_cast<int>(p->chunk_chars);
  PICE_RETURN_IF_ERROR(n.ReadInt("chunk_chars", &chunk, 1, 100000));
  p->chunk_chars = chunk;
  PICE_RETURN_IF_ERROR(n.ReadStringList("no_split", &p->no_split));
  p->no_split.push_back("");  // an empty sketch never splits
  PICE_RETURN_IF_ERROR(n.ReadInt("min_points", &p->min_points, 1, 64));
  int max_chars = static_cast<int>(p->max_point_chars);
  PICE_RETURN_IF_ERROR(n.ReadInt("max_point_chars", &max_chars, 1, 100000));
  p->max_point_chars = max_chars;
  std::string regex;
  PICE_RETURN_IF_ERROR(n.ReadString("point_regex", &regex));
  if (!regex.empty()) {
    try {
      p->point_regex = std::make_shared<std::regex>(regex, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      return n.ChildError("point_regex", absl::StrCat("not a valid regular expression (",
                                                      e.what(), ")"));
    }
  }
  std::string over = "truncate";
  PICE_RETURN_IF_ERROR(n.ReadEnum("over_budget", &over, {"truncate", "no_split"}));
  p->truncate_over_budget = over == "truncate";
  PICE_RETURN_IF_ERROR(n.ReadBool("points_end_at_newline", &p->points_end_at_newline));
  PICE_RETURN_IF_ERROR(n.ReadString("strip", &p->strip_chars));
  return absl::OkStatus();
}

absl::StatusOr<PromptTemplate> FromConfig(const ConfigNode& root) {
  PromptTemplate t;
  t.file = root.file();
  PICE_RETURN_IF_ERROR(root.CheckKeys({"family", "description", "chat", "system", "sketch",
                                       "full", "expand"}));
  PICE_RETURN_IF_ERROR(root.Require("family"));
  PICE_RETURN_IF_ERROR(root.ReadString("family", &t.family, false));
  std::string description;
  PICE_RETURN_IF_ERROR(root.ReadString("description", &description));
  PICE_RETURN_IF_ERROR(root.ReadBool("chat", &t.chat));
  PICE_RETURN_IF_ERROR(root.ReadString("system", &t.system));

  const std::set<std::string> sketch_vars = {"question", "max_points"};
  const std::set<std::string> full_vars = {"question"};
  std::set<std::string> expand_vars = {"question", "sketch", "point", "index", "n_points"};
  PICE_RETURN_IF_ERROR(LoadPart(root, "sketch", &t.sketch, sketch_vars, {"max_points", "parse"}, true));
  PICE_RETURN_IF_ERROR(LoadPart(root, "full", &t.full, full_vars, {}, true));
  PICE_RETURN_IF_ERROR(LoadPart(root, "expand", &t.expand, expand_vars,
                                {"answer", "trim"}, true));
  ConfigNode sketch = root.Child("sketch");
  PICE_RETURN_IF_ERROR(sketch.ReadInt("max_points", &t.max_points, 1, 64));
  PICE_RETURN_IF_ERROR(LoadParse(sketch.Child("parse"), &t.parse));
  ConfigNode expand = root.Child("expand");
  PICE_RETURN_IF_ERROR(expand.ReadString("answer", &t.answer, false));
  PICE_RETURN_IF_ERROR(expand.ReadBool("trim", &t.trim_expansion));
  expand_vars.insert("expansion");
  PICE_RETURN_IF_ERROR(CheckPlaceholders(expand, "answer", t.answer, expand_vars));
  return t;
}

}  // namespace

absl::StatusOr<PromptTemplate> LoadPromptTemplate(const std::string& path) {
  PICE_ASSIGN_OR_RETURN(ConfigNode root, ConfigNode::LoadFile(path));
  return FromConfig(root);
}

absl::StatusOr<PromptTemplate> ParsePromptTemplate(const std::string& yaml_text,
                                                   const std::string& name) {
  PICE_ASSIGN_OR_RETURN(ConfigNode root, ConfigNode::LoadString(yaml_text, name));
  return FromConfig(root);
}

std::string FillTemplate(const std::string& text, const std::map<std::string, std::string>& vars) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if ((c == '{' || c == '}') && i + 1 < text.size() && text[i + 1] == c) {
      out += c;
      ++i;
      continue;
    }
    if (c == '{') {
      size_t close = text.find('}', i);
      if (close != std::string::npos) {
        auto it = vars.find(text.substr(i + 1, close - i - 1));
        if (it != vars.end()) {
          out += it->second;
          i = close;
          continue;
        }
      }
    }
    out += c;
  }
  return out;
}

std::string FormatSketch(const std::vector<std::string>& points) {
  std::string out;
  for (size_t i = 0; i < points.size(); ++i) {
    absl::StrAppend(&out, i ? "\n" : "", i + 1, ". ", points[i]);
  }
  return out;
}

namespace {
std::map<std::string, std::string> ExpandVars(const std::string& question,
                                              const std::vector<std::string>& sketch, int index) {
  return {{"question", question},
          {"sketch", FormatSketch(sketch)},
          {"point", index >= 0 && index < static_cast<int>(sketch.size()) ? sketch[index] : ""},
          {"index", std::to_string(index + 1)},
          {"n_points", std::to_string(sketch.size())}};
}
}  // namespace

BuiltPrompt BuildSketchPrompt(const PromptTemplate& t, const std::string& question,
                              int max_points) {
  std::map<std::string, std::string> v = {{"question", question},
                                          {"max_points", std::to_string(max_points)}};
  return {FillTemplate(t.sketch.prompt, v), FillTemplate(t.sketch.response_prefix, v)};
}

BuiltPrompt BuildFullPrompt(const PromptTemplate& t, const std::string& question) {
  std::map<std::string, std::string> v = {{"question", question}};
  return {FillTemplate(t.full.prompt, v), FillTemplate(t.full.response_prefix, v)};
}

BuiltPrompt BuildExpandPrompt(const PromptTemplate& t, const std::string& question,
                              const std::vector<std::string>& sketch, int index) {
  auto v = ExpandVars(question, sketch, index);
  return {FillTemplate(t.expand.prompt, v), FillTemplate(t.expand.response_prefix, v)};
}

std::string FormatAnswer(const PromptTemplate& t, const std::string& question,
                         const std::vector<std::string>& sketch, int index,
                         const std::string& expansion) {
  auto v = ExpandVars(question, sketch, index);
  v["expansion"] = expansion;
  return FillTemplate(t.answer, v);
}

std::string PlainPromptText(const BuiltPrompt& prompt, const std::vector<ChatMessage>& history) {
  std::string text;
  for (const ChatMessage& m : history) absl::StrAppend(&text, m.role, ": ", m.content, "\n");
  return text + prompt.user + prompt.response_prefix;
}

absl::StatusOr<std::vector<Token>> EncodePrompt(const PromptTemplate& t, const Model& model,
                                                const BuiltPrompt& prompt,
                                                const std::vector<ChatMessage>& history) {
  const Tokenizer& tok = model.tokenizer();
  std::vector<Token> ids;
  auto append = [&](std::string_view text, bool parse_special) {
    std::vector<Token> part = tok.Encode(text, /*add_special=*/false, parse_special);
    ids.insert(ids.end(), part.begin(), part.end());
  };
  if (!t.chat) {
    ids = tok.Encode(PlainPromptText(prompt, history), /*add_special=*/true,
                     /*parse_special=*/false);
  } else {
    // Caller-supplied text (earlier turns, the question, sketch points) is tokenized as
    // plain text, so "<|im_end|><|im_start|>system" in it stays text. Only the chat
    // template's own markup (around a slot for each turn's content, and the operator's
    // system message) may become control tokens.
    std::vector<std::string_view> contents;
    for (const ChatMessage& m : history) contents.push_back(m.content);
    contents.push_back(prompt.user);
    std::string mark = "\x1ePICE_SLOT";
    auto clashes = [&] {
      for (std::string_view c : contents) {
        if (c.find(mark) != std::string_view::npos) return true;
      }
      return false;
    };
    while (clashes()) mark += "\x1e";
    std::vector<ChatMessage> msgs;
    if (!t.system.empty()) msgs.push_back({"system", t.system});
    std::vector<std::string> slots;
    for (size_t i = 0; i < contents.size(); ++i) {
      slots.push_back(absl::StrCat(mark, i, "\x1e"));
      msgs.push_back({i + 1 < contents.size() ? history[i].role : "user", slots.back()});
    }
    const std::string text = ApplyChatTemplate(model.file(), msgs, /*add_assistant=*/true);
    if (tok.add_bos() && tok.bos() >= 0) ids.push_back(tok.bos());
    size_t at = 0;
    for (size_t i = 0; i < slots.size(); ++i) {
      const size_t found = text.find(slots[i], at);
      if (found == std::string::npos) {
        return absl::InternalError("the chat template dropped a turn");
      }
      append(std::string_view(text).substr(at, found - at), /*parse_special=*/true);
      append(contents[i], /*parse_special=*/false);
      at = found + slots[i].size();
    }
    append(std::string_view(text).substr(at), /*parse_special=*/true);
    append(prompt.response_prefix, /*parse_special=*/false);
    // A template that spells the BOS token itself (Llama 3's "<|begin_of_text|>") gets
    // it once, as Encode(add_special) would.
    if (ids.size() >= 2 && ids[0] == tok.bos() && ids[1] == tok.bos()) ids.erase(ids.begin());
  }
  if (ids.empty()) return absl::InvalidArgumentError("the prompt encodes to no tokens");
  return ids;
}

}  // namespace pice
