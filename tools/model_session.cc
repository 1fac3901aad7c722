#include "tools/model_session.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/progress_bar.h"
#include "common/status_macros.h"
#include "formats/model_locator.h"
#include "tools/cli_util.h"
#include "tools/command.h"
#include "tools/random_model.h"

namespace tessera {

absl::StatusOr<TokenizerHandle> LoadTokenizer(std::string_view model) {
  TokenizerHandle h;
  if (IsRandomModel(model)) {
    ASSIGN_OR_RETURN(h.tokenizer, RandomModelTokenizer(model));
    return h;
  }
  ASSIGN_OR_RETURN(std::string path, ResolveModelPath(model));
  auto file = GgufFile::Open(path);
  // The path exists (ResolveModelPath checked): a file that does not parse is a runtime
  // failure of the model, not a usage error.
  if (!file.ok()) return WithCode(file.status(), absl::StatusCode::kFailedPrecondition);
  h.file = std::move(*file);
  auto tokenizer = Tokenizer::FromGguf(*h.file);
  if (!tokenizer.ok()) return WithCode(tokenizer.status(), absl::StatusCode::kFailedPrecondition);
  h.tokenizer = std::move(*tokenizer);
  return h;
}

int OpenModelSession(std::string_view command, const ModelSessionOptions& options,
                     ModelSession* session) {
  // A random:SHAPE model is synthesized into a temporary file, removed as soon as the store
  // maps it (the mapping keeps the bytes), or on return.
  std::unique_ptr<TempModelFile> random_model;
  const absl::StatusOr<std::string> path =
      ModelFilePath(options.model, options.progress_bar, &random_model);
  if (!path.ok()) return FailStatus(command, path.status());
  auto backend =
      CreateBackend(options.backend, options.threads,
                    {.batch_invariant = options.deterministic,
                     .pack_weights = options.pack_weights,
                     .fp8_weights = options.fp8_weights});
  if (!backend.ok()) return FailStatus(command, backend.status());
  session->backend = *std::move(backend);

  // From here on a failure is the model's, not the arguments': exit 1.
  auto store = OpenWeightStore(*path);
  if (!store.ok()) return Fail(command, std::string(store.status().message()), kExitFailure);
  session->store = *std::move(store);
  random_model.reset();
  if (session->store->gguf() == nullptr) {
    return Fail(command,
                absl::StrFormat("%s: %s needs a GGUF file (for its tokenizer)", *path, command),
                kExitFailure);
  }
  auto tokenizer = Tokenizer::FromGguf(*session->store->gguf());
  if (!tokenizer.ok()) {
    return Fail(command, std::string(tokenizer.status().message()), kExitFailure);
  }
  session->tokenizer = *std::move(tokenizer);
  auto model = LlamaModel::Load(
      *session->store, session->backend.get(),
      options.progress_bar ? MakeProgressBarCallback(absl::StrCat("loading ", options.model))
                           : nullptr,
      options.tensor_parallel, options.stage);
  if (!model.ok()) return Fail(command, std::string(model.status().message()), kExitFailure);
  session->model = *std::move(model);
  return kExitOk;
}

}  // namespace tessera
