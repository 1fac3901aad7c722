// Chat formatting: a list of {role, content} messages -> the prompt text a model was
// trained on. The format is detected from the model's tokenizer.chat_template (a Jinja
// template) by the markers it contains, as llama.cpp's llm_chat_detect_template does, or
// chosen by name ("chatml", "llama2", "llama3", "mistral-v7", ...). Templates are not
// executed; each known format is written out in code. BOS is not part of the output: the
// tokenizer adds it when the vocabulary asks for it.
//
// ChatML templates that give a default system prompt when the conversation has none
// (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face") keep
// that behaviour. A ChatTemplate is immutable and thread-safe.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

// A piece of a formatted prompt: the template's own markup (whose special-token text, such as
// "<|im_start|>", is meant as control tokens) or a message's content (to be tokenized as plain
// text, so that a user cannot write a control token).
struct ChatSegment {
  std::string text;
  bool is_content = false;
  bool operator==(const ChatSegment&) const = default;
};

class ChatTemplate {
 public:
  // A format by its name; INVALID_ARGUMENT listing the supported names otherwise.
  static absl::StatusOr<ChatTemplate> FromName(std::string_view name);
  // A format name, or the text of a Jinja chat template to recognise. INVALID_ARGUMENT
  // ("unsupported chat template ...; use --chat-template") when it is neither.
  static absl::StatusOr<ChatTemplate> Detect(std::string_view name_or_template);
  // For --chat-template FILE: the file holds a format name or a Jinja template.
  // NOT_FOUND naming the path when it cannot be read.
  static absl::StatusOr<ChatTemplate> FromFile(const std::string& path);

  // The prompt for `messages`, ending with the assistant's turn header when
  // `add_generation_prompt`.
  std::string Apply(std::span<const ChatMessage> messages, bool add_generation_prompt) const;
  // Apply's output cut into markup and content pieces, in order: the texts concatenate to
  // exactly Apply(messages, add_generation_prompt); adjacent pieces of the same kind are
  // merged and empty pieces left out. Roles count as markup.
  std::vector<ChatSegment> ApplySegments(std::span<const ChatMessage> messages,
                                         bool add_generation_prompt) const;

  const std::string& name() const { return name_; }
  // Empty unless the template supplies one (ChatML only).
  const std::string& default_system_prompt() const { return default_system_prompt_; }

 private:
  ChatTemplate(std::string name, std::string default_system_prompt)
      : name_(std::move(name)), default_system_prompt_(std::move(default_system_prompt)) {}

  std::string name_;
  std::string default_system_prompt_;
};

// The names FromName accepts, in a stable order.
const std::vector<std::string_view>& SupportedChatTemplateNames();

}  // namespace tessera
