#include "parallel/timed_communicator.h"

#include <utility>

#include "absl/time/clock.h"

namespace tessera {

template <typename F>
absl::Status TimedCommunicator::Timed(F call) {
  const absl::Time start = absl::Now();
  absl::Status status = call();
  spent_ += absl::Now() - start;
  return status;
}

absl::Status TimedCommunicator::AllReduce(std::span<float> data, ReduceOp op) {
  return Timed([&] { return inner_->AllReduce(data, op); });
}
absl::Status TimedCommunicator::ReduceScatter(std::span<const float> in, std::span<float> out) {
  return Timed([&] { return inner_->ReduceScatter(in, out); });
}
absl::Status TimedCommunicator::AllGather(std::span<const float> in, std::span<float> out) {
  return Timed([&] { return inner_->AllGather(in, out); });
}
absl::Status TimedCommunicator::Broadcast(std::span<std::byte> data, int root) {
  return Timed([&] { return inner_->Broadcast(data, root); });
}
absl::Status TimedCommunicator::Send(std::span<const std::byte> data, int dst, int tag) {
  return Timed([&] { return inner_->Send(data, dst, tag); });
}
absl::Status TimedCommunicator::Recv(std::span<std::byte> data, int src, int tag) {
  return Timed([&] { return inner_->Recv(data, src, tag); });
}
absl::Status TimedCommunicator::Barrier() {
  return Timed([&] { return inner_->Barrier(); });
}
absl::StatusOr<std::unique_ptr<PendingSend>> TimedCommunicator::StartSend(
    std::vector<std::byte> data, int dst, int tag) {
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<PendingSend>> send = inner_->StartSend(std::move(data), dst, tag);
  spent_ += absl::Now() - start;
  return send;
}

}  // namespace tessera
