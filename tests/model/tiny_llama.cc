#include "tests/model/tiny_llama.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/half.h"
#include "common/status_macros.h"
#include "formats/gguf_writer.h"
#include "formats/model_config.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quantize.h"
#include "tests/model/reference_llama.h"

namespace tessera::testing {
namespace {

void PutHalf(uint8_t* p, float v) {
  const uint16_t h = FloatToFp16(v);
  std::memcpy(p, &h, 2);
}

// Random valid K-quant blocks: random bits everywhere, then scales set so that
// |x| stays around `scale`.
void RandomKBlocks(DType dtype, float scale, int64_t num_blocks, std::mt19937& rng,
                   uint8_t* out) {
  const int64_t block_bytes = Traits(dtype).block_bytes;
  std::uniform_int_distribution<int> byte(0, 255);
  for (int64_t b = 0; b < num_blocks; ++b) {
    uint8_t* blk = out + b * block_bytes;
    for (int64_t i = 0; i < block_bytes; ++i) blk[i] = static_cast<uint8_t>(byte(rng));
    switch (dtype) {
      case DType::kQ2_K:
        PutHalf(blk + offsetof(BlockQ2_K, d), scale / 45.0f * 2.0f);
        PutHalf(blk + offsetof(BlockQ2_K, dmin), scale / 15.0f);
        break;
      case DType::kQ3_K:
        PutHalf(blk + offsetof(BlockQ3_K, d), scale / 128.0f * 2.0f);
        break;
      case DType::kQ4_K:
        PutHalf(blk + offsetof(BlockQ4_K, d), scale / 945.0f * 2.0f);
        PutHalf(blk + offsetof(BlockQ4_K, dmin), scale / 63.0f);
        break;
      case DType::kQ5_K:
        PutHalf(blk + offsetof(BlockQ5_K, d), scale / 1953.0f * 2.0f);
        PutHalf(blk + offsetof(BlockQ5_K, dmin), scale / 63.0f);
        break;
      case DType::kQ6_K:
        PutHalf(blk + offsetof(BlockQ6_K, d), scale / 4096.0f * 2.0f);
        break;
      default:
        break;
    }
  }
}

bool IsKQuant(DType t) {
  return t == DType::kQ2_K || t == DType::kQ3_K || t == DType::kQ4_K || t == DType::kQ5_K ||
         t == DType::kQ6_K;
}

// Encodes `rows` x `cols` random values of magnitude `scale` as `dtype`, adds the tensor to
// the writer, and returns what the file holds, decoded with DequantizeRow.
absl::StatusOr<Matrix> AddMatrix(GgufWriter& writer, const std::string& name, DType dtype,
                                 int64_t rows, int64_t cols, float scale, std::mt19937& rng) {
  ASSIGN_OR_RETURN(int64_t row_bytes, RowBytes(dtype, cols));
  std::vector<uint8_t> bytes(static_cast<size_t>(rows * row_bytes));
  std::uniform_real_distribution<float> uni(-scale, scale);
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* dst = bytes.data() + r * row_bytes;
    if (IsKQuant(dtype)) {
      RandomKBlocks(dtype, scale, cols / 256, rng, dst);
      continue;
    }
    for (float& v : row) v = uni(rng);
    if (dtype == DType::kF32) {
      std::memcpy(dst, row.data(), static_cast<size_t>(row_bytes));
    } else if (dtype == DType::kF16 || dtype == DType::kBF16) {
      for (int64_t c = 0; c < cols; ++c) {
        const uint16_t h = dtype == DType::kF16 ? FloatToFp16(row[c]) : FloatToBf16(row[c]);
        std::memcpy(dst + 2 * c, &h, 2);
      }
    } else {
      RETURN_IF_ERROR(QuantizeRow(dtype, row.data(), dst, cols));
    }
  }
  RETURN_IF_ERROR(writer.AddTensorRowMajor(name, dtype, {rows, cols}, bytes.data(), bytes.size()));
  Matrix m;
  m.rows = rows;
  m.cols = cols;
  m.data.resize(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    RETURN_IF_ERROR(DequantizeRow(dtype, bytes.data() + r * row_bytes, row.data(), cols));
    for (int64_t c = 0; c < cols; ++c) m.data[r * cols + c] = row[c];
  }
  return m;
}

absl::StatusOr<std::vector<double>> AddNorm(GgufWriter& writer, const std::string& name,
                                            DType dtype, int64_t size, std::mt19937& rng) {
  std::uniform_real_distribution<float> uni(0.5f, 1.5f);
  std::vector<double> values(static_cast<size_t>(size));
  std::vector<uint8_t> bytes(static_cast<size_t>(size) * (dtype == DType::kF32 ? 4 : 2));
  for (int64_t i = 0; i < size; ++i) {
    const float v = uni(rng);
    if (dtype == DType::kF32) {
      std::memcpy(bytes.data() + 4 * i, &v, 4);
      values[i] = v;
    } else {
      const uint16_t h = dtype == DType::kF16 ? FloatToFp16(v) : FloatToBf16(v);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
      values[i] = dtype == DType::kF16 ? Fp16ToFloat(h) : Bf16ToFloat(h);
    }
  }
  RETURN_IF_ERROR(writer.AddTensorRowMajor(name, dtype, {size}, bytes.data(), bytes.size()));
  return values;
}

}  // namespace

std::string TempGgufPath(const std::string& stem) {
  static std::atomic<int> counter{0};
  return (std::filesystem::temp_directory_path() /
          absl::StrCat("tessera_", stem, "_", getpid(), "_", counter++, ".gguf"))
      .string();
}

TinySpec TensorParallelSpec() {
  TinySpec spec;
  spec.vocab = 50;
  spec.hidden = 64;
  spec.ffn = 128;
  spec.heads = 6;
  spec.kv_heads = 3;
  spec.head_dim = 32;
  spec.rope_dim = 32;
  return spec;
}

absl::StatusOr<TinyWeights> WriteTinyModel(const TinySpec& spec, const std::string& path) {
  GgufWriter writer;
  ModelConfig config;
  config.name = "tiny-test";
  config.max_position_embeddings = spec.context;
  config.hidden_size = spec.hidden;
  config.num_layers = spec.layers;
  config.intermediate_size = spec.ffn;
  config.num_heads = spec.heads;
  config.num_kv_heads = spec.kv_heads;
  config.head_dim = spec.head_dim;
  config.rope_dim = spec.rope_dim;
  config.rope_theta = spec.theta;
  config.rms_norm_eps = spec.eps;
  config.vocab_size = spec.vocab;
  if (spec.rope == TinyRope::kLinear || spec.rope == TinyRope::kYarn) {
    config.rope_scaling.type =
        spec.rope == TinyRope::kLinear ? RopeScalingType::kLinear : RopeScalingType::kYarn;
    config.rope_scaling.factor = spec.rope_factor;
  }
  if (spec.rope == TinyRope::kYarn) {
    config.rope_scaling.original_max_position_embeddings = spec.original_context;
    config.rope_scaling.beta_fast = spec.beta_fast;
    config.rope_scaling.beta_slow = spec.beta_slow;
  }
  RETURN_IF_ERROR(AddModelConfigToGguf(config, writer));
  std::vector<std::string> tokens;
  for (int64_t i = 0; i < spec.vocab; ++i) tokens.push_back(absl::StrCat("t", i));
  RETURN_IF_ERROR(writer.AddString("tokenizer.ggml.model", "gpt2"));
  RETURN_IF_ERROR(writer.AddStringArray("tokenizer.ggml.tokens", tokens));

  std::mt19937 rng(spec.seed);
  TinyWeights w;
  w.spec = spec;
  const int64_t q_dim = spec.heads * spec.head_dim;
  const int64_t kv_dim = spec.kv_heads * spec.head_dim;
  const float s_hidden = 1.5f / std::sqrt(static_cast<float>(spec.hidden));
  ASSIGN_OR_RETURN(w.token_embd, AddMatrix(writer, "token_embd.weight", spec.dtype, spec.vocab,
                                           spec.hidden, 1.0f, rng));
  ASSIGN_OR_RETURN(w.output_norm,
                   AddNorm(writer, "output_norm.weight", spec.norm_dtype, spec.hidden, rng));
  if (spec.tied) {
    w.output = w.token_embd;
  } else {
    ASSIGN_OR_RETURN(w.output, AddMatrix(writer, "output.weight", spec.dtype, spec.vocab,
                                         spec.hidden, s_hidden, rng));
  }
  for (int64_t l = 0; l < spec.layers; ++l) {
    TinyLayer layer;
    const std::string p = absl::StrCat("blk.", l, ".");
    const float s_q = 1.5f / std::sqrt(static_cast<float>(q_dim));
    const float s_ffn = 1.5f / std::sqrt(static_cast<float>(spec.ffn));
    ASSIGN_OR_RETURN(layer.attn_norm,
                     AddNorm(writer, p + "attn_norm.weight", spec.norm_dtype, spec.hidden, rng));
    ASSIGN_OR_RETURN(layer.wq, AddMatrix(writer, p + "attn_q.weight", spec.dtype, q_dim,
                                         spec.hidden, s_hidden * 2.0f, rng));
    ASSIGN_OR_RETURN(layer.wk, AddMatrix(writer, p + "attn_k.weight", spec.dtype, kv_dim,
                                         spec.hidden, s_hidden * 2.0f, rng));
    ASSIGN_OR_RETURN(layer.wv, AddMatrix(writer, p + "attn_v.weight", spec.dtype, kv_dim,
                                         spec.hidden, s_hidden, rng));
    ASSIGN_OR_RETURN(layer.wo, AddMatrix(writer, p + "attn_output.weight", spec.dtype,
                                         spec.hidden, q_dim, s_q, rng));
    ASSIGN_OR_RETURN(layer.ffn_norm,
                     AddNorm(writer, p + "ffn_norm.weight", spec.norm_dtype, spec.hidden, rng));
    ASSIGN_OR_RETURN(layer.w_gate, AddMatrix(writer, p + "ffn_gate.weight", spec.dtype,
                                             spec.ffn, spec.hidden, s_hidden, rng));
    ASSIGN_OR_RETURN(layer.w_up, AddMatrix(writer, p + "ffn_up.weight", spec.dtype, spec.ffn,
                                           spec.hidden, s_hidden, rng));
    ASSIGN_OR_RETURN(layer.w_down, AddMatrix(writer, p + "ffn_down.weight", spec.dtype,
                                             spec.hidden, spec.ffn, s_ffn, rng));
    w.layers.push_back(std::move(layer));
  }
  if (spec.rope == TinyRope::kLlama3Tensor) {
    // llama.cpp's convention: rope_freqs holds base_freq / scaled_freq per frequency.
    TinySpec plain = spec;
    plain.rope = TinyRope::kNone;
    const ReferenceRope base = ReferenceRopeFor(plain);
    const ReferenceRope scaled = ReferenceRopeFor(spec);
    std::vector<float> factors;
    for (size_t i = 0; i < base.inv_freq.size(); ++i) {
      factors.push_back(static_cast<float>(base.inv_freq[i] / scaled.inv_freq[i]));
      w.rope_freqs_tensor.push_back(factors.back());
    }
    RETURN_IF_ERROR(writer.AddTensorRowMajor("rope_freqs.weight", DType::kF32,
                                             {static_cast<int64_t>(factors.size())},
                                             factors.data(), factors.size() * sizeof(float)));
  }
  RETURN_IF_ERROR(writer.WriteFile(path));
  return w;
}

absl::StatusOr<LoadedTinyModel> LoadTinyModel(const TinySpec& spec, const std::string& path,
                                              const std::string& backend, int num_threads,
                                              BackendOptions options) {
  LoadedTinyModel m;
  ASSIGN_OR_RETURN(m.weights, WriteTinyModel(spec, path));
  ASSIGN_OR_RETURN(m.store, OpenWeightStore(path));
  ASSIGN_OR_RETURN(m.backend, CreateBackend(backend, num_threads, options));
  ASSIGN_OR_RETURN(m.model, LlamaModel::Load(*m.store, m.backend.get()));
  return m;
}

}  // namespace tessera::testing
