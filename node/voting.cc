#include "node/voting.h"

#include <cmath>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace pice {
namespace {

std::string Normalize(std::string_view s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::vector<std::string> Words(std::string_view s) {
  std::vector<std::string> out;
  for (absl::string_view w : absl::StrSplit(absl::string_view(s.data(), s.size()),
                                            absl::ByAnyChar(" \t\r\n"), absl::SkipEmpty())) {
    size_t b = 0, e = w.size();
    while (b < e && absl::ascii_ispunct(static_cast<unsigned char>(w[b]))) ++b;
    while (e > b && absl::ascii_ispunct(static_cast<unsigned char>(w[e - 1]))) --e;
    std::string word = absl::AsciiStrToLower(w.substr(b, e - b));
    if (word.empty()) word = std::string(w);  // a word of punctuation only stays as is
    out.push_back(std::move(word));
  }
  return out;
}

template <typename T>
double MultisetF1(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.empty() && b.empty()) return 1.0;
  if (a.empty() || b.empty()) return 0.0;
  std::map<T, int> count;
  for (const auto& x : a) ++count[x];
  int overlap = 0;
  for (const auto& y : b) {
    auto it = count.find(y);
    if (it != count.end() && it->second > 0) {
      --it->second;
      ++overlap;
    }
  }
  if (overlap == 0) return 0.0;
  double p = double(overlap) / b.size(), r = double(overlap) / a.size();
  return 2 * p * r / (p + r);
}

}  // namespace

const char* SelectionMethodName(SelectionMethod m) {
  switch (m) {
    case SelectionMethod::kConfidence: return "confidence";
    case SelectionMethod::kConsensus: return "consensus";
    case SelectionMethod::kHybrid: return "hybrid";
  }
  return "?";
}

absl::StatusOr<SelectionMethod> ParseSelectionMethod(std::string_view name) {
  if (name == "confidence") return SelectionMethod::kConfidence;
  if (name == "consensus") return SelectionMethod::kConsensus;
  if (name == "hybrid") return SelectionMethod::kHybrid;
  return absl::InvalidArgumentError(absl::StrCat(
      "expected one of confidence, consensus, hybrid, got \"", std::string(name), "\""));
}

const char* SimilarityName(Similarity s) {
  switch (s) {
    case Similarity::kAuto: return "auto";
    case Similarity::kExact: return "exact";
    case Similarity::kWords: return "words";
    case Similarity::kChars: return "chars";
  }
  return "?";
}

absl::StatusOr<Similarity> ParseSimilarity(std::string_view name) {
  if (name == "auto") return Similarity::kAuto;
  if (name == "exact") return Similarity::kExact;
  if (name == "words") return Similarity::kWords;
  if (name == "chars") return Similarity::kChars;
  return absl::InvalidArgumentError(absl::StrCat(
      "expected one of auto, exact, words, chars, got \"", std::string(name), "\""));
}

double TextSimilarity(std::string_view a, std::string_view b, Similarity mode) {
  if (mode == Similarity::kAuto) {
    bool multi = Words(a).size() >= 2 || Words(b).size() >= 2;
    mode = multi ? Similarity::kWords : Similarity::kExact;
  }
  switch (mode) {
    case Similarity::kExact:
      return Normalize(a) == Normalize(b) ? 1.0 : 0.0;
    case Similarity::kWords:
      return MultisetF1(Words(a), Words(b));
    case Similarity::kChars: {
      std::vector<char> ca, cb;
      for (char c : a) if (!absl::ascii_isspace(static_cast<unsigned char>(c))) ca.push_back(c);
      for (char c : b) if (!absl::ascii_isspace(static_cast<unsigned char>(c))) cb.push_back(c);
      return MultisetF1(ca, cb);
    }
    case Similarity::kAuto:
      break;
  }
  return 0.0;
}

VoteResult Vote(const std::vector<VoteCandidate>& c, const VoteOptions& o) {
  VoteResult r;
  const size_t n = c.size();
  if (n == 0) return r;
  std::vector<std::vector<double>> sim(n, std::vector<double>(n, 1.0));
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 1; j < n; ++j) {
      sim[i][j] = sim[j][i] = TextSimilarity(c[i].text, c[j].text, o.similarity);
    }
  }
  double total_w = 0;
  for (const auto& x : c) total_w += x.weight;
  r.consensus.resize(n);
  r.support.resize(n);
  r.scores.resize(n);
  for (size_t i = 0; i < n; ++i) {
    double others_w = 0, others = 0;
    for (size_t j = 0; j < n; ++j) {
      if (j == i) continue;
      others_w += c[j].weight;
      others += c[j].weight * sim[i][j];
    }
    r.consensus[i] = others_w > 0 ? others / others_w : 1.0;
    r.support[i] = total_w > 0 ? (c[i].weight + others) / total_w : 1.0;
    switch (o.method) {
      case SelectionMethod::kConfidence: r.scores[i] = c[i].mean_logprob; break;
      case SelectionMethod::kConsensus: r.scores[i] = r.support[i]; break;
      case SelectionMethod::kHybrid:
        r.scores[i] = o.hybrid_weight * r.support[i] +
                      (1 - o.hybrid_weight) * std::exp(std::min(0.0, c[i].mean_logprob));
        break;
    }
  }
  constexpr double kEps = 1e-12;
  size_t best = 0;
  for (size_t i = 1; i < n; ++i) {
    double d = r.scores[i] - r.scores[best];
    if (d > kEps) {
      best = i;
    } else if (d > -kEps) {  // tie: the more confident, then the more supported one
      if (c[i].mean_logprob > c[best].mean_logprob + kEps ||
          (std::abs(c[i].mean_logprob - c[best].mean_logprob) <= kEps &&
           r.support[i] > r.support[best] + kEps)) {
        best = i;
      }
    }
  }
  r.selected = static_cast<int>(best);
  // The weighted share of candidates agreeing with the winner: with member weights a
  // heavily weighted winner is not outvoted by a count of light ones.
  double agree_w = 0;
  for (size_t j = 0; j < n; ++j) {
    if (sim[best][j] >= o.agree_similarity - kEps) agree_w += c[j].weight;
  }
  r.agreement = total_w > 0 ? agree_w / total_w : 1.0;
  return r;
}

}  // namespace pice
