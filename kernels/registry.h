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

// INVALID_ARGUMENT for an unknown name; UNAVAILABLE when the backend exists but cannot run
// here (e.g. "cuda" without a GPU). `num_threads` 0 = all hardware threads.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::string_view name, int num_threads = 0);
std::vector<std::string> AvailableBackends();

}  // namespace tessera
