#include "tests/worker/solo_decode.h"

#include <algorithm>

#include "gtest/gtest.h"

namespace tessera::testing {

SoloResult SoloGenerate(LlamaModel& model, const std::vector<int32_t>& prompt,
                        int max_new_tokens, const std::vector<int32_t>& stop_ids,
                        const Sampler* sampler, uint64_t sequence_index) {
  SoloResult result;
  const int64_t context = model.config().max_position_embeddings;
  auto cache = model.NewKvCache(context);
  EXPECT_TRUE(cache.ok()) << cache.status();
  if (!cache.ok()) return result;
  std::vector<int32_t> ids = prompt;
  std::vector<float> logits;
  int64_t fed = 0;
  while (true) {
    const absl::Status status =
        model.Forward(std::span(ids).subspan(fed), fed, *cache, /*all_logits=*/false, &logits);
    EXPECT_TRUE(status.ok()) << status;
    if (!status.ok()) return result;
    fed = static_cast<int64_t>(ids.size());
    int32_t token;
    if (sampler == nullptr) {
      token = ArgMax(logits);
    } else {
      const TokenHistory history{ids, prompt.size()};
      token = sampler->Sample(history, logits, sequence_index).token;
    }
    ids.push_back(token);
    result.tokens.push_back(token);
    if (std::find(stop_ids.begin(), stop_ids.end(), token) != stop_ids.end()) {
      result.finish = FinishReason::kStop;
      break;
    }
    if (static_cast<int>(result.tokens.size()) >= max_new_tokens ||
        static_cast<int64_t>(ids.size()) >= context) {
      result.finish = FinishReason::kLength;
      break;
    }
  }
  return result;
}

}  // namespace tessera::testing
