// Continuous batching: requests join a waiting queue at any step and leave when finished;
// each Schedule() picks the sequences of one step under a token budget and a sequence cap,
// mixing decodes (one token each; prefill chunks always leave a token for every running
// decode, so decodes are never starved) with chunks of prompts (chunked prefill). When KV
// blocks run out, the lowest-ranked running sequence is preempted: its KV is swapped out to
// host blocks (SchedulerConfig::num_host_blocks, when they have room; not for strategy-driven
// groups) or dropped for recompute, and it goes back to waiting with its generated tokens,
// so its output never changes. Under the priority policy a waiting request that outranks
// running ones preempts them when it would not fit otherwise. Ranking is FCFS (arrival) or priority (then arrival). A strategy-driven
// group (RequestSpec::decoding_width) is advanced by its decoding strategy between steps:
// its sequences wait, held, for AppendToken / ForkSequence / FinishSequence.
//
// Protocol, on one thread (the engine loop; the Scheduler is not thread-safe):
//   AddRequest / Cancel        (any time)
//   ForkSequence / FinishSequence / AppendToken (on sequences not in a step in flight)
//   plan = Schedule(now)   -> run plan.block_copies, then the model on plan.sequences
//   Update(result)         -> appends tokens, advances KV progress, frees finished sequences
//   TakeFinished()         -> finished requests (cancelled, expired, stopped, length)
// Up to max_steps_in_flight non-empty plans may await their Update, which comes in plan
// order (a pipeline keeps one batch per stage in flight, DESIGN.md §4). Their batches are
// disjoint: a request is in at most one plan in flight, and a plan never preempts, ends or
// forks a request that is in flight (a cancellation waits for its step to land). Each plan
// then takes at most 1 / max_steps_in_flight of the live sequences, so that every batch in
// flight has work. Every rank runs the plans in order, so KV one plan writes is there for
// the next.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/block_manager.h"
#include "engine/sequence.h"
#include "engine/step_plan.h"

namespace tessera {

enum class SchedulingPolicy { kFcfs, kPriority };

struct SchedulerConfig {
  int block_size = 16;
  int num_blocks = 0;
  bool enable_prefix_caching = true;
  int max_model_len = 2048;           // the model's context length
  int max_num_seqs = 64;              // sequences per step
  int max_num_batched_tokens = 2048;  // tokens per step; at least max_num_seqs
  int max_waiting_requests = 1024;    // beyond this AddRequest is RESOURCE_EXHAUSTED
  bool enable_chunked_prefill = true; // else a prompt waits until it fits a step whole
  // > 0: a preempted sequence's KV is swapped out to this many host blocks when they have
  // room (and swapped back in when it resumes) instead of being recomputed.
  int num_host_blocks = 0;
  SchedulingPolicy policy = SchedulingPolicy::kFcfs;
  // Plans that may await their Update at once (disjoint batches): pp with pipeline stages.
  int max_steps_in_flight = 1;
};

// INVALID_ARGUMENT naming the field for a non-positive size or a token budget below
// max_num_seqs.
[[nodiscard]] absl::Status ValidateSchedulerConfig(const SchedulerConfig& config);

// A fork made by Update for parallel sampling: sample `sample` (>= 1) of `parent`'s step
// went to the new sequence `child`.
struct SampleFork {
  SequenceId parent = -1;
  int sample = 0;
  SequenceId child = -1;
};

struct SchedulerStats {
  int64_t steps = 0;
  int64_t preemptions = 0;  // recomputed or swapped
  int64_t swaps_out = 0;
  int64_t swaps_in = 0;
  int64_t scheduled_tokens = 0;
  int64_t prefix_queried_blocks = 0;
  int64_t prefix_hit_blocks = 0;
};

class Scheduler {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Scheduler>> Create(SchedulerConfig config);
  // With every request finished, every block must be back in the pool (cached blocks are
  // unreferenced): a leak is a broken invariant, checked here so that every test that
  // drains its scheduler checks it.
  ~Scheduler();

  // Queues a request arriving at `now`. Refused at once, changing nothing:
  // INVALID_ARGUMENT for an empty request_id or prompt, max_new_tokens or n below 1, n over
  // max_num_seqs, prompt + max_new_tokens over max_model_len (or, with chunked prefill off,
  // over max_num_batched_tokens: a recompute must fit one step); RESOURCE_EXHAUSTED when
  // prompt + max_new_tokens needs more blocks than the whole cache or the waiting queue is
  // full; ALREADY_EXISTS for a request_id in use. Messages carry the numbers.
  [[nodiscard]] absl::Status AddRequest(RequestSpec spec, absl::Time now);
  // Ends the request with FinishReason::kCancelled and its partial output; its blocks are
  // freed now, or by the next Schedule when a step is in flight. NOT_FOUND if unknown.
  [[nodiscard]] absl::Status Cancel(std::string_view request_id);

  // The next step. Expired deadlines and pending cancellations are handled first (of
  // requests not in flight). Empty when nothing can run. FAILED_PRECONDITION while
  // max_steps_in_flight steps are in flight.
  [[nodiscard]] absl::StatusOr<StepPlan> Schedule(absl::Time now);
  // Results of the oldest step in flight: one output per sequence that needed logits. Validated
  // whole before anything changes (INVALID_ARGUMENT naming the field). `forks`, when given,
  // receives the sample forks made, also those of a request that finished in this step
  // (whose sequences are already retired when Update returns).
  [[nodiscard]] absl::Status Update(const StepResult& result,
                                    std::vector<SampleFork>* forks = nullptr);

  // For decoding strategies (beams), between steps: a copy-on-write fork of a running or
  // waiting sequence (RESOURCE_EXHAUSTED when max_num_seqs already run; a strategy-driven
  // group may not grow beyond its decoding_width live sequences), ending one sequence of a
  // group, and appending the next token to a held sequence of a strategy-driven group
  // (FAILED_PRECONDITION if it is not held; OUT_OF_RANGE past max_model_len). NOT_FOUND for
  // an unknown or finished sequence.
  [[nodiscard]] absl::StatusOr<SequenceId> ForkSequence(SequenceId parent);
  [[nodiscard]] absl::Status FinishSequence(SequenceId seq, FinishReason reason);
  [[nodiscard]] absl::Status AppendToken(SequenceId seq, int32_t token);

  std::vector<RequestOutput> TakeFinished();

  bool step_in_flight() const { return !in_flight_.empty(); }
  int steps_in_flight() const { return static_cast<int>(in_flight_.size()); }
  bool HasUnfinished() const { return !groups_.empty(); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  int num_running() const { return static_cast<int>(running_.size()); }
  const SequenceGroup* FindRequest(std::string_view request_id) const;
  const Sequence* FindSequence(SequenceId seq) const;
  const BlockManager& block_manager() const { return blocks_; }
  const SchedulerConfig& config() const { return config_; }
  SchedulerStats stats() const;

 private:
  explicit Scheduler(SchedulerConfig config);

  // Rank order: true if `a` comes before `b` (is more urgent).
  bool RankLess(const Sequence* a, const Sequence* b) const;
  // True while a plan with one of the group's sequences awaits its Update.
  bool InFlight(const SequenceGroup* group) const { return groups_in_flight_.contains(group); }
  // FAILED_PRECONDITION naming `what` when `seq`'s group is in flight.
  absl::Status CheckNotInFlight(SequenceId seq, const char* what) const;
  // The lowest-ranked running sequence that may be preempted (not in flight); null when that
  // would be `keep` or there is none.
  Sequence* PreemptionVictim(const Sequence* keep) const;
  // The most sequences one plan takes: all of them, or a 1 / max_steps_in_flight share.
  int SequencesPerPlan() const;
  void InsertSorted(std::vector<Sequence*>& queue, Sequence* seq);
  SequenceGroup* GroupOf(SequenceId seq) const;
  // Running sequences, counting n for a group whose samples are not forked yet.
  int SlotsInUse() const;
  int RunningMembers(const SequenceGroup* group) const;
  void Preempt(Sequence* seq, StepPlan& plan);
  // Priority policy: preempts running sequences ranked below the first waiting one until it
  // would fit; returns how many were preempted.
  size_t PreemptForWaiting(StepPlan& plan);
  // Admits a swapped-out sequence with `num_new` tokens to compute; false if the blocks
  // are not there (nothing changes then).
  bool SwapIn(Sequence* seq, int num_new, StepPlan& plan);
  void ReleaseHostBlocks(SequenceId seq);
  // Ends every unfinished sequence of the group with `reason`.
  void FinishGroup(SequenceGroup* group, FinishReason reason);
  void FinishOne(Sequence* seq, FinishReason reason);
  // Moves a group whose sequences are all finished to the output list.
  void RetireIfFinished(SequenceGroup* group);
  void ScheduleEntry(Sequence* seq, int num_computed, int num_new, StepPlan& plan);
  void ApplyOutput(const ScheduledSequence& entry, const SequenceOutput* output,
                   std::vector<SampleFork>* forks);
  void CheckLength(Sequence* seq);

  SchedulerConfig config_;
  BlockManager blocks_;
  absl::flat_hash_map<std::string, std::unique_ptr<SequenceGroup>> groups_;
  absl::flat_hash_map<SequenceId, SequenceGroup*> group_of_;
  // Swap space: free host blocks, and the host blocks of each swapped-out sequence.
  std::vector<BlockId> host_free_;
  absl::flat_hash_map<SequenceId, std::vector<BlockId>> host_tables_;
  std::vector<Sequence*> waiting_;  // rank order
  std::vector<Sequence*> running_;  // rank order; the back is the first preemption victim
  std::deque<StepPlan> in_flight_;  // oldest first
  absl::flat_hash_set<const SequenceGroup*> groups_in_flight_;
  std::vector<RequestOutput> finished_;
  SequenceId next_seq_id_ = 0;
  int64_t next_arrival_index_ = 0;
  int64_t next_step_ = 0;
  SchedulerStats stats_;
};

}  // namespace tessera
