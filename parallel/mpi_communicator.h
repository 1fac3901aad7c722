// Communicators over Open MPI, for CPU ranks launched by `mpirun` (and for the bootstrap of
// GPU ranks). MpiRuntime owns MPI's initialization; MpiCommunicator owns one MPI
// communicator (a duplicate of the world, or a split of it) and frees it when destroyed.
// MPI errors come back as absl::Status (the communicators return errors instead of
// aborting); UNAVAILABLE when a peer is unreachable.
#pragma once

#include <memory>
#include <span>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"

namespace tessera {

class MpiRuntime {
 public:
  // MPI_Init_thread (funneled: MPI is called from one thread at a time); FAILED_PRECONDITION
  // if MPI was already initialized by someone else.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<MpiRuntime>> Init(int* argc, char*** argv);
  ~MpiRuntime();  // MPI_Finalize
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }

 private:
  MpiRuntime(int rank, int size) : world_rank_(rank), world_size_(size) {}
  int world_rank_;
  int world_size_;
};

class MpiCommunicator : public Communicator {
 public:
  // Every rank of the job (MPI_Comm_dup of MPI_COMM_WORLD). Needs an MpiRuntime.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<MpiCommunicator>> World();
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  // Collective over this group: members passing the same `color` form a new group, ordered
  // by `key` (MPI_Comm_split).
  [[nodiscard]] absl::StatusOr<std::unique_ptr<MpiCommunicator>> Split(int color, int key) const;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  absl::Status AllReduce(std::span<float> data, ReduceOp op) override;
  absl::Status ReduceScatter(std::span<const float> in, std::span<float> out) override;
  absl::Status AllGather(std::span<const float> in, std::span<float> out) override;
  absl::Status Broadcast(std::span<std::byte> data, int root) override;
  absl::Status Send(std::span<const std::byte> data, int dst, int tag) override;
  absl::Status Recv(std::span<std::byte> data, int src, int tag) override;
  absl::Status Barrier() override;
  // MPI_Isend; Done is MPI_Test and Wait MPI_Wait.
  absl::StatusOr<std::unique_ptr<PendingSend>> StartSend(std::vector<std::byte> data, int dst,
                                                         int tag) override;

 private:
  struct Handle;  // the MPI_Comm, kept out of this header
  explicit MpiCommunicator(std::unique_ptr<Handle> handle);

  std::unique_ptr<Handle> handle_;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace tessera
