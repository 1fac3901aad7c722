// Row conversion from float32 to GGML block formats: the activation formats used by the
// integer dot products (Q8_0, Q8_1, Q8_K), BF16 (round to nearest even: the activations of
// BF16 weights on CPUs with AVX512_BF16) and round-to-nearest Q4_0/Q4_1/Q5_0/Q5_1 (ggml's
// quantize_row_*_ref). K-quant weight quantizers are not provided.
// Thread-safe (pure functions over caller-owned memory). The results are deterministic and
// identical on every CPU: the SIMD backend quantizes its activations with these functions.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "common/dtype.h"

namespace tessera {

// dst receives n / block_elems blocks of `type`. INVALID_ARGUMENT for other types or an
// `n` that is not a multiple of the block size.
[[nodiscard]] absl::Status QuantizeRow(DType type, const float* src, void* dst, int64_t n);

// True when QuantizeRow accepts `type`.
bool CanQuantize(DType type);

}  // namespace tessera
