// ModelConfigFromGguf: llama.cpp's `{arch}.*` metadata keys -> ModelConfig.
#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "formats/gguf_reader.h"
#include "formats/model_config.h"

namespace tessera {
namespace {

// Architectures whose GGUF layout the Llama model runs (Mistral converts as "llama").
constexpr std::string_view kSupportedArchitectures[] = {"llama"};

// Float hyper-parameters at float32 precision (see model_config.h).
double F32(double v) { return static_cast<double>(static_cast<float>(v)); }

class Keys {
 public:
  Keys(const GgufFile& f, std::string arch) : f_(f), arch_(std::move(arch)) {}
  std::string Key(std::string_view suffix) const {
    return absl::StrFormat("%s.%s", arch_, suffix);
  }
  bool Has(std::string_view suffix) const { return f_.Find(Key(suffix)) != nullptr; }
  absl::StatusOr<int64_t> Int(std::string_view suffix) const { return f_.GetInt(Key(suffix)); }
  absl::StatusOr<int64_t> Int(std::string_view suffix, int64_t dflt) const {
    return Has(suffix) ? Int(suffix) : dflt;
  }
  absl::StatusOr<double> Float(std::string_view suffix, double dflt) const {
    if (!Has(suffix)) return dflt;
    ASSIGN_OR_RETURN(double v, f_.GetFloat(Key(suffix)));
    return F32(v);
  }

 private:
  const GgufFile& f_;
  std::string arch_;
};

absl::Status ReadRopeScaling(const GgufFile& f, const Keys& k, ModelConfig& c) {
  RopeScaling& s = c.rope_scaling;
  std::string type = "none";
  if (k.Has("rope.scaling.type")) {
    ASSIGN_OR_RETURN(type, f.GetString(k.Key("rope.scaling.type")));
  } else if (k.Has("rope.scale_linear")) {  // written by older llama.cpp converters
    type = "linear";
    ASSIGN_OR_RETURN(s.factor, k.Float("rope.scale_linear", 1.0));
  }
  if (type == "none") {
    s.type = RopeScalingType::kNone;
    return absl::OkStatus();
  }
  if (type == "linear") {
    s.type = RopeScalingType::kLinear;
  } else if (type == "yarn") {
    s.type = RopeScalingType::kYarn;
  } else {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: GGUF metadata key '%s': unsupported rope scaling type '%s'", f.path(),
        k.Key("rope.scaling.type"), type));
  }
  if (k.Has("rope.scaling.factor")) {
    ASSIGN_OR_RETURN(s.factor, k.Float("rope.scaling.factor", 1.0));
  }
  ASSIGN_OR_RETURN(s.original_max_position_embeddings,
                   k.Int("rope.scaling.original_context_length", 0));
  if (s.type == RopeScalingType::kYarn) {
    ASSIGN_OR_RETURN(s.beta_fast, k.Float("rope.scaling.yarn_beta_fast", 32.0));
    ASSIGN_OR_RETURN(s.beta_slow, k.Float("rope.scaling.yarn_beta_slow", 1.0));
    ASSIGN_OR_RETURN(s.attn_factor, k.Float("rope.scaling.yarn_attn_factor", 1.0));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ModelConfigFromGguf(const GgufFile& f) {
  ModelConfig c;
  ASSIGN_OR_RETURN(c.architecture, f.GetString("general.architecture"));
  bool supported = false;
  for (std::string_view a : kSupportedArchitectures) supported |= (a == c.architecture);
  if (!supported) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: GGUF metadata key 'general.architecture': unsupported architecture '%s'", f.path(),
        c.architecture));
  }
  if (f.Find("general.name") != nullptr) {
    ASSIGN_OR_RETURN(c.name, f.GetString("general.name"));
  }
  const Keys k(f, c.architecture);
  ASSIGN_OR_RETURN(c.max_position_embeddings, k.Int("context_length"));
  ASSIGN_OR_RETURN(c.hidden_size, k.Int("embedding_length"));
  ASSIGN_OR_RETURN(c.intermediate_size, k.Int("feed_forward_length"));
  ASSIGN_OR_RETURN(c.num_layers, k.Int("block_count"));
  ASSIGN_OR_RETURN(c.num_heads, k.Int("attention.head_count"));
  ASSIGN_OR_RETURN(c.num_kv_heads, k.Int("attention.head_count_kv", c.num_heads));
  ASSIGN_OR_RETURN(c.rms_norm_eps, k.Float("attention.layer_norm_rms_epsilon", 1e-5));
  if (!k.Has("attention.layer_norm_rms_epsilon")) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: GGUF metadata key '%s' is missing",
        f.path(), k.Key("attention.layer_norm_rms_epsilon")));
  }
  ASSIGN_OR_RETURN(c.rope_theta, k.Float("rope.freq_base", 10000.0));
  if (c.num_heads <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: GGUF metadata key '%s' must be positive", f.path(), k.Key("attention.head_count")));
  }
  ASSIGN_OR_RETURN(c.head_dim, k.Int("attention.key_length", c.hidden_size / c.num_heads));
  ASSIGN_OR_RETURN(c.rope_dim, k.Int("rope.dimension_count", c.head_dim));

  if (k.Has("vocab_size")) {
    ASSIGN_OR_RETURN(c.vocab_size, k.Int("vocab_size"));
  } else if (const GgufValue* tokens = f.Find("tokenizer.ggml.tokens");
             tokens != nullptr && std::holds_alternative<GgufArray>(tokens->value)) {
    c.vocab_size = static_cast<int64_t>(std::get<GgufArray>(tokens->value).items.size());
  } else if (const GgufTensorInfo* embd = f.FindTensor("token_embd.weight");
             embd != nullptr && embd->ne.size() == 2) {
    c.vocab_size = embd->ne[1];
  } else {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: GGUF metadata key '%s' is missing and there is no tokenizer.ggml.tokens array",
        f.path(), k.Key("vocab_size")));
  }
  RETURN_IF_ERROR(ReadRopeScaling(f, k, c));
  c.has_rope_freqs = f.FindTensor("rope_freqs.weight") != nullptr;
  c.tie_word_embeddings = f.FindTensor("output.weight") == nullptr;

  if (absl::Status s = c.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: %s", f.path(), s.message()));
  }
  return c;
}

}  // namespace tessera
