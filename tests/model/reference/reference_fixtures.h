// Test helper: reads the SmolLM2-135M reference fixtures of tests/fixtures/model/ (made by
// make_llamacpp_fixtures.sh and make_transformers_fixtures.py) and runs the default model.
// Loaders return INVALID_ARGUMENT naming the file and field for a malformed fixture and
// NOT_FOUND for a missing file. Not thread-safe (tests run on one thread).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "formats/weight_store.h"
#include "kernels/ops.h"
#include "model/llama_model.h"

namespace tessera::testing {

inline constexpr int64_t kSmolLmVocab = 49152;

struct LlamaCppPrompt {
  std::string name;
  std::string text;
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> generated_ids;
  std::vector<float> step_margins;  // llama.cpp's best minus second-best logit per step
};

struct LlamaCppFixture {
  std::string commit;
  std::string model_sha256;
  std::vector<LlamaCppPrompt> prompts;
  std::vector<float> last_logits;  // [prompts.size(), kSmolLmVocab]
};

struct TransformersPrompt {
  std::string name;
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> top1;                      // per position
  std::vector<std::vector<int32_t>> top10_ids;    // per position, best first
  std::vector<std::vector<double>> top10_logits;  // per position, best first
  std::vector<int32_t> greedy_ids;                // transformers' own 64-token continuation
};

struct TransformersFixture {
  std::vector<TransformersPrompt> prompts;
  std::vector<std::string> last_logits_prompts;
  std::vector<float> last_logits;  // [last_logits_prompts.size(), kSmolLmVocab]
};

// <source>/tests/fixtures/model/<file>.
std::string ModelFixturePath(std::string_view file);

absl::StatusOr<LlamaCppFixture> LoadLlamaCppFixture();

// llamacpp_greedy_robust.json (make_llamacpp_robust_fixture.sh): the candidate prompts whose
// llama.cpp greedy continuation has a gap >= min_gap at every step and does not change with
// an F16 KV cache. `prompts` are the kept ones; `num_candidates` counts all that were tried.
struct LlamaCppRobustFixture {
  std::string commit;
  std::string model_sha256;
  std::string selection_rule;
  double min_gap = 0;
  int num_candidates = 0;
  std::vector<LlamaCppPrompt> prompts;
};
absl::StatusOr<LlamaCppRobustFixture> LoadLlamaCppRobustFixture();
absl::StatusOr<TransformersFixture> LoadTransformersFixture();

// The default model (formats/model_locator.h) on `backend_name`, loaded once per backend
// and kept for the life of the test binary.
struct LoadedModel {
  std::unique_ptr<WeightStore> store;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<LlamaModel> model;
};
absl::StatusOr<LoadedModel*> SharedDefaultModel(std::string_view backend_name);

// Result of a greedy run: the chosen ids and, per step, the logits they were chosen from.
struct GreedyRun {
  std::vector<int32_t> ids;
  std::vector<std::vector<float>> step_logits;
};
// Prefill of `prompt` in one Forward, then n-1 single-token decode steps; argmax with the
// lowest id on ties (as the llama.cpp driver does).
absl::StatusOr<GreedyRun> RunGreedy(LlamaModel& model, const std::vector<int32_t>& prompt,
                                    int n);

// Index of the largest value (lowest index on ties).
int32_t Argmax(const std::vector<float>& v);

// Differences between two rows of kSmolLmVocab logits (got - want), accumulated in double.
struct LogitDiff {
  double max_abs = 0;
  double sum_sq = 0;
  double rms = 0;
};
LogitDiff CompareLogits(const float* got, const float* want);

// Expects (gtest) that the default model's tokenizer encodes each prompt's text as llama.cpp
// did (no BOS or EOS, special tokens parsed) to the fixture's prompt ids.
void ExpectTokenizerGivesPromptIds(const std::vector<LlamaCppPrompt>& prompts);

}  // namespace tessera::testing
