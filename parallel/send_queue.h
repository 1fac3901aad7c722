// The sends a rank has started and not yet seen complete (Communicator::StartSend), oldest
// first. A pipeline stage and the leader keep one each: they go on working while their
// receivers catch up, and reap what has arrived now and then so that the queue stays as
// short as the work in flight.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>

#include "absl/status/status.h"
#include "parallel/communicator.h"

namespace tessera {

class SendQueue {
 public:
  void Add(std::unique_ptr<PendingSend> send) { sends_.push_back(std::move(send)); }
  // Drops the completed sends at the front; never blocks.
  [[nodiscard]] absl::Status Reap();
  // Blocks until every send has completed.
  [[nodiscard]] absl::Status WaitAll();
  size_t size() const { return sends_.size(); }

 private:
  std::deque<std::unique_ptr<PendingSend>> sends_;
};

}  // namespace tessera
