// Test helper: builds small random-weight Llama models as GGUF files with GgufWriter (and
// loads them), keeping the exact weights (dequantized from the written bytes) in float64
// for the independent reference forward in reference_llama.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "formats/weight_store.h"
#include "kernels/registry.h"
#include "model/llama_model.h"

namespace tessera::testing {

enum class TinyRope { kNone, kLinear, kLlama3Tensor, kYarn };

struct TinySpec {
  int64_t vocab = 48;
  int64_t hidden = 64;
  int64_t ffn = 96;
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t kv_heads = 2;
  int64_t head_dim = 16;
  int64_t rope_dim = 16;  // == head_dim for Llama
  int64_t context = 64;
  double theta = 10000.0;
  double eps = 1.0 / 65536.0;  // exactly representable in the file's f32
  bool tied = true;
  DType dtype = DType::kF32;        // every matrix (including the token embedding)
  DType norm_dtype = DType::kF32;   // norm vectors
  TinyRope rope = TinyRope::kNone;
  double rope_factor = 4.0;
  int64_t original_context = 16;  // Llama-3 / YaRN
  double low_freq_factor = 1.0, high_freq_factor = 4.0;
  double beta_fast = 32.0, beta_slow = 1.0;
  uint32_t seed = 1;
};

// Weights as the file holds them, in double; matrices are row-major [rows, cols].
struct Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<double> data;
  const double* Row(int64_t r) const { return data.data() + r * cols; }
};

struct TinyLayer {
  std::vector<double> attn_norm, ffn_norm;
  Matrix wq, wk, wv, wo, w_gate, w_up, w_down;
};

struct TinyWeights {
  TinySpec spec;
  Matrix token_embd;
  Matrix output;  // equals token_embd when tied
  std::vector<double> output_norm;
  std::vector<TinyLayer> layers;
  std::vector<double> rope_freqs_tensor;  // the factors written for kLlama3Tensor
};

// The tensor-parallel tests' model: 6 query heads over 3 KV heads at head_dim 32, vocabulary
// 50 and FFN 128 (blocks of 32), so that tp 2 splits the KV heads, vocabulary and FFN
// unevenly and tp 3 gives one KV head each.
TinySpec TensorParallelSpec();

// Writes the model to `path` and returns the weights it holds.
absl::StatusOr<TinyWeights> WriteTinyModel(const TinySpec& spec, const std::string& path);

// A fresh temp file path ending in .gguf (unique per call).
std::string TempGgufPath(const std::string& stem);

// A tiny model written to a file and loaded. Members are destroyed in reverse order, so
// the model goes before the store and backend it borrows. The caller removes the file.
struct LoadedTinyModel {
  TinyWeights weights;
  std::unique_ptr<WeightStore> store;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<LlamaModel> model;
};

// Writes the model to `path` (WriteTinyModel), opens it and loads it on a `backend` with
// `num_threads` (CreateBackend).
absl::StatusOr<LoadedTinyModel> LoadTinyModel(const TinySpec& spec, const std::string& path,
                                              const std::string& backend, int num_threads,
                                              BackendOptions options = {});

}  // namespace tessera::testing
