// The host-memory BackendBuffer of the CPU backends (kernels/ops.h).
#include <new>

#include "absl/strings/str_format.h"
#include "common/aligned_buffer.h"
#include "kernels/ops.h"

namespace tessera {
namespace {

class HostBuffer : public BackendBuffer {
 public:
  void* data() const override { return const_cast<std::byte*>(buffer_.data()); }
  size_t size() const override { return buffer_.size(); }
  AlignedBuffer buffer_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<BackendBuffer>> AllocateHostBuffer(size_t bytes, bool huge_pages) {
  auto buffer = std::make_unique<HostBuffer>();
  try {
    buffer->buffer_.Resize(bytes, huge_pages);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("cannot allocate %d bytes of host memory", bytes));
  }
  return std::unique_ptr<BackendBuffer>(std::move(buffer));
}

}  // namespace tessera

namespace tessera {

absl::StatusOr<Backend::DeviceMemory> Backend::DeviceMemoryInfo() const {
  return absl::FailedPreconditionError(absl::StrFormat(
      "the %s backend allocates host memory; size its KV cache in bytes or tokens", name()));
}

}  // namespace tessera
