// `tessera generate`: loads a model (progress bar on stderr), tokenizes the prompt (through
// the model's chat template with --chat, message text never parsed for special tokens),
// decodes one sequence with the decoding flags (decoding_flags.h: greedy unless
// --do-sample) until a stop token or the token limit, and prints the text to stdout
// (streamed, or once with --no-stream) or one JSON object per sequence with --json
// (generation_json.h). Prefill / decode speed goes to stderr. With --input FILE.jsonl it
// runs a whole file of requests through the engine instead (batch_generate.h).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "decoding/decoding_strategy.h"
#include "decoding/sampler.h"
#include "decoding/stop_strings.h"
#include "model/llama_model.h"
#include "tokenizer/chat_prompt.h"
#include "tokenizer/incremental_detokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tools/backend_flags.h"
#include "tools/batch_generate.h"
#include "tools/cli_util.h"
#include "tools/command.h"
#include "tools/decoding_flags.h"
#include "tools/generation_json.h"
#include "tools/generation_loop.h"
#include "tools/model_session.h"
#include "tools/strategy_generate.h"

namespace tessera {
namespace {

constexpr std::string_view kName = "generate";

struct GenerateOptions {
  std::string model = "default";
  std::string prompt;
  bool chat = false;
  std::string chat_template_file;
  int threads = 0;
  bool deterministic = false;
  bool no_pack_weights = false;  // BackendOptions::pack_weights off
  bool fp8_weights = false;      // --quantization fp8
  std::string backend = "cpu";
  bool no_stream = false;
  bool json = false;
  DecodingFlags decoding;
  BatchFlags batch;
};

absl::StatusOr<std::vector<int32_t>> PromptTokens(const GenerateOptions& o, const GgufFile& file,
                                                  const Tokenizer& tokenizer) {
  if (!o.chat) return tokenizer.Encode(o.prompt, EncodeOptions{});
  ASSIGN_OR_RETURN(ChatTemplate chat_template, LoadChatTemplate(o.chat_template_file, file));
  const ChatMessage messages[] = {{"user", o.prompt}};
  return EncodeChat(tokenizer, chat_template, messages, /*add_generation_prompt=*/true);
}

// The request's config for this model: the vocabulary's stop ids join the EOS ids (so that
// --min-new-tokens masks them too), and --json always reports the chosen tokens' logprobs.
GenerationConfig ConfigForModel(const GenerateOptions& o, GenerationConfig config,
                                const Tokenizer& tokenizer) {
  for (int32_t id : tokenizer.stop_ids()) {
    if (std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(), id) ==
        config.eos_token_ids.end()) {
      config.eos_token_ids.push_back(id);
    }
  }
  if (o.json && !config.logprobs.has_value()) config.logprobs = 0;
  return config;
}

int RunGenerate(const GenerateOptions& o) {
  if (!o.batch.input.empty()) {
    return RunBatchGenerate({.model = o.model,
                             .backend = o.backend,
                             .threads = o.threads,
                             .deterministic = o.deterministic,
                             .no_pack_weights = o.no_pack_weights,
                             .fp8_weights = o.fp8_weights,
                             .chat = o.chat,
                             .chat_template_file = o.chat_template_file,
                             .decoding = &o.decoding,
                             .batch = &o.batch});
  }
  if (o.prompt.empty()) return Fail(kName, "give --prompt, or --input for a batch", kExitUsage);
  if (!o.chat_template_file.empty() && !o.chat) {
    return Fail(kName, "--chat-template needs --chat", kExitUsage);
  }
  if (o.decoding.Given("--logprobs") && !o.json) {
    return Fail(kName, "--logprobs needs --json", kExitUsage);
  }
  auto settings = ResolveDecodingFlags(o.decoding);
  if (!settings.ok()) return FailStatus(kName, settings.status());
  for (const std::string& w : settings->warnings) {
    std::fprintf(stderr, "tessera %s: warning: %s\n", std::string(kName).c_str(), w.c_str());
  }
  ModelSession session;
  if (int code = OpenModelSession(kName,
                                  {.model = o.model,
                                   .backend = o.backend,
                                   .threads = o.threads,
                                   .deterministic = o.deterministic,
                                   .pack_weights = !o.no_pack_weights,
                                   .fp8_weights = o.fp8_weights},
                                  &session);
      code != kExitOk) {
    return code;
  }

  auto prompt = PromptTokens(o, *session.store->gguf(), *session.tokenizer);
  if (!prompt.ok()) return FailStatus(kName, prompt.status());
  if (prompt->empty()) return Fail(kName, "the prompt has no tokens", kExitUsage);
  const int64_t context = session.model->config().max_position_embeddings;
  if (static_cast<int64_t>(prompt->size()) >= context) {
    return Fail(kName,
                absl::StrCat("the prompt has ", prompt->size(), " tokens; the model's context is ",
                             context),
                kExitUsage);
  }

  const GenerationConfig config = ConfigForModel(o, settings->config, *session.tokenizer);
  if (NeedsDecodingStrategy(config) || config.num_return_sequences > 1 ||
      config.best_of.value_or(1) > 1) {
    const int64_t max_new =
        std::min<int64_t>(settings->MaxNewTokens(static_cast<int64_t>(prompt->size())),
                          context - static_cast<int64_t>(prompt->size()));
    if (max_new < 1) return Fail(kName, "--max-new-tokens must be >= 1 here", kExitUsage);
    return RunStrategyGenerate(session, *prompt, config,
                               {.json = o.json,
                                .top_logprobs = o.decoding.Given("--logprobs"),
                                .max_new_tokens = max_new,
                                .default_seed = std::random_device{}()});
  }
  auto sampler = Sampler::Create(config, static_cast<int32_t>(session.model->config().vocab_size),
                                 /*default_seed=*/std::random_device{}());
  if (!sampler.ok()) return FailStatus(kName, AttributeToFlag(o.decoding, sampler.status()));
  GenerationLimits limits;
  limits.max_new_tokens = settings->MaxNewTokens(static_cast<int64_t>(prompt->size()));
  limits.stop_ids = config.eos_token_ids;
  limits.stop_ids.insert(limits.stop_ids.end(), config.stop_token_ids.begin(),
                         config.stop_token_ids.end());
  if (config.max_time.has_value()) limits.max_time = absl::Seconds(*config.max_time);

  const bool stream = !o.no_stream && !o.json;
  IncrementalDetokenizer detok(*session.tokenizer);
  // Text goes through the stop-string matcher, which holds back a possible stop's start.
  StopStringMatcher stops(config.stop_strings);
  GeneratedSequence sequence;
  GenerationStats stats;
  const auto emit = [&](const std::string& text) {
    sequence.text += text;
    if (stream && !text.empty()) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
    }
  };
  const absl::Status s = GenerateSequence(
      *session.model, *prompt, *sampler, limits,
      [&](const SampleResult& r) -> absl::StatusOr<bool> {
        ASSIGN_OR_RETURN(std::string piece, detok.Push(r.token));
        sequence.tokens.push_back(r);
        const StopStringMatcher::Result released = stops.Feed(piece);
        emit(released.text);
        return !released.stopped;
      },
      &stats);
  std::string tail;
  if (!stops.stopped()) {
    const StopStringMatcher::Result released = stops.Feed(detok.Flush());
    tail = released.text + (released.stopped ? std::string() : stops.Flush());
    sequence.text += tail;
    if (released.stopped) stats.finish_reason = FinishReason::kStop;
  }
  sequence.finish_reason = stats.finish_reason;
  sequence.stop_token = stats.stop_token;
  std::string out = stream ? tail : sequence.text;
  if (o.json) {
    SequenceJsonOptions jo;
    jo.prompt_tokens = stats.prompt_tokens;
    jo.seed = sampler->seed();
    jo.top_logprobs = o.decoding.Given("--logprobs");
    out = JsonLine(SequenceToJson(*session.tokenizer, sequence, jo));
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (!s.ok()) return Fail(kName, std::string(s.message()), kExitFailure);

  std::fprintf(stderr, "prefill: %lld tokens in %.3f s (%.1f tokens/s)\n",
               static_cast<long long>(stats.prompt_tokens), stats.prefill_seconds,
               stats.PrefillTokensPerSecond());
  std::fprintf(stderr, "decode: %lld tokens generated, %lld steps in %.3f s (%.1f tokens/s)%s\n",
               static_cast<long long>(stats.generated_tokens),
               static_cast<long long>(stats.decode_steps), stats.decode_seconds,
               stats.DecodeTokensPerSecond(),
               stats.finish_reason == FinishReason::kStop ? ", stopped at a stop token" : "");
  return kExitOk;
}

}  // namespace

Command AddGenerateCommand(CLI::App& root) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* app = root.add_subcommand(
      "generate",
      "Generate text from a prompt: greedy by default, sampling with --do-sample "
      "(transformers GenerationConfig semantics: top_k 50 applies when sampling)");
  app->add_option("--model", o->model,
                  "GGUF model file, 'default', or random:SHAPE[:DTYPE[:LAYERS]] (random weights, "
                  "see tessera synthesize --list)")
      ->capture_default_str();
  CLI::Option* prompt = app->add_option("--prompt", o->prompt, "Prompt text");
  app->add_flag("--chat", o->chat, "Wrap the prompt as a user message in the chat template");
  app->add_option("--chat-template", o->chat_template_file,
                  "File with a chat format name (chatml, llama3, ...) or a Jinja chat "
                  "template (default: the model's own)");
  app->add_flag("--no-pack-weights", o->no_pack_weights,
                "Keep the weights in the GGUF file's layout, read straight from the mapping, "
                "instead of repacking Q4_0/Q4_1/Q8_0 matrices for the CPU's interleaved GEMM "
                "(faster load, slower prefill and decode)");
  AddQuantizationFlag(app, &o->fp8_weights);
  app->add_flag("--deterministic", o->deterministic,
                "Batch-invariant kernels: a request's tokens do not depend on what it is "
                "batched with (slower prefill and batched decode; docs/benchmarks.md)");
  app->add_option("--threads", o->threads, "CPU threads (0 = all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app->add_option("--backend", o->backend,
                  "Kernel backend: cpu, cpu-reference, or cuda (experimental: needs "
                  "TESSERA_EXPERIMENTAL_CUDA=1 until verified on a GPU)")
      ->capture_default_str();
  app->add_flag("--no-stream", o->no_stream, "Print the text once at the end");
  app->add_flag("--json", o->json,
                "Print one JSON object per sequence: text, token_ids, logprobs, "
                "cumulative_logprob, finish_reason, stop_token_id, seed");
  AddDecodingFlags(app, &o->decoding);
  AddBatchFlags(app, &o->batch);
  CLI::Option* input = o->batch.input_option;
  input->excludes(prompt);
  // Single-prompt output options; batch output is always JSON lines.
  for (const char* name : {"--no-stream", "--json", "--logprobs"}) {
    input->excludes(app->get_option(name));
  }
  return {app, [o] { return RunGenerate(*o); }};
}

}  // namespace tessera
