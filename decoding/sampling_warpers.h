// The sampling warpers (transformers' former LogitsWarpers), applied only when do_sample:
// temperature, top-k, top-p, min-p and typical-p. See logits_processor.h for the contract
// and order. Each keeps at least `min_tokens_to_keep` (>= 1) tokens.
//
// Probabilities are computed in float64 (transformers uses float32; the two differ only for
// a token whose cumulative probability is within float32 rounding of a threshold).
// Exact ties: top-k and min-p and typical-p treat tied tokens alike (transformers' strict
// comparisons); top-p, whose cut depends on an order, removes the higher id of a tie first
// (transformers leaves that order to torch.sort, which does not promise one).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string_view>

#include "decoding/logits_processor.h"

namespace tessera {

// logits /= temperature (temperature > 0).
class TemperatureWarper : public LogitsProcessor {
 public:
  explicit TemperatureWarper(float temperature) : temperature_(temperature) {}
  std::string_view name() const override { return "temperature"; }
  void Apply(const TokenHistory& history, std::span<float> logits) const override;

 private:
  float temperature_;
};

// Keeps the tokens whose logit is >= the max(top_k, min_tokens_to_keep)-th largest.
class TopKWarper : public LogitsProcessor {
 public:
  TopKWarper(int64_t top_k, int64_t min_tokens_to_keep)
      : top_k_(std::max(top_k, min_tokens_to_keep)) {}
  std::string_view name() const override { return "top_k"; }
  void Apply(const TokenHistory& history, std::span<float> logits) const override;

 private:
  int64_t top_k_;
};

// Top-p's cut: `p` holds each token's probability (in `logits`' order) and `before` the
// probability of tokens left out of `logits` that are all less likely than any of them (0
// for a whole row). Sets to -inf the least likely tokens (the higher id first among equal
// logits) whose cumulative probability, counted on from `before`, stays <= 1 - top_p,
// keeping at least min_keep. The caller has checked that `before` <= 1 - top_p (else the
// cut would also keep tokens that were left out).
void CutNucleus(std::span<float> logits, std::span<const double> p, double before, double top_p,
                int64_t min_keep);

// Nucleus sampling: removes the least likely tokens whose cumulative probability is
// <= 1 - top_p, keeping the min_tokens_to_keep most likely.
class TopPWarper : public LogitsProcessor {
 public:
  TopPWarper(double top_p, int64_t min_tokens_to_keep)
      : top_p_(top_p), min_keep_(min_tokens_to_keep) {}
  std::string_view name() const override { return "top_p"; }
  void Apply(const TokenHistory& history, std::span<float> logits) const override;

 private:
  double top_p_;
  int64_t min_keep_;
};

// Removes tokens with probability < min_p * (the largest probability).
class MinPWarper : public LogitsProcessor {
 public:
  MinPWarper(double min_p, int64_t min_tokens_to_keep)
      : min_p_(min_p), min_keep_(min_tokens_to_keep) {}
  std::string_view name() const override { return "min_p"; }
  void Apply(const TokenHistory& history, std::span<float> logits) const override;

 private:
  double min_p_;
  int64_t min_keep_;
};

// Locally typical sampling (Meister et al.): keeps the tokens whose -log p is closest to the
// entropy until their mass reaches typical_p.
class TypicalWarper : public LogitsProcessor {
 public:
  TypicalWarper(double mass, int64_t min_tokens_to_keep)
      : mass_(mass), min_keep_(min_tokens_to_keep) {}
  std::string_view name() const override { return "typical_p"; }
  void Apply(const TokenHistory& history, std::span<float> logits) const override;

 private:
  double mass_;
  int64_t min_keep_;
};

}  // namespace tessera
