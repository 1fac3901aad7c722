#include "tests/model/reference/reference_fixtures.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "formats/gguf_reader.h"
#include "formats/model_locator.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "nlohmann/json.hpp"
#include "tokenizer/tokenizer.h"

namespace tessera::testing {
namespace {

using nlohmann::json;

absl::StatusOr<json> ReadJson(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open fixture"));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": not JSON"));
  return j;
}

absl::Status FieldError(const std::string& path, std::string_view field) {
  return absl::InvalidArgumentError(
      absl::StrFormat("%s: missing or ill-typed field '%s'", path, field));
}

// Reads j[key] as T when present and of the right kind.
template <typename T>
absl::StatusOr<T> Get(const json& j, std::string_view key, const std::string& path) {
  const std::string k(key);
  if (!j.is_object() || !j.contains(k)) return FieldError(path, key);
  const json& v = j[k];
  if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) return FieldError(path, key);
  } else if constexpr (std::is_arithmetic_v<T>) {
    if (!v.is_number()) return FieldError(path, key);
  } else {
    if (!v.is_array()) return FieldError(path, key);
  }
  T out;
  v.get_to(out);
  return out;
}

absl::StatusOr<std::vector<float>> ReadF32(const std::string& path, int64_t rows) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open fixture"));
  const int64_t bytes = in.tellg();
  const int64_t want = rows * kSmolLmVocab * static_cast<int64_t>(sizeof(float));
  if (bytes != want) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": has ", bytes, " bytes, expected ", want));
  }
  std::vector<float> out(rows * kSmolLmVocab);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(out.data()), want);  // fixture is little-endian, as is x86
  return out;
}

absl::StatusOr<LlamaCppPrompt> ParseLlamaCppPrompt(const json& p, const std::string& path) {
  LlamaCppPrompt r;
  ASSIGN_OR_RETURN(r.name, Get<std::string>(p, "name", path));
  ASSIGN_OR_RETURN(r.text, Get<std::string>(p, "text", path));
  ASSIGN_OR_RETURN(r.prompt_ids, Get<std::vector<int32_t>>(p, "prompt_ids", path));
  ASSIGN_OR_RETURN(r.generated_ids, Get<std::vector<int32_t>>(p, "generated_ids", path));
  ASSIGN_OR_RETURN(r.step_margins, Get<std::vector<float>>(p, "step_margins", path));
  if (r.prompt_ids.empty() || r.generated_ids.size() != r.step_margins.size()) {
    return FieldError(path, "prompts[].generated_ids");
  }
  return r;
}

}  // namespace

std::string ModelFixturePath(std::string_view file) {
  return absl::StrFormat("%s/tests/fixtures/model/%s", TESSERA_SOURCE_DIR, file);
}

absl::StatusOr<LlamaCppFixture> LoadLlamaCppFixture() {
  const std::string path = ModelFixturePath("llamacpp_greedy.json");
  ASSIGN_OR_RETURN(json j, ReadJson(path));
  LlamaCppFixture f;
  ASSIGN_OR_RETURN(f.commit, Get<std::string>(j, "llama_cpp_commit", path));
  ASSIGN_OR_RETURN(f.model_sha256, Get<std::string>(j, "model_sha256", path));
  ASSIGN_OR_RETURN(std::vector<json> prompts, Get<std::vector<json>>(j, "prompts", path));
  for (const json& p : prompts) {
    ASSIGN_OR_RETURN(LlamaCppPrompt r, ParseLlamaCppPrompt(p, path));
    f.prompts.push_back(std::move(r));
  }
  ASSIGN_OR_RETURN(std::string logits_file, Get<std::string>(j, "last_logits_file", path));
  ASSIGN_OR_RETURN(f.last_logits, ReadF32(ModelFixturePath(logits_file), f.prompts.size()));
  return f;
}

absl::StatusOr<LlamaCppRobustFixture> LoadLlamaCppRobustFixture() {
  const std::string path = ModelFixturePath("llamacpp_greedy_robust.json");
  ASSIGN_OR_RETURN(json j, ReadJson(path));
  LlamaCppRobustFixture f;
  ASSIGN_OR_RETURN(f.commit, Get<std::string>(j, "llama_cpp_commit", path));
  ASSIGN_OR_RETURN(f.model_sha256, Get<std::string>(j, "model_sha256", path));
  ASSIGN_OR_RETURN(f.selection_rule, Get<std::string>(j, "selection_rule", path));
  ASSIGN_OR_RETURN(f.min_gap, Get<double>(j, "min_gap", path));
  ASSIGN_OR_RETURN(std::vector<json> candidates, Get<std::vector<json>>(j, "candidates", path));
  f.num_candidates = static_cast<int>(candidates.size());
  ASSIGN_OR_RETURN(std::vector<json> prompts, Get<std::vector<json>>(j, "prompts", path));
  for (const json& p : prompts) {
    ASSIGN_OR_RETURN(LlamaCppPrompt r, ParseLlamaCppPrompt(p, path));
    f.prompts.push_back(std::move(r));
  }
  return f;
}

absl::StatusOr<TransformersFixture> LoadTransformersFixture() {
  const std::string path = ModelFixturePath("transformers_logits.json");
  ASSIGN_OR_RETURN(json j, ReadJson(path));
  TransformersFixture f;
  ASSIGN_OR_RETURN(std::vector<json> prompts, Get<std::vector<json>>(j, "prompts", path));
  for (const json& p : prompts) {
    TransformersPrompt r;
    ASSIGN_OR_RETURN(r.name, Get<std::string>(p, "name", path));
    ASSIGN_OR_RETURN(r.prompt_ids, Get<std::vector<int32_t>>(p, "prompt_ids", path));
    ASSIGN_OR_RETURN(r.top1, Get<std::vector<int32_t>>(p, "top1", path));
    ASSIGN_OR_RETURN(r.top10_ids, Get<std::vector<std::vector<int32_t>>>(p, "top10_ids", path));
    ASSIGN_OR_RETURN(r.top10_logits,
                     Get<std::vector<std::vector<double>>>(p, "top10_logits", path));
    ASSIGN_OR_RETURN(r.greedy_ids, Get<std::vector<int32_t>>(p, "greedy_ids", path));
    const size_t n = r.prompt_ids.size();
    if (n == 0 || r.top1.size() != n || r.top10_ids.size() != n || r.top10_logits.size() != n) {
      return FieldError(path, "prompts[].top10_ids");
    }
    f.prompts.push_back(std::move(r));
  }
  ASSIGN_OR_RETURN(f.last_logits_prompts,
                   Get<std::vector<std::string>>(j, "last_logits_prompts", path));
  ASSIGN_OR_RETURN(std::string logits_file, Get<std::string>(j, "last_logits_file", path));
  ASSIGN_OR_RETURN(f.last_logits,
                   ReadF32(ModelFixturePath(logits_file), f.last_logits_prompts.size()));
  return f;
}

absl::StatusOr<LoadedModel*> SharedDefaultModel(std::string_view backend_name) {
  static auto* models = new std::map<std::string, std::unique_ptr<LoadedModel>>();
  auto it = models->find(std::string(backend_name));
  if (it != models->end()) return it->second.get();

  auto loaded = std::make_unique<LoadedModel>();
  ASSIGN_OR_RETURN(std::string path, ResolveModelPath(kDefaultModelName));
  ASSIGN_OR_RETURN(loaded->store, OpenWeightStore(path));
  ASSIGN_OR_RETURN(loaded->backend, CreateBackend(backend_name));
  ASSIGN_OR_RETURN(loaded->model, LlamaModel::Load(*loaded->store, loaded->backend.get()));
  LoadedModel* raw = loaded.get();
  models->emplace(std::string(backend_name), std::move(loaded));
  return raw;
}

int32_t Argmax(const std::vector<float>& v) {
  int32_t best = 0;
  for (int32_t i = 1; i < static_cast<int32_t>(v.size()); ++i) {
    if (v[i] > v[best]) best = i;
  }
  return best;
}

absl::StatusOr<GreedyRun> RunGreedy(LlamaModel& model, const std::vector<int32_t>& prompt,
                                    int n) {
  ASSIGN_OR_RETURN(KvCache cache,
                   model.NewKvCache(static_cast<int64_t>(prompt.size()) + n));
  GreedyRun run;
  std::vector<float> logits;
  RETURN_IF_ERROR(model.Forward(prompt, 0, cache, /*all_logits=*/false, &logits));
  for (int step = 0; step < n; ++step) {
    const int32_t next = Argmax(logits);
    run.ids.push_back(next);
    run.step_logits.push_back(logits);
    if (step + 1 == n) break;
    const int32_t token[1] = {next};
    RETURN_IF_ERROR(model.Forward(token, cache.num_tokens(), cache, false, &logits));
  }
  return run;
}

LogitDiff CompareLogits(const float* got, const float* want) {
  LogitDiff diff;
  for (int64_t v = 0; v < kSmolLmVocab; ++v) {
    const double d = static_cast<double>(got[v]) - want[v];
    diff.max_abs = std::max(diff.max_abs, std::fabs(d));
    diff.sum_sq += d * d;
  }
  diff.rms = std::sqrt(diff.sum_sq / kSmolLmVocab);
  return diff;
}

void ExpectTokenizerGivesPromptIds(const std::vector<LlamaCppPrompt>& prompts) {
  auto m = SharedDefaultModel("cpu");
  ASSERT_TRUE(m.ok()) << m.status();
  const GgufFile* gguf = (*m)->store->gguf();
  ASSERT_NE(gguf, nullptr);
  auto tok = Tokenizer::FromGguf(*gguf);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EncodeOptions opts;
  opts.add_bos = false;
  opts.add_eos = false;
  opts.parse_special = true;
  for (const LlamaCppPrompt& p : prompts) {
    auto ids = (*tok)->Encode(p.text, opts);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, p.prompt_ids) << p.name;
  }
}

}  // namespace tessera::testing
