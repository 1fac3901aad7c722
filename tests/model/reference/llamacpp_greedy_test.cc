// SmolLM2-135M-Instruct (the default Q4_1 model) against llama.cpp (evidence (b)), fed
// llama.cpp's own prompt ids (tests/fixtures/model/llamacpp_greedy.json) so the tokenizer is
// not involved; TokenizerGivesLlamaCppPromptIds checks the tokenizer separately.
//
// Why not "all 64 tokens equal" for every prompt: both llama.cpp's CPU backend and Tessera's
// "cpu" backend quantize activations to 8-bit blocks before each matmul, and on this model
// that makes the logits move by up to ~1.4 from the float values and swing by a similar
// amount under tiny perturbations: llama.cpp's own last-position logits change by 0.36-0.98
// when only its KV cache goes from F32 to F16, and its 64-token continuation then changes
// for 5 of the 6 prompts. Natural continuations pass steps whose best-vs-second gap is a few
// hundredths (llama.cpp's gap at each step is in the fixture), so two correct
// implementations part at the first such near-tie. Observed with two revisions of the "cpu"
// kernels: 2 of 6, then 0 of 6 continuations equal in all 64 tokens; every first divergence
// at a llama.cpp gap <= 0.22 and a Tessera gap <= 0.18, with Tessera agreeing with the float
// reference at the divergence in the case checked (non_ascii, step 0).
// What is asserted instead:
//  - free-running greedy on "cpu": equal to llama.cpp's tokens up to llama.cpp's first step
//    whose gap is below kNearTie (the printed lines say how far they agree in fact);
//  - teacher-forced on "cpu" (llama.cpp's tokens fed back, so one tie cannot derail the
//    rest): at each of the 64 steps Tessera's top-1 is llama.cpp's choice, or llama.cpp's
//    gap there is below kNearTie and Tessera's own gap to llama.cpp's choice is at most
//    kTeacherTieTol;
//  - last-position logits within loose bounds of llama.cpp's (two 8-bit-activation runs; the
//    accuracy bounds are against the float reference in transformers_logits_test.cc).
// Exact 64-token equality with an independent implementation is asserted on the float path:
// "cpu-reference" against transformers (transformers_logits_test.cc), all 6 prompts.
#include <algorithm>
#include <cmath>
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

// A llama.cpp step whose best-vs-second logit gap is below this is a near-tie at the
// precision two 8-bit-activation implementations agree to (see the file comment). Observed
// flips at llama.cpp gaps up to 0.27 with the GGUF-layout kernels, and one at 0.62 ('code',
// step 49, Tessera's gap 0.155) with the packed GEMM, whose only difference is the order of
// its float sums: both kernels stay ~0.8 from the float model's top-10 logits
// (transformers_logits_test.cc), and llama.cpp's own logits move by up to 0.98 when only its
// KV cache precision changes.
constexpr float kNearTie = 0.75f;
// Teacher-forced: where top-1 differs, Tessera's own gap to llama.cpp's choice is at most this
// (observed <= 0.17).
constexpr double kTeacherTieTol = 0.5;
// |Tessera "cpu" - llama.cpp| over the whole vocabulary at the last prompt position (observed
// max 0.51-1.65, rms 0.15-1.00; llama.cpp alone is up to 1.36 / 0.83 from the float model).
constexpr double kLastLogitsMaxTol = 3.0;
constexpr double kLastLogitsRmsTol = 1.5;

class LlamaCppReferenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto f = LoadLlamaCppFixture();
    ASSERT_TRUE(f.ok()) << f.status();
    fixture_ = std::move(*f);
    ASSERT_GE(fixture_.prompts.size(), 5u);
  }
  LlamaCppFixture fixture_;
};

// Describes the first step where `got` departs from `want`, with both runs' logit margins.
std::string DescribeDivergence(const LlamaCppPrompt& p, const GreedyRun& run) {
  for (size_t i = 0; i < p.generated_ids.size() && i < run.ids.size(); ++i) {
    if (p.generated_ids[i] == run.ids[i]) continue;
    const std::vector<float>& l = run.step_logits[i];
    return absl::StrFormat(
        "prompt '%s' first differs at step %d: llama.cpp chose %d (its margin over the runner-up "
        "%.5f), Tessera chose %d; Tessera's logits there: [%d]=%.5f [%d]=%.5f (gap %.5f)",
        p.name, i, p.generated_ids[i], p.step_margins[i], run.ids[i], p.generated_ids[i],
        l[p.generated_ids[i]], run.ids[i], l[run.ids[i]], l[run.ids[i]] - l[p.generated_ids[i]]);
  }
  return "no divergence";
}

TEST_F(LlamaCppReferenceTest, GreedyContinuationsEqualLlamaCppUpToItsFirstNearTie) {
  auto m = SharedDefaultModel("cpu");
  ASSERT_TRUE(m.ok()) << m.status();
  int fully_equal = 0;
  for (const LlamaCppPrompt& p : fixture_.prompts) {
    ASSERT_EQ(p.generated_ids.size(), static_cast<size_t>(kGenerated)) << p.name;
    auto run = RunGreedy(*(*m)->model, p.prompt_ids, kGenerated);
    ASSERT_TRUE(run.ok()) << run.status();
    size_t first_tie = 0;
    while (first_tie < p.step_margins.size() && p.step_margins[first_tie] >= kNearTie) {
      ++first_tie;
    }
    const std::vector<int32_t> want(p.generated_ids.begin(), p.generated_ids.begin() + first_tie);
    const std::vector<int32_t> got(run->ids.begin(), run->ids.begin() + first_tie);
    EXPECT_EQ(got, want) << DescribeDivergence(p, *run);
    size_t agree = 0;
    while (agree < run->ids.size() && run->ids[agree] == p.generated_ids[agree]) ++agree;
    fully_equal += agree == run->ids.size();
    std::printf("[ llama.cpp ] %-13s %2zu of 64 equal (asserted: first %zu); %s\n",
                p.name.c_str(), agree, first_tie,
                agree == run->ids.size() ? "all equal" : DescribeDivergence(p, *run).c_str());
  }
  std::printf("[ llama.cpp ] %d of %zu continuations equal in all 64 tokens\n", fully_equal,
              fixture_.prompts.size());
}

TEST_F(LlamaCppReferenceTest, TeacherForcedStepsAgreeWithLlamaCpp) {
  // Feeds llama.cpp's own continuation, so one near-tie cannot derail the rest: at each of
  // the 64 steps llama.cpp's choice must be Tessera's top-1, or within kTeacherTieTol of it
  // when llama.cpp's own margin there is below kNearTie.
  auto m = SharedDefaultModel("cpu");
  ASSERT_TRUE(m.ok()) << m.status();
  for (const LlamaCppPrompt& p : fixture_.prompts) {
    std::vector<int32_t> ids = p.prompt_ids;
    ids.insert(ids.end(), p.generated_ids.begin(), p.generated_ids.end() - 1);
    auto cache = (*m)->model->NewKvCache(ids.size());
    ASSERT_TRUE(cache.ok()) << cache.status();
    std::vector<float> logits;
    ASSERT_TRUE((*m)->model->Forward(ids, 0, *cache, /*all_logits=*/true, &logits).ok());
    ASSERT_EQ(logits.size(), ids.size() * kSmolLmVocab);
    int differ = 0;
    double worst = 0;
    for (int step = 0; step < kGenerated; ++step) {
      const size_t pos = p.prompt_ids.size() - 1 + step;
      const std::vector<float> row(logits.begin() + pos * kSmolLmVocab,
                                   logits.begin() + (pos + 1) * kSmolLmVocab);
      const int32_t want = p.generated_ids[step];
      const int32_t got = Argmax(row);
      if (got == want) continue;
      ++differ;
      const double gap = row[got] - row[want];
      worst = std::max(worst, gap);
      EXPECT_LT(p.step_margins[step], kNearTie) << p.name << " step " << step;
      EXPECT_LE(gap, kTeacherTieTol) << p.name << " step " << step;
    }
    std::printf("[ llama.cpp ] %-13s teacher-forced: top-1 differs at %d of 64 steps "
                "(largest Tessera gap there %.4f)\n", p.name.c_str(), differ, worst);
  }
}

TEST_F(LlamaCppReferenceTest, LastLogitsMatchLlamaCpp) {
  auto m = SharedDefaultModel("cpu");
  ASSERT_TRUE(m.ok()) << m.status();
  for (size_t i = 0; i < fixture_.prompts.size(); ++i) {
    const LlamaCppPrompt& p = fixture_.prompts[i];
    auto cache = (*m)->model->NewKvCache(p.prompt_ids.size());
    ASSERT_TRUE(cache.ok()) << cache.status();
    std::vector<float> logits;
    ASSERT_TRUE((*m)->model->Forward(p.prompt_ids, 0, *cache, false, &logits).ok());
    ASSERT_EQ(logits.size(), static_cast<size_t>(kSmolLmVocab));
    const float* want = fixture_.last_logits.data() + i * kSmolLmVocab;
    const LogitDiff diff = CompareLogits(logits.data(), want);
    const double max_diff = diff.max_abs, rms = diff.rms;
    std::printf("[ llama.cpp ] %-13s last position: max |dlogit| %.5f, rms %.5f\n",
                p.name.c_str(), max_diff, rms);
    EXPECT_LE(max_diff, kLastLogitsMaxTol) << p.name;
    EXPECT_LE(rms, kLastLogitsRmsTol) << p.name;
    if (p.step_margins[0] >= kNearTie) {
      EXPECT_EQ(Argmax(logits), p.generated_ids[0]) << p.name;
    }
  }
}

TEST_F(LlamaCppReferenceTest, TokenizerGivesLlamaCppPromptIds) {
  ExpectTokenizerGivesPromptIds(fixture_.prompts);
}

}  // namespace
}  // namespace tessera::testing
