// MpiCommunicator under a real `mpirun --oversubscribe -np 4` (see tests/parallel/CMakeLists.txt):
// every rank runs these tests; the world, and tp x pp groups split as the worker will split
// them (Topology: tp 2 x pp 2), must give the collectives' exact results.
#include <cstddef>
#include <cstdio>
#include <memory>
#include <string>
#include <numeric>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallel/mpi_communicator.h"
#include "parallel/stage_link.h"
#include "parallel/topology.h"

namespace tessera {
namespace {

using ::testing::ElementsAreArray;

std::unique_ptr<MpiCommunicator> World() {
  auto w = MpiCommunicator::World();
  EXPECT_TRUE(w.ok()) << w.status();
  return std::move(w).value();
}

TEST(MpiCommunicatorTest, WorldCollectives) {
  auto world = World();
  const int n = world->size();
  const int r = world->rank();
  ASSERT_GE(n, 2) << "run under mpirun -np >= 2";

  std::vector<float> sum = {static_cast<float>(r), 1.0f, static_cast<float>(r * r)};
  ASSERT_TRUE(world->AllReduce(sum, ReduceOp::kSum).ok());
  EXPECT_EQ(sum[0], static_cast<float>(n * (n - 1) / 2));
  EXPECT_EQ(sum[1], static_cast<float>(n));
  std::vector<float> max = {static_cast<float>(r)};
  ASSERT_TRUE(world->AllReduce(max, ReduceOp::kMax).ok());
  EXPECT_EQ(max[0], static_cast<float>(n - 1));

  // ReduceScatter: chunk c of every rank holds (rank + c); rank r receives sum over ranks.
  std::vector<float> in(static_cast<size_t>(2 * n));
  for (int c = 0; c < n; ++c) in[2 * c] = in[2 * c + 1] = static_cast<float>(r + c);
  std::vector<float> out(2);
  ASSERT_TRUE(world->ReduceScatter(in, out).ok());
  EXPECT_EQ(out[0], static_cast<float>(n * (n - 1) / 2 + n * r));

  std::vector<float> mine = {static_cast<float>(10 * r), static_cast<float>(10 * r + 1)};
  std::vector<float> all(static_cast<size_t>(2 * n));
  ASSERT_TRUE(world->AllGather(mine, all).ok());
  for (int k = 0; k < n; ++k) {
    EXPECT_EQ(all[2 * k], 10.0f * k);
    EXPECT_EQ(all[2 * k + 1], 10.0f * k + 1);
  }

  std::vector<std::byte> bytes(5, std::byte{0});
  if (r == 1) bytes.assign(5, std::byte{42});
  ASSERT_TRUE(world->Broadcast(bytes, 1).ok());
  EXPECT_EQ(bytes[4], std::byte{42});
  ASSERT_TRUE(world->Barrier().ok());
}

TEST(MpiCommunicatorTest, SendRecvRing) {
  auto world = World();
  const int n = world->size();
  const int r = world->rank();
  std::vector<std::byte> out(8, static_cast<std::byte>(r)), in(8);
  // Even ranks send first, odd ones receive first: no deadlock with blocking calls.
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  if (r % 2 == 0) {
    ASSERT_TRUE(world->Send(out, next, 7).ok());
    ASSERT_TRUE(world->Recv(in, prev, 7).ok());
  } else {
    ASSERT_TRUE(world->Recv(in, prev, 7).ok());
    ASSERT_TRUE(world->Send(out, next, 7).ok());
  }
  EXPECT_EQ(in[0], static_cast<std::byte>(prev));
  EXPECT_EQ(world->Send(out, r, 0).code(), absl::StatusCode::kInvalidArgument) << "to itself";
  std::vector<float> wrong(3);
  EXPECT_EQ(world->AllGather(wrong, wrong).code(), absl::StatusCode::kInvalidArgument);
}

TEST(MpiCommunicatorTest, StartedSendsDoNotWaitForTheReceiver) {
  auto world = World();
  const int n = world->size();
  const int r = world->rank();
  // Every rank starts large sends (past any eager limit) to every other rank, in two
  // messages per peer with one tag, before anyone receives: with blocking sends this would
  // deadlock. Then each receives in order and checks both messages arrived in order.
  constexpr size_t kBytes = 1 << 20;
  std::vector<std::unique_ptr<PendingSend>> sends;
  for (int peer = 0; peer < n; ++peer) {
    if (peer == r) continue;
    for (int k = 0; k < 2; ++k) {
      auto send = world->StartSend(
          std::vector<std::byte>(kBytes, static_cast<std::byte>(16 * r + k)), peer, 9);
      ASSERT_TRUE(send.ok()) << send.status();
      sends.push_back(std::move(send).value());
    }
  }
  std::vector<std::byte> in(kBytes);
  for (int peer = 0; peer < n; ++peer) {
    if (peer == r) continue;
    for (int k = 0; k < 2; ++k) {
      ASSERT_TRUE(world->Recv(in, peer, 9).ok());
      EXPECT_EQ(in.front(), static_cast<std::byte>(16 * peer + k));
      EXPECT_EQ(in.back(), static_cast<std::byte>(16 * peer + k));
    }
  }
  for (auto& send : sends) {
    ASSERT_TRUE(send->Wait().ok());
    auto done = send->Done();
    ASSERT_TRUE(done.ok() && *done);
  }
  EXPECT_EQ(world->StartSend({}, r, 9).status().code(), absl::StatusCode::kInvalidArgument)
      << "to itself";
  ASSERT_TRUE(world->Barrier().ok());
}

TEST(MpiCommunicatorTest, TensorAndPipelineGroupsFollowTheTopology) {
  auto world = World();
  if (world->size() != 4) GTEST_SKIP() << "needs 4 ranks for tp 2 x pp 2";
  auto topo = Topology::Create(4, world->rank(), 2, 2);
  ASSERT_TRUE(topo.ok());
  auto tensor = world->Split(topo->stage(), topo->tp_rank());
  auto pipeline = world->Split(topo->tp_rank(), topo->stage());
  ASSERT_TRUE(tensor.ok() && pipeline.ok());
  EXPECT_EQ((*tensor)->size(), 2);
  EXPECT_EQ((*tensor)->rank(), topo->tp_rank());
  EXPECT_EQ((*pipeline)->rank(), topo->stage());
  // Sum of world ranks over each tensor group: the TensorGroup() members.
  std::vector<float> v = {static_cast<float>(world->rank())};
  ASSERT_TRUE((*tensor)->AllReduce(v, ReduceOp::kSum).ok());
  const std::vector<int> group = topo->TensorGroup();
  EXPECT_EQ(v[0], static_cast<float>(std::accumulate(group.begin(), group.end(), 0)));
}

// Activations flow stage 0 -> 1 -> ... through StageLink, each stage adding its index.
TEST(StageLinkTest, ActivationsFlowDownThePipeline) {
  auto world = World();
  StageLink link(world.get());
  Activations a;
  if (link.has_previous()) {
    auto received = link.ReceivePrevious();
    ASSERT_TRUE(received.ok()) << received.status();
    a = *std::move(received);
    EXPECT_EQ(a.micro_batch, 5);
    ASSERT_EQ(a.rows, 2);
    ASSERT_EQ(a.cols, 3);
    EXPECT_EQ(a.data[5], static_cast<float>(5 + (world->rank() - 1) * world->rank() / 2));
  } else {
    a = {5, 2, 3, {0, 1, 2, 3, 4, 5}};
    EXPECT_EQ(link.ReceivePrevious().status().code(), absl::StatusCode::kFailedPrecondition);
  }
  for (float& x : a.data) x += static_cast<float>(world->rank());
  if (link.has_next()) {
    Activations bad = a;
    bad.data.pop_back();
    EXPECT_EQ(link.SendNext(bad).code(), absl::StatusCode::kInvalidArgument);
    ASSERT_TRUE(link.SendNext(a).ok());
  } else {
    EXPECT_EQ(link.SendNext(a).code(), absl::StatusCode::kFailedPrecondition);
  }
}

}  // namespace
}  // namespace tessera
