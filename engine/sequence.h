// The engine's view of requests: a Sequence is one stream of tokens (prompt + generated)
// with its KV progress; a SequenceGroup is one request, holding the sequences that share its
// prompt (n > 1 parallel samples and beams fork from it, sharing KV blocks copy-on-write).
//
// Plain state, no locking: owned and mutated by the Scheduler on the engine thread. The
// physical block table of a sequence lives in the BlockManager, keyed by its id; the logical
// block layout is implied by the token count (token i sits in logical block i / block_size).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"

namespace tessera {

using SequenceId = int64_t;
using BlockId = int32_t;

// kPreempted: its KV was dropped (recompute); kSwapped: its KV waits in host blocks.
enum class SequenceStatus { kWaiting, kRunning, kPreempted, kSwapped, kFinished };

// Why a sequence ended. kStop: a stop token or string (reported by decoding); kLength:
// max_new_tokens or the model's context length reached; kPruned: a decoding strategy
// dropped it (a beam that fell out of the top, a contrastive candidate not chosen).
enum class FinishReason { kNone, kStop, kLength, kCancelled, kDeadline, kAborted, kPruned };

std::string_view SequenceStatusName(SequenceStatus status);
std::string_view FinishReasonName(FinishReason reason);

class Sequence {
 public:
  Sequence(SequenceId id, std::vector<int32_t> prompt_token_ids);

  SequenceId id() const { return id_; }
  // Prompt followed by generated tokens.
  std::span<const int32_t> token_ids() const { return token_ids_; }
  std::span<const int32_t> prompt_token_ids() const {
    return std::span<const int32_t>(token_ids_).first(prompt_len_);
  }
  std::span<const int32_t> generated_token_ids() const {
    return std::span<const int32_t>(token_ids_).subspan(prompt_len_);
  }
  int num_tokens() const { return static_cast<int>(token_ids_.size()); }
  int prompt_len() const { return prompt_len_; }
  int num_generated() const { return num_tokens() - prompt_len_; }
  int32_t last_token() const { return token_ids_.back(); }

  // KV positions filled: tokens [0, num_computed_tokens) have their keys and values cached.
  int num_computed_tokens() const { return num_computed_tokens_; }
  // Tokens whose KV is still to be computed (the rest of the prompt, or 1 when decoding).
  int num_uncomputed_tokens() const { return num_tokens() - num_computed_tokens_; }
  bool in_prefill() const { return num_uncomputed_tokens() > 1; }
  // Logical blocks the tokens occupy.
  int NumLogicalBlocks(int block_size) const {
    return (num_tokens() + block_size - 1) / block_size;
  }

  SequenceStatus status() const { return status_; }
  FinishReason finish_reason() const { return finish_reason_; }
  bool is_finished() const { return status_ == SequenceStatus::kFinished; }

  // Mutators, for the Scheduler.
  void AppendToken(int32_t token) { token_ids_.push_back(token); }
  void set_num_computed_tokens(int n) { num_computed_tokens_ = n; }
  void set_status(SequenceStatus status) { status_ = status; }
  void Finish(FinishReason reason) {
    status_ = SequenceStatus::kFinished;
    finish_reason_ = reason;
  }
  // A new sequence with this one's tokens, status and KV progress, for forking.
  std::unique_ptr<Sequence> Fork(SequenceId child_id) const;
  // Number of preemptions this sequence has gone through (each costs a recompute).
  int num_preemptions() const { return num_preemptions_; }
  void CountPreemption() { ++num_preemptions_; }

 private:
  SequenceId id_;
  std::vector<int32_t> token_ids_;
  int prompt_len_;
  int num_computed_tokens_ = 0;
  SequenceStatus status_ = SequenceStatus::kWaiting;
  FinishReason finish_reason_ = FinishReason::kNone;
  int num_preemptions_ = 0;
};

// What a client asks for, as the scheduler needs it (decoding settings live in decoding/).
struct RequestSpec {
  std::string request_id;
  std::vector<int32_t> prompt_token_ids;
  int max_new_tokens = 16;
  // A generated token in this list ends its sequence with FinishReason::kStop (the token is
  // kept in the output).
  std::vector<int32_t> stop_token_ids;
  // Sequences sampled from the prompt (parallel sampling); they fork after the prefill.
  int n = 1;
  // Lower is more urgent (vLLM's convention); only the priority policy reads it.
  int priority = 0;
  // The request ends with FinishReason::kDeadline and its partial output at this time.
  absl::Time deadline = absl::InfiniteFuture();
  // > 0: a decoding strategy (beam, contrastive search) drives the group, with up to this
  // many live sequences. Such a group holds `decoding_width` sequence slots for its whole
  // life; a sequence whose logits were delivered is *held* (not scheduled) until the
  // strategy appends its next token (Scheduler::AppendToken) or ends it; the scheduler
  // applies no stop-id or max_new_tokens check (the strategy does). n must be 1.
  int decoding_width = 0;
  // The final-norm hidden state of every token this request computes is returned with the
  // step (contrastive search compares candidates against the whole context).
  bool wants_hidden_states = false;
};

class SequenceGroup {
 public:
  // `arrival_index` orders requests that arrive at the same time.
  SequenceGroup(RequestSpec spec, absl::Time arrival_time, int64_t arrival_index);

  const std::string& request_id() const { return spec_.request_id; }
  const RequestSpec& spec() const { return spec_; }
  int max_new_tokens() const { return spec_.max_new_tokens; }
  int priority() const { return spec_.priority; }
  absl::Time deadline() const { return spec_.deadline; }
  absl::Time arrival_time() const { return arrival_time_; }
  int64_t arrival_index() const { return arrival_index_; }

  // In creation order: the first sequence, then its forks.
  const std::vector<std::unique_ptr<Sequence>>& sequences() const { return sequences_; }
  Sequence* AddSequence(std::unique_ptr<Sequence> seq);
  Sequence* FindSequence(SequenceId id) const;
  bool IsFinished() const;
  bool strategy_driven() const { return spec_.decoding_width > 0; }
  // Sequence slots the group holds while any of its sequences runs: decoding_width for a
  // strategy-driven group, n until the parallel samples fork, else one per running sequence.
  int ReservedSlots(int running_members) const;
  // True once the n parallel samples have been forked (or n == 1).
  bool forked() const { return forked_; }
  void set_forked() { forked_ = true; }
  bool cancel_requested() const { return cancel_requested_; }
  void RequestCancel() { cancel_requested_ = true; }

 private:
  RequestSpec spec_;
  absl::Time arrival_time_;
  int64_t arrival_index_;
  std::vector<std::unique_ptr<Sequence>> sequences_;
  bool forked_;
  bool cancel_requested_ = false;
};

}  // namespace tessera
