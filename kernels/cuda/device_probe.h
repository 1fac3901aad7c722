// What the CUDA runtime reports about this machine. Works in every build: without CUDA
// (TESSERA_HAVE_CUDA off) the probe answers UNAVAILABLE "built without CUDA".
// Thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace tessera {

struct CudaDeviceInfo {
  int ordinal = 0;
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  int multiprocessors = 0;  // streaming multiprocessors (SMs)
  int64_t total_bytes = 0;
  int64_t free_bytes = 0;
};

// True when this binary contains CUDA code.
bool CudaCompiledIn();

// Number of visible CUDA devices. UNAVAILABLE when CUDA is not compiled in or the runtime
// reports no driver/device (the message carries the runtime's reason).
absl::StatusOr<int> CudaDeviceCount();

// Name, capability and memory of device `ordinal`; INVALID_ARGUMENT for a bad ordinal. The
// calling thread's current device is left as it was.
absl::StatusOr<CudaDeviceInfo> ProbeCudaDevice(int ordinal);

// Runs a tiny kernel on device `ordinal` (fills and increments a buffer) and checks the
// result on the host: proves that code for this GPU's architecture was built and runs.
absl::Status CudaSmokeTest(int ordinal);

}  // namespace tessera
