// Where a rank sits in a tp x pp layout. Ranks are numbered pipeline-stage-major, as
// Megatron-LM and vLLM do: rank = stage * tp + tp_rank, so the tp ranks of one stage are
// neighbours (on one node when a node holds tp GPUs). The leader is rank 0 (stage 0,
// tp rank 0).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera {

class Topology {
 public:
  // INVALID_ARGUMENT naming the field for tp or pp < 1, or world_size != tp * pp, or a rank
  // outside [0, world_size).
  [[nodiscard]] static absl::StatusOr<Topology> Create(int world_size, int rank, int tp, int pp);

  int world_size() const { return tp_ * pp_; }
  int rank() const { return rank_; }
  int tp() const { return tp_; }
  int pp() const { return pp_; }
  int tp_rank() const { return rank_ % tp_; }
  int stage() const { return rank_ / tp_; }
  bool is_leader() const { return rank_ == 0; }
  bool is_first_stage() const { return stage() == 0; }
  bool is_last_stage() const { return stage() == pp_ - 1; }

  // The ranks of this rank's tensor-parallel group (its stage), in tp-rank order.
  std::vector<int> TensorGroup() const;
  // The ranks holding this tp rank in every stage, in stage order.
  std::vector<int> PipelineGroup() const;
  // The rank at (stage, tp_rank).
  int RankAt(int stage, int tp_rank) const { return stage * tp_ + tp_rank; }
  std::string ToString() const;

 private:
  Topology(int rank, int tp, int pp) : rank_(rank), tp_(tp), pp_(pp) {}
  int rank_;
  int tp_;
  int pp_;
};

}  // namespace tessera
