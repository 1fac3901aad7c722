// GenerateSequence (the loop behind `tessera generate`) on a tiny random model, checked
// against the independent float64 forward of tests/model: greedy tokens equal greedy
// decoding over the reference logits; it stops at stop ids, the token limit and the context
// length; --min-new-tokens masks the stop ids; sampling with top_k 1 is greedy; seeded
// sampling repeats itself; logprobs are the log-softmax of the raw reference logits.
#include "tools/generation_loop.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "decoding/generation_config.h"
#include "decoding/sampler.h"
#include "formats/weight_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "tests/model/reference_llama.h"
#include "tests/model/tiny_llama.h"

namespace tessera {
namespace {

using ::testing::ElementsAre;

class GenerationLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_.context = 12;
    spec_.seed = 7;
    path_ = testing::TempGgufPath("generation_loop");
    auto tiny = testing::LoadTinyModel(spec_, path_, "cpu-reference", 0);
    ASSERT_TRUE(tiny.ok()) << tiny.status();
    tiny_ = std::move(*tiny);
  }
  void TearDown() override { std::remove(path_.c_str()); }

  // The float64 reference's next-token logits after `tokens`.
  std::vector<double> ReferenceLastLogits(const std::vector<int32_t>& tokens) {
    const std::vector<double> all = testing::ReferenceForward(tiny_.weights, tokens);
    const size_t vocab = static_cast<size_t>(spec_.vocab);
    return std::vector<double>(all.end() - static_cast<std::ptrdiff_t>(vocab), all.end());
  }

  static int32_t ArgMaxExcept(const std::vector<double>& logits, int32_t excluded) {
    int32_t best = -1;
    for (int32_t v = 0; v < static_cast<int32_t>(logits.size()); ++v) {
      if (v == excluded) continue;
      if (best < 0 || logits[v] > logits[best]) best = v;
    }
    return best;
  }

  // Greedy continuation computed with the float64 reference, re-running the whole sequence.
  std::vector<int32_t> ReferenceGreedy(std::vector<int32_t> tokens, int n) {
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) {
      const int32_t best = ArgMaxExcept(ReferenceLastLogits(tokens), -1);
      out.push_back(best);
      tokens.push_back(best);
    }
    return out;
  }

  Sampler MakeSampler(const GenerationConfig& config) {
    auto s = Sampler::Create(config, static_cast<int32_t>(spec_.vocab), /*default_seed=*/1);
    EXPECT_TRUE(s.ok()) << s.status();
    return std::move(*s);
  }

  std::vector<SampleResult> Generate(const std::vector<int32_t>& prompt,
                                     const GenerationConfig& config, int64_t max_new_tokens,
                                     const std::vector<int32_t>& stop_ids,
                                     GenerationStats* stats) {
    std::vector<SampleResult> out;
    const Sampler sampler = MakeSampler(config);
    const absl::Status s = GenerateSequence(
        *tiny_.model, prompt, sampler, GenerationLimits{max_new_tokens, stop_ids},
        [&](const SampleResult& r) -> absl::StatusOr<bool> {
          out.push_back(r);
          return true;
        },
        stats);
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  static std::vector<int32_t> Ids(const std::vector<SampleResult>& results) {
    std::vector<int32_t> ids;
    for (const SampleResult& r : results) ids.push_back(r.token);
    return ids;
  }

  testing::TinySpec spec_;
  std::string path_;
  testing::LoadedTinyModel tiny_;
};

const std::vector<int32_t> kPrompt = {3, 14, 15, 9};

TEST_F(GenerationLoopTest, GreedyTokensEqualFloat64GreedyDecoding) {
  GenerationStats stats;
  const std::vector<SampleResult> got = Generate(kPrompt, GenerationConfig{}, 6, {}, &stats);
  EXPECT_EQ(Ids(got), ReferenceGreedy(kPrompt, 6));
  EXPECT_EQ(stats.prompt_tokens, 4);
  EXPECT_EQ(stats.generated_tokens, 6);
  EXPECT_EQ(stats.decode_steps, 5);  // the first token comes from the prefill
  EXPECT_EQ(stats.finish_reason, FinishReason::kLength);
  EXPECT_EQ(FinishReasonName(stats.finish_reason), "length");
}

TEST_F(GenerationLoopTest, StopsAtStopIdWithoutEmittingIt) {
  const std::vector<int32_t> want = ReferenceGreedy(kPrompt, 3);
  GenerationStats stats;
  const std::vector<SampleResult> got = Generate(kPrompt, GenerationConfig{}, 10, {want[2]}, &stats);
  std::vector<int32_t> expected;  // tokens before the first occurrence of the stop id
  for (int32_t t : want) {
    if (t == want[2]) break;
    expected.push_back(t);
  }
  EXPECT_EQ(Ids(got), expected);
  EXPECT_EQ(stats.finish_reason, FinishReason::kStop);
  EXPECT_EQ(FinishReasonName(stats.finish_reason), "stop");
  EXPECT_EQ(stats.stop_token, want[2]);
}

TEST_F(GenerationLoopTest, MinNewTokensMasksTheStopIds) {
  // The greedy first token is made a stop id; with min_new_tokens 2 the loop must instead
  // emit the best other token, then may stop.
  const std::vector<int32_t> first = ReferenceGreedy(kPrompt, 1);
  const int32_t stop = first[0];
  GenerationConfig config;
  config.eos_token_ids = {stop};
  config.min_new_tokens = 2;
  const std::vector<SampleResult> got = Generate(kPrompt, config, 8, {stop}, nullptr);
  ASSERT_GE(got.size(), 2u);
  EXPECT_EQ(got[0].token, ArgMaxExcept(ReferenceLastLogits(kPrompt), stop));
  EXPECT_NE(got[1].token, stop);
  // Without min_new_tokens it stops at once.
  GenerationStats stats;
  config.min_new_tokens = 0;
  EXPECT_THAT(Generate(kPrompt, config, 8, {stop}, &stats), ElementsAre());
  EXPECT_EQ(stats.finish_reason, FinishReason::kStop);
}

TEST_F(GenerationLoopTest, SamplingWithTopKOneIsGreedy) {
  GenerationConfig config;
  config.do_sample = true;
  config.top_k = 1;
  config.temperature = 1.7;
  for (uint64_t seed : {1u, 2u, 3u}) {
    config.seed = seed;
    EXPECT_EQ(Ids(Generate(kPrompt, config, 6, {}, nullptr)), ReferenceGreedy(kPrompt, 6))
        << "seed " << seed;
  }
}

TEST_F(GenerationLoopTest, SeededSamplingRepeatsItselfAndDependsOnTheSeed) {
  GenerationConfig config;
  config.do_sample = true;
  config.top_k = 0;
  // The tiny random model is very sure of itself (the runner-up is ~13 nats behind): flatten
  // its distribution so that the seed matters.
  config.temperature = 40.0;
  config.seed = 42;
  const std::vector<int32_t> a = Ids(Generate(kPrompt, config, 7, {}, nullptr));
  EXPECT_EQ(Ids(Generate(kPrompt, config, 7, {}, nullptr)), a);
  bool some_seed_differs = false;
  for (uint64_t seed = 1; seed <= 8 && !some_seed_differs; ++seed) {
    config.seed = seed;
    some_seed_differs = Ids(Generate(kPrompt, config, 7, {}, nullptr)) != a;
  }
  EXPECT_TRUE(some_seed_differs);
}

TEST_F(GenerationLoopTest, LogprobsAreLogSoftmaxOfRawReferenceLogits) {
  GenerationConfig config;
  config.logprobs = 3;
  config.repetition_penalty = 1.5;  // the processed row differs from the raw one
  const std::vector<SampleResult> got = Generate(kPrompt, config, 4, {}, nullptr);
  ASSERT_EQ(got.size(), 4u);
  std::vector<int32_t> tokens = kPrompt;
  for (const SampleResult& r : got) {
    const std::vector<double> logits = ReferenceLastLogits(tokens);
    const double max = *std::max_element(logits.begin(), logits.end());
    double sum = 0;
    for (double l : logits) sum += std::exp(l - max);
    const double lse = max + std::log(sum);
    EXPECT_LE(r.logprob, 0.0f);
    EXPECT_NEAR(r.logprob, logits[r.token] - lse, 1e-4);
    ASSERT_EQ(r.top.size(), 3u);
    EXPECT_EQ(r.top[0].token, ArgMaxExcept(logits, -1));
    EXPECT_NEAR(r.top[0].logprob, logits[r.top[0].token] - lse, 1e-4);
    EXPECT_GE(r.top[0].logprob, r.top[1].logprob);
    tokens.push_back(r.token);
  }
}

TEST_F(GenerationLoopTest, StopsAtContextLength) {
  // Context 12, prompt 4: positions 4..11 take 8 decode steps, so 9 tokens come out.
  GenerationStats stats;
  const std::vector<SampleResult> got = Generate({1, 2, 3, 4}, GenerationConfig{}, 100, {}, &stats);
  EXPECT_EQ(got.size(), 9u);
  EXPECT_EQ(stats.decode_steps, 8);
  EXPECT_EQ(stats.finish_reason, FinishReason::kLength);
}

TEST_F(GenerationLoopTest, ZeroMaxTokensRunsNothing) {
  GenerationStats stats;
  EXPECT_THAT(Generate({1, 2}, GenerationConfig{}, 0, {}, &stats), ElementsAre());
  EXPECT_EQ(stats.decode_steps, 0);
}

TEST_F(GenerationLoopTest, CallbackErrorEndsGeneration) {
  int calls = 0;
  const Sampler sampler = MakeSampler(GenerationConfig{});
  const absl::Status s = GenerateSequence(
      *tiny_.model, std::vector<int32_t>{1, 2}, sampler, GenerationLimits{5, {}},
      [&](const SampleResult&) -> absl::StatusOr<bool> {
        ++calls;
        if (calls == 2) return absl::CancelledError("client went away");
        return true;
      },
      nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 2);
}

TEST_F(GenerationLoopTest, CallbackStopsAndMaxTimeEndsWithDeadline) {
  const Sampler sampler = MakeSampler(GenerationConfig{});
  int calls = 0;
  GenerationStats stats;
  absl::Status s = GenerateSequence(
      *tiny_.model, std::vector<int32_t>{1, 2}, sampler, GenerationLimits{8, {}},
      [&](const SampleResult&) -> absl::StatusOr<bool> { return ++calls < 3; }, &stats);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(stats.generated_tokens, 3);
  EXPECT_EQ(stats.finish_reason, FinishReason::kStop);
  EXPECT_EQ(stats.stop_token, -1) << "a stop string, not a stop id";

  GenerationLimits limits{8, {}};
  limits.max_time = absl::ZeroDuration();  // already over after the first token
  s = GenerateSequence(*tiny_.model, std::vector<int32_t>{1, 2}, sampler, limits,
                       [](const SampleResult&) -> absl::StatusOr<bool> { return true; },
                       &stats);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(stats.generated_tokens, 1);
  EXPECT_EQ(stats.finish_reason, FinishReason::kDeadline);
}

TEST_F(GenerationLoopTest, TokenOutsideVocabularyIsInvalidArgument) {
  const Sampler sampler = MakeSampler(GenerationConfig{});
  const absl::Status s = GenerateSequence(
      *tiny_.model, std::vector<int32_t>{1, static_cast<int32_t>(spec_.vocab)}, sampler,
      GenerationLimits{5, {}}, [](const SampleResult&) -> absl::StatusOr<bool> { return true; }, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(GenerationLoopTest, SamplerForAnotherVocabularyIsInvalidArgument) {
  auto sampler = Sampler::Create(GenerationConfig{}, static_cast<int32_t>(spec_.vocab) + 1, 1);
  ASSERT_TRUE(sampler.ok());
  const absl::Status s = GenerateSequence(
      *tiny_.model, std::vector<int32_t>{1, 2}, *sampler, GenerationLimits{5, {}},
      [](const SampleResult&) -> absl::StatusOr<bool> { return true; }, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), ::testing::HasSubstr("vocabulary"));
}

}  // namespace
}  // namespace tessera
