// One token's share of the logits processors that touch a few tokens of a row (sequence
// bias, repetition, frequency and presence penalties, no-repeat n-grams, bad words,
// min-new-tokens: decoding/penalty_processors.h), as plain data: the host builds the edits
// from a sequence's history and a backend applies them where the logits are
// (Backend::EditLogits), so that such rows need not come back whole. The same function
// applies an edit on the host and in a CUDA kernel, so both give the same bits.
#pragma once

#include <cstdint>

#include "kernels/cuda/float_bits.h"  // TESSERA_HOST_DEVICE

namespace tessera {

// The steps of an edit, in the order they apply (the order of the processors in
// LogitsProcessorChain::Create).
enum LogitEditStep : uint32_t {
  kEditBias = 1u << 0,               // l + bias (sequence / logit bias)
  kEditRepetition = 1u << 1,         // l < 0 ? l * penalty : l / penalty
  kEditFrequencyPresence = 1u << 2,  // float(double(l) - frequency - presence)
  kEditNgramBan = 1u << 3,           // -inf (no-repeat n-gram)
  kEditLateBias = 1u << 4,           // l + late_bias (bad words: -inf)
  kEditEndBan = 1u << 5,             // -inf (min new tokens)
};

struct LogitEdit {
  int32_t row = 0;  // the logits row (Backend::EditLogits); the processors leave it 0
  int32_t token = 0;
  uint32_t steps = 0;  // LogitEditStep bits
  float bias = 0.0f;
  float penalty = 1.0f;
  float late_bias = 0.0f;
  double frequency = 0.0;  // count * frequency_penalty
  double presence = 0.0;
};

TESSERA_HOST_DEVICE inline float ApplyLogitEdit(float l, const LogitEdit& e) {
  const float minus_infinity = cuda_shim::FloatFromBits(0xff800000u);
  if (e.steps & kEditBias) l += e.bias;
  if (e.steps & kEditRepetition) l = l < 0 ? l * e.penalty : l / e.penalty;
  if (e.steps & kEditFrequencyPresence) {
    l = static_cast<float>(static_cast<double>(l) - e.frequency - e.presence);
  }
  if (e.steps & kEditNgramBan) l = minus_infinity;
  if (e.steps & kEditLateBias) l += e.late_bias;
  if (e.steps & kEditEndBan) l = minus_infinity;
  return l;
}

}  // namespace tessera
