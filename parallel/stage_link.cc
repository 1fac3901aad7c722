#include "parallel/stage_link.h"

#include <array>
#include <cstddef>
#include <memory>
#include <utility>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace tessera {
namespace {

constexpr int64_t kMaxElements = int64_t{1} << 31;  // 8 GiB of floats: a corrupt header

}  // namespace

absl::Status StageLink::SendNext(const Activations& a) {
  SendQueue sending;
  RETURN_IF_ERROR(StartSendNext(a, &sending));
  return sending.WaitAll();
}

absl::Status StageLink::StartSendNext(const Activations& a, SendQueue* sending) {
  if (!has_next()) return absl::FailedPreconditionError("StageLink: the last stage has no next");
  if (a.rows < 0 || a.cols < 0 || static_cast<int64_t>(a.data.size()) != a.rows * a.cols) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "StageLink: %d floats do not make %d x %d activations", a.data.size(), a.rows, a.cols));
  }
  const std::array<int64_t, 3> header = {a.micro_batch, a.rows, a.cols};
  const int next = pipeline_->rank() + 1;
  using Message = std::pair<std::span<const std::byte>, int>;
  for (auto [bytes, tag] : {Message{std::as_bytes(std::span(header)), kHeaderTag},
                            Message{std::as_bytes(std::span(a.data)), kDataTag}}) {
    ASSIGN_OR_RETURN(std::unique_ptr<PendingSend> send,
                     pipeline_->StartSend({bytes.begin(), bytes.end()}, next, tag));
    sending->Add(std::move(send));
  }
  return absl::OkStatus();
}

absl::StatusOr<Activations> StageLink::ReceivePrevious() {
  if (!has_previous()) {
    return absl::FailedPreconditionError("StageLink: the first stage has no previous");
  }
  std::array<int64_t, 3> header{};
  const int previous = pipeline_->rank() - 1;
  RETURN_IF_ERROR(pipeline_->Recv(std::as_writable_bytes(std::span(header)), previous, kHeaderTag));
  Activations a{header[0], header[1], header[2], {}};
  if (a.rows < 0 || a.cols < 0 || (a.cols > 0 && a.rows > kMaxElements / a.cols)) {
    return absl::DataLossError(absl::StrFormat(
        "StageLink: header from stage %d describes %d x %d activations", previous, a.rows,
        a.cols));
  }
  a.data.resize(static_cast<size_t>(a.rows * a.cols));
  RETURN_IF_ERROR(pipeline_->Recv(std::as_writable_bytes(std::span(a.data)), previous, kDataTag));
  return a;
}

}  // namespace tessera
