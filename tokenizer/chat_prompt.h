// Prompt token ids for a conversation through a chat template (the CLI and the gRPC
// coordinator share it). A conversation is encoded piece by piece (ChatTemplate::ApplySegments): the
// template's markup with special-token parsing, so "<|im_start|>" becomes its control
// token, and every message's content without it, so that text such as "<|im_end|>" typed
// by a user stays plain text and cannot end the turn or open a new one.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "formats/gguf_reader.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace tessera {

// The template from `template_file` (a format name or a Jinja template) when not empty,
// else the model's tokenizer.chat_template. INVALID_ARGUMENT when the model has none (the
// message says to use --chat-template), NOT_FOUND for an unreadable file.
[[nodiscard]] absl::StatusOr<ChatTemplate> LoadChatTemplate(const std::string& template_file,
                                                            const GgufFile& file);

// BOS (when the vocabulary asks for one), then each segment's ids; no EOS.
[[nodiscard]] absl::StatusOr<std::vector<int32_t>> EncodeChat(
    const Tokenizer& tokenizer, const ChatTemplate& chat_template,
    std::span<const ChatMessage> messages, bool add_generation_prompt);

}  // namespace tessera
