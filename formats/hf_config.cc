#include "formats/hf_config.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace tessera {
namespace {

using nlohmann::json;

// Architectures that are Llama in all but name (llama.cpp converts them as "llama").
constexpr std::string_view kLlamaArchitectures[] = {"LlamaForCausalLM", "MistralForCausalLM"};

double F32(double v) { return static_cast<double>(static_cast<float>(v)); }

class Fields {
 public:
  Fields(const json& j, std::string_view source, std::string prefix = "")
      : j_(j), source_(source), prefix_(std::move(prefix)) {}

  absl::Status Error(std::string_view key, std::string_view why) const {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: field '%s%s' %s", source_, prefix_, key, why));
  }
  bool Has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }

  absl::StatusOr<int64_t> Int(const char* key) const {
    if (!Has(key)) return Error(key, "is missing");
    const json& v = j_[key];
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() &&
        std::fabs(v.get<double>()) < 9e15) {
      return static_cast<int64_t>(v.get<double>());
    }
    return Error(key, absl::StrFormat("must be an integer (is %s)", v.dump()));
  }
  absl::StatusOr<int64_t> Int(const char* key, int64_t dflt) const {
    return Has(key) ? Int(key) : dflt;
  }
  absl::StatusOr<double> Float(const char* key, double dflt) const {
    if (!Has(key)) return dflt;
    const json& v = j_[key];
    if (!v.is_number()) return Error(key, absl::StrFormat("must be a number (is %s)", v.dump()));
    return F32(v.get<double>());
  }
  absl::StatusOr<bool> Bool(const char* key, bool dflt) const {
    if (!Has(key)) return dflt;
    if (!j_[key].is_boolean()) return Error(key, "must be true or false");
    return j_[key].get<bool>();
  }
  absl::StatusOr<std::string> String(const char* key, std::string dflt) const {
    if (!Has(key)) return dflt;
    if (!j_[key].is_string()) return Error(key, "must be a string");
    return j_[key].get<std::string>();
  }

 private:
  const json& j_;
  std::string_view source_;
  std::string prefix_;
};

absl::Status ReadRopeScaling(const json& j, std::string_view source, ModelConfig& c) {
  if (!j.contains("rope_scaling") || j["rope_scaling"].is_null()) return absl::OkStatus();
  const json& rs = j["rope_scaling"];
  Fields top(j, source);
  if (!rs.is_object()) return top.Error("rope_scaling", "must be an object or null");
  Fields f(rs, source, "rope_scaling.");
  // transformers renamed "type" to "rope_type"; both occur in published configs.
  ASSIGN_OR_RETURN(std::string type, f.String("rope_type", ""));
  if (type.empty()) {
    ASSIGN_OR_RETURN(type, f.String("type", ""));
  }
  RopeScaling& s = c.rope_scaling;
  if (type == "default" || type.empty()) {
    s = RopeScaling{};
    return absl::OkStatus();
  }
  if (type == "linear") {
    s.type = RopeScalingType::kLinear;
  } else if (type == "llama3") {
    s.type = RopeScalingType::kLlama3;
  } else if (type == "yarn") {
    s.type = RopeScalingType::kYarn;
  } else {
    return f.Error("rope_type", absl::StrFormat("'%s' is not supported (linear, llama3, yarn)",
                                                type));
  }
  if (!f.Has("factor")) return f.Error("factor", "is missing");
  ASSIGN_OR_RETURN(s.factor, f.Float("factor", 1.0));
  if (s.type == RopeScalingType::kLlama3) {
    ASSIGN_OR_RETURN(s.low_freq_factor, f.Float("low_freq_factor", 1.0));
    ASSIGN_OR_RETURN(s.high_freq_factor, f.Float("high_freq_factor", 4.0));
    ASSIGN_OR_RETURN(s.original_max_position_embeddings,
                     f.Int("original_max_position_embeddings", 8192));
  } else if (s.type == RopeScalingType::kYarn) {
    ASSIGN_OR_RETURN(s.beta_fast, f.Float("beta_fast", 32.0));
    ASSIGN_OR_RETURN(s.beta_slow, f.Float("beta_slow", 1.0));
    // transformers defaults the original context to max_position_embeddings.
    ASSIGN_OR_RETURN(s.original_max_position_embeddings,
                     f.Int("original_max_position_embeddings", c.max_position_embeddings));
    if (f.Has("attention_factor")) {
      // transformers' attention_factor replaces the mscale 0.1 ln(factor) + 1; ours multiplies it.
      ASSIGN_OR_RETURN(const double af, f.Float("attention_factor", 1.0));
      const double mscale = s.factor > 1 ? 0.1 * std::log(s.factor) + 1.0 : 1.0;
      s.attn_factor = F32(af / mscale);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ModelConfigFromHfConfig(const json& j, std::string_view source) {
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: not a JSON object", source));
  }
  Fields f(j, source);
  if (!f.Has("architectures") || !j["architectures"].is_array() ||
      j["architectures"].empty() || !j["architectures"][0].is_string()) {
    return f.Error("architectures", "must be a non-empty array of strings");
  }
  const std::string arch = j["architectures"][0].get<std::string>();
  bool llama = false;
  for (std::string_view a : kLlamaArchitectures) llama |= (a == arch);
  if (!llama) {
    return f.Error("architectures", absl::StrFormat("'%s' is not supported (LlamaForCausalLM)",
                                                    arch));
  }
  ModelConfig c;
  c.architecture = "llama";
  ASSIGN_OR_RETURN(c.name, f.String("_name_or_path", ""));
  ASSIGN_OR_RETURN(c.vocab_size, f.Int("vocab_size"));
  ASSIGN_OR_RETURN(c.hidden_size, f.Int("hidden_size"));
  ASSIGN_OR_RETURN(c.intermediate_size, f.Int("intermediate_size"));
  ASSIGN_OR_RETURN(c.num_layers, f.Int("num_hidden_layers"));
  ASSIGN_OR_RETURN(c.num_heads, f.Int("num_attention_heads"));
  if (c.num_heads <= 0) return f.Error("num_attention_heads", "must be positive");
  ASSIGN_OR_RETURN(c.num_kv_heads, f.Int("num_key_value_heads", c.num_heads));
  ASSIGN_OR_RETURN(c.head_dim, f.Int("head_dim", c.hidden_size / c.num_heads));
  c.rope_dim = c.head_dim;
  ASSIGN_OR_RETURN(c.max_position_embeddings, f.Int("max_position_embeddings"));
  ASSIGN_OR_RETURN(c.rms_norm_eps, f.Float("rms_norm_eps", 1e-6));  // LlamaConfig default
  ASSIGN_OR_RETURN(c.rope_theta, f.Float("rope_theta", 10000.0));
  ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", false));
  RETURN_IF_ERROR(ReadRopeScaling(j, source, c));
  if (absl::Status s = c.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: %s", source, s.message()));
  }
  return c;
}

absl::StatusOr<ModelConfig> ModelConfigFromHfConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrFormat("cannot open %s", path));
  json j = json::parse(in, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: not valid JSON", path));
  }
  return ModelConfigFromHfConfig(j, path);
}

}  // namespace tessera
