// Where a model's weights come from: a GGUF file or a Hugging Face safetensors checkpoint,
// seen through one interface with llama.cpp's tensor names ("token_embd.weight",
// "blk.0.attn_q.weight", ...). Tensors keep their stored dtype; views stay valid for the
// lifetime of the store. Q and K projection rows of HF checkpoints are permuted on load to
// GGUF's rotary layout (adjacent pairs), so the model has one RoPE convention.
// An HF checkpoint is made to look like its llama.cpp conversion in three more ways:
// 1-D tensors (norm weights) are converted to F32 as convert_hf_to_gguf.py stores them,
// lm_head.weight is dropped when tie_word_embeddings is set, and Llama-3 rope scaling is
// turned into a `rope_freqs.weight` tensor (see model_config.h). Other HF tensors keep their
// dtype (F32, F16, BF16) and are views into the mapping unless they were unaligned.
// A WeightStore is immutable after opening; any thread may read it.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "formats/model_config.h"

namespace tessera {

class GgufFile;

class WeightStore {
 public:
  virtual ~WeightStore() = default;
  virtual const ModelConfig& config() const = 0;
  // The tensor named `name` (llama.cpp naming); NOT_FOUND naming the file and tensor.
  virtual absl::StatusOr<TensorView> Get(std::string_view name) const = 0;
  virtual bool Has(std::string_view name) const = 0;
  virtual std::vector<std::string> TensorNames() const = 0;
  // The GGUF file, when the weights came from one (the tokenizer reads its vocabulary).
  virtual const GgufFile* gguf() const { return nullptr; }
  // Total bytes of weights, for progress and memory reports.
  virtual int64_t TotalBytes() const = 0;
  // Says that the bytes under `view` (a tensor of this store, or a slice of one) are not
  // needed for now: a file-mapped store drops their pages from this process's resident set
  // (they are read from the file again if anyone reads them); other stores ignore it.
  virtual void ReleasePages(const TensorView& view) const {}
};

// Opens a .gguf file, a .safetensors file, or a directory holding config.json with
// model.safetensors or model.safetensors.index.json.
// The format is chosen by: a directory -> HF; a name ending in .gguf or a file starting with
// "GGUF" -> GGUF; .safetensors or .json -> HF with config.json in the same directory.
absl::StatusOr<std::unique_ptr<WeightStore>> OpenWeightStore(const std::string& path);

// Store implementations, for callers that know the format.
absl::StatusOr<std::unique_ptr<WeightStore>> OpenGgufWeightStore(const std::string& path);
// `path`: an HF model directory, or a .safetensors / index .json inside one.
absl::StatusOr<std::unique_ptr<WeightStore>> OpenHfWeightStore(const std::string& path);

}  // namespace tessera
