#include "formats/model_config.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace tessera {
namespace {

absl::Status Bad(const ModelConfig& c, std::string_view field, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrFormat(
      "model config%s: %s %s", c.name.empty() ? "" : " '" + c.name + "'", field, why));
}

}  // namespace

absl::Status ModelConfig::Validate() const {
  const std::pair<const char*, int64_t> positive[] = {
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"intermediate_size", intermediate_size},
      {"num_layers", num_layers},
      {"num_heads", num_heads},
      {"num_kv_heads", num_kv_heads},
      {"head_dim", head_dim},
      {"max_position_embeddings", max_position_embeddings},
      {"rope_dim", rope_dim},
  };
  for (const auto& [field, v] : positive) {
    if (v <= 0) return Bad(*this, field, absl::StrFormat("must be positive (is %d)", v));
    // Bounded so that products of two sizes (heads x head_dim, rows x cols) fit in int64.
    if (v > kMaxModelDim) {
      return Bad(*this, field, absl::StrFormat("is %d, more than the supported %d", v,
                                               kMaxModelDim));
    }
  }
  if (num_heads % num_kv_heads != 0) {
    return Bad(*this, "num_kv_heads",
               absl::StrFormat("%d does not divide num_heads %d", num_kv_heads, num_heads));
  }
  if (rope_dim > head_dim || rope_dim % 2 != 0) {
    return Bad(*this, "rope_dim",
               absl::StrFormat("%d must be even and at most head_dim %d", rope_dim, head_dim));
  }
  if (head_dim % 2 != 0) return Bad(*this, "head_dim", absl::StrFormat("%d must be even", head_dim));
  if (!(rms_norm_eps > 0) || !std::isfinite(rms_norm_eps)) {
    return Bad(*this, "rms_norm_eps", absl::StrFormat("must be positive (is %g)", rms_norm_eps));
  }
  if (!(rope_theta > 0) || !std::isfinite(rope_theta)) {
    return Bad(*this, "rope_theta", absl::StrFormat("must be positive (is %g)", rope_theta));
  }
  const RopeScaling& s = rope_scaling;
  if (s.type != RopeScalingType::kNone) {
    if (!(s.factor > 0) || !std::isfinite(s.factor)) {
      return Bad(*this, "rope_scaling.factor", absl::StrFormat("must be positive (is %g)", s.factor));
    }
  }
  if (s.type == RopeScalingType::kLlama3) {
    if (s.original_max_position_embeddings <= 0) {
      return Bad(*this, "rope_scaling.original_max_position_embeddings", "must be positive");
    }
    if (!(s.high_freq_factor > s.low_freq_factor) || !(s.low_freq_factor > 0)) {
      return Bad(*this, "rope_scaling.high_freq_factor",
                 absl::StrFormat("must exceed low_freq_factor > 0 (are %g and %g)",
                                 s.high_freq_factor, s.low_freq_factor));
    }
  }
  if (s.type == RopeScalingType::kYarn && s.original_max_position_embeddings <= 0) {
    return Bad(*this, "rope_scaling.original_max_position_embeddings", "must be positive");
  }
  if (has_rope_freqs && s.type == RopeScalingType::kLlama3) {
    return Bad(*this, "rope_scaling", "llama3 scaling and a rope_freqs tensor are exclusive");
  }
  return absl::OkStatus();
}

bool HyperParametersEqual(const ModelConfig& a, const ModelConfig& b) {
  ModelConfig a2 = a;
  a2.name = b.name;
  return a2 == b;
}

std::vector<float> Llama3RopeFreqFactors(const ModelConfig& config) {
  const RopeScaling& s = config.rope_scaling;
  const double old_context = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_context / s.low_freq_factor;
  const double high_freq_wavelen = old_context / s.high_freq_factor;
  const int64_t dim = config.rope_dim;
  std::vector<float> factors;
  factors.reserve(static_cast<size_t>(dim / 2));
  for (int64_t i = 0; i < dim; i += 2) {
    // torch: 1.0 / (base ** (arange(0, dim, 2, float32) / dim)), all in float32.
    const float exponent = static_cast<float>(i) / static_cast<float>(dim);
    const float freq = 1.0f / std::pow(static_cast<float>(config.rope_theta), exponent);
    const double wavelen = 2.0 * M_PI / static_cast<double>(freq);
    double f;
    if (wavelen < high_freq_wavelen) {
      f = 1.0;
    } else if (wavelen > low_freq_wavelen) {
      f = s.factor;
    } else {
      const double smooth = (old_context / wavelen - s.low_freq_factor) /
                            (s.high_freq_factor - s.low_freq_factor);
      f = 1.0 / ((1.0 - smooth) / s.factor + smooth);
    }
    factors.push_back(static_cast<float>(f));
  }
  return factors;
}

}  // namespace tessera
