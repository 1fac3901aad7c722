// Flags that choose how a backend holds the weights, shared by `tessera generate`, `tessera
// serve`, `tessera launch` and tessera-worker.
#pragma once

#include "CLI/CLI.hpp"

namespace tessera {

// --quantization {none,fp8}: fp8 keeps the layers' F32 / F16 / BF16 matrices as FP8 (E4M3)
// rows with a scale per row on the cuda backend (BackendOptions::fp8_weights); sets
// *fp8_weights. Other values are refused by CLI11 (exit 2, naming the flag).
CLI::Option* AddQuantizationFlag(CLI::App* app, bool* fp8_weights);

}  // namespace tessera
