// GPU test (ctest label `gpu`): probes the CUDA device and runs a tiny kernel on it.
// Skips, reported as skipped, where no device is visible or CUDA is not built.
#include "kernels/cuda/device_probe.h"

#include "gtest/gtest.h"

namespace tessera {
namespace {

TEST(CudaDeviceTest, ProbeAndSmokeKernel) {
  const absl::StatusOr<int> count = CudaDeviceCount();
  if (!count.ok()) GTEST_SKIP() << count.status();
  ASSERT_GT(*count, 0);
  const absl::StatusOr<CudaDeviceInfo> info = ProbeCudaDevice(0);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(info->name.empty());
  EXPECT_GT(info->total_bytes, 0);
  EXPECT_GT(info->free_bytes, 0);
  EXPECT_LE(info->free_bytes, info->total_bytes);
  EXPECT_GE(info->compute_major, 1);
  const absl::Status smoke = CudaSmokeTest(0);
  EXPECT_TRUE(smoke.ok()) << smoke;
}

TEST(CudaDeviceTest, BadOrdinalIsInvalidArgument) {
  const absl::StatusOr<int> count = CudaDeviceCount();
  if (!count.ok()) GTEST_SKIP() << count.status();
  const absl::StatusOr<CudaDeviceInfo> info = ProbeCudaDevice(*count);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(info.status().message().find("ordinal"), std::string::npos) << info.status();
}

TEST(CudaDeviceTest, WithoutCudaTheProbeSaysWhy) {
  if (CudaCompiledIn()) GTEST_SKIP() << "CUDA is compiled in";
  const absl::StatusOr<int> count = CudaDeviceCount();
  EXPECT_EQ(count.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(count.status().message().find("built without CUDA"), std::string::npos) << count.status();
}

}  // namespace
}  // namespace tessera
