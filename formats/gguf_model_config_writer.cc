// AddModelConfigToGguf: ModelConfig -> llama.cpp's `{arch}.*` metadata keys (the inverse of
// ModelConfigFromGguf in gguf_model_config.cc).
#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "formats/gguf_writer.h"
#include "formats/model_config.h"

namespace tessera {

absl::Status AddModelConfigToGguf(const ModelConfig& c, GgufWriter& w) {
  const RopeScaling& s = c.rope_scaling;
  if (s.type == RopeScalingType::kLlama3) {
    return absl::InvalidArgumentError(
        "rope_scaling: llama3 scaling is stored as the rope_freqs.weight tensor "
        "(Llama3RopeFreqFactors), not as metadata");
  }
  const auto key = [&c](std::string_view suffix) {
    return absl::StrFormat("%s.%s", c.architecture, suffix);
  };
  const auto u32 = [](int64_t v) { return static_cast<uint32_t>(v); };
  const auto f32 = [](double v) { return static_cast<float>(v); };
  RETURN_IF_ERROR(w.AddString("general.architecture", c.architecture));
  if (!c.name.empty()) RETURN_IF_ERROR(w.AddString("general.name", c.name));
  RETURN_IF_ERROR(w.AddUint32(key("context_length"), u32(c.max_position_embeddings)));
  RETURN_IF_ERROR(w.AddUint32(key("embedding_length"), u32(c.hidden_size)));
  RETURN_IF_ERROR(w.AddUint32(key("block_count"), u32(c.num_layers)));
  RETURN_IF_ERROR(w.AddUint32(key("feed_forward_length"), u32(c.intermediate_size)));
  RETURN_IF_ERROR(w.AddUint32(key("attention.head_count"), u32(c.num_heads)));
  RETURN_IF_ERROR(w.AddUint32(key("attention.head_count_kv"), u32(c.num_kv_heads)));
  RETURN_IF_ERROR(w.AddUint32(key("attention.key_length"), u32(c.head_dim)));
  RETURN_IF_ERROR(w.AddUint32(key("attention.value_length"), u32(c.head_dim)));
  RETURN_IF_ERROR(w.AddUint32(key("rope.dimension_count"), u32(c.rope_dim)));
  RETURN_IF_ERROR(w.AddFloat32(key("rope.freq_base"), f32(c.rope_theta)));
  RETURN_IF_ERROR(w.AddFloat32(key("attention.layer_norm_rms_epsilon"), f32(c.rms_norm_eps)));
  RETURN_IF_ERROR(w.AddUint32(key("vocab_size"), u32(c.vocab_size)));
  if (s.type == RopeScalingType::kNone) return absl::OkStatus();
  RETURN_IF_ERROR(w.AddString(key("rope.scaling.type"),
                              s.type == RopeScalingType::kLinear ? "linear" : "yarn"));
  RETURN_IF_ERROR(w.AddFloat32(key("rope.scaling.factor"), f32(s.factor)));
  if (s.original_max_position_embeddings > 0) {
    RETURN_IF_ERROR(w.AddUint32(key("rope.scaling.original_context_length"),
                                u32(s.original_max_position_embeddings)));
  }
  if (s.type == RopeScalingType::kYarn) {
    RETURN_IF_ERROR(w.AddFloat32(key("rope.scaling.yarn_beta_fast"), f32(s.beta_fast)));
    RETURN_IF_ERROR(w.AddFloat32(key("rope.scaling.yarn_beta_slow"), f32(s.beta_slow)));
    if (s.attn_factor != 1.0) {
      RETURN_IF_ERROR(w.AddFloat32(key("rope.scaling.yarn_attn_factor"), f32(s.attn_factor)));
    }
  }
  return absl::OkStatus();
}

}  // namespace tessera
