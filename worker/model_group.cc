#include "worker/model_group.h"

#include <array>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tessera {
namespace {

enum class Kind : int64_t { kSetup = 1, kStep = 2, kShutdown = 3, kReportTimes = 4 };

constexpr int kTimesTag = 203;
constexpr int kHeaderTag = 204;
constexpr int kPayloadTag = 205;

// RankStepTimes on the wire: [steps, step, communication, bubble] as doubles.
using TimesWire = std::array<double, 4>;

// Leader side: to every other rank, the header [kind, payload bytes], then the payload (when
// there is one). Started, not awaited: a rank of a later pipeline stage may still be busy
// with earlier steps, and the leader goes on with its own stage meanwhile.
absl::Status Post(Communicator& group, SendQueue& sending, Kind kind,
                  const std::vector<std::byte>& payload) {
  RETURN_IF_ERROR(sending.Reap());
  const std::array<int64_t, 2> header = {static_cast<int64_t>(kind),
                                         static_cast<int64_t>(payload.size())};
  const auto header_bytes = std::as_bytes(std::span(header));
  for (int rank = 1; rank < group.size(); ++rank) {
    ASSIGN_OR_RETURN(std::unique_ptr<PendingSend> send,
                     group.StartSend({header_bytes.begin(), header_bytes.end()}, rank, kHeaderTag));
    sending.Add(std::move(send));
    if (payload.empty()) continue;
    ASSIGN_OR_RETURN(send, group.StartSend(payload, rank, kPayloadTag));
    sending.Add(std::move(send));
  }
  return absl::OkStatus();
}

absl::Status Receive(Communicator& group, Kind* kind, std::vector<std::byte>* payload) {
  std::array<int64_t, 2> header = {0, 0};
  RETURN_IF_ERROR(group.Recv(std::as_writable_bytes(std::span(header)), 0, kHeaderTag));
  if (header[0] < static_cast<int64_t>(Kind::kSetup) ||
      header[0] > static_cast<int64_t>(Kind::kReportTimes) || header[1] < 0 ||
      header[1] > (int64_t{1} << 32)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model group: bad message header [", header[0], ", ", header[1], "]"));
  }
  *kind = static_cast<Kind>(header[0]);
  payload->assign(static_cast<size_t>(header[1]), std::byte{0});
  if (payload->empty()) return absl::OkStatus();
  return group.Recv(*payload, 0, kPayloadTag);
}

}  // namespace

absl::Status ModelGroupLeader::SendSetup(const ModelGroupSetup& setup) {
  if (shut_down_) return absl::FailedPreconditionError("model group: already shut down");
  if (set_up_) return absl::FailedPreconditionError("model group: already set up");
  if (group_->rank() != 0) {
    return absl::FailedPreconditionError("model group: the leader must be rank 0 of its group");
  }
  set_up_ = true;
  std::vector<std::byte> payload(sizeof(setup));
  std::memcpy(payload.data(), &setup, sizeof(setup));
  return Post(*group_, sending_, Kind::kSetup, payload);
}

absl::Status ModelGroupLeader::SendStep(const StepWork& work) {
  if (shut_down_ || !set_up_) {
    return absl::FailedPreconditionError("model group: a step outside setup .. shutdown");
  }
  return Post(*group_, sending_, Kind::kStep, EncodeStepWork(work));
}

absl::StatusOr<std::vector<RankStepTimes>> ModelGroupLeader::CollectRankTimes(
    const RankStepTimes& own) {
  if (shut_down_ || !set_up_) {
    return absl::FailedPreconditionError("model group: step times outside setup .. shutdown");
  }
  RETURN_IF_ERROR(Post(*group_, sending_, Kind::kReportTimes, {}));
  std::vector<RankStepTimes> times = {own};
  for (int r = 1; r < group_->size(); ++r) {
    TimesWire wire{};
    RETURN_IF_ERROR(group_->Recv(std::as_writable_bytes(std::span(wire)), r, kTimesTag));
    times.push_back({.steps = static_cast<int64_t>(wire[0]),
                     .step_seconds = wire[1],
                     .communication_seconds = wire[2],
                     .bubble_seconds = wire[3]});
  }
  return times;
}

absl::Status ModelGroupLeader::SendShutdown() {
  if (shut_down_) return absl::OkStatus();
  shut_down_ = true;
  RETURN_IF_ERROR(Post(*group_, sending_, Kind::kShutdown, {}));
  return sending_.WaitAll();
}

absl::Status RunModelGroupFollower(LlamaModel& model, Communicator& group, RankRole role) {
  Kind kind;
  std::vector<std::byte> payload;
  RETURN_IF_ERROR(Receive(group, &kind, &payload));
  if (kind == Kind::kShutdown) return absl::OkStatus();
  if (kind != Kind::kSetup || payload.size() != sizeof(ModelGroupSetup)) {
    return absl::InvalidArgumentError("model group: the first message is not the setup");
  }
  ModelGroupSetup setup;
  std::memcpy(&setup, payload.data(), sizeof(setup));
  ASSIGN_OR_RETURN(PagedKvCache cache,
                   model.NewPagedKvCache(setup.num_blocks, setup.block_size, setup.kv_dtype));
  std::optional<PagedKvCache> host;
  if (setup.num_host_blocks > 0) {
    ASSIGN_OR_RETURN(host, model.NewPagedKvCache(setup.num_host_blocks, setup.block_size,
                                                 setup.kv_dtype));
  }
  std::vector<float> logits, hidden;
  StageRunner runner(&model, role);
  while (true) {
    RETURN_IF_ERROR(Receive(group, &kind, &payload));
    if (kind == Kind::kShutdown) return absl::OkStatus();
    if (kind == Kind::kReportTimes) {
      const RankStepTimes& t = runner.times();
      TimesWire wire = {static_cast<double>(t.steps), t.step_seconds, t.communication_seconds,
                        t.bubble_seconds};
      RETURN_IF_ERROR(group.Send(std::as_bytes(std::span(wire)), 0, kTimesTag));
      continue;
    }
    if (kind != Kind::kStep) return absl::InvalidArgumentError("model group: a second setup");
    ASSIGN_OR_RETURN(const StepWork work, DecodeStepWork(payload));
    RETURN_IF_ERROR(runner.Run(work, cache, host, &logits, &hidden));
  }
}

}  // namespace tessera
