// Diverse beam search's special ids, on hand-made logits: a hypothesis that hits any end id
// ends with eos_token_ids[0] (transformers' scorer appends that one), and a finished group
// feeds pad_token_id (default eos_token_ids[0]) to the later groups' diversity penalty.
#include <map>
#include <memory>
#include <vector>

#include "decoding/decoding_strategy.h"
#include "gtest/gtest.h"

namespace tessera {
namespace {

constexpr int32_t kVocab = 6;
constexpr int32_t kEos = 5;
constexpr int32_t kStop = 4;  // a further end id (stop_token_ids)

// Logits with the given (token, value) entries and 0 elsewhere.
std::vector<float> Logits(std::map<int32_t, float> entries) {
  std::vector<float> v(kVocab, 0.0f);
  for (const auto& [t, x] : entries) v[static_cast<size_t>(t)] = x;
  return v;
}

class GroupBeamSpecialIdsTest : public ::testing::Test {
 protected:
  // Two groups of one beam, early_stopping: group 0 ends at step 2 on the stop id; the
  // token group 1 picks at step 3 is returned.
  int32_t GroupOneTokenAtStepThree(std::optional<int32_t> pad, StrategyResult* ended) {
    GenerationConfig g;
    g.num_beams = 2;
    g.num_beam_groups = 2;
    g.diversity_penalty = 2.0;
    g.early_stopping = EarlyStopping::kTrue;
    g.eos_token_ids = {kEos};
    g.stop_token_ids = {kStop};
    g.pad_token_id = pad;
    StrategyOptions o{.vocab_size = kVocab,
                      .max_new_tokens = 6,
                      .end_token_ids = {kEos, kStop},
                      .pad_token_id = pad.value_or(kEos)};
    auto created = CreateDecodingStrategy(g, o, /*first=*/0);
    EXPECT_TRUE(created.ok()) << created.status();
    if (!created.ok()) return -1;
    DecodingStrategy& s = **created;
    std::map<SequenceId, std::vector<int32_t>> tokens = {{0, {9, 9}}};  // the prompt
    const auto step = [&](const std::map<SequenceId, std::vector<float>>& logits) {
      std::vector<StrategyRow> rows;
      for (SequenceId id : s.LiveSequences()) {
        rows.push_back(
            {.seq_id = id, .token_ids = tokens.at(id), .prompt_len = 2, .logits = logits.at(id)});
      }
      auto decision = s.Step(rows);
      EXPECT_TRUE(decision.ok()) << decision.status();
      StrategyDecision d = decision.ok() ? *decision : StrategyDecision{};
      std::vector<SequenceId> forks;
      SequenceId next_id = 100;
      for (const auto& c : d.continuations) {
        for (size_t k = 1; k < c.tokens.size(); ++k) {
          tokens[next_id] = tokens.at(c.parent);
          tokens[next_id].push_back(c.tokens[k]);
          forks.push_back(next_id++);
        }
        tokens.at(c.parent).push_back(c.tokens[0]);
      }
      EXPECT_TRUE(s.BindForks(forks).ok());
      return d;
    };
    // Step 1: group 0 takes 1; the penalty sends group 1 to 2 (a fork of the prompt).
    StrategyDecision d = step({{0, Logits({{1, 5.0f}, {2, 4.9f}})}});
    EXPECT_EQ(s.LiveSequences(), (std::vector<SequenceId>{0, 100}));
    // Step 2: group 0 (sequence 0) ends on the stop id and is done (early_stopping).
    d = step({{0, Logits({{kStop, 10.0f}})}, {100, Logits({{3, 1.0f}})}});
    // Step 3: group 1 prefers 3 over 1 by 0.5 nats; the penalty on the done group's
    // padding decides whether it keeps 3.
    const std::map<SequenceId, std::vector<float>> third = {{0, Logits({})},
                                                            {100, Logits({{3, 5.0f}, {1, 4.5f}})}};
    d = step(third);
    int32_t picked = -1;
    for (const auto& c : d.continuations) {
      if (c.parent == 100) picked = c.tokens[0];
    }
    for (const StrategyResult& r : s.PartialResults(FinishReason::kCancelled)) {
      if (r.finish_reason == FinishReason::kStop) *ended = r;
    }
    return picked;
  }
};

TEST_F(GroupBeamSpecialIdsTest, AnyEndIdEndsTheHypothesisWithTheFirstEos) {
  StrategyResult ended;
  GroupOneTokenAtStepThree(std::nullopt, &ended);
  EXPECT_EQ(ended.token_ids, (std::vector<int32_t>{1, kEos}));
  ASSERT_EQ(ended.token_logprobs.size(), 2u);
}

TEST_F(GroupBeamSpecialIdsTest, DoneGroupFeedsPadTokenToTheDiversityPenalty) {
  StrategyResult ended;
  // Default pad (eos[0]): nothing penalises 3.
  EXPECT_EQ(GroupOneTokenAtStepThree(std::nullopt, &ended), 3);
  // pad_token_id 3: the done group's padding costs 3 the penalty, and 1 wins.
  EXPECT_EQ(GroupOneTokenAtStepThree(3, &ended), 1);
}

}  // namespace
}  // namespace tessera
