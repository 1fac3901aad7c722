#include "parallel/send_queue.h"

#include "common/status_macros.h"

namespace tessera {

absl::Status SendQueue::Reap() {
  while (!sends_.empty()) {
    ASSIGN_OR_RETURN(const bool done, sends_.front()->Done());
    if (!done) break;
    sends_.pop_front();
  }
  return absl::OkStatus();
}

absl::Status SendQueue::WaitAll() {
  while (!sends_.empty()) {
    RETURN_IF_ERROR(sends_.front()->Wait());
    sends_.pop_front();
  }
  return absl::OkStatus();
}

}  // namespace tessera
