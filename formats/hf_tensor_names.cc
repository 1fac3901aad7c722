#include "formats/hf_tensor_names.h"

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/check.h"

namespace tessera {
namespace {

struct Rename {
  std::string_view hf;    // suffix after "model.layers.N."
  std::string_view gguf;  // suffix after "blk.N."
};

constexpr Rename kLayerTensors[] = {
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {"input_layernorm.weight", "attn_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
};

}  // namespace

std::optional<std::string> GgufNameForHfTensor(std::string_view name) {
  if (name == "model.embed_tokens.weight") return "token_embd.weight";
  if (name == "model.norm.weight") return "output_norm.weight";
  if (name == "lm_head.weight") return "output.weight";
  constexpr std::string_view kPrefix = "model.layers.";
  if (name.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  name.remove_prefix(kPrefix.size());
  const size_t dot = name.find('.');
  if (dot == std::string_view::npos || dot == 0) return std::nullopt;
  const std::string_view digits = name.substr(0, dot);
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  // "01" would alias layer 1 and let two HF tensors claim one GGUF name.
  if (digits.size() > 1 && digits[0] == '0') return std::nullopt;
  int layer = 0;
  if (!absl::SimpleAtoi(std::string(digits), &layer)) return std::nullopt;
  const std::string_view rest = name.substr(dot + 1);
  for (const Rename& r : kLayerTensors) {
    if (rest == r.hf) return absl::StrCat("blk.", layer, ".", std::string(r.gguf));
  }
  return std::nullopt;
}

void PermuteRowsForRope(const void* src, void* dst, int64_t rows, int64_t row_bytes,
                        int64_t n_heads) {
  TESSERA_CHECK(n_heads > 0 && rows % n_heads == 0 && (rows / n_heads) % 2 == 0);
  const int64_t head_dim = rows / n_heads;
  const int64_t half = head_dim / 2;
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      for (int64_t j = 0; j < 2; ++j) {
        const int64_t to = h * head_dim + 2 * i + j;
        const int64_t from = h * head_dim + j * half + i;
        std::memcpy(d + to * row_bytes, s + from * row_bytes, static_cast<size_t>(row_bytes));
      }
    }
  }
}

}  // namespace tessera
