#include <algorithm>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "parallel/communicator.h"

namespace tessera {

absl::Status CheckReduceScatterSizes(const Communicator& c, size_t in, size_t out) {
  if (in != out * static_cast<size_t>(c.size())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ReduceScatter: in has %d elements, expected out (%d) x group size (%d)", in, out,
        c.size()));
  }
  return absl::OkStatus();
}

absl::Status CheckAllGatherSizes(const Communicator& c, size_t in, size_t out) {
  if (out != in * static_cast<size_t>(c.size())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "AllGather: out has %d elements, expected in (%d) x group size (%d)", out, in,
        c.size()));
  }
  return absl::OkStatus();
}

absl::Status CheckPeer(const Communicator& c, int peer, const char* what) {
  if (peer < 0 || peer >= c.size() || peer == c.rank()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: rank %d is not another member of this group of %d (this is rank %d)", what, peer,
        c.size(), c.rank()));
  }
  return absl::OkStatus();
}

namespace {

class CompletedSend : public PendingSend {
 public:
  absl::StatusOr<bool> Done() override { return true; }
  absl::Status Wait() override { return absl::OkStatus(); }
};

}  // namespace

absl::StatusOr<std::unique_ptr<PendingSend>> Communicator::StartSend(std::vector<std::byte> data,
                                                                      int dst, int tag) {
  RETURN_IF_ERROR(Send(data, dst, tag));
  return std::make_unique<CompletedSend>();
}

absl::Status LocalCommunicator::AllReduce(std::span<float>, ReduceOp) {
  return absl::OkStatus();
}

absl::Status LocalCommunicator::ReduceScatter(std::span<const float> in, std::span<float> out) {
  RETURN_IF_ERROR(CheckReduceScatterSizes(*this, in.size(), out.size()));
  std::copy(in.begin(), in.end(), out.begin());
  return absl::OkStatus();
}

absl::Status LocalCommunicator::AllGather(std::span<const float> in, std::span<float> out) {
  RETURN_IF_ERROR(CheckAllGatherSizes(*this, in.size(), out.size()));
  std::copy(in.begin(), in.end(), out.begin());
  return absl::OkStatus();
}

absl::Status LocalCommunicator::Broadcast(std::span<std::byte>, int root) {
  if (root != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Broadcast: root %d is outside this group of 1", root));
  }
  return absl::OkStatus();
}

absl::Status LocalCommunicator::Send(std::span<const std::byte>, int dst, int) {
  return CheckPeer(*this, dst, "Send");
}

absl::Status LocalCommunicator::Recv(std::span<std::byte>, int src, int) {
  return CheckPeer(*this, src, "Recv");
}

}  // namespace tessera
