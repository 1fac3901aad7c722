#include "model/llama_model.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/half.h"
#include "common/progress_bar.h"
#include "common/status_macros.h"

namespace tessera {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Looks up `name` and checks its shape; the error names the tensor and both shapes.
absl::StatusOr<TensorView> GetTensor(const WeightStore& store, const std::string& name,
                                     const std::vector<int64_t>& expected) {
  if (!store.Has(name)) {
    return absl::InvalidArgumentError(absl::StrCat("missing tensor ", name,
                                                   " (expected shape ", ShapeString(expected),
                                                   ")"));
  }
  ASSIGN_OR_RETURN(TensorView view, store.Get(name));
  if (view.shape != expected) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", name, ": expected shape ",
                                                   ShapeString(expected), ", got ",
                                                   ShapeString(view.shape)));
  }
  return view;
}

// A weight matrix used by MatMul / Embedding: rows must split into whole blocks.
absl::StatusOr<TensorView> GetMatrix(const WeightStore& store, const std::string& name,
                                     int64_t rows, int64_t cols) {
  ASSIGN_OR_RETURN(TensorView view, GetTensor(store, name, {rows, cols}));
  const DTypeTraits& traits = Traits(view.dtype);
  const bool plain_float =
      view.dtype == DType::kF32 || view.dtype == DType::kF16 || view.dtype == DType::kBF16;
  if (!plain_float && !traits.quantized) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tensor %s: dtype %s is not a weight dtype", name, DTypeName(view.dtype)));
  }
  if (cols % traits.block_elems != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tensor %s: %d columns are not a multiple of the %s block size %d", name, cols,
        DTypeName(view.dtype), traits.block_elems));
  }
  return view;
}

// A norm weight, converted to float32 (the only weights converted at load: they are tiny).
absl::StatusOr<std::vector<float>> GetVector(const WeightStore& store, const std::string& name,
                                             int64_t size) {
  ASSIGN_OR_RETURN(TensorView view, GetTensor(store, name, {size}));
  std::vector<float> out(static_cast<size_t>(size));
  const auto* bytes = static_cast<const uint8_t*>(view.data);
  for (int64_t i = 0; i < size; ++i) {
    switch (view.dtype) {
      case DType::kF32:
        std::memcpy(&out[i], bytes + 4 * i, 4);
        break;
      case DType::kF16:
      case DType::kBF16: {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * i, 2);
        out[i] = view.dtype == DType::kF16 ? Fp16ToFloat(h) : Bf16ToFloat(h);
        break;
      }
      default:
        return absl::InvalidArgumentError(absl::StrFormat(
            "tensor %s: norm weights must be f32, f16 or bf16, got %s", name,
            DTypeName(view.dtype)));
    }
  }
  return out;
}

// Reads one byte per page so that the mapping is resident before the first forward (row by
// row for a column slice, whose rows have gaps that belong to other ranks).
uint8_t TouchPages(const TensorView& view) {
  uint8_t acc = 0;
  if (view.dense()) {
    const auto* p = static_cast<const uint8_t*>(view.data);
    const int64_t bytes = view.NumBytes();
    for (int64_t i = 0; i < bytes; i += 4096) acc ^= p[i];
    return acc;
  }
  const int64_t row_bytes = view.RowBytes();
  for (int64_t r = 0; r < view.Rows(); ++r) {
    const uint8_t* p = view.RowPtr(r);
    for (int64_t i = 0; i < row_bytes; i += 4096) acc ^= p[i];
    acc ^= p[row_bytes - 1];
  }
  return acc;
}

}  // namespace

LoadProgressCallback MakeProgressBarCallback(std::string label) {
  auto bar = std::make_shared<std::unique_ptr<ProgressBar>>();
  return [bar, label = std::move(label)](int64_t done, int64_t total) {
    if (*bar == nullptr) *bar = std::make_unique<ProgressBar>(label, total);
    if (done >= total) {
      (*bar)->Done();
    } else {
      (*bar)->Update(done);
    }
  };
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Load(
    const WeightStore& store, Backend* backend, LoadProgressCallback progress,
    const TensorParallelShard* tensor_parallel, const StageShard* stage) {
  if (backend == nullptr) return absl::InvalidArgumentError("LlamaModel::Load: null backend");
  const ModelConfig& c = store.config();
  RETURN_IF_ERROR(c.Validate());
  if (c.architecture != "llama") {
    return absl::InvalidArgumentError(absl::StrCat(
        "model architecture '", c.architecture, "' is not supported (only 'llama')"));
  }
  if (c.vocab_size > std::numeric_limits<int32_t>::max() ||
      c.max_position_embeddings > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError("vocab_size / max_position_embeddings exceed int32");
  }
  auto model = std::unique_ptr<LlamaModel>(new LlamaModel());
  model->config_ = c;
  model->backend_ = backend;
  const int64_t hidden = c.hidden_size;
  const int64_t q_dim = c.num_heads * c.head_dim;
  const int64_t kv_dim = c.num_kv_heads * c.head_dim;
  const int64_t ffn = c.intermediate_size;

  ASSIGN_OR_RETURN(model->token_embd_, GetMatrix(store, "token_embd.weight", c.vocab_size, hidden));
  // The norm vectors as float32 on the host: [output, attn 0, ffn 0, attn 1, ...], copied
  // to the backend's memory once the stage's layers are known.
  std::vector<std::vector<float>> norms(1 + 2 * static_cast<size_t>(c.num_layers));
  ASSIGN_OR_RETURN(norms[0], GetVector(store, "output_norm.weight", hidden));
  // llama.cpp's rule: a separate head when the file has one, else the tied embedding.
  if (store.Has("output.weight")) {
    ASSIGN_OR_RETURN(model->lm_head_, GetMatrix(store, "output.weight", c.vocab_size, hidden));
  } else {
    model->lm_head_ = model->token_embd_;
  }
  model->layers_.resize(static_cast<size_t>(c.num_layers));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    Layer& layer = model->layers_[static_cast<size_t>(l)];
    const std::string p = absl::StrCat("blk.", l, ".");
    ASSIGN_OR_RETURN(norms[1 + 2 * l], GetVector(store, p + "attn_norm.weight", hidden));
    ASSIGN_OR_RETURN(layer.wq, GetMatrix(store, p + "attn_q.weight", q_dim, hidden));
    ASSIGN_OR_RETURN(layer.wk, GetMatrix(store, p + "attn_k.weight", kv_dim, hidden));
    ASSIGN_OR_RETURN(layer.wv, GetMatrix(store, p + "attn_v.weight", kv_dim, hidden));
    ASSIGN_OR_RETURN(layer.wo, GetMatrix(store, p + "attn_output.weight", hidden, q_dim));
    ASSIGN_OR_RETURN(norms[2 + 2 * l], GetVector(store, p + "ffn_norm.weight", hidden));
    ASSIGN_OR_RETURN(layer.w_gate, GetMatrix(store, p + "ffn_gate.weight", ffn, hidden));
    ASSIGN_OR_RETURN(layer.w_up, GetMatrix(store, p + "ffn_up.weight", ffn, hidden));
    ASSIGN_OR_RETURN(layer.w_down, GetMatrix(store, p + "ffn_down.weight", hidden, ffn));
  }

  model->stage_ = {.layers = {0, c.num_layers}, .has_embedding = true, .has_lm_head = true};
  if (tensor_parallel != nullptr && tensor_parallel->group != nullptr &&
      tensor_parallel->group->device_buffers() == backend->host_addressable()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "backend %s keeps activations in %s memory but the tensor group's communicator "
        "exchanges %s buffers: use NCCL with a device backend, MPI with a CPU backend",
        backend->name(), backend->host_addressable() ? "host" : "device",
        tensor_parallel->group->device_buffers() ? "device" : "host"));
  }
  if (stage != nullptr) {
    if (stage->layers.begin < 0 || stage->layers.end > c.num_layers ||
        stage->layers.begin >= stage->layers.end) {
      return absl::InvalidArgumentError(absl::StrCat(
          "pipeline stage: layers [", stage->layers.begin, ", ", stage->layers.end,
          ") are not a non-empty part of the model's ", c.num_layers));
    }
    model->stage_ = *stage;
    std::vector<Layer> mine(model->layers_.begin() + stage->layers.begin,
                            model->layers_.begin() + stage->layers.end);
    model->layers_ = std::move(mine);
  }
  std::vector<const std::vector<float>*> kept = {&norms[0]};
  for (int64_t l = model->stage_.layers.begin; l < model->stage_.layers.end; ++l) {
    kept.push_back(&norms[1 + 2 * l]);
    kept.push_back(&norms[2 + 2 * l]);
  }
  RETURN_IF_ERROR(model->UploadNorms(kept));
  model->local_heads_ = c.num_heads;
  model->local_kv_heads_ = c.num_kv_heads;
  model->local_ffn_ = ffn;
  model->vocab_ = {0, c.vocab_size};
  model->q_ranges_ = {{0, c.num_heads * c.head_dim}};
  model->ffn_ranges_ = {{0, ffn}};
  if (tensor_parallel != nullptr) RETURN_IF_ERROR(model->ApplyTensorParallel(*tensor_parallel));

  std::optional<TensorView> rope_freqs;
  if (store.Has("rope_freqs.weight")) {
    ASSIGN_OR_RETURN(rope_freqs, store.Get("rope_freqs.weight"));
  }
  ASSIGN_OR_RETURN(model->rope_,
                   ComputeRopeFrequencies(c, rope_freqs ? &*rope_freqs : nullptr));
  model->rope_params_.head_dim = c.head_dim;
  model->rope_params_.rope_dim = c.rope_dim;
  model->rope_params_.inv_freq = model->rope_.inv_freq.data();
  model->rope_params_.mscale = model->rope_.mscale;
  model->rope_params_.style = RopeStyle::kAdjacentPairs;  // GGUF's Q/K row order
  model->attn_params_.num_heads = model->local_heads_;
  model->attn_params_.num_kv_heads = model->local_kv_heads_;
  model->attn_params_.head_dim = c.head_dim;
  model->attn_params_.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
  model->paged_params_.num_heads = model->local_heads_;
  model->paged_params_.num_kv_heads = model->local_kv_heads_;
  model->paged_params_.head_dim = c.head_dim;
  model->paged_params_.scale = model->attn_params_.scale;

  RETURN_IF_ERROR(model->PackOrTouchWeights(store, progress));
  return model;
}

absl::Status LlamaModel::PackOrTouchWeights(const WeightStore& store,
                                            const LoadProgressCallback& progress) {
  // Groups packed together when the backend can (Q/K/V and gate/up read the same input).
  const bool tied = lm_head_.data == token_embd_.data;
  struct Group {
    std::vector<TensorView*> parts;
    TensorView* stacked = nullptr;  // where the stacked view goes, for several parts
  };
  std::vector<Group> groups;
  if (stage_.has_lm_head) groups.push_back({{&lm_head_}});
  for (Layer& layer : layers_) {
    groups.push_back({{&layer.wq, &layer.wk, &layer.wv}, &layer.wqkv});
    groups.push_back({{&layer.wo}});
    groups.push_back({{&layer.w_gate, &layer.w_up}, &layer.w_gate_up});
    groups.push_back({{&layer.w_down}});
  }
  const bool embedding_separate = stage_.has_embedding && !(tied && stage_.has_lm_head);
  int64_t total = embedding_separate ? token_embd_.NumBytes() : 0;
  for (const Group& group : groups) {
    for (const TensorView* w : group.parts) total += w->NumBytes();
  }
  int64_t done = 0;
  volatile uint8_t sink = 0;
  if (progress) progress(0, total);
  if (embedding_separate) {
    if (!backend_->host_addressable()) {
      // The backend reads the table from its own memory: its copy, like the matrices'.
      ASSIGN_OR_RETURN(std::unique_ptr<PackedWeight> table,
                       backend_->PackVocabularyMatrix(token_embd_));
      if (table == nullptr) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "backend %s made no copy of token_embd.weight (%s)", backend_->name(),
            DTypeName(token_embd_.dtype)));
      }
      token_embd_.packed = table.get();
      packed_weights_.push_back(std::move(table));
      store.ReleasePages(token_embd_);
    } else {
      sink = sink ^ TouchPages(token_embd_);
    }
    done += token_embd_.NumBytes();
    if (progress) progress(done, total);
  }
  // Packed copies replace the file's pages, which are dropped: keeping both would double
  // the resident weights. A tied embedding's rows come from the LM head's copy.
  const auto keep = [&](std::unique_ptr<PackedWeight> packed,
                        std::span<TensorView* const> parts) -> const PackedWeight* {
    const PackedWeight* p = packed.get();
    packed_weights_.push_back(std::move(packed));
    for (TensorView* w : parts) store.ReleasePages(*w);
    return p;
  };
  for (const Group& group : groups) {
    std::vector<TensorView> views;
    for (const TensorView* w : group.parts) views.push_back(*w);
    std::unique_ptr<PackedWeight> stacked;
    if (group.stacked != nullptr) {
      ASSIGN_OR_RETURN(stacked, backend_->PackWeights(views));
    }
    if (stacked != nullptr) {
      int64_t rows = 0;
      for (const TensorView* w : group.parts) rows += w->dim(0);
      *group.stacked = TensorView{group.parts[0]->dtype, {rows, group.parts[0]->dim(1)}, nullptr};
      group.stacked->packed = keep(std::move(stacked), group.parts);
      stacked_width_ = std::max(stacked_width_, rows);
    } else {
      for (TensorView* w : group.parts) {
        ASSIGN_OR_RETURN(std::unique_ptr<PackedWeight> packed,
                         w == &lm_head_ ? backend_->PackVocabularyMatrix(*w)
                                        : backend_->PackWeight(*w));
        if (packed != nullptr) {
          w->packed = keep(std::move(packed), {&w, 1});
        } else if (!backend_->host_addressable()) {
          return absl::FailedPreconditionError(absl::StrFormat(
              "backend %s made no copy of a %s matrix", backend_->name(), DTypeName(w->dtype)));
        } else {
          sink = sink ^ TouchPages(*w);
        }
      }
    }
    for (const TensorView* w : group.parts) done += w->NumBytes();
    if (progress) progress(done, total);
  }
  if (tied && stage_.has_embedding && stage_.has_lm_head && token_embd_.shape == lm_head_.shape) {
    token_embd_.packed = lm_head_.packed;
  }
  return absl::OkStatus();
}

absl::StatusOr<KvCache> LlamaModel::NewKvCache(int64_t max_tokens) const {
  if (max_tokens == 0) max_tokens = config_.max_position_embeddings;
  return KvCache::Create(static_cast<int64_t>(layers_.size()), max_tokens, local_kv_heads_,
                         config_.head_dim, backend_);
}

absl::Status LlamaModel::UploadNorms(const std::vector<const std::vector<float>*>& norms) {
  const int64_t hidden = config_.hidden_size;
  std::vector<float> all;
  for (const std::vector<float>* v : norms) all.insert(all.end(), v->begin(), v->end());
  ASSIGN_OR_RETURN(norms_, backend_->Allocate(all.size() * sizeof(float)));
  RETURN_IF_ERROR(backend_->CopyToBackend(norms_->data(), all.data(), all.size() * sizeof(float)));
  const float* base = norms_->as<float>();
  output_norm_ = base;
  for (size_t l = 0; l < layers_.size(); ++l) {
    layers_[l].attn_norm = base + (1 + 2 * l) * hidden;
    layers_[l].ffn_norm = base + (2 + 2 * l) * hidden;
  }
  return absl::OkStatus();
}

absl::Status LlamaModel::RowsToHost(const float* src, int64_t rows, float* dst) {
  return backend_->CopyFromBackend(dst, src,
                                   static_cast<size_t>(rows * config_.hidden_size) * sizeof(float));
}

absl::StatusOr<float*> LlamaModel::Floats(std::unique_ptr<BackendBuffer>* buffer,
                                          int64_t floats) {
  const size_t bytes = static_cast<size_t>(std::max<int64_t>(floats, 1)) * sizeof(float);
  if (*buffer == nullptr || (*buffer)->size() < bytes) {
    ASSIGN_OR_RETURN(*buffer, backend_->Allocate(bytes));
  }
  return (*buffer)->as<float>();
}

absl::Status LlamaModel::EnsureScratch(int64_t n) {
  if (n <= scratch_tokens_) return absl::OkStatus();
  const ModelConfig& c = config_;
  const auto floats = [n](int64_t per_token) {
    return static_cast<size_t>(n * per_token) * sizeof(float);
  };
  // Under sequence parallelism the row buffers hold n padded to whole chunks.
  const int64_t padded = RowChunk(n) * (sequence_parallel_ ? tensor_group_->size() : 1);
  const size_t row_bytes = static_cast<size_t>(padded * c.hidden_size) * sizeof(float);
  Backend& b = *backend_;
  ASSIGN_OR_RETURN(x_, b.Allocate(row_bytes));
  ASSIGN_OR_RETURN(xn_, b.Allocate(row_bytes));
  if (sequence_parallel_) {
    ASSIGN_OR_RETURN(chunk_, b.Allocate(static_cast<size_t>(RowChunk(n) * c.hidden_size) *
                                        sizeof(float)));
    ASSIGN_OR_RETURN(full_x_, b.Allocate(row_bytes));
  }
  ASSIGN_OR_RETURN(q_, b.Allocate(floats(local_heads_ * c.head_dim)));
  ASSIGN_OR_RETURN(attn_, b.Allocate(floats(local_heads_ * c.head_dim)));
  ASSIGN_OR_RETURN(gate_, b.Allocate(floats(local_ffn_)));
  ASSIGN_OR_RETURN(up_, b.Allocate(floats(local_ffn_)));
  positions_.resize(static_cast<size_t>(n));
  ASSIGN_OR_RETURN(k_, b.Allocate(floats(local_kv_heads_ * c.head_dim)));
  ASSIGN_OR_RETURN(v_, b.Allocate(floats(local_kv_heads_ * c.head_dim)));
  if (stacked_width_ > 0 && stacked_ == nullptr) {
    // A stacked MatMul runs over at most this many rows at a time, so that its output buffer
    // stays bounded (a long prefill would otherwise need all its rows of gate|up).
    ASSIGN_OR_RETURN(stacked_, b.Allocate(static_cast<size_t>(b.stacked_rows_per_call() *
                                                              stacked_width_) *
                                          sizeof(float)));
  }
  scratch_tokens_ = n;
  return absl::OkStatus();
}

absl::Status LlamaModel::RunLayer(int64_t layer_index, int64_t n, int64_t start_pos,
                                  KvCache& cache) {
  const ModelConfig& c = config_;
  const Layer& layer = layers_[static_cast<size_t>(layer_index)];
  const int64_t kv_dim = local_kv_heads_ * c.head_dim;
  float* q = q_->as<float>();
  float* attn = attn_->as<float>();
  const std::span<const int32_t> positions(positions_.data(), static_cast<size_t>(n));
  Backend& b = *backend_;

  // Attention block; K and V go straight into the cache rows of these positions.
  float* k_rows = cache.keys(layer_index) + start_pos * kv_dim;
  float* v_rows = cache.values(layer_index) + start_pos * kv_dim;
  RETURN_IF_ERROR(ProjectQkv(layer, n, q, k_rows, v_rows));
  b.Rope(q, n, local_heads_, positions, rope_params_);
  b.Rope(k_rows, n, local_kv_heads_, positions, rope_params_);
  b.Attention(q, n, positions, cache.keys(layer_index), cache.values(layer_index),
              start_pos + n, attn_params_, attn);
  return OutputProjectionAndMlp(layer, n);
}

absl::Status LlamaModel::OutputProjectionAndMlp(const Layer& layer, int64_t n) {
  float* gate = gate_->as<float>();

  // Row-parallel O and down (llama_model_tp.cc).
  RETURN_IF_ERROR(RowParallel(attn_->as<float>(), n, layer.wo, q_ranges_));

  // SwiGLU MLP.
  RETURN_IF_ERROR(GateUp(layer, n, gate));
  RETURN_IF_ERROR(RowParallel(gate, n, layer.w_down, ffn_ranges_));
  return absl::OkStatus();
}

absl::Status LlamaModel::NormMatMul(const float* norm_weight, int64_t i0,
                                    int64_t count, const TensorView& w, float* y) {
  const int64_t hidden = config_.hidden_size;
  float* xn = xn_->as<float>() + i0 * hidden;
  if (sequence_parallel_) return backend_->MatMul(xn, count, hidden, w, y);  // gathered normed
  return backend_->RmsNormMatMul(x_->as<float>() + i0 * hidden, norm_weight, count, hidden,
                                 static_cast<float>(config_.rms_norm_eps), w, xn, y);
}

absl::Status LlamaModel::ProjectQkv(const Layer& layer, int64_t n, float* q, float* k, float* v) {
  const int64_t hidden = config_.hidden_size;
  float* xn = xn_->as<float>();
  Backend& b = *backend_;
  // Under sequence parallelism the normed rows are gathered from every rank first; else the
  // norm goes with the first projection of each block of rows (NormMatMul).
  if (sequence_parallel_) RETURN_IF_ERROR(NormAllRows(layer.attn_norm, n, xn));
  if (layer.wqkv.packed == nullptr) {
    RETURN_IF_ERROR(NormMatMul(layer.attn_norm, 0, n, layer.wq, q));
    RETURN_IF_ERROR(b.MatMul(xn, n, hidden, layer.wk, k));
    return b.MatMul(xn, n, hidden, layer.wv, v);
  }
  const int64_t qd = layer.wq.dim(0), kd = layer.wk.dim(0), vd = layer.wv.dim(0);
  const int64_t width = qd + kd + vd;
  float* rows = stacked_->as<float>();
  const int64_t per_call = b.stacked_rows_per_call();
  for (int64_t i0 = 0; i0 < n; i0 += per_call) {
    const int64_t count = std::min(per_call, n - i0);
    RETURN_IF_ERROR(NormMatMul(layer.attn_norm, i0, count, layer.wqkv, rows));
    // Each part's columns of the stacked rows to its own rows.
    const int64_t f = sizeof(float);
    RETURN_IF_ERROR(b.CopyRows(q + i0 * qd, qd * f, rows, width * f, qd * f, count));
    RETURN_IF_ERROR(b.CopyRows(k + i0 * kd, kd * f, rows + qd, width * f, kd * f, count));
    RETURN_IF_ERROR(b.CopyRows(v + i0 * vd, vd * f, rows + qd + kd, width * f, vd * f, count));
  }
  return absl::OkStatus();
}

absl::Status LlamaModel::GateUp(const Layer& layer, int64_t n, float* act) {
  const int64_t hidden = config_.hidden_size;
  const int64_t ffn = local_ffn_;
  float* xn = xn_->as<float>();
  Backend& b = *backend_;
  if (sequence_parallel_) RETURN_IF_ERROR(NormAllRows(layer.ffn_norm, n, xn));  // as in ProjectQkv
  if (layer.w_gate_up.packed == nullptr) {
    float* up = up_->as<float>();
    RETURN_IF_ERROR(NormMatMul(layer.ffn_norm, 0, n, layer.w_gate, act));
    RETURN_IF_ERROR(b.MatMul(xn, n, hidden, layer.w_up, up));
    b.SiluMul(act, up, n * ffn, act);
    return absl::OkStatus();
  }
  // Row i of the stacked output is [gate_i | up_i].
  float* rows = stacked_->as<float>();
  const int64_t per_call = b.stacked_rows_per_call();
  for (int64_t i0 = 0; i0 < n; i0 += per_call) {
    const int64_t count = std::min(per_call, n - i0);
    RETURN_IF_ERROR(NormMatMul(layer.ffn_norm, i0, count, layer.w_gate_up, rows));
    b.SwiGluRows(rows, count, ffn, act + i0 * ffn);
  }
  return absl::OkStatus();
}

absl::Status LlamaModel::Forward(std::span<const int32_t> tokens, int64_t start_pos,
                                 KvCache& cache, bool all_logits, std::vector<float>* logits) {
  const ModelConfig& c = config_;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (logits == nullptr) return absl::InvalidArgumentError("Forward: logits is null");
  if (n == 0) return absl::InvalidArgumentError("Forward: tokens is empty");
  if (!is_whole()) {
    return absl::FailedPreconditionError(
        "Forward: a pipeline stage runs through ForwardPaged (with its StageIo)");
  }
  for (int64_t i = 0; i < n; ++i) {
    const int32_t t = tokens[static_cast<size_t>(i)];
    if (t < 0 || t >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("Forward: tokens[", i, "] = ", t,
                                                     " is outside the vocabulary [0, ",
                                                     c.vocab_size, ")"));
    }
  }
  if (cache.num_layers() != c.num_layers || cache.num_kv_heads() != local_kv_heads_ ||
      cache.head_dim() != c.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Forward: KV cache geometry (layers ", cache.num_layers(), ", kv heads ",
        cache.num_kv_heads(), ", head_dim ", cache.head_dim(), ") does not match the model (",
        c.num_layers, ", ", local_kv_heads_, ", ", c.head_dim, ")"));
  }
  if (start_pos < 0 || start_pos > cache.num_tokens()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Forward: start_pos ", start_pos, " must be in [0, cache.num_tokens() = ",
        cache.num_tokens(), "]"));
  }
  if (start_pos + n > cache.max_tokens()) {
    return absl::OutOfRangeError(absl::StrCat(
        "Forward: ", start_pos + n, " tokens (start_pos ", start_pos, " + ", n,
        " new) exceed the KV cache capacity of ", cache.max_tokens(), " tokens"));
  }

  RETURN_IF_ERROR(EnsureScratch(n));
  int32_t* positions = positions_.data();
  for (int64_t i = 0; i < n; ++i) positions[i] = static_cast<int32_t>(start_pos + i);

  float* x = x_->as<float>();
  float* xn = xn_->as<float>();
  RETURN_IF_ERROR(Embed(tokens, x));
  for (int64_t l = 0; l < c.num_layers; ++l) RETURN_IF_ERROR(RunLayer(l, n, start_pos, cache));
  cache.set_num_tokens(start_pos + n);

  const int64_t hidden = c.hidden_size;
  const int64_t rows = all_logits ? n : 1;
  ASSIGN_OR_RETURN(const float* all_rows, FullResidual(n));
  const float* first = all_logits ? all_rows : all_rows + (n - 1) * hidden;
  backend_->RmsNorm(first, output_norm_, rows, hidden, static_cast<float>(c.rms_norm_eps),
                    xn);
  logits->resize(static_cast<size_t>(rows * c.vocab_size));
  return LmHeadToHost(xn, rows, logits->data());
}

}  // namespace tessera
