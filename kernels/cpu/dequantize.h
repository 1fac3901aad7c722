// Row conversion from any stored weight dtype to float32.
// Thread-safe (pure functions over caller-owned memory).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "common/dtype.h"

namespace tessera {

// dst[0, n) = the n elements starting at `src` (a run of whole blocks for quantized types).
// Supports F32, F16, BF16, F64 and every GGML block type in common/dtype.h; integer types
// and an `n` that is not a multiple of the block size give INVALID_ARGUMENT.
[[nodiscard]] absl::Status DequantizeRow(DType type, const void* src, float* dst, int64_t n);

// True when DequantizeRow accepts `type`.
bool CanDequantize(DType type);

}  // namespace tessera
