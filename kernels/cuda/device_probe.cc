#include "kernels/cuda/device_probe.h"

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kernels/cuda/cuda_runtime_shim.h"

namespace tessera {
namespace {
constexpr size_t kErrLen = 256;
}  // namespace

bool CudaCompiledIn() { return cuda_shim::CompiledIn(); }

absl::StatusOr<int> CudaDeviceCount() {
  int count = 0;
  char error[kErrLen] = {0};
  if (cuda_shim::DeviceCount(&count, error, kErrLen) != 0) {
    return absl::UnavailableError(absl::StrFormat("kernels/cuda: no CUDA device: %s", error));
  }
  if (count == 0) return absl::UnavailableError("kernels/cuda: no CUDA device: count is 0");
  return count;
}

absl::StatusOr<CudaDeviceInfo> ProbeCudaDevice(int ordinal) {
  ASSIGN_OR_RETURN(const int count, CudaDeviceCount());
  if (ordinal < 0 || ordinal >= count) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "kernels/cuda: device ordinal %d is outside [0, %d)", ordinal, count));
  }
  CudaDeviceInfo info;
  info.ordinal = ordinal;
  char name[kErrLen] = {0};
  char error[kErrLen] = {0};
  size_t free_bytes = 0, total_bytes = 0;
  if (cuda_shim::DeviceInfo(ordinal, name, kErrLen, &info.compute_major, &info.compute_minor,
                            &info.multiprocessors, &free_bytes, &total_bytes, error, kErrLen) != 0) {
    return absl::UnavailableError(
        absl::StrFormat("kernels/cuda: device %d cannot be queried: %s", ordinal, error));
  }
  info.name = name;
  info.free_bytes = static_cast<int64_t>(free_bytes);
  info.total_bytes = static_cast<int64_t>(total_bytes);
  return info;
}

absl::Status CudaSmokeTest(int ordinal) {
  RETURN_IF_ERROR(ProbeCudaDevice(ordinal).status());
  bool ok = false;
  char error[kErrLen] = {0};
  if (cuda_shim::SmokeTest(ordinal, 1000, &ok, error, kErrLen) != 0) {
    return absl::InternalError(
        absl::StrFormat("kernels/cuda: smoke kernel failed on device %d: %s", ordinal, error));
  }
  if (!ok) {
    return absl::InternalError(
        absl::StrFormat("kernels/cuda: smoke kernel gave wrong results on device %d", ordinal));
  }
  return absl::OkStatus();
}

}  // namespace tessera
