// The Hugging Face (safetensors + config.json) WeightStore, made to look like the llama.cpp
// conversion of the same checkpoint (see weight_store.h).
#include <cstring>
#include <filesystem>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/aligned_buffer.h"
#include "common/half.h"
#include "common/status_macros.h"
#include "formats/hf_config.h"
#include "formats/hf_tensor_names.h"
#include "formats/safetensors.h"
#include "formats/weight_store.h"

namespace tessera {
namespace {

class HfWeightStore : public WeightStore {
 public:
  static absl::StatusOr<std::unique_ptr<WeightStore>> Open(const std::string& path);

  const ModelConfig& config() const override { return config_; }
  absl::StatusOr<TensorView> Get(std::string_view name) const override {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) {
      return absl::NotFoundError(absl::StrFormat("%s: no tensor '%s'", source_, name));
    }
    return it->second;
  }
  bool Has(std::string_view name) const override { return tensors_.count(name) != 0; }
  std::vector<std::string> TensorNames() const override {
    std::vector<std::string> names;
    for (const auto& [name, view] : tensors_) names.push_back(name);
    return names;
  }
  int64_t TotalBytes() const override {
    int64_t n = 0;
    for (const auto& [name, view] : tensors_) n += view.NumBytes();
    return n;
  }

 private:
  absl::Status Add(const SafetensorsTensor& t, const std::string& gguf_name);
  void* Own(size_t bytes) {
    owned_.emplace_back(bytes);
    return owned_.back().data();
  }

  std::string source_;
  ModelConfig config_;
  std::unique_ptr<SafetensorsCheckpoint> checkpoint_;
  std::vector<AlignedBuffer> owned_;
  std::map<std::string, TensorView, std::less<>> tensors_;
};

absl::Status HfWeightStore::Add(const SafetensorsTensor& t, const std::string& gguf_name) {
  TensorView v = t.view;
  const int64_t elem_bytes = Traits(v.dtype).block_bytes;
  const bool is_q = absl::EndsWith(gguf_name, ".attn_q.weight");
  const bool is_k = absl::EndsWith(gguf_name, ".attn_k.weight");
  if (is_q || is_k) {
    const int64_t heads = is_q ? config_.num_heads : config_.num_kv_heads;
    if (v.rank() != 2 || v.dim(0) != heads * config_.head_dim) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: tensor '%s' has shape [%s]; expected [%d, ...] (%d heads x head_dim %d)", source_,
          t.name, absl::StrJoin(v.shape, ", "), heads * config_.head_dim, heads, config_.head_dim));
    }
    void* dst = Own(static_cast<size_t>(v.NumBytes()));
    PermuteRowsForRope(v.data, dst, v.dim(0), v.RowStrideBytes(), heads);
    v.data = dst;
  } else if (v.rank() == 1 && v.dtype != DType::kF32) {
    // convert_hf_to_gguf.py stores 1-D tensors (norm weights) as F32.
    auto* dst = static_cast<float*>(Own(static_cast<size_t>(v.NumElements()) * sizeof(float)));
    for (int64_t i = 0; i < v.NumElements(); ++i) {
      uint16_t h;
      std::memcpy(&h, static_cast<const uint8_t*>(v.data) + 2 * i, 2);
      dst[i] = v.dtype == DType::kBF16 ? Bf16ToFloat(h) : Fp16ToFloat(h);
    }
    v.dtype = DType::kF32;
    v.data = dst;
  } else if (reinterpret_cast<uintptr_t>(v.data) % static_cast<uintptr_t>(elem_bytes) != 0) {
    // Keep typed reads aligned: the header length decides where the data section begins.
    void* dst = Own(static_cast<size_t>(v.NumBytes()));
    std::memcpy(dst, v.data, static_cast<size_t>(v.NumBytes()));
    v.data = dst;
  }
  if (!tensors_.emplace(gguf_name, std::move(v)).second) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: tensor '%s' maps to '%s', which another tensor already provides", source_, t.name,
        gguf_name));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<WeightStore>> HfWeightStore::Open(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path dir = fs::is_directory(path, ec) ? fs::path(path) : fs::path(path).parent_path();
  auto store = std::unique_ptr<HfWeightStore>(new HfWeightStore());
  store->source_ = path;
  ASSIGN_OR_RETURN(store->config_, ModelConfigFromHfConfigFile((dir / "config.json").string()));
  ASSIGN_OR_RETURN(store->checkpoint_, SafetensorsCheckpoint::Open(path));

  for (const std::string& hf_name : store->checkpoint_->TensorNames()) {
    if (absl::EndsWith(hf_name, ".rotary_emb.inv_freq")) continue;  // recomputed, not weights
    std::optional<std::string> name = GgufNameForHfTensor(hf_name);
    if (!name) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: tensor '%s' is not part of a Llama checkpoint", path, hf_name));
    }
    if (*name == "output.weight" && store->config_.tie_word_embeddings) continue;
    RETURN_IF_ERROR(store->Add(*store->checkpoint_->Find(hf_name), *name));
  }

  ModelConfig& c = store->config_;
  if (c.rope_scaling.type == RopeScalingType::kLlama3) {
    const std::vector<float> factors = Llama3RopeFreqFactors(c);
    void* dst = store->Own(factors.size() * sizeof(float));
    std::memcpy(dst, factors.data(), factors.size() * sizeof(float));
    store->tensors_.emplace("rope_freqs.weight",
                            TensorView{DType::kF32, {static_cast<int64_t>(factors.size())}, dst});
    c.rope_scaling = RopeScaling{};
    c.has_rope_freqs = true;
  }
  if (!c.tie_word_embeddings && !store->Has("output.weight")) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: tie_word_embeddings is false but there is no lm_head.weight", path));
  }
  return std::unique_ptr<WeightStore>(std::move(store));
}

}  // namespace

absl::StatusOr<std::unique_ptr<WeightStore>> OpenHfWeightStore(const std::string& path) {
  return HfWeightStore::Open(path);
}

}  // namespace tessera
