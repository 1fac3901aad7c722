// What a synthesized random-weight model (model/synthetic_model.h) is: a named shape
// (formats/model_shapes.h), the matrices' dtype, a seed and an optional layer count, and the
// ModelConfig the written file holds. Separate from the writer so that programs that only need
// a random model's text side and shapes (tessera-coordinator) need not link the model.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "formats/model_config.h"
#include "formats/model_shapes.h"

namespace tessera {

struct SynthesisOptions {
  ModelShape shape;
  // Matrices' dtype: f32, f16, bf16, q8_0, q5_0, q5_1, q4_0 or q4_1. Norms stay f32.
  DType dtype = DType::kBF16;
  uint64_t seed = 0;
  int64_t layers = 0;   // > 0: this many layers instead of the shape's
  int num_threads = 0;  // generation threads, 0: hardware threads
};

// True when SynthesizeModel can write matrices of `dtype`; the names, for messages.
bool CanSynthesize(DType dtype);
std::string_view SynthesisDTypeNames();  // "f32, f16, bf16, q8_0, q5_0, q5_1, q4_0, q4_1"

// The config the file written with `options` holds, as ModelConfigFromGguf reads it: the
// shape's, with the layer override, and Llama-3 rope scaling turned into has_rope_freqs.
// INVALID_ARGUMENT naming the field for an unsupported dtype, a negative layer count or a
// shape whose matrices do not split into the dtype's blocks.
absl::StatusOr<ModelConfig> SynthesizedConfig(const SynthesisOptions& options);

}  // namespace tessera
