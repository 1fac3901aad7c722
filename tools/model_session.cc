#include "tools/model_session.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/progress_bar.h"
#include "formats/model_locator.h"
#include "tools/cli_util.h"
#include "tools/command.h"
#include "tools/random_model.h"

namespace tessera {

int OpenModelSession(std::string_view command, const ModelSessionOptions& options,
                     ModelSession* session) {
  // A random:SHAPE model is synthesized into a temporary file, removed as soon as the store
  // maps it (the mapping keeps the bytes), or on return.
  std::unique_ptr<TempModelFile> random_model;
  absl::StatusOr<std::string> path;
  if (IsRandomModel(options.model)) {
    auto synthesized = SynthesizeTempModel(options.model, options.progress_bar);
    if (!synthesized.ok()) return FailStatus(command, synthesized.status());
    random_model = *std::move(synthesized);
    path = random_model->path();
  } else {
    path = ResolveModelPath(options.model);
  }
  if (!path.ok()) return FailStatus(command, path.status());
  auto backend =
      CreateBackend(options.backend, options.threads,
                    {.batch_invariant = options.deterministic, .pack_weights = options.pack_weights});
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
