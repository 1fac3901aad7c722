// What the coordinator needs to serve a model, read from its weight store: shapes, the
// GGUF's tokenizer and chat template, and the planner's FFN split boundary. Shared by
// `tessera serve` (which has loaded the model) and tessera-coordinator (which loads none).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "coordinator/model_registry.h"
#include "formats/weight_store.h"
#include "tokenizer/tokenizer.h"

namespace tessera {

struct ServedModelOptions {
  std::string name;
  // A chat format name or Jinja template file; empty: the model's own. A file that fails
  // to load is an error; a model without a template only makes "messages" requests fail.
  std::string chat_template_file;
  int64_t default_max_new_tokens = 0;
  // The model's tokenizer when the caller has it already; null: built from the GGUF.
  std::shared_ptr<const Tokenizer> tokenizer;
};

// INVALID_ARGUMENT when the store is not a GGUF file (the tokenizer lives there), or the
// errors of building its tokenizer or reading --chat-template.
[[nodiscard]] absl::StatusOr<ServedModelSpec> ServedModelSpecFromStore(const WeightStore& store,
                                                                       ServedModelOptions options);

// The same for `--model random:SHAPE[:DTYPE[:LAYERS]]` without writing the model: its
// synthesized config, synthetic tokenizer and ChatML template (or options.chat_template_file),
// FFN split on the dtype's blocks. INVALID_ARGUMENT naming --model for a bad argument.
[[nodiscard]] absl::StatusOr<ServedModelSpec> ServedModelSpecForRandomModel(
    std::string_view model, ServedModelOptions options);

}  // namespace tessera
