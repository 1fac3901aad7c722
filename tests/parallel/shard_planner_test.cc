// The shard planner on SmolLM2-135M's shapes (9 query heads, 3 KV heads, 30 layers) and on
// edge layouts, checked against the properties a plan must have and brute force.
#include <algorithm>
#include <limits>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallel/shard_plan.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

ModelConfig SmolLm2() {
  ModelConfig m;
  m.name = "SmolLM2-135M";
  m.vocab_size = 49152;
  m.hidden_size = 576;
  m.intermediate_size = 1536;
  m.num_layers = 30;
  m.num_heads = 9;
  m.num_kv_heads = 3;
  m.head_dim = 64;
  m.rope_dim = 64;
  m.max_position_embeddings = 8192;
  m.tie_word_embeddings = true;
  return m;
}

PlannerInput Input(int tp, int pp, int64_t memory = int64_t{1} << 30) {
  PlannerInput in;
  in.model = SmolLm2();
  in.tp = tp;
  in.pp = pp;
  in.bytes_per_weight = 0.625;  // Q4_1
  in.rank_memory_bytes.assign(static_cast<size_t>(tp * pp), memory);
  return in;
}

// Every query head on exactly one rank, each rank holding the KV heads its query heads read.
void ExpectHeadsCovered(const ShardPlan& plan, const ModelConfig& m) {
  const int64_t group = m.num_heads / m.num_kv_heads;
  int64_t next = 0;
  for (const TensorShard& t : plan.tensor) {
    EXPECT_EQ(t.q_heads.begin, next);
    EXPECT_GT(t.q_heads.size(), 0);
    next = t.q_heads.end;
    for (int64_t h = t.q_heads.begin; h < t.q_heads.end; ++h) {
      EXPECT_GE(h / group, t.kv_heads.begin);
      EXPECT_LT(h / group, t.kv_heads.end);
    }
  }
  EXPECT_EQ(next, m.num_heads);
}

// A rank's query head i must read local KV head i / (local q / local kv): the plain GQA
// mapping its attention kernel uses.
void ExpectPlainGqaMapping(const ShardPlan& plan, const ModelConfig& m) {
  const int64_t group = m.num_heads / m.num_kv_heads;
  for (const TensorShard& t : plan.tensor) {
    ASSERT_EQ(t.q_heads.size() % t.kv_heads.size(), 0);
    const int64_t local_group = t.q_heads.size() / t.kv_heads.size();
    for (int64_t i = 0; i < t.q_heads.size(); ++i) {
      EXPECT_EQ((t.q_heads.begin + i) / group, t.kv_heads.begin + i / local_group);
    }
  }
}

TEST(ShardPlannerTest, SmolLm2TensorParallelTwoSplitsKvHeadsUnevenly) {
  auto plan = PlanShards(Input(2, 1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->tensor.size(), 2u);
  ExpectPlainGqaMapping(*plan, SmolLm2());
  EXPECT_EQ(plan->tensor[0].kv_heads, (ShardRange{0, 2}));
  EXPECT_EQ(plan->tensor[0].q_heads, (ShardRange{0, 6}));
  EXPECT_EQ(plan->tensor[1].kv_heads, (ShardRange{2, 3}));
  EXPECT_EQ(plan->tensor[1].q_heads, (ShardRange{6, 9}));
  EXPECT_EQ(plan->tensor[0].ffn, (ShardRange{0, 768}));
  EXPECT_EQ(plan->tensor[1].vocab, (ShardRange{24576, 49152}));
  ExpectHeadsCovered(*plan, SmolLm2());
  // DESIGN.md §4: KV per token = 2 * layers * kv heads * head_dim * bytes.
  EXPECT_EQ(plan->ranks[0].kv_bytes_per_token, 2 * 30 * 2 * 64 * 4);
  EXPECT_EQ(plan->ranks[1].kv_bytes_per_token, 2 * 30 * 1 * 64 * 4);
  EXPECT_THAT(plan->ToString(), HasSubstr("tp 1: q heads [6, 9)"));
}

TEST(ShardPlannerTest, MoreRanksThanKvHeadsReplicatesThem) {
  auto plan = PlanShards(Input(6, 1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectHeadsCovered(*plan, SmolLm2());
  ExpectPlainGqaMapping(*plan, SmolLm2());
  // 3 KV heads over 6 ranks: two ranks per KV head, its 3 query heads split 2 + 1.
  EXPECT_EQ(plan->tensor[0].q_heads, (ShardRange{0, 2}));
  EXPECT_EQ(plan->tensor[1].q_heads, (ShardRange{2, 3}));
  EXPECT_EQ(plan->tensor[0].kv_heads, (ShardRange{0, 1}));
  EXPECT_EQ(plan->tensor[1].kv_heads, (ShardRange{0, 1})) << "replicated";
  EXPECT_EQ(plan->tensor[5].kv_heads, (ShardRange{2, 3}));
  for (int tp : {1, 2, 3, 6, 9}) {
    auto p = PlanShards(Input(tp, 1));
    ASSERT_TRUE(p.ok()) << tp << ": " << p.status();
    ExpectHeadsCovered(*p, SmolLm2());
    ExpectPlainGqaMapping(*p, SmolLm2());
  }
  for (int tp : {4, 5, 7, 8}) {
    const absl::Status s = PlanShards(Input(tp, 1)).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << tp;
    EXPECT_THAT(std::string(s.message()), HasSubstr("multiple")) << tp;
  }
}

TEST(ShardPlannerTest, StagesAreBalancedWithTheLmHeadOnTheLast) {
  for (int pp : {2, 3, 5}) {
    auto plan = PlanShards(Input(1, pp));
    ASSERT_TRUE(plan.ok()) << plan.status();
    ASSERT_EQ(plan->stages.size(), static_cast<size_t>(pp));
    EXPECT_TRUE(plan->stages.front().has_embedding);
    EXPECT_TRUE(plan->stages.back().has_lm_head);
    int64_t next = 0;
    for (const StageShard& s : plan->stages) {
      EXPECT_EQ(s.layers.begin, next);
      EXPECT_GT(s.layers.size(), 0);
      next = s.layers.end;
    }
    EXPECT_EQ(next, 30);
    // The LM head (49152 x 576 ~ 8 layers' weights) makes the last stage the shortest.
    EXPECT_LT(plan->stages.back().layers.size(), plan->stages.front().layers.size());
  }
  // Brute force for pp = 2: no cut has a smaller largest stage.
  const ModelConfig m = SmolLm2();
  const double layer = static_cast<double>(m.hidden_size * (2 * 9 * 64 + 2 * 3 * 64) +
                                           3 * m.hidden_size * m.intermediate_size);
  const double head = static_cast<double>(m.vocab_size * m.hidden_size);
  double best = std::numeric_limits<double>::infinity();
  for (int cut = 1; cut < 30; ++cut) best = std::min(best, std::max(cut * layer, (30 - cut) * layer + head));
  auto plan = PlanShards(Input(1, 2));
  ASSERT_TRUE(plan.ok());
  const int64_t first = plan->stages[0].layers.size();
  EXPECT_DOUBLE_EQ(std::max(first * layer, (30 - first) * layer + head), best);
}

TEST(ShardPlannerTest, MemoryDecidesTheBlocksAndRefusesWhatCannotFit) {
  PlannerInput in = Input(2, 2, int64_t{64} << 20);
  in.activation_reserve_bytes = int64_t{8} << 20;
  auto plan = PlanShards(in);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->ranks.size(), 4u);
  int64_t fewest = std::numeric_limits<int64_t>::max();
  for (const RankFootprint& r : plan->ranks) {
    EXPECT_EQ(r.kv_blocks, (r.memory_bytes - r.weight_bytes - in.activation_reserve_bytes) /
                               (r.kv_bytes_per_token * in.block_size));
    fewest = std::min(fewest, r.kv_blocks);
  }
  EXPECT_EQ(plan->num_kv_blocks, fewest);

  in.rank_memory_bytes[3] = int64_t{4} << 20;  // weights alone need more
  const absl::Status s = PlanShards(in).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("rank 3 (stage 1, tp rank 1)"));
}

TEST(ShardPlannerTest, RefusesLayoutsTheModelCannotTake) {
  struct Case {
    PlannerInput in;
    const char* field;
  };
  PlannerInput too_wide = Input(10, 1);
  PlannerInput too_deep = Input(1, 31);
  PlannerInput sp_alone = Input(1, 1);
  sp_alone.sequence_parallel = true;
  PlannerInput misaligned = Input(2, 1);
  misaligned.ffn_alignment = 1000;
  PlannerInput short_list = Input(2, 2);
  short_list.rank_memory_bytes.pop_back();
  for (const Case& c : {Case{too_wide, "tp"}, Case{too_deep, "pp"},
                        Case{sp_alone, "sequence_parallel"}, Case{misaligned, "ffn_alignment"},
                        Case{short_list, "rank_memory_bytes"}}) {
    const absl::Status s = PlanShards(c.in).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.field));
  }
}

TEST(ShardPlannerTest, SplitEvenly) {
  const std::vector<ShardRange> r = SplitEvenly(10, 4);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0], (ShardRange{0, 3}));
  EXPECT_EQ(r[1], (ShardRange{3, 6}));
  EXPECT_EQ(r[2], (ShardRange{6, 8}));
  EXPECT_EQ(r[3], (ShardRange{8, 10}));
}

}  // namespace
}  // namespace tessera
