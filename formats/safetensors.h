// Read-only access to Hugging Face safetensors files: one file (SafetensorsFile) or a
// sharded checkpoint described by model.safetensors.index.json (SafetensorsCheckpoint).
// Open() validates the whole header up front: header length, JSON shape, dtype (F32, F16,
// BF16; anything else is INVALID_ARGUMENT naming the tensor and the dtype), shape, and
// data_offsets that lie inside the file and match shape x dtype. Afterwards every view is
// in bounds. Views point into the mapping (no alignment promised: the header length decides
// it) and live as long as the object. Immutable after Open; any thread may read.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "formats/mapped_file.h"

namespace tessera {

struct SafetensorsTensor {
  std::string name;
  TensorView view;       // dtype, row-major shape as in the header, data in the mapping
  uint64_t begin = 0;    // data_offsets, relative to the start of the data section
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // Parses an in-memory image (fuzzer, tests); `data` must outlive the result.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Parse(std::string name,
                                                                const uint8_t* data, size_t size);

  const std::string& path() const { return path_; }
  // Tensors sorted by name.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* Find(std::string_view name) const;
  // The optional "__metadata__" string map.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  std::unique_ptr<MappedFile> mapping_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint, single-file or sharded.
class SafetensorsCheckpoint {
 public:
  // `path`: a .safetensors file, a model.safetensors.index.json, or a directory holding
  // either model.safetensors or model.safetensors.index.json. NOT_FOUND naming the path when
  // none is there; INVALID_ARGUMENT for a bad index (naming the index and the tensor or shard)
  // or a tensor present in two shards.
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Open(const std::string& path);

  const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }
  const SafetensorsTensor* Find(std::string_view name) const;
  std::vector<std::string> TensorNames() const;  // sorted

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, const SafetensorsTensor*, std::less<>> index_;
};

}  // namespace tessera
