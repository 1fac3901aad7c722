#include "engine/kv_capacity.h"

#include "gtest/gtest.h"

namespace tessera {
namespace {

// SmolLM2-135M: 30 layers, 3 KV heads, head_dim 64 (576 / 9), f16 cache.
constexpr KvCacheShape kSmolLm{.n_layers = 30, .n_kv_heads = 3, .head_dim = 64,
                               .block_size = 16, .bytes_per_elem = 2};

TEST(KvCapacityTest, FollowsTheDesignFormula) {
  // 2 * 30 * 3 * 64 * 2 = 23040 bytes per token, 368640 per block.
  auto c = ComputeKvCapacity(kSmolLm, 100 * 368640 + 5);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->bytes_per_token, 23040);
  EXPECT_EQ(c->bytes_per_block, 368640);
  EXPECT_EQ(c->num_blocks, 100);
  EXPECT_EQ(c->tokens_that_fit, 1600);
  EXPECT_EQ(c->bytes_used, 100 * 368640);
  EXPECT_EQ(c->ToString(),
            "KV cache: 100 blocks x 16 tokens = 1600 tokens, 368640 bytes per block (23040 "
            "per token), 35.2 MiB");
}

TEST(KvCapacityTest, SplitsLayersAndKvHeadsRoundingUp) {
  KvCacheShape s = kSmolLm;
  s.tp = 2;  // 3 KV heads over 2 ranks: the larger slice holds 2
  s.pp = 4;  // 30 layers over 4 stages: the largest holds 8
  auto bytes = KvBytesPerToken(s);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, 2 * 8 * 2 * 64 * 2);
  s.tp = 8;  // fewer KV heads than ranks: each rank holds one (replicated)
  s.pp = 1;
  EXPECT_EQ(*KvBytesPerToken(s), 2 * 30 * 1 * 64 * 2);
}

TEST(KvCapacityTest, BadShapeNamesTheField) {
  KvCacheShape s = kSmolLm;
  s.head_dim = 0;
  auto c = ComputeKvCapacity(s, 1 << 20);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("head_dim"), absl::string_view::npos);
  auto neg = ComputeKvCapacity(kSmolLm, -1);
  EXPECT_EQ(neg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(neg.status().message().find("budget_bytes"), absl::string_view::npos);
}

TEST(KvCapacityTest, BudgetBelowOneBlockHoldsNothing) {
  auto c = ComputeKvCapacity(kSmolLm, 368639);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->num_blocks, 0);
  EXPECT_EQ(c->tokens_that_fit, 0);
}

TEST(KvBudgetFromDeviceMemoryTest, TakesWhatIsLeftOfTheUtilizedPart) {
  // 80 GiB device, 60 GiB free after the weights: at 0.9, 8 GiB are kept back.
  constexpr int64_t kGiB = int64_t{1} << 30;
  auto budget = KvBudgetFromDeviceMemory(60 * kGiB, 80 * kGiB, 0.9);
  ASSERT_TRUE(budget.ok()) << budget.status();
  EXPECT_NEAR(static_cast<double>(*budget), 52.0 * kGiB, 1.0);
  budget = KvBudgetFromDeviceMemory(60 * kGiB, 80 * kGiB, 1.0);
  ASSERT_TRUE(budget.ok());
  EXPECT_EQ(*budget, 60 * kGiB);
}

TEST(KvBudgetFromDeviceMemoryTest, RefusesBadInputAndAFullDeviceWithTheNumbers) {
  auto st = KvBudgetFromDeviceMemory(10, 100, 0.0).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("utilization"), std::string::npos) << st;
  EXPECT_EQ(KvBudgetFromDeviceMemory(10, 100, 1.01).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvBudgetFromDeviceMemory(200, 100, 0.9).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvBudgetFromDeviceMemory(-1, 100, 0.9).status().code(),
            absl::StatusCode::kInvalidArgument);
  // 5% free, 10% kept back: nothing for the cache.
  constexpr int64_t kMiB = int64_t{1} << 20;
  st = KvBudgetFromDeviceMemory(50 * kMiB, 1000 * kMiB, 0.9).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("50.0 MiB free of 1000.0 MiB"), std::string::npos) << st;
  EXPECT_NE(st.message().find("--gpu-memory-utilization"), std::string::npos) << st;
}

}  // namespace
}  // namespace tessera
