// Eval files of pice-arith questions (tests/data/pice-arith/eval.jsonl): one JSON object
// per line with `question`, `parts` [{expression, result}], `dependent`, `id`.
#ifndef PICE_CLI_EVAL_FILE_H_
#define PICE_CLI_EVAL_FILE_H_

#include <cstdint>
#include <string>
#include <vector>

#include <optional>

#include "absl/status/statusor.h"
#include "pice/v1/pice.pb.h"

namespace pice::cli {

struct Part {
  std::string expression;
  int64_t result = 0;
};
struct Question {
  std::string id, question;
  bool dependent = false;
  std::vector<Part> parts;
};

// Errors name the file and line.
absl::StatusOr<std::vector<Question>> LoadEval(const std::string& path);

// Scoring an answer against a question's parts (pice bench quality and testbed).
std::string Squeeze(const std::string& s);  // without spaces
// The value of "a+b", "a-b" or "a*b"; nullopt for anything else.
std::optional<int64_t> Eval(const std::string& expr);
// The number an expansion states: "92", " 92", "23*4=92" or "23*4=92." -> 92.
std::optional<int64_t> StatedNumber(const std::string& text);
// Part i of q right in this answer? Sketch route: point i is part i's expression and its
// expansion states the result; cloud route: the i-th "expr=result" of the text.
std::vector<bool> ScoreAnswer(const Question& q, const v1::AnswerEvent& a);

}  // namespace pice::cli

#endif  // PICE_CLI_EVAL_FILE_H_
