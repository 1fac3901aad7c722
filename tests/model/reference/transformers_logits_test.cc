// SmolLM2-135M-Instruct (the default Q4_1 model) against an independent float implementation
// (evidence (a)): Hugging Face transformers' LlamaForCausalLM loaded from the same GGUF,
// dequantized exactly and run in float64 (tests/fixtures/model/transformers_logits.json and
// transformers_last_logits.f32, made by make_transformers_fixtures.py). Fed the same prompt
// ids, Tessera's logits must match at every position of every prompt: the logits of the
// reference's top 10 and the top-1 id; for three prompts the whole vocabulary at the last
// position; and on "cpu-reference" the reference's greedy 64-token continuations exactly.
//
// Tolerances (absolute, in logits; this model's logits span about 35-45 per position):
//  - "cpu-reference" (float32 activations, double accumulation): kTolReference = 2e-4, i.e.
//    5e-6 of the logit range. Observed max 2e-5 over all 314 positions, which is the
//    fixture's own rounding (1e-5) plus float32 rounding through 30 layers (transformers'
//    float32 run is 1e-4 from its float64 run). Top-1 must be equal at every position
//    (any other pick would have to be within 2 * kTolReference of the best), and the
//    greedy 64-token continuations must be equal to the reference's for every prompt.
//  - "cpu": its integer dot products quantize each activation row to 8-bit blocks before
//    every matmul, as llama.cpp's CPU backend does. On this model that moves logits a lot,
//    and chaotically: observed up to 1.43 over the top 10 and a last-position rms of 0.17 to
//    0.36 (two kernel revisions), while llama.cpp itself is 0.59 / 0.74 / 1.36 (max) and
//    0.14 / 0.20 / 0.83 (rms) from the float reference on the three full-vocabulary prompts,
//    and moves by up to 0.98 when only its KV cache type changes (tests/fixtures/model/
//    README.md). So the per-prompt bounds are loose, to catch real bugs (a wrong layout or
//    RoPE moves logits by 5-20): kTolCpu = 2.0 (5% of the range) on every compared logit,
//    rms <= kRmsTolCpu = 1.0 at the last position; and the sharper, aggregate check is that
//    over the three prompts together "cpu" is no further from the float model than
//    llama.cpp is (rms, within 25%). Top-1 must equal the reference's, or be one the
//    reference scores within kTop1GapCpu = 1.0 of its best.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/model/reference/reference_fixtures.h"

namespace tessera::testing {
namespace {

constexpr double kTolReference = 2e-4;
constexpr double kTolCpu = 2.0;
constexpr double kTop1GapCpu = 1.0;
constexpr double kRmsTolCpu = 1.0;
// "cpu" may be at most this much further from the float reference than llama.cpp is.
constexpr double kCpuVsLlamaCppSlack = 1.25;
constexpr int kGenerated = 64;

struct BackendCase {
  const char* backend;
  double tol;       // max |Tessera - reference| over each position's reference top 10
  double top1_gap;  // top-1 must be equal where the reference's gap exceeds this
};

// Names the case in ctest and gtest output.
void PrintTo(const BackendCase& c, std::ostream* os) { *os << c.backend; }

class TransformersReferenceTest : public ::testing::TestWithParam<BackendCase> {
 protected:
  void SetUp() override {
    auto f = LoadTransformersFixture();
    ASSERT_TRUE(f.ok()) << f.status();
    fixture_ = std::move(*f);
    ASSERT_GE(fixture_.prompts.size(), 3u);
    auto ll = LoadLlamaCppFixture();
    ASSERT_TRUE(ll.ok()) << ll.status();
    llamacpp_ = std::move(*ll);
    auto m = SharedDefaultModel(GetParam().backend);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = (*m)->model.get();
  }

  // Logits [n, vocab] for every position of `ids`.
  std::vector<float> AllLogits(const std::vector<int32_t>& ids) {
    auto cache = model_->NewKvCache(ids.size());
    EXPECT_TRUE(cache.ok()) << cache.status();
    std::vector<float> logits;
    absl::Status s = model_->Forward(ids, 0, *cache, /*all_logits=*/true, &logits);
    EXPECT_TRUE(s.ok()) << s;
    EXPECT_EQ(logits.size(), ids.size() * kSmolLmVocab);
    return logits;
  }

  TransformersFixture fixture_;
  LlamaCppFixture llamacpp_;
  LlamaModel* model_ = nullptr;
};

TEST_P(TransformersReferenceTest, TopLogitsAndTop1MatchAtEveryPosition) {
  const double tol = GetParam().tol;
  for (const TransformersPrompt& p : fixture_.prompts) {
    const std::vector<float> logits = AllLogits(p.prompt_ids);
    if (logits.size() != p.prompt_ids.size() * kSmolLmVocab) return;
    double max_diff = 0;
    int near_ties = 0;
    for (size_t pos = 0; pos < p.prompt_ids.size(); ++pos) {
      const float* row = logits.data() + pos * kSmolLmVocab;
      for (size_t k = 0; k < p.top10_ids[pos].size(); ++k) {
        const double d = std::fabs(row[p.top10_ids[pos][k]] - p.top10_logits[pos][k]);
        max_diff = std::max(max_diff, d);
        EXPECT_LE(d, tol) << p.name << " position " << pos << " id " << p.top10_ids[pos][k];
      }
      // Tessera's top-1 must be the reference's, or one the reference scores within
      // top1_gap of its best (a tie at this backend's precision).
      const int32_t top1 = static_cast<int32_t>(
          std::max_element(row, row + kSmolLmVocab) - row);
      if (top1 != p.top1[pos]) {
        ++near_ties;
        const auto& ids = p.top10_ids[pos];
        const auto k = std::find(ids.begin(), ids.end(), top1) - ids.begin();
        ASSERT_LT(k, 10) << p.name << " position " << pos << ": Tessera's top-1 " << top1
                         << " is not in the reference's top 10";
        EXPECT_LE(p.top10_logits[pos][0] - p.top10_logits[pos][k], GetParam().top1_gap)
            << p.name << " position " << pos << ": Tessera's top-1 " << top1
            << " is the reference's #" << k + 1;
      }
    }
    std::printf("[ %-13s ] %-13s %3zu positions, max |dlogit| over top-10 %.5f, top-1 differs at %d (ties)\n",
                GetParam().backend, p.name.c_str(), p.prompt_ids.size(), max_diff, near_ties);
  }
}

TEST_P(TransformersReferenceTest, FullLastPositionLogitsMatch) {
  const double tol = GetParam().tol;
  ASSERT_GE(fixture_.last_logits_prompts.size(), 3u);
  double ours_sq = 0, llamacpp_sq = 0;
  for (size_t i = 0; i < fixture_.last_logits_prompts.size(); ++i) {
    const std::string& name = fixture_.last_logits_prompts[i];
    auto it = std::find_if(fixture_.prompts.begin(), fixture_.prompts.end(),
                           [&](const TransformersPrompt& p) { return p.name == name; });
    ASSERT_NE(it, fixture_.prompts.end()) << name;
    auto cache = model_->NewKvCache(it->prompt_ids.size());
    ASSERT_TRUE(cache.ok()) << cache.status();
    std::vector<float> logits;
    ASSERT_TRUE(model_->Forward(it->prompt_ids, 0, *cache, false, &logits).ok());
    ASSERT_EQ(logits.size(), static_cast<size_t>(kSmolLmVocab));
    const float* want = fixture_.last_logits.data() + i * kSmolLmVocab;
    const LogitDiff diff = CompareLogits(logits.data(), want);
    const double max_diff = diff.max_abs, sum_sq = diff.sum_sq, rms = diff.rms;
    std::printf("[ %-13s ] %-13s last position: max |dlogit| %.5f, rms %.5f\n",
                GetParam().backend, name.c_str(), max_diff, rms);
    EXPECT_LE(max_diff, tol) << name;
    if (std::string(GetParam().backend) != "cpu") continue;
    EXPECT_LE(rms, kRmsTolCpu) << name;
    // llama.cpp's distance from the same float reference, on the same prompt ids.
    auto it_ll = std::find_if(llamacpp_.prompts.begin(), llamacpp_.prompts.end(),
                              [&](const LlamaCppPrompt& p) { return p.name == name; });
    ASSERT_NE(it_ll, llamacpp_.prompts.end()) << name;
    ASSERT_EQ(it_ll->prompt_ids, it->prompt_ids) << name;
    const float* ll = llamacpp_.last_logits.data() +
                      (it_ll - llamacpp_.prompts.begin()) * kSmolLmVocab;
    const double ll_prompt_sq = CompareLogits(ll, want).sum_sq;
    std::printf("[ %-13s ] %-13s llama.cpp vs the same reference: rms %.5f\n", "llama.cpp",
                name.c_str(), std::sqrt(ll_prompt_sq / kSmolLmVocab));
    ours_sq += sum_sq;
    llamacpp_sq += ll_prompt_sq;
  }
  if (llamacpp_sq > 0) {
    // Over the three prompts together: no further from the float model than llama.cpp.
    EXPECT_LE(std::sqrt(ours_sq), kCpuVsLlamaCppSlack * std::sqrt(llamacpp_sq));
    std::printf("[ %-13s ] rms over the three prompts: Tessera %.5f, llama.cpp %.5f\n",
                GetParam().backend, std::sqrt(ours_sq / (3 * kSmolLmVocab)),
                std::sqrt(llamacpp_sq / (3 * kSmolLmVocab)));
  }
}

// Exact 64-token equality is a property of float backends only: a float implementation must
// pick the same tokens as the float64 reference unless some step's gap is below 2 * tolerance,
// which the fixture shows is not the case (its smallest gap is printed). The 8-bit "cpu" path
// is held to llama.cpp's continuations instead (llamacpp_*_test.cc).
class TransformersGreedyTest : public TransformersReferenceTest {};

TEST_P(TransformersGreedyTest, GreedyContinuationsEqualReference) {
  for (const TransformersPrompt& p : fixture_.prompts) {
    auto run = RunGreedy(*model_, p.prompt_ids, kGenerated);
    ASSERT_TRUE(run.ok()) << run.status();
    ASSERT_EQ(p.greedy_ids.size(), static_cast<size_t>(kGenerated));
    size_t agree = 0;
    while (agree < run->ids.size() && run->ids[agree] == p.greedy_ids[agree]) ++agree;
    float min_gap = 1e30f;
    for (const std::vector<float>& l : run->step_logits) {
      std::vector<float> top(l);
      std::partial_sort(top.begin(), top.begin() + 2, top.end(), std::greater<float>());
      min_gap = std::min(min_gap, top[0] - top[1]);
    }
    std::printf("[ %-13s ] %-13s greedy: %zu of 64 equal, smallest gap on the way %.5f\n",
                GetParam().backend, p.name.c_str(), agree, min_gap);
    EXPECT_EQ(run->ids, p.greedy_ids) << p.name << " first differs at step " << agree;
  }
}

std::string BackendCaseName(const ::testing::TestParamInfo<BackendCase>& info) {
  std::string n = info.param.backend;
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

INSTANTIATE_TEST_SUITE_P(Backends, TransformersReferenceTest,
                         ::testing::Values(
                             BackendCase{"cpu-reference", kTolReference, 2 * kTolReference},
                             BackendCase{"cpu", kTolCpu, kTop1GapCpu}),
                         BackendCaseName);
INSTANTIATE_TEST_SUITE_P(FloatBackends, TransformersGreedyTest,
                         ::testing::Values(
                             BackendCase{"cpu-reference", kTolReference, 2 * kTolReference}),
                         BackendCaseName);

}  // namespace
}  // namespace tessera::testing
