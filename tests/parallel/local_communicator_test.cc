#include <cstddef>
#include <vector>

#include "gtest/gtest.h"
#include "parallel/communicator.h"

namespace tessera {
namespace {

TEST(LocalCommunicatorTest, AGroupOfOne) {
  LocalCommunicator c;
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.size(), 1);
  std::vector<float> v = {1.0f, 2.0f};
  ASSERT_TRUE(c.AllReduce(v, ReduceOp::kSum).ok());
  EXPECT_EQ(v[1], 2.0f);
  std::vector<float> out(2);
  ASSERT_TRUE(c.ReduceScatter(v, out).ok());
  EXPECT_EQ(out, v);
  ASSERT_TRUE(c.AllGather(v, out).ok());
  EXPECT_EQ(out, v);
  std::vector<float> wrong(3);
  EXPECT_EQ(c.AllGather(v, wrong).code(), absl::StatusCode::kInvalidArgument);
  std::vector<std::byte> bytes(4);
  EXPECT_TRUE(c.Broadcast(bytes, 0).ok());
  EXPECT_EQ(c.Broadcast(bytes, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.Send(bytes, 1, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.Recv(bytes, 0, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.StartSend(bytes, 1, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(c.Barrier().ok());
}

}  // namespace
}  // namespace tessera
