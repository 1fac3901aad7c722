// The ranks that hold one model under tensor parallelism, driven by the leader (rank 0 of
// the group, which runs the engine): it sends the cache geometry once, then each step's
// StepWork (and, now and then, a request for their step times), then a shutdown; the followers
// build the same paged caches and run every StepWork in step with it (their collectives meet inside
// the forward). Messages go from the leader to each rank: a header [kind, payload bytes] and
// the payload, sent without waiting (a rank of a later pipeline stage may still be working
// on earlier steps: up to pp batches are in flight) and received in order.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/llama_model.h"
#include "parallel/communicator.h"
#include "parallel/send_queue.h"
#include "worker/stage_runner.h"
#include "worker/step_work.h"

namespace tessera {

// The caches every rank allocates (the leader's scheduler hands out these block ids).
struct ModelGroupSetup {
  int64_t num_blocks = 0;
  int64_t block_size = 0;
  int64_t num_host_blocks = 0;
  DType kv_dtype = DType::kF32;  // BatchRunnerOptions::kv_cache_dtype
};

class ModelGroupLeader {
 public:
  // `group` must outlive it; this process must be its rank 0.
  explicit ModelGroupLeader(Communicator* group) : group_(group) {}
  // Once, first. FAILED_PRECONDITION when sent twice or after the shutdown.
  [[nodiscard]] absl::Status SendSetup(const ModelGroupSetup& setup);
  [[nodiscard]] absl::Status SendStep(const StepWork& work);
  // Every rank's step times, by rank (`own` is this rank's): the followers answer between
  // steps. FAILED_PRECONDITION outside setup .. shutdown.
  [[nodiscard]] absl::StatusOr<std::vector<RankStepTimes>> CollectRankTimes(
      const RankStepTimes& own);
  // The followers return from RunModelGroupFollower. Later sends are FAILED_PRECONDITION.
  [[nodiscard]] absl::Status SendShutdown();
  bool shut_down() const { return shut_down_; }

 private:
  Communicator* group_;
  SendQueue sending_;
  bool set_up_ = false;
  bool shut_down_ = false;
};

// A follower's whole life: the setup, then every step (run as `role` says) until the
// leader's shutdown (OK), or the first error (a failed collective, bad bytes, a failed
// forward). `group` is the one the leader sends over (every rank of the model).
[[nodiscard]] absl::Status RunModelGroupFollower(LlamaModel& model, Communicator& group,
                                                 RankRole role = {});

}  // namespace tessera
