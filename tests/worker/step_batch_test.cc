// BuildStepBatch / ToKvBlockCopies: a hand-made StepPlan flattened for ForwardPaged.
#include "worker/step_batch.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera {
namespace {

using ::testing::ElementsAre;

TEST(StepBatchTest, FlattensEntriesInPlanOrder) {
  StepPlan plan;
  plan.block_size = 4;
  ScheduledSequence a;  // prefill chunk, no logits
  a.seq_id = 7;
  a.token_ids = {10, 11, 12};
  a.start_position = 4;
  a.block_table = {3, 9, 1};
  ScheduledSequence b;  // decode
  b.seq_id = 2;
  b.token_ids = {20};
  b.start_position = 9;
  b.block_table = {5, 6, 8};
  b.needs_logits = true;
  ScheduledSequence c;  // last prefill chunk
  c.seq_id = 4;
  c.token_ids = {30, 31};
  c.start_position = 0;
  c.block_table = {0};
  c.needs_logits = true;
  plan.sequences = {a, b, c};
  plan.num_batched_tokens = 6;

  const StepBatch batch = BuildStepBatch(plan);
  EXPECT_THAT(batch.token_ids, ElementsAre(10, 11, 12, 20, 30, 31));
  EXPECT_THAT(batch.positions, ElementsAre(4, 5, 6, 9, 0, 1));
  ASSERT_EQ(batch.sequences.size(), 3u);
  EXPECT_EQ(batch.sequences[0].query_start, 0);
  EXPECT_EQ(batch.sequences[0].num_queries, 3);
  EXPECT_EQ(batch.sequences[0].context_len, 7);
  EXPECT_EQ(batch.sequences[1].query_start, 3);
  EXPECT_EQ(batch.sequences[1].context_len, 10);
  EXPECT_EQ(batch.sequences[2].query_start, 4);
  EXPECT_EQ(batch.sequences[2].context_len, 2);
  // Tables are views of the plan's.
  EXPECT_EQ(batch.sequences[1].block_table.data(), plan.sequences[1].block_table.data());
  EXPECT_THAT(batch.logits_rows, ElementsAre(3, 5));
  EXPECT_THAT(batch.logits_entries, ElementsAre(1u, 2u));

  const PagedBatch view = batch.view();
  EXPECT_EQ(view.token_ids.size(), 6u);
  EXPECT_EQ(view.logits_rows.size(), 2u);
}

TEST(StepBatchTest, BlockCopiesKeepOrder) {
  const std::vector<KvBlockCopy> copies = ToKvBlockCopies({{4, 7}, {2, 3}});
  ASSERT_EQ(copies.size(), 2u);
  EXPECT_EQ(copies[0].src, 4);
  EXPECT_EQ(copies[0].dst, 7);
  EXPECT_EQ(copies[1].src, 2);
  EXPECT_EQ(copies[1].dst, 3);
}

}  // namespace
}  // namespace tessera
