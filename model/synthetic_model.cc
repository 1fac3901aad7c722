#include "model/synthetic_model.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/half.h"
#include "common/status_macros.h"
#include "common/thread_pool.h"
#include "formats/gguf_writer.h"
#include "kernels/cpu/quantize.h"
#include "tokenizer/synthetic_vocab.h"

namespace tessera {
namespace {

// llama.cpp's general.file_type (llama_ftype) for each matrix dtype.
uint32_t FileType(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 0;
    case DType::kF16: return 1;
    case DType::kQ4_0: return 2;
    case DType::kQ4_1: return 3;
    case DType::kQ8_0: return 7;
    case DType::kQ5_0: return 8;
    case DType::kQ5_1: return 9;
    case DType::kBF16: return 32;
    default: return 0;
  }
}

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001B3ull;
  }
  return h;
}

// One random matrix, produced a slice of rows at a time on `pool`.
class MatrixFiller {
 public:
  MatrixFiller(uint64_t seed, const std::string& name, DType dtype, int64_t cols,
               ThreadPool* pool)
      : key_(Fnv1a(name) ^ (seed * 0xD6E8FEB86659FD93ull)),
        dtype_(dtype),
        cols_(cols),
        row_bytes_(RowBytes(dtype, cols).value()),
        // Uniform on [-a, a] has standard deviation a / sqrt(3).
        bound_(static_cast<float>(std::sqrt(3.0 / static_cast<double>(cols)))),
        pool_(pool) {}

  absl::Status operator()(int64_t first_row, int64_t num_rows, void* dst) const {
    std::atomic<bool> failed{false};
    pool_->ParallelFor(num_rows, 4, [&](int64_t begin, int64_t end) {
      std::vector<float> row(static_cast<size_t>(cols_));
      for (int64_t r = begin; r < end; ++r) {
        FillRow(first_row + r, row.data());
        if (!Encode(row.data(), static_cast<uint8_t*>(dst) + r * row_bytes_)) failed = true;
      }
    });
    if (failed) {
      return absl::InternalError(
          absl::StrFormat("synthesize: cannot encode a row as %s", DTypeName(dtype_)));
    }
    return absl::OkStatus();
  }

 private:
  void FillRow(int64_t row, float* out) const {
    uint64_t state = key_ ^ (static_cast<uint64_t>(row) * 0x9E3779B97F4A7C15ull);
    SplitMix64(state);  // decorrelate neighbouring rows
    constexpr float kInv24 = 1.0f / 16777216.0f;
    const float scale = 2.0f * bound_ * kInv24;
    int64_t c = 0;
    for (; c + 1 < cols_; c += 2) {
      const uint64_t bits = SplitMix64(state);
      out[c] = static_cast<float>(bits >> 40) * scale - bound_;
      out[c + 1] = static_cast<float>((bits >> 8) & 0xFFFFFF) * scale - bound_;
    }
    if (c < cols_) out[c] = static_cast<float>(SplitMix64(state) >> 40) * scale - bound_;
  }

  bool Encode(const float* row, uint8_t* dst) const {
    switch (dtype_) {
      case DType::kF32:
        std::memcpy(dst, row, static_cast<size_t>(cols_) * sizeof(float));
        return true;
      case DType::kF16:
      case DType::kBF16: {
        auto* out = reinterpret_cast<uint16_t*>(dst);  // GGUF data is 32-byte aligned
        if (dtype_ == DType::kF16) {
          for (int64_t c = 0; c < cols_; ++c) out[c] = FloatToFp16(row[c]);
        } else {
          for (int64_t c = 0; c < cols_; ++c) out[c] = FloatToBf16(row[c]);
        }
        return true;
      }
      default:
        return QuantizeRow(dtype_, row, dst, cols_).ok();
    }
  }

  uint64_t key_;
  DType dtype_;
  int64_t cols_;
  int64_t row_bytes_;
  float bound_;
  ThreadPool* pool_;
};

GgufWriter::RowFiller ConstantRows(float value, int64_t cols) {
  return [value, cols](int64_t, int64_t num_rows, void* dst) {
    float* out = static_cast<float*>(dst);
    for (int64_t i = 0; i < num_rows * cols; ++i) out[i] = value;
    return absl::OkStatus();
  };
}

absl::Status AddMetadata(const SynthesisOptions& o, const ModelConfig& c, GgufWriter& w) {
  RETURN_IF_ERROR(AddModelConfigToGguf(c, w));
  RETURN_IF_ERROR(w.AddString(
      "general.description",
      absl::StrFormat("random weights in the shape of %s (tessera synthesize)",
                      o.shape.description)));
  RETURN_IF_ERROR(w.AddUint32("general.file_type", FileType(o.dtype)));
  RETURN_IF_ERROR(w.AddString("tessera.synthetic.shape", o.shape.name));
  RETURN_IF_ERROR(w.AddValue("tessera.synthetic.seed", GgufValue::U64(o.seed)));
  ASSIGN_OR_RETURN(const Vocabulary vocab, SyntheticVocabulary(c.vocab_size));
  return AddVocabularyToGguf(vocab, w);
}

}  // namespace

absl::StatusOr<int64_t> SynthesizedTensorBytes(const SynthesisOptions& o) {
  ASSIGN_OR_RETURN(const ModelConfig c, SynthesizedConfig(o));
  const int64_t params = ParameterCount(c);
  const int64_t norm_params = c.hidden_size * (2 * c.num_layers + 1);
  ASSIGN_OR_RETURN(const int64_t matrix_bytes, RowBytes(o.dtype, params - norm_params));
  return matrix_bytes + norm_params * 4 + (c.has_rope_freqs ? c.rope_dim / 2 * 4 : 0);
}

absl::Status SynthesizeModel(const SynthesisOptions& o, const std::string& path,
                             const SynthesisProgress& progress) {
  ASSIGN_OR_RETURN(const ModelConfig c, SynthesizedConfig(o));
  GgufWriter w;
  RETURN_IF_ERROR(AddMetadata(o, c, w));
  ThreadPool pool(o.num_threads);
  const auto add_matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    return w.AddDeferredTensorRowMajor(name, o.dtype, {rows, cols},
                                       MatrixFiller(o.seed, name, o.dtype, cols, &pool));
  };
  const auto add_norm = [&](const std::string& name) {
    return w.AddDeferredTensorRowMajor(name, DType::kF32, {c.hidden_size},
                                       ConstantRows(1.0f, c.hidden_size));
  };
  if (c.has_rope_freqs) {
    const std::vector<float> factors = Llama3RopeFreqFactors(o.shape.config);
    RETURN_IF_ERROR(w.AddTensorRowMajor("rope_freqs.weight", DType::kF32,
                                        {static_cast<int64_t>(factors.size())}, factors.data(),
                                        factors.size() * sizeof(float)));
  }
  const int64_t q_dim = c.num_heads * c.head_dim;
  const int64_t kv_dim = c.num_kv_heads * c.head_dim;
  RETURN_IF_ERROR(add_matrix("token_embd.weight", c.vocab_size, c.hidden_size));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = absl::StrFormat("blk.%d.", l);
    RETURN_IF_ERROR(add_norm(p + "attn_norm.weight"));
    RETURN_IF_ERROR(add_matrix(p + "attn_q.weight", q_dim, c.hidden_size));
    RETURN_IF_ERROR(add_matrix(p + "attn_k.weight", kv_dim, c.hidden_size));
    RETURN_IF_ERROR(add_matrix(p + "attn_v.weight", kv_dim, c.hidden_size));
    RETURN_IF_ERROR(add_matrix(p + "attn_output.weight", c.hidden_size, q_dim));
    RETURN_IF_ERROR(add_norm(p + "ffn_norm.weight"));
    RETURN_IF_ERROR(add_matrix(p + "ffn_gate.weight", c.intermediate_size, c.hidden_size));
    RETURN_IF_ERROR(add_matrix(p + "ffn_up.weight", c.intermediate_size, c.hidden_size));
    RETURN_IF_ERROR(add_matrix(p + "ffn_down.weight", c.hidden_size, c.intermediate_size));
  }
  RETURN_IF_ERROR(add_norm("output_norm.weight"));
  if (!c.tie_word_embeddings) {
    RETURN_IF_ERROR(add_matrix("output.weight", c.vocab_size, c.hidden_size));
  }
  return w.WriteFile(path, progress);
}

}  // namespace tessera
