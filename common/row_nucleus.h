// Whether a row's top candidates hold everything top-p or min-p would keep, shared by the
// model's choice of which rows may come back as candidates (model/llama_model_logits.cc) and
// the sampler that cuts their nucleus (decoding/logits_processor.cc), so both decide alike.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace tessera {

// `candidates` are the raw values of a row's most likely tokens (every token more likely
// than one of them included) and `denominator` the row's Σ exp(l / temperature - max) in
// float64. Returns the probability of the row's other tokens, 1 - Σ p(candidate), at least
// 0, with each candidate's probability in `p` (when given): exp(c / temperature - max) /
// denominator, the division by the temperature in float as TemperatureWarper does it.
// -1 when no candidate is finite or the denominator is not positive.
inline double ProbabilityOutside(std::span<const float> candidates, float temperature,
                                 double denominator, std::vector<double>* p = nullptr) {
  float max = -std::numeric_limits<float>::infinity();
  for (float v : candidates) max = std::max(max, v / temperature);
  if (!std::isfinite(max) || !(denominator > 0)) return -1.0;
  if (p != nullptr) p->resize(candidates.size());
  double kept = 0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const float v = candidates[i] / temperature;
    const double pi = std::isnan(v) ? 0.0 : std::exp(static_cast<double>(v) - max) / denominator;
    if (p != nullptr) (*p)[i] = pi;
    kept += pi;
  }
  return std::max(0.0, 1.0 - kept);
}

// True when min-p (keeping tokens with p >= min_p * p_max) removes the least likely of
// `candidates` (raw values; divided by the temperature as ProbabilityOutside does), and so
// every token of the row that is less likely still: the candidates then hold all it keeps.
inline bool MinPRemovesBelowCandidates(std::span<const float> candidates, float temperature,
                                       double min_p) {
  float max = -std::numeric_limits<float>::infinity();
  float min = std::numeric_limits<float>::infinity();
  for (float v : candidates) {
    max = std::max(max, v / temperature);
    min = std::min(min, v / temperature);
  }
  if (!std::isfinite(max)) return false;
  return std::exp(static_cast<double>(min) - max) < min_p;  // as MinPWarper compares
}

}  // namespace tessera
