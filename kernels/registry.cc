#include "kernels/registry.h"

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/reference_backend.h"
#include "kernels/cuda/device_probe.h"

namespace tessera {

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::string_view name, int num_threads,
                                                       BackendOptions options) {
  if (num_threads < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "kernels/registry: num_threads=%d must be >= 0 (0 = hardware threads)", num_threads));
  }
  if (name == "cpu") {
    return std::unique_ptr<Backend>(
        new CpuBackend(num_threads, /*kernels=*/nullptr, options.batch_invariant,
                       options.pack_weights));
  }
  if (name == "cpu-reference") return std::unique_ptr<Backend>(new ReferenceBackend(num_threads));
  if (name == "cuda") {
    const absl::StatusOr<int> count = CudaDeviceCount();
    if (!count.ok()) {
      return absl::UnavailableError(
          absl::StrFormat("kernels/registry: backend 'cuda': %s", count.status().message()));
    }
    // The device is there and CudaBackend implements the ops over device memory, but the
    // model still keeps its activations and caches in host memory (docs/architecture.md).
    return absl::UnimplementedError(
        "kernels/registry: backend 'cuda': the model cannot run on it yet (its activations "
        "and KV cache live in host memory; kernels/cuda/cuda_backend.h)");
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("kernels/registry: unknown backend name '%s' (available: %s)", name,
                      absl::StrJoin(AvailableBackends(), ", ")));
}

std::vector<std::string> AvailableBackends() {
  // Only backends that CreateBackend can return here; "cuda" joins once the model can run
  // on it.
  return {"cpu", "cpu-reference"};
}

}  // namespace tessera
