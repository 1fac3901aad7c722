// Pieces the beam strategies share: the per-beam score rows transformers builds
// (log_softmax, then the processors, then the beam's running score added), the top-K
// continuations over all beams of a group, or K of them sampled without replacement, and
// the bookkeeping of one beam (its sequence, score and the logprobs of its tokens).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "decoding/logits_processor.h"
#include "decoding/decoding_strategy.h"

namespace tessera {

// transformers initialises every beam but the first of a group with this score, so that the
// first step expands only one copy of the prompt.
inline constexpr float kDeadBeamScore = -1.0e9f;

struct Beam {
  SequenceId seq_id = -1;
  float score = 0.0f;                 // sum of processed log-probabilities
  std::vector<int32_t> tokens;        // generated tokens (so far as the strategy decided)
  std::vector<float> token_logprobs;  // raw log-probabilities of the generated tokens
  std::vector<TopAlternatives> top_logprobs;  // per generated token, when asked for

  // A beam with nothing generated yet.
  static Beam Start(SequenceId seq_id, float score) {
    Beam b;
    b.seq_id = seq_id;
    b.score = score;
    return b;
  }
};

// One continuation: `token` after beam `beam` (an index into the caller's beam list).
struct Candidate {
  int beam = 0;
  int32_t token = 0;
  float score = 0.0f;  // the beam's score plus the token's processed log-probability
};

// log_softmax of `logits` into `out` (float64 inside, rounded to float as torch's float32
// result would be up to the last bit).
void LogSoftmax(std::span<const float> logits, std::span<float> out);

// The processed score row of one beam: log_softmax(logits), the chain (with the history and,
// for diverse beam search, the earlier groups' tokens), plus `beam_score`. Also returns the
// raw log-probabilities in `raw_logprobs`.
void BeamScoreRow(const LogitsProcessorChain& chain, const TokenHistory& history,
                  std::span<const float> logits, float beam_score, std::span<float> raw_logprobs,
                  std::span<float> scores);

// The k best of the concatenated rows (beam-major, as transformers flattens them), best
// first; among equal scores the lower flat index first. -inf entries are never returned, so
// fewer than k may come back.
std::vector<Candidate> TopCandidates(const std::vector<std::vector<float>>& rows, int k);

// k candidates drawn without replacement from softmax over the concatenated rows (inverse
// CDF in float64 with the counter-based generator keyed by (seed, draw index, position)),
// in draw order.
std::vector<Candidate> SampleCandidates(const std::vector<std::vector<float>>& rows, int k,
                                        uint64_t seed, uint64_t position);

// Finds the row of `seq` (INVALID_ARGUMENT naming it when absent or of the wrong size).
[[nodiscard]] absl::StatusOr<const StrategyRow*> FindRow(std::span<const StrategyRow> rows,
                                                         SequenceId seq, int32_t vocab_size);

bool IsEndToken(const std::vector<int32_t>& end_ids, int32_t token);

// The decision that moves `parents` (the beams before the step; several may share one
// sequence) to `next` (each a parent index and a token): a parent sequence chosen once or
// more continues with its first choice and forks for the others; the rest are pruned
// (parents with seq_id < 0 stand for no sequence and are skipped).
// `fork_slot[i]` is -1 when next[i] continues its parent's sequence, else the index of its
// fork in the order the worker creates them (DecodingStrategy::BindForks).
StrategyDecision MoveBeams(const std::vector<Beam>& parents,
                           const std::vector<std::pair<int, int32_t>>& next,
                           std::vector<int>* fork_slot);

// DecodingStrategy::BindForks for strategies that use MoveBeams: `fork_slot` (per beam, -1
// or the index of its fork) gives beam b the id fork_ids[fork_slot[b]]; then fork_slot is
// cleared (empty = no forks pending). INVALID_ARGUMENT, naming `strategy`, on a count
// mismatch.
[[nodiscard]] absl::Status BindForkIds(std::string_view strategy,
                                       std::span<const SequenceId> fork_ids,
                                       std::vector<int>& fork_slot, std::vector<Beam>& beams);

// A running beam as a returned sequence that ends now (cancelled, deadline): its tokens,
// logprobs and `score` (already length-penalised), with `reason`.
StrategyResult RunningBeamResult(const Beam& beam, double score, FinishReason reason);

}  // namespace tessera
