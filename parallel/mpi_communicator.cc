#include "parallel/mpi_communicator.h"

#include <mpi.h>

#include <climits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace tessera {

struct MpiCommunicator::Handle {
  MPI_Comm comm = MPI_COMM_NULL;
};

namespace {

absl::Status FromMpi(int code, const char* what) {
  if (code == MPI_SUCCESS) return absl::OkStatus();
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return absl::UnavailableError(
      absl::StrFormat("MPI %s failed: %s", what, std::string(text, static_cast<size_t>(length))));
}

absl::Status CheckCount(size_t n, const char* what) {
  if (n > static_cast<size_t>(INT_MAX)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: %d elements exceed MPI's int count", what, n));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<MpiRuntime>> MpiRuntime::Init(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return absl::FailedPreconditionError("MPI is already initialized");
  int provided = 0;
  RETURN_IF_ERROR(FromMpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided),
                          "MPI_Init_thread"));
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return std::unique_ptr<MpiRuntime>(new MpiRuntime(rank, size));
}

MpiRuntime::~MpiRuntime() { MPI_Finalize(); }

MpiCommunicator::MpiCommunicator(std::unique_ptr<Handle> handle) : handle_(std::move(handle)) {
  MPI_Comm_rank(handle_->comm, &rank_);
  MPI_Comm_size(handle_->comm, &size_);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && handle_->comm != MPI_COMM_NULL) MPI_Comm_free(&handle_->comm);
}

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::World() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) return absl::FailedPreconditionError("MpiCommunicator: MPI is not initialized");
  auto handle = std::make_unique<Handle>();
  RETURN_IF_ERROR(FromMpi(MPI_Comm_dup(MPI_COMM_WORLD, &handle->comm), "MPI_Comm_dup"));
  MPI_Comm_set_errhandler(handle->comm, MPI_ERRORS_RETURN);
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(std::move(handle)));
}

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::Split(int color,
                                                                        int key) const {
  auto handle = std::make_unique<Handle>();
  RETURN_IF_ERROR(
      FromMpi(MPI_Comm_split(handle_->comm, color, key, &handle->comm), "MPI_Comm_split"));
  MPI_Comm_set_errhandler(handle->comm, MPI_ERRORS_RETURN);
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(std::move(handle)));
}

absl::Status MpiCommunicator::AllReduce(std::span<float> data, ReduceOp op) {
  RETURN_IF_ERROR(CheckCount(data.size(), "AllReduce"));
  return FromMpi(MPI_Allreduce(MPI_IN_PLACE, data.data(), static_cast<int>(data.size()),
                               MPI_FLOAT, op == ReduceOp::kSum ? MPI_SUM : MPI_MAX,
                               handle_->comm),
                 "MPI_Allreduce");
}

absl::Status MpiCommunicator::ReduceScatter(std::span<const float> in, std::span<float> out) {
  RETURN_IF_ERROR(CheckReduceScatterSizes(*this, in.size(), out.size()));
  RETURN_IF_ERROR(CheckCount(in.size(), "ReduceScatter"));
  return FromMpi(MPI_Reduce_scatter_block(in.data(), out.data(), static_cast<int>(out.size()),
                                          MPI_FLOAT, MPI_SUM, handle_->comm),
                 "MPI_Reduce_scatter_block");
}

absl::Status MpiCommunicator::AllGather(std::span<const float> in, std::span<float> out) {
  RETURN_IF_ERROR(CheckAllGatherSizes(*this, in.size(), out.size()));
  RETURN_IF_ERROR(CheckCount(out.size(), "AllGather"));
  return FromMpi(MPI_Allgather(in.data(), static_cast<int>(in.size()), MPI_FLOAT, out.data(),
                               static_cast<int>(in.size()), MPI_FLOAT, handle_->comm),
                 "MPI_Allgather");
}

absl::Status MpiCommunicator::Broadcast(std::span<std::byte> data, int root) {
  if (root < 0 || root >= size_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Broadcast: root %d is outside this group of %d", root, size_));
  }
  RETURN_IF_ERROR(CheckCount(data.size(), "Broadcast"));
  return FromMpi(MPI_Bcast(data.data(), static_cast<int>(data.size()), MPI_BYTE, root,
                           handle_->comm),
                 "MPI_Bcast");
}

absl::Status MpiCommunicator::Send(std::span<const std::byte> data, int dst, int tag) {
  RETURN_IF_ERROR(CheckPeer(*this, dst, "Send"));
  RETURN_IF_ERROR(CheckCount(data.size(), "Send"));
  return FromMpi(MPI_Send(data.data(), static_cast<int>(data.size()), MPI_BYTE, dst, tag,
                          handle_->comm),
                 "MPI_Send");
}

absl::Status MpiCommunicator::Recv(std::span<std::byte> data, int src, int tag) {
  RETURN_IF_ERROR(CheckPeer(*this, src, "Recv"));
  RETURN_IF_ERROR(CheckCount(data.size(), "Recv"));
  MPI_Status status;
  RETURN_IF_ERROR(FromMpi(MPI_Recv(data.data(), static_cast<int>(data.size()), MPI_BYTE, src,
                                   tag, handle_->comm, &status),
                          "MPI_Recv"));
  int received = 0;
  MPI_Get_count(&status, MPI_BYTE, &received);
  if (static_cast<size_t>(received) != data.size()) {
    return absl::DataLossError(absl::StrFormat("Recv: got %d bytes from rank %d, expected %d",
                                               received, src, data.size()));
  }
  return absl::OkStatus();
}

namespace {

class MpiPendingSend : public PendingSend {
 public:
  explicit MpiPendingSend(std::vector<std::byte> data) : data_(std::move(data)) {}
  ~MpiPendingSend() override {
    if (request_ == MPI_REQUEST_NULL) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    int done = 0;
    MPI_Test(&request_, &done, MPI_STATUS_IGNORE);
    if (done) return;
    // Abandoned (an error path): MPI may still read the bytes, so they must outlive us.
    MPI_Request_free(&request_);
    new std::vector<std::byte>(std::move(data_));  // deliberately leaked
  }

  absl::Status Start(int dst, int tag, MPI_Comm comm) {
    return FromMpi(MPI_Isend(data_.data(), static_cast<int>(data_.size()), MPI_BYTE, dst, tag,
                             comm, &request_),
                   "MPI_Isend");
  }
  absl::StatusOr<bool> Done() override {
    if (request_ == MPI_REQUEST_NULL) return true;
    int done = 0;
    RETURN_IF_ERROR(FromMpi(MPI_Test(&request_, &done, MPI_STATUS_IGNORE), "MPI_Test"));
    return done != 0;
  }
  absl::Status Wait() override {
    if (request_ == MPI_REQUEST_NULL) return absl::OkStatus();
    return FromMpi(MPI_Wait(&request_, MPI_STATUS_IGNORE), "MPI_Wait");
  }

 private:
  std::vector<std::byte> data_;
  MPI_Request request_ = MPI_REQUEST_NULL;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PendingSend>> MpiCommunicator::StartSend(
    std::vector<std::byte> data, int dst, int tag) {
  RETURN_IF_ERROR(CheckPeer(*this, dst, "StartSend"));
  RETURN_IF_ERROR(CheckCount(data.size(), "StartSend"));
  auto send = std::make_unique<MpiPendingSend>(std::move(data));
  RETURN_IF_ERROR(send->Start(dst, tag, handle_->comm));
  return send;
}

absl::Status MpiCommunicator::Barrier() {
  return FromMpi(MPI_Barrier(handle_->comm), "MPI_Barrier");
}

}  // namespace tessera
