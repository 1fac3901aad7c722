// StepWork's byte encoding: a round trip keeps every field, and every truncation or
// corruption of the bytes is refused with INVALID_ARGUMENT (never a crash or a huge
// allocation), since followers decode what the leader broadcast.
#include "worker/step_work.h"

#include <cstddef>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

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

}  // namespace
}  // namespace tessera
