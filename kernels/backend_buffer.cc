// The host-memory BackendBuffer of the CPU backends, and the default Backend methods that
// need more than a line (kernels/ops.h).
#include <new>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/aligned_buffer.h"
#include "common/status_macros.h"
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

namespace tessera {

absl::Status Backend::ArgMaxRows(const float* x, int64_t rows, int64_t dim, RowArgMax* out) {
  std::vector<float> host;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * dim;
    if (!host_addressable()) {
      host.resize(static_cast<size_t>(dim));
      RETURN_IF_ERROR(CopyFromBackend(host.data(), row, static_cast<size_t>(dim) * sizeof(float)));
      row = host.data();
    }
    out[r] = ArgMaxOfRow({row, static_cast<size_t>(dim)});
  }
  return absl::OkStatus();
}

}  // namespace tessera
