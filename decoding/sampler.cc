#include "decoding/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "common/check.h"
#include "common/row_argmax.h"
#include "common/row_sample.h"
#include "common/status_macros.h"
#include "decoding/philox.h"

namespace tessera {
namespace {

// max + log(sum exp(l - max)) in float64; -inf when every logit is -inf.
double LogSumExp(std::span<const float> logits) {
  double max = -std::numeric_limits<double>::infinity();
  for (float l : logits) {
    if (l > max) max = l;
  }
  if (!std::isfinite(max)) return max;
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - max);
  return max + std::log(sum);
}

}  // namespace

int32_t ArgMax(std::span<const float> logits) { return ArgMaxOfRow(logits).index; }

int32_t SampleFromLogits(std::span<const float> logits, double u) {
  return DrawFromRow(logits, u);
}

float TokenLogprobOf(std::span<const float> logits, int32_t token) {
  TESSERA_CHECK(token >= 0 && static_cast<size_t>(token) < logits.size());
  return LogprobOf(logits[token], LogSumExp(logits));
}

namespace {

// The n most likely of `count` tokens, entry i being token id_of(i) with logit values[i]:
// most likely first, the lower id first among ties; n is clamped to count.
template <typename IdOf>
std::vector<TokenLogprob> FirstByLikelihood(size_t count, IdOf id_of,
                                            std::span<const float> values, int64_t n,
                                            double log_normalizer) {
  const size_t k = std::min<size_t>(static_cast<size_t>(std::max<int64_t>(n, 0)), count);
  std::vector<int32_t> order(count);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                    [&](int32_t a, int32_t b) {
                      return values[a] != values[b] ? values[a] > values[b]
                                                    : id_of(a) < id_of(b);
                    });
  std::vector<TokenLogprob> out;
  out.reserve(k);
  for (size_t i = 0; i < k; ++i) {
    out.push_back({id_of(order[i]), LogprobOf(values[order[i]], log_normalizer)});
  }
  return out;
}

}  // namespace

std::vector<TokenLogprob> TopLogprobsOfCandidates(std::span<const int32_t> ids,
                                                  std::span<const float> values, int64_t n,
                                                  double log_normalizer) {
  TESSERA_CHECK(ids.size() == values.size());
  return FirstByLikelihood(
      ids.size(), [&](int32_t i) { return ids[static_cast<size_t>(i)]; }, values, n,
      log_normalizer);
}

SampleResult RawLogprobsFromCandidates(int32_t token, float logit, std::span<const int32_t> ids,
                                       std::span<const float> values, int64_t n,
                                       double log_normalizer) {
  return {.token = token,
          .logprob = LogprobOf(logit, log_normalizer),
          .top = TopLogprobsOfCandidates(ids, values, n, log_normalizer)};
}

std::vector<TokenLogprob> TopLogprobs(std::span<const float> logits, int64_t n) {
  // The whole row: entry i is token i.
  return FirstByLikelihood(
      logits.size(), [](int32_t i) { return i; }, logits, n, LogSumExp(logits));
}

absl::StatusOr<Sampler> Sampler::Create(const GenerationConfig& config, int32_t vocab_size,
                                        uint64_t default_seed, LogprobsSource source) {
  Sampler s;
  ASSIGN_OR_RETURN(s.chain_, LogitsProcessorChain::Create(config, vocab_size));
  s.do_sample_ = config.do_sample;
  s.seed_ = config.seed.value_or(default_seed);
  s.logprobs_ = config.logprobs;
  s.source_ = source;
  return s;
}

SampleResult Sampler::Sample(const TokenHistory& history, std::span<float> logits,
                             uint64_t sequence_index) const {
  std::vector<float> raw;
  if (logprobs_.has_value() && source_ == LogprobsSource::kRaw) {
    raw.assign(logits.begin(), logits.end());
  }
  chain_.Apply(history, logits);
  return Choose(history, logits, raw, sequence_index);
}

SampleResult Sampler::SampleEdited(const TokenHistory& history, std::span<float> logits,
                                   uint64_t sequence_index) const {
  // With edits the raw row is gone, and its logprobs are the caller's.
  const bool raw_logprobs = logprobs_.has_value() && source_ == LogprobsSource::kRaw;
  std::vector<float> raw;
  if (raw_logprobs && !chain_.has_edits()) raw.assign(logits.begin(), logits.end());
  chain_.ApplyPastEdits(history, logits);
  return Choose(history, logits, raw, sequence_index,
                /*with_logprobs=*/!(raw_logprobs && chain_.has_edits()));
}

SampleResult Sampler::Choose(const TokenHistory& history, std::span<const float> logits,
                             std::span<const float> raw, uint64_t sequence_index,
                             bool with_logprobs) const {
  SampleResult result;
  if (do_sample_) {
    result.token = SampleFromLogits(logits, DrawUniform(history, sequence_index));
  } else {
    result.token = ArgMax(logits);
    if (result.token >= 0 && logits[result.token] == -std::numeric_limits<float>::infinity()) {
      result.token = -1;
    }
  }
  if (with_logprobs && logprobs_.has_value() && result.token >= 0) {
    const std::span<const float> row = source_ == LogprobsSource::kRaw ? raw : logits;
    result.logprob = TokenLogprobOf(row, result.token);
    result.top = TopLogprobs(row, *logprobs_);
  }
  return result;
}

std::optional<SampleResult> Sampler::SampleNucleus(const TokenHistory& history,
                                                   std::span<const int32_t> ids,
                                                   std::span<float> values, double denominator,
                                                   uint64_t sequence_index,
                                                   std::optional<double> log_normalizer) const {
  TESSERA_CHECK_MSG(
      (nucleus().has_value() || nucleus_with_raw_logprobs().has_value()) &&
          ids.size() == values.size(),
      "SampleNucleus needs a sampler with a nucleus and one id per value");
  const std::vector<float> raw = RawForLogprobs(values, log_normalizer);
  if (!chain_.ApplyToNucleus(values, denominator)) return std::nullopt;
  return DrawCandidate(history, ids, values, raw, sequence_index, log_normalizer);
}

std::vector<float> Sampler::RawForLogprobs(std::span<const float> values,
                                           std::optional<double> log_normalizer) const {
  TESSERA_CHECK_MSG(!logprobs_.has_value() || chain_.has_edits() || log_normalizer.has_value(),
                    "the candidates' logprobs need the row's log-normalizer");
  if (!logprobs_.has_value() || !log_normalizer.has_value()) return {};
  return std::vector<float>(values.begin(), values.end());
}

SampleResult Sampler::DrawCandidate(const TokenHistory& history, std::span<const int32_t> ids,
                                    std::span<const float> processed,
                                    std::span<const float> raw, uint64_t sequence_index,
                                    std::optional<double> log_normalizer) const {
  // The same uniform and the same float64 inverse CDF as Sample over the whole row, where
  // the tokens left out weigh exactly 0.
  const int32_t i = SampleFromLogits(processed, DrawUniform(history, sequence_index));
  SampleResult result;
  result.token = i < 0 ? -1 : ids[static_cast<size_t>(i)];
  if (!raw.empty() && i >= 0) {
    // The raw row's, as Sample's: its top alternatives are candidates.
    result = RawLogprobsFromCandidates(result.token, raw[static_cast<size_t>(i)], ids, raw,
                                       *logprobs_, *log_normalizer);
  }
  return result;
}

double Sampler::DrawUniform(const TokenHistory& history, uint64_t sequence_index) const {
  return SamplingUniform(seed_, sequence_index, history.ids.size());
}

SampleResult Sampler::SampleCandidates(const TokenHistory& history,
                                       std::span<const int32_t> ids, std::span<float> values,
                                       uint64_t sequence_index,
                                       std::optional<double> log_normalizer) const {
  TESSERA_CHECK_MSG(top_k_candidates().has_value() && ids.size() == values.size(),
                    "SampleCandidates needs a sampler with top_k_candidates and one id per value");
  const std::vector<float> raw = RawForLogprobs(values, log_normalizer);
  chain_.ApplyToCandidates(history, values);
  return DrawCandidate(history, ids, values, raw, sequence_index, log_normalizer);
}

}  // namespace tessera
