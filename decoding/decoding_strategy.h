// DecodingStrategy: the decoding of one strategy-driven request (beam search, diverse beam
// search, contrastive search) over its engine SequenceGroup. The worker hands it the model's
// rows for every live sequence of the group; it answers which sequences continue with which
// token, which fork (copy-on-write) with another token, which are pruned, and when the
// request is done. The scheduler knows nothing of beams: it only forks, appends and ends
// sequences as told (engine/scheduler.h, RequestSpec::decoding_width).
//
// Not thread-safe; one instance per request, driven by the engine thread.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "decoding/generation_config.h"
#include "engine/sequence.h"

namespace tessera {

// The model's output for one live sequence at its last position.
struct StrategyRow {
  SequenceId seq_id = -1;
  std::span<const int32_t> token_ids;  // prompt + generated
  size_t prompt_len = 0;
  std::span<const float> logits;       // raw, vocab_size
  std::span<const float> hidden;       // final-norm hidden state; only contrastive needs it
};

struct StrategyDecision {
  // `parent` continues with tokens[0]; each further token goes to a new fork of `parent`
  // (forked before tokens[0] is appended, so every fork shares the parent's history).
  struct Continuation {
    SequenceId parent = -1;
    std::vector<int32_t> tokens;
  };
  std::vector<Continuation> continuations;
  // Live sequences that end now (FinishReason::kPruned).
  std::vector<SequenceId> pruned;
  // The request is complete: every live sequence ends and Results() is final.
  bool done = false;
};

// One returned sequence.
using TopAlternatives = std::vector<std::pair<int32_t, float>>;  // (token, logprob)

struct StrategyResult {
  std::vector<int32_t> token_ids;     // generated tokens (a final EOS included)
  std::vector<float> token_logprobs;  // log_softmax of the raw logits at each chosen token
  // Per token, the StrategyOptions::top_logprobs most likely (raw) alternatives; empty when
  // none were asked for.
  std::vector<TopAlternatives> top_logprobs;
  double score = 0.0;                 // beam score (length-penalised); cumulative logprob else
  FinishReason finish_reason = FinishReason::kLength;
};

class DecodingStrategy {
 public:
  virtual ~DecodingStrategy() = default;

  // How many live sequences the group may hold (RequestSpec::decoding_width).
  virtual int width() const = 0;
  // Whether rows must carry hidden states (and the prompt's, through AddContextHidden).
  virtual bool wants_hidden_states() const { return false; }
  // The final-norm hidden state of prompt position `position` (contrastive search's context).
  // Repeats (a recompute after preemption) are ignored.
  virtual void AddContextHidden(int64_t position, std::span<const float> hidden) {
    (void)position;
    (void)hidden;
  }
  // `rows`: one per live sequence, all at the same generated length. INVALID_ARGUMENT if a
  // live sequence has no row or a row's size is wrong; FAILED_PRECONDITION after done.
  [[nodiscard]] virtual absl::StatusOr<StrategyDecision> Step(std::span<const StrategyRow> rows) = 0;
  // The ids of the forks the worker created for the last decision, in its order
  // (continuations in order, each one's tokens[1..] in order). INVALID_ARGUMENT on a count
  // mismatch.
  [[nodiscard]] virtual absl::Status BindForks(std::span<const SequenceId> fork_ids) = 0;
  // The returned sequences, best first (num_return_sequences of them); final once done.
  virtual std::vector<StrategyResult> Results() const = 0;
  // What the request returns when it ends before the strategy is done (cancelled, deadline,
  // aborted): as if a stopping criterion fired after the last completed step, the way
  // transformers' finalize treats running beams: they join the finished hypotheses with
  // their length-penalised scores and finish reason `reason`, and the best
  // num_return_sequences come back. Equals Results() once done.
  virtual std::vector<StrategyResult> PartialResults(FinishReason reason) const = 0;
  // The sequences the next Step expects rows for.
  virtual std::vector<SequenceId> LiveSequences() const = 0;
};

struct StrategyOptions {
  int32_t vocab_size = 0;
  int64_t max_new_tokens = 0;
  // Ids that end a hypothesis: eos_token_ids first (diverse beam search ends its
  // hypotheses with the first, as transformers does), then the other stop ids.
  std::vector<int32_t> end_token_ids;
  // What a finished group of diverse beam search feeds the later groups' diversity penalty
  // (transformers' pad_token_id, which defaults to eos_token_id[0]).
  int32_t pad_token_id = 0;
  uint64_t seed = 0;  // beam-search multinomial sampling
  int64_t top_logprobs = 0;  // alternatives reported per token (GenerationConfig::logprobs)
};

// The `n` most likely tokens of a raw logits row, as StrategyResult reports them.
TopAlternatives TopAlternativesOf(std::span<const float> logits, int64_t n);

// The strategy `config` asks for: beam search (num_beams > 1, num_beam_groups == 1, sampled
// when do_sample), diverse beam search (num_beam_groups > 1) or contrastive search;
// INVALID_ARGUMENT for any other mode or a config that fails Validate. `first` is the
// request's first sequence (the prompt).
[[nodiscard]] absl::StatusOr<std::unique_ptr<DecodingStrategy>> CreateDecodingStrategy(
    const GenerationConfig& config, const StrategyOptions& options, SequenceId first);

// True when `config` needs a DecodingStrategy rather than a per-sequence Sampler.
bool NeedsDecodingStrategy(const GenerationConfig& config);

}  // namespace tessera
