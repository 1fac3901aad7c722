#include "parallel/topology.h"

#include "absl/strings/str_format.h"

namespace tessera {

absl::StatusOr<Topology> Topology::Create(int world_size, int rank, int tp, int pp) {
  if (tp < 1) return absl::InvalidArgumentError(absl::StrFormat("tp must be >= 1 (is %d)", tp));
  if (pp < 1) return absl::InvalidArgumentError(absl::StrFormat("pp must be >= 1 (is %d)", pp));
  if (static_cast<long long>(tp) * pp != world_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "world size %d does not match tp %d x pp %d = %d ranks", world_size, tp, pp,
        static_cast<long long>(tp) * pp));
  }
  if (rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("rank %d is outside [0, %d)", rank, world_size));
  }
  return Topology(rank, tp, pp);
}

std::vector<int> Topology::TensorGroup() const {
  std::vector<int> ranks;
  for (int t = 0; t < tp_; ++t) ranks.push_back(RankAt(stage(), t));
  return ranks;
}

std::vector<int> Topology::PipelineGroup() const {
  std::vector<int> ranks;
  for (int s = 0; s < pp_; ++s) ranks.push_back(RankAt(s, tp_rank()));
  return ranks;
}

std::string Topology::ToString() const {
  return absl::StrFormat("rank %d of %d (stage %d of %d, tp rank %d of %d)", rank_,
                         world_size(), stage(), pp_, tp_rank(), tp_);
}

}  // namespace tessera
