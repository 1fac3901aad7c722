// tools/local_gpu.h: which GPU a worker rank narrows CUDA_VISIBLE_DEVICES to.
#include "tools/local_gpu.h"

#include "gtest/gtest.h"

namespace tessera {
namespace {

TEST(LocalGpuTest, UnsetVisibilityBecomesTheLocalRank) {
  EXPECT_EQ(LocalGpuVisibility(nullptr, "0"), "0");
  EXPECT_EQ(LocalGpuVisibility(nullptr, "3"), "3");
}

TEST(LocalGpuTest, AListOfDevicesGivesTheLocalRanksEntry) {
  EXPECT_EQ(LocalGpuVisibility("4,5,6,7", "1"), "5");
  EXPECT_EQ(LocalGpuVisibility("GPU-aa,GPU-bb", "3"), "GPU-bb");  // wraps around
}

TEST(LocalGpuTest, OneGivenDeviceOrNoLocalRankIsLeftAlone) {
  EXPECT_EQ(LocalGpuVisibility("2", "1"), std::nullopt);
  EXPECT_EQ(LocalGpuVisibility(nullptr, nullptr), std::nullopt);
  EXPECT_EQ(LocalGpuVisibility("0,1", nullptr), std::nullopt);
  EXPECT_EQ(LocalGpuVisibility(nullptr, "x"), std::nullopt);
  EXPECT_EQ(LocalGpuVisibility(nullptr, "-1"), std::nullopt);
}

TEST(LocalGpuTest, ReplicasGetConsecutiveSharesOfTheDevices) {
  EXPECT_EQ(ReplicaGpus(nullptr, 0, 2), "0,1");
  EXPECT_EQ(ReplicaGpus(nullptr, 1, 2), "2,3");
  EXPECT_EQ(ReplicaGpus("4,5,6,7", 1, 2), "6,7");
  EXPECT_EQ(ReplicaGpus("4,5,6,7", 0, 4), "4,5,6,7");
  EXPECT_EQ(ReplicaGpus("4,5,6", 1, 2), std::nullopt);  // too few for replica 1
}

}  // namespace
}  // namespace tessera
