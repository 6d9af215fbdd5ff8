// Voting picks the documented winner on hand-made candidates.
#include "node/voting.h"

#include <cmath>

#include <gtest/gtest.h>

namespace pice {
namespace {

VoteOptions With(SelectionMethod m) {
  VoteOptions o;
  o.method = m;
  return o;
}

TEST(VotingTest, ConfidencePicksHighestMeanLogprob) {
  std::vector<VoteCandidate> c = {{"19", -0.5}, {"19", -0.4}, {"18", -0.1}};
  VoteResult r = Vote(c, With(SelectionMethod::kConfidence));
  EXPECT_EQ(r.selected, 2);
  EXPECT_DOUBLE_EQ(r.scores[2], -0.1);
  EXPECT_NEAR(r.agreement, 1.0 / 3, 1e-9);
}

TEST(VotingTest, ConsensusIsMajorityWithExactMatch) {
  std::vector<VoteCandidate> c = {{"19", -0.5}, {"19", -0.4}, {"18", -0.1}};
  VoteResult r = Vote(c, With(SelectionMethod::kConsensus));
  EXPECT_EQ(r.selected, 1);  // tie between the two "19"s goes to the more confident
  EXPECT_DOUBLE_EQ(r.consensus[0], 0.5);
  EXPECT_DOUBLE_EQ(r.consensus[2], 0.0);
  EXPECT_NEAR(r.support[1], 2.0 / 3, 1e-9);
  EXPECT_NEAR(r.agreement, 2.0 / 3, 1e-9);
}

TEST(VotingTest, AllDifferentFallsBackToConfidence) {
  std::vector<VoteCandidate> c = {{"6", -0.9}, {"4", -0.2}, {"5", -0.6}};
  VoteResult r = Vote(c, With(SelectionMethod::kConsensus));
  EXPECT_EQ(r.selected, 1);
  EXPECT_NEAR(r.agreement, 1.0 / 3, 1e-9);
}

TEST(VotingTest, WeightsActAsVotes) {
  std::vector<VoteCandidate> c = {{"7", -0.9, 3.0}, {"8", -0.1, 1.0}, {"8", -0.1, 1.0}};
  VoteResult r = Vote(c, With(SelectionMethod::kConsensus));
  EXPECT_EQ(r.selected, 0);  // weight 3 beats two votes of weight 1
  EXPECT_NEAR(r.support[0], 0.6, 1e-9);
  // Issue 8.7: agreement is the weighted share too (3 of 5), not one candidate of three.
  EXPECT_NEAR(r.agreement, 0.6, 1e-9);
}

TEST(VotingTest, MinimumBayesRiskOverWords) {
  std::vector<VoteCandidate> c = {
      {"the cat sat on the mat", -1.0},
      {"a cat sat on the mat", -1.2},
      {"dogs bark loudly at night", -0.1},
  };
  VoteResult r = Vote(c, With(SelectionMethod::kConsensus));
  EXPECT_EQ(r.selected, 0);
  EXPECT_GT(r.consensus[0], 0.4);
  EXPECT_DOUBLE_EQ(r.consensus[2], 0.0);
  // With exact agreement only the winner itself agrees.
  EXPECT_NEAR(r.agreement, 1.0 / 3, 1e-9);
  VoteOptions loose = With(SelectionMethod::kConsensus);
  loose.agree_similarity = 0.8;
  EXPECT_NEAR(Vote(c, loose).agreement, 2.0 / 3, 1e-9);
}

TEST(VotingTest, HybridWeighsSupportAgainstConfidence) {
  // "19" has two votes but low confidence; "18" is very confident alone.
  std::vector<VoteCandidate> c = {{"19", -2.0}, {"19", -2.0}, {"18", -0.01}};
  VoteOptions o = With(SelectionMethod::kHybrid);
  o.hybrid_weight = 0.9;
  EXPECT_EQ(Vote(c, o).selected, 0);
  o.hybrid_weight = 0.1;
  VoteResult r = Vote(c, o);
  EXPECT_EQ(r.selected, 2);
  EXPECT_NEAR(r.scores[2], 0.1 * (1.0 / 3) + 0.9 * std::exp(-0.01), 1e-9);
}

TEST(VotingTest, SingleCandidateAndEmpty) {
  VoteResult r = Vote({{"42", -0.3}}, With(SelectionMethod::kConsensus));
  EXPECT_EQ(r.selected, 0);
  EXPECT_DOUBLE_EQ(r.consensus[0], 1.0);
  EXPECT_DOUBLE_EQ(r.agreement, 1.0);
  EXPECT_EQ(Vote({}, VoteOptions()).selected, -1);
}

TEST(VotingTest, Similarities) {
  EXPECT_DOUBLE_EQ(TextSimilarity(" 19 ", "19", Similarity::kExact), 1.0);
  EXPECT_DOUBLE_EQ(TextSimilarity("19", "91", Similarity::kAuto), 0.0);
  EXPECT_DOUBLE_EQ(TextSimilarity("19", "91", Similarity::kChars), 1.0);
  EXPECT_DOUBLE_EQ(TextSimilarity("Hello, world!", "hello world", Similarity::kWords), 1.0);
  EXPECT_NEAR(TextSimilarity("a b c d", "a b x y", Similarity::kWords), 0.5, 1e-9);
  EXPECT_TRUE(ParseSelectionMethod("hybrid").ok());
  EXPECT_FALSE(ParseSelectionMethod("majority").ok());
}

}  // namespace
}  // namespace pice
