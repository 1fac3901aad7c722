#include "decoding/decoding_strategy.h"

#include "decoding/beam_search.h"
#include "decoding/contrastive_search.h"
#include "decoding/group_beam_search.h"
#include "decoding/sampler.h"

namespace tessera {

TopAlternatives TopAlternativesOf(std::span<const float> logits, int64_t n) {
  TopAlternatives out;
  if (n <= 0) return out;
  for (const TokenLogprob& t : TopLogprobs(logits, n)) out.emplace_back(t.token, t.logprob);
  return out;
}

bool NeedsDecodingStrategy(const GenerationConfig& config) {
  return config.IsBeamSearch() || config.IsContrastiveSearch();
}

absl::StatusOr<std::unique_ptr<DecodingStrategy>> CreateDecodingStrategy(
    const GenerationConfig& config, const StrategyOptions& options, SequenceId first) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  if (options.max_new_tokens < 1) {
    return absl::InvalidArgumentError("decoding strategy: max_new_tokens must be at least 1");
  }
  if (config.IsGroupBeamSearch()) {
    auto s = GroupBeamSearchStrategy::Create(config, options, first);
    if (!s.ok()) return s.status();
    return std::unique_ptr<DecodingStrategy>(std::move(*s));
  }
  if (config.IsBeamSearch()) {
    auto s = BeamSearchStrategy::Create(config, options, first);
    if (!s.ok()) return s.status();
    return std::unique_ptr<DecodingStrategy>(std::move(*s));
  }
  if (config.IsContrastiveSearch()) {
    auto s = ContrastiveSearchStrategy::Create(config, options, first);
    if (!s.ok()) return s.status();
    return std::unique_ptr<DecodingStrategy>(std::move(*s));
  }
  return absl::InvalidArgumentError(
      "decoding strategy: greedy and sampling decode per sequence (use a Sampler)");
}

}  // namespace tessera
