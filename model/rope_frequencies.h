// RoPE inverse frequencies of a Llama-family model, with context-extension scaling applied:
// none, linear (positions divided by factor), Llama-3 (per-band smoothing between
// low_freq_factor and high_freq_factor over the original context) and YaRN (a ramp between
// interpolation and extrapolation over the dims set by beta_fast / beta_slow, plus an
// attention mscale). Matches Hugging Face transformers' rope init functions and llama.cpp's
// ggml_rope_ext. A GGUF `rope_freqs.weight` tensor (per-frequency divisors, which llama.cpp
// uses to store the Llama-3 factors) replaces the Llama-3 computation when present.
// Pure functions.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "formats/model_config.h"

namespace tessera {

struct RopeFrequencies {
  std::vector<float> inv_freq;  // rope_dim / 2 entries, for kernels' RopeParams::inv_freq
  float mscale = 1.0f;          // multiplies cos and sin (YaRN); 1 otherwise
};

// Unscaled base frequencies: theta^(-2i / rope_dim), i in [0, rope_dim / 2), in double.
std::vector<double> BaseRopeFrequencies(double theta, int64_t rope_dim);

// INVALID_ARGUMENT naming the field for an odd / non-positive rope_dim, a non-positive
// theta or factor, a Llama-3 / YaRN config without original_max_position_embeddings, or a
// `rope_freqs` tensor (may be null) that is not f32 with rope_dim / 2 elements.
[[nodiscard]] absl::StatusOr<RopeFrequencies> ComputeRopeFrequencies(
    const ModelConfig& config, const TensorView* rope_freqs = nullptr);

}  // namespace tessera
