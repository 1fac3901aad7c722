// NcclCommunicator: the Communicator of GPU ranks, over NCCL from the CUDA toolkit. Buffers
// are device memory of this rank's GPU (std::span of device pointers); each call enqueues on
// the communicator's stream and waits for it, so a returned call's results are in place.
// Tags of Send/Recv are not used (NCCL pairs messages by order between two peers).
//
// Created collectively: rank 0 of `bootstrap` makes the NCCL unique id and broadcasts it
// over MPI (DESIGN.md §5), every member selects GPU `device` and joins. UNAVAILABLE where the
// build has no CUDA or the machine no GPU; tests carry the `gpu` label and skip then.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"

namespace tessera {

class NcclCommunicator : public Communicator {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Create(
      Communicator& bootstrap, int device);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool device_buffers() const override { return true; }
  absl::Status AllReduce(std::span<float> data, ReduceOp op) override;
  absl::Status ReduceScatter(std::span<const float> in, std::span<float> out) override;
  absl::Status AllGather(std::span<const float> in, std::span<float> out) override;
  absl::Status Broadcast(std::span<std::byte> data, int root) override;
  absl::Status Send(std::span<const std::byte> data, int dst, int tag) override;
  absl::Status Recv(std::span<std::byte> data, int src, int tag) override;
  absl::Status Barrier() override;

 private:
  struct Handle;  // ncclComm_t, cudaStream_t: kept out of this header
  NcclCommunicator(std::unique_ptr<Handle> handle, int rank, int size);

  std::unique_ptr<Handle> handle_;
  int rank_;
  int size_;
};

}  // namespace tessera
