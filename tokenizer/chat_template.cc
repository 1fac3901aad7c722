// Detection and construction of chat formats; the formats themselves are in
// chat_template_formats.cc.
#include "tokenizer/chat_template.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"

namespace tessera {

const std::vector<std::string_view>& SupportedChatTemplateNames() {
  static const std::vector<std::string_view> kNames = {
      "chatml",     "llama2",        "llama2-sys",  "llama2-sys-bos", "llama2-sys-strip",
      "mistral-v1", "mistral-v3",    "mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken",
      "phi3",       "phi4",          "falcon3",     "zephyr",         "monarch",
      "gemma",      "orion",         "openchat",    "vicuna",         "vicuna-orca",
      "deepseek",   "deepseek2",     "deepseek3",   "command-r",      "llama3",
      "chatglm3",   "chatglm4",      "glmedge",     "minicpm",        "exaone3",
      "granite",    "megrez",        "llama4",      "smolvlm",        "gpt-oss"};
  return kNames;
}

namespace {

std::string SupportedList() {
  std::string list;
  for (std::string_view name : SupportedChatTemplateNames()) {
    if (!list.empty()) list += ", ";
    list += name;
  }
  return list;
}

bool IsKnownName(std::string_view name) {
  const auto& names = SupportedChatTemplateNames();
  return std::find(names.begin(), names.end(), name) != names.end();
}

// The format name the markers of a Jinja template point to, or "" when none fits.
std::string DetectName(std::string_view t) {
  auto has = [t](std::string_view marker) { return t.find(marker) != std::string_view::npos; };
  if (has("<|im_start|>")) {
    if (has("<|im_sep|>")) return "phi4";
    if (has("<end_of_utterance>")) return "smolvlm";
    return "chatml";
  }
  if (t.substr(0, 7) == "mistral" || has("[INST]")) {
    if (has("[SYSTEM_PROMPT]")) return "mistral-v7";
    if (has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]")) {
      if (has(" [INST]")) return "mistral-v1";
      if (has("\"[INST]\"")) return "mistral-v3-tekken";
      return "mistral-v3";
    }
    if (has("content.strip()")) return "llama2-sys-strip";
    if (has("bos_token + '[INST]")) return "llama2-sys-bos";
    if (has("<<SYS>>")) return "llama2-sys";
    return "llama2";
  }
  if (has("<|assistant|>") && has("<|end|>")) return "phi3";
  if (has("[gMASK]<sop>")) return "chatglm4";
  if (has("<|assistant|>") && has("<|user|>")) return has("</s>") ? "falcon3" : "glmedge";
  if (has("<|{{ item['role'] }}|>") && has("<|begin_of_image|>")) return "glmedge";
  if (has("<|user|>") && has("<|endoftext|>")) return "zephyr";
  if (has("bos_token + message['role']")) return "monarch";
  if (has("<start_of_turn>")) return "gemma";
  if (has("'\\n\\nAssistant: ' + eos_token")) return "orion";
  if (has("GPT4 Correct ")) return "openchat";
  if (has("USER: ") && has("ASSISTANT: ")) return has("SYSTEM: ") ? "vicuna-orca" : "vicuna";
  if (has("### Instruction:") && has("<|EOT|>")) return "deepseek";
  if (has("<|START_OF_TURN_TOKEN|>") && has("<|USER_TOKEN|>")) return "command-r";
  if (has("<|start_header_id|>") && has("<|end_header_id|>")) return "llama3";
  if (has("[gMASK]sop")) return "chatglm3";
  if (has("<用户>")) return "minicpm";
  if (has("'Assistant: ' + message['content'] + eos_token")) return "deepseek2";
  if (has("<｜Assistant｜>") && has("<｜User｜>") && has("<｜end▁of▁sentence｜>")) {
    return "deepseek3";
  }
  if (has("[|system|]") && has("[|assistant|]") && has("[|endofturn|]")) return "exaone3";
  if (has("<|start_of_role|>")) return "granite";
  if (has("<|role_start|>")) return "megrez";
  if (has("<|header_start|>") && has("<|header_end|>")) return "llama4";
  if (has("<|start|>") && has("<|channel|>")) return "gpt-oss";
  return "";
}

// A ChatML template's built-in system prompt: the literal text of a
// "<|im_start|>system\n...<|im_end|>" block that is written out in the template itself
// (not taken from a message), e.g. SmolLM2's and Qwen2.5's.
std::string DefaultSystemPrompt(std::string_view t) {
  constexpr std::string_view kOpen = "<|im_start|>system\n";
  constexpr std::string_view kClose = "<|im_end|>";
  for (size_t pos = t.find(kOpen); pos != std::string_view::npos; pos = t.find(kOpen, pos + 1)) {
    const size_t begin = pos + kOpen.size();
    const size_t end = t.find(kClose, begin);
    if (end == std::string_view::npos) break;
    const std::string_view body = t.substr(begin, end - begin);
    // Only a plain literal counts: no Jinja expression or string concatenation inside.
    if (body.empty() || body.find_first_of("'\"{}+") != std::string_view::npos) continue;
    return std::string(body);
  }
  return "";
}

std::string Snippet(std::string_view text) {
  std::string s(text.substr(0, 60));
  std::replace(s.begin(), s.end(), '\n', ' ');
  return text.size() > 60 ? s + "..." : s;
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::FromName(std::string_view name) {
  if (!IsKnownName(name)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "unsupported chat template name \"%s\" (supported: %s)", name, SupportedList()));
  }
  return ChatTemplate(std::string(name), "");
}

absl::StatusOr<ChatTemplate> ChatTemplate::Detect(std::string_view text) {
  if (IsKnownName(text)) return FromName(text);
  const std::string name = DetectName(text);
  if (name.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "unsupported chat template \"%s\": not a known format; use --chat-template NAME or "
        "--chat-template FILE (supported names: %s)",
        Snippet(text), SupportedList()));
  }
  return ChatTemplate(name, name == "chatml" ? DefaultSystemPrompt(text) : "");
}

absl::StatusOr<ChatTemplate> ChatTemplate::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrFormat("chat template file %s cannot be read", path));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  // A name may come with a trailing newline.
  const size_t first = text.find_first_not_of(" \t\r\n");
  const size_t last = text.find_last_not_of(" \t\r\n");
  const std::string trimmed = first == std::string::npos ? "" : text.substr(first, last - first + 1);
  if (IsKnownName(trimmed)) return FromName(trimmed);
  absl::StatusOr<ChatTemplate> detected = Detect(text);
  if (!detected.ok()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("chat template file %s: %s", path, detected.status().message()));
  }
  return detected;
}

namespace {

// The formats' own whitespace trim (chat_template_formats.cc).
std::string TrimSpace(const std::string& s) {
  size_t begin = 0, end = s.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(s[begin]))) ++begin;
  while (end > begin && std::isspace(static_cast<unsigned char>(s[end - 1]))) --end;
  return s.substr(begin, end - begin);
}

void AddSegment(std::string text, bool is_content, std::vector<ChatSegment>* out) {
  if (text.empty()) return;
  if (!out->empty() && out->back().is_content == is_content) {
    out->back().text += text;
  } else {
    out->push_back({std::move(text), is_content});
  }
}

}  // namespace

std::vector<ChatSegment> ChatTemplate::ApplySegments(std::span<const ChatMessage> messages,
                                                     bool add_generation_prompt) const {
  // Format the conversation with each content replaced by a marker "\v\x1e<i>\x1f\v". The
  // formats copy a content verbatim or trimmed of whitespace; the "\v" pads (which no markup
  // holds) tell which, so the real content, transformed the same way, goes in its place.
  std::vector<ChatMessage> marked(messages.begin(), messages.end());
  for (size_t i = 0; i < marked.size(); ++i) {
    marked[i].content = absl::StrFormat("\v\x1e%d\x1f\v", i);
  }
  const std::string skeleton = Apply(marked, add_generation_prompt);
  std::vector<ChatSegment> out;
  size_t pos = 0;
  while (pos < skeleton.size()) {
    const size_t open = skeleton.find('\x1e', pos);
    if (open == std::string::npos) break;
    const size_t close = skeleton.find('\x1f', open);
    size_t index = 0;
    if (close == std::string::npos ||
        !absl::SimpleAtoi(skeleton.substr(open + 1, close - open - 1), &index) ||
        index >= messages.size()) {
      AddSegment(skeleton.substr(pos, open + 1 - pos), false, &out);  // a stray byte of a role
      pos = open + 1;
      continue;
    }
    const bool verbatim = open > pos && skeleton[open - 1] == '\v' &&
                          close + 1 < skeleton.size() && skeleton[close + 1] == '\v';
    const size_t markup_end = verbatim ? open - 1 : open;
    AddSegment(skeleton.substr(pos, markup_end - pos), false, &out);
    const std::string& content = messages[index].content;
    AddSegment(verbatim ? content : TrimSpace(content), true, &out);
    pos = verbatim ? close + 2 : close + 1;
  }
  if (pos < skeleton.size()) AddSegment(skeleton.substr(pos), false, &out);

  // A role that imitates a marker could misplace a cut; then everything is treated as
  // content: the prompt loses its control tokens but a message cannot gain any.
  const std::string full = Apply(messages, add_generation_prompt);
  std::string joined;
  for (const ChatSegment& s : out) joined += s.text;
  if (joined != full) {
    out.clear();
    AddSegment(full, true, &out);
  }
  return out;
}

}  // namespace tessera
