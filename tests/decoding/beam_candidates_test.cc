// The beam strategies' shared pieces: candidate selection, sampling without replacement
// (chi-square against the exact distribution), the Hamming diversity processor, and
// MoveBeams' fork bookkeeping.
#include "decoding/beam_candidates.h"

#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "decoding/penalty_processors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

TEST(BeamCandidatesTest, TopCandidatesAreBestFirstBeamMajorOnTies) {
  const std::vector<std::vector<float>> rows = {{-1.0f, -3.0f, -0.5f}, {-0.5f, kNegInf, -2.0f}};
  const std::vector<Candidate> top = TopCandidates(rows, 4);
  ASSERT_EQ(top.size(), 4u);
  EXPECT_EQ(top[0].beam, 0);  // -0.5 in beam 0 comes before -0.5 in beam 1
  EXPECT_EQ(top[0].token, 2);
  EXPECT_EQ(top[1].beam, 1);
  EXPECT_EQ(top[1].token, 0);
  EXPECT_EQ(top[2].token, 0);
  EXPECT_FLOAT_EQ(top[3].score, -2.0f);
  EXPECT_EQ(TopCandidates(rows, 10).size(), 5u) << "-inf is never a candidate";
}

TEST(BeamCandidatesTest, LogSoftmaxMatchesFloat64) {
  const std::vector<float> logits = {1.0f, 2.0f, -3.0f, 0.5f};
  std::vector<float> out(4);
  LogSoftmax(logits, out);
  double sum = 0.0;
  for (float x : logits) sum += std::exp(static_cast<double>(x));
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(out[i], logits[i] - std::log(sum), 1e-6);
}

// First draws of SampleCandidates follow softmax over all beams: chi-square with 5 cells.
TEST(BeamCandidatesTest, FirstDrawFollowsTheSoftmax) {
  const std::vector<std::vector<float>> rows = {{0.0f, std::log(2.0f), kNegInf},
                                                {std::log(3.0f), std::log(0.5f), std::log(1.5f)}};
  const std::vector<double> p = {1 / 8.0, 2 / 8.0, 0.0, 3 / 8.0, 0.5 / 8.0, 1.5 / 8.0};
  std::vector<int> counts(6, 0);
  constexpr int kDraws = 40000;
  for (int i = 0; i < kDraws; ++i) {
    const std::vector<Candidate> c = SampleCandidates(rows, 1, /*seed=*/99, /*position=*/i);
    ASSERT_EQ(c.size(), 1u);
    ++counts[static_cast<size_t>(c[0].beam * 3 + c[0].token)];
  }
  EXPECT_EQ(counts[2], 0);
  double chi2 = 0.0;
  for (size_t k = 0; k < 6; ++k) {
    if (p[k] == 0) continue;
    const double e = p[k] * kDraws;
    chi2 += (counts[k] - e) * (counts[k] - e) / e;
  }
  EXPECT_LT(chi2, 20.5) << "chi-square, 4 degrees of freedom, p = 0.0004";
}

TEST(BeamCandidatesTest, SamplingIsWithoutReplacementAndSeeded) {
  const std::vector<std::vector<float>> rows = {{0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, kNegInf}};
  const std::vector<Candidate> all = SampleCandidates(rows, 10, 5, 0);
  ASSERT_EQ(all.size(), 5u) << "only five tokens can be drawn";
  std::map<std::pair<int, int32_t>, int> seen;
  for (const Candidate& c : all) EXPECT_EQ(++seen[std::make_pair(c.beam, c.token)], 1);
  const std::vector<Candidate> again = SampleCandidates(rows, 10, 5, 0);
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].token, again[i].token);
}

TEST(BeamCandidatesTest, HammingDiversitySubtractsPenaltyTimesCount) {
  HammingDiversityProcessor p(0.75f);
  std::vector<float> row = {0.0f, 0.0f, 0.0f, 0.0f};
  const std::vector<int32_t> ids = {1};
  const std::vector<int32_t> earlier = {2, 0, 2, 9};  // 9 is outside: ignored
  p.Apply(TokenHistory{ids, 1, earlier}, row);
  EXPECT_THAT(row, ::testing::ElementsAre(-0.75f, 0.0f, -1.5f, 0.0f));
}

TEST(BeamCandidatesTest, MoveBeamsForksRepeatedParentsAndPrunesTheRest) {
  const std::vector<Beam> parents = {Beam::Start(10, 0), Beam::Start(11, 0), Beam::Start(12, 0),
                                     Beam::Start(10, 0)};
  std::vector<int> slots;
  // Beams 0 and 3 share sequence 10 (the first step of diverse beam search).
  const StrategyDecision d = MoveBeams(parents, {{0, 5}, {1, 6}, {0, 7}, {3, 8}}, &slots);
  ASSERT_EQ(d.continuations.size(), 2u);
  EXPECT_EQ(d.continuations[0].parent, 10);
  EXPECT_THAT(d.continuations[0].tokens, ::testing::ElementsAre(5, 7, 8));
  EXPECT_EQ(d.continuations[1].parent, 11);
  EXPECT_THAT(d.pruned, ::testing::ElementsAre(12));
  EXPECT_THAT(slots, ::testing::ElementsAre(-1, -1, 0, 1));
}

}  // namespace
}  // namespace tessera
