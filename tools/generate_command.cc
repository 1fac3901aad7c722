// `tessera generate`: loads a model (progress bar on stderr), tokenizes the prompt (through
// the model's chat template with --chat), decodes greedily until a stop token or
// --max-tokens, streams the text to stdout and reports prefill / decode speed on stderr.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "formats/model_locator.h"
#include "formats/weight_store.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/incremental_detokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tools/cli_util.h"
#include "tools/command.h"
#include "tools/greedy.h"

namespace tessera {
namespace {

constexpr std::string_view kName = "generate";

struct GenerateOptions {
  std::string model = "default";
  std::string prompt;
  bool chat = false;
  std::string chat_template_file;
  int max_tokens = 128;
  int threads = 0;
  std::string backend = "cpu";
  bool no_stream = false;
};

absl::StatusOr<std::vector<int32_t>> PromptTokens(const GenerateOptions& o,
                                                  const GgufFile& file,
                                                  const Tokenizer& tokenizer) {
  if (!o.chat) return tokenizer.Encode(o.prompt, EncodeOptions{});
  absl::StatusOr<ChatTemplate> chat_template = absl::UnknownError("unset");
  if (!o.chat_template_file.empty()) {
    chat_template = ChatTemplate::FromFile(o.chat_template_file);
  } else if (file.Find("tokenizer.chat_template") != nullptr) {
    ASSIGN_OR_RETURN(std::string source, file.GetString("tokenizer.chat_template"));
    chat_template = ChatTemplate::Detect(source);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        file.path(), " has no tokenizer.chat_template; give one with --chat-template"));
  }
  if (!chat_template.ok()) return chat_template.status();
  const ChatMessage messages[] = {{"user", o.prompt}};
  // BOS, if the vocabulary wants one, comes from the tokenizer, not the template.
  return tokenizer.Encode(chat_template->Apply(messages, /*add_generation_prompt=*/true),
                          EncodeOptions{});
}

int RunGenerate(const GenerateOptions& o) {
  if (o.max_tokens < 0) return Fail(kName, "--max-tokens must be >= 0", kExitUsage);
  if (!o.chat_template_file.empty() && !o.chat) {
    return Fail(kName, "--chat-template needs --chat", kExitUsage);
  }
  auto path = ResolveModelPath(o.model);
  if (!path.ok()) return FailStatus(kName, path.status());
  auto backend = CreateBackend(o.backend, o.threads);
  if (!backend.ok()) return FailStatus(kName, backend.status());

  // From here on a failure is the model's, not the arguments': exit 1.
  auto store = OpenWeightStore(*path);
  if (!store.ok()) return Fail(kName, std::string(store.status().message()), kExitFailure);
  if ((*store)->gguf() == nullptr) {
    return Fail(kName, absl::StrCat(*path, ": generate needs a GGUF file (for its tokenizer)"),
                kExitFailure);
  }
  auto tokenizer = Tokenizer::FromGguf(*(*store)->gguf());
  if (!tokenizer.ok()) return Fail(kName, std::string(tokenizer.status().message()), kExitFailure);
  auto model = LlamaModel::Load(**store, backend->get(),
                                MakeProgressBarCallback(absl::StrCat("loading ", o.model)));
  if (!model.ok()) return Fail(kName, std::string(model.status().message()), kExitFailure);

  auto prompt = PromptTokens(o, *(*store)->gguf(), **tokenizer);
  if (!prompt.ok()) return FailStatus(kName, prompt.status());
  if (prompt->empty()) return Fail(kName, "the prompt has no tokens", kExitUsage);
  const int64_t context = (*model)->config().max_position_embeddings;
  if (static_cast<int64_t>(prompt->size()) >= context) {
    return Fail(kName,
                absl::StrCat("the prompt has ", prompt->size(),
                             " tokens; the model's context is ", context),
                kExitUsage);
  }

  IncrementalDetokenizer detok(**tokenizer);
  std::string buffered;
  GreedyStats stats;
  const absl::Status s = GreedyGenerate(
      **model, *prompt, o.max_tokens, (*tokenizer)->stop_ids(),
      [&](int32_t id) -> absl::Status {
        ASSIGN_OR_RETURN(std::string piece, detok.Push(id));
        if (o.no_stream) {
          buffered += piece;
        } else {
          std::fwrite(piece.data(), 1, piece.size(), stdout);
          std::fflush(stdout);
        }
        return absl::OkStatus();
      },
      &stats);
  std::string out = detok.Flush();
  if (o.no_stream) out = buffered + out;
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
               stats.DecodeTokensPerSecond(), stats.stopped ? ", stopped at a stop token" : "");
  return kExitOk;
}

}  // namespace

Command AddGenerateCommand(CLI::App& root) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* app = root.add_subcommand("generate", "Generate text from a prompt (greedy)");
  app->add_option("--model", o->model, "GGUF model file, or 'default'")
      ->capture_default_str();
  app->add_option("--prompt", o->prompt, "Prompt text")->required();
  app->add_flag("--chat", o->chat, "Wrap the prompt as a user message in the chat template");
  app->add_option("--chat-template", o->chat_template_file,
                  "File with a chat format name (chatml, llama3, ...) or a Jinja chat "
                  "template (default: the model's own)");
  app->add_option("--max-tokens", o->max_tokens, "Most tokens to generate")
      ->capture_default_str();
  app->add_option("--threads", o->threads, "CPU threads (0 = all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app->add_option("--backend", o->backend, "Kernel backend: cpu or cpu-reference")
      ->capture_default_str();
  app->add_flag("--no-stream", o->no_stream, "Print the text once at the end");
  return {app, [o] { return RunGenerate(*o); }};
}

}  // namespace tessera
