// A read-only memory mapping of a whole file (RAII: unmapped on destruction). The bytes are
// valid for the object's lifetime, even after the file is unlinked; the file must not be
// truncated meanwhile (reads past the new end fault with SIGBUS). Immutable; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace tessera {

class MappedFile {
 public:
  // NOT_FOUND if the file does not exist, INVALID_ARGUMENT if it is not a regular file
  // (directories, FIFOs and devices are refused without blocking),
  // PERMISSION_DENIED / INTERNAL for other OS errors; the message names the path.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops this process's copies of the whole pages inside [p, p + bytes), which must lie in
  // the mapping: they stop counting as resident, and a later read faults them in again from
  // the file. Partial pages at either end are kept. For data already copied elsewhere (a
  // backend's packed weights).
  void ReleasePages(const void* p, size_t bytes) const;

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

}  // namespace tessera
