#include "model/rope_frequencies.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/dtype.h"

namespace tessera {
namespace {

// Dimension index (in [0, rope_dim)) whose frequency completes `num_rotations` turns over
// `max_pos` positions (YaRN's find_correction_dim).
double YarnCorrectionDim(double num_rotations, int64_t rope_dim, double theta,
                         double max_pos) {
  return rope_dim * std::log(max_pos / (num_rotations * 2.0 * std::numbers::pi)) /
         (2.0 * std::log(theta));
}

void ApplyLlama3(const RopeScaling& s, std::vector<double>& freq) {
  const double old_ctx = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_ctx / s.low_freq_factor;
  const double high_freq_wavelen = old_ctx / s.high_freq_factor;
  for (double& f : freq) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    if (wavelen < high_freq_wavelen) continue;  // high frequency: unchanged
    if (wavelen > low_freq_wavelen) {           // low frequency: fully interpolated
      f /= s.factor;
      continue;
    }
    const double smooth =
        (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    f = (1.0 - smooth) * f / s.factor + smooth * f;
  }
}

void ApplyYarn(const RopeScaling& s, double theta, int64_t rope_dim, std::vector<double>& freq,
               float* mscale) {
  const double max_pos = static_cast<double>(s.original_max_position_embeddings);
  double low = std::floor(YarnCorrectionDim(s.beta_fast, rope_dim, theta, max_pos));
  double high = std::ceil(YarnCorrectionDim(s.beta_slow, rope_dim, theta, max_pos));
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(rope_dim - 1));
  const double span = std::max(high - low, 0.001);
  for (size_t i = 0; i < freq.size(); ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / span, 0.0, 1.0);
    const double extrapolation_weight = 1.0 - ramp;
    const double interpolated = freq[i] / s.factor;
    freq[i] = interpolated * (1.0 - extrapolation_weight) + freq[i] * extrapolation_weight;
  }
  const double m = s.factor <= 1.0 ? 1.0 : 0.1 * std::log(s.factor) + 1.0;
  *mscale = static_cast<float>(m * s.attn_factor);
}

}  // namespace

std::vector<double> BaseRopeFrequencies(double theta, int64_t rope_dim) {
  std::vector<double> freq(static_cast<size_t>(rope_dim / 2));
  for (int64_t i = 0; i < rope_dim / 2; ++i) {
    freq[static_cast<size_t>(i)] =
        std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(rope_dim));
  }
  return freq;
}

absl::StatusOr<RopeFrequencies> ComputeRopeFrequencies(const ModelConfig& config,
                                                       const TensorView* rope_freqs) {
  const int64_t rope_dim = config.rope_dim;
  if (rope_dim <= 0 || rope_dim % 2 != 0 || rope_dim > config.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rope_dim must be even and in (0, head_dim=", config.head_dim, "], got ", rope_dim));
  }
  if (!(config.rope_theta > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope_theta must be positive, got ", config.rope_theta));
  }
  const RopeScaling& s = config.rope_scaling;
  if (s.type != RopeScalingType::kNone && !(s.factor > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope_scaling.factor must be positive, got ", s.factor));
  }
  const bool needs_original_ctx =
      (s.type == RopeScalingType::kLlama3 && rope_freqs == nullptr) ||
      s.type == RopeScalingType::kYarn;
  if (needs_original_ctx && s.original_max_position_embeddings <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rope_scaling.original_max_position_embeddings must be positive for this scaling "
        "type, got ",
        s.original_max_position_embeddings));
  }
  if (s.type == RopeScalingType::kLlama3 && rope_freqs == nullptr &&
      !(s.high_freq_factor > s.low_freq_factor)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope_scaling.high_freq_factor (", s.high_freq_factor,
                     ") must exceed low_freq_factor (", s.low_freq_factor, ")"));
  }

  std::vector<double> freq = BaseRopeFrequencies(config.rope_theta, rope_dim);
  RopeFrequencies out;
  if (rope_freqs != nullptr) {
    if (rope_freqs->dtype != DType::kF32 || rope_freqs->NumElements() != rope_dim / 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor rope_freqs.weight: expected f32 with ", rope_dim / 2, " elements, got ",
          std::string(DTypeName(rope_freqs->dtype)), " [",
          absl::StrJoin(rope_freqs->shape, ", "), "]"));
    }
    // llama.cpp divides each frequency by its stored factor (Llama-3 stores its bands here).
    const float* factors = static_cast<const float*>(rope_freqs->data);
    for (size_t i = 0; i < freq.size(); ++i) {
      if (!(factors[i] > 0.0f)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor rope_freqs.weight: element ", i, " must be positive, got ", factors[i]));
      }
      freq[i] /= factors[i];
    }
  }
  switch (s.type) {
    case RopeScalingType::kNone:
      break;
    case RopeScalingType::kLinear:
      for (double& f : freq) f /= s.factor;
      break;
    case RopeScalingType::kLlama3:
      // The tensor already carries the Llama-3 factors; applying both would scale twice.
      if (rope_freqs == nullptr) ApplyLlama3(s, freq);
      break;
    case RopeScalingType::kYarn:
      ApplyYarn(s, config.rope_theta, rope_dim, freq, &out.mscale);
      break;
  }
  out.inv_freq.assign(freq.begin(), freq.end());
  return out;
}

}  // namespace tessera
