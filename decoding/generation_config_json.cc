// generation_config.json -> GenerationConfig (the parsing half of generation_config.h).
#include <cmath>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "decoding/generation_config.h"

namespace tessera {
namespace {

using nlohmann::json;

// Typed reads of optional keys; an absent or null key leaves the destination unchanged.
class Reader {
 public:
  Reader(const json& j, std::string_view source) : j_(j), source_(source) {}

  absl::Status Error(std::string_view key, std::string_view why) const {
    return absl::InvalidArgumentError(absl::StrFormat("%s: field '%s' %s", source_, key, why));
  }
  const json* Get(const char* key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }

  static bool AsInt(const json& v, int64_t& out) {
    if (v.is_number_integer()) {
      if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
        return false;
      }
      out = v.get<int64_t>();
      return true;
    }
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (std::floor(d) == d && std::fabs(d) < 9e15) {
        out = static_cast<int64_t>(d);
        return true;
      }
    }
    return false;
  }
  static bool AsTokenId(const json& v, int32_t& out) {
    int64_t i = 0;
    if (!AsInt(v, i) || i < INT32_MIN || i > INT32_MAX) return false;
    out = static_cast<int32_t>(i);
    return true;
  }
  static bool AsIdList(const json& v, std::vector<int32_t>& out) {
    if (!v.is_array()) return false;
    out.clear();
    for (const json& e : v) {
      int32_t id = 0;
      if (!AsTokenId(e, id)) return false;
      out.push_back(id);
    }
    return true;
  }

  absl::Status Bool(const char* key, bool& out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_boolean())
      return Error(key, absl::StrFormat("must be true or false (is %s)", v->dump()));
    out = v->get<bool>();
    return absl::OkStatus();
  }
  absl::Status Int(const char* key, int64_t& out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!AsInt(*v, out))
      return Error(key, absl::StrFormat("must be an integer (is %s)", v->dump()));
    return absl::OkStatus();
  }
  absl::Status OptionalInt(const char* key, std::optional<int64_t>& out) const {
    if (Get(key) == nullptr) return absl::OkStatus();
    int64_t i = 0;
    RETURN_IF_ERROR(Int(key, i));
    out = i;
    return absl::OkStatus();
  }
  absl::Status Float(const char* key, double& out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_number()) return Error(key, absl::StrFormat("must be a number (is %s)", v->dump()));
    out = v->get<double>();
    return absl::OkStatus();
  }
  // A string or a list of strings (transformers' stop_strings).
  absl::Status StringOrStrings(const char* key, std::vector<std::string>& out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (v->is_string()) {
      out = {v->get<std::string>()};
      return absl::OkStatus();
    }
    const auto bad = [&] { return Error(key, "must be a string or a list of strings"); };
    if (!v->is_array()) return bad();
    out.clear();
    for (const json& e : *v) {
      if (!e.is_string()) return bad();
      out.push_back(e.get<std::string>());
    }
    return absl::OkStatus();
  }
  absl::Status OptionalFloat(const char* key, std::optional<double>& out) const {
    if (Get(key) == nullptr) return absl::OkStatus();
    double d = 0.0;
    RETURN_IF_ERROR(Float(key, d));
    out = d;
    return absl::OkStatus();
  }
  absl::Status OptionalId(const char* key, std::optional<int32_t>& out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    int32_t id = 0;
    if (!AsTokenId(*v, id)) {
      return Error(key, absl::StrFormat("must be a token id (is %s)", v->dump()));
    }
    out = id;
    return absl::OkStatus();
  }
  // A token id or a list of them (transformers' eos_token_id).
  absl::Status IdOrIds(const char* key, std::vector<int32_t>& out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    int32_t id = 0;
    if (AsTokenId(*v, id)) {
      out = {id};
      return absl::OkStatus();
    }
    if (!AsIdList(*v, out)) {
      return Error(key, absl::StrFormat("must be a token id or a list of them (is %s)", v->dump()));
    }
    return absl::OkStatus();
  }
  absl::Status Ids(const char* key, std::vector<int32_t>& out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!AsIdList(*v, out)) {
      return Error(key, absl::StrFormat("must be a list of token ids (is %s)", v->dump()));
    }
    return absl::OkStatus();
  }
  absl::Status IdLists(const char* key, std::vector<std::vector<int32_t>>& out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    const auto bad = [&] { return Error(key, "must be a list of lists of token ids"); };
    if (!v->is_array()) return bad();
    out.clear();
    for (const json& e : *v) {
      std::vector<int32_t> ids;
      if (!AsIdList(e, ids)) return bad();
      out.push_back(std::move(ids));
    }
    return absl::OkStatus();
  }
  // OpenAI's {"token id": bias} object.
  absl::Status LogitBias(const char* key, std::map<int32_t, float>& out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_object()) return Error(key, "must be an object mapping token ids to numbers");
    out.clear();
    for (const auto& [k, bias] : v->items()) {
      int32_t id = 0;
      if (!absl::SimpleAtoi(k, &id)) {
        return Error(key, absl::StrFormat("has a key '%s' that is not a token id", k));
      }
      if (!bias.is_number()) {
        return Error(key, absl::StrFormat("value of token %s must be a number", k));
      }
      out[id] = bias.get<float>();
    }
    return absl::OkStatus();
  }
  // transformers serializes sequence_bias as [[[ids...], bias], ...].
  absl::Status SequenceBiases(const char* key, std::vector<SequenceBias>& out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    const auto bad = [&] { return Error(key, "must be a list of [[token ids], bias] pairs"); };
    if (!v->is_array()) return bad();
    out.clear();
    for (const json& e : *v) {
      if (!e.is_array() || e.size() != 2 || !e[1].is_number()) return bad();
      SequenceBias sb;
      if (!AsIdList(e[0], sb.ids)) return bad();
      sb.bias = e[1].get<float>();
      out.push_back(std::move(sb));
    }
    return absl::OkStatus();
  }
  absl::Status EarlyStop(const char* key, EarlyStopping& out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (v->is_boolean()) {
      out = v->get<bool>() ? EarlyStopping::kTrue : EarlyStopping::kFalse;
    } else if (v->is_string() && v->get<std::string>() == "never") {
      out = EarlyStopping::kNever;
    } else {
      return Error(key, absl::StrFormat("must be true, false or \"never\" (is %s)", v->dump()));
    }
    return absl::OkStatus();
  }
  absl::Status Seed(const char* key, std::optional<uint64_t>& out) const {
    const json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (v->is_number_unsigned()) {
      out = v->get<uint64_t>();
      return absl::OkStatus();
    }
    int64_t i = 0;
    if (!AsInt(*v, i) || i < 0) {
      return Error(key, absl::StrFormat("must be a non-negative integer (is %s)", v->dump()));
    }
    out = static_cast<uint64_t>(i);
    return absl::OkStatus();
  }

 private:
  const json& j_;
  std::string_view source_;
};

}  // namespace

absl::StatusOr<GenerationConfig> GenerationConfigFromJson(const json& j, std::string_view source,
                                                          GenerationConfig base) {
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: not a JSON object", source));
  }
  Reader r(j, source);
  GenerationConfig& c = base;
  RETURN_IF_ERROR(r.Bool("do_sample", c.do_sample));
  RETURN_IF_ERROR(r.Int("num_beams", c.num_beams));
  RETURN_IF_ERROR(r.Int("num_beam_groups", c.num_beam_groups));
  RETURN_IF_ERROR(r.Float("diversity_penalty", c.diversity_penalty));
  RETURN_IF_ERROR(r.Float("penalty_alpha", c.penalty_alpha));
  RETURN_IF_ERROR(r.Float("length_penalty", c.length_penalty));
  RETURN_IF_ERROR(r.EarlyStop("early_stopping", c.early_stopping));
  RETURN_IF_ERROR(r.Int("num_return_sequences", c.num_return_sequences));
  RETURN_IF_ERROR(r.OptionalInt("best_of", c.best_of));
  RETURN_IF_ERROR(r.OptionalInt("max_new_tokens", c.max_new_tokens));
  RETURN_IF_ERROR(r.OptionalInt("max_length", c.max_length));
  RETURN_IF_ERROR(r.Int("min_new_tokens", c.min_new_tokens));
  RETURN_IF_ERROR(r.Float("repetition_penalty", c.repetition_penalty));
  RETURN_IF_ERROR(r.Float("frequency_penalty", c.frequency_penalty));
  RETURN_IF_ERROR(r.Float("presence_penalty", c.presence_penalty));
  RETURN_IF_ERROR(r.Int("no_repeat_ngram_size", c.no_repeat_ngram_size));
  RETURN_IF_ERROR(r.LogitBias("logit_bias", c.logit_bias));
  RETURN_IF_ERROR(r.SequenceBiases("sequence_bias", c.sequence_bias));
  RETURN_IF_ERROR(r.IdLists("bad_words_ids", c.bad_words_ids));
  RETURN_IF_ERROR(r.Float("temperature", c.temperature));
  RETURN_IF_ERROR(r.Int("top_k", c.top_k));
  RETURN_IF_ERROR(r.Float("top_p", c.top_p));
  RETURN_IF_ERROR(r.Float("min_p", c.min_p));
  RETURN_IF_ERROR(r.Float("typical_p", c.typical_p));
  RETURN_IF_ERROR(r.IdOrIds("eos_token_id", c.eos_token_ids));
  RETURN_IF_ERROR(r.Ids("stop_token_ids", c.stop_token_ids));
  RETURN_IF_ERROR(r.OptionalId("pad_token_id", c.pad_token_id));
  RETURN_IF_ERROR(r.StringOrStrings("stop_strings", c.stop_strings));
  RETURN_IF_ERROR(r.OptionalFloat("max_time", c.max_time));
  RETURN_IF_ERROR(r.Seed("seed", c.seed));
  RETURN_IF_ERROR(r.OptionalInt("logprobs", c.logprobs));
  if (absl::Status s = c.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: %s", source, s.message()));
  }
  return c;
}

json GenerationConfigToJson(const GenerationConfig& c) {
  json j = json::object();
  j["do_sample"] = c.do_sample;
  j["num_beams"] = c.num_beams;
  j["num_beam_groups"] = c.num_beam_groups;
  j["diversity_penalty"] = c.diversity_penalty;
  j["penalty_alpha"] = c.penalty_alpha;
  j["length_penalty"] = c.length_penalty;
  j["early_stopping"] = c.early_stopping == EarlyStopping::kNever
                            ? json("never")
                            : json(c.early_stopping == EarlyStopping::kTrue);
  j["num_return_sequences"] = c.num_return_sequences;
  if (c.best_of) j["best_of"] = *c.best_of;
  if (c.max_new_tokens) j["max_new_tokens"] = *c.max_new_tokens;
  if (c.max_length) j["max_length"] = *c.max_length;
  j["min_new_tokens"] = c.min_new_tokens;
  j["repetition_penalty"] = c.repetition_penalty;
  j["frequency_penalty"] = c.frequency_penalty;
  j["presence_penalty"] = c.presence_penalty;
  j["no_repeat_ngram_size"] = c.no_repeat_ngram_size;
  json bias = json::object();
  for (const auto& [id, value] : c.logit_bias) bias[std::to_string(id)] = value;
  j["logit_bias"] = std::move(bias);
  json sequence_bias = json::array();
  for (const SequenceBias& b : c.sequence_bias) sequence_bias.push_back({b.ids, b.bias});
  j["sequence_bias"] = std::move(sequence_bias);
  j["bad_words_ids"] = c.bad_words_ids;
  j["temperature"] = c.temperature;
  j["top_k"] = c.top_k;
  j["top_p"] = c.top_p;
  j["min_p"] = c.min_p;
  j["typical_p"] = c.typical_p;
  j["eos_token_id"] = c.eos_token_ids;
  j["stop_token_ids"] = c.stop_token_ids;
  if (c.pad_token_id) j["pad_token_id"] = *c.pad_token_id;
  j["stop_strings"] = c.stop_strings;
  if (c.max_time) j["max_time"] = *c.max_time;
  if (c.seed) j["seed"] = *c.seed;
  if (c.logprobs) j["logprobs"] = *c.logprobs;
  return j;
}

absl::StatusOr<GenerationConfig> GenerationConfigFromJsonFile(const std::string& path,
                                                              GenerationConfig base) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrFormat("cannot open %s", path));
  const json j = json::parse(in, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: not valid JSON", path));
  }
  return GenerationConfigFromJson(j, path, std::move(base));
}

}  // namespace tessera
