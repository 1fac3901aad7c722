// Each processor against a float64 reimplementation written from the definitions (not from
// the processor code: e.g. top-p as "keep a token while the mass strictly above it is below
// top_p"), on random rows; plus the chain's order and its id checks.
#include "decoding/logits_processor.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "decoding/penalty_processors.h"
#include "decoding/sampling_warpers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int kVocab = 64;

std::vector<float> RandomLogits(std::mt19937& rng, int n, double scale) {
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<float> out(n);
  for (float& v : out) v = static_cast<float>(normal(rng));
  return out;
}

std::vector<int32_t> RandomIds(std::mt19937& rng, int n, int distinct) {
  std::uniform_int_distribution<int> pick(0, distinct - 1);
  std::uniform_int_distribution<int> token(0, kVocab - 1);
  std::vector<int32_t> alphabet(distinct);
  for (int32_t& a : alphabet) a = token(rng);
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = alphabet[pick(rng)];
  return ids;
}

std::vector<double> Probs(const std::vector<double>& l) {
  double max = -kInf;
  for (double v : l) max = std::max(max, v);
  std::vector<double> p(l.size());
  double sum = 0;
  for (size_t i = 0; i < l.size(); ++i) sum += (p[i] = std::exp(l[i] - max));
  for (double& v : p) v /= sum;
  return p;
}

std::vector<double> ToDouble(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// Finite values within 1e-5 (relative for large ones); -inf exactly where expected.
void ExpectRowsMatch(const std::vector<float>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isinf(want[i])) {
      EXPECT_EQ(got[i], static_cast<float>(want[i])) << "token " << i;
    } else {
      EXPECT_NEAR(got[i], want[i], 1e-5 * std::max(1.0, std::fabs(want[i]))) << "token " << i;
    }
  }
}

TokenHistory History(const std::vector<int32_t>& ids, size_t prompt_len) {
  return TokenHistory{ids, prompt_len};
}

TEST(PenaltyProcessorsTest, RepetitionPenaltyOverPromptAndGenerated) {
  std::mt19937 rng(1);
  for (float penalty : {0.6f, 1.4f, 3.0f}) {
    for (int trial = 0; trial < 20; ++trial) {
      const std::vector<float> logits = RandomLogits(rng, kVocab, 2.0);
      const std::vector<int32_t> ids = RandomIds(rng, 12, 6);
      std::vector<double> want = ToDouble(logits);
      for (int32_t id : std::set<int32_t>(ids.begin(), ids.end())) {
        want[id] = want[id] < 0 ? want[id] * penalty : want[id] / penalty;
      }
      std::vector<float> got = logits;
      RepetitionPenaltyProcessor(penalty).Apply(History(ids, 5), got);
      ExpectRowsMatch(got, want);
    }
  }
}

TEST(PenaltyProcessorsTest, FrequencyAndPresenceCountOnlyGeneratedIds) {
  std::mt19937 rng(2);
  for (int trial = 0; trial < 20; ++trial) {
    const std::vector<float> logits = RandomLogits(rng, kVocab, 2.0);
    const std::vector<int32_t> ids = RandomIds(rng, 16, 5);
    const size_t prompt = 6;
    std::vector<double> want = ToDouble(logits);
    std::vector<int> count(kVocab, 0);
    for (size_t i = prompt; i < ids.size(); ++i) ++count[ids[i]];
    for (int t = 0; t < kVocab; ++t) want[t] -= 0.75 * count[t] + (count[t] > 0 ? -0.5 : 0.0);
    std::vector<float> got = logits;
    FrequencyPresencePenaltyProcessor(0.75, -0.5).Apply(History(ids, prompt), got);
    ExpectRowsMatch(got, want);
  }
}

TEST(PenaltyProcessorsTest, NoRepeatNGramBansCompletions) {
  std::mt19937 rng(3);
  for (int64_t n : {1, 2, 3, 4}) {
    for (int trial = 0; trial < 30; ++trial) {
      const std::vector<float> logits = RandomLogits(rng, kVocab, 1.0);
      const std::vector<int32_t> ids = RandomIds(rng, 30, 3);
      // Reference: collect every n-gram; ban x when (last n-1 ids, x) is one of them.
      std::set<std::vector<int32_t>> ngrams;
      for (size_t s = 0; s + n <= ids.size(); ++s) {
        ngrams.insert(std::vector<int32_t>(ids.begin() + s, ids.begin() + s + n));
      }
      std::vector<double> want = ToDouble(logits);
      if (ids.size() >= static_cast<size_t>(n)) {
        for (int32_t x = 0; x < kVocab; ++x) {
          std::vector<int32_t> candidate(ids.end() - (n - 1), ids.end());
          candidate.push_back(x);
          if (ngrams.count(candidate)) want[x] = -kInf;
        }
      }
      std::vector<float> got = logits;
      NoRepeatNGramProcessor(n).Apply(History(ids, 3), got);
      ExpectRowsMatch(got, want);
    }
  }
}

TEST(PenaltyProcessorsTest, NoRepeatNGramNeedsEnoughIds) {
  const std::vector<int32_t> ids = {1, 2};
  std::vector<float> logits(8, 1.0f);
  NoRepeatNGramProcessor(3).Apply(History(ids, 1), logits);
  EXPECT_EQ(logits, std::vector<float>(8, 1.0f));
}

TEST(PenaltyProcessorsTest, MinNewTokensMasksEndIdsUntilReached) {
  const std::vector<int32_t> ids = {5, 6, 7, 8};  // prompt 2, generated 2
  std::vector<float> logits(10, 0.5f);
  MinNewTokensProcessor(3, {1, 4}).Apply(History(ids, 2), logits);
  EXPECT_EQ(logits[1], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(logits[4], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(logits[0], 0.5f);
  std::vector<float> later(10, 0.5f);
  MinNewTokensProcessor(2, {1, 4}).Apply(History(ids, 2), later);
  EXPECT_EQ(later, std::vector<float>(10, 0.5f));
}

TEST(PenaltyProcessorsTest, SequenceBiasSingleAndMultiToken) {
  std::mt19937 rng(4);
  const std::map<std::vector<int32_t>, float> biases = {
      {{3}, 1.5f}, {{1, 2}, -2.0f}, {{0, 1, 2}, 0.25f}, {{2, 3}, 4.0f}, {{7, 3}, -1.0f}};
  SequenceBiasProcessor processor("sequence_bias", biases);
  for (int trial = 0; trial < 40; ++trial) {
    const std::vector<float> logits = RandomLogits(rng, kVocab, 1.0);
    std::uniform_int_distribution<int> small(0, 3);
    std::vector<int32_t> ids(1 + trial % 6);
    for (int32_t& id : ids) id = small(rng);
    std::vector<double> want = ToDouble(logits);
    for (const auto& [seq, bias] : biases) {
      const size_t prefix = seq.size() - 1;
      bool match = prefix <= ids.size();
      for (size_t i = 0; match && i < prefix; ++i) {
        match = ids[ids.size() - prefix + i] == seq[i];
      }
      if (match) want[seq.back()] += bias;
    }
    std::vector<float> got = logits;
    processor.Apply(History(ids, 0), got);
    ExpectRowsMatch(got, want);
  }
}

TEST(PenaltyProcessorsTest, IdsBeyondTheRowAreIgnored) {
  // transformers clamps ids past the LM head's size away (a larger embedding vocabulary).
  const std::vector<int32_t> ids = {1, 9, 1, 9, 1};
  std::vector<float> logits = {2.f, 2.f, 2.f};
  RepetitionPenaltyProcessor(2.0f).Apply(History(ids, 2), logits);
  NoRepeatNGramProcessor(2).Apply(History(ids, 2), logits);
  FrequencyPresencePenaltyProcessor(1.0, 1.0).Apply(History(ids, 2), logits);
  MinNewTokensProcessor(9, {7}).Apply(History(ids, 2), logits);
  // 1 -> 9 was seen, so after "1" the bigram (1, 9) is banned: 9 is outside, nothing to do.
  EXPECT_THAT(logits, ElementsAre(2.f, 2.f / 2.f - 2.f - 1.f, 2.f));
}

// --- Warpers -------------------------------------------------------------------------

std::vector<double> ReferenceTopK(const std::vector<double>& l, int64_t k) {
  std::vector<double> out = l;
  for (size_t i = 0; i < l.size(); ++i) {
    int64_t greater = 0;
    for (double v : l) greater += v > l[i];
    if (greater >= k) out[i] = -kInf;
  }
  return out;
}

// Keep a token while the probability of the tokens ranked above it is < top_p (ranked by
// logit, lower id first among ties).
std::vector<double> ReferenceTopP(const std::vector<double>& l, double top_p) {
  const std::vector<double> p = Probs(l);
  std::vector<double> out = l;
  for (size_t i = 0; i < l.size(); ++i) {
    double above = 0;
    for (size_t j = 0; j < l.size(); ++j) {
      if (l[j] > l[i] || (l[j] == l[i] && j < i)) above += p[j];
    }
    if (above >= top_p && above > 0) out[i] = -kInf;
  }
  return out;
}

std::vector<double> ReferenceMinP(const std::vector<double>& l, double min_p) {
  const std::vector<double> p = Probs(l);
  const double top = *std::max_element(p.begin(), p.end());
  std::vector<double> out = l;
  for (size_t i = 0; i < l.size(); ++i) {
    if (p[i] < min_p * top) out[i] = -kInf;
  }
  return out;
}

// Keep a token while the mass of the tokens strictly more typical than it is < mass.
std::vector<double> ReferenceTypical(const std::vector<double>& l, double mass) {
  const std::vector<double> p = Probs(l);
  double entropy = 0;
  for (double v : p) {
    if (v > 0) entropy -= v * std::log(v);
  }
  std::vector<double> d(l.size());
  for (size_t i = 0; i < l.size(); ++i) d[i] = std::fabs(-std::log(p[i]) - entropy);
  std::vector<double> out = l;
  for (size_t i = 0; i < l.size(); ++i) {
    double before = 0;
    for (size_t j = 0; j < l.size(); ++j) {
      if (d[j] < d[i]) before += p[j];
    }
    if (before >= mass) out[i] = -kInf;
  }
  return out;
}

TEST(SamplingWarpersTest, Temperature) {
  std::mt19937 rng(5);
  const std::vector<float> logits = RandomLogits(rng, kVocab, 3.0);
  std::vector<double> want = ToDouble(logits);
  for (double& v : want) v /= 0.7;
  std::vector<float> got = logits;
  TemperatureWarper(0.7f).Apply({}, got);
  ExpectRowsMatch(got, want);
}

TEST(SamplingWarpersTest, TopKKeepsTies) {
  std::mt19937 rng(6);
  for (int64_t k : {1, 3, 10, 63, 64, 100}) {
    for (int trial = 0; trial < 10; ++trial) {
      std::vector<float> logits = RandomLogits(rng, kVocab, 2.0);
      if (trial % 2) {
        for (float& v : logits) v = std::round(v);  // many ties
      }
      std::vector<float> got = logits;
      TopKWarper(k, 1).Apply({}, got);
      ExpectRowsMatch(got, ReferenceTopK(ToDouble(logits), k));
    }
  }
}

TEST(SamplingWarpersTest, TopKRaisedToMinTokensToKeep) {
  std::vector<float> logits = {0.f, 3.f, 1.f, 2.f};
  TopKWarper(1, 3).Apply({}, logits);
  const float ninf = -std::numeric_limits<float>::infinity();
  EXPECT_THAT(logits, ElementsAre(ninf, 3.f, 1.f, 2.f));
}

TEST(SamplingWarpersTest, TopP) {
  std::mt19937 rng(7);
  for (double top_p : {0.01, 0.2, 0.5, 0.8, 0.95, 0.999}) {
    for (int trial = 0; trial < 20; ++trial) {
      const std::vector<float> logits = RandomLogits(rng, kVocab, trial % 2 ? 1.0 : 3.0);
      std::vector<float> got = logits;
      TopPWarper(top_p, 1).Apply({}, got);
      ExpectRowsMatch(got, ReferenceTopP(ToDouble(logits), top_p));
    }
  }
}

TEST(SamplingWarpersTest, TopPTiesRemoveHigherIdFirst) {
  // Four equal tokens of 0.25 each: top_p 0.5 keeps exactly the two lowest ids.
  std::vector<float> logits = {1.f, 1.f, 1.f, 1.f};
  TopPWarper(0.5, 1).Apply({}, logits);
  const float ninf = -std::numeric_limits<float>::infinity();
  EXPECT_THAT(logits, ElementsAre(1.f, 1.f, ninf, ninf));
}

TEST(SamplingWarpersTest, TopPKeepsMinTokens) {
  std::vector<float> logits = {10.f, 0.f, -1.f, -2.f};
  TopPWarper(0.1, 3).Apply({}, logits);
  const float ninf = -std::numeric_limits<float>::infinity();
  EXPECT_THAT(logits, ElementsAre(10.f, 0.f, -1.f, ninf));
}

TEST(SamplingWarpersTest, MinP) {
  std::mt19937 rng(8);
  for (double min_p : {0.0, 0.01, 0.1, 0.3, 0.9, 1.0}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> logits = RandomLogits(rng, kVocab, 2.0);
      if (trial % 3 == 0) {
        for (float& v : logits) v = std::round(v * 2) / 2;
      }
      std::vector<float> got = logits;
      MinPWarper(min_p, 1).Apply({}, got);
      ExpectRowsMatch(got, ReferenceMinP(ToDouble(logits), min_p));
    }
  }
}

TEST(SamplingWarpersTest, MinPKeepsMinTokens) {
  std::vector<float> logits = {5.f, 0.f, -1.f, 1.f};
  MinPWarper(0.9, 2).Apply({}, logits);
  const float ninf = -std::numeric_limits<float>::infinity();
  EXPECT_THAT(logits, ElementsAre(5.f, ninf, ninf, 1.f));
}

TEST(SamplingWarpersTest, Typical) {
  std::mt19937 rng(9);
  for (double mass : {0.1, 0.5, 0.9, 0.99}) {
    for (int trial = 0; trial < 20; ++trial) {
      const std::vector<float> logits = RandomLogits(rng, kVocab, trial % 2 ? 1.0 : 3.0);
      std::vector<float> got = logits;
      TypicalWarper(mass, 1).Apply({}, got);
      ExpectRowsMatch(got, ReferenceTypical(ToDouble(logits), mass));
    }
  }
}

TEST(SamplingWarpersTest, AllMinusInfinityRowIsLeftAlone) {
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int which = 0; which < 3; ++which) {
    std::vector<float> logits(5, ninf);
    if (which == 0) TopPWarper(0.5, 1).Apply({}, logits);
    if (which == 1) MinPWarper(0.5, 1).Apply({}, logits);
    if (which == 2) TypicalWarper(0.5, 1).Apply({}, logits);
    EXPECT_EQ(logits, std::vector<float>(5, ninf));
  }
}

// --- Chain ---------------------------------------------------------------------------

TEST(LogitsProcessorChainTest, TransformersOrder) {
  GenerationConfig c;
  c.do_sample = true;
  c.temperature = 0.8;
  c.top_k = 10;
  c.top_p = 0.9;
  c.min_p = 0.1;
  c.typical_p = 0.9;
  c.repetition_penalty = 1.2;
  c.frequency_penalty = 0.1;
  c.no_repeat_ngram_size = 2;
  c.min_new_tokens = 1;
  c.eos_token_ids = {2};
  c.logit_bias[4] = 1.0f;
  c.bad_words_ids = {{5}};
  auto chain = LogitsProcessorChain::Create(c, kVocab);
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_THAT(chain->names(),
              ElementsAre("sequence_bias", "repetition_penalty", "frequency_presence_penalty",
                          "no_repeat_ngram", "bad_words", "min_new_tokens", "temperature", "top_k",
                          "top_p", "min_p", "typical_p"));
}

TEST(LogitsProcessorChainTest, NoOpsAreLeftOut) {
  GenerationConfig greedy;
  greedy.temperature = 0.5;  // warpers apply only when sampling
  greedy.top_p = 0.5;
  auto chain = LogitsProcessorChain::Create(greedy, kVocab);
  ASSERT_TRUE(chain.ok());
  EXPECT_TRUE(chain->empty());
  GenerationConfig sample;
  sample.do_sample = true;
  sample.top_k = 0;
  auto sample_chain = LogitsProcessorChain::Create(sample, kVocab);
  ASSERT_TRUE(sample_chain.ok());
  EXPECT_TRUE(sample_chain->empty());
  // min_new_tokens without any end id does nothing (as in transformers).
  GenerationConfig min_new;
  min_new.min_new_tokens = 3;
  EXPECT_TRUE(LogitsProcessorChain::Create(min_new, kVocab)->empty());
}

TEST(LogitsProcessorChainTest, BadWordsDropSingleEosEntries) {
  GenerationConfig c;
  c.eos_token_ids = {2};
  c.bad_words_ids = {{2}};
  auto chain = LogitsProcessorChain::Create(c, kVocab);
  ASSERT_TRUE(chain.ok());
  EXPECT_TRUE(chain->empty());
}

TEST(LogitsProcessorChainTest, MinNewTokensAlsoMasksStopIds) {
  GenerationConfig c;
  c.min_new_tokens = 2;
  c.eos_token_ids = {1};
  c.stop_token_ids = {3};
  auto chain = LogitsProcessorChain::Create(c, 5);
  ASSERT_TRUE(chain.ok());
  std::vector<float> logits(5, 0.0f);
  const std::vector<int32_t> ids = {4, 4};
  chain->Apply(History(ids, 1), logits);
  const float ninf = -std::numeric_limits<float>::infinity();
  EXPECT_THAT(logits, ElementsAre(0.f, ninf, 0.f, ninf, 0.f));
}

TEST(LogitsProcessorChainTest, IdsOutsideTheVocabularyNameTheField) {
  struct Case {
    std::string field;
    std::function<void(GenerationConfig&)> mutate;
  };
  const std::vector<Case> cases = {
      {"logit_bias", [](GenerationConfig& c) { c.logit_bias[kVocab] = 1.0f; }},
      {"sequence_bias",
       [](GenerationConfig& c) {
         c.sequence_bias = {{{1, kVocab + 3}, 1.0f}};
       }},
      {"bad_words_ids", [](GenerationConfig& c) { c.bad_words_ids = {{kVocab}}; }},
      {"eos_token_id", [](GenerationConfig& c) { c.eos_token_ids = {kVocab}; }},
      {"stop_token_ids", [](GenerationConfig& c) { c.stop_token_ids = {kVocab + 1}; }},
  };
  for (const Case& tc : cases) {
    GenerationConfig c;
    tc.mutate(c);
    auto chain = LogitsProcessorChain::Create(c, kVocab);
    ASSERT_FALSE(chain.ok()) << tc.field;
    EXPECT_EQ(chain.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(chain.status().message()), HasSubstr("'" + tc.field + "'"));
  }
  GenerationConfig bad;
  bad.top_k = -3;
  EXPECT_THAT(std::string(LogitsProcessorChain::Create(bad, kVocab).status().message()),
              HasSubstr("'top_k'"));
  EXPECT_EQ(LogitsProcessorChain::Create(GenerationConfig{}, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera
