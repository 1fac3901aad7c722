// Communicator: the collectives and point-to-point messages of one group of ranks (a tensor
// group, a pipeline group, or the world), behind one interface so that the model and the
// worker do not know whether they run alone (LocalCommunicator), over MPI on CPUs
// (MpiCommunicator) or over NCCL on GPUs. Buffers are host memory for these two.
//
// Every member of the group must make the same collective calls in the same order with the
// same sizes; Send/Recv pair up by (peer, tag). A communicator is used by one thread at a
// time. Errors are absl::Status (UNAVAILABLE when a peer is gone, INVALID_ARGUMENT for bad
// sizes or ranks), never an abort.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tessera {

enum class ReduceOp { kSum, kMax };

// A send under way (Communicator::StartSend); it owns the bytes it sends. Destroying one that
// has not completed abandons it: the transport may still read the bytes, so they are leaked
// rather than freed (only error paths do this; waiting there could hang on a stuck peer).
class PendingSend {
 public:
  virtual ~PendingSend() = default;
  // True once the receiver has the bytes or the transport holds its own copy; never blocks.
  [[nodiscard]] virtual absl::StatusOr<bool> Done() = 0;
  // Blocks until the send has completed.
  [[nodiscard]] virtual absl::Status Wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  // This rank's index in the group, and the group's size.
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // True when the buffers of the calls below are device memory (NCCL), false for host
  // memory (the default). The model runs tensor parallelism on a device backend only over
  // a communicator whose buffers are device memory.
  virtual bool device_buffers() const { return false; }

  // Every member ends with the element-wise reduction of all members' `data`.
  [[nodiscard]] virtual absl::Status AllReduce(std::span<float> data, ReduceOp op) = 0;
  // `in` holds size() equal chunks; member r receives the sum of every member's chunk r.
  [[nodiscard]] virtual absl::Status ReduceScatter(std::span<const float> in,
                                                   std::span<float> out) = 0;
  // `out` receives every member's `in`, in rank order (out.size() == size() * in.size()).
  [[nodiscard]] virtual absl::Status AllGather(std::span<const float> in,
                                               std::span<float> out) = 0;
  // Every member ends with member `root`'s bytes.
  [[nodiscard]] virtual absl::Status Broadcast(std::span<std::byte> data, int root) = 0;
  [[nodiscard]] virtual absl::Status Send(std::span<const std::byte> data, int dst, int tag) = 0;
  [[nodiscard]] virtual absl::Status Recv(std::span<std::byte> data, int src, int tag) = 0;
  [[nodiscard]] virtual absl::Status Barrier() = 0;
  // Send without waiting for the receiver, where the transport can (MPI_Isend): how a
  // pipeline stage hands on its output and goes on with the next batch while the receiver
  // is still busy. Messages to one peer with one tag still arrive in order. This default
  // sends at once (blocking) and returns a completed send.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<PendingSend>> StartSend(
      std::vector<std::byte> data, int dst, int tag);
};

// A group of one: collectives copy or do nothing; Send/Recv have no peer (INVALID_ARGUMENT).
class LocalCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  absl::Status AllReduce(std::span<float> data, ReduceOp op) override;
  absl::Status ReduceScatter(std::span<const float> in, std::span<float> out) override;
  absl::Status AllGather(std::span<const float> in, std::span<float> out) override;
  absl::Status Broadcast(std::span<std::byte> data, int root) override;
  absl::Status Send(std::span<const std::byte> data, int dst, int tag) override;
  absl::Status Recv(std::span<std::byte> data, int src, int tag) override;
  absl::Status Barrier() override { return absl::OkStatus(); }
};

// The size checks every implementation shares (INVALID_ARGUMENT naming the argument).
[[nodiscard]] absl::Status CheckReduceScatterSizes(const Communicator& c, size_t in, size_t out);
[[nodiscard]] absl::Status CheckAllGatherSizes(const Communicator& c, size_t in, size_t out);
[[nodiscard]] absl::Status CheckPeer(const Communicator& c, int peer, const char* what);

}  // namespace tessera
