#include "formats/synthesis_spec.h"

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace tessera {
namespace {

constexpr DType kSynthesisDTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ8_0,
                                      DType::kQ5_0, DType::kQ5_1, DType::kQ4_0, DType::kQ4_1};

}  // namespace

bool CanSynthesize(DType dtype) {
  for (DType t : kSynthesisDTypes) {
    if (t == dtype) return true;
  }
  return false;
}

std::string_view SynthesisDTypeNames() { return "f32, f16, bf16, q8_0, q5_0, q5_1, q4_0, q4_1"; }

absl::StatusOr<ModelConfig> SynthesizedConfig(const SynthesisOptions& o) {
  if (!CanSynthesize(o.dtype)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "dtype: cannot synthesize %s weights (supported: %s)", DTypeName(o.dtype),
        SynthesisDTypeNames()));
  }
  if (o.layers < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("layers: must be positive (is %d)", o.layers));
  }
  ModelConfig c = o.shape.config;
  if (o.layers > 0) c.num_layers = o.layers;
  RETURN_IF_ERROR(c.Validate());
  if (c.rope_scaling.type == RopeScalingType::kLlama3) {
    // As llama.cpp converts it: the factors go to rope_freqs.weight, no scaling keys.
    c.rope_scaling = RopeScaling{};
    c.has_rope_freqs = true;
  }
  const int64_t block = Traits(o.dtype).block_elems;
  for (int64_t cols : {c.hidden_size, c.intermediate_size, c.num_heads * c.head_dim}) {
    if (cols % block != 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "dtype: shape %s has rows of %d elements, not a multiple of the %s block (%d)",
          o.shape.name, cols, DTypeName(o.dtype), block));
    }
  }
  return c;
}

}  // namespace tessera
