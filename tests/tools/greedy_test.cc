// GreedyGenerate (the loop behind `tessera generate`) on a tiny random model: its tokens
// equal greedy decoding over the independent float64 forward of tests/model, and it stops
// at stop ids, --max-tokens and the context length.
#include "tools/greedy.h"

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
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

TEST(ArgMaxTest, PicksLargestAndLowestIndexOnTies) {
  const std::vector<float> a = {0.5f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(ArgMax(a), 1);
  const std::vector<float> b = {-3.0f, -2.0f, -5.0f};
  EXPECT_EQ(ArgMax(b), 1);
  const std::vector<float> c = {7.0f};
  EXPECT_EQ(ArgMax(c), 0);
}

class GreedyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_.context = 12;
    spec_.seed = 7;
    path_ = testing::TempGgufPath("greedy");
    auto w = testing::WriteTinyModel(spec_, path_);
    ASSERT_TRUE(w.ok()) << w.status();
    weights_ = std::move(*w);
    auto store = OpenWeightStore(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto backend = CreateBackend("cpu-reference");
    ASSERT_TRUE(backend.ok());
    backend_ = std::move(*backend);
    auto model = LlamaModel::Load(*store_, backend_.get());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
  }
  void TearDown() override { std::remove(path_.c_str()); }

  // Greedy continuation computed with the float64 reference, re-running the whole sequence.
  std::vector<int32_t> ReferenceGreedy(std::vector<int32_t> tokens, int n) {
    std::vector<int32_t> out;
    const size_t vocab = static_cast<size_t>(spec_.vocab);
    for (int i = 0; i < n; ++i) {
      const std::vector<double> logits = testing::ReferenceForward(weights_, tokens);
      const double* last = logits.data() + (tokens.size() - 1) * vocab;
      int32_t best = 0;
      for (size_t v = 1; v < vocab; ++v) {
        if (last[v] > last[best]) best = static_cast<int32_t>(v);
      }
      out.push_back(best);
      tokens.push_back(best);
    }
    return out;
  }

  std::vector<int32_t> Generate(const std::vector<int32_t>& prompt, int64_t max_tokens,
                                const std::vector<int32_t>& stop_ids, GreedyStats* stats) {
    std::vector<int32_t> out;
    const absl::Status s = GreedyGenerate(
        *model_, prompt, max_tokens, stop_ids,
        [&](int32_t id) {
          out.push_back(id);
          return absl::OkStatus();
        },
        stats);
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  testing::TinySpec spec_;
  std::string path_;
  testing::TinyWeights weights_;
  std::unique_ptr<WeightStore> store_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaModel> model_;
};

TEST_F(GreedyTest, TokensEqualFloat64GreedyDecoding) {
  const std::vector<int32_t> prompt = {3, 14, 15, 9};
  GreedyStats stats;
  const std::vector<int32_t> got = Generate(prompt, 6, {}, &stats);
  EXPECT_EQ(got, ReferenceGreedy(prompt, 6));
  EXPECT_EQ(stats.prompt_tokens, 4);
  EXPECT_EQ(stats.generated_tokens, 6);
  EXPECT_EQ(stats.decode_steps, 5);  // the first token comes from the prefill
  EXPECT_FALSE(stats.stopped);
}

TEST_F(GreedyTest, StopsAtStopIdWithoutEmittingIt) {
  const std::vector<int32_t> prompt = {3, 14, 15, 9};
  const std::vector<int32_t> want = ReferenceGreedy(prompt, 3);
  GreedyStats stats;
  const std::vector<int32_t> got = Generate(prompt, 10, {want[2]}, &stats);
  // Tokens before the first occurrence of the stop id.
  std::vector<int32_t> expected;
  for (int32_t t : want) {
    if (t == want[2]) break;
    expected.push_back(t);
  }
  EXPECT_EQ(got, expected);
  EXPECT_TRUE(stats.stopped);
}

TEST_F(GreedyTest, StopsAtContextLength) {
  // Context 12, prompt 4: positions 4..11 take 8 decode steps, so 9 tokens come out.
  GreedyStats stats;
  const std::vector<int32_t> got = Generate({1, 2, 3, 4}, 100, {}, &stats);
  EXPECT_EQ(got.size(), 9u);
  EXPECT_EQ(stats.decode_steps, 8);
}

TEST_F(GreedyTest, ZeroMaxTokensRunsNothing) {
  GreedyStats stats;
  EXPECT_THAT(Generate({1, 2}, 0, {}, &stats), ElementsAre());
  EXPECT_EQ(stats.decode_steps, 0);
}

TEST_F(GreedyTest, CallbackErrorEndsGeneration) {
  int calls = 0;
  const absl::Status s = GreedyGenerate(
      *model_, std::vector<int32_t>{1, 2}, 5, {},
      [&](int32_t) {
        ++calls;
        return calls == 2 ? absl::CancelledError("client went away") : absl::OkStatus();
      },
      nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 2);
}

TEST_F(GreedyTest, TokenOutsideVocabularyIsInvalidArgument) {
  const absl::Status s = GreedyGenerate(
      *model_, std::vector<int32_t>{1, static_cast<int32_t>(spec_.vocab)}, 5, {},
      [](int32_t) { return absl::OkStatus(); }, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera
