// OpenWeightStore's format dispatch and the GGUF-backed store.
#include "formats/weight_store.h"

#include <filesystem>
#include <fstream>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "formats/gguf_reader.h"

namespace tessera {
namespace {

// Views straight into the GGUF mapping, names as in the file.
class GgufWeightStore : public WeightStore {
 public:
  GgufWeightStore(std::unique_ptr<GgufFile> file, ModelConfig config)
      : file_(std::move(file)), config_(std::move(config)) {}

  const ModelConfig& config() const override { return config_; }
  absl::StatusOr<TensorView> Get(std::string_view name) const override {
    const GgufTensorInfo* t = file_->FindTensor(name);
    if (t == nullptr) {
      return absl::NotFoundError(absl::StrFormat("%s: no tensor '%s'", file_->path(), name));
    }
    return t->view;
  }
  bool Has(std::string_view name) const override { return file_->FindTensor(name) != nullptr; }
  std::vector<std::string> TensorNames() const override {
    std::vector<std::string> names;
    names.reserve(file_->tensors().size());
    for (const GgufTensorInfo& t : file_->tensors()) names.push_back(t.name);
    return names;
  }
  const GgufFile* gguf() const override { return file_.get(); }
  void ReleasePages(const TensorView& view) const override {
    if (view.Rows() == 0) return;
    const uint8_t* first = view.RowPtr(0);
    const uint8_t* end = view.RowPtr(view.Rows() - 1) + view.RowBytes();
    file_->ReleasePages(first, static_cast<size_t>(end - first));
  }
  int64_t TotalBytes() const override {
    int64_t n = 0;
    for (const GgufTensorInfo& t : file_->tensors()) n += t.num_bytes;
    return n;
  }

 private:
  std::unique_ptr<GgufFile> file_;
  ModelConfig config_;
};

bool StartsWithGgufMagic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in && std::string_view(magic, 4) == "GGUF";
}

}  // namespace

absl::StatusOr<std::unique_ptr<WeightStore>> OpenGgufWeightStore(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
  ASSIGN_OR_RETURN(ModelConfig config, ModelConfigFromGguf(*file));
  return std::unique_ptr<WeightStore>(new GgufWeightStore(std::move(file), std::move(config)));
}

absl::StatusOr<std::unique_ptr<WeightStore>> OpenWeightStore(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    return absl::NotFoundError(absl::StrFormat("no such file or directory: %s", path));
  }
  if (fs::is_directory(path, ec)) return OpenHfWeightStore(path);
  // Sniffing the magic of a FIFO or device would block or read forever.
  if (!fs::is_regular_file(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: not a regular file or a model directory", path));
  }
  if (absl::EndsWith(path, ".gguf") || StartsWithGgufMagic(path)) return OpenGgufWeightStore(path);
  if (absl::EndsWith(path, ".safetensors") || absl::EndsWith(path, ".json")) {
    return OpenHfWeightStore(path);
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "%s: not a GGUF file, a .safetensors file or a model directory", path));
}

}  // namespace tessera
