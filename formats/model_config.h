// Hyper-parameters of a Llama-family model, the same whether read from GGUF metadata or from
// a Hugging Face config.json. Plain data.
//
// Conventions that make both sources give equal configs:
//  - Floating-point hyper-parameters (eps, theta, scaling factors) are held at float32
//    precision, as GGUF stores them (1e-5 from config.json becomes (double)1e-5f).
//  - Llama-3 rope scaling: llama.cpp's converter bakes it into a `rope_freqs.weight` tensor
//    (F32, [rope_dim / 2]: each rotary frequency is divided by its factor) and writes no
//    scaling keys. A GGUF config therefore says has_rope_freqs = true with scaling kNone.
//    ModelConfigFromHfConfig returns kLlama3 with its parameters; OpenWeightStore on an HF
//    checkpoint then synthesizes `rope_freqs.weight` and rewrites the config the GGUF way, so
//    a model only ever sees one mechanism (the tensor) from a WeightStore.
//  - `name` is a label (GGUF general.name, HF _name_or_path) and is not a hyper-parameter:
//    HyperParametersEqual ignores it; operator== compares everything.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera {

class GgufFile;
class GgufWriter;

enum class RopeScalingType { kNone, kLinear, kLlama3, kYarn };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;
  // Llama-3 ("rope_type": "llama3") and YaRN: the context the model was trained with.
  int64_t original_max_position_embeddings = 0;
  // Llama-3.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  // YaRN.
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double attn_factor = 1.0;  // multiplies the mscale (1 unless the config says otherwise)

  bool operator==(const RopeScaling&) const = default;
};

// Upper bound on every size in a ModelConfig (vocab, hidden, layers, heads, context, ...),
// so that the product of any two fits in int64.
inline constexpr int64_t kMaxModelDim = int64_t{1} << 31;

struct ModelConfig {
  std::string architecture = "llama";
  std::string name;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;         // n_embd
  int64_t intermediate_size = 0;   // n_ff
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;            // usually hidden_size / num_heads
  int64_t max_position_embeddings = 0;  // context length
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  int64_t rope_dim = 0;            // rotated dims per head (== head_dim for Llama)
  RopeScaling rope_scaling;
  // The weights hold `rope_freqs.weight` (see above); divide frequency i by its element i.
  bool has_rope_freqs = false;
  bool tie_word_embeddings = false;

  // Consistency checks (sizes in [1, kMaxModelDim], heads divide, ...); INVALID_ARGUMENT
  // naming the field.
  absl::Status Validate() const;
  bool operator==(const ModelConfig&) const = default;
};

// Equal in every field but `name`.
bool HyperParametersEqual(const ModelConfig& a, const ModelConfig& b);

// Reads `general.architecture` and the `{arch}.*` keys as llama.cpp writes them, and
// validates the result. INVALID_ARGUMENT naming the file and key.
absl::StatusOr<ModelConfig> ModelConfigFromGguf(const GgufFile& file);

// The inverse: general.architecture, general.name (when not empty) and the `{arch}.*` keys
// (vocab_size always; rope scaling keys for linear / YaRN) that ModelConfigFromGguf reads
// back as `config`. The caller adds the tensors (no output.weight means tied embeddings).
// Does not validate. INVALID_ARGUMENT for kLlama3 scaling (GGUF holds it as the
// rope_freqs.weight tensor, see above) or a key the writer already has.
[[nodiscard]] absl::Status AddModelConfigToGguf(const ModelConfig& config, GgufWriter& writer);

// Llama-3 per-frequency divisors exactly as llama.cpp's convert_hf_to_gguf.py computes them
// (float32 arithmetic for the base frequencies): rope_dim / 2 values.
// Requires rope_scaling.type == kLlama3.
std::vector<float> Llama3RopeFreqFactors(const ModelConfig& config);

}  // namespace tessera
