// NcclCommunicator on one GPU (label `gpu`): joining a group of one through the bootstrap
// and running a collective. Skips, reported as skipped, without a CUDA device.
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/device_probe.h"
#include "parallel/nccl_communicator.h"

namespace tessera {
namespace {

TEST(NcclCommunicatorTest, GroupOfOneOnTheFirstGpu) {
  LocalCommunicator bootstrap;
  if (!CudaDeviceCount().ok()) {
    EXPECT_EQ(NcclCommunicator::Create(bootstrap, 0).status().code(),
              absl::StatusCode::kUnavailable);
    GTEST_SKIP() << "no CUDA device: " << CudaDeviceCount().status();
  }
  auto nccl = NcclCommunicator::Create(bootstrap, 0);
  ASSERT_TRUE(nccl.ok()) << nccl.status();
  EXPECT_EQ((*nccl)->size(), 1);
  EXPECT_TRUE((*nccl)->Barrier().ok());
  std::vector<float> host(3);
  EXPECT_EQ((*nccl)->AllGather(host, std::span<float>(host.data(), 2)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NcclCommunicator::Create(bootstrap, 1 << 20).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera
