// LlamaModel under tensor parallelism (Megatron, DESIGN.md §4): the views loaded for the
// whole model are narrowed to this rank's slices, and the three places where ranks meet:
// the vocab-parallel embedding (sum of zero-padded lookups), the all-reduce after each
// row-parallel layer (O, down), and the vocab-parallel LM head (all-gather of logits).
// Without a tensor group each of these is the plain one-rank operation. Sequence
// parallelism (Megatron) swaps the all-reduces for a reduce-scatter over rows plus an
// all-gather of the normed rows before the next column-parallel layer.
#include <algorithm>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "model/llama_model.h"
#include "model/weight_slices.h"

namespace tessera {
namespace {

absl::Status CheckRange(std::string_view field, ShardRange r, int64_t limit) {
  if (r.begin < 0 || r.end > limit || r.begin >= r.end) {
    return absl::InvalidArgumentError(
        absl::StrFormat("tensor-parallel shard: %s [%d, %d) is not a non-empty part of [0, %d)",
                        std::string(field), r.begin, r.end, limit));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LlamaModel::ApplyTensorParallel(const TensorParallelShard& shard) {
  const ModelConfig& c = config_;
  if (shard.group == nullptr) {
    return absl::InvalidArgumentError("tensor-parallel shard: group is null");
  }
  const int tp = shard.group->size();
  const int rank = shard.group->rank();
  if (static_cast<int>(shard.ranks.size()) != tp) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tensor-parallel shard: ranks has %d entries for a group of %d", shard.ranks.size(), tp));
  }
  const TensorShard& mine = shard.ranks[static_cast<size_t>(rank)];
  RETURN_IF_ERROR(CheckRange("q_heads", mine.q_heads, c.num_heads));
  RETURN_IF_ERROR(CheckRange("kv_heads", mine.kv_heads, c.num_kv_heads));
  RETURN_IF_ERROR(CheckRange("ffn", mine.ffn, c.intermediate_size));
  // Local query head i reads local KV head i / group: whole GQA groups per rank.
  if (mine.q_heads.size() % mine.kv_heads.size() != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("tensor-parallel shard: %d query heads do not share %d KV heads evenly",
                        mine.q_heads.size(), mine.kv_heads.size()));
  }
  int64_t next_vocab = 0;
  for (const TensorShard& t : shard.ranks) {
    RETURN_IF_ERROR(CheckRange("vocab", t.vocab, c.vocab_size));
    if (t.vocab.begin != next_vocab) {
      return absl::InvalidArgumentError(
          "tensor-parallel shard: the ranks' vocab ranges must tile [0, vocab_size) in order");
    }
    next_vocab = t.vocab.end;
    vocab_ranges_.push_back(t.vocab);
  }
  if (next_vocab != c.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("tensor-parallel shard: the vocab ranges end at %d, not vocab_size %d",
                        next_vocab, c.vocab_size));
  }

  if (shard.deterministic && shard.sequence_parallel) {
    return absl::InvalidArgumentError(
        "tensor-parallel shard: deterministic reductions do not combine with sequence "
        "parallelism");
  }
  const int64_t hd = c.head_dim;
  const ShardRange q_rows{mine.q_heads.begin * hd, mine.q_heads.end * hd};
  q_ranges_.clear();
  ffn_ranges_.clear();
  for (const TensorShard& t : shard.ranks) {
    q_ranges_.push_back({t.q_heads.begin * hd, t.q_heads.end * hd});
    ffn_ranges_.push_back(t.ffn);
  }
  // Deterministic: O and down are split by output rows (hidden features) instead.
  deterministic_ = shard.deterministic && tp > 1;
  hidden_ranges_ = SplitEvenly(c.hidden_size, tp);
  const ShardRange hidden_rows = hidden_ranges_[static_cast<size_t>(rank)];
  const ShardRange kv_rows{mine.kv_heads.begin * hd, mine.kv_heads.end * hd};
  const bool tied = lm_head_.data == token_embd_.data;
  ASSIGN_OR_RETURN(token_embd_, SliceRows(token_embd_, mine.vocab, "token_embd.weight"));
  if (tied) {
    lm_head_ = token_embd_;
  } else {
    ASSIGN_OR_RETURN(lm_head_, SliceRows(lm_head_, mine.vocab, "output.weight"));
  }
  for (size_t l = 0; l < layers_.size(); ++l) {
    Layer& layer = layers_[l];
    const std::string p = absl::StrCat("blk.", stage_.layers.begin + static_cast<int64_t>(l), ".");
    ASSIGN_OR_RETURN(layer.wq, SliceRows(layer.wq, q_rows, p + "attn_q.weight"));
    ASSIGN_OR_RETURN(layer.wk, SliceRows(layer.wk, kv_rows, p + "attn_k.weight"));
    ASSIGN_OR_RETURN(layer.wv, SliceRows(layer.wv, kv_rows, p + "attn_v.weight"));
    ASSIGN_OR_RETURN(layer.wo, deterministic_
                                   ? SliceRows(layer.wo, hidden_rows, p + "attn_output.weight")
                                   : SliceColumns(layer.wo, q_rows, p + "attn_output.weight"));
    ASSIGN_OR_RETURN(layer.w_gate, SliceRows(layer.w_gate, mine.ffn, p + "ffn_gate.weight"));
    ASSIGN_OR_RETURN(layer.w_up, SliceRows(layer.w_up, mine.ffn, p + "ffn_up.weight"));
    ASSIGN_OR_RETURN(layer.w_down,
                     deterministic_ ? SliceRows(layer.w_down, hidden_rows, p + "ffn_down.weight")
                                    : SliceColumns(layer.w_down, mine.ffn, p + "ffn_down.weight"));
  }
  local_heads_ = mine.q_heads.size();
  local_kv_heads_ = mine.kv_heads.size();
  local_ffn_ = mine.ffn.size();
  vocab_ = mine.vocab;
  tensor_group_ = tp > 1 ? shard.group : nullptr;
  sequence_parallel_ = shard.sequence_parallel && tp > 1;
  return absl::OkStatus();
}

absl::Status LlamaModel::Embed(std::span<const int32_t> tokens, float* x) {
  if (tensor_group_ == nullptr) return backend_->Embedding(token_embd_, tokens, x);
  const int64_t hidden = config_.hidden_size;
  const int64_t n = static_cast<int64_t>(tokens.size());
  local_ids_.clear();
  local_rows_.clear();
  for (int64_t i = 0; i < n; ++i) {
    const int32_t t = tokens[static_cast<size_t>(i)];
    if (t >= vocab_.begin && t < vocab_.end) {
      local_ids_.push_back(static_cast<int32_t>(t - vocab_.begin));
      local_rows_.push_back(i);
    }
  }
  // Under sequence parallelism all rows are built in xn_ (free until the first layer) and
  // each rank keeps its chunk of the sum; otherwise they are built in x and all-reduced.
  const int64_t padded = RowChunk(n) * (sequence_parallel_ ? tensor_group_->size() : 1);
  float* rows = sequence_parallel_ ? xn_->as<float>() : x;
  const int64_t row_bytes = hidden * static_cast<int64_t>(sizeof(float));
  RETURN_IF_ERROR(backend_->Zero(rows, static_cast<size_t>(padded * row_bytes)));
  if (!local_ids_.empty()) {
    // Looked up into full_x_ / xn_ first, then placed at their rows (runs of consecutive
    // rows in one copy).
    float* found = sequence_parallel_ ? full_x_->as<float>() : xn_->as<float>();
    RETURN_IF_ERROR(backend_->Embedding(token_embd_, local_ids_, found));
    for (size_t j = 0; j < local_rows_.size();) {
      size_t run = 1;
      while (j + run < local_rows_.size() && local_rows_[j + run] == local_rows_[j] + run) ++run;
      RETURN_IF_ERROR(backend_->CopyRows(rows + local_rows_[j] * hidden, row_bytes,
                                         found + static_cast<int64_t>(j) * hidden, row_bytes,
                                         row_bytes, static_cast<int64_t>(run)));
      j += run;
    }
  }
  // One rank holds each token's row, the others add zeros: the sum is exact.
  if (!sequence_parallel_) return ReduceOverTensorGroup(x, n * hidden);
  RETURN_IF_ERROR(BeforeCollective());
  return tensor_group_->ReduceScatter(
      std::span<const float>(rows, static_cast<size_t>(padded * hidden)),
      std::span<float>(x, static_cast<size_t>(RowChunk(n) * hidden)));
}

absl::Status LlamaModel::StageInput(std::span<const int32_t> tokens,
                                    std::span<const float> input) {
  if (stage_.has_embedding) return Embed(tokens, x_->as<float>());
  const int64_t hidden = config_.hidden_size;
  const int64_t n = static_cast<int64_t>(tokens.size());
  float* x = x_->as<float>();
  if (!sequence_parallel_) {
    return backend_->CopyToBackend(x, input.data(),
                                   static_cast<size_t>(n * hidden) * sizeof(float));
  }
  // This rank's chunk of the rows, zero past the last one.
  const int64_t chunk = RowChunk(n);
  const int64_t first = std::min(n, chunk * tensor_group_->rank());
  const int64_t rows = std::min(n, first + chunk) - first;
  const size_t row_bytes = static_cast<size_t>(hidden) * sizeof(float);
  RETURN_IF_ERROR(backend_->Zero(x + rows * hidden, static_cast<size_t>(chunk - rows) * row_bytes));
  return backend_->CopyToBackend(x, input.data() + first * hidden,
                                 static_cast<size_t>(rows) * row_bytes);
}

int64_t LlamaModel::RowChunk(int64_t n) const {
  if (!sequence_parallel_) return n;
  const int64_t tp = tensor_group_->size();
  return (n + tp - 1) / tp;
}

absl::Status LlamaModel::NormAllRows(const float* weight, int64_t n, float* xn) {
  const int64_t hidden = config_.hidden_size;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  if (!sequence_parallel_) {
    backend_->RmsNorm(x_->as<float>(), weight, n, hidden, eps, xn);
    return absl::OkStatus();
  }
  // Padding rows are zeros and stay zeros (RMSNorm of 0 is 0).
  const int64_t chunk = RowChunk(n);
  float* local = chunk_->as<float>();
  backend_->RmsNorm(x_->as<float>(), weight, chunk, hidden, eps, local);
  RETURN_IF_ERROR(BeforeCollective());
  return tensor_group_->AllGather(
      std::span<const float>(local, static_cast<size_t>(chunk * hidden)),
      std::span<float>(xn, static_cast<size_t>(chunk * hidden * tensor_group_->size())));
}

absl::Status LlamaModel::AddRowParallel(float* partial, int64_t n) {
  const int64_t hidden = config_.hidden_size;
  float* x = x_->as<float>();
  if (!sequence_parallel_) {
    RETURN_IF_ERROR(ReduceOverTensorGroup(partial, n * hidden));
    backend_->Add(x, partial, n * hidden, x);
    return absl::OkStatus();
  }
  const int64_t chunk = RowChunk(n);
  const int64_t padded = chunk * tensor_group_->size();
  RETURN_IF_ERROR(backend_->Zero(partial + n * hidden,
                                 static_cast<size_t>((padded - n) * hidden) * sizeof(float)));
  float* mine = chunk_->as<float>();
  RETURN_IF_ERROR(BeforeCollective());
  RETURN_IF_ERROR(tensor_group_->ReduceScatter(
      std::span<const float>(partial, static_cast<size_t>(padded * hidden)),
      std::span<float>(mine, static_cast<size_t>(chunk * hidden))));
  backend_->Add(x, mine, chunk * hidden, x);
  return absl::OkStatus();
}

absl::StatusOr<const float*> LlamaModel::FullResidual(int64_t n) {
  if (!sequence_parallel_) return x_->as<float>();
  const int64_t hidden = config_.hidden_size;
  const int64_t chunk = RowChunk(n);
  float* all = full_x_->as<float>();
  RETURN_IF_ERROR(BeforeCollective());
  RETURN_IF_ERROR(tensor_group_->AllGather(
      std::span<const float>(x_->as<float>(), static_cast<size_t>(chunk * hidden)),
      std::span<float>(all, static_cast<size_t>(chunk * hidden * tensor_group_->size()))));
  return all;
}

absl::Status LlamaModel::ReduceOverTensorGroup(float* data, int64_t count) {
  if (tensor_group_ == nullptr) return absl::OkStatus();
  RETURN_IF_ERROR(BeforeCollective());
  return tensor_group_->AllReduce(std::span<float>(data, static_cast<size_t>(count)),
                                  ReduceOp::kSum);
}

absl::Status LlamaModel::GatherColumns(const float* local, int64_t n,
                                       const std::vector<ShardRange>& ranges, float* out) {
  int64_t widest = 0;
  for (const ShardRange& r : ranges) widest = std::max(widest, r.size());
  const int64_t mine = ranges[static_cast<size_t>(tensor_group_->rank())].size();
  constexpr int64_t kF = sizeof(float);
  // Each rank's rows padded to the widest range, gathered, then each range's columns placed.
  const int64_t send_floats = n * widest;
  const int64_t recv_floats = send_floats * static_cast<int64_t>(ranges.size());
  ASSIGN_OR_RETURN(float* send, Floats(&gather_send_, send_floats));
  ASSIGN_OR_RETURN(float* recv, Floats(&gather_recv_, recv_floats));
  if (mine < widest) RETURN_IF_ERROR(backend_->Zero(send, static_cast<size_t>(send_floats * kF)));
  RETURN_IF_ERROR(backend_->CopyRows(send, widest * kF, local, mine * kF, mine * kF, n));
  RETURN_IF_ERROR(BeforeCollective());
  RETURN_IF_ERROR(tensor_group_->AllGather(
      std::span<const float>(send, static_cast<size_t>(send_floats)),
      std::span<float>(recv, static_cast<size_t>(recv_floats))));
  const int64_t width = ranges.back().end;
  for (size_t r = 0; r < ranges.size(); ++r) {
    const float* chunk = recv + static_cast<int64_t>(r) * send_floats;
    RETURN_IF_ERROR(backend_->CopyRows(out + ranges[r].begin, width * kF, chunk, widest * kF,
                                       ranges[r].size() * kF, n));
  }
  return absl::OkStatus();
}

absl::Status LlamaModel::RowParallel(const float* input, int64_t n, const TensorView& w,
                                     const std::vector<ShardRange>& in_ranges) {
  Backend& b = *backend_;
  float* xn = xn_->as<float>();
  if (!deterministic_) {
    // Each rank's partial sums over its input columns add up over the group.
    const int64_t k = in_ranges[tensor_group_ == nullptr ? 0 : tensor_group_->rank()].size();
    // One rank adds its product straight into the residual stream (a device fuses the add).
    if (tensor_group_ == nullptr) return b.MatMulAdd(input, n, k, w, xn, x_->as<float>());
    RETURN_IF_ERROR(b.MatMul(input, n, k, w, xn));
    return AddRowParallel(xn, n);
  }
  // The whole input, this rank's output rows over it, then every rank's rows.
  const int64_t k = in_ranges.back().end;
  ASSIGN_OR_RETURN(float* full_input, Floats(&full_input_, n * k));
  RETURN_IF_ERROR(GatherColumns(input, n, in_ranges, full_input));
  const int64_t rows = w.dim(0);
  ASSIGN_OR_RETURN(float* output_part, Floats(&output_part_, n * rows));
  RETURN_IF_ERROR(b.MatMul(full_input, n, k, w, output_part));
  RETURN_IF_ERROR(GatherColumns(output_part, n, hidden_ranges_, xn));
  const int64_t count = n * config_.hidden_size;
  b.Add(x_->as<float>(), xn, count, x_->as<float>());
  return absl::OkStatus();
}

absl::Status LlamaModel::LmHead(const float* normed, int64_t rows, float* logits) {
  const int64_t hidden = config_.hidden_size;
  if (tensor_group_ == nullptr) return backend_->MatMul(normed, rows, hidden, lm_head_, logits);
  ASSIGN_OR_RETURN(float* local, Floats(&local_logits_, rows * vocab_.size()));
  RETURN_IF_ERROR(backend_->MatMul(normed, rows, hidden, lm_head_, local));
  return GatherColumns(local, rows, vocab_ranges_, logits);
}

}  // namespace tessera
