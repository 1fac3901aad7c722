// Opening a model for the generating subcommands: resolve the path, create the backend,
// open the weight store (GGUF required, for its tokenizer), build the tokenizer and load the
// model with a progress bar on stderr. Failures print one line on stderr ("tessera
// <command>: ...") with the exit code split the CLI uses: a bad model argument or backend
// is the user's (exit 2 for INVALID_ARGUMENT / NOT_FOUND / OUT_OF_RANGE), anything from
// opening the store on is the model's (exit 1).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "formats/gguf_reader.h"
#include "formats/weight_store.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "tokenizer/tokenizer.h"

namespace tessera {

// Everything a loaded model needs kept alive. Members are destroyed in reverse order, so
// the model goes before the store and backend it borrows.
struct ModelSession {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<WeightStore> store;  // store->gguf() is never null
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<LlamaModel> model;
};

struct ModelSessionOptions {
  // A path, "default" (formats/model_locator.h) or random:SHAPE[:DTYPE[:LAYERS]]
  // (tools/random_model.h).
  std::string model = "default";
  std::string backend = "cpu";
  int threads = 0;
  bool deterministic = false;  // BackendOptions::batch_invariant
  bool pack_weights = true;    // BackendOptions::pack_weights
  bool fp8_weights = false;    // BackendOptions::fp8_weights
  // This rank's tensor-parallel shard (LlamaModel::Load); null: the whole model.
  const TensorParallelShard* tensor_parallel = nullptr;
  const StageShard* stage = nullptr;  // this rank's pipeline stage; null: every layer
  bool progress_bar = true;           // off on the follower ranks of a model group
};

// A model's tokenizer alone, for tokenize and detokenize: `model` is a path or "default"
// (the GGUF file, kept open, and the tokenizer it describes), or random:SHAPE[:DTYPE[:LAYERS]]
// (the synthetic vocabulary that model would have, with no file written; `file` is null).
// A file that does not parse or holds no tokenizer is FAILED_PRECONDITION (the model's
// fault, exit 1); a bad argument INVALID_ARGUMENT or NOT_FOUND.
struct TokenizerHandle {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tokenizer;
};
absl::StatusOr<TokenizerHandle> LoadTokenizer(std::string_view model);

// Fills *session and returns kExitOk, or prints the failure for `command` and returns its
// exit code (*session is then unspecified).
[[nodiscard]] int OpenModelSession(std::string_view command, const ModelSessionOptions& options,
                                   ModelSession* session);

}  // namespace tessera
