// Choosing the next token from one row of logits: greedy argmax, multinomial sampling with
// the counter-based RNG (philox.h), and the log-probabilities a response reports.
//
// Sampler bundles a request's LogitsProcessorChain with its seed; Sample() is a pure
// function of (logits, history, sequence index), so the same request gives the same tokens
// in any batch. Immutable after Create; Sample may be called from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "decoding/generation_config.h"
#include "decoding/logits_processor.h"

namespace tessera {

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
  bool operator==(const TokenLogprob&) const = default;
};

// The index of the largest logit, the lowest such index on ties (as torch.argmax). NaN
// entries are skipped; -1 for an empty or all-NaN row (an all -inf row gives 0).
int32_t ArgMax(std::span<const float> logits);

// Inverse-CDF draw from softmax(logits) computed in float64: the first token whose
// cumulative probability exceeds u * total, u in [0, 1). Tokens with logit -inf are never
// chosen. -1 if every logit is -inf (or NaN).
int32_t SampleFromLogits(std::span<const float> logits, double u);

// log_softmax(logits)[token], computed in float64.
float TokenLogprobOf(std::span<const float> logits, int32_t token);
// The n most likely tokens with their log-probabilities, most likely first (lower id first
// among ties). n is clamped to the row size.
std::vector<TokenLogprob> TopLogprobs(std::span<const float> logits, int64_t n);
// The log-probability of a logit in a row whose log Σ exp is `log_normalizer` (what
// TokenLogprobOf and TopLogprobs compute, from a normalizer found elsewhere: a device's).
inline float LogprobOf(float logit, double log_normalizer) {
  return static_cast<float>(static_cast<double>(logit) - log_normalizer);
}
// TopLogprobs from a row's candidates instead of the row: `ids` (distinct) and their
// logits `values`, which hold the row's n most likely tokens and every token tied with the
// n-th (TopKOfRow's candidates), and the row's log Σ exp. n is clamped to the candidates.
std::vector<TokenLogprob> TopLogprobsOfCandidates(std::span<const int32_t> ids,
                                                  std::span<const float> values, int64_t n,
                                                  double log_normalizer);

struct SampleResult {
  int32_t token = -1;
  float logprob = 0.0f;           // of `token`; set when the config asks for logprobs
  std::vector<TokenLogprob> top;  // the config's `logprobs` alternatives
};

// `token` with the raw row's logprobs, from elsewhere than the row: its raw `logit`, the
// row's candidates (ids and raw values, holding its n most likely, as for
// TopLogprobsOfCandidates) and its log Σ exp: what Sample reports with n alternatives.
SampleResult RawLogprobsFromCandidates(int32_t token, float logit, std::span<const int32_t> ids,
                                       std::span<const float> values, int64_t n,
                                       double log_normalizer);

// Which row logprobs are taken from: the model's (vLLM's default "raw_logprobs") or the one
// the token was drawn from after the processors (transformers' output_scores).
enum class LogprobsSource { kRaw, kProcessed };

class Sampler {
 public:
  // Validates `config`. `default_seed` is used when the config has no seed.
  [[nodiscard]] static absl::StatusOr<Sampler> Create(const GenerationConfig& config,
                                                      int32_t vocab_size, uint64_t default_seed,
                                                      LogprobsSource source = LogprobsSource::kRaw);

  // Runs the processors over `logits` (in place: it holds the processed row afterwards) and
  // picks a token: argmax unless do_sample, else a draw keyed by (seed, sequence_index,
  // position = history.ids.size()). `sequence_index` is the sequence's index within its
  // request (0 .. num_return_sequences-1), not an engine-wide id.
  // logits.size() must be vocab_size. Returns token -1 if the processors removed every token.
  SampleResult Sample(const TokenHistory& history, std::span<float> logits,
                      uint64_t sequence_index) const;
  // Sample for a row to which chain().Edits(history) were applied already (by a backend,
  // Backend::EditLogits): the rest of the chain, then the same choice. A sampler that
  // reports the raw row's logprobs while its chain has edits leaves them to the caller
  // (the raw row is gone; LogitsSelection keeps what they need).
  SampleResult SampleEdited(const TokenHistory& history, std::span<float> logits,
                            uint64_t sequence_index) const;

  // The selections below are over the row after chain().Edits(history) (the raw row when
  // the chain has none). Where the chain has edits, the raw row's logprobs are taken before
  // them (LogitsSelection's raw_candidates and unedited values), not by the sampler.

  // Set when a draw needs only the row's top-k candidates (sampling whose chain offers
  // top_k_candidates, and no logprobs or the raw row's with at most k alternatives):
  // SampleCandidates over the tokens TopKOfRow(row, k, temperature) selects gives the token
  // (and logprobs) Sample gives for the whole row, so that a device backend sends back those
  // candidates instead of the row. (The raw row's n <= k most likely tokens are candidates:
  // dividing by the temperature keeps the order.)
  std::optional<TopKSelection> top_k_candidates() const {
    if (!do_sample_) return std::nullopt;
    std::optional<TopKSelection> selection = chain_.top_k_candidates();
    if (selection.has_value() && logprobs_.has_value() &&
        (source_ != LogprobsSource::kRaw || (!chain_.has_edits() && *logprobs_ > selection->k))) {
      return std::nullopt;
    }
    return selection;
  }
  // Set when a draw is plain sampling of the whole row at this temperature (no processor
  // but the temperature, no logprobs): Sample's token is then DrawFromRow(row / temperature,
  // DrawUniform(...)) (common/row_sample.h), which a device backend can draw where the logits
  // are (Backend::SampleRows).
  std::optional<float> plain_sampling_temperature() const {
    if (!do_sample_ || logprobs_.has_value()) return std::nullopt;
    return chain_.plain_sampling_temperature();
  }
  // The same for a sampler that reports the raw row's logprobs (LogprobsSource::kRaw): its
  // token is that draw's, its logprob the drawn token's raw logit less the row's log Σ exp,
  // and its alternatives the raw row's logprobs() most likely tokens, which a device backend
  // can find where the logits are.
  std::optional<float> plain_sampling_with_raw_logprobs() const {
    if (!do_sample_ || !logprobs_.has_value() || source_ != LogprobsSource::kRaw) {
      return std::nullopt;
    }
    return chain_.plain_sampling_temperature();
  }
  // Set when a draw needs only the row's most likely tokens down to its top-p nucleus and
  // the row's softmax denominator (sampling at a temperature with top-p alone, no
  // logprobs): SampleNucleus gives Sample's token from them.
  std::optional<NucleusSelection> nucleus() const {
    if (!do_sample_ || logprobs_.has_value()) return std::nullopt;
    return chain_.nucleus();
  }
  // The same for a sampler that reports the raw row's logprobs (LogprobsSource::kRaw): the
  // token is SampleNucleus's, and its logprob and alternatives (at most the candidates) come
  // from the candidates' raw values and the raw row's log Σ exp.
  std::optional<NucleusSelection> nucleus_with_raw_logprobs() const {
    if (!do_sample_ || !logprobs_.has_value() || source_ != LogprobsSource::kRaw) {
      return std::nullopt;
    }
    return chain_.nucleus();
  }
  // Sample for a sampler with nucleus() or nucleus_with_raw_logprobs(), over the
  // candidates' ids (ascending) and raw values (processed in place) and the row's
  // denominator (LogitsProcessorChain::ApplyToNucleus). std::nullopt when the nucleus
  // reaches past the candidates (the whole row is needed); token -1 when no candidate is
  // finite. A sampler that reports logprobs needs the raw row's log Σ exp, `log_normalizer`
  // (the token and its alternatives are candidates), unless its chain has edits and they
  // were applied (the candidates are then the edited row's: without `log_normalizer` the
  // logprobs are the caller's).
  std::optional<SampleResult> SampleNucleus(
      const TokenHistory& history, std::span<const int32_t> ids, std::span<float> values,
      double denominator, uint64_t sequence_index,
      std::optional<double> log_normalizer = std::nullopt) const;
  // The uniform in [0, 1) Sample draws with for this history and sequence index.
  double DrawUniform(const TokenHistory& history, uint64_t sequence_index) const;
  // Sample for a sampler with top_k_candidates(), over the candidates' ids (ascending) and
  // raw values (processed in place), e.g. Backend::TopKRows' output. Returns token -1 when
  // the processors removed every candidate. A sampler that reports logprobs needs the raw
  // row's log Σ exp, `log_normalizer` (LogitsSelection::log_normalizers), unless its chain
  // has edits and they were applied (as for SampleNucleus).
  SampleResult SampleCandidates(const TokenHistory& history, std::span<const int32_t> ids,
                                std::span<float> values, uint64_t sequence_index,
                                std::optional<double> log_normalizer = std::nullopt) const;

  const LogitsProcessorChain& chain() const { return chain_; }
  // Greedy, with no processor but the chain's edits and no logprobs: Sample is the argmax
  // of the row after chain().Edits(history) (-1 when that is -inf).
  bool greedy_after_edits() const {
    return !do_sample_ && chain_.only_edits() && !logprobs_.has_value();
  }
  bool wants_logprobs() const { return logprobs_.has_value(); }
  // The number of alternatives each token reports (GenerationConfig::logprobs).
  std::optional<int64_t> logprobs() const { return logprobs_; }
  // Set when Sample is the argmax of the row and its logprobs are the raw row's (no
  // processor but the edits, greedy, LogprobsSource::kRaw): how many alternatives it
  // reports, which a device backend can find with the raw row's log-normalizer where the
  // logits are.
  std::optional<int64_t> greedy_raw_logprobs() const {
    if (do_sample_ || !chain_.only_edits() || !logprobs_.has_value() ||
        source_ != LogprobsSource::kRaw) {
      return std::nullopt;
    }
    return *logprobs_;
  }
  uint64_t seed() const { return seed_; }

 private:
  LogitsProcessorChain chain_;
  bool do_sample_ = false;
  uint64_t seed_ = 0;
  std::optional<int64_t> logprobs_;
  LogprobsSource source_ = LogprobsSource::kRaw;

  // SampleNucleus and SampleCandidates: a copy of the candidates' raw `values` when their
  // logprobs are the sampler's (it reports logprobs and the caller gave the row's
  // log-normalizer; CHECK-fails when one is needed and missing), else empty.
  std::vector<float> RawForLogprobs(std::span<const float> values,
                                    std::optional<double> log_normalizer) const;
  // Sample's draw among the candidates `ids` with `processed` values; with their logprobs
  // from `raw` when it is not empty.
  SampleResult DrawCandidate(const TokenHistory& history, std::span<const int32_t> ids,
                             std::span<const float> processed, std::span<const float> raw,
                             uint64_t sequence_index, std::optional<double> log_normalizer) const;
  // Sample's choice from `logits` after the whole chain, with (unless !with_logprobs) the
  // logprobs of `raw` (the raw row; empty unless the sampler reports the raw row's) or of
  // the processed row.
  SampleResult Choose(const TokenHistory& history, std::span<const float> logits,
                      std::span<const float> raw, uint64_t sequence_index,
                      bool with_logprobs = true) const;
};

}  // namespace tessera
