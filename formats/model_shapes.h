// Named model shapes: the hyper-parameters of well-known Llama-family checkpoints (and a
// tiny one for tests), for synthesizing random-weight models of the same size and layout
// (model/synthetic_model.h) where the real weights are not at hand. Plain data; the table
// is immutable and safe to read from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "formats/model_config.h"

namespace tessera {

struct ModelShape {
  std::string name;         // e.g. "llama-3-8b"
  std::string description;  // the checkpoint it copies, e.g. "meta-llama/Meta-Llama-3-8B"
  ModelConfig config;       // as ModelConfigFromHfConfig would read its config.json
};

// Every known shape, in the order `tessera synthesize --list` prints them.
const std::vector<ModelShape>& KnownModelShapes();

// The shape called `name`; INVALID_ARGUMENT listing the known names otherwise.
absl::StatusOr<ModelShape> FindModelShape(std::string_view name);

// "tiny, smollm2-135m, ..." (for messages).
std::string KnownModelShapeNames();

// Parameters of a Llama model with `config`, counted as Hugging Face does: embedding, LM head
// unless tied, attention and MLP matrices, norms (no rope_freqs tensor).
int64_t ParameterCount(const ModelConfig& config);

}  // namespace tessera
