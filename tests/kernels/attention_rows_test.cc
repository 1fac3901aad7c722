// kernels/cuda/attention_rows.h: how the CUDA backend turns PagedAttention / Attention into
// one-query-row attention calls, and WriteKv's duplicate slots (runs on any machine).
#include "kernels/cuda/attention_rows.h"

#include <vector>

#include "gtest/gtest.h"

namespace tessera {
namespace {

TEST(AttentionRowsTest, PagedRowsSeeTheirCausalPrefixThroughTheirSequencesTable) {
  // Sequence 0: a prefill chunk of 3 rows at positions 17..19 (2 blocks of 16); row 3
  // belongs to no sequence; sequence 1: one decode row at position 4 (1 block).
  const std::vector<int32_t> table0 = {7, 2}, table1 = {5};
  const std::vector<PagedSequence> sequences = {
      {.query_start = 0, .num_queries = 3, .context_len = 20, .block_table = table0},
      {.query_start = 4, .num_queries = 1, .context_len = 5, .block_table = table1}};
  const std::vector<int32_t> positions = {17, 18, 19, 0, 4};
  const AttentionRows rows = PagedAttentionRows(positions, sequences, /*block_size=*/16);
  EXPECT_EQ(rows.max_blocks, 2);
  EXPECT_EQ(rows.context_lens, (std::vector<int32_t>{18, 19, 20, 5}));
  EXPECT_EQ(rows.tables, (std::vector<int32_t>{7, 2, 7, 2, 7, 2, 5, 0}));
  ASSERT_EQ(rows.runs.size(), 2u);  // row 3 is left out
  EXPECT_EQ(rows.runs[0].first_row, 0);
  EXPECT_EQ(rows.runs[0].count, 3);
  EXPECT_EQ(rows.runs[0].first_entry, 0);
  EXPECT_EQ(rows.runs[1].first_row, 4);
  EXPECT_EQ(rows.runs[1].count, 1);
  EXPECT_EQ(rows.runs[1].first_entry, 3);
}

TEST(AttentionRowsTest, AdjacentSequencesShareOneRunAndEmptyOnesAddNone) {
  const std::vector<int32_t> t0 = {0}, t1 = {1}, t2 = {2};
  const std::vector<PagedSequence> sequences = {
      {.query_start = 0, .num_queries = 1, .context_len = 3, .block_table = t0},
      {.query_start = 1, .num_queries = 0, .context_len = 2, .block_table = t1},
      {.query_start = 1, .num_queries = 2, .context_len = 2, .block_table = t2}};
  const std::vector<int32_t> positions = {2, 0, 1};
  const AttentionRows rows = PagedAttentionRows(positions, sequences, /*block_size=*/4);
  ASSERT_EQ(rows.runs.size(), 1u);
  EXPECT_EQ(rows.runs[0].count, 3);
  EXPECT_EQ(rows.context_lens, (std::vector<int32_t>{3, 1, 2}));
  EXPECT_EQ(rows.tables, (std::vector<int32_t>{0, 2, 2}));
}

TEST(AttentionRowsTest, ContiguousCacheIsOneBlock) {
  const std::vector<int32_t> positions = {3, 4, 9};
  const AttentionRows rows = ContiguousAttentionRows(positions);
  EXPECT_EQ(rows.max_blocks, 1);
  EXPECT_EQ(rows.tables, (std::vector<int32_t>{0, 0, 0}));
  EXPECT_EQ(rows.context_lens, (std::vector<int32_t>{4, 5, 10}));
  ASSERT_EQ(rows.runs.size(), 1u);
  EXPECT_EQ(rows.runs[0].count, 3);
  EXPECT_TRUE(ContiguousAttentionRows({}).runs.empty());
}

TEST(AttentionRowsTest, OnlyTheLastWriterOfASlotKeepsIt) {
  const std::vector<int32_t> slots = {5, kPaddingSlot, 7, 5, 7, 9};
  EXPECT_EQ(LastWriterSlots(slots),
            (std::vector<int32_t>{kPaddingSlot, kPaddingSlot, kPaddingSlot, 5, 7, 9}));
  EXPECT_TRUE(LastWriterSlots({}).empty());
}

}  // namespace
}  // namespace tessera
