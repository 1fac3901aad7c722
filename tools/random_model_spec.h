// `--model random:SHAPE[:DTYPE[:LAYERS]]` (e.g. random:llama-3-8b:bf16, random:tiny:q4_0:1):
// parsing the argument, and the text side of such a model (its synthetic tokenizer) without
// writing it. tessera-coordinator links this alone; tools/random_model.h writes the weights.
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "formats/synthesis_spec.h"
#include "tokenizer/tokenizer.h"

namespace tessera {

inline constexpr std::string_view kRandomModelPrefix = "random:";

// True when `model` starts with "random:".
bool IsRandomModel(std::string_view model);

// The synthesis a random:... argument asks for (seed 0, dtype bf16 unless given);
// INVALID_ARGUMENT naming --model and listing the known shapes or dtypes otherwise.
absl::StatusOr<SynthesisOptions> ParseRandomModel(std::string_view model);

// The tokenizer a random:... model has (its shape's synthetic vocabulary), without writing
// the model: the same token ids as Tokenizer::FromGguf on the synthesized file.
absl::StatusOr<std::unique_ptr<Tokenizer>> RandomModelTokenizer(std::string_view model);

}  // namespace tessera
