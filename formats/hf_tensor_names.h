// Hugging Face Llama tensor names -> llama.cpp (GGUF) names, and the Q/K row permutation
// that llama.cpp's convert_hf_to_gguf.py applies. Pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tessera {

// "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight", ...; std::nullopt for a
// name that is not part of a Llama checkpoint (including a layer number with a leading
// zero, so that distinct HF names never map to the same GGUF name).
std::optional<std::string> GgufNameForHfTensor(std::string_view hf_name);

// Rows of a [n_heads * head_dim, cols] matrix from HF's rotate-half layout to GGUF's
// adjacent-pair layout: per head, reshape(2, head_dim / 2, cols).swapaxes(0, 1), i.e.
// dst row h*head_dim + 2*i + j = src row h*head_dim + j*head_dim/2 + i.
// `rows` must be n_heads * head_dim with head_dim even; rows are copied as opaque bytes.
void PermuteRowsForRope(const void* src, void* dst, int64_t rows, int64_t row_bytes,
                        int64_t n_heads);

}  // namespace tessera
