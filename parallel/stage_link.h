// StageLink: activations between neighbouring pipeline stages over the pipeline group's
// Communicator. A message is a fixed header (micro-batch id, rows, columns) followed by the
// rows x columns float32 payload, so the receiver learns the shape before it reads the data
// and a mismatch is an error, not a silent misread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "parallel/send_queue.h"

namespace tessera {

struct Activations {
  int64_t micro_batch = 0;  // which in-flight micro-batch these rows belong to
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> data;  // rows x cols, row-major
};

class StageLink {
 public:
  // `pipeline` is the group of one tp rank across stages, ranked by stage (Topology).
  explicit StageLink(Communicator* pipeline) : pipeline_(pipeline) {}

  bool has_next() const { return pipeline_->rank() + 1 < pipeline_->size(); }
  bool has_previous() const { return pipeline_->rank() > 0; }

  // To the next stage; FAILED_PRECONDITION on the last stage, INVALID_ARGUMENT when data
  // does not hold rows x cols floats. StartSendNext returns once the sends are started
  // (they join `sending`); SendNext waits for them.
  [[nodiscard]] absl::Status StartSendNext(const Activations& a, SendQueue* sending);
  [[nodiscard]] absl::Status SendNext(const Activations& a);
  // From the previous stage; FAILED_PRECONDITION on the first stage, DATA_LOSS for a header
  // that cannot describe a message.
  [[nodiscard]] absl::StatusOr<Activations> ReceivePrevious();

 private:
  static constexpr int kHeaderTag = 101;
  static constexpr int kDataTag = 102;
  Communicator* pipeline_;
};

}  // namespace tessera
