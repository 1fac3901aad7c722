// ChatTemplate::Apply: each known chat format written out, following the reference
// formatter (llama.cpp's llm_chat_apply_template) message by message.
#include <cctype>
#include <string>

#include "tokenizer/chat_template.h"

namespace tessera {
namespace {

std::string Trim(const std::string& s) {
  size_t begin = 0, end = s.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(s[begin]))) ++begin;
  while (end > begin && std::isspace(static_cast<unsigned char>(s[end - 1]))) --end;
  return s.substr(begin, end - begin);
}

using Messages = std::span<const ChatMessage>;

void ChatMl(Messages m, bool gen, const std::string& default_system, std::string* out) {
  if (!m.empty() && m[0].role != "system" && !default_system.empty()) {
    *out += "<|im_start|>system\n" + default_system + "<|im_end|>\n";
  }
  for (const auto& msg : m) *out += "<|im_start|>" + msg.role + "\n" + msg.content + "<|im_end|>\n";
  if (gen) *out += "<|im_start|>assistant\n";
}

void Llama2(Messages m, bool with_system, bool bos_inside, bool strip, std::string* out) {
  bool inside_turn = true;  // the first [INST] comes without BOS (the tokenizer adds it)
  *out += "[INST] ";
  for (const auto& msg : m) {
    const std::string content = strip ? Trim(msg.content) : msg.content;
    if (!inside_turn) {
      inside_turn = true;
      *out += bos_inside ? "<s>[INST] " : "[INST] ";
    }
    if (msg.role == "system") {
      *out += with_system ? "<<SYS>>\n" + content + "\n<</SYS>>\n\n" : content + "\n";
    } else if (msg.role == "user") {
      *out += content + " [/INST]";
    } else {
      *out += content + "</s>";
      inside_turn = false;
    }
  }
}

void MistralV1V3(Messages m, const std::string& name, std::string* out) {
  const std::string lead = name == "mistral-v1" ? " " : "";
  const std::string trail = name == "mistral-v3-tekken" ? "" : " ";
  const bool trim_assistant = name == "mistral-v3";
  bool inside_turn = false;
  for (const auto& msg : m) {
    if (!inside_turn) {
      *out += lead + "[INST]" + trail;
      inside_turn = true;
    }
    if (msg.role == "system") {
      *out += msg.content + "\n\n";
    } else if (msg.role == "user") {
      *out += msg.content + lead + "[/INST]";
    } else {
      *out += trail + (trim_assistant ? Trim(msg.content) : msg.content) + "</s>";
      inside_turn = false;
    }
  }
}

void MistralV7(Messages m, bool tekken, std::string* out) {
  const std::string sp = tekken ? "" : " ";
  for (const auto& msg : m) {
    if (msg.role == "system") {
      *out += "[SYSTEM_PROMPT]" + sp + msg.content + "[/SYSTEM_PROMPT]";
    } else if (msg.role == "user") {
      *out += "[INST]" + sp + msg.content + "[/INST]";
    } else {
      *out += sp + msg.content + "</s>";
    }
  }
}

void Gemma(Messages m, bool gen, std::string* out) {
  std::string system;  // Gemma has no system turn: it is merged into the next user turn
  for (const auto& msg : m) {
    if (msg.role == "system") {
      system += Trim(msg.content);
      continue;
    }
    const std::string role = msg.role == "assistant" ? "model" : msg.role;
    *out += "<start_of_turn>" + role + "\n";
    if (!system.empty() && role != "model") {
      *out += system + "\n\n";
      system.clear();
    }
    *out += Trim(msg.content) + "<end_of_turn>\n";
  }
  if (gen) *out += "<start_of_turn>model\n";
}

}  // namespace

std::string ChatTemplate::Apply(std::span<const ChatMessage> m, bool gen) const {
  const std::string& n = name_;
  std::string out;
  if (n == "chatml") {
    ChatMl(m, gen, default_system_prompt_, &out);
  } else if (n == "llama2" || n == "llama2-sys" || n == "llama2-sys-bos" ||
             n == "llama2-sys-strip") {
    Llama2(m, n != "llama2", n == "llama2-sys-bos", n == "llama2-sys-strip", &out);
  } else if (n == "mistral-v1" || n == "mistral-v3" || n == "mistral-v3-tekken") {
    MistralV1V3(m, n, &out);
  } else if (n == "mistral-v7" || n == "mistral-v7-tekken") {
    MistralV7(m, n == "mistral-v7-tekken", &out);
  } else if (n == "phi3") {
    for (const auto& msg : m) out += "<|" + msg.role + "|>\n" + msg.content + "<|end|>\n";
    if (gen) out += "<|assistant|>\n";
  } else if (n == "phi4") {
    for (const auto& msg : m) {
      out += "<|im_start|>" + msg.role + "<|im_sep|>" + msg.content + "<|im_end|>";
    }
    if (gen) out += "<|im_start|>assistant<|im_sep|>";
  } else if (n == "falcon3") {
    for (const auto& msg : m) out += "<|" + msg.role + "|>\n" + msg.content + "\n";
    if (gen) out += "<|assistant|>\n";
  } else if (n == "zephyr") {
    for (const auto& msg : m) out += "<|" + msg.role + "|>\n" + msg.content + "<|endoftext|>\n";
    if (gen) out += "<|assistant|>\n";
  } else if (n == "monarch") {
    for (size_t i = 0; i < m.size(); ++i) {
      out += (i == 0 ? "" : "<s>") + m[i].role + "\n" + m[i].content + "</s>\n";
    }
    if (gen) out += "<s>assistant\n";
  } else if (n == "gemma") {
    Gemma(m, gen, &out);
  } else if (n == "orion") {
    std::string system;
    for (const auto& msg : m) {
      if (msg.role == "system") {
        system += msg.content;
      } else if (msg.role == "user") {
        out += "Human: ";
        if (!system.empty()) out += system + "\n\n", system.clear();
        out += msg.content + "\n\nAssistant: </s>";
      } else {
        out += msg.content + "</s>";
      }
    }
  } else if (n == "openchat") {
    for (const auto& msg : m) {
      if (msg.role == "system") {
        out += msg.content + "<|end_of_turn|>";
      } else {
        std::string role = msg.role;
        if (!role.empty()) role[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(role[0])));
        out += "GPT4 Correct " + role + ": " + msg.content + "<|end_of_turn|>";
      }
    }
    if (gen) out += "GPT4 Correct Assistant:";
  } else if (n == "vicuna" || n == "vicuna-orca") {
    for (const auto& msg : m) {
      if (msg.role == "system") {
        out += n == "vicuna-orca" ? "SYSTEM: " + msg.content + "\n" : msg.content + "\n\n";
      } else if (msg.role == "user") {
        out += "USER: " + msg.content + "\n";
      } else if (msg.role == "assistant") {
        out += "ASSISTANT: " + msg.content + "</s>\n";
      }
    }
    if (gen) out += "ASSISTANT:";
  } else if (n == "deepseek") {
    for (const auto& msg : m) {
      if (msg.role == "system") {
        out += msg.content;
      } else if (msg.role == "user") {
        out += "### Instruction:\n" + msg.content + "\n";
      } else if (msg.role == "assistant") {
        out += "### Response:\n" + msg.content + "\n<|EOT|>\n";
      }
    }
    if (gen) out += "### Response:\n";
  } else if (n == "deepseek2" || n == "deepseek3") {
    const bool v3 = n == "deepseek3";
    for (const auto& msg : m) {
      if (msg.role == "system") {
        out += msg.content + "\n\n";
      } else if (msg.role == "user") {
        out += v3 ? "<｜User｜>" + msg.content : "User: " + msg.content + "\n\n";
      } else if (msg.role == "assistant") {
        out += (v3 ? "<｜Assistant｜>" : "Assistant: ") + msg.content + "<｜end▁of▁sentence｜>";
      }
    }
    if (gen) out += v3 ? "<｜Assistant｜>" : "Assistant:";
  } else if (n == "command-r") {
    for (const auto& msg : m) {
      const char* tag = msg.role == "system" ? "<|SYSTEM_TOKEN|>"
                        : msg.role == "user" ? "<|USER_TOKEN|>"
                        : msg.role == "assistant" ? "<|CHATBOT_TOKEN|>" : nullptr;
      if (tag == nullptr) continue;
      out += std::string("<|START_OF_TURN_TOKEN|>") + tag + Trim(msg.content) + "<|END_OF_TURN_TOKEN|>";
    }
    if (gen) out += "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>";
  } else if (n == "llama3") {
    for (const auto& msg : m) {
      out += "<|start_header_id|>" + msg.role + "<|end_header_id|>\n\n" + Trim(msg.content) +
             "<|eot_id|>";
    }
    if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  } else if (n == "llama4") {
    for (const auto& msg : m) {
      out += "<|header_start|>" + msg.role + "<|header_end|>\n\n" + Trim(msg.content) + "<|eot|>";
    }
    if (gen) out += "<|header_start|>assistant<|header_end|>\n\n";
  } else if (n == "chatglm3") {
    out += "[gMASK]sop";
    for (const auto& msg : m) out += "<|" + msg.role + "|>\n " + msg.content;
    if (gen) out += "<|assistant|>";
  } else if (n == "chatglm4" || n == "glmedge") {
    if (n == "chatglm4") out += "[gMASK]<sop>";
    for (const auto& msg : m) out += "<|" + msg.role + "|>\n" + msg.content;
    if (gen) out += n == "chatglm4" ? "<|assistant|>\n" : "<|assistant|>";
  } else if (n == "minicpm") {
    for (const auto& msg : m) {
      out += msg.role == "user" ? "<用户>" + Trim(msg.content) + "<AI>" : Trim(msg.content);
    }
  } else if (n == "exaone3") {
    for (const auto& msg : m) {
      if (msg.role == "system") {
        out += "[|system|]" + Trim(msg.content) + "[|endofturn|]\n";
      } else if (msg.role == "user") {
        out += "[|user|]" + Trim(msg.content) + "\n";
      } else if (msg.role == "assistant") {
        out += "[|assistant|]" + Trim(msg.content) + "[|endofturn|]\n";
      }
    }
    if (gen) out += "[|assistant|]";
  } else if (n == "granite") {
    for (const auto& msg : m) {
      out += "<|start_of_role|>" + msg.role + "<|end_of_role|>";
      if (msg.role == "assistant_tool_call") out += "<|tool_call|>";
      out += msg.content + "<|end_of_text|>\n";
    }
    if (gen) out += "<|start_of_role|>assistant<|end_of_role|>\n";
  } else if (n == "megrez") {
    for (const auto& msg : m) {
      out += "<|role_start|>" + msg.role + "<|role_end|>" + msg.content + "<|turn_end|>";
    }
    if (gen) out += "<|role_start|>assistant<|role_end|>";
  } else if (n == "smolvlm") {
    out += "<|im_start|>";
    for (const auto& msg : m) {
      if (msg.role == "system") {
        out += msg.content + "\n\n";
      } else if (msg.role == "user") {
        out += "User: " + msg.content + "<end_of_utterance>\n";
      } else {
        out += "Assistant: " + msg.content + "<end_of_utterance>\n";
      }
    }
    if (gen) out += "Assistant:";
  } else if (n == "gpt-oss") {
    for (const auto& msg : m) {
      out += "<|start|>" + msg.role + "<|message|>" + msg.content +
             (msg.role == "assistant" ? "<|return|>" : "<|end|>");
    }
    if (gen) out += "<|start|>assistant";
  }
  return out;
}

}  // namespace tessera
