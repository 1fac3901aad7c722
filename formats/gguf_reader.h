// Read-only access to a GGUF v2/v3 file through mmap.
// Open() validates the whole header, metadata and tensor table up front, so that every
// accessor afterwards is bounds-safe: each tensor's bytes lie inside the mapping. Errors are
// INVALID_ARGUMENT with the file and the offending field (Open also passes on MappedFile's
// NOT_FOUND / PERMISSION_DENIED / INTERNAL for a file it cannot map).
// Tensor views and metadata point into / are owned by the GgufFile: they stay valid for its
// lifetime, and the file on disk must not be truncated meanwhile (mmap would SIGBUS).
// A GgufFile is immutable after Open and may be read from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "common/tensor.h"
#include "formats/gguf_value.h"
#include "formats/mapped_file.h"

namespace tessera {

struct GgufTensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> ne;  // GGML order: ne[0] is the innermost (contiguous) dimension
  uint64_t offset = 0;      // relative to the start of the data section
  int64_t num_bytes = 0;
  // Row-major view (outermost first, i.e. ne reversed) of the mapped bytes.
  TensorView view;
};

class GgufFile {
 public:
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Parses an in-memory image (used by the fuzzer and tests); `data` must outlive the result.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Parse(std::string name, const uint8_t* data,
                                                         size_t size);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }

  // Metadata in file order, and lookup by key (nullptr when absent).
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* Find(std::string_view key) const;

  // Typed getters; INVALID_ARGUMENT naming the file and key when missing or ill-typed.
  // Integer getters accept any integer type whose value fits.
  absl::StatusOr<std::string> GetString(std::string_view key) const;
  absl::StatusOr<int64_t> GetInt(std::string_view key) const;
  absl::StatusOr<double> GetFloat(std::string_view key) const;  // any float or int type
  absl::StatusOr<bool> GetBool(std::string_view key) const;
  absl::StatusOr<std::vector<std::string>> GetStringArray(std::string_view key) const;
  absl::StatusOr<std::vector<int64_t>> GetIntArray(std::string_view key) const;
  absl::StatusOr<std::vector<double>> GetFloatArray(std::string_view key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(std::string_view name) const;
  // MappedFile::ReleasePages for bytes of this file's mapping; nothing for a parsed buffer.
  void ReleasePages(const void* p, size_t bytes) const {
    if (mapping_ != nullptr) mapping_->ReleasePages(p, bytes);
  }

 private:
  GgufFile() = default;

  std::string path_;
  std::unique_ptr<MappedFile> mapping_;  // null for Parse()
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::map<std::string, size_t, std::less<>> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace tessera
