#include "tokenizer/chat_prompt.h"

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace tessera {

absl::StatusOr<ChatTemplate> LoadChatTemplate(const std::string& template_file,
                                              const GgufFile& file) {
  if (!template_file.empty()) return ChatTemplate::FromFile(template_file);
  if (file.Find("tokenizer.chat_template") == nullptr) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s has no tokenizer.chat_template; give one with --chat-template", file.path()));
  }
  ASSIGN_OR_RETURN(std::string source, file.GetString("tokenizer.chat_template"));
  return ChatTemplate::Detect(source);
}

absl::StatusOr<std::vector<int32_t>> EncodeChat(const Tokenizer& tokenizer,
                                                const ChatTemplate& chat_template,
                                                std::span<const ChatMessage> messages,
                                                bool add_generation_prompt) {
  std::vector<int32_t> ids;
  bool first = true;
  for (const ChatSegment& segment : chat_template.ApplySegments(messages, add_generation_prompt)) {
    EncodeOptions options;
    options.add_bos = first;
    options.add_eos = false;
    options.parse_special = !segment.is_content;
    ASSIGN_OR_RETURN(std::vector<int32_t> piece, tokenizer.Encode(segment.text, options));
    ids.insert(ids.end(), piece.begin(), piece.end());
    first = false;
  }
  if (first) {  // no segments at all: still the BOS a prompt starts with
    EncodeOptions options;
    options.add_eos = false;
    ASSIGN_OR_RETURN(ids, tokenizer.Encode("", options));
  }
  return ids;
}

}  // namespace tessera
