#include "kernels/registry.h"

#include <algorithm>
#include <string>

#include "gtest/gtest.h"
#include "kernels/cuda/device_probe.h"

namespace tessera {
namespace {

TEST(RegistryTest, CreatesEveryAvailableBackendUnderItsName) {
  const std::vector<std::string> names = AvailableBackends();
  EXPECT_NE(std::find(names.begin(), names.end(), "cpu"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "cpu-reference"), names.end());
  for (const std::string& name : names) {
    absl::StatusOr<std::unique_ptr<Backend>> be = CreateBackend(name, 2);
    ASSERT_TRUE(be.ok()) << name << ": " << be.status();
    EXPECT_EQ((*be)->name(), name);
  }
}

TEST(RegistryTest, UnknownNameIsInvalidArgumentAndListsChoices) {
  const absl::StatusOr<std::unique_ptr<Backend>> be = CreateBackend("tpu");
  EXPECT_EQ(be.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(be.status().message().find("'tpu'"), std::string::npos) << be.status();
  EXPECT_NE(be.status().message().find("cpu-reference"), std::string::npos) << be.status();
}

TEST(RegistryTest, NegativeThreadCountIsInvalidArgument) {
  const absl::StatusOr<std::unique_ptr<Backend>> be = CreateBackend("cpu", -1);
  EXPECT_EQ(be.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(be.status().message().find("num_threads"), std::string::npos) << be.status();
}

TEST(RegistryTest, Fp8WeightsAreRefusedByTheCpuBackends) {
  for (const char* name : {"cpu", "cpu-reference"}) {
    const absl::StatusOr<std::unique_ptr<Backend>> be =
        CreateBackend(name, 1, {.fp8_weights = true});
    EXPECT_EQ(be.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_NE(be.status().message().find("FP8 weights need the 'cuda' backend"),
              std::string::npos)
        << be.status();
  }
}

TEST(RegistryTest, CudaIsUnavailableWithoutADeviceAndNeverFaked) {
  const absl::StatusOr<std::unique_ptr<Backend>> be = CreateBackend("cuda");
  ASSERT_FALSE(be.ok());
  if (!CudaDeviceCount().ok()) {
    EXPECT_EQ(be.status().code(), absl::StatusCode::kUnavailable) << be.status();
    EXPECT_NE(be.status().message().find("no CUDA device"), std::string::npos) << be.status();
  } else {
    EXPECT_EQ(be.status().code(), absl::StatusCode::kUnimplemented) << be.status();
    EXPECT_NE(be.status().message().find(kExperimentalCudaVariable), std::string::npos);
  }
}

TEST(RegistryTest, ExperimentalCudaNeedsADevice) {
  ASSERT_EQ(setenv(kExperimentalCudaVariable, "1", 1), 0);
  absl::StatusOr<std::unique_ptr<Backend>> be = CreateBackend("cuda");
  if (!CudaDeviceCount().ok()) {
    EXPECT_EQ(be.status().code(), absl::StatusCode::kUnavailable) << be.status();
  } else {
    ASSERT_TRUE(be.ok()) << be.status();
    EXPECT_EQ((*be)->name(), "cuda");
    EXPECT_FALSE((*be)->host_addressable());
    be = CreateBackend("cuda", 0, {.batch_invariant = true});
    EXPECT_TRUE(be.ok()) << be.status();
    be = CreateBackend("cuda", 0, {.fp8_weights = true});
    EXPECT_TRUE(be.ok()) << be.status();
  }
  unsetenv(kExperimentalCudaVariable);
}

}  // namespace
}  // namespace tessera
