// Prompt templates per model family (templates/*.yaml): how to ask for a sketch, a full
// answer and the expansion of one point, how to parse a sketch into points, and how an
// expanded point reads in the answer. Loaded once; immutable and thread-safe after.
//
// Placeholders, written {name} ({{ and }} stand for literal braces):
//   sketch.prompt, sketch.response_prefix:   {question} {max_points}
//   full.prompt, full.response_prefix:       {question}
//   expand.prompt, expand.response_prefix:   {question} {sketch} {point} {index} {n_points}
//   expand.answer:                           the expand ones and {expansion}
// {sketch} is the whole sketch as numbered lines "1. a\n2. b"; {index} is 1-based.
#ifndef PICE_NODE_TEMPLATES_H_
#define PICE_NODE_TEMPLATES_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "node/sketch_parser.h"
#include "engine/model.h"

namespace pice {

struct PromptPart {
  std::string prompt;           // the user text (chat) or the raw prompt (base models)
  // Text the answer starts with, placed after the prompt (after the assistant header for
  // chat models) so that the model continues it; counts as part of the generated text
  // where it matters (the sketch parser sees it; an expansion's {expansion} does not).
  std::string response_prefix;
  int max_tokens = 128;         // default when the request leaves max_tokens at 0
  std::vector<std::string> stop;
};

struct PromptTemplate {
  std::string family;           // e.g. "pice-arith"
  std::string file;             // where it was loaded from
  bool chat = false;            // wrap prompts in the model's chat template
  std::string system;           // system message for chat models ("" = none)
  PromptPart sketch, full, expand;
  int max_points = 5;           // default point budget
  SketchParseOptions parse;     // max_points is set per request
  // How an expanded point reads (ExpandResponse.text); the scheduler joins these.
  std::string answer = "{expansion}";
  bool trim_expansion = true;   // trim whitespace around the model's expansion
};

// Loads and checks a template file: unknown keys, wrong types and placeholders a field
// does not offer are INVALID_ARGUMENT naming the file and key; a missing file NOT_FOUND.
absl::StatusOr<PromptTemplate> LoadPromptTemplate(const std::string& path);
absl::StatusOr<PromptTemplate> ParsePromptTemplate(const std::string& yaml_text,
                                                   const std::string& name);

// Replaces {key} by vars[key]. Unknown keys are kept as written (validated at load).
std::string FillTemplate(const std::string& text, const std::map<std::string, std::string>& vars);

// "1. a\n2. b".
std::string FormatSketch(const std::vector<std::string>& points);

// The filled texts of one request.
struct BuiltPrompt {
  std::string user;             // filled prompt
  std::string response_prefix;  // filled response_prefix
};
BuiltPrompt BuildSketchPrompt(const PromptTemplate& t, const std::string& question, int max_points);
BuiltPrompt BuildFullPrompt(const PromptTemplate& t, const std::string& question);
BuiltPrompt BuildExpandPrompt(const PromptTemplate& t, const std::string& question,
                              const std::vector<std::string>& sketch, int index);
// The answer text of point `index` (0-based) given the model's expansion.
std::string FormatAnswer(const PromptTemplate& t, const std::string& question,
                         const std::vector<std::string>& sketch, int index,
                         const std::string& expansion);

// Tokens for `prompt` on `model`: with the chat template when t.chat (system message,
// the `history` turns, the user turn, assistant header), BOS where the vocabulary wants
// it, then the response prefix. Every caller-supplied text (history contents, the user
// turn, the response prefix) is tokenized as plain text: only the template's markup may
// become control tokens. Plain templates put the history first as "role: content" lines.
// INVALID_ARGUMENT when the result is empty.
// The text a plain (non-chat) template gives the model: earlier turns as "role: content"
// lines, the prompt, the response prefix. EncodePrompt tokenizes exactly this; a remote
// backend sends it as /completions' prompt.
std::string PlainPromptText(const BuiltPrompt& prompt, const std::vector<ChatMessage>& history);

absl::StatusOr<std::vector<Token>> EncodePrompt(const PromptTemplate& t, const Model& model,
                                                const BuiltPrompt& prompt,
                                                const std::vector<ChatMessage>& history = {});

}  // namespace pice

#endif  // PICE_NODE_TEMPLATES_H_
