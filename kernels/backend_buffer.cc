// The host-memory BackendBuffer of the CPU backends, and the default Backend methods that
// need more than a line (kernels/ops.h).
#include <cmath>
#include <limits>
#include <new>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/aligned_buffer.h"
#include "common/status_macros.h"
#include "kernels/ops.h"
#include "kernels/row_sampling_args.h"

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

absl::Status Backend::SoftmaxDenominators(const float* x, int64_t rows, int64_t dim,
                                          std::span<const float> temperature, double* sums) {
  RETURN_IF_ERROR(CheckSoftmaxDenominatorsArgs("SoftmaxDenominators", rows, dim, temperature));
  std::vector<float> scaled(static_cast<size_t>(dim));
  for (int64_t r = 0; r < rows; ++r) {
    const float t = temperature[static_cast<size_t>(r)];
    sums[r] = 0;
    if (!(t > 0)) continue;
    RETURN_IF_ERROR(CopyFromBackend(scaled.data(), x + r * dim, scaled.size() * sizeof(float)));
    float max = -std::numeric_limits<float>::infinity();
    for (float& v : scaled) {
      v /= t;
      if (v > max) max = v;
    }
    if (!std::isfinite(max)) continue;
    double sum = 0;
    for (float v : scaled) sum += std::isnan(v) ? 0.0 : std::exp(static_cast<double>(v) - max);
    sums[r] = sum;
  }
  return absl::OkStatus();
}

absl::Status Backend::EditLogits(float* x, int64_t rows, int64_t dim,
                                 std::span<const LogitEdit> edits, float* previous) {
  RETURN_IF_ERROR(CheckEditLogitsArgs("EditLogits", rows, dim, edits));
  for (size_t i = 0; i < edits.size(); ++i) {
    const LogitEdit& e = edits[i];
    float* at = x + static_cast<int64_t>(e.row) * dim + e.token;
    float value = 0;
    RETURN_IF_ERROR(CopyFromBackend(&value, at, sizeof(float)));
    if (previous != nullptr) previous[i] = value;
    value = ApplyLogitEdit(value, e);
    RETURN_IF_ERROR(CopyToBackend(at, &value, sizeof(float)));
  }
  return absl::OkStatus();
}

absl::Status Backend::SampleRows(const float* x, int64_t rows, int64_t dim,
                                 std::span<const float> temperature, std::span<const double> u,
                                 int32_t* tokens, float* token_logits) {
  RETURN_IF_ERROR(CheckSampleRowsArgs("SampleRows", rows, dim, temperature, u));
  std::vector<float> scaled(static_cast<size_t>(dim));
  for (int64_t r = 0; r < rows; ++r) {
    const size_t ri = static_cast<size_t>(r);
    tokens[r] = -1;
    if (u[ri] < 0) continue;
    RETURN_IF_ERROR(CopyFromBackend(scaled.data(), x + r * dim, scaled.size() * sizeof(float)));
    for (float& v : scaled) v /= temperature[ri];
    tokens[r] = DrawFromRow(scaled, u[ri]);
    if (token_logits != nullptr && tokens[r] >= 0) {
      RETURN_IF_ERROR(CopyFromBackend(&token_logits[r], x + r * dim + tokens[r], sizeof(float)));
    }
  }
  return absl::OkStatus();
}

absl::Status Backend::TopKRows(const float* x, int64_t rows, int64_t dim,
                               std::span<const int32_t> k, std::span<const float> temperature,
                               int64_t capacity, int32_t* ids, float* values, int32_t* counts) {
  RETURN_IF_ERROR(CheckTopKRowsArgs("TopKRows", rows, dim, k, temperature, capacity));
  std::vector<float> host;
  const size_t cap = static_cast<size_t>(capacity);
  for (int64_t r = 0; r < rows; ++r) {
    const size_t ri = static_cast<size_t>(r);
    const float* row = x + r * dim;
    if (k[ri] > 0 && !host_addressable()) {
      host.resize(static_cast<size_t>(dim));
      RETURN_IF_ERROR(CopyFromBackend(host.data(), row, static_cast<size_t>(dim) * sizeof(float)));
      row = host.data();
    }
    counts[r] = TopKOfRow({row, static_cast<size_t>(dim)}, k[ri], temperature[ri],
                          {ids + ri * cap, cap}, {values + ri * cap, cap});
  }
  return absl::OkStatus();
}

}  // namespace tessera
