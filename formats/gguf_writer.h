// Builds a GGUF v3 (or v2) file in memory or on disk: metadata in insertion order, then the
// tensor table, then the tensor data, each tensor's bytes at a multiple of the alignment.
// The writer copies every value and tensor byte it is given. Not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "formats/gguf_value.h"

namespace tessera {

class GgufWriter {
 public:
  // `alignment` must be a nonzero power of two; a value other than GGUF's default 32 is
  // also written as the `general.alignment` (uint32) key.
  explicit GgufWriter(uint32_t alignment = 32) : alignment_(alignment) {}

  // GGUF version written in the header (2 or 3; the layout is the same). For tests.
  void set_version(uint32_t version) { version_ = version; }
  uint32_t alignment() const { return alignment_; }

  // Adds one metadata key; INVALID_ARGUMENT if the key was already added or an array's
  // items do not all have its element type.
  [[nodiscard]] absl::Status AddValue(std::string key, GgufValue value);
  [[nodiscard]] absl::Status AddString(std::string key, std::string value) {
    return AddValue(std::move(key), GgufValue::String(std::move(value)));
  }
  [[nodiscard]] absl::Status AddUint32(std::string key, uint32_t value) {
    return AddValue(std::move(key), GgufValue::U32(value));
  }
  [[nodiscard]] absl::Status AddFloat32(std::string key, float value) {
    return AddValue(std::move(key), GgufValue::F32(value));
  }
  [[nodiscard]] absl::Status AddBool(std::string key, bool value) {
    return AddValue(std::move(key), GgufValue::Bool(value));
  }
  [[nodiscard]] absl::Status AddStringArray(std::string key,
                                            const std::vector<std::string>& items) {
    return AddValue(std::move(key), GgufValue::StringArray(items));
  }

  // Adds a tensor from `ne` in GGML order (ne[0] innermost, as stored in GGUF files);
  // `bytes` must hold exactly the tensor's size and ne[0] must be a multiple of the block.
  [[nodiscard]] absl::Status AddTensor(std::string name, DType dtype, std::vector<int64_t> ne,
                                       const void* bytes, size_t num_bytes);
  // Same, from a row-major shape (outermost first, as TensorView::shape), i.e. ne reversed.
  [[nodiscard]] absl::Status AddTensorRowMajor(std::string name, DType dtype,
                                               const std::vector<int64_t>& shape,
                                               const void* bytes, size_t num_bytes);

  // The complete file image. INVALID_ARGUMENT when the alignment is not a nonzero power of
  // two, or when an added `general.alignment` key disagrees with it.
  absl::StatusOr<std::string> Serialize() const;
  // Writes the image to `path` (INTERNAL naming the path on I/O failure).
  [[nodiscard]] absl::Status WriteFile(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    DType dtype;
    std::vector<int64_t> ne;
    std::string bytes;
  };

  uint32_t alignment_;
  uint32_t version_ = 3;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace tessera
