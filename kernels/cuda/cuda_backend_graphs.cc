// CudaBackend's recorded decode steps (Backend::RunStep; the policy in step_graphs.h): a
// key's first step runs eagerly with the key's fixed plan (warm-up: scratch buffers and GEMM
// plans reach their sizes, so nothing allocates while recording), the next one is recorded
// and launched, later ones replay the recording. Any failure of a warm-up, recording or
// replay runs the step again eagerly (the body may run twice) and counts against the key.
#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/graph_shim.h"

namespace tessera {
namespace {

// Recordings kept at once: batch buckets times context buckets seen recently.
constexpr size_t kMaxRecordings = 64;
// The step arena's first size; it doubles when a step needs more.
constexpr size_t kFirstArenaBytes = size_t{1} << 20;
// Uploads start on this boundary (the kernels read int32 / float / double arrays).
constexpr size_t kUploadAlign = 256;

absl::Status ShimStatus(int code, const cuda_shim::Error& error, const char* what) {
  if (code == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrFormat("cuda backend %s: %s", what, error.text));
}

}  // namespace

void CudaBackend::EnableStepGraphs() {
  graphs_ = std::make_unique<StepGraphCache>(
      kMaxRecordings, [](void* exec) { cuda_shim::GraphExecDestroy(exec); });
  arena_wanted_ = kFirstArenaBytes;
}

int64_t CudaBackend::GraphRows(int64_t rows) const {
  return graphs_ == nullptr ? 0 : GraphRowsFor(rows, kMaxGraphRows);
}

absl::Status CudaBackend::OutsideStep(const char* op) const {
  if (!InStep()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrFormat(
      "cuda backend %s: not allowed inside a recorded step (Backend::RunStep)", op));
}

std::vector<CudaBackend::UploadSlot*> CudaBackend::Slots() {
  return {&ids_,   &positions_, &entry_rows_,   &tables_,   &context_lens_, &tiles_,
          &inv_freq_, &slots_,  &top_k_,        &temperatures_, &uniforms_, &logit_edits_};
}

absl::StatusOr<const void*> CudaBackend::StepUpload(const void* data, size_t bytes,
                                                    UploadSlot* slot) {
  const auto* begin = static_cast<const uint8_t*>(data);
  // The same array again in this step (a step's positions and tables go to every layer):
  // the same memory, or the same bytes.
  if (slot->step_offset >= 0 && slot->step_held.size() == bytes &&
      (data == slot->step_source || bytes == 0 ||
       std::memcmp(slot->step_held.data(), begin, bytes) == 0)) {
    Sign(slot->step_offset, bytes);
    return static_cast<const void*>(arena_device_.as<uint8_t>() + slot->step_offset);
  }
  const size_t offset = (arena_used_ + kUploadAlign - 1) / kUploadAlign * kUploadAlign;
  const size_t end = offset + std::max<size_t>(bytes, 1);
  if (end > arena_host_.size()) {
    arena_wanted_ = std::max(arena_wanted_, 2 * end);
    return absl::FailedPreconditionError(absl::StrFormat(
        "cuda backend: a recorded step's uploads need more than %d bytes", arena_host_.size()));
  }
  if (bytes > 0) std::memcpy(arena_host_.as<uint8_t>() + offset, begin, bytes);
  arena_used_ = end;
  slot->step_offset = static_cast<int64_t>(offset);
  slot->step_held.assign(begin, begin + bytes);
  slot->step_source = data;
  Sign(slot->step_offset, bytes);
  uint8_t* device = arena_device_.as<uint8_t>() + offset;
  // A replay's copies are in its recording; they read the pinned bytes when they run.
  if (bytes > 0 && !Replaying()) {
    cuda_shim::Error error;
    RETURN_IF_ERROR(ShimStatus(
        cuda_shim::Copy(device, arena_host_.as<uint8_t>() + offset, bytes, &error, Queued()),
        error, "step upload"));
  }
  return static_cast<const void*>(device);
}

absl::Status CudaBackend::RunStepAs(StepMode mode, int64_t context,
                                    absl::FunctionRef<absl::Status()> body,
                                    uint64_t* signature) {
  step_mode_ = mode;
  step_context_ = context;
  signature_.Reset();
  arena_used_ = 0;
  for (UploadSlot* slot : Slots()) {
    slot->step_offset = -1;
    slot->step_source = nullptr;
  }
  step_attention_.reset();
  step_slots_.reset();
  absl::Status status = body();
  absl::Status sticky = TakeStickyError();  // a void op's failure belongs to this attempt
  if (status.ok()) status = std::move(sticky);
  *signature = signature_.value();
  step_mode_ = StepMode::kEager;
  step_context_ = 0;
  step_attention_.reset();
  step_slots_.reset();
  return status;
}

absl::Status CudaBackend::LaunchGraph(void* graph) {
  cuda_shim::Error error;
  return ShimStatus(cuda_shim::GraphLaunch(graph, stream_.handle(), &error), error,
                    "launching a recorded step");
}

absl::Status CudaBackend::CaptureStep(const StepGraphKey& key,
                                      absl::FunctionRef<absl::Status()> body) {
  cuda_shim::Error error;
  RETURN_IF_ERROR(ShimStatus(cuda_shim::CaptureBegin(stream_.handle(), &error), error,
                             "recording a step"));
  uint64_t signature = 0;
  absl::Status status = RunStepAs(StepMode::kCapture, key.context, body, &signature);
  void* graph = nullptr;
  const absl::Status ended = ShimStatus(
      cuda_shim::CaptureEnd(stream_.handle(), &graph, &error), error, "recording a step");
  if (status.ok()) status = ended;
  void* exec = nullptr;
  if (status.ok()) {
    status = ShimStatus(cuda_shim::GraphInstantiate(graph, &exec, &error), error,
                        "instantiating a recorded step");
  }
  cuda_shim::GraphDestroy(graph);
  RETURN_IF_ERROR(status);
  graphs_->Store(key, exec, signature);
  return LaunchGraph(exec);
}

absl::Status CudaBackend::RunStep(const StepShape& shape,
                                  absl::FunctionRef<absl::Status()> body) {
  RETURN_IF_ERROR(TakeStickyError());
  if (graphs_ == nullptr || InStep() || GraphRows(shape.rows) != shape.rows) return body();
  // The arena's host side may be rewritten below: the last step's copies from it, queued or
  // recorded, must have run.
  RETURN_IF_ERROR(stream_.Synchronize());
  if (arena_wanted_ > arena_host_.size()) {
    graphs_->Clear();  // their copies read the old arena
    arena_host_ = PinnedBuffer();
    arena_device_ = DeviceBuffer();
    absl::StatusOr<PinnedBuffer> host = PinnedBuffer::Allocate(arena_wanted_);
    absl::StatusOr<DeviceBuffer> device =
        host.ok() ? DeviceBuffer::Allocate(arena_wanted_) : absl::StatusOr<DeviceBuffer>();
    if (!host.ok() || !device.ok()) {
      // No arena, no recordings: every step from now on runs eagerly.
      cuda_shim::ClearLastError();
      graphs_.reset();
      return body();
    }
    arena_host_ = *std::move(host);
    arena_device_ = *std::move(device);
  }
  const StepGraphKey key{.rows = shape.rows, .context = GraphContextFor(shape.max_context)};
  const StepGraphAction action = graphs_->Next(key);
  if (action == StepGraphAction::kEager) {
    ++step_stats_.eager;
    return body();
  }
  absl::Status attempt;
  uint64_t signature = 0;
  if (action == StepGraphAction::kWarmup) {
    attempt = RunStepAs(StepMode::kWarmup, key.context, body, &signature);
    ++step_stats_.warmups;
  } else if (action == StepGraphAction::kCapture) {
    attempt = CaptureStep(key, body);
    ++step_stats_.recordings;
  } else {
    attempt = RunStepAs(StepMode::kReplay, key.context, body, &signature);
    if (attempt.ok() && signature != graphs_->signature(key)) {
      graphs_->Stale(key);
      ++step_stats_.stale;
      return body();
    }
    if (attempt.ok()) attempt = LaunchGraph(graphs_->graph(key));
    if (attempt.ok()) {
      graphs_->Replayed(key);
      ++step_stats_.replays;
    }
  }
  if (attempt.ok()) return absl::OkStatus();
  // The step again, eagerly (the runtime's last error would otherwise fail its first
  // launch). A failure that is the step's own comes back from it and is not held against
  // the key; one of the attempt's alone is.
  cuda_shim::ClearLastError();
  ++step_stats_.fallbacks;
  RETURN_IF_ERROR(body());
  if (arena_wanted_ > arena_host_.size()) {
    graphs_->Stale(key);  // the arena was too small: grown before the next step
  } else {
    graphs_->Fail(key);
  }
  return absl::OkStatus();
}

}  // namespace tessera
