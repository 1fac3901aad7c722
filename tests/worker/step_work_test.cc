// StepWork's byte encoding: a round trip keeps every field, and every truncation or
// corruption of the bytes is refused with INVALID_ARGUMENT (never a crash or a huge
// allocation), since followers decode what the leader broadcast.
#include "worker/step_work.h"

#include <cstddef>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "worker/stage_runner.h"

namespace tessera {
namespace {

StepWork Sample() {
  StepWork w;
  w.swap_out = {{1, 2}};
  w.swap_in = {{3, 4}, {5, 6}};
  w.copies = {{7, 8}};
  w.token_ids = {10, 11, 12};
  w.positions = {0, 1, 5};
  w.sequences = {{0, 2, 2, {9}}, {2, 1, 6, {4, 5}}};
  w.logits_rows = {1, 2};
  w.hidden_rows = {2};
  return w;
}

TEST(StepWorkTest, RoundTripKeepsEveryField) {
  const StepWork w = Sample();
  auto back = DecodeStepWork(EncodeStepWork(w));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->swap_in.size(), 2u);
  EXPECT_EQ(back->swap_in[1].src, 5);
  EXPECT_EQ(back->swap_out[0].dst, 2);
  EXPECT_EQ(back->copies[0].src, 7);
  EXPECT_EQ(back->token_ids, w.token_ids);
  EXPECT_EQ(back->positions, w.positions);
  ASSERT_EQ(back->sequences.size(), 2u);
  EXPECT_EQ(back->sequences[1].query_start, 2);
  EXPECT_EQ(back->sequences[1].context_len, 6);
  EXPECT_EQ(back->sequences[1].block_table, (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(back->logits_rows, w.logits_rows);
  EXPECT_EQ(back->hidden_rows, w.hidden_rows);
  auto empty = DecodeStepWork(EncodeStepWork(StepWork{}));
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->has_forward());
}

TEST(StepWorkTest, TruncatedOrCorruptBytesAreRefused) {
  const std::vector<std::byte> bytes = EncodeStepWork(Sample());
  for (size_t n = 0; n < bytes.size(); ++n) {
    const auto cut = DecodeStepWork(std::span(bytes.data(), n));
    EXPECT_EQ(cut.status().code(), absl::StatusCode::kInvalidArgument) << n;
  }
  std::vector<std::byte> longer = bytes;
  longer.push_back(std::byte{0});
  EXPECT_EQ(DecodeStepWork(longer).status().code(), absl::StatusCode::kInvalidArgument);
  // A count field set to a huge value must not be trusted.
  std::vector<std::byte> huge = bytes;
  for (size_t i = 0; i < 8; ++i) huge[i] = std::byte{0x7f};
  EXPECT_EQ(DecodeStepWork(huge).status().code(), absl::StatusCode::kInvalidArgument);
}

// Micro-batches are contiguous runs of whole sequences, as even in rows as they allow, and
// a slice renumbers its rows from 0.
TEST(StageRunnerTest, MicroBatchesSplitBySequenceAndRenumberRows) {
  StepWork w;
  const std::vector<int64_t> lengths = {5, 1, 1, 1, 4, 1};
  for (int64_t len : lengths) {
    const int64_t start = static_cast<int64_t>(w.token_ids.size());
    w.sequences.push_back({start, len, len, {0}});
    for (int64_t j = 0; j < len; ++j) {
      w.token_ids.push_back(static_cast<int32_t>(start + j));
      w.positions.push_back(static_cast<int32_t>(j));
    }
    w.logits_rows.push_back(start + len - 1);
  }
  w.hidden_rows = {9, 10};
  const auto parts = SplitMicroBatches(w, 3);
  ASSERT_EQ(parts.size(), 3u);
  size_t next = 0;
  for (const auto& [begin, end] : parts) {
    EXPECT_EQ(begin, next);
    EXPECT_LT(begin, end);
    next = end;
  }
  EXPECT_EQ(next, lengths.size());
  EXPECT_EQ(SplitMicroBatches(w, 10).size(), lengths.size()) << "at most one per sequence";
  EXPECT_EQ(SplitMicroBatches(w, 1).size(), 1u);

  const StepWork tail = SliceSequences(w, 4, 6);  // rows 8..12
  EXPECT_EQ(tail.token_ids, (std::vector<int32_t>{8, 9, 10, 11, 12}));
  ASSERT_EQ(tail.sequences.size(), 2u);
  EXPECT_EQ(tail.sequences[0].query_start, 0);
  EXPECT_EQ(tail.sequences[1].query_start, 4);
  EXPECT_EQ(tail.logits_rows, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(tail.hidden_rows, (std::vector<int64_t>{1, 2}));
}

}  // namespace
}  // namespace tessera
