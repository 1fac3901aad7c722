// PlanShards (shard_plan.h): layer ranges balanced by compute, head / FFN / vocab slices,
// and per-rank memory.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "parallel/shard_plan.h"

namespace tessera {
namespace {

// Weight elements of one decoder layer (the compute per token, up to a factor of 2).
int64_t LayerElements(const ModelConfig& m) {
  const int64_t q_dim = m.num_heads * m.head_dim;
  const int64_t kv_dim = m.num_kv_heads * m.head_dim;
  return m.hidden_size * (2 * q_dim + 2 * kv_dim) + 3 * m.hidden_size * m.intermediate_size;
}

// Contiguous layer ranges for `stages` stages minimising the largest stage cost, where the
// last stage also pays `tail_cost` (the LM head). Every stage gets at least one layer.
std::vector<ShardRange> BalanceLayers(int64_t layers, int stages, double layer_cost,
                                      double tail_cost) {
  // best[s][i]: smallest possible max cost when the first s stages hold layers [0, i).
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(stages + 1, std::vector<double>(layers + 1, inf));
  std::vector<std::vector<int64_t>> cut(stages + 1, std::vector<int64_t>(layers + 1, 0));
  best[0][0] = 0.0;
  for (int s = 1; s <= stages; ++s) {
    for (int64_t i = s; i <= layers; ++i) {
      for (int64_t j = s - 1; j < i; ++j) {
        const double stage = (i - j) * layer_cost + (s == stages ? tail_cost : 0.0);
        const double worst = std::max(best[s - 1][j], stage);
        // Ties: the earlier cut, so that earlier stages take fewer layers.
        if (worst < best[s][i]) {
          best[s][i] = worst;
          cut[s][i] = j;
        }
      }
    }
  }
  std::vector<ShardRange> ranges(stages);
  int64_t end = layers;
  for (int s = stages; s >= 1; --s) {
    ranges[s - 1] = {cut[s][end], end};
    end = cut[s][end];
  }
  return ranges;
}

absl::Status Invalid(std::string_view field, std::string message) {
  return absl::InvalidArgumentError(absl::StrCat("shard plan: ", std::string(field), " ", message));
}

}  // namespace

std::vector<ShardRange> SplitEvenly(int64_t n, int64_t parts) {
  std::vector<ShardRange> out;
  int64_t begin = 0;
  for (int64_t p = 0; p < parts; ++p) {
    const int64_t size = n / parts + (p < n % parts ? 1 : 0);
    out.push_back({begin, begin + size});
    begin += size;
  }
  return out;
}

absl::StatusOr<ShardPlan> PlanShards(const PlannerInput& in) {
  const ModelConfig& m = in.model;
  RETURN_IF_ERROR(m.Validate());
  if (in.tp < 1) return Invalid("tp", absl::StrFormat("must be >= 1 (is %d)", in.tp));
  if (in.pp < 1) return Invalid("pp", absl::StrFormat("must be >= 1 (is %d)", in.pp));
  if (in.tp > m.num_heads) {
    return Invalid("tp",
                   absl::StrFormat("(%d) exceeds the model's %d query heads", in.tp, m.num_heads));
  }
  if (in.pp > m.num_layers) {
    return Invalid("pp",
                   absl::StrFormat("(%d) exceeds the model's %d layers", in.pp, m.num_layers));
  }
  if (in.sequence_parallel && in.tp < 2) {
    return Invalid("sequence_parallel", "needs tp > 1 (it splits tensor-parallel work)");
  }
  if (in.ffn_alignment < 1 || m.intermediate_size % in.ffn_alignment != 0 ||
      m.intermediate_size / in.ffn_alignment < in.tp) {
    return Invalid("ffn_alignment",
                   absl::StrFormat("%d: the FFN size %d must split into at least tp = %d "
                                   "whole blocks",
                                   in.ffn_alignment, m.intermediate_size, in.tp));
  }
  if (in.block_size < 1) {
    return Invalid("block_size", absl::StrFormat("must be >= 1 (is %d)", in.block_size));
  }
  if (in.kv_bytes_per_elem < 1) {
    return Invalid("kv_bytes_per_elem",
                   absl::StrFormat("must be >= 1 (is %d)", in.kv_bytes_per_elem));
  }
  if (!(in.bytes_per_weight > 0)) {
    return Invalid("bytes_per_weight", absl::StrFormat("must be > 0 (is %g)", in.bytes_per_weight));
  }
  const int world = in.tp * in.pp;
  if (static_cast<int>(in.rank_memory_bytes.size()) != world) {
    return Invalid("rank_memory_bytes", absl::StrFormat("has %d entries, the layout has %d ranks",
                                                        in.rank_memory_bytes.size(), world));
  }

  ShardPlan plan;
  plan.tp = in.tp;
  plan.pp = in.pp;
  plan.sequence_parallel = in.sequence_parallel;
  plan.block_size = in.block_size;

  // Stages.
  const double layer_cost = static_cast<double>(LayerElements(m));
  const double head_cost = static_cast<double>(m.vocab_size * m.hidden_size);
  for (const ShardRange& r : BalanceLayers(m.num_layers, in.pp, layer_cost, head_cost)) {
    plan.stages.push_back({r, false, false});
  }
  plan.stages.front().has_embedding = true;
  plan.stages.back().has_lm_head = true;

  // Tensor slices.
  const int64_t group = m.num_heads / m.num_kv_heads;  // query heads per KV head
  const std::vector<ShardRange> ffn = SplitEvenly(m.intermediate_size / in.ffn_alignment, in.tp);
  const std::vector<ShardRange> vocab = SplitEvenly(m.vocab_size, in.tp);
  if (in.tp <= m.num_kv_heads) {
    for (const ShardRange& kv : SplitEvenly(m.num_kv_heads, in.tp)) {
      plan.tensor.push_back({{kv.begin * group, kv.end * group}, kv, {}, {}});
    }
  } else {
    // Each rank holds one KV head (replicated over tp / num_kv_heads ranks) and a share of
    // its group's query heads, so every rank's heads keep the plain GQA mapping.
    if (in.tp % m.num_kv_heads != 0) {
      return Invalid("tp", absl::StrFormat("(%d) above the model's %d KV heads must be a "
                                           "multiple of them",
                                           in.tp, m.num_kv_heads));
    }
    const int64_t ranks_per_kv = in.tp / m.num_kv_heads;
    if (ranks_per_kv > group) {
      return Invalid("tp", absl::StrFormat("(%d) leaves a rank without query heads (%d per "
                                           "KV head, %d ranks per KV head)",
                                           in.tp, group, ranks_per_kv));
    }
    for (int64_t kv = 0; kv < m.num_kv_heads; ++kv) {
      for (const ShardRange& q : SplitEvenly(group, ranks_per_kv)) {
        plan.tensor.push_back({{kv * group + q.begin, kv * group + q.end}, {kv, kv + 1}, {}, {}});
      }
    }
  }
  for (int t = 0; t < in.tp; ++t) {
    plan.tensor[t].ffn = {ffn[t].begin * in.ffn_alignment, ffn[t].end * in.ffn_alignment};
    plan.tensor[t].vocab = vocab[t];
  }

  // Memory per rank.
  const int64_t kv_bytes_per_head_layer = 2 * m.head_dim * in.kv_bytes_per_elem;
  plan.num_kv_blocks = std::numeric_limits<int64_t>::max();
  for (int rank = 0; rank < world; ++rank) {
    const StageShard& stage = plan.stages[rank / in.tp];
    const TensorShard& shard = plan.tensor[rank % in.tp];
    const int64_t layers = stage.layers.size();
    const int64_t per_layer =
        m.hidden_size * m.head_dim * (2 * shard.q_heads.size() + 2 * shard.kv_heads.size()) +
        3 * m.hidden_size * shard.ffn.size();
    int64_t elements = layers * per_layer;
    const int64_t vocab_rows = shard.vocab.size() * m.hidden_size;
    // A tied LM head on a one-stage rank shares the embedding's memory.
    if (stage.has_embedding) elements += vocab_rows;
    if (stage.has_lm_head && !(stage.has_embedding && m.tie_word_embeddings)) {
      elements += vocab_rows;
    }
    RankFootprint f;
    f.rank = rank;
    f.memory_bytes = in.rank_memory_bytes[rank];
    f.weight_bytes = static_cast<int64_t>(std::ceil(elements * in.bytes_per_weight)) +
                     // norms, replicated in float32: two per layer, the final one on the last
                     (2 * layers + (stage.has_lm_head ? 1 : 0)) * m.hidden_size * 4;
    f.kv_bytes_per_token = layers * shard.kv_heads.size() * kv_bytes_per_head_layer;
    const int64_t left = f.memory_bytes - f.weight_bytes - in.activation_reserve_bytes;
    if (left < 0) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "shard plan: rank %d (stage %d, tp rank %d) needs %d bytes of weights + %d bytes "
          "of activation reserve but has %d bytes",
          rank, rank / in.tp, rank % in.tp, f.weight_bytes, in.activation_reserve_bytes,
          f.memory_bytes));
    }
    f.kv_blocks = left / (f.kv_bytes_per_token * in.block_size);
    plan.num_kv_blocks = std::min(plan.num_kv_blocks, f.kv_blocks);
    plan.ranks.push_back(f);
  }
  if (plan.num_kv_blocks < 1) {
    const auto worst = std::min_element(
        plan.ranks.begin(), plan.ranks.end(),
        [](const RankFootprint& a, const RankFootprint& b) { return a.kv_blocks < b.kv_blocks; });
    return absl::ResourceExhaustedError(absl::StrFormat(
        "shard plan: rank %d has %d bytes left after %d bytes of weights and the reserve, less "
        "than one KV block (%d tokens x %d bytes)",
        worst->rank, worst->memory_bytes - worst->weight_bytes - in.activation_reserve_bytes,
        worst->weight_bytes, in.block_size, worst->kv_bytes_per_token));
  }
  return plan;
}

std::string ShardPlan::ToString() const {
  std::string out =
      absl::StrFormat("tp %d x pp %d%s, %d KV blocks of %d tokens", tp, pp,
                      sequence_parallel ? " (sequence parallel)" : "", num_kv_blocks, block_size);
  for (size_t s = 0; s < stages.size(); ++s) {
    absl::StrAppendFormat(&out, "; stage %d: layers [%d, %d)%s%s", s, stages[s].layers.begin,
                          stages[s].layers.end, stages[s].has_embedding ? " + embedding" : "",
                          stages[s].has_lm_head ? " + LM head" : "");
  }
  for (size_t t = 0; t < tensor.size(); ++t) {
    absl::StrAppendFormat(&out, "; tp %d: q heads [%d, %d), kv heads [%d, %d), ffn [%d, %d)", t,
                          tensor[t].q_heads.begin, tensor[t].q_heads.end, tensor[t].kv_heads.begin,
                          tensor[t].kv_heads.end, tensor[t].ffn.begin, tensor[t].ffn.end);
  }
  return out;
}

absl::StatusOr<int64_t> FfnAlignmentOf(const WeightStore& store) {
  ASSIGN_OR_RETURN(const TensorView down, store.Get("blk.0.ffn_down.weight"));
  return Traits(down.dtype).block_elems;
}

}  // namespace tessera
