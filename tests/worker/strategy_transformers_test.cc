// Beam search, diverse beam search and contrastive search on the default model against
// Hugging Face transformers' generate() (tests/fixtures/decoding/strategy_fixtures.json, made
// by make_strategy_fixtures.py in float64 on the same GGUF weights). All cases run as one
// mixed batch through the BatchRunner on "cpu-reference", whose logits are within ~2e-4 of
// transformers' (tests/model/reference/): the token ids must be equal, and the beam scores
// within kScoreTolerance. No case is near a tie: the fixture script found every beam
// top-k gap >= 4.7e-4 and every contrastive margin >= 9.7e-4 (the test prints the latter).
#include <fstream>
#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "decoding/generation_config.h"
#include "formats/model_locator.h"
#include "formats/weight_store.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "nlohmann/json.hpp"
#include "worker/batch_runner.h"

namespace tessera {
namespace {

using nlohmann::json;

constexpr double kScoreTolerance = 1e-3;

json LoadFixtures() {
  const std::string path =
      std::string(TESSERA_SOURCE_DIR) + "/tests/fixtures/decoding/strategy_fixtures.json";
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot open " << path;
  return json::parse(in, nullptr, /*allow_exceptions=*/false);
}

TEST(StrategyTransformersTest, EveryStrategyMatchesTransformersGenerate) {
  const json fixtures = LoadFixtures();
  ASSERT_TRUE(fixtures.is_object() && fixtures.contains("cases"));
  auto path = ResolveModelPath("default");
  ASSERT_TRUE(path.ok()) << "the default model is needed: " << path.status();
  auto store = OpenWeightStore(*path);
  ASSERT_TRUE(store.ok()) << store.status();
  auto backend = CreateBackend("cpu-reference", 2);
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto model = LlamaModel::Load(**store, backend->get());
  ASSERT_TRUE(model.ok()) << model.status();

  BatchRunnerOptions options;
  options.scheduler.block_size = 16;
  options.scheduler.max_num_seqs = 256;
  options.scheduler.max_num_batched_tokens = 1024;
  options.scheduler.max_model_len = 256;
  options.kv_cache_bytes = int64_t{256} << 20;
  auto runner = BatchRunner::Create(model->get(), options);
  ASSERT_TRUE(runner.ok()) << runner.status();

  std::map<std::string, const json*> cases;
  std::set<std::string> strategies;
  for (const json& c : fixtures["cases"]) {
    const std::string id = c["name"].get<std::string>() + "/" + c["prompt"].get<std::string>();
    auto config = GenerationConfigFromJson(c["config"], id);
    ASSERT_TRUE(config.ok()) << config.status();
    WorkerRequest r;
    r.spec.request_id = id;
    r.spec.prompt_token_ids = c["prompt_ids"].get<std::vector<int32_t>>();
    r.spec.max_new_tokens = static_cast<int>(c["config"]["max_new_tokens"].get<int64_t>());
    r.generation = *config;
    ASSERT_TRUE((*runner)->AddRequest(std::move(r), absl::Now()).ok()) << id;
    cases[id] = &c;
  }
  auto outputs = (*runner)->RunUntilIdle(absl::Now());
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  ASSERT_EQ(outputs->size(), cases.size());
  for (const RequestOutput& out : *outputs) {
    const json& c = *cases.at(out.request_id);
    const auto expected = c["sequences"].get<std::vector<std::vector<int32_t>>>();
    ASSERT_EQ(out.completions.size(), expected.size()) << out.request_id;
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_EQ(out.completions[i].generated_token_ids, expected[i])
          << out.request_id << " sequence " << i;
      if (c["sequence_scores"].is_array()) {
        ASSERT_TRUE(out.completions[i].score.has_value());
        EXPECT_NEAR(*out.completions[i].score, c["sequence_scores"][i].get<double>(),
                    kScoreTolerance)
            << out.request_id << " sequence " << i;
      }
    }
    if (c.contains("step_margins") && c["step_margins"].is_array()) {
      double min_margin = 1e9;
      for (const json& m : c["step_margins"]) min_margin = std::min(min_margin, m.get<double>());
      std::printf("%s: smallest contrastive margin %.2e\n", out.request_id.c_str(), min_margin);
    }
  }
  EXPECT_EQ((*runner)->scheduler().block_manager().Usage().used, 0) << "blocks leaked";
}

}  // namespace
}  // namespace tessera
