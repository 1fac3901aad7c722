// Random-weight Llama models in a named shape (formats/model_shapes.h), written as GGUF files
// that the rest of Tessera opens like any other model: llama.* metadata, a synthetic
// byte-level BPE tokenizer (tokenizer/synthetic_vocab.h), and every weight a tensor of the
// real model's shape. For benchmarks and tests where real weights cannot be fetched.
//
// Weights: matrices (token embedding and LM head included) are uniform with standard
// deviation 1/sqrt(fan_in), so activations keep their scale through any number of layers
// and the logits have a standard deviation near 1; norms are 1 (f32); Llama-3.2 shapes get
// their `rope_freqs.weight`. Each row's values come from a counter-based generator keyed by
// (seed, tensor name, row): the bytes depend only on the options, never on the thread
// count, and a model synthesized with fewer layers holds exactly the first layers of the
// full one. The file is streamed tensor by tensor, so memory stays small for any size.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "formats/model_config.h"
#include "formats/model_shapes.h"
#include "formats/synthesis_spec.h"

namespace tessera {

// Bytes of tensor data in the file (its size less the header and padding).
absl::StatusOr<int64_t> SynthesizedTensorBytes(const SynthesisOptions& options);

// Called as tensor data is written: bytes so far, and their total.
using SynthesisProgress = std::function<void(int64_t done_bytes, int64_t total_bytes)>;

// Writes the model to `path`. INVALID_ARGUMENT as SynthesizedConfig; INTERNAL naming the
// path on I/O failure (a partial file may be left behind).
[[nodiscard]] absl::Status SynthesizeModel(const SynthesisOptions& options,
                                           const std::string& path,
                                           const SynthesisProgress& progress = nullptr);

}  // namespace tessera
