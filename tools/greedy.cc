#include "tools/greedy.h"

#include <algorithm>
#include <chrono>

#include "common/status_macros.h"

namespace tessera {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int32_t ArgMax(std::span<const float> logits) {
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[static_cast<size_t>(best)]) best = static_cast<int32_t>(i);
  }
  return best;
}

absl::Status GreedyGenerate(LlamaModel& model, std::span<const int32_t> prompt,
                            int64_t max_tokens, const std::vector<int32_t>& stop_ids,
                            const std::function<absl::Status(int32_t)>& on_token,
                            GreedyStats* stats) {
  GreedyStats local;
  GreedyStats& st = stats != nullptr ? *stats : local;
  st = GreedyStats{};
  st.prompt_tokens = static_cast<int64_t>(prompt.size());
  if (max_tokens <= 0) return absl::OkStatus();
  const int64_t context = model.config().max_position_embeddings;
  const int64_t capacity = std::min(context, st.prompt_tokens + max_tokens);
  ASSIGN_OR_RETURN(KvCache cache, model.NewKvCache(capacity));

  std::vector<float> logits;
  auto start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(model.Forward(prompt, 0, cache, /*all_logits=*/false, &logits));
  st.prefill_seconds = SecondsSince(start);

  start = std::chrono::steady_clock::now();
  int64_t pos = st.prompt_tokens;
  while (true) {
    const int32_t next = ArgMax(logits);
    if (std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end()) {
      st.stopped = true;
      break;
    }
    RETURN_IF_ERROR(on_token(next));
    ++st.generated_tokens;
    if (st.generated_tokens >= max_tokens || pos >= capacity) break;
    const int32_t feed[1] = {next};
    RETURN_IF_ERROR(model.Forward(feed, pos, cache, /*all_logits=*/false, &logits));
    ++pos;
    ++st.decode_steps;
  }
  st.decode_seconds = SecondsSince(start);
  return absl::OkStatus();
}

}  // namespace tessera
