// Element types of tensors: plain floats/ints and GGML's block-quantized formats.
// Values equal GGML's `ggml_type` ids so that GGUF files map directly.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/status/statusor.h"

namespace tessera {

enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
  // Not a GGML type: no GGUF file holds it, and neither parser below returns it. The CUDA
  // backend's FP8 (E4M3) copies of F32/F16/BF16 matrices (BackendOptions::fp8_weights), one
  // byte per element, with a float scale per row kept beside them (kernels/cuda/fp8_e4m3.h).
  kF8E4M3 = 0x10000,
};

struct DTypeTraits {
  std::string_view name;      // GGML's spelling: "f32", "q4_K", ...
  int64_t block_elems;        // elements per block (1 for plain types)
  int64_t block_bytes;        // bytes per block
  bool quantized;
};

// Traits of a supported dtype. Every enumerator above has traits.
const DTypeTraits& Traits(DType type);
inline std::string_view DTypeName(DType type) { return Traits(type).name; }

// Maps a raw GGML type id to a DType; std::nullopt for ids Tessera does not run (IQ*, ...).
std::optional<DType> DTypeFromGgmlId(uint32_t id);
// Parses a name as printed by DTypeName ("q4_K", "f16"; case-insensitive).
absl::StatusOr<DType> DTypeFromName(std::string_view name);

// Bytes taken by `elems` elements; `elems` must be a multiple of the block size.
absl::StatusOr<int64_t> RowBytes(DType type, int64_t elems);

}  // namespace tessera
