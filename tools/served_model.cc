#include "tools/served_model.h"

#include <utility>

#include "common/status_macros.h"
#include "parallel/shard_plan.h"
#include "tokenizer/chat_prompt.h"
#include "tokenizer/synthetic_vocab.h"
#include "tools/random_model_spec.h"

namespace tessera {

absl::StatusOr<ServedModelSpec> ServedModelSpecFromStore(const WeightStore& store,
                                                         ServedModelOptions options) {
  if (store.gguf() == nullptr) {
    return absl::InvalidArgumentError(
        "--model: serving needs a GGUF file (the tokenizer is read from it)");
  }
  ServedModelSpec spec;
  spec.name = std::move(options.name);
  spec.config = store.config();
  spec.context_length = spec.config.max_position_embeddings;
  spec.default_max_new_tokens = options.default_max_new_tokens;
  spec.tokenizer = std::move(options.tokenizer);
  if (spec.tokenizer == nullptr) {
    ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, Tokenizer::FromGguf(*store.gguf()));
    spec.tokenizer = std::move(tokenizer);
  }
  auto chat_template = LoadChatTemplate(options.chat_template_file, *store.gguf());
  if (chat_template.ok()) {
    spec.chat_template = std::make_shared<const ChatTemplate>(*std::move(chat_template));
  } else if (!options.chat_template_file.empty()) {
    return chat_template.status();
  } else {
    spec.chat_template_error = std::string(chat_template.status().message());
  }
  // Leaders that register ask the planner to split the FFN on the weights' quant blocks.
  if (absl::StatusOr<int64_t> alignment = FfnAlignmentOf(store); alignment.ok()) {
    spec.ffn_alignment = *alignment;
  }
  return spec;
}

absl::StatusOr<ServedModelSpec> ServedModelSpecForRandomModel(std::string_view model,
                                                              ServedModelOptions options) {
  ASSIGN_OR_RETURN(const SynthesisOptions synthesis, ParseRandomModel(model));
  ServedModelSpec spec;
  spec.name = std::move(options.name);
  ASSIGN_OR_RETURN(spec.config, SynthesizedConfig(synthesis));
  ASSIGN_OR_RETURN(Vocabulary vocab, SyntheticVocabulary(spec.config.vocab_size));
  spec.context_length = spec.config.max_position_embeddings;
  spec.default_max_new_tokens = options.default_max_new_tokens;
  const std::string template_text = vocab.chat_template;
  spec.tokenizer = std::move(options.tokenizer);
  if (spec.tokenizer == nullptr) {
    ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, Tokenizer::FromVocabulary(std::move(vocab)));
    spec.tokenizer = std::move(tokenizer);
  }
  ASSIGN_OR_RETURN(ChatTemplate chat_template,
                   options.chat_template_file.empty()
                       ? ChatTemplate::Detect(template_text)
                       : ChatTemplate::FromFile(options.chat_template_file));
  spec.chat_template = std::make_shared<const ChatTemplate>(std::move(chat_template));
  spec.ffn_alignment = Traits(synthesis.dtype).block_elems;
  return spec;
}

}  // namespace tessera
