// `tessera devices`: what this machine offers the backends: whether the binary has CUDA code,
// each visible GPU (name, compute capability, multiprocessors, free / total memory) and,
// with --smoke, whether a kernel built into the binary runs on it. Exit 0 when at least one
// GPU is usable, 1 when none is (the reason on stderr): a setup check before
// `--backend cuda`.
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "kernels/cuda/device_probe.h"
#include "tools/cli_util.h"
#include "tools/command.h"

namespace tessera {
namespace {

constexpr std::string_view kName = "devices";

struct DevicesOptions {
  bool smoke = false;
};

int RunDevices(const DevicesOptions& o) {
  if (!CudaCompiledIn()) {
    return Fail(kName, "this binary was built without CUDA: only the cpu backends can run",
                kExitFailure);
  }
  const absl::StatusOr<int> count = CudaDeviceCount();
  if (!count.ok()) return Fail(kName, std::string(count.status().message()), kExitFailure);
  int usable = 0;
  for (int d = 0; d < *count; ++d) {
    const absl::StatusOr<CudaDeviceInfo> info = ProbeCudaDevice(d);
    if (!info.ok()) {
      std::printf("GPU %d: %s\n", d, std::string(info.status().message()).c_str());
      continue;
    }
    constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
    std::printf("GPU %d: %s, compute %d.%d, %d SMs, %.1f GiB free of %.1f GiB", d,
                info->name.c_str(), info->compute_major, info->compute_minor,
                info->multiprocessors, info->free_bytes / kGiB, info->total_bytes / kGiB);
    if (o.smoke) {
      const absl::Status smoke = CudaSmokeTest(d);
      std::printf(", kernels %s", smoke.ok() ? "run" : std::string(smoke.message()).c_str());
      if (!smoke.ok()) {
        std::printf("\n");
        continue;
      }
    }
    std::printf("\n");
    ++usable;
  }
  if (usable == 0) return Fail(kName, "no usable GPU", kExitFailure);
  return kExitOk;
}

}  // namespace

Command AddDevicesCommand(CLI::App& root) {
  auto o = std::make_shared<DevicesOptions>();
  CLI::App* app = root.add_subcommand(
      "devices", "List the GPUs the cuda backend can use (exit 1 when there is none)");
  app->add_flag("--smoke", o->smoke, "also run a tiny kernel on each GPU");
  return {app, [o] { return RunDevices(*o); }};
}

}  // namespace tessera
