// Replays tests/fixtures/decoding/processor_cases.json (made by make_processor_fixtures.py
// with Hugging Face transformers' own processor list): each case's config goes through
// GenerationConfigFromJson and LogitsProcessorChain, and the row must equal transformers'
// (-inf at the same tokens, finite values within 1e-5).
#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "decoding/generation_config.h"
#include "decoding/logits_processor.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tessera {
namespace {

using nlohmann::json;

json LoadCases() {
  const std::string path =
      std::string(TESSERA_SOURCE_DIR) + "/tests/fixtures/decoding/processor_cases.json";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "missing fixture " << path;
  if (!in) return json::object();
  return json::parse(in);
}

TEST(TransformersFixtureTest, ChainMatchesTransformers) {
  const json fixture = LoadCases();
  ASSERT_TRUE(fixture.contains("cases"));
  const json& cases = fixture["cases"];
  ASSERT_GE(cases.size(), 100u);
  int removed_somewhere = 0;
  for (const json& c : cases) {
    const std::string name = c["name"].get<std::string>();
    SCOPED_TRACE(name);
    auto config = GenerationConfigFromJson(c["config"], name);
    ASSERT_TRUE(config.ok()) << config.status();
    auto chain = LogitsProcessorChain::Create(*config, c["vocab_size"].get<int32_t>());
    ASSERT_TRUE(chain.ok()) << chain.status();
    const std::vector<int32_t> ids = c["ids"].get<std::vector<int32_t>>();
    std::vector<float> row = c["logits"].get<std::vector<float>>();
    chain->Apply(TokenHistory{ids, c["prompt_len"].get<size_t>()}, row);
    const json& expected = c["expected"];
    ASSERT_EQ(row.size(), expected.size());
    bool any_removed = false;
    for (size_t i = 0; i < row.size(); ++i) {
      if (expected[i].is_null()) {
        EXPECT_EQ(row[i], -std::numeric_limits<float>::infinity()) << "token " << i;
        any_removed = true;
      } else {
        const double want = expected[i].get<double>();
        EXPECT_NEAR(row[i], want, 1e-5 * std::max(1.0, std::fabs(want))) << "token " << i;
      }
    }
    removed_somewhere += any_removed;
  }
  // The fixture exercises the masking paths, not only the arithmetic ones.
  EXPECT_GT(removed_somewhere, 50);
}

}  // namespace
}  // namespace tessera
