// The step loop of one rank: continuous batching of the real model over a paged KV cache.
// A BatchRunner owns the Scheduler, the PagedKvCache (and its host swap space) and each
// request's decoding state: a Sampler built from its GenerationConfig, or a DecodingStrategy
// for beam / diverse beam / contrastive search, keyed by request id; it borrows the model.
// Each Step():
//   plan = Scheduler::Schedule(now)                  (up to max_steps_in_flight plans out)
//   swaps out / in, then Backend::CopyBlocks(plan.block_copies)  (before the forward)
//   LlamaModel::ForwardPaged(all scheduled tokens)    (logits for rows with needs_logits)
//   then, for the oldest plan launched:
//   per row: the request's processors + sampler       (RNG keyed by the sequence's length),
//            or the row is kept for its strategy (the sequence is held)
//   Scheduler::Update(result)                         (stop ids / max_new_tokens end a sequence)
//   text stops, then every strategy whose rows are all in decides: forks, appended tokens,
//   pruned or finished sequences (batch_runner_results.cc)
//   Scheduler::TakeFinished()                         -> returned
// A request's tokens do not depend on what it is batched with: greedy picks the argmax of
// logits that equal the request's solo forward (within the backend's rounding; bit for bit
// with a batch-invariant backend), and a sampled token is a pure function of (seed,
// sequence index, position).
//
// Not thread-safe: one thread (the engine loop) calls everything. The model and its backend
// must outlive the runner and must not run another forward during a Step.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "decoding/decoding_strategy.h"
#include "decoding/generation_config.h"
#include "decoding/sampler.h"
#include "engine/kv_capacity.h"
#include "engine/scheduler.h"
#include "engine/step_plan.h"
#include "model/llama_model.h"
#include "model/paged_kv_cache.h"
#include "worker/model_group.h"
#include "worker/stage_runner.h"
#include "worker/step_batch.h"
#include "worker/step_work.h"

namespace tessera {

struct BatchRunnerOptions {
  // block_size, limits and policy. num_blocks > 0 fixes the pool size; 0 takes as many
  // blocks as kv_cache_bytes holds. max_model_len is clamped to the model's context length.
  // num_host_blocks > 0 allocates that swap space in host memory (preemption by swapping).
  SchedulerConfig scheduler;
  int64_t kv_cache_bytes = 0;
  // When > 0, on a backend with device memory (Backend::DeviceMemoryInfo): the KV cache gets
  // what is left of this fraction of the device's memory once the model is loaded
  // (KvBudgetFromDeviceMemory) instead of kv_cache_bytes. Must lie in [0, 1].
  double device_memory_fraction = 0.0;
  // Element type of the paged KV cache: kF32, or kF16 (half the bytes per token, so twice
  // the tokens in the same kv_cache_bytes, and half the memory traffic in attention).
  DType kv_cache_dtype = DType::kF32;
  // Whether decode steps may be recorded and replayed by a backend that records them
  // (Backend::RunStep: CUDA graphs); false runs every step eagerly (--enforce-eager).
  bool record_decode_steps = true;
  // Seed of requests whose GenerationConfig has none (mixed with the request id).
  uint64_t default_seed = 0;
  // Under tensor parallelism: the leader side of the model's tensor group (this runner is
  // on rank 0). Create sends the cache setup and every step's work goes to the followers
  // (worker/model_group.h), which run RunModelGroupFollower on their shard of the model.
  // The caller owns it and sends the shutdown when done. Null: one rank.
  ModelGroupLeader* model_group = nullptr;
  // With pipeline stages: this rank's place (worker/stage_runner.h). The model then holds
  // stage 0, and the logits come back from the last stage.
  RankRole role;
};

// One request. `spec` is what the scheduler sees (prompt, max_new_tokens, n, stop ids,
// priority, deadline); `generation`'s eos_token_ids and stop_token_ids are added to
// spec.stop_token_ids, its length fields are not read (the caller resolves them into
// spec.max_new_tokens). For sampling and greedy, num_return_sequences is not read (the
// caller resolves it into spec.n); beam, diverse beam and contrastive search run as a
// DecodingStrategy (decoding/decoding_strategy.h) that returns num_return_sequences
// completions with their scores, and spec.n must be 1.
struct WorkerRequest {
  RequestSpec spec;
  GenerationConfig generation;
  // Text-level stops (the worker holds token ids only): called with a sequence's generated
  // ids after each new token; true ends the sequence with FinishReason::kStop. The caller
  // builds it from generation.stop_strings and its tokenizer. Not for beam or contrastive
  // search. generation.max_time becomes the request's deadline (the earlier of the two).
  std::function<bool(std::span<const int32_t> generated)> stops_at;
};

// The largest top-k whose rows come back as candidates rather than whole: past it the
// candidates and their sort cost about what the row does.
inline constexpr int64_t kMaxTopKCandidates = 1024;

// Counters for tests and the log.
struct BatchRunnerStats {
  int64_t steps = 0;           // non-empty steps run
  int64_t forward_tokens = 0;  // tokens through ForwardPaged
  int64_t block_copies = 0;
  int64_t blocks_swapped = 0;  // out and in
  int64_t max_batches_in_flight = 0;  // the most steps launched and not yet landed at once
  // Steps whose rows were all greedy: argmax on the backend (and for rows that report
  // logprobs, their denominator and most likely tokens).
  int64_t argmax_steps = 0;
  // Sampled rows whose logits stayed where they were: drawn from their top-k candidates
  // (Backend::TopKRows) or drawn on the backend (Backend::SampleRows).
  int64_t backend_sampled_rows = 0;
  // Rows that report logprobs (greedy, top-k, nucleus or plain-sampled), taken from the
  // backend's argmax or draw, candidates and softmax denominator instead of the row.
  int64_t backend_logprob_rows = 0;
  // Rows whose penalties and biases (LogitsProcessorChain::Edits) the backend applied where
  // the logits are, before their argmax, candidates or draw.
  int64_t backend_edited_rows = 0;
};

class BatchRunner {
 public:
  // Sizes the KV pool with engine/kv_capacity.h (float32 cache, tp = pp = 1), allocates it
  // and checks that the allocation matches the formula (INTERNAL otherwise). Errors:
  // INVALID_ARGUMENT for a null model or a bad scheduler config (naming the field);
  // RESOURCE_EXHAUSTED when the budget holds no block or the allocation fails.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<BatchRunner>> Create(
      LlamaModel* model, BatchRunnerOptions options);

  // Queues a request arriving at `now`. Refused at once, changing nothing:
  // INVALID_ARGUMENT for a prompt token outside the vocabulary ("prompt_token_ids[3]") or a
  // bad GenerationConfig (naming the field); otherwise the Scheduler's AddRequest codes (e.g.
  // RESOURCE_EXHAUSTED when the request can never fit the cache, ALREADY_EXISTS for a request id in
  // use).
  [[nodiscard]] absl::Status AddRequest(WorkerRequest request, absl::Time now);
  // Scheduler::Cancel: the request ends with FinishReason::kCancelled; its output comes
  // from the next Step. NOT_FOUND if unknown.
  [[nodiscard]] absl::Status Cancel(std::string_view request_id);

  // Runs one step and returns the requests that finished during it (or were cancelled or
  // expired since the last one): launches plans until the scheduler's max_steps_in_flight
  // are out or nothing more can run, then lands the oldest (its logits, decoding and
  // Scheduler::Update). With pipeline stages the others are still going through the later
  // stages meanwhile. An error from the model leaves the runner unusable.
  [[nodiscard]] absl::StatusOr<std::vector<RequestOutput>> Step(absl::Time now);
  // Steps (at least once) until no request is left, all at time `now`; the outputs in
  // finishing order, cancelled requests' included.
  // INTERNAL if requests remain that no step can schedule.
  [[nodiscard]] absl::StatusOr<std::vector<RequestOutput>> RunUntilIdle(absl::Time now);

  bool HasUnfinished() const { return scheduler_->HasUnfinished(); }
  const Scheduler& scheduler() const { return *scheduler_; }
  const KvCapacity& capacity() const { return capacity_; }
  const PagedKvCache& kv_cache() const { return cache_; }
  const BatchRunnerStats& stats() const { return stats_; }
  // Every rank's step times (worker/stage_runner.h), by world rank, as of the last refresh:
  // Step refreshes them every kRankTimesEverySteps steps and when no request is left (one
  // small message per rank).
  static constexpr int64_t kRankTimesEverySteps = 32;
  const std::vector<RankStepTimes>& rank_times() const { return rank_times_; }
  // Asks the ranks now (between steps). Errors as the model group's.
  [[nodiscard]] absl::Status RefreshRankTimes();
  // The draws (logprobs) of a live sequence's generated tokens so far, for requests that
  // asked for logprobs; empty otherwise.
  std::span<const SampleResult> DrawnLogprobs(SequenceId seq) const;
  BatchRunner(const BatchRunner&) = delete;
  BatchRunner& operator=(const BatchRunner&) = delete;
  // The startup line: KV blocks, bytes per block, tokens that fit, bytes allocated.
  std::string StartupReport() const;

 private:
  BatchRunner(LlamaModel* model, std::unique_ptr<Scheduler> scheduler, PagedKvCache cache,
              std::optional<PagedKvCache> host_cache, KvCapacity capacity, uint64_t default_seed,
              RankRole role);
  // The plan's swaps and copy-on-write copies, in the order StepPlan prescribes.
  static StepWork BuildStepWork(const StepPlan& plan, const StepBatch& batch);
  // Sends the plan's work to the ranks and starts this rank's part of it.
  [[nodiscard]] absl::Status Launch(StepPlan plan);
  // Finishes the oldest launched step: its logits, decoding and the scheduler's Update.
  [[nodiscard]] absl::Status Land();

  // Decoding for the sequences that needed logits, from what selection_ says of each entry's
  // row: its argmax, its top-k candidates, or its place in logits_ (every row there when
  // selection_ has no wants). Rows of strategy-driven requests are kept for
  // AdvanceStrategies (their sequences are held). `drawn` receives, per plan entry that
  // needed logits, the samples drawn (with their logprobs) for requests that asked for
  // logprobs.
  [[nodiscard]] absl::StatusOr<StepResult> Decode(const StepPlan& plan, const StepBatch& batch,
                                                  std::vector<std::vector<SampleResult>>* drawn);
  // What each logits row of the step needs to come back (StepWork::logits_wants), after the
  // penalties and biases of its chain (LogitsProcessorChain::Edits), which travel with the
  // want: its argmax for a greedy row with no other processor, no logprobs, one sample and
  // no strategy; its top-k candidates for a sampled row whose sampler offers them
  // (Sampler::top_k_candidates, k up to kMaxTopKCandidates); its most likely tokens and
  // softmax denominator for a top-p sampled row without top-k (Sampler::nucleus); its drawn
  // token for one plain sample at a temperature (Sampler::plain_sampling_temperature); else
  // the whole row. Empty when every row needs its whole row.
  std::vector<LogitsRowWant> LogitsWants(const StepPlan& plan, const StepBatch& batch) const;
  // Runs every strategy whose live sequences all have rows, and applies its decision
  // through the scheduler (forks, appended tokens, pruned or finished sequences).
  [[nodiscard]] absl::Status AdvanceStrategies();
  // INVALID_ARGUMENT naming the user's `field` when a request needs more sequences at once
  // than the scheduler runs (its own message would name spec.n / decoding_width).
  [[nodiscard]] absl::Status CheckWidth(const std::string& request_id, std::string_view field,
                                        int width) const;
  // A finished strategy-driven request's completions are its strategy's results.
  void ReplaceWithStrategyResults(RequestOutput& out);

  // The decoding state of a request run by a DecodingStrategy.
  struct StrategyState {
    std::unique_ptr<DecodingStrategy> strategy;
    // Rows delivered since the strategy last stepped, by sequence.
    struct Row {
      std::vector<float> logits;
      std::vector<float> hidden;
    };
    absl::flat_hash_map<SequenceId, Row> rows;
    bool done = false;
  };

  LlamaModel* model_;
  std::unique_ptr<Scheduler> scheduler_;
  PagedKvCache cache_;
  std::optional<PagedKvCache> host_cache_;  // swap space (SchedulerConfig::num_host_blocks)
  KvCapacity capacity_;
  uint64_t default_seed_;
  // Sequences of requests with a stops_at check, checked after each step.
  [[nodiscard]] absl::Status CheckStopTexts(const StepPlan& plan);

  // Per sequence, the logprobs of its generated tokens (requests that asked for them).
  void RecordLogprobs(const StepPlan& plan, const std::vector<std::vector<SampleResult>>& drawn,
                      const std::vector<SampleFork>& forks);
  void AttachLogprobs(RequestOutput& out);
  // best_of requests: the completions with the highest cumulative logprob, best first.
  void KeepBest(RequestOutput& out);

  absl::flat_hash_map<std::string, Sampler> samplers_;
  absl::flat_hash_map<SequenceId, std::vector<SampleResult>> logprobs_;
  absl::flat_hash_map<std::string, int> keep_best_;  // request id -> completions kept
  absl::flat_hash_map<std::string, std::function<bool(std::span<const int32_t>)>> stop_checks_;
  absl::flat_hash_map<std::string, StrategyState> strategies_;
  // A launched step until it lands; `batch` views `plan` (a deque keeps both in place).
  struct InFlightStep {
    StepPlan plan;
    StepBatch batch;
  };
  std::deque<InFlightStep> in_flight_;
  std::vector<float> logits_;
  std::vector<float> hidden_;
  LogitsSelection selection_;  // the landing step's rows as StepWork::logits_wants asked
  BatchRunnerStats stats_;
  std::vector<RankStepTimes> rank_times_;
  ModelGroupLeader* leader_ = nullptr;  // under tensor / pipeline parallelism
  StageRunner stage_runner_;
};

}  // namespace tessera
