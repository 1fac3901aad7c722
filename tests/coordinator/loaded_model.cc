#include "tests/coordinator/loaded_model.h"

#include "formats/model_locator.h"
#include "gtest/gtest.h"
#include "tokenizer/chat_prompt.h"
#include "worker/batch_runner.h"

namespace tessera::testing {

ServedModelSpec LoadedModel::Spec() const {
  ServedModelSpec spec;
  spec.name = "default";
  spec.config = model->config();
  spec.tokenizer = tokenizer;
  spec.chat_template = chat_template;
  spec.context_length = 2048;
  spec.default_max_new_tokens = 16;
  return spec;
}

std::shared_ptr<EngineLoop> LoadedModel::StartEngine(int num_blocks) const {
  // Each engine gets its own backend and model (views of the same mapped weights): two
  // engines must never run forwards on one model or one thread pool at once.
  auto backend = CreateBackend("cpu", 0, BackendOptions{.batch_invariant = true});
  EXPECT_TRUE(backend.ok()) << backend.status();
  if (!backend.ok()) return nullptr;
  auto model = LlamaModel::Load(*store, backend->get());
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return nullptr;
  BatchRunnerOptions options;
  options.scheduler.block_size = 16;
  options.scheduler.num_blocks = num_blocks;
  options.scheduler.max_num_seqs = 32;
  options.scheduler.max_num_batched_tokens = 256;
  options.scheduler.max_model_len = 2048;
  options.default_seed = 7;
  auto runner = BatchRunner::Create(model->get(), options);
  EXPECT_TRUE(runner.ok()) << runner.status();
  if (!runner.ok()) return nullptr;
  auto engine = EngineLoop::Start(*std::move(runner), tokenizer.get());
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return nullptr;
  // The engine stops before its model and backend go.
  return std::shared_ptr<EngineLoop>(
      engine->release(), [model = model->release(), backend = backend->release()](EngineLoop* e) {
        delete e;
        delete model;
        delete backend;
      });
}

const LoadedModel* DefaultModel() {
  static const LoadedModel* loaded = []() -> const LoadedModel* {
    auto path = ResolveModelPath("default");
    if (!path.ok()) return nullptr;
    auto m = std::make_unique<LoadedModel>();
    auto backend = CreateBackend("cpu", 0, BackendOptions{.batch_invariant = true});
    if (!backend.ok()) return nullptr;
    m->backend = *std::move(backend);
    auto store = OpenWeightStore(*path);
    if (!store.ok()) return nullptr;
    m->store = *std::move(store);
    auto tokenizer = Tokenizer::FromGguf(*m->store->gguf());
    if (!tokenizer.ok()) return nullptr;
    m->tokenizer = std::shared_ptr<const Tokenizer>(*std::move(tokenizer));
    auto chat = LoadChatTemplate("", *m->store->gguf());
    if (chat.ok()) m->chat_template = std::make_shared<const ChatTemplate>(*std::move(chat));
    auto model = LlamaModel::Load(*m->store, m->backend.get());
    if (!model.ok()) return nullptr;
    m->model = *std::move(model);
    return m.release();
  }();
  EXPECT_NE(loaded, nullptr) << "the default model is needed (scripts/fetch_model.py)";
  return loaded;
}

}  // namespace tessera::testing
