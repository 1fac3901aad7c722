// A Communicator that forwards every call to another and adds up the wall time spent in
// them: how the worker tells communication from compute, and how the bench measures it.
//
// Thread-safety: as the wrapped communicator (one thread at a time); spent() on that thread.
#pragma once

#include <span>

#include "absl/time/time.h"
#include "parallel/communicator.h"

namespace tessera {

class TimedCommunicator : public Communicator {
 public:
  // `inner` must outlive this.
  explicit TimedCommunicator(Communicator* inner) : inner_(inner) {}

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  bool device_buffers() const override { return inner_->device_buffers(); }
  absl::Status AllReduce(std::span<float> data, ReduceOp op) override;
  absl::Status ReduceScatter(std::span<const float> in, std::span<float> out) override;
  absl::Status AllGather(std::span<const float> in, std::span<float> out) override;
  absl::Status Broadcast(std::span<std::byte> data, int root) override;
  absl::Status Send(std::span<const std::byte> data, int dst, int tag) override;
  absl::Status Recv(std::span<std::byte> data, int src, int tag) override;
  absl::Status Barrier() override;
  // Times the start only: the transfer itself overlaps the caller's work.
  absl::StatusOr<std::unique_ptr<PendingSend>> StartSend(std::vector<std::byte> data, int dst,
                                                         int tag) override;

  // Time inside the calls since construction or the last Reset.
  absl::Duration spent() const { return spent_; }
  void Reset() { spent_ = absl::ZeroDuration(); }

 private:
  template <typename F>
  absl::Status Timed(F call);

  Communicator* inner_;
  absl::Duration spent_;
};

}  // namespace tessera
