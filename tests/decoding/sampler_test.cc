#include "decoding/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "decoding/philox.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera {
namespace {

using ::testing::ElementsAre;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

std::vector<double> Probs(const std::vector<float>& l) {
  double max = -std::numeric_limits<double>::infinity();
  for (float v : l) max = std::max<double>(max, v);
  std::vector<double> p(l.size());
  double sum = 0;
  for (size_t i = 0; i < l.size(); ++i) sum += (p[i] = std::exp(static_cast<double>(l[i]) - max));
  for (double& v : p) v /= sum;
  return p;
}

TEST(ArgMaxTest, LowestIdOnTies) {
  EXPECT_EQ(ArgMax(std::vector<float>{1.f, 3.f, 3.f, 2.f}), 1);
  EXPECT_EQ(ArgMax(std::vector<float>{5.f}), 0);
  EXPECT_EQ(ArgMax(std::vector<float>{NAN, 1.f, NAN, 2.f}), 3);
  EXPECT_EQ(ArgMax(std::vector<float>{kNegInf, kNegInf}), 0);
  EXPECT_EQ(ArgMax(std::vector<float>{}), -1);
}

TEST(SampleFromLogitsTest, InverseCdfMatchesFloat64Reference) {
  std::mt19937 rng(11);
  std::normal_distribution<double> normal(0.0, 2.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<float> logits(50);
    for (float& v : logits) v = static_cast<float>(normal(rng));
    for (int i = 0; i < 10; ++i) logits[(trial * 7 + i * 5) % 50] = kNegInf;
    const std::vector<double> p = Probs(logits);
    std::vector<double> cdf(p.size());
    std::partial_sum(p.begin(), p.end(), cdf.begin());
    for (int k = 0; k < 20; ++k) {
      const double u = uniform(rng);
      const int32_t want =
          static_cast<int32_t>(std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
      EXPECT_EQ(SampleFromLogits(logits, u), want) << "u=" << u;
    }
  }
}

TEST(SampleFromLogitsTest, NeverPicksRemovedTokens) {
  const std::vector<float> logits = {kNegInf, 0.f, kNegInf, 1.f, kNegInf};
  EXPECT_EQ(SampleFromLogits(logits, 0.0), 1);
  EXPECT_EQ(SampleFromLogits(logits, std::nextafter(1.0, 0.0)), 3);
  EXPECT_EQ(SampleFromLogits(std::vector<float>(3, kNegInf), 0.5), -1);
}

TEST(LogprobsTest, LogSoftmaxAgainstFloat64) {
  std::mt19937 rng(12);
  std::normal_distribution<double> normal(0.0, 3.0);
  std::vector<float> logits(100);
  for (float& v : logits) v = static_cast<float>(normal(rng));
  logits[10] = logits[20] = 9.0f;  // a tie at the top: lower id first
  const std::vector<double> p = Probs(logits);
  for (int32_t t : {0, 10, 20, 99}) EXPECT_NEAR(TokenLogprobOf(logits, t), std::log(p[t]), 1e-5);
  const std::vector<TokenLogprob> top = TopLogprobs(logits, 5);
  ASSERT_EQ(top.size(), 5u);
  EXPECT_EQ(top[0].token, 10);
  EXPECT_EQ(top[1].token, 20);
  std::vector<int32_t> order(100);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(top[i].token, order[i]);
    EXPECT_NEAR(top[i].logprob, std::log(p[order[i]]), 1e-5);
  }
  EXPECT_EQ(TopLogprobs(logits, 0).size(), 0u);
  EXPECT_EQ(TopLogprobs(std::vector<float>{1.f, 2.f}, 20).size(), 2u);
}

// Positions 0..n-1 of one sequence: history spans of growing length over a buffer.
std::vector<int32_t> SampleMany(const Sampler& sampler, const std::vector<float>& logits, int n,
                                uint64_t sequence_index) {
  std::vector<int32_t> ids(n, 0);
  std::vector<int32_t> out;
  for (int pos = 0; pos < n; ++pos) {
    std::vector<float> row = logits;
    const TokenHistory history{std::span<const int32_t>(ids.data(), pos), 0};
    out.push_back(sampler.Sample(history, row, sequence_index).token);
  }
  return out;
}

TEST(SamplerTest, HistogramFollowsTheDistribution) {
  GenerationConfig c;
  c.do_sample = true;
  c.top_k = 0;
  c.seed = 2024;
  const std::vector<float> logits = {0.0f, 1.0f, -1.0f, 2.0f, 0.5f, -3.0f, 1.5f, 0.0f};
  auto sampler = Sampler::Create(c, logits.size(), /*default_seed=*/0);
  ASSERT_TRUE(sampler.ok()) << sampler.status();
  const int n = 40000;
  const std::vector<int32_t> tokens = SampleMany(*sampler, logits, n, 0);
  const std::vector<double> p = Probs(logits);
  std::vector<int> count(logits.size(), 0);
  for (int32_t t : tokens) ++count[t];
  for (size_t i = 0; i < p.size(); ++i) {
    // Five standard errors of a binomial proportion.
    EXPECT_NEAR(static_cast<double>(count[i]) / n, p[i], 5 * std::sqrt(p[i] * (1 - p[i]) / n))
        << "token " << i;
  }
}

TEST(SamplerTest, TopKSamplingStaysInTheTopK) {
  GenerationConfig c;
  c.do_sample = true;
  c.top_k = 2;
  c.seed = 7;
  const std::vector<float> logits = {0.0f, 1.0f, -1.0f, 2.0f, 0.5f};
  auto sampler = Sampler::Create(c, logits.size(), 0);
  ASSERT_TRUE(sampler.ok());
  const std::vector<int32_t> tokens = SampleMany(*sampler, logits, 2000, 0);
  int ones = 0;
  for (int32_t t : tokens) {
    ASSERT_TRUE(t == 1 || t == 3) << t;
    ones += t == 1;
  }
  const double p1 = 1.0 / (1.0 + std::exp(1.0));  // softmax over {1, 2}
  EXPECT_NEAR(ones / 2000.0, p1, 5 * std::sqrt(p1 * (1 - p1) / 2000));
}

TEST(SamplerTest, SeededDrawsDoNotDependOnBatchOrder) {
  GenerationConfig c;
  c.do_sample = true;
  c.num_return_sequences = 2;
  c.seed = 99;
  std::mt19937 rng(13);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<float> logits(32);
  for (float& v : logits) v = static_cast<float>(normal(rng));
  auto a = Sampler::Create(c, logits.size(), 0);
  auto b = Sampler::Create(c, logits.size(), 12345);  // default seed unused: config has one
  ASSERT_TRUE(a.ok() && b.ok());
  // Sequence 0 alone, versus interleaved with sequence 1 in reverse order.
  const std::vector<int32_t> alone = SampleMany(*a, logits, 64, 0);
  const std::vector<int32_t> other = SampleMany(*b, logits, 64, 1);
  const std::vector<int32_t> again = SampleMany(*b, logits, 64, 0);
  EXPECT_EQ(alone, again);
  EXPECT_NE(alone, other);
  // Each draw is the documented function of (seed, sequence, position).
  for (int pos = 0; pos < 64; ++pos) {
    EXPECT_EQ(alone[pos], SampleFromLogits(logits, SamplingUniform(99, 0, pos)));
  }
  GenerationConfig other_seed = c;
  other_seed.seed = 100;
  auto d = Sampler::Create(other_seed, logits.size(), 0);
  EXPECT_NE(SampleMany(*d, logits, 64, 0), alone);
}

TEST(SamplerTest, DefaultSeedWhenConfigHasNone) {
  GenerationConfig c;
  c.do_sample = true;
  auto s = Sampler::Create(c, 4, 777);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->seed(), 777u);
}

TEST(SamplerTest, GreedyAppliesProcessorsAndReportsLogprobs) {
  GenerationConfig c;
  c.repetition_penalty = 4.0;  // token 2 (the largest) was seen: 3 / 4 < 2.5
  c.logprobs = 2;
  const std::vector<float> logits = {0.0f, 1.0f, 3.0f, 2.5f};
  auto raw = Sampler::Create(c, 4, 0, LogprobsSource::kRaw);
  auto processed = Sampler::Create(c, 4, 0, LogprobsSource::kProcessed);
  ASSERT_TRUE(raw.ok() && processed.ok());
  const std::vector<int32_t> ids = {2};
  std::vector<float> row = logits;
  const SampleResult r = raw->Sample({ids, 1}, row, 0);
  EXPECT_EQ(r.token, 3);
  EXPECT_THAT(row, ElementsAre(0.0f, 1.0f, 0.75f, 2.5f));  // processed in place
  const std::vector<double> p = Probs(logits);
  EXPECT_NEAR(r.logprob, std::log(p[3]), 1e-6);
  ASSERT_EQ(r.top.size(), 2u);
  EXPECT_EQ(r.top[0].token, 2);
  EXPECT_EQ(r.top[1].token, 3);

  std::vector<float> row2 = logits;
  const SampleResult q = processed->Sample({ids, 1}, row2, 0);
  const std::vector<double> pp = Probs({0.0f, 1.0f, 0.75f, 2.5f});
  EXPECT_EQ(q.token, 3);
  EXPECT_NEAR(q.logprob, std::log(pp[3]), 1e-6);
  EXPECT_EQ(q.top[0].token, 3);
  EXPECT_EQ(q.top[1].token, 1);
}

TEST(SamplerTest, NoTokenLeft) {
  GenerationConfig c;
  c.bad_words_ids = {{0}, {1}};
  auto s = Sampler::Create(c, 2, 0);
  ASSERT_TRUE(s.ok());
  std::vector<float> row = {1.0f, 2.0f};
  EXPECT_EQ(s->Sample({}, row, 0).token, -1);
  c.do_sample = true;
  auto t = Sampler::Create(c, 2, 0);
  std::vector<float> row2 = {1.0f, 2.0f};
  EXPECT_EQ(t->Sample({}, row2, 0).token, -1);
}

TEST(SamplerTest, InvalidConfigIsRejected) {
  GenerationConfig c;
  c.top_p = 0;
  EXPECT_EQ(Sampler::Create(c, 4, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera
