// Text-level stop strings for requests that run through the engine (worker/batch_runner.h):
// the worker holds token ids only, so the CLI hands it a check that decodes them, and cuts
// each finished completion's text before the first stop string.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace tessera {

// WorkerRequest::stops_at for `stops` (non-empty, validated): true once the generated
// ids decode to text that holds one of them. `tokenizer` must outlive the request.
std::function<bool(std::span<const int32_t> generated)> StopsAtText(const Tokenizer* tokenizer,
                                                                    std::vector<std::string> stops);

// Cuts `text` before the first of `stops` (the stop string is not part of the output).
void TrimAtStopString(const std::vector<std::string>& stops, std::string& text);

}  // namespace tessera
