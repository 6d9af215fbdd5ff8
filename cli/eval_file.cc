#include "cli/eval_file.h"

#include <fstream>

#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace pice::cli {

absl::StatusOr<std::vector<Question>> LoadEval(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(path + ": cannot open the file");
  std::vector<Question> out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("question") || !j.contains("parts") ||
        !j["question"].is_string() || !j["parts"].is_array()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s:%d: expected a JSON object with question and parts", path, n));
    }
    Question q;
    q.id = j.value("id", absl::StrFormat("line-%d", n));
    q.question = j["question"].get<std::string>();
    q.dependent = j.value("dependent", false);
    for (const auto& p : j["parts"]) {
      if (!p.is_object()) {
        return absl::InvalidArgumentError(absl::StrFormat("%s:%d: parts must be objects", path, n));
      }
      q.parts.push_back({p.value("expression", ""), p.value("result", int64_t{0})});
    }
    out.push_back(std::move(q));
  }
  return out;
}

}  // namespace pice::cli
