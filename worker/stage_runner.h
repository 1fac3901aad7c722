// Runs a StepWork on one rank of a tp x pp layout (DESIGN.md §4). With pipeline stages the
// step's sequences are split into micro-batches (contiguous, balanced by rows) that flow
// through the stages: a stage receives a micro-batch's activations from the previous
// stage (StageLink), runs its layers and hands them on, so that stage s works on
// micro-batch k while stage s + 1 works on k - 1. The last stage's tp rank 0 hands every
// micro-batch's logits (and hidden states) back to the leader.
//
// Hand-offs are started, not awaited (Communicator::StartSend): a stage never waits for a
// busy receiver, so the leader can Launch a step, Launch the next disjoint batch on its own
// stage while later stages still work on the first, and Finish the first when its logits
// are back (up to pp batches in flight; every rank runs them in launch order, which is what
// makes KV written by one batch visible to the next).
#pragma once

#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "model/llama_model.h"
#include "model/paged_kv_cache.h"
#include "parallel/communicator.h"
#include "parallel/send_queue.h"
#include "parallel/timed_communicator.h"
#include "worker/step_work.h"

namespace tessera {

// Where this rank sits. The default is one rank holding the whole model.
struct RankRole {
  // This tp rank across the stages, ranked by stage (Topology::PipelineGroup); null or of
  // size 1: no pipeline.
  Communicator* pipeline = nullptr;
  // The world, over which the last stage returns logits to rank 0 (the leader).
  Communicator* world = nullptr;
  int last_stage_leader = 0;  // world rank of (last stage, tp rank 0)
  int micro_batches = 1;      // per step, when there are stages
  // Disjoint batches the leader keeps in flight (it sets SchedulerConfig::max_steps_in_flight);
  // 0: the scheduler config's, at least one per pipeline stage.
  int batches_in_flight = 0;
  // The tensor group's communicator as the model uses it, timed (its collectives count as
  // communication); null: none, or not measured.
  const TimedCommunicator* tensor_timer = nullptr;
};

// Where a rank's step time went since it started: step = compute + communication +
// bubble. Communication is time in the tensor group's collectives and in sending
// activations and logits on; the bubble is time a stage waited for its input (and the
// leader for the last stage's logits).
struct RankStepTimes {
  int64_t steps = 0;  // steps with a forward pass
  double step_seconds = 0;
  double communication_seconds = 0;
  double bubble_seconds = 0;
  double compute_seconds() const {
    const double c = step_seconds - communication_seconds - bubble_seconds;
    return c > 0 ? c : 0;
  }
};

class StageRunner {
 public:
  StageRunner(LlamaModel* model, RankRole role) : model_(model), role_(role) {}

  // Starts a step: the block moves, then this rank's layers over every micro-batch (waiting
  // for each input from the previous stage), handing the outputs on without waiting. On the
  // leader (first stage) nothing else needs the step's inputs, so it may Launch the next
  // step before this one is finished.
  [[nodiscard]] absl::Status Launch(const StepWork& work, PagedKvCache& cache,
                                    std::optional<PagedKvCache>& host);
  // Completes the oldest launched step. On the leader (world rank 0) `logits` and `hidden`
  // receive its rows as LlamaModel::ForwardPaged returns them (waiting for the last stage
  // when there are stages); on other ranks they are left unspecified. A step launched with
  // StepWork::logits_wants without stages gives its rows reduced as they say in
  // `*selection` (when given; RunStepWork), and in `logits` only the rows that came back
  // whole. FAILED_PRECONDITION when no step is in flight.
  [[nodiscard]] absl::Status Finish(std::vector<float>* logits, std::vector<float>* hidden,
                                    LogitsSelection* selection = nullptr);
  // Whether the model runs as pipeline stages (logits_wants have no effect then).
  bool pipelined() const { return role_.pipeline != nullptr && role_.pipeline->size() > 1; }
  // Launch, then Finish.
  [[nodiscard]] absl::Status Run(const StepWork& work, PagedKvCache& cache,
                                 std::optional<PagedKvCache>& host, std::vector<float>* logits,
                                 std::vector<float>* hidden);

  size_t in_flight() const { return in_flight_.size(); }
  const RankStepTimes& times() const { return times_; }

 private:
  // A launched step, until Finish.
  struct Launched {
    // On a rank with the LM head that is also the leader (no stages): the step's rows.
    std::vector<float> logits, hidden;
    LogitsSelection selection;  // the rows reduced as StepWork::logits_wants say
    // Per micro-batch, the logits and hidden rows the leader receives from the last stage.
    std::vector<std::pair<size_t, size_t>> returned_rows;
  };

  absl::Status LaunchStep(const StepWork& work, PagedKvCache& cache,
                          std::optional<PagedKvCache>& host, Launched& launched);
  absl::Status FinishStep(Launched& launched, std::vector<float>* logits,
                          std::vector<float>* hidden, LogitsSelection* selection);
  // Runs `call`, adding its wall time to `*seconds`.
  template <typename F>
  absl::Status Timed(double* seconds, F call);
  // Runs `call` as step time, its tensor-group collectives as communication.
  template <typename F>
  absl::Status TimedStep(F call);

  LlamaModel* model_;
  RankRole role_;
  std::vector<float> activations_;
  std::deque<Launched> in_flight_;
  SendQueue sending_;  // activations and logits handed on and not yet received
  RankStepTimes times_;
};

// The sequences [begin, end) of `work` as a StepWork of their own (rows renumbered from 0;
// no block moves).
StepWork SliceSequences(const StepWork& work, size_t begin, size_t end);

// `parts` contiguous ranges of work.sequences, as even in rows as whole sequences allow;
// fewer when there are fewer sequences. Each is [begin, end).
std::vector<std::pair<size_t, size_t>> SplitMicroBatches(const StepWork& work, int parts);

}  // namespace tessera
