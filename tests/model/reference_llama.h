// Test helper: an independent float64 Llama forward over TinyWeights (all positions of one
// sequence at once, causal), with its own RoPE frequency formulas (written from the Hugging
// Face definitions, not shared with model/rope_frequencies.cc).
#pragma once

#include <cstdint>
#include <vector>

#include "tests/model/tiny_llama.h"

namespace tessera::testing {

// Inverse frequencies and mscale for `spec`'s rope settings, in double.
struct ReferenceRope {
  std::vector<double> inv_freq;
  double mscale = 1.0;
};
ReferenceRope ReferenceRopeFor(const TinySpec& spec);

// Logits [tokens.size(), vocab] row-major for every position.
std::vector<double> ReferenceForward(const TinyWeights& w, const std::vector<int32_t>& tokens);

}  // namespace tessera::testing
