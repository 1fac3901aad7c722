#include "tests/coordinator/model_text.h"

#include "formats/gguf_reader.h"
#include "formats/model_locator.h"
#include "tokenizer/chat_prompt.h"

namespace tessera::testing {

const ModelText& DefaultModelText() {
  static const ModelText* text = [] {
    auto* t = new ModelText;
    auto path = ResolveModelPath("default");
    if (!path.ok()) return t;
    auto file = GgufFile::Open(*path);
    if (!file.ok()) return t;
    auto tokenizer = Tokenizer::FromGguf(**file);
    if (tokenizer.ok()) t->tokenizer = std::shared_ptr<const Tokenizer>(*std::move(tokenizer));
    auto chat = LoadChatTemplate("", **file);
    if (chat.ok()) t->chat_template = std::make_shared<const ChatTemplate>(*std::move(chat));
    auto config = ModelConfigFromGguf(**file);
    if (config.ok()) t->config = *config;
    return t;
  }();
  return *text;
}

std::vector<int32_t> EncodePlain(const std::string& text) {
  EncodeOptions o;
  o.add_bos = false;
  o.add_eos = false;
  return *DefaultModelText().tokenizer->Encode(text, o);
}

}  // namespace tessera::testing
