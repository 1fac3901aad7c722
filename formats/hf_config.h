// Hugging Face `config.json` (LlamaForCausalLM and compatible) -> ModelConfig.
// Accepts rope_scaling {rope_type|type: linear, llama3, yarn, default} or null, head_dim,
// tie_word_embeddings (default false as in LlamaConfig). Float fields are rounded to float32
// (see model_config.h), so that a GGUF conversion of the same model gives an equal config.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "formats/model_config.h"
#include "nlohmann/json.hpp"

namespace tessera {

// `source` names the file in error messages (INVALID_ARGUMENT naming source and field).
absl::StatusOr<ModelConfig> ModelConfigFromHfConfig(const nlohmann::json& config,
                                                    std::string_view source = "config.json");
// Reads and parses `path` (NOT_FOUND if absent, INVALID_ARGUMENT for bad JSON or fields).
absl::StatusOr<ModelConfig> ModelConfigFromHfConfigFile(const std::string& path);

}  // namespace tessera
