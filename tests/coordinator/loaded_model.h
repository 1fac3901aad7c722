// The default model loaded once per test binary, on the batch-invariant CPU backend (a
// request's tokens do not depend on what it is batched with), and engines over it.
#pragma once

#include <memory>

#include "coordinator/model_registry.h"
#include "formats/weight_store.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "tokenizer/chat_template.h"
#include "worker/engine_loop.h"

namespace tessera::testing {

struct LoadedModel {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<WeightStore> store;
  std::shared_ptr<const Tokenizer> tokenizer;
  std::shared_ptr<const ChatTemplate> chat_template;
  std::unique_ptr<LlamaModel> model;

  // What the coordinator serves it as: name "default", a 2048-token context.
  ServedModelSpec Spec() const;
  // A one-rank engine with `num_blocks` KV blocks of 16 tokens, on a model and backend of
  // its own over the same weights.
  std::shared_ptr<EngineLoop> StartEngine(int num_blocks = 256) const;
};

// Null (with a test failure) when the default model is missing.
const LoadedModel* DefaultModel();

}  // namespace tessera::testing
