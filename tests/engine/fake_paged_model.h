// Test double for the model: a paged "KV cache" whose values chain over positions (each a
// hash of the previous position's value and its token) read and written through the plan's
// block tables, and a next token computed from the last value. Outputs match the unbatched
// reference only if block tables, copies, prefix hits and positions in the StepPlan are
// right.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/step_plan.h"
#include "gtest/gtest.h"

namespace tessera::testing {

inline constexpr int32_t kFakeVocab = 1000;
inline constexpr uint64_t kFakeRootState = 1469598103934665603ULL;

// The fake "KV" of a position: a rolling hash of every token up to it, so that a block
// holds the right values only if everything before it was right (as real KV does).
inline uint64_t FakeKv(uint64_t previous, int32_t token) {
  uint64_t h = (previous ^ static_cast<uint32_t>(token)) * 1099511628211ULL;
  return h ^ (h >> 29);
}

// The fake model's next token from the last position's KV, offset by the sample index.
inline int32_t FakeTokenFromKv(uint64_t kv, int sample) {
  return static_cast<int32_t>((kv + static_cast<uint64_t>(sample) * 7919) % kFakeVocab);
}

inline int32_t FakeNextToken(std::span<const int32_t> history, int sample = 0) {
  uint64_t kv = kFakeRootState;
  for (int32_t t : history) kv = FakeKv(kv, t);
  return FakeTokenFromKv(kv, sample);
}

// Greedy generation of `max_new` tokens from `prompt`, stopping after a token in `stops`.
inline std::vector<int32_t> ReferenceGenerate(std::vector<int32_t> history, int max_new,
                                              int first_sample = 0,
                                              const std::vector<int32_t>& stops = {}) {
  std::vector<int32_t> out;
  for (int i = 0; i < max_new; ++i) {
    const int32_t t = FakeNextToken(history, i == 0 ? first_sample : 0);
    history.push_back(t);
    out.push_back(t);
    if (std::find(stops.begin(), stops.end(), t) != stops.end()) break;
  }
  return out;
}

// Slots hold FakeKv values; writing position p reads position p - 1 through the block
// table (the dependency attention creates), and logits come from the last position.
class FakePagedModel {
 public:
  FakePagedModel(int num_blocks, int block_size)
      : block_size_(block_size), slots_(static_cast<size_t>(num_blocks) * block_size, 0),
        valid_(slots_.size(), 0) {}

  // Runs one plan: copies, KV writes, then a token per sample for sequences needing logits.
  StepResult Run(const StepPlan& plan) {
    EXPECT_EQ(plan.block_size, block_size_);
    for (const BlockCopy& c : plan.block_copies) {
      std::copy_n(slots_.begin() + c.src * block_size_, block_size_,
                  slots_.begin() + c.dst * block_size_);
      std::copy_n(valid_.begin() + c.src * block_size_, block_size_,
                  valid_.begin() + c.dst * block_size_);
    }
    std::vector<char> written(slots_.size(), 0);
    StepResult result;
    result.step_index = plan.step_index;
    for (const ScheduledSequence& s : plan.sequences) {
      uint64_t kv = kFakeRootState;
      if (s.start_position > 0) {
        const size_t prev = Slot(s, s.start_position - 1);
        EXPECT_TRUE(valid_[prev]) << "seq " << s.seq_id << " reads an unwritten position";
        EXPECT_FALSE(written[prev]) << "seq " << s.seq_id << " reads a slot written this step";
        kv = slots_[prev];
      }
      for (size_t k = 0; k < s.token_ids.size(); ++k) {
        const size_t slot = Slot(s, s.start_position + static_cast<int>(k));
        EXPECT_FALSE(written[slot]) << "two sequences write KV slot " << slot;
        written[slot] = 1;
        kv = FakeKv(kv, s.token_ids[k]);
        slots_[slot] = kv;
        valid_[slot] = 1;
      }
      if (!s.needs_logits) continue;
      SequenceOutput out;
      out.seq_id = s.seq_id;
      for (int k = 0; k < s.num_samples; ++k) out.tokens.push_back(FakeTokenFromKv(kv, k));
      result.outputs.push_back(out);
    }
    return result;
  }

 private:
  size_t Slot(const ScheduledSequence& s, int position) const {
    const size_t index = position / block_size_;
    EXPECT_LT(index, s.block_table.size()) << "position " << position << " outside the table";
    if (index >= s.block_table.size()) return 0;
    return static_cast<size_t>(s.block_table[index]) * block_size_ + position % block_size_;
  }

  int block_size_;
  std::vector<uint64_t> slots_;
  std::vector<char> valid_;
};

}  // namespace tessera::testing
