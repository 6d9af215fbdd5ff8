// Eval files of pice-arith questions (tests/data/pice-arith/eval.jsonl): one JSON object
// per line with `question`, `parts` [{expression, result}], `dependent`, `id`.
#ifndef PICE_CLI_EVAL_FILE_H_
#define PICE_CLI_EVAL_FILE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

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

}  // namespace pice::cli

#endif  // PICE_CLI_EVAL_FILE_H_
