#include "tools/strategy_generate.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "coordinator/stop_text.h"
#include "tools/cli_util.h"
#include "tools/command.h"
#include "tools/generation_json.h"
#include "worker/batch_runner.h"

namespace tessera {
namespace {

constexpr std::string_view kName = "generate";

}  // namespace

int RunStrategyGenerate(ModelSession& session, std::span<const int32_t> prompt,
                        const GenerationConfig& config, const StrategyGenerateOptions& o) {
  // Sequences alive at once: beams, contrastive candidates, or samples.
  const int64_t width =
      std::max<int64_t>({config.num_beams, config.IsContrastiveSearch() ? config.top_k : 1,
                         config.num_return_sequences, config.best_of.value_or(1)});
  const int64_t total = static_cast<int64_t>(prompt.size()) + o.max_new_tokens;
  BatchRunnerOptions ro;
  ro.scheduler.block_size = 16;
  ro.scheduler.max_model_len = static_cast<int>(total);
  ro.scheduler.max_num_seqs = static_cast<int>(std::max<int64_t>(width, 1));
  ro.scheduler.max_num_batched_tokens = std::max(2048, ro.scheduler.max_num_seqs);
  // Room for every live sequence unshared (what admission asks of a strategy).
  ro.scheduler.num_blocks = static_cast<int>(width * ((total + 15) / 16));
  ro.default_seed = o.default_seed;
  auto runner = BatchRunner::Create(session.model.get(), ro);
  if (!runner.ok()) return FailStatus(kName, runner.status());

  WorkerRequest request;
  request.spec.request_id = "generate";
  request.spec.prompt_token_ids.assign(prompt.begin(), prompt.end());
  request.spec.max_new_tokens = static_cast<int>(o.max_new_tokens);
  request.generation = config;
  const bool strategy = NeedsDecodingStrategy(config);
  if (strategy && !config.stop_strings.empty()) {
    return Fail(kName, "--stop-strings is not supported with beam or contrastive search",
                kExitUsage);
  }
  // Samples (n / best_of) end at a stop string like a single sequence does.
  if (!config.stop_strings.empty()) {
    request.stops_at = StopsAtText(session.tokenizer.get(), config.stop_strings);
  }
  request.spec.n = strategy ? 1 : static_cast<int>(config.num_return_sequences);
  if (absl::Status s = (*runner)->AddRequest(std::move(request), absl::Now()); !s.ok()) {
    return FailStatus(kName, s);
  }
  const absl::Time start = absl::Now();
  // Stepped at the wall clock so that max_time (the request's deadline) can end it.
  std::vector<RequestOutput> finished;
  while ((*runner)->HasUnfinished()) {
    auto step = (*runner)->Step(absl::Now());
    if (!step.ok()) return Fail(kName, std::string(step.status().message()), kExitFailure);
    for (RequestOutput& out : *step) finished.push_back(std::move(out));
  }
  const std::vector<RequestOutput>* outputs = &finished;
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (outputs->size() != 1) return Fail(kName, "the engine returned no result", kExitFailure);

  std::vector<int32_t> stop_ids = config.eos_token_ids;
  stop_ids.insert(stop_ids.end(), config.stop_token_ids.begin(), config.stop_token_ids.end());
  const auto& completions = outputs->front().completions;
  int64_t generated = 0;
  for (size_t i = 0; i < completions.size(); ++i) {
    const RequestOutput::Completion& c = completions[i];
    generated += static_cast<int64_t>(c.generated_token_ids.size());
    GeneratedSequence seq;
    seq.finish_reason = c.finish_reason;
    std::vector<int32_t> ids = c.generated_token_ids;
    if (c.finish_reason == FinishReason::kStop && !ids.empty() &&
        std::find(stop_ids.begin(), stop_ids.end(), ids.back()) != stop_ids.end()) {
      seq.stop_token = ids.back();
      ids.pop_back();
    }
    for (size_t t = 0; t < ids.size(); ++t) {
      SampleResult r;
      r.token = ids[t];
      r.logprob = t < c.token_logprobs.size() ? c.token_logprobs[t] : 0.0f;
      if (t < c.top_logprobs.size()) {
        for (const auto& [token, logprob] : c.top_logprobs[t]) r.top.push_back({token, logprob});
      }
      seq.tokens.push_back(std::move(r));
    }
    auto text = session.tokenizer->Decode(ids);
    seq.text = text.ok() ? *text : std::string();
    if (c.finish_reason == FinishReason::kStop) TrimAtStopString(config.stop_strings, seq.text);
    std::string out;
    if (o.json) {
      nlohmann::json j = SequenceToJson(*session.tokenizer, seq,
                                        {.index = static_cast<int64_t>(i),
                                         .prompt_tokens = static_cast<int64_t>(prompt.size()),
                                         .seed = config.seed.value_or(o.default_seed),
                                         .top_logprobs = o.top_logprobs});
      if (c.score.has_value()) j["score"] = *c.score;
      out = JsonLine(j);
    } else {
      if (completions.size() > 1) {
        std::printf("--- sequence %zu (score %.4f) ---\n", i, c.score.value_or(0.0));
      }
      out = seq.text;
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fputc('\n', stdout);
  }
  std::fflush(stdout);
  const BatchRunnerStats& st = (*runner)->stats();
  std::fprintf(stderr,
               "%zu sequences, %lld tokens returned; %lld engine steps, %lld forward tokens in "
               "%.3f s\n",
               completions.size(), static_cast<long long>(generated),
               static_cast<long long>(st.steps), static_cast<long long>(st.forward_tokens),
               seconds);
  return kExitOk;
}

}  // namespace tessera
