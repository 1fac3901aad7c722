// NcclCommunicator in a build without CUDA: Create says so; nothing else can be reached.
#include "parallel/nccl_communicator.h"

namespace tessera {

struct NcclCommunicator::Handle {};

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(Communicator&, int) {
  return absl::UnavailableError("NcclCommunicator: this build has no CUDA (TESSERA_CUDA=OFF)");
}

NcclCommunicator::~NcclCommunicator() = default;
NcclCommunicator::NcclCommunicator(std::unique_ptr<Handle> handle, int rank, int size)
    : handle_(std::move(handle)), rank_(rank), size_(size) {}

absl::Status NcclCommunicator::AllReduce(std::span<float>, ReduceOp) {
  return absl::UnavailableError("no CUDA");
}
absl::Status NcclCommunicator::ReduceScatter(std::span<const float>, std::span<float>) {
  return absl::UnavailableError("no CUDA");
}
absl::Status NcclCommunicator::AllGather(std::span<const float>, std::span<float>) {
  return absl::UnavailableError("no CUDA");
}
absl::Status NcclCommunicator::Broadcast(std::span<std::byte>, int) {
  return absl::UnavailableError("no CUDA");
}
absl::Status NcclCommunicator::Send(std::span<const std::byte>, int, int) {
  return absl::UnavailableError("no CUDA");
}
absl::Status NcclCommunicator::Recv(std::span<std::byte>, int, int) {
  return absl::UnavailableError("no CUDA");
}
absl::Status NcclCommunicator::Barrier() { return absl::UnavailableError("no CUDA"); }

}  // namespace tessera
