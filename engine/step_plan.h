// What one engine step does (StepPlan, decided by the scheduler on the leader) and what came
// out of it (StepResult, from the model + decoding). Plain data with value semantics so that
// the distributed engine can serialize and broadcast them unchanged.
//
// A plan lists the scheduled sequences in batch order. Entry i feeds `token_ids` at
// positions [start_position, start_position + token_ids.size()) of sequence `seq_id`, whose
// KV lives in `block_table` (token p in slot p % block_size of block_table[p / block_size]);
// the attention of those tokens covers positions [0, start_position + token_ids.size()).
// `swap_out`, `swap_in` and then `block_copies` must be performed, in order, before the
// forward pass.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/block_manager.h"
#include "engine/sequence.h"

namespace tessera {

struct ScheduledSequence {
  SequenceId seq_id = -1;
  std::string request_id;
  std::vector<int32_t> token_ids;  // the new tokens this step computes KV for
  int start_position = 0;          // position of token_ids[0]
  std::vector<BlockId> block_table;
  bool is_prefill = false;         // tokens come from the prompt (or a recompute)
  // True when this step reaches the sequence's last token: the row of its last position
  // goes to decoding, which draws `num_samples` tokens (n > 1 at the end of the prompt).
  bool needs_logits = false;
  int num_samples = 1;
  int num_generated = 0;           // tokens generated so far (decoding's RNG counter)
  // Every row of this entry returns its final-norm hidden state (RequestSpec's
  // wants_hidden_states).
  bool wants_hidden_states = false;
};

struct StepPlan {
  int64_t step_index = 0;
  int block_size = 0;
  std::vector<ScheduledSequence> sequences;
  std::vector<BlockCopy> block_copies;
  // Swaps, run first, in this order: swap_out copies cache block src to host block dst,
  // then swap_in copies host block src to cache block dst; then block_copies.
  std::vector<BlockCopy> swap_out;
  std::vector<BlockCopy> swap_in;
  std::vector<SequenceId> preempted;  // sequences preempted this step (recompute or swap)
  int num_batched_tokens = 0;
  bool empty() const { return sequences.empty(); }
};

// Decoding's verdict for one sequence that needed logits.
struct SequenceOutput {
  SequenceId seq_id = -1;
  // num_samples tokens (one per sample); empty when `finish` is set without a token, or for
  // a strategy-driven group's sequence, which is then held until its strategy decides.
  std::vector<int32_t> tokens;
  // kStop when decoding saw a stop token/string (the token, if given, is kept), or kNone.
  FinishReason finish = FinishReason::kNone;
};

struct StepResult {
  int64_t step_index = 0;
  std::vector<SequenceOutput> outputs;
};

// A finished request as the scheduler hands it back.
struct RequestOutput {
  std::string request_id;
  struct Completion {
    SequenceId seq_id = -1;  // -1 for a hypothesis a decoding strategy kept
    std::vector<int32_t> generated_token_ids;
    FinishReason finish_reason = FinishReason::kNone;
    // When the request asked for logprobs (and always for decoding strategies): the raw
    // log-probability of each generated token, and per token the requested number of most
    // likely alternatives (token, logprob).
    std::vector<float> token_logprobs;
    std::vector<std::vector<std::pair<int32_t, float>>> top_logprobs;
    // Decoding strategies only: the beam score (length-penalised) or cumulative logprob.
    std::optional<double> score;
  };
  std::vector<Completion> completions;
};

}  // namespace tessera
