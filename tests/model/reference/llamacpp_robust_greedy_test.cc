// SmolLM2-135M-Instruct (the default Q4_1 model): Tessera's greedy 64-token continuations on
// the "cpu" backend must EQUAL llama.cpp's, token for token, on the prompts of
// tests/fixtures/model/llamacpp_greedy_robust.json.
//
// Those prompts were chosen by make_llamacpp_robust_fixture.sh from robust_candidates.json
// by a rule on llama.cpp's own outputs only (Tessera was not consulted): llama.cpp's
// best-vs-second logit gap is >= 0.5 at every one of the 64 steps, and its continuation does
// not change when its KV cache goes from F32 to F16. On such prompts the ~0.3 logit jitter of
// 8-bit activation rounding (tests/fixtures/model/README.md) cannot flip a step, so any
// difference is a real defect (a wrong weight, kernel, RoPE, mask or cache position would
// change the logits by more than the gap somewhere in 64 steps). The natural prompts, which
// pass near-ties, are covered with tie-aware assertions by llamacpp_greedy_test.cc.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "formats/gguf_reader.h"
#include "gtest/gtest.h"
#include "tests/model/reference/reference_fixtures.h"
#include "tokenizer/tokenizer.h"

namespace tessera::testing {
namespace {

constexpr int kGenerated = 64;
// The issue asks for at least this many prompts with equal 64-token continuations.
constexpr size_t kMinPrompts = 5;

class LlamaCppRobustGreedyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto f = LoadLlamaCppRobustFixture();
    ASSERT_TRUE(f.ok()) << f.status();
    fixture_ = std::move(*f);
  }
  LlamaCppRobustFixture fixture_;
};

// The first step where Tessera's ids leave llama.cpp's, with both runs' gaps there.
std::string DescribeDivergence(const LlamaCppPrompt& p, const GreedyRun& run) {
  for (size_t i = 0; i < p.generated_ids.size() && i < run.ids.size(); ++i) {
    if (p.generated_ids[i] == run.ids[i]) continue;
    const std::vector<float>& l = run.step_logits[i];
    return absl::StrFormat(
        "prompt '%s' first differs at step %d: llama.cpp chose %d (gap %.5f), Tessera chose %d; "
        "Tessera's logits there: [%d]=%.5f [%d]=%.5f",
        p.name, i, p.generated_ids[i], p.step_margins[i], run.ids[i], p.generated_ids[i],
        l[p.generated_ids[i]], run.ids[i], l[run.ids[i]]);
  }
  return "no divergence";
}

TEST_F(LlamaCppRobustGreedyTest, FixtureHoldsEnoughPromptsThatPassItsRule) {
  std::printf("[ robust    ] %zu of %d candidates kept by: %s\n", fixture_.prompts.size(),
              fixture_.num_candidates, fixture_.selection_rule.c_str());
  EXPECT_GE(fixture_.prompts.size(), kMinPrompts);
  EXPECT_GE(fixture_.min_gap, 0.5);
  for (const LlamaCppPrompt& p : fixture_.prompts) {
    ASSERT_EQ(p.generated_ids.size(), static_cast<size_t>(kGenerated)) << p.name;
    for (int i = 0; i < kGenerated; ++i) {
      EXPECT_GE(p.step_margins[i], fixture_.min_gap) << p.name << " step " << i;
    }
  }
}

TEST_F(LlamaCppRobustGreedyTest, TokenizerGivesLlamaCppPromptIds) {
  ExpectTokenizerGivesPromptIds(fixture_.prompts);
}

// Runs every kept prompt greedily on `backend` and expects llama.cpp's 64 ids exactly.
void ExpectGreedyEqualsLlamaCpp(const LlamaCppRobustFixture& fixture, const char* backend) {
  auto m = SharedDefaultModel(backend);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_FALSE(fixture.prompts.empty());
  for (const LlamaCppPrompt& p : fixture.prompts) {
    auto run = RunGreedy(*(*m)->model, p.prompt_ids, kGenerated);
    ASSERT_TRUE(run.ok()) << run.status();
    EXPECT_EQ(run->ids, p.generated_ids) << DescribeDivergence(p, *run);
    float min_gap = 1e30f;
    for (float g : p.step_margins) min_gap = std::min(min_gap, g);
    std::printf("[ robust    ] %-13s %-18s llama.cpp min gap %.4f: %s\n", backend,
                p.name.c_str(), min_gap,
                run->ids == p.generated_ids ? "all 64 equal"
                                            : DescribeDivergence(p, *run).c_str());
    std::fflush(stdout);
  }
}

TEST_F(LlamaCppRobustGreedyTest, GreedyContinuationsEqualLlamaCppOnCpu) {
  ExpectGreedyEqualsLlamaCpp(fixture_, "cpu");
}

// The float path ("cpu-reference") is not run here: it is ~25x slower (~90 s for these
// 6 x 64 tokens) and its exact 64-token agreement with the float64 model is already asserted
// by TransformersGreedyTest. Checked once by hand with ExpectGreedyEqualsLlamaCpp(fixture_,
// "cpu-reference"): all 6 equal.

}  // namespace
}  // namespace tessera::testing
