#include "tools/batch_generate.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/progress_bar.h"
#include "coordinator/stop_text.h"
#include "model/llama_model.h"
#include "nlohmann/json.hpp"
#include "tokenizer/chat_prompt.h"
#include "tokenizer/tokenizer.h"
#include "tools/batch_request.h"
#include "tools/cli_util.h"
#include "tools/command.h"
#include "tools/generation_json.h"
#include "tools/model_session.h"
#include "worker/batch_runner.h"

namespace tessera {
namespace {

using nlohmann::json;

constexpr std::string_view kName = "generate";

// One non-blank input line and, once known, its output line.
struct Slot {
  int64_t line_number = 0;
  std::string text;
  json id;
  std::vector<int32_t> stop_ids;
  std::vector<std::string> stop_strings;
  bool logprobs = false;  // the line asked for logprobs
  std::optional<std::string> output;
  bool failed = false;
};

std::string ErrorLine(const json& id, const absl::Status& status) {
  return JsonLine({{"id", id},
                   {"error",
                    {{"code", absl::StatusCodeToString(status.code())},
                     {"message", std::string(status.message())}}}});
}

// Writes the slots whose output is known, in input order, from *next on.
class OrderedWriter {
 public:
  explicit OrderedWriter(std::FILE* out) : out_(out) {}
  void Flush(std::vector<Slot>& slots) {
    while (next_ < slots.size() && slots[next_].output.has_value()) {
      const std::string& line = *slots[next_].output;
      std::fwrite(line.data(), 1, line.size(), out_);
      std::fputc('\n', out_);
      slots[next_].output = std::string();  // written: free the text
      slots[next_].text.clear();
      ++next_;
    }
    std::fflush(out_);
  }

 private:
  std::FILE* out_;
  size_t next_ = 0;
};

struct Totals {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t failed = 0;
};

// The output line of a finished request; adds its usage to `totals`.
std::string OutputLine(const Slot& slot, const RequestOutput& out, int64_t prompt_tokens,
                       const Tokenizer& tokenizer, Totals& totals) {
  json completions = json::array();
  int64_t completion_tokens = 0;
  for (size_t i = 0; i < out.completions.size(); ++i) {
    const RequestOutput::Completion& c = out.completions[i];
    std::vector<int32_t> ids = c.generated_token_ids;
    completion_tokens += static_cast<int64_t>(ids.size());
    json stop_token = nullptr;
    if (c.finish_reason == FinishReason::kStop && !ids.empty() &&
        std::find(slot.stop_ids.begin(), slot.stop_ids.end(), ids.back()) != slot.stop_ids.end()) {
      stop_token = ids.back();
      ids.pop_back();
    }
    // Per-token logprobs, when the line asked for them (the stop token's left out).
    json logprobs = nullptr;
    double cumulative = 0.0;
    if (slot.logprobs && c.token_logprobs.size() >= ids.size()) {
      logprobs = json::array();
      for (size_t t = 0; t < ids.size(); ++t) {
        json entry = {{"token_id", ids[t]}, {"logprob", c.token_logprobs[t]}};
        if (t < c.top_logprobs.size() && !c.top_logprobs[t].empty()) {
          json top = json::array();
          for (const auto& [token, logprob] : c.top_logprobs[t]) {
            top.push_back({{"token_id", token}, {"logprob", logprob}});
          }
          entry["top_logprobs"] = std::move(top);
        }
        logprobs.push_back(std::move(entry));
        cumulative += c.token_logprobs[t];
      }
    }
    auto text = tokenizer.Decode(ids);
    if (text.ok() && c.finish_reason == FinishReason::kStop) {
      TrimAtStopString(slot.stop_strings, *text);
    }
    completions.push_back({{"index", i},
                           {"text", text.ok() ? *text : std::string()},
                           {"token_ids", ids},
                           {"finish_reason", std::string(FinishReasonName(c.finish_reason))},
                           {"stop_token_id", stop_token}});
    if (c.score.has_value()) completions.back()["score"] = *c.score;
    if (!logprobs.is_null()) {
      completions.back()["logprobs"] = std::move(logprobs);
      completions.back()["cumulative_logprob"] = cumulative;
    }
  }
  totals.prompt_tokens += prompt_tokens;
  totals.completion_tokens += completion_tokens;
  return JsonLine(
      {{"id", slot.id},
       {"completions", std::move(completions)},
       {"usage", {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens}}}});
}

// The engine's refusal of slot `index`, on its line: the engine's "request <index>: " names
// an id the user never saw, so it goes.
absl::Status AdmissionError(int64_t line_number, size_t index, const absl::Status& status) {
  std::string message(status.message());
  const std::string engine_id = absl::StrCat("request ", index, ": ");
  if (message.rfind(engine_id, 0) == 0) message.erase(0, engine_id.size());
  return absl::Status(status.code(), absl::StrCat("line ", line_number, ": ", message));
}

absl::StatusOr<std::vector<Slot>> ReadInput(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrFormat("--input: cannot open %s", path));
  std::vector<Slot> slots;
  std::string line;
  int64_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
    Slot s;
    s.line_number = line_number;
    s.text = std::move(line);
    slots.push_back(std::move(s));
  }
  if (in.bad()) return absl::DataLossError(absl::StrFormat("--input: error reading %s", path));
  return slots;
}

}  // namespace

void AddBatchFlags(CLI::App* app, BatchFlags* f, bool engine_flags_need_input) {
  f->input_option = app->add_option(
      "--input", f->input,
      "Batch mode: a JSON-lines file of requests, run together through the engine's "
      "scheduler (see tools/batch_generate.h for the line format); decoding flags are "
      "the defaults each line may override. Exit 1 if any line fails");
  app->add_option("--output", f->output,
                  "Batch mode: JSON-lines results file, in input order (default: stdout)")
      ->needs(f->input_option);
  AddEngineFlags(app, f, engine_flags_need_input ? f->input_option : nullptr);
}

int RunBatchGenerate(const BatchGenerateOptions& o) {
  const BatchFlags& f = *o.batch;
  auto settings = ResolveDecodingFlags(*o.decoding);
  if (!settings.ok()) return FailStatus(kName, settings.status());
  for (const std::string& w : settings->warnings) {
    std::fprintf(stderr, "tessera %s: warning: %s\n", std::string(kName).c_str(), w.c_str());
  }
  auto slots = ReadInput(f.input);
  if (!slots.ok()) return Fail(kName, std::string(slots.status().message()), kExitUsage);
  std::FILE* out = stdout;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> out_file(nullptr, &std::fclose);
  if (!f.output.empty()) {
    out_file.reset(std::fopen(f.output.c_str(), "w"));
    if (out_file == nullptr) {
      return Fail(kName, absl::StrCat("--output: cannot write ", f.output), kExitUsage);
    }
    out = out_file.get();
  }
  ModelSession session;
  if (int code = OpenModelSession(kName,
                                  {.model = o.model,
                                   .backend = o.backend,
                                   .threads = o.threads,
                                   .deterministic = o.deterministic,
                                   .pack_weights = !o.no_pack_weights,
                                   .fp8_weights = o.fp8_weights,
                                   .tensor_parallel = o.tensor_parallel,
                                   .stage = o.stage},
                                  &session);
      code != kExitOk) {
    return code;
  }
  const int64_t context = session.model->config().max_position_embeddings;

  BatchRunnerOptions ro = EngineRunnerOptions(f, context);
  ro.model_group = o.model_group;
  ro.role = o.role;
  auto runner = BatchRunner::Create(session.model.get(), ro);
  if (!runner.ok()) return FailStatus(kName, runner.status());
  std::fprintf(stderr, "%s\n", (*runner)->StartupReport().c_str());

  // A template error only matters to the lines that need one.
  std::optional<ChatTemplate> chat_template;
  BatchRequestContext ctx;
  auto loaded = LoadChatTemplate(o.chat_template_file, *session.store->gguf());
  if (loaded.ok()) {
    chat_template = *std::move(loaded);
    ctx.chat_template = &*chat_template;
  } else if (!o.chat_template_file.empty() || o.chat) {
    return FailStatus(kName, loaded.status());
  } else {
    ctx.chat_template_error = std::string(loaded.status().message());
  }
  ctx.tokenizer = session.tokenizer.get();
  ctx.chat = o.chat;
  ctx.defaults = &*settings;
  ctx.context_length = context;

  std::vector<Slot>& s = *slots;
  std::vector<int64_t> prompt_tokens(s.size(), 0);
  OrderedWriter writer(out);
  Totals totals;
  ProgressBar progress("requests", static_cast<int64_t>(s.size()));
  int64_t done = 0;
  const auto finish_with_error = [&](size_t i, const absl::Status& status) {
    s[i].output = ErrorLine(s[i].id, status);
    s[i].failed = true;
    ++totals.failed;
    ++done;
  };
  // Requests join as the waiting queue drains, so that a long file never overfills it.
  const int max_waiting = std::max(2 * f.max_num_seqs, 16);
  const absl::Time start = absl::Now();
  size_t next = 0;
  int idle_steps = 0;
  while (next < s.size() || (*runner)->HasUnfinished()) {
    while (next < s.size() && (*runner)->scheduler().num_waiting() < max_waiting) {
      const size_t i = next++;
      auto parsed = ParseBatchLine(s[i].text, s[i].line_number, ctx);
      if (!parsed.ok()) {
        s[i].id = BatchLineId(json::parse(s[i].text, nullptr, false), s[i].line_number);
        finish_with_error(i, parsed.status());
        continue;
      }
      s[i].id = parsed->id;
      s[i].stop_ids = std::move(parsed->stop_ids);
      s[i].stop_strings = std::move(parsed->stop_strings);
      s[i].logprobs = parsed->request.generation.logprobs.has_value();
      prompt_tokens[i] = static_cast<int64_t>(parsed->request.spec.prompt_token_ids.size());
      // The engine's id is the slot index: user ids need not be unique.
      parsed->request.spec.request_id = absl::StrCat(i);
      const absl::Status added = (*runner)->AddRequest(std::move(parsed->request), absl::Now());
      if (!added.ok()) finish_with_error(i, AdmissionError(s[i].line_number, i, added));
    }
    if ((*runner)->HasUnfinished()) {
      const int64_t steps_before = (*runner)->stats().steps;
      auto finished = (*runner)->Step(absl::Now());
      // An empty step may follow a preemption; two in a row mean no progress is possible
      // (admission should make that unreachable), so never spin.
      const bool idle =
          finished.ok() && finished->empty() && (*runner)->stats().steps == steps_before;
      idle_steps = idle ? idle_steps + 1 : 0;
      if (idle_steps >= 2) {
        finished = absl::InternalError("the engine could not schedule the remaining requests");
      }
      if (!finished.ok()) {
        writer.Flush(s);
        return Fail(kName, std::string(finished.status().message()), kExitFailure);
      }
      for (const RequestOutput& r : *finished) {
        size_t i = 0;
        if (!absl::SimpleAtoi(r.request_id, &i) || i >= s.size()) continue;
        s[i].output = OutputLine(s[i], r, prompt_tokens[i], *session.tokenizer, totals);
        ++done;
      }
    }
    if (done < static_cast<int64_t>(s.size())) progress.Update(done);  // Done() draws 100%
    writer.Flush(s);
  }
  progress.Done();
  writer.Flush(s);

  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const BatchRunnerStats& st = (*runner)->stats();
  std::fprintf(stderr,
               "batch: %zu requests (%lld failed), %lld prompt + %lld completion tokens in "
               "%.3f s (%.1f completion tokens/s, %.1f requests/s); %lld steps, %lld "
               "forward tokens\n",
               s.size(), static_cast<long long>(totals.failed),
               static_cast<long long>(totals.prompt_tokens),
               static_cast<long long>(totals.completion_tokens), seconds,
               seconds > 0 ? totals.completion_tokens / seconds : 0.0,
               seconds > 0 ? s.size() / seconds : 0.0, static_cast<long long>(st.steps),
               static_cast<long long>(st.forward_tokens));
  if (out_file != nullptr && std::fflush(out_file.get()) != 0) {
    return Fail(kName, absl::StrCat("--output: error writing ", f.output), kExitFailure);
  }
  return totals.failed > 0 ? kExitFailure : kExitOk;
}

}  // namespace tessera
