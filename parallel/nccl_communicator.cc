#include "parallel/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace tessera {

// Owns what Create made so far, so that a failure half way frees it too.
struct NcclCommunicator::Handle {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  float* scratch = nullptr;  // one device float for Barrier

  ~Handle() {
    if (comm != nullptr) ncclCommDestroy(comm);
    if (scratch != nullptr) cudaFree(scratch);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};

namespace {

absl::Status FromNccl(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return absl::OkStatus();
  return absl::UnavailableError(absl::StrFormat("NCCL %s failed: %s", what, ncclGetErrorString(r)));
}

absl::Status FromCuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::UnavailableError(absl::StrFormat("CUDA %s failed: %s", what, cudaGetErrorString(e)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(Communicator& bootstrap,
                                                                           int device) {
  // Every member learns whether all could select their GPU (and rank 0 make the id) before
  // anyone waits in NCCL's collective init, so that one failure cannot leave the others
  // waiting for a peer that will never join.
  absl::Status local = [&]() -> absl::Status {
    int count = 0;
    RETURN_IF_ERROR(FromCuda(cudaGetDeviceCount(&count), "cudaGetDeviceCount"));
    if (device < 0 || device >= count) {
      return absl::InvalidArgumentError(
          absl::StrFormat("NcclCommunicator: device %d is outside [0, %d)", device, count));
    }
    return FromCuda(cudaSetDevice(device), "cudaSetDevice");
  }();
  ncclUniqueId id{};
  if (bootstrap.rank() == 0 && local.ok())
    local = FromNccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  std::vector<float> all_ok = {local.ok() ? 1.0f : 0.0f};
  RETURN_IF_ERROR(bootstrap.AllReduce(all_ok, ReduceOp::kSum));
  if (!local.ok()) return local;
  if (all_ok[0] != static_cast<float>(bootstrap.size())) {
    return absl::UnavailableError(
        "NcclCommunicator: another rank could not select its GPU or make the NCCL id");
  }
  RETURN_IF_ERROR(
      bootstrap.Broadcast(std::span<std::byte>(reinterpret_cast<std::byte*>(&id), sizeof(id)), 0));
  auto handle = std::make_unique<Handle>();
  RETURN_IF_ERROR(FromCuda(cudaStreamCreate(&handle->stream), "cudaStreamCreate"));
  RETURN_IF_ERROR(FromCuda(cudaMalloc(&handle->scratch, sizeof(float)), "cudaMalloc"));
  RETURN_IF_ERROR(FromNccl(ncclCommInitRank(&handle->comm, bootstrap.size(), id, bootstrap.rank()),
                           "ncclCommInitRank"));
  return std::unique_ptr<NcclCommunicator>(
      new NcclCommunicator(std::move(handle), bootstrap.rank(), bootstrap.size()));
}

NcclCommunicator::NcclCommunicator(std::unique_ptr<Handle> handle, int rank, int size)
    : handle_(std::move(handle)), rank_(rank), size_(size) {}

NcclCommunicator::~NcclCommunicator() = default;  // the Handle frees the NCCL and CUDA objects

absl::Status NcclCommunicator::AllReduce(std::span<float> data, ReduceOp op) {
  RETURN_IF_ERROR(FromNccl(
      ncclAllReduce(data.data(), data.data(), data.size(), ncclFloat32,
                    op == ReduceOp::kSum ? ncclSum : ncclMax, handle_->comm, handle_->stream),
      "ncclAllReduce"));
  return FromCuda(cudaStreamSynchronize(handle_->stream), "cudaStreamSynchronize");
}

absl::Status NcclCommunicator::ReduceScatter(std::span<const float> in, std::span<float> out) {
  RETURN_IF_ERROR(CheckReduceScatterSizes(*this, in.size(), out.size()));
  RETURN_IF_ERROR(FromNccl(ncclReduceScatter(in.data(), out.data(), out.size(), ncclFloat32,
                                             ncclSum, handle_->comm, handle_->stream),
                           "ncclReduceScatter"));
  return FromCuda(cudaStreamSynchronize(handle_->stream), "cudaStreamSynchronize");
}

absl::Status NcclCommunicator::AllGather(std::span<const float> in, std::span<float> out) {
  RETURN_IF_ERROR(CheckAllGatherSizes(*this, in.size(), out.size()));
  RETURN_IF_ERROR(FromNccl(
      ncclAllGather(in.data(), out.data(), in.size(), ncclFloat32, handle_->comm, handle_->stream),
      "ncclAllGather"));
  return FromCuda(cudaStreamSynchronize(handle_->stream), "cudaStreamSynchronize");
}

absl::Status NcclCommunicator::Broadcast(std::span<std::byte> data, int root) {
  if (root < 0 || root >= size_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Broadcast: root %d is outside this group of %d", root, size_));
  }
  RETURN_IF_ERROR(FromNccl(ncclBroadcast(data.data(), data.data(), data.size(), ncclChar, root,
                                         handle_->comm, handle_->stream),
                           "ncclBroadcast"));
  return FromCuda(cudaStreamSynchronize(handle_->stream), "cudaStreamSynchronize");
}

absl::Status NcclCommunicator::Send(std::span<const std::byte> data, int dst, int) {
  RETURN_IF_ERROR(CheckPeer(*this, dst, "Send"));
  RETURN_IF_ERROR(
      FromNccl(ncclSend(data.data(), data.size(), ncclChar, dst, handle_->comm, handle_->stream),
               "ncclSend"));
  return FromCuda(cudaStreamSynchronize(handle_->stream), "cudaStreamSynchronize");
}

absl::Status NcclCommunicator::Recv(std::span<std::byte> data, int src, int) {
  RETURN_IF_ERROR(CheckPeer(*this, src, "Recv"));
  RETURN_IF_ERROR(
      FromNccl(ncclRecv(data.data(), data.size(), ncclChar, src, handle_->comm, handle_->stream),
               "ncclRecv"));
  return FromCuda(cudaStreamSynchronize(handle_->stream), "cudaStreamSynchronize");
}

absl::Status NcclCommunicator::Barrier() {
  return AllReduce(std::span<float>(handle_->scratch, 1), ReduceOp::kSum);
}

}  // namespace tessera
