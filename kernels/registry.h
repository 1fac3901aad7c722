// The only place that knows which backends exist. Names: "cpu" (SIMD kernels chosen for this
// CPU at run time), "cpu-reference" (scalar reference that defines the results) and, when
// built with CUDA and a device is present, "cuda".
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/ops.h"

namespace tessera {

struct BackendOptions {
  // Deterministic (batch-invariant) mode: every output row of an op is computed the same way
  // whatever the batch around it, so a request's tokens do not depend on what it is batched
  // with. "cpu-reference" always is; "cpu" then gives up its 4-row MatMul kernels (see
  // docs/benchmarks.md for the cost).
  bool batch_invariant = false;
  // Whether "cpu" repacks Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 weights at load into its interleaved layout
  // (kernels/cpu/packed_weights.h) where this CPU has the kernel for it. false: the weights
  // are read straight from the mapped file (less load time, slower GEMMs).
  bool pack_weights = true;
  // Whether "cuda" keeps the layers' F32 / F16 / BF16 matrices as FP8 (E4M3) with a scale per
  // row: half of their BF16 memory and decode traffic, at FP8's precision
  // (CudaBackendOptions; the vocabulary matrices keep their dtype). The CPU
  // backends have no FP8 kernels and refuse it (INVALID_ARGUMENT).
  bool fp8_weights = false;
};

// "cuda" is experimental until its GPU tests have passed on a GPU: without this environment
// variable set to 1 it answers UNIMPLEMENTED saying so.
inline constexpr char kExperimentalCudaVariable[] = "TESSERA_EXPERIMENTAL_CUDA";

// INVALID_ARGUMENT for an unknown name; UNAVAILABLE when the backend exists but cannot run
// here (e.g. "cuda" without a GPU). `num_threads` 0 = all hardware threads.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::string_view name, int num_threads = 0,
                                                       BackendOptions options = {});
std::vector<std::string> AvailableBackends();

}  // namespace tessera
