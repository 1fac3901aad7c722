#include "engine/sequence.h"

#include "gtest/gtest.h"

namespace tessera {
namespace {

TEST(SequenceTest, TracksPromptGeneratedAndComputedTokens) {
  Sequence seq(7, {1, 2, 3});
  EXPECT_EQ(seq.id(), 7);
  EXPECT_EQ(seq.prompt_len(), 3);
  EXPECT_EQ(seq.num_uncomputed_tokens(), 3);
  EXPECT_TRUE(seq.in_prefill());
  seq.set_num_computed_tokens(3);
  seq.AppendToken(9);
  EXPECT_EQ(seq.num_tokens(), 4);
  EXPECT_EQ(seq.num_generated(), 1);
  EXPECT_EQ(seq.last_token(), 9);
  EXPECT_FALSE(seq.in_prefill());
  EXPECT_EQ(std::vector<int32_t>(seq.generated_token_ids().begin(), seq.generated_token_ids().end()),
            std::vector<int32_t>{9});
  EXPECT_EQ(seq.NumLogicalBlocks(2), 2);
  EXPECT_EQ(seq.NumLogicalBlocks(4), 1);
}

TEST(SequenceTest, ForkCopiesStateUnderANewId) {
  Sequence seq(1, {5, 6});
  seq.set_status(SequenceStatus::kRunning);
  seq.set_num_computed_tokens(2);
  auto child = seq.Fork(2);
  EXPECT_EQ(child->id(), 2);
  EXPECT_EQ(child->num_computed_tokens(), 2);
  EXPECT_EQ(child->status(), SequenceStatus::kRunning);
  child->AppendToken(1);
  EXPECT_EQ(seq.num_tokens(), 2) << "the fork must not alias the parent's tokens";
}

TEST(SequenceTest, FinishRecordsReasonAndGroupsFinishWhenAllDo) {
  RequestSpec spec;
  spec.request_id = "r";
  spec.prompt_token_ids = {1};
  spec.n = 2;
  SequenceGroup group(spec, absl::UnixEpoch(), 0);
  EXPECT_FALSE(group.forked());
  Sequence* a = group.AddSequence(std::make_unique<Sequence>(0, std::vector<int32_t>{1}));
  Sequence* b = group.AddSequence(a->Fork(1));
  EXPECT_EQ(group.FindSequence(1), b);
  a->Finish(FinishReason::kStop);
  EXPECT_FALSE(group.IsFinished());
  b->Finish(FinishReason::kLength);
  EXPECT_TRUE(group.IsFinished());
  EXPECT_EQ(FinishReasonName(a->finish_reason()), "stop");
  EXPECT_EQ(SequenceStatusName(b->status()), "finished");
}

}  // namespace
}  // namespace tessera
