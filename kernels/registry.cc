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
    // CudaBackend (kernels/cuda/cuda_backend.h) and the model's device-memory path exist,
    // but neither has run on a GPU yet: it is handed out once tests/model/cuda_model_test.cc
    // and the kernel tests pass on one (docs/architecture.md).
    return absl::UnimplementedError(
        "kernels/registry: backend 'cuda': not enabled until its GPU tests have passed on a "
        "GPU (kernels/cuda/cuda_backend.h)");
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
