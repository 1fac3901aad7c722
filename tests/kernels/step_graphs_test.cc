// The CUDA backend's recorded-step bookkeeping (kernels/cuda/step_graphs.h), on the host:
// bucket sizes, signatures, and the warm-up / record / replay / fall-back policy of the
// recordings cache, with integers standing in for graph handles.
#include "kernels/cuda/step_graphs.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace tessera {
namespace {

TEST(StepGraphsTest, RowsPadToSmallBucketsThenMultiplesOfEight) {
  const std::vector<std::pair<int64_t, int64_t>> cases = {
      {1, 1}, {2, 2}, {3, 4}, {4, 4}, {5, 8}, {8, 8}, {9, 16}, {63, 64}, {256, 256}};
  for (const auto& [rows, bucket] : cases) EXPECT_EQ(GraphRowsFor(rows, 1024), bucket) << rows;
  EXPECT_EQ(GraphRowsFor(0, 64), 0);
  EXPECT_EQ(GraphRowsFor(257, 1024), 0) << "past kMaxGraphRows";
  EXPECT_EQ(GraphRowsFor(9, 12), 0) << "the bucket (16) is past max_rows";
  EXPECT_EQ(GraphRowsFor(9, 16), 16);
}

TEST(StepGraphsTest, ContextsRoundUpToPowersOfTwoFromTheMinimum) {
  EXPECT_EQ(GraphContextFor(0), kMinGraphContext);
  EXPECT_EQ(GraphContextFor(1), kMinGraphContext);
  EXPECT_EQ(GraphContextFor(kMinGraphContext), kMinGraphContext);
  EXPECT_EQ(GraphContextFor(kMinGraphContext + 1), 2 * kMinGraphContext);
  EXPECT_EQ(GraphContextFor(5000), 8192);
}

TEST(StepGraphsTest, SignaturesTellOpsPointersAndOrderApart) {
  int buffers[2] = {};
  const auto sign = [](auto... values) {
    StepSignature s;
    s.Add(values...);
    return s.value();
  };
  EXPECT_EQ(sign(1, &buffers[0], int64_t{64}, 0.5f), sign(1, &buffers[0], int64_t{64}, 0.5f));
  EXPECT_NE(sign(1, &buffers[0], int64_t{64}), sign(1, &buffers[1], int64_t{64}));
  EXPECT_NE(sign(1, int64_t{64}), sign(int64_t{64}, 1));
  EXPECT_NE(sign(0.5f), sign(0.25f));
  StepSignature reset;
  reset.Add(7);
  reset.Reset();
  EXPECT_EQ(reset.value(), StepSignature().value());
}

class StepGraphCacheTest : public ::testing::Test {
 protected:
  // Graph handles are the integers 1, 2, ... cast to pointers.
  static void* Handle(uintptr_t i) { return reinterpret_cast<void*>(i); }
  std::vector<uintptr_t> destroyed_;
  StepGraphCache cache_{2, [this](void* g) {
                          destroyed_.push_back(reinterpret_cast<uintptr_t>(g));
                        }};
  const StepGraphKey a_{.rows = 4, .context = 256}, b_{.rows = 8, .context = 256},
      c_{.rows = 4, .context = 512};
};

TEST_F(StepGraphCacheTest, WarmsUpThenRecordsThenReplays) {
  EXPECT_EQ(cache_.Next(a_), StepGraphAction::kWarmup);
  EXPECT_EQ(cache_.Next(a_), StepGraphAction::kCapture);
  cache_.Store(a_, Handle(1), 99);
  EXPECT_EQ(cache_.Next(a_), StepGraphAction::kReplay);
  EXPECT_EQ(cache_.graph(a_), Handle(1));
  EXPECT_EQ(cache_.signature(a_), 99u);
  EXPECT_EQ(cache_.Next(b_), StepGraphAction::kWarmup) << "keys are separate";
  EXPECT_EQ(cache_.graphs(), 1u);
}

TEST_F(StepGraphCacheTest, FailuresFallBackAndEndInEagerSteps) {
  for (int i = 0; i < kMaxGraphFailures; ++i) {
    EXPECT_EQ(cache_.Next(a_), StepGraphAction::kWarmup) << i;
    EXPECT_EQ(cache_.Next(a_), StepGraphAction::kCapture) << i;
    cache_.Store(a_, Handle(10 + i), 1);
    EXPECT_EQ(cache_.Next(a_), StepGraphAction::kReplay) << i;
    cache_.Fail(a_);
    EXPECT_EQ(destroyed_.back(), 10u + i) << "a failed recording is freed";
  }
  EXPECT_EQ(cache_.Next(a_), StepGraphAction::kEager);
  EXPECT_EQ(cache_.Next(a_), StepGraphAction::kEager);
  EXPECT_EQ(cache_.graphs(), 0u);
}

// A stale recording (a buffer it reads was reallocated) is not a failure: the key is recorded
// again, kMaxStaleRecordings times, after which its steps run eagerly.
TEST_F(StepGraphCacheTest, StaleRecordingsAreRecordedAgainUpToALimit) {
  static_assert(kMaxStaleRecordings > kMaxGraphFailures);
  for (int i = 0; i < kMaxStaleRecordings - 1; ++i) {
    EXPECT_EQ(cache_.Next(a_), StepGraphAction::kWarmup) << i;
    EXPECT_EQ(cache_.Next(a_), StepGraphAction::kCapture) << i;
    cache_.Store(a_, Handle(20 + i), 1);
    cache_.Stale(a_);
  }
  EXPECT_EQ(destroyed_.size(), static_cast<size_t>(kMaxStaleRecordings - 1));
  EXPECT_EQ(cache_.Next(a_), StepGraphAction::kWarmup);
  EXPECT_EQ(cache_.Next(a_), StepGraphAction::kCapture);
  cache_.Store(a_, Handle(99), 1);
  cache_.Stale(a_);
  EXPECT_EQ(cache_.Next(a_), StepGraphAction::kEager);
  EXPECT_EQ(cache_.Next(b_), StepGraphAction::kWarmup) << "other keys are not affected";
}

// Only stale recordings in a row count: a replay in between starts the count again.
TEST_F(StepGraphCacheTest, AReplayForgivesEarlierStaleRecordings) {
  for (int round = 0; round < 3; ++round) {
    // With the stale recording after the last round's replay: kMaxStaleRecordings - 1.
    for (int i = 0; i < kMaxStaleRecordings - 2; ++i) {
      ASSERT_EQ(cache_.Next(a_), StepGraphAction::kWarmup) << round << " " << i;
      ASSERT_EQ(cache_.Next(a_), StepGraphAction::kCapture);
      cache_.Store(a_, Handle(100 + i), 1);
      cache_.Stale(a_);
    }
    cache_.Next(a_);
    cache_.Next(a_);
    cache_.Store(a_, Handle(200), 1);
    ASSERT_EQ(cache_.Next(a_), StepGraphAction::kReplay);
    cache_.Replayed(a_);
    cache_.Stale(a_);  // once, after the replay: the count starts at 1 again
  }
  EXPECT_EQ(cache_.Next(a_), StepGraphAction::kWarmup);
}

TEST_F(StepGraphCacheTest, TheLeastRecentlyUsedRecordingMakesRoom) {
  for (const StepGraphKey& k : {a_, b_}) {
    cache_.Next(k);
    cache_.Next(k);
  }
  cache_.Store(a_, Handle(1), 1);
  cache_.Store(b_, Handle(2), 2);
  EXPECT_EQ(cache_.Next(a_), StepGraphAction::kReplay);  // b is now the older one
  cache_.Next(c_);
  cache_.Next(c_);
  cache_.Store(c_, Handle(3), 3);
  EXPECT_EQ(destroyed_, std::vector<uintptr_t>{2});
  EXPECT_EQ(cache_.graphs(), 2u);
  EXPECT_EQ(cache_.Next(b_), StepGraphAction::kWarmup) << "an evicted key warms up again";
  EXPECT_EQ(cache_.Next(a_), StepGraphAction::kReplay);
  EXPECT_EQ(cache_.Next(c_), StepGraphAction::kReplay);
}

TEST_F(StepGraphCacheTest, ClearAndDestructionFreeEveryRecording) {
  cache_.Next(a_);
  cache_.Next(a_);
  cache_.Store(a_, Handle(1), 1);
  cache_.Clear();
  EXPECT_EQ(destroyed_, std::vector<uintptr_t>{1});
  EXPECT_EQ(cache_.graphs(), 0u);
  EXPECT_EQ(cache_.Next(a_), StepGraphAction::kWarmup);
  std::vector<uintptr_t> freed;
  {
    StepGraphCache scoped(4, [&](void* g) { freed.push_back(reinterpret_cast<uintptr_t>(g)); });
    scoped.Next(b_);
    scoped.Next(b_);
    scoped.Store(b_, Handle(5), 1);
  }
  EXPECT_EQ(freed, std::vector<uintptr_t>{5});
}

}  // namespace
}  // namespace tessera
