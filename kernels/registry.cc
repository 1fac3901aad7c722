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
    // The device is there; the CUDA backend's ops come with their own issue.
    return absl::UnimplementedError(
        "kernels/registry: backend 'cuda': the CUDA ops are not implemented yet");
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("kernels/registry: unknown backend name '%s' (available: %s)", name,
                      absl::StrJoin(AvailableBackends(), ", ")));
}

std::vector<std::string> AvailableBackends() {
  // Only backends that CreateBackend can return here; "cuda" joins once it has ops.
  return {"cpu", "cpu-reference"};
}

}  // namespace tessera
