// Sampler::SampleCandidates over TopKOfRow's candidates (common/row_top_k.h) against
// Sampler::Sample over the whole row: the same token, bit for bit, for every chain that
// offers top_k_candidates, on rows with many ties (also ties that only the temperature's
// float division creates).
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <vector>

#include "common/row_argmax.h"
#include "common/row_sample.h"
#include "common/row_top_k.h"
#include "decoding/sampler.h"
#include "gtest/gtest.h"
#include "tests/common/row_candidates.h"

namespace tessera {
namespace {

// Rows of a few distinct levels (ties everywhere), some values one ulp apart (which a
// temperature division can merge), and some -inf.
std::vector<float> TieHeavyRow(std::mt19937& rng, size_t vocab) {
  std::uniform_int_distribution<int> level(0, 12), kind(0, 9);
  std::vector<float> row(vocab);
  for (float& v : row) {
    v = static_cast<float>(level(rng)) * 0.37f - 2.0f;
    const int k = kind(rng);
    if (k == 0) v = std::nextafter(v, 100.0f);
    if (k == 1) v = -std::numeric_limits<float>::infinity();
  }
  return row;
}

using ConfigChange = std::function<void(GenerationConfig&)>;

// `offered` is false for the sampler of `base` after each of `changes`.
void ExpectNotOfferedAfter(const GenerationConfig& base, const std::vector<ConfigChange>& changes,
                           const std::function<bool(const Sampler&)>& offered) {
  for (size_t i = 0; i < changes.size(); ++i) {
    GenerationConfig other = base;
    changes[i](other);
    auto sampler = Sampler::Create(other, 300, 0);
    ASSERT_TRUE(sampler.ok()) << sampler.status();
    EXPECT_FALSE(offered(*sampler)) << "change " << i;
  }
}

struct CandidateCase {
  double temperature;
  int64_t top_k;
  double top_p, min_p;
};

TEST(SampleCandidatesTest, SameTokenAsTheWholeRow) {
  const CandidateCase cases[] = {
      {1.0, 1, 1.0, 0.0},   {1.0, 5, 1.0, 0.0},   {0.7, 5, 1.0, 0.0},  {3.0, 8, 0.9, 0.0},
      {1.3, 20, 0.5, 0.0},  {1.0, 20, 1.0, 0.2},  {0.5, 50, 0.95, 0.05}, {2.5, 3, 0.3, 0.5},
      {1e-3, 10, 0.8, 0.0}, {1.0, 199, 0.99, 0.0},
  };
  std::mt19937 rng(11);
  int compared = 0, with_ties_past_k = 0;
  for (const CandidateCase& cc : cases) {
    GenerationConfig c;
    c.do_sample = true;
    c.temperature = cc.temperature;
    c.top_k = cc.top_k;
    c.top_p = cc.top_p;
    c.min_p = cc.min_p;
    c.seed = 99;
    const size_t vocab = 200;
    auto sampler = Sampler::Create(c, static_cast<int32_t>(vocab), 0);
    ASSERT_TRUE(sampler.ok()) << sampler.status();
    const auto selection = sampler->top_k_candidates();
    ASSERT_TRUE(selection.has_value()) << "top_k " << cc.top_k;
    EXPECT_EQ(selection->k, cc.top_k);
    EXPECT_EQ(selection->temperature, static_cast<float>(cc.temperature));
    for (int trial = 0; trial < 40; ++trial) {
      const std::vector<float> row = TieHeavyRow(rng, vocab);
      auto [ids, values] = testing::CandidatesOfRow(row, selection->k, selection->temperature);
      const auto count = static_cast<int64_t>(ids.size());
      ASSERT_GE(count, std::min<int64_t>(selection->k, static_cast<int64_t>(vocab)));
      if (count > selection->k) ++with_ties_past_k;
      const std::vector<int32_t> history = {1, 2, static_cast<int32_t>(trial)};
      const TokenHistory h{history, 1};
      for (uint64_t index = 0; index < 3; ++index) {
        std::vector<float> whole = row, part = values;
        const SampleResult expected = sampler->Sample(h, whole, index);
        const SampleResult got = sampler->SampleCandidates(h, ids, part, index);
        ASSERT_EQ(got.token, expected.token)
            << "case top_k " << cc.top_k << " T " << cc.temperature << " trial " << trial;
        // The processed candidates are the whole row's processed values at their ids.
        for (size_t i = 0; i < ids.size(); ++i) {
          ASSERT_EQ(std::bit_cast<uint32_t>(part[i]),
                    std::bit_cast<uint32_t>(whole[static_cast<size_t>(ids[i])]));
        }
        ++compared;
      }
    }
  }
  EXPECT_EQ(compared, 10 * 40 * 3);
  EXPECT_GT(with_ties_past_k, 0);  // the rows did exercise ties at the k-th value
}

TEST(SampleCandidatesTest, TemperatureTiesAreCandidates) {
  // Two neighbouring floats that divide by 3 to the same float: both tie for the top-1.
  float a = 1.5f;
  while (a / 3.0f != std::nextafter(a, 2.0f) / 3.0f) a = std::nextafter(a, 2.0f);
  const float b = std::nextafter(a, 2.0f);
  ASSERT_LT(a, 2.0f);
  const std::vector<float> row = {0.0f, a, -1.0f, b};
  std::vector<int32_t> ids(4);
  std::vector<float> values(4);
  EXPECT_EQ(TopKOfRow(row, 1, 3.0f, ids, values), 2);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 3);
  EXPECT_EQ(values[1], b);  // the raw value, not divided
  EXPECT_EQ(TopKOfRow(row, 1, 1.0f, ids, values), 1);
  EXPECT_EQ(ids[0], 3);
}

TEST(SampleCandidatesTest, CountsBeyondTheCapacityAndNaN) {
  const std::vector<float> row = {2.0f, 2.0f, 2.0f, 1.0f, 2.0f};
  std::vector<int32_t> ids(2);
  std::vector<float> values(2);
  EXPECT_EQ(TopKOfRow(row, 1, 1.0f, ids, values), 4);  // four tie; two fit
  EXPECT_EQ(ids[0], 0);
  EXPECT_EQ(ids[1], 1);
  EXPECT_EQ(TopKOfRow(row, 0, 1.0f, ids, values), 0);
  EXPECT_EQ(TopKOfRow(row, 9, 1.0f, ids, values), 5);  // k past the row: all of it
  const std::vector<float> with_nan = {1.0f, std::nanf(""), 0.0f};
  EXPECT_EQ(TopKOfRow(with_nan, 1, 1.0f, ids, values), -1);
  // -0 and +0 are equal: both are the top-1 of this row.
  const std::vector<float> zeros = {-0.0f, -1.0f, 0.0f};
  EXPECT_EQ(TopKOfRow(zeros, 1, 1.0f, ids, values), 2);
}

// Plain sampling (nothing but the temperature): Sample's token is DrawFromRow over the row
// divided by the temperature, at DrawUniform, which is what Backend::SampleRows draws.
TEST(PlainSamplingTest, SampleIsTheDrawOverTheDividedRow) {
  std::mt19937 rng(5);
  std::normal_distribution<float> logit(0.0f, 2.0f);
  for (const double temperature : {1.0, 0.6, 1.7}) {
    GenerationConfig c;
    c.do_sample = true;
    c.top_k = 0;
    c.temperature = temperature;
    c.seed = 31;
    auto sampler = Sampler::Create(c, 300, 0);
    ASSERT_TRUE(sampler.ok()) << sampler.status();
    ASSERT_EQ(sampler->plain_sampling_temperature(), static_cast<float>(temperature));
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<float> row(300);
      for (float& v : row) v = logit(rng);
      const std::vector<int32_t> ids(static_cast<size_t>(trial % 7 + 1), 3);
      const TokenHistory h{ids, 1};
      std::vector<float> scaled = row;
      for (float& v : scaled) v /= static_cast<float>(temperature);
      const int32_t want = DrawFromRow(scaled, sampler->DrawUniform(h, trial % 3));
      EXPECT_EQ(sampler->Sample(h, row, trial % 3).token, want);
    }
  }
  GenerationConfig c;
  c.do_sample = true;
  c.top_k = 0;
  ExpectNotOfferedAfter(c,
                        {[](GenerationConfig& g) { g.top_k = 5; },
                         [](GenerationConfig& g) { g.top_p = 0.9; },
                         [](GenerationConfig& g) { g.min_p = 0.1; },
                         [](GenerationConfig& g) { g.typical_p = 0.5; },
                         [](GenerationConfig& g) { g.logprobs = 1; },
                         [](GenerationConfig& g) { g.do_sample = false; }},
                        [](const Sampler& s) { return s.plain_sampling_temperature().has_value(); });
}

// Plain sampling that reports the raw row's logprobs: the same draw, and Sample's logprobs
// are the drawn token's raw logit less the row's log Σ exp, and the raw row's TopLogprobs.
TEST(PlainSamplingTest, RawLogprobsComeFromTheRawRow) {
  std::mt19937 rng(6);
  std::normal_distribution<float> logit(0.0f, 2.0f);
  GenerationConfig c;
  c.do_sample = true;
  c.top_k = 0;
  c.temperature = 0.8;
  c.seed = 41;
  c.logprobs = 3;
  auto sampler = Sampler::Create(c, 200, 0);
  ASSERT_TRUE(sampler.ok()) << sampler.status();
  EXPECT_FALSE(sampler->plain_sampling_temperature().has_value());
  ASSERT_EQ(sampler->plain_sampling_with_raw_logprobs(), 0.8f);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> row(200);
    for (float& v : row) v = logit(rng);
    const std::vector<int32_t> ids(static_cast<size_t>(trial + 1), 7);
    const TokenHistory h{ids, 1};
    std::vector<float> scaled = row;
    for (float& v : scaled) v /= 0.8f;
    std::vector<float> processed = row;
    const SampleResult s = sampler->Sample(h, processed, 0);
    EXPECT_EQ(s.token, DrawFromRow(scaled, sampler->DrawUniform(h, 0)));
    EXPECT_EQ(s.logprob, TokenLogprobOf(row, s.token));
    EXPECT_EQ(s.top, TopLogprobs(row, 3));
  }
  ExpectNotOfferedAfter(c,
                        {[](GenerationConfig& g) { g.top_k = 5; },
                         [](GenerationConfig& g) { g.typical_p = 0.5; },
                         [](GenerationConfig& g) { g.do_sample = false; }},
                        [](const Sampler& s) {
                          return s.plain_sampling_with_raw_logprobs().has_value();
                        });
}

// Top-p or min-p that reports the raw row's logprobs offers the same nucleus (the token is
// SampleNucleus's; its logprobs come from the candidates' raw values), and only with raw
// logprobs.
TEST(NucleusTest, RawLogprobsKeepTheNucleus) {
  GenerationConfig c;
  c.do_sample = true;
  c.top_k = 0;
  c.top_p = 0.9;
  c.temperature = 0.7;
  c.logprobs = 2;
  auto sampler = Sampler::Create(c, 100, 0);
  ASSERT_TRUE(sampler.ok()) << sampler.status();
  EXPECT_FALSE(sampler->nucleus().has_value());
  const std::optional<NucleusSelection> nucleus = sampler->nucleus_with_raw_logprobs();
  ASSERT_TRUE(nucleus.has_value());
  EXPECT_EQ(nucleus->top_p, 0.9);
  EXPECT_EQ(nucleus->temperature, 0.7f);
  // Over the whole row as its candidates, SampleNucleus gives Sample's token and logprobs.
  std::mt19937 rng(12);
  std::normal_distribution<float> logit(0.0f, 2.0f);
  std::vector<float> row(100);
  for (float& v : row) v = logit(rng);
  std::vector<int32_t> ids(100);
  std::iota(ids.begin(), ids.end(), 0);
  const float max = *std::max_element(row.begin(), row.end());
  double denominator = 0.0, raw_sum = 0.0;
  for (float v : row) {
    denominator += std::exp(double(v / 0.7f) - double(max / 0.7f));
    raw_sum += std::exp(double(v) - max);
  }
  const std::vector<int32_t> history_ids = {5, 6, 7};
  const TokenHistory h{history_ids, 1};
  std::vector<float> values = row, whole = row;
  const std::optional<SampleResult> got =
      sampler->SampleNucleus(h, ids, values, denominator, 0, double(max) + std::log(raw_sum));
  const SampleResult want = sampler->Sample(h, whole, 0);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->token, want.token);
  EXPECT_NEAR(got->logprob, want.logprob, 1e-6);
  ASSERT_EQ(got->top.size(), want.top.size());
  for (size_t i = 0; i < want.top.size(); ++i) {
    EXPECT_EQ(got->top[i].token, want.top[i].token) << i;
    EXPECT_NEAR(got->top[i].logprob, want.top[i].logprob, 1e-6) << i;
  }
  auto processed = Sampler::Create(c, 100, 0, LogprobsSource::kProcessed);
  ASSERT_TRUE(processed.ok()) << processed.status();
  EXPECT_FALSE(processed->nucleus_with_raw_logprobs().has_value());
  c.logprobs.reset();
  auto without = Sampler::Create(c, 100, 0);
  ASSERT_TRUE(without.ok()) << without.status();
  EXPECT_FALSE(without->nucleus_with_raw_logprobs().has_value());
  EXPECT_TRUE(without->nucleus().has_value());
}

// Top-p and / or min-p without top-k from the row's most likely tokens and its softmax
// denominator (summed as the CPU backends sum it): the same token as the whole row wherever
// what they keep lies within the candidates, and "needs the whole row" where it does not
// (flat rows).
TEST(NucleusTest, SameTokenAsTheWholeRowOrAskForIt) {
  std::mt19937 rng(8);
  const size_t vocab = 3000;
  const int64_t candidates_wanted = 256;
  int from_nucleus = 0, whole = 0;
  for (const double temperature : {1.0, 0.7, 1.6}) {
    for (const auto& [top_p, min_p] : {std::pair{0.5, 0.0}, std::pair{0.8, 0.0},
                                       std::pair{0.95, 0.0}, std::pair{1.0, 0.05},
                                       std::pair{1.0, 0.3}, std::pair{0.9, 0.1}}) {
      GenerationConfig c;
      c.do_sample = true;
      c.top_k = 0;
      c.top_p = top_p;
      c.min_p = min_p;
      c.temperature = temperature;
      c.seed = 77;
      auto sampler = Sampler::Create(c, static_cast<int32_t>(vocab), 0);
      ASSERT_TRUE(sampler.ok()) << sampler.status();
      const auto nucleus = sampler->nucleus();
      ASSERT_TRUE(nucleus.has_value());
      EXPECT_EQ(nucleus->top_p, top_p);
      EXPECT_EQ(nucleus->min_p, min_p);
      for (int trial = 0; trial < 30; ++trial) {
        std::normal_distribution<float> logit(0.0f, trial % 3 == 0 ? 0.05f : 4.0f);
        std::vector<float> row(vocab);
        for (float& v : row) v = logit(rng);
        // The denominator as Backend::SoftmaxDenominators computes it on a CPU.
        float max = -INFINITY;
        for (float v : row) max = std::max(max, v / nucleus->temperature);
        double denominator = 0;
        for (float v : row) denominator += std::exp(double(v / nucleus->temperature) - max);
        auto [ids, values] =
            testing::CandidatesOfRow(row, candidates_wanted, nucleus->temperature);
        const std::vector<int32_t> history(static_cast<size_t>(trial + 2), 1);
        const TokenHistory h{history, 1};
        std::vector<float> whole_row = row;
        const SampleResult want = sampler->Sample(h, whole_row, 0);
        const std::optional<SampleResult> got =
            sampler->SampleNucleus(h, ids, values, denominator, 0);
        if (!got.has_value()) {
          ++whole;
          continue;
        }
        ++from_nucleus;
        EXPECT_EQ(got->token, want.token)
            << "T " << temperature << " top_p " << top_p << " min_p " << min_p;
      }
    }
  }
  EXPECT_GT(from_nucleus, 200);
  EXPECT_GT(whole, 20) << "the flat rows' nucleus reaches past 256 candidates";
  // Offered for top-p and min-p (with a temperature) only.
  GenerationConfig c;
  c.do_sample = true;
  c.top_k = 0;
  c.top_p = 0.9;
  ExpectNotOfferedAfter(c,
                        {[](GenerationConfig& g) { g.top_k = 5; },
                         [](GenerationConfig& g) { g.top_p = 1.0; },
                         [](GenerationConfig& g) { g.typical_p = 0.5; },
                         [](GenerationConfig& g) { g.logprobs = 1; }},
                        [](const Sampler& s) { return s.nucleus().has_value(); });
}

// A valid double temperature whose float is 0 or inf cannot be divided by on a device:
// such requests keep the whole row (they used to fail the step: review of this change).
TEST(SampleCandidatesTest, TemperaturesOutsideFloatKeepTheWholeRow) {
  for (const double temperature : {1e-46, 1e39}) {
    for (const int64_t top_k : {int64_t{0}, int64_t{40}}) {
      for (const double top_p : {1.0, 0.9}) {
        GenerationConfig c;
        c.do_sample = true;
        c.temperature = temperature;
        c.top_k = top_k;
        c.top_p = top_p;
        auto sampler = Sampler::Create(c, 300, 0);
        ASSERT_TRUE(sampler.ok()) << sampler.status();
        EXPECT_FALSE(sampler->top_k_candidates().has_value()) << temperature;
        EXPECT_FALSE(sampler->nucleus().has_value()) << temperature;
        EXPECT_FALSE(sampler->plain_sampling_temperature().has_value()) << temperature;
      }
    }
  }
}

TEST(SampleCandidatesTest, OnlyChainsThatNeedNoMoreThanTheCandidates) {
  const auto offered = [](const Sampler& s) { return s.top_k_candidates().has_value(); };
  GenerationConfig base;
  base.do_sample = true;
  base.top_k = 40;
  GenerationConfig with_all = base;
  with_all.top_p = 0.9;
  with_all.min_p = 0.1;
  with_all.temperature = 0.6;
  // Penalties and biases: the candidates of the edited row (LogitsProcessorChain::Edits);
  // the raw row's logprobs are then taken apart from them, so they may be more than k.
  GenerationConfig with_penalties = with_all;
  with_penalties.repetition_penalty = 1.2;
  with_penalties.logit_bias[3] = 5.0f;
  GenerationConfig penalties_and_logprobs = with_penalties;
  penalties_and_logprobs.top_k = 10;
  penalties_and_logprobs.logprobs = 20;
  for (const GenerationConfig& c : {base, with_all, with_penalties, penalties_and_logprobs}) {
    auto sampler = Sampler::Create(c, 300, 0);
    ASSERT_TRUE(sampler.ok()) << sampler.status();
    EXPECT_TRUE(offered(*sampler));
  }
  ExpectNotOfferedAfter(
      base,
      {[](GenerationConfig& g) { g.do_sample = false; },        // greedy: the argmax path
       [](GenerationConfig& g) { g.top_k = 0; },                // no top-k
       [](GenerationConfig& g) { g.top_k = 300; },              // the vocabulary: keeps all
       [](GenerationConfig& g) { g.typical_p = 0.9; },  // needs the whole row's entropy
       [](GenerationConfig& g) {  // more alternatives than candidates
         g.top_k = 4;
         g.logprobs = 5;
       }},
      offered);
  // Up to k alternatives of the raw row are candidates; the processed row's are not known.
  GenerationConfig with_logprobs = base;
  with_logprobs.logprobs = 20;
  auto raw = Sampler::Create(with_logprobs, 300, 0);
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_TRUE(offered(*raw));
  auto processed = Sampler::Create(with_logprobs, 300, 0, LogprobsSource::kProcessed);
  ASSERT_TRUE(processed.ok()) << processed.status();
  EXPECT_FALSE(offered(*processed));
}

// A top-k sampler that reports logprobs: from the candidates and the raw row's log Σ exp,
// the token, its logprob and the alternatives are Sample's over the whole row, bit for bit
// (up to k alternatives, ties at the temperature's division included).
TEST(SampleCandidatesTest, LogprobsFromTheCandidatesAreTheWholeRows) {
  std::mt19937 rng(37);
  int compared = 0;
  for (const int64_t logprobs : {0, 2, 8}) {
    for (const double temperature : {0.7, 1.0, 2.5}) {
      GenerationConfig c;
      c.do_sample = true;
      c.temperature = temperature;
      c.top_k = 8;
      c.top_p = 0.9;
      c.seed = 5;
      c.logprobs = logprobs;
      const size_t vocab = 150;
      auto sampler = Sampler::Create(c, static_cast<int32_t>(vocab), 0);
      ASSERT_TRUE(sampler.ok()) << sampler.status();
      const auto selection = sampler->top_k_candidates();
      ASSERT_TRUE(selection.has_value());
      for (int trial = 0; trial < 60; ++trial) {
        const std::vector<float> row = TieHeavyRow(rng, vocab);
        const RowArgMax best = ArgMaxOfRow(row);
        if (!std::isfinite(best.value)) continue;
        double sum = 0;  // SoftmaxDenominators at temperature 1, as a backend adds it
        for (float v : row) sum += std::exp(static_cast<double>(v) - best.value);
        auto [ids, values] = testing::CandidatesOfRow(row, selection->k, selection->temperature);
        const double normalizer =
            static_cast<double>(*std::max_element(values.begin(), values.end())) +
            std::log(sum);
        const std::vector<int32_t> history = {4, 5, static_cast<int32_t>(trial)};
        const TokenHistory h{history, 1};
        std::vector<float> whole = row, part = values;
        const SampleResult expected = sampler->Sample(h, whole, 0);
        const SampleResult got = sampler->SampleCandidates(h, ids, part, 0, normalizer);
        ASSERT_EQ(got.token, expected.token) << trial;
        ASSERT_EQ(got.logprob, expected.logprob) << trial;
        ASSERT_EQ(got.top, expected.top) << trial;
        ++compared;
      }
    }
  }
  EXPECT_GT(compared, 400);
}

// Greedy logprobs from a row's candidates (TopKOfRow at temperature 1) and its log Σ exp
// computed as a backend does (the max plus the log of SoftmaxDenominators' sum): the same
// bits as TokenLogprobOf and TopLogprobs over the whole row, ties in id order.
TEST(GreedyLogprobsTest, CandidatesAndNormalizerGiveTheWholeRowsLogprobs) {
  std::mt19937 rng(31);
  for (int trial = 0; trial < 300; ++trial) {
    const std::vector<float> row = TieHeavyRow(rng, 97);
    const RowArgMax best = ArgMaxOfRow(row);
    if (best.index < 0 || !std::isfinite(best.value)) continue;
    double sum = 0;
    for (float v : row) sum += std::exp(static_cast<double>(v) - best.value);
    const double normalizer = static_cast<double>(best.value) + std::log(sum);
    EXPECT_EQ(LogprobOf(best.value, normalizer), TokenLogprobOf(row, best.index)) << trial;
    for (int64_t n : {1, 3, 7}) {
      const auto [ids, values] = testing::CandidatesOfRow(row, n, 1.0f);
      ASSERT_GE(static_cast<int64_t>(ids.size()), n);
      EXPECT_EQ(TopLogprobsOfCandidates(ids, values, n, normalizer), TopLogprobs(row, n))
          << trial << " n " << n;
    }
  }
}

// Only greedy samplers without processors whose logprobs are the raw row's offer it.
TEST(GreedyLogprobsTest, OnlyGreedyRawLogprobsWithoutProcessorsButEdits) {
  const auto offered = [](const Sampler& s) { return s.greedy_raw_logprobs().has_value(); };
  GenerationConfig base;
  base.logprobs = 4;
  auto sampler = Sampler::Create(base, 300, 0);
  ASSERT_TRUE(sampler.ok()) << sampler.status();
  EXPECT_EQ(sampler->greedy_raw_logprobs(), std::optional<int64_t>(4));
  auto processed = Sampler::Create(base, 300, 0, LogprobsSource::kProcessed);
  ASSERT_TRUE(processed.ok()) << processed.status();
  EXPECT_FALSE(offered(*processed)) << "the processed row's logprobs";
  GenerationConfig penalized = base;  // the argmax of the edited row, the raw row's logprobs
  penalized.repetition_penalty = 1.2;
  penalized.logit_bias[3] = 5.0f;
  auto edited = Sampler::Create(penalized, 300, 0);
  ASSERT_TRUE(edited.ok()) << edited.status();
  EXPECT_TRUE(offered(*edited));
  ExpectNotOfferedAfter(
      base,
      {[](GenerationConfig& g) { g.logprobs.reset(); },  // the plain argmax path
       [](GenerationConfig& g) { g.do_sample = true; }},
      offered);
}

}  // namespace
}  // namespace tessera
