#include "tools/generation_loop.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace tessera {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

absl::Status GenerateSequence(LlamaModel& model, std::span<const int32_t> prompt,
                              const Sampler& sampler, const GenerationLimits& limits,
                              const TokenCallback& on_token, GenerationStats* stats) {
  GenerationStats local;
  GenerationStats& st = stats != nullptr ? *stats : local;
  st = GenerationStats{};
  st.prompt_tokens = static_cast<int64_t>(prompt.size());
  if (limits.max_new_tokens <= 0) return absl::OkStatus();
  if (sampler.chain().vocab_size() != model.config().vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("the sampler's vocabulary (%d) is not the model's (%d)",
                        sampler.chain().vocab_size(), model.config().vocab_size));
  }
  const int64_t context = model.config().max_position_embeddings;
  const int64_t capacity = std::min(context, st.prompt_tokens + limits.max_new_tokens);
  ASSIGN_OR_RETURN(KvCache cache, model.NewKvCache(capacity));

  // Prompt + generated ids: what the processors (penalties, n-grams) look at.
  std::vector<int32_t> history(prompt.begin(), prompt.end());
  std::vector<float> logits;
  const absl::Time deadline = absl::Now() + limits.max_time;
  auto start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(model.Forward(prompt, 0, cache, /*all_logits=*/false, &logits));
  st.prefill_seconds = SecondsSince(start);

  start = std::chrono::steady_clock::now();
  int64_t pos = st.prompt_tokens;
  while (true) {
    const TokenHistory h{history, prompt.size()};
    const SampleResult next = sampler.Sample(h, logits, /*sequence_index=*/0);
    if (next.token < 0) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "the logits processors removed every token at position %d", history.size()));
    }
    if (std::find(limits.stop_ids.begin(), limits.stop_ids.end(), next.token) !=
        limits.stop_ids.end()) {
      st.finish_reason = FinishReason::kStop;
      st.stop_token = next.token;
      break;
    }
    ASSIGN_OR_RETURN(const bool go_on, on_token(next));
    history.push_back(next.token);
    ++st.generated_tokens;
    if (!go_on) {
      st.finish_reason = FinishReason::kStop;
      break;
    }
    if (st.generated_tokens >= limits.max_new_tokens || pos >= capacity) break;
    if (absl::Now() >= deadline) {
      st.finish_reason = FinishReason::kDeadline;
      break;
    }
    const int32_t feed[1] = {next.token};
    RETURN_IF_ERROR(model.Forward(feed, pos, cache, /*all_logits=*/false, &logits));
    ++pos;
    ++st.decode_steps;
  }
  st.decode_seconds = SecondsSince(start);
  return absl::OkStatus();
}

}  // namespace tessera
