// ShardPlan: how one model is cut across a tp x pp layout (DESIGN.md §3-§4), and the
// planner that computes it. The planner is a pure function of the model's shapes, the
// layout and each rank's free memory; the coordinator (or the leader, alone) runs it and
// every rank loads only its own slices.
//
//  - Pipeline stages hold contiguous layer ranges, balanced by compute (each layer's
//    weight elements; the LM head counts on the last stage); the embedding is on the first
//    stage and the LM head on the last.
//  - Tensor ranks split query heads, KV heads, FFN features and the vocabulary. With at
//    least as many KV heads as tp ranks, KV heads are split (unevenly when needed) and each
//    rank takes the query heads of its KV heads, so GQA groups never straddle ranks. With
//    fewer, tp must be a multiple of them: each rank holds one KV head (replicated over
//    tp / num_kv_heads ranks) and a share of that head's query heads. Either way a rank's
//    query head i reads its local KV head i / (local q heads / local KV heads).
//  - FFN splits fall on `ffn_alignment` boundaries (the down projection is split along its
//    input, which quantized formats store in blocks).
//  - Memory per rank: its weight bytes, the reserve, and KV blocks from what is left, with
//    DESIGN.md §4's KV formula over the layers and KV heads the rank holds. Every rank uses
//    the same block ids, so the plan's block count is the smallest rank's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "formats/model_config.h"
#include "formats/weight_store.h"

namespace tessera {

struct ShardRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
  bool operator==(const ShardRange&) const = default;
};

struct StageShard {
  ShardRange layers;
  bool has_embedding = false;
  bool has_lm_head = false;
};

struct TensorShard {
  ShardRange q_heads;
  ShardRange kv_heads;  // held by this rank (replicated across ranks when tp > num_kv_heads)
  ShardRange ffn;       // intermediate features
  ShardRange vocab;     // rows of the embedding and LM head
};

struct RankFootprint {
  int rank = 0;
  int64_t memory_bytes = 0;
  int64_t weight_bytes = 0;
  int64_t kv_bytes_per_token = 0;
  int64_t kv_blocks = 0;  // what this rank's memory alone would hold
};

struct ShardPlan {
  int tp = 1;
  int pp = 1;
  bool sequence_parallel = false;
  int block_size = 16;
  std::vector<StageShard> stages;    // pp entries
  std::vector<TensorShard> tensor;   // tp entries, the same in every stage
  std::vector<RankFootprint> ranks;  // tp * pp entries, by rank (stage-major)
  int64_t num_kv_blocks = 0;         // min over ranks

  std::string ToString() const;
};

struct PlannerInput {
  ModelConfig model;
  int tp = 1;
  int pp = 1;
  bool sequence_parallel = false;
  double bytes_per_weight = 4.0;  // average bytes per matrix element (Q4_1: 0.625, F16: 2)
  int64_t ffn_alignment = 32;     // the weights' quantization block (256 for K-quants)
  int64_t kv_bytes_per_elem = 4;
  int block_size = 16;
  std::vector<int64_t> rank_memory_bytes;  // free memory of each rank, tp * pp entries
  int64_t activation_reserve_bytes = 0;    // kept free on every rank
};

// INVALID_ARGUMENT naming the field for a layout the model cannot take (tp above the query
// heads, or above the KV heads and not a multiple of them, pp above the layers, an FFN size that
// does not split on ffn_alignment, sequence parallelism without tp, a memory list of the wrong
// length); RESOURCE_EXHAUSTED with the numbers when a rank's weights and reserve do not fit or no
// KV block is left.
[[nodiscard]] absl::StatusOr<ShardPlan> PlanShards(const PlannerInput& input);

// PlannerInput::ffn_alignment for a model's weights: the quantization block of its down
// projection (1 for plain floats). NOT_FOUND when the store has no blk.0.ffn_down.weight.
[[nodiscard]] absl::StatusOr<int64_t> FfnAlignmentOf(const WeightStore& store);

// `n` items in `parts` contiguous ranges whose sizes differ by at most one (the larger
// ones first).
std::vector<ShardRange> SplitEvenly(int64_t n, int64_t parts);

}  // namespace tessera
