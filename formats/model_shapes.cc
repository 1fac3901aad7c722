#include "formats/model_shapes.h"

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace tessera {
namespace {

// Float hyper-parameters at float32 precision, as ModelConfig holds them.
double F32(double v) { return static_cast<double>(static_cast<float>(v)); }

ModelConfig Llama(std::string name, int64_t vocab, int64_t hidden, int64_t ffn, int64_t layers,
                  int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t context,
                  double theta, bool tied) {
  ModelConfig c;
  c.architecture = "llama";
  c.name = std::move(name);
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = ffn;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.rope_dim = head_dim;
  c.max_position_embeddings = context;
  c.rms_norm_eps = F32(1e-5);
  c.rope_theta = F32(theta);
  c.tie_word_embeddings = tied;
  return c;
}

// Llama 3.1 / 3.2 "rope_type": "llama3" scaling.
ModelConfig WithLlama3Rope(ModelConfig c, double factor) {
  c.rope_scaling.type = RopeScalingType::kLlama3;
  c.rope_scaling.factor = F32(factor);
  c.rope_scaling.low_freq_factor = F32(1.0);
  c.rope_scaling.high_freq_factor = F32(4.0);
  c.rope_scaling.original_max_position_embeddings = 8192;
  return c;
}

std::vector<ModelShape> MakeShapes() {
  // Values from each checkpoint's config.json on the Hugging Face Hub (the repository named
  // in the description).
  std::vector<ModelShape> shapes;
  // For tests: small enough to synthesize and run in milliseconds; a vocabulary with room for
  // the synthetic tokenizer's specials, bytes and some merges.
  ModelConfig tiny = Llama("tiny", 512, 64, 128, 2, 4, 2, 16, 256, 10000.0, true);
  shapes.push_back({"tiny", "a tiny Llama for tests", tiny});
  shapes.push_back({"smollm2-135m", "HuggingFaceTB/SmolLM2-135M (the default model's shape)",
                    Llama("smollm2-135m", 49152, 576, 1536, 30, 9, 3, 64, 8192, 100000.0,
                          /*tied=*/true)});
  shapes.push_back({"smollm2-360m", "HuggingFaceTB/SmolLM2-360M",
                    Llama("smollm2-360m", 49152, 960, 2560, 32, 15, 5, 64, 8192, 100000.0,
                          /*tied=*/true)});
  shapes.push_back({"llama-3.2-1b", "meta-llama/Llama-3.2-1B",
                    WithLlama3Rope(Llama("llama-3.2-1b", 128256, 2048, 8192, 16, 32, 8, 64,
                                         131072, 500000.0, /*tied=*/true),
                                   32.0)});
  shapes.push_back({"llama-3.2-3b", "meta-llama/Llama-3.2-3B",
                    WithLlama3Rope(Llama("llama-3.2-3b", 128256, 3072, 8192, 28, 24, 8, 128,
                                         131072, 500000.0, /*tied=*/true),
                                   32.0)});
  shapes.push_back({"llama-3-8b", "meta-llama/Meta-Llama-3-8B",
                    Llama("llama-3-8b", 128256, 4096, 14336, 32, 32, 8, 128, 8192, 500000.0,
                          /*tied=*/false)});
  shapes.push_back({"llama-3-70b", "meta-llama/Meta-Llama-3-70B",
                    Llama("llama-3-70b", 128256, 8192, 28672, 80, 64, 8, 128, 8192, 500000.0,
                          /*tied=*/false)});
  return shapes;
}

}  // namespace

const std::vector<ModelShape>& KnownModelShapes() {
  static const std::vector<ModelShape>* shapes = new std::vector<ModelShape>(MakeShapes());
  return *shapes;
}

std::string KnownModelShapeNames() {
  std::vector<std::string> names;
  for (const ModelShape& s : KnownModelShapes()) names.push_back(s.name);
  return absl::StrJoin(names, ", ");
}

absl::StatusOr<ModelShape> FindModelShape(std::string_view name) {
  for (const ModelShape& s : KnownModelShapes()) {
    if (s.name == name) return s;
  }
  return absl::InvalidArgumentError(absl::StrFormat("unknown model shape '%s' (known: %s)", name,
                                                    KnownModelShapeNames()));
}

int64_t ParameterCount(const ModelConfig& c) {
  const int64_t q_dim = c.num_heads * c.head_dim;
  const int64_t kv_dim = c.num_kv_heads * c.head_dim;
  const int64_t per_layer = c.hidden_size * q_dim * 2 + c.hidden_size * kv_dim * 2 +
                            c.hidden_size * c.intermediate_size * 3 + c.hidden_size * 2;
  const int64_t embedding = c.vocab_size * c.hidden_size;
  return embedding * (c.tie_word_embeddings ? 1 : 2) + per_layer * c.num_layers + c.hidden_size;
}

}  // namespace tessera
