// The probability mass outside a row's top candidates, shared by the model's choice of which
// top-p rows may come back as candidates (model/llama_model_logits.cc) and the sampler that
// cuts their nucleus (decoding/logits_processor.cc), so that both decide alike.
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

}  // namespace tessera
