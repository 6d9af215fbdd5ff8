// Choosing one expansion among an ensemble's candidates. Pure logic, no I/O.
//
// Methods:
//   confidence  the highest mean token log-probability.
//   consensus   minimum Bayes risk: the candidate with the most weighted support, where
//               support_i = (w_i + sum_{j != i} w_j * sim(i, j)) / sum_j w_j. With the
//               exact-match similarity and equal weights this is majority voting.
//   hybrid      h * support_i + (1 - h) * exp(mean_logprob_i)  (both in [0, 1]).
// Ties go to the higher mean log-probability, then to the earlier member.
//
// Similarity (sim, in [0, 1]):
//   exact   1 when the normalised texts are equal (trimmed, whitespace collapsed), else 0;
//   words   F1 of the multisets of lower-cased words (punctuation around words dropped);
//   chars   F1 of the multisets of characters (whitespace ignored);
//   auto    words when either text has two or more words, else exact.
#ifndef PICE_NODE_VOTING_H_
#define PICE_NODE_VOTING_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace pice {

enum class SelectionMethod { kConfidence, kConsensus, kHybrid };
enum class Similarity { kAuto, kExact, kWords, kChars };

const char* SelectionMethodName(SelectionMethod m);  // "confidence", "consensus", "hybrid"
absl::StatusOr<SelectionMethod> ParseSelectionMethod(std::string_view name);
const char* SimilarityName(Similarity s);
absl::StatusOr<Similarity> ParseSimilarity(std::string_view name);

struct VoteCandidate {
  std::string text;          // the expansion as the model wrote it
  double mean_logprob = 0;   // <= 0
  double weight = 1;         // the member's weight (> 0)
};

struct VoteOptions {
  SelectionMethod method = SelectionMethod::kConsensus;
  Similarity similarity = Similarity::kAuto;
  double hybrid_weight = 0.5;     // h: the share of support in the hybrid score
  double agree_similarity = 1.0;  // sim >= this counts as agreeing with the winner
};

struct VoteResult {
  int selected = -1;               // index into the candidates; -1 when there are none
  std::vector<double> consensus;   // mean weighted similarity to the others ([0,1]; 1 alone)
  std::vector<double> support;     // weighted support share, self included
  std::vector<double> scores;      // what the method ranked by
  // Weighted share of candidates agreeing with the winner (itself included): the sum of
  // the weights of candidates whose similarity to it is >= agree_similarity, over the
  // sum of all weights. Equal weights: the plain share.
  double agreement = 0;
};

double TextSimilarity(std::string_view a, std::string_view b, Similarity mode);
VoteResult Vote(const std::vector<VoteCandidate>& candidates, const VoteOptions& options);

}  // namespace pice

#endif  // PICE_NODE_VOTING_H_
