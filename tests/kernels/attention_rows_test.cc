// kernels/cuda/attention_rows.h: how the CUDA backend turns PagedAttention / Attention into
// attention entries and tiles, how it cuts long windows (split-K), and WriteKv's duplicate
// slots (runs on any machine).
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
  EXPECT_EQ(rows.rows, (std::vector<int32_t>{0, 1, 2, 4}));  // row 3 is left out
  EXPECT_EQ(rows.tiles, (std::vector<int32_t>{0, 3, 3, 1}));  // a tile per sequence
  EXPECT_TRUE(rows.multi_row_tiles);
  EXPECT_EQ(rows.longest_context, 20);
}

TEST(AttentionRowsTest, DecodeRowsAreTilesOfOneAndEmptySequencesAddNothing) {
  const std::vector<int32_t> t0 = {0}, t1 = {1}, t2 = {2};
  const std::vector<PagedSequence> sequences = {
      {.query_start = 0, .num_queries = 1, .context_len = 3, .block_table = t0},
      {.query_start = 1, .num_queries = 0, .context_len = 2, .block_table = t1},
      {.query_start = 1, .num_queries = 1, .context_len = 2, .block_table = t2}};
  const std::vector<int32_t> positions = {2, 1};
  const AttentionRows rows = PagedAttentionRows(positions, sequences, /*block_size=*/4);
  EXPECT_EQ(rows.rows, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(rows.context_lens, (std::vector<int32_t>{3, 2}));
  EXPECT_EQ(rows.tables, (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(rows.tiles, (std::vector<int32_t>{0, 1, 1, 1}));
  EXPECT_FALSE(rows.multi_row_tiles);
}

// A recorded step's tables keep one width from step to step: each entry's blocks first,
// block 0 after them, nothing else changed.
TEST(AttentionRowsTest, WideningKeepsEachEntrysBlocksAndPadsWithBlockZero) {
  const std::vector<int32_t> t0 = {7, 2}, t1 = {5};
  const std::vector<PagedSequence> sequences = {
      {.query_start = 0, .num_queries = 1, .context_len = 20, .block_table = t0},
      {.query_start = 1, .num_queries = 1, .context_len = 5, .block_table = t1}};
  const std::vector<int32_t> positions = {19, 4};
  AttentionRows rows = PagedAttentionRows(positions, sequences, /*block_size=*/16);
  const AttentionRows before = rows;
  WidenAttentionTables(4, &rows);
  EXPECT_EQ(rows.max_blocks, 4);
  EXPECT_EQ(rows.tables, (std::vector<int32_t>{7, 2, 0, 0, 5, 0, 0, 0}));
  EXPECT_EQ(rows.rows, before.rows);
  EXPECT_EQ(rows.context_lens, before.context_lens);
  EXPECT_EQ(rows.tiles, before.tiles);
  WidenAttentionTables(3, &rows);  // narrower: unchanged
  EXPECT_EQ(rows.max_blocks, 4);
  EXPECT_EQ(rows.tables.size(), 8u);
}

TEST(AttentionRowsTest, LongPrefillChunksAreCutIntoTilesOfSixteen) {
  const std::vector<int32_t> table = {3, 1, 4};
  const std::vector<PagedSequence> sequences = {
      {.query_start = 0, .num_queries = 40, .context_len = 40, .block_table = table}};
  std::vector<int32_t> positions(40);
  for (int32_t i = 0; i < 40; ++i) positions[i] = i;
  const AttentionRows rows = PagedAttentionRows(positions, sequences, /*block_size=*/16);
  EXPECT_EQ(rows.tiles, (std::vector<int32_t>{0, 16, 16, 16, 32, 8}));
  EXPECT_EQ(rows.num_tiles(), 3);
  EXPECT_EQ(rows.entries(), 40);
  EXPECT_EQ(rows.context_lens.front(), 1);
  EXPECT_EQ(rows.context_lens.back(), 40);
}

TEST(AttentionRowsTest, ContiguousCacheIsOneBlock) {
  const std::vector<int32_t> positions = {3, 4, 9};
  const AttentionRows rows = ContiguousAttentionRows(positions);
  EXPECT_EQ(rows.max_blocks, 1);
  EXPECT_EQ(rows.tables, (std::vector<int32_t>{0, 0, 0}));
  EXPECT_EQ(rows.context_lens, (std::vector<int32_t>{4, 5, 10}));
  EXPECT_EQ(rows.rows, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(rows.tiles, (std::vector<int32_t>{0, 3}));
  EXPECT_EQ(rows.longest_context, 10);
  EXPECT_EQ(ContiguousAttentionRows({}).entries(), 0);
  EXPECT_EQ(ContiguousAttentionRows({}).num_tiles(), 0);
}

TEST(AttentionSplitsTest, OnePieceWhenTheRowsFillTheGpuOrTheWindowIsShort) {
  EXPECT_EQ(PlanAttentionSplits(64, 32, 8192, 528).num_splits, 1);  // 2048 blocks
  EXPECT_EQ(PlanAttentionSplits(1, 32, 511, 528).num_splits, 1);    // under two pieces
  EXPECT_EQ(PlanAttentionSplits(0, 32, 4096, 528).num_splits, 1);
}

TEST(AttentionSplitsTest, FewRowsOverLongWindowsAreCutToFillTheGpu) {
  // One sequence, 32 heads, 8192 positions, 528 blocks wanted: 17 pieces asked for.
  AttentionSplits s = PlanAttentionSplits(1, 32, 8192, 528);
  EXPECT_EQ(s.split_len % 128, 0);
  EXPECT_GE(s.split_len, kMinAttentionSplit);
  EXPECT_EQ(s.num_splits, (8192 + s.split_len - 1) / s.split_len);
  EXPECT_GE(s.num_splits, 16);
  EXPECT_LE(s.num_splits, 17);
  // Bounded by the window: 1000 positions give at most 3 pieces of >= 256.
  s = PlanAttentionSplits(1, 8, 1000, 528);
  EXPECT_EQ(s.num_splits, 3);
  EXPECT_EQ(s.split_len, 384);
  // And by kMaxAttentionSplits.
  s = PlanAttentionSplits(1, 1, 1 << 20, 10000);
  EXPECT_LE(s.num_splits, kMaxAttentionSplits);
  EXPECT_GE(s.num_splits * s.split_len, 1 << 20);
  // Every piece but the last is whole, and none is empty.
  for (int64_t window : {512, 513, 777, 4096, 100000}) {
    s = PlanAttentionSplits(2, 4, window, 400);
    if (s.num_splits == 1) continue;
    EXPECT_LT((s.num_splits - 1) * s.split_len, window) << window;
    EXPECT_GE(s.num_splits * s.split_len, window) << window;
  }
  EXPECT_EQ(AttentionSplitWorkspaceFloats(3, 4, 64, {.num_splits = 5, .split_len = 256}),
            3 * 4 * 5 * 66);
  EXPECT_EQ(AttentionSplitWorkspaceFloats(3, 4, 64, {}), 0);
}

TEST(AttentionRowsTest, OnlyTheLastWriterOfASlotKeepsIt) {
  const std::vector<int32_t> slots = {5, kPaddingSlot, 7, 5, 7, 9};
  EXPECT_EQ(LastWriterSlots(slots),
            (std::vector<int32_t>{kPaddingSlot, kPaddingSlot, kPaddingSlot, 5, 7, 9}));
  EXPECT_TRUE(LastWriterSlots({}).empty());
}

}  // namespace
}  // namespace tessera
