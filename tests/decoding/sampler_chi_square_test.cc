// Seeded multinomial sampling against the exact processed distribution, one processor at a
// time: for each, 30,000 draws (independent sequence indices) on an 8-token vocabulary are
// binned and compared with softmax(chain(logits)) by a chi-square test. The chain itself is
// checked against transformers in transformers_fixture_test.cc; this checks that the draws
// follow what it produces, removed tokens included (never drawn).
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "decoding/sampler.h"
#include "gtest/gtest.h"

namespace tessera {
namespace {

struct Case {
  std::string name;
  GenerationConfig config;
};

std::vector<Case> Cases() {
  GenerationConfig base;
  base.do_sample = true;
  base.top_k = 0;
  base.seed = 77;
  std::vector<Case> cases;
  auto add = [&](std::string name, auto edit) {
    GenerationConfig c = base;
    edit(c);
    cases.push_back({std::move(name), c});
  };
  add("plain", [](GenerationConfig&) {});
  add("temperature", [](GenerationConfig& c) { c.temperature = 0.6; });
  add("top_k", [](GenerationConfig& c) { c.top_k = 3; });
  add("top_p", [](GenerationConfig& c) { c.top_p = 0.7; });
  add("min_p", [](GenerationConfig& c) { c.min_p = 0.15; });
  add("typical_p", [](GenerationConfig& c) { c.typical_p = 0.6; });
  add("repetition_penalty", [](GenerationConfig& c) { c.repetition_penalty = 1.8; });
  add("frequency_presence", [](GenerationConfig& c) {
    c.frequency_penalty = 0.7;
    c.presence_penalty = 0.4;
  });
  add("logit_bias", [](GenerationConfig& c) { c.logit_bias = {{5, 2.0f}, {3, -100.0f}}; });
  add("no_repeat_ngram", [](GenerationConfig& c) { c.no_repeat_ngram_size = 2; });
  add("min_new_tokens", [](GenerationConfig& c) {
    c.eos_token_ids = {1};
    c.min_new_tokens = 10;
  });
  add("bad_words", [](GenerationConfig& c) { c.bad_words_ids = {{6}, {2, 4}}; });
  return cases;
}

TEST(SamplerChiSquareTest, DrawsFollowTheProcessedDistribution) {
  const std::vector<float> logits = {0.3f, 1.1f, -0.4f, 1.9f, 0.6f, -1.2f, 1.4f, 0.1f};
  // Prompt [0, 2], generated [3, 6, 3, 2] ("2 4" would end with the bad word "2 4";
  // "2" after "3 2" is a repeated bigram's continuation candidate for no_repeat_ngram).
  const std::vector<int32_t> ids = {0, 2, 3, 6, 3, 2};
  const TokenHistory history{ids, 2};
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    auto sampler = Sampler::Create(c.config, static_cast<int32_t>(logits.size()), 0);
    ASSERT_TRUE(sampler.ok()) << sampler.status();
    std::vector<float> processed = logits;
    sampler->chain().Apply(history, processed);
    if (c.name != "plain") {
      EXPECT_NE(processed, logits) << "the processor should act here";
    }
    double max = -std::numeric_limits<double>::infinity(), total = 0.0;
    for (float x : processed) max = std::max(max, static_cast<double>(x));
    std::vector<double> p(logits.size());
    for (size_t i = 0; i < p.size(); ++i) total += p[i] = std::exp(processed[i] - max);
    for (double& v : p) v /= total;

    constexpr int kDraws = 30000;
    std::vector<int> counts(logits.size(), 0);
    for (int i = 0; i < kDraws; ++i) {
      std::vector<float> row = logits;
      const SampleResult r = sampler->Sample(history, row, static_cast<uint64_t>(i));
      ASSERT_GE(r.token, 0);
      ++counts[static_cast<size_t>(r.token)];
    }
    double chi2 = 0.0;
    int cells = 0;
    for (size_t k = 0; k < p.size(); ++k) {
      if (p[k] == 0.0) {
        EXPECT_EQ(counts[k], 0) << "token " << k << " was removed but drawn";
        continue;
      }
      const double e = p[k] * kDraws;
      chi2 += (counts[k] - e) * (counts[k] - e) / e;
      ++cells;
    }
    ASSERT_GE(cells, 2) << "the case should leave a choice";
    // Upper 0.01% point of chi-square with cells - 1 <= 7 degrees of freedom is < 29.9.
    EXPECT_LT(chi2, 29.9) << cells - 1 << " degrees of freedom";
  }
}

}  // namespace
}  // namespace tessera
