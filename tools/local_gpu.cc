#include "tools/local_gpu.h"

#include <cstdlib>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace tessera {
namespace {

// The entries of a CUDA_VISIBLE_DEVICES value (ordinals or UUIDs).
std::vector<std::string> DeviceList(const char* visible) {
  return absl::StrSplit(visible, ',', absl::SkipEmpty());
}

}  // namespace

std::optional<std::string> LocalGpuVisibility(const char* visible, const char* local_rank) {
  int rank = 0;
  if (local_rank == nullptr || !absl::SimpleAtoi(local_rank, &rank) || rank < 0) {
    return std::nullopt;
  }
  if (visible == nullptr) return std::to_string(rank);
  const std::vector<std::string> devices = DeviceList(visible);
  if (devices.size() <= 1) return std::nullopt;
  return devices[static_cast<size_t>(rank) % devices.size()];
}

std::optional<std::string> ReplicaGpus(const char* visible, int replica, int ranks) {
  std::vector<std::string> devices;
  if (visible != nullptr) devices = DeviceList(visible);
  std::vector<std::string> share;
  for (int i = replica * ranks; i < (replica + 1) * ranks; ++i) {
    if (visible == nullptr) {
      share.push_back(std::to_string(i));
    } else if (static_cast<size_t>(i) < devices.size()) {
      share.push_back(devices[static_cast<size_t>(i)]);
    } else {
      return std::nullopt;
    }
  }
  return absl::StrJoin(share, ",");
}

void SelectLocalGpu() {
  const char* local_rank = nullptr;
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "LOCAL_RANK", "SLURM_LOCALID"}) {
    if ((local_rank = std::getenv(name)) != nullptr) break;
  }
  const std::optional<std::string> visible =
      LocalGpuVisibility(std::getenv("CUDA_VISIBLE_DEVICES"), local_rank);
  if (visible.has_value()) setenv("CUDA_VISIBLE_DEVICES", visible->c_str(), /*overwrite=*/1);
}

}  // namespace tessera
