// What every model rank does in one engine step, as plain data: the KV block moves of the
// plan (swap out, swap in, copy-on-write copies, in that order) and one ForwardPaged over the
// step's rows. The leader builds it from its StepPlan and, under tensor parallelism,
// sends it to every rank so that the whole model group runs the same work (DESIGN.md §3).
// Encoded as a flat little-endian byte string (length-prefixed arrays of fixed-width
// integers); the receiver checks every length against the bytes it got.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/paged_kv.h"
#include "model/llama_model.h"
#include "model/logits_selection.h"
#include "model/paged_kv_cache.h"

namespace tessera {

struct StepWork {
  std::vector<KvBlockCopy> swap_out, swap_in, copies;
  std::vector<int32_t> token_ids, positions;
  struct Sequence {
    int64_t query_start = 0, num_queries = 0, context_len = 0;
    std::vector<int32_t> block_table;
  };
  std::vector<Sequence> sequences;
  std::vector<int64_t> logits_rows, hidden_rows;
  // What the leader wants back of each logits row (model/logits_selection.h; empty: every
  // row whole). Used on the leader without pipeline stages, where the model reduces the rows
  // where the logits are. Not sent to the other ranks (their logits are unused).
  std::vector<LogitsRowWant> logits_wants;

  bool has_forward() const { return !token_ids.empty(); }
  // The forward batch for LlamaModel::ForwardPaged, its sequences written to `storage`;
  // valid while this StepWork and `storage` are unchanged.
  PagedBatch View(std::vector<PagedSequence>& storage) const;
};

std::vector<std::byte> EncodeStepWork(const StepWork& work);
// INVALID_ARGUMENT when `bytes` is not one whole encoded StepWork.
[[nodiscard]] absl::StatusOr<StepWork> DecodeStepWork(std::span<const std::byte> bytes);

// The block moves of `work` on this rank's caches: swap out, swap in, then the
// copy-on-write copies. `host` is the swap space; INTERNAL if the work swaps and there is
// none.
[[nodiscard]] absl::Status MoveKvBlocks(const StepWork& work, LlamaModel& model,
                                        PagedKvCache& cache, std::optional<PagedKvCache>& host);

// Runs `work` on this rank's caches: MoveKvBlocks, then the forward when it has rows
// (logits and hidden states as LlamaModel::ForwardPaged returns them; with `selection` and
// work.logits_wants, the rows reduced as those wants say, and selection->wants = them).
[[nodiscard]] absl::Status RunStepWork(const StepWork& work, LlamaModel& model, PagedKvCache& cache,
                                       std::optional<PagedKvCache>& host,
                                       std::vector<float>* logits, std::vector<float>* hidden,
                                       LogitsSelection* selection = nullptr);

}  // namespace tessera
