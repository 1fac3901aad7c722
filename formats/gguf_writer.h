// Builds a GGUF v3 (or v2) file in memory or on disk: metadata in insertion order, then the
// tensor table, then the tensor data, each tensor's bytes at a multiple of the alignment.
// The writer copies every value and tensor byte it is given, except for deferred tensors
// (AddDeferredTensor), whose bytes a callback produces while WriteFile streams them to disk,
// so that a file larger than memory can be written. Not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
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

  // Produces rows [first_row, first_row + num_rows) of a deferred tensor into `dst`
  // (num_rows * RowBytes(dtype, ne[0]) bytes). A row is ne[0] elements; a tensor has
  // (elements / ne[0]) rows. Called on the thread that runs WriteFile, rows in order, each
  // row once; an error aborts the write.
  using RowFiller =
      std::function<absl::Status(int64_t first_row, int64_t num_rows, void* dst)>;
  // Adds a tensor whose bytes `fill` produces during WriteFile, at most a few tens of MiB
  // at a time (checks as AddTensor). Serialize() refuses a writer that holds one.
  [[nodiscard]] absl::Status AddDeferredTensor(std::string name, DType dtype,
                                               std::vector<int64_t> ne, RowFiller fill);
  [[nodiscard]] absl::Status AddDeferredTensorRowMajor(std::string name, DType dtype,
                                                       const std::vector<int64_t>& shape,
                                                       RowFiller fill);

  // The complete file image. INVALID_ARGUMENT when the alignment is not a nonzero power of
  // two, when an added `general.alignment` key disagrees with it, or when a tensor is
  // deferred.
  absl::StatusOr<std::string> Serialize() const;
  // Called by WriteFile after each piece of tensor data: bytes of tensor data written so
  // far, and their total.
  using WriteProgress = std::function<void(int64_t done_bytes, int64_t total_bytes)>;
  // Writes the file to `path`, streaming the tensor data (deferred tensors are filled while
  // the previous piece is being written). INTERNAL naming the path on I/O failure; a
  // filler's error is returned as is. A failed write leaves a partial file behind.
  [[nodiscard]] absl::Status WriteFile(const std::string& path,
                                       const WriteProgress& progress = nullptr) const;

 private:
  struct Tensor {
    std::string name;
    DType dtype;
    std::vector<int64_t> ne;
    int64_t num_bytes = 0;
    std::string bytes;  // empty when `fill` is set
    RowFiller fill;
  };

  // Checks a new tensor (name unique, dims, block multiple) and returns its byte size.
  absl::StatusOr<int64_t> CheckTensor(const std::string& name, DType dtype,
                                      const std::vector<int64_t>& ne) const;
  // The header, metadata and tensor table, padded to the alignment (the data section's
  // start); offsets[i] is tensor i's offset in the data section.
  absl::StatusOr<std::string> SerializeHeader(std::vector<uint64_t>* offsets) const;

  uint32_t alignment_;
  uint32_t version_ = 3;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace tessera
