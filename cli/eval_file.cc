#include "cli/eval_file.h"

#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

namespace pice::cli {

std::string Squeeze(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c != ' ') out += c;
  }
  return out;
}

std::optional<int64_t> Eval(const std::string& expr) {
  const std::string e = Squeeze(expr);
  for (size_t i = 1; i < e.size(); ++i) {
    const char op = e[i];
    if (op != '+' && op != '-' && op != '*') continue;
    int64_t a, b;
    if (!absl::SimpleAtoi(e.substr(0, i), &a) || !absl::SimpleAtoi(e.substr(i + 1), &b)) continue;
    return op == '+' ? a + b : op == '-' ? a - b : a * b;
  }
  return std::nullopt;
}

std::optional<int64_t> StatedNumber(const std::string& text_in) {
  absl::string_view text = text_in;
  if (size_t eq = text.rfind('='); eq != absl::string_view::npos) text = text.substr(eq + 1);
  std::string t(absl::StripAsciiWhitespace(text));
  while (!t.empty() && (t.back() == '.' || t.back() == ';')) t.pop_back();
  int64_t v;
  if (!absl::SimpleAtoi(t, &v)) return std::nullopt;
  return v;
}

namespace {
// "expr=result" pairs in a full answer, in order.
std::vector<std::pair<std::string, int64_t>> AnswerPairs(const std::string& text) {
  std::vector<std::pair<std::string, int64_t>> out;
  for (absl::string_view piece : absl::StrSplit(text, '.')) {
    const size_t eq = piece.find('=');
    if (eq == absl::string_view::npos) continue;
    int64_t v;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(piece.substr(eq + 1)), &v)) continue;
    out.emplace_back(Squeeze(std::string(piece.substr(0, eq))), v);
  }
  return out;
}

}  // namespace

std::vector<bool> ScoreAnswer(const Question& q, const v1::AnswerEvent& a) {
  std::vector<bool> right(q.parts.size(), false);
  if (a.route() == v1::ROUTE_SKETCH) {
    for (size_t i = 0; i < q.parts.size() && i < static_cast<size_t>(a.expansions_size()); ++i) {
      const auto v = StatedNumber(a.expansions(i));
      right[i] = i < static_cast<size_t>(a.points_size()) &&
                 Squeeze(a.points(i)) == Squeeze(q.parts[i].expression) && v &&
                 *v == q.parts[i].result;
    }
  } else {
    const auto pairs = AnswerPairs(a.text());
    for (size_t i = 0; i < q.parts.size() && i < pairs.size(); ++i) {
      right[i] = pairs[i].first == Squeeze(q.parts[i].expression) &&
                 pairs[i].second == q.parts[i].result;
    }
  }
  return right;
}


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
