// The default model's text side (tokenizer, chat template, shapes), loaded once, for tests
// that run the coordinator against scripted replicas.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "formats/model_config.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace tessera::testing {

struct ModelText {
  std::shared_ptr<const Tokenizer> tokenizer;  // null when the default model is missing
  std::shared_ptr<const ChatTemplate> chat_template;
  ModelConfig config;
};

const ModelText& DefaultModelText();

// `text` in token ids, without BOS or EOS.
std::vector<int32_t> EncodePlain(const std::string& text);

}  // namespace tessera::testing
