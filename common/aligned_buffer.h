// An owning, 64-byte aligned, zero-initialized byte buffer (cache-line and AVX-512 friendly).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace tessera {

class AlignedBuffer {
 public:
  static constexpr size_t kAlignment = 64;

  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes) { Resize(bytes); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept {
    if (this != &other) {
      std::free(data_);
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~AlignedBuffer() { std::free(data_); }

  // Discards the contents and holds `bytes` zeroed bytes. With `huge_pages`, a buffer of at
  // least kHugePage bytes is aligned to it and asks the kernel for transparent huge pages
  // (Linux, when enabled as "madvise" or "always"): for large pools read at scattered
  // offsets, such as a paged KV cache, where 4 KiB pages cost a TLB miss per block.
  void Resize(size_t bytes, bool huge_pages = false) {
    std::free(data_);
    data_ = nullptr;
    size_ = 0;
    if (bytes == 0) return;
    const size_t align = huge_pages && bytes >= kHugePage ? kHugePage : kAlignment;
    const size_t rounded = (bytes + align - 1) / align * align;
    data_ = static_cast<std::byte*>(std::aligned_alloc(align, rounded));
    if (data_ == nullptr) throw std::bad_alloc();
    if (align == kHugePage) AdviseHugePages(data_, rounded);
    std::memset(data_, 0, rounded);
    size_ = bytes;
  }
  static constexpr size_t kHugePage = size_t{2} << 20;

  std::byte* data() { return data_; }
  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  template <typename T>
  T* as() { return reinterpret_cast<T*>(data_); }
  template <typename T>
  const T* as() const { return reinterpret_cast<const T*>(data_); }

 private:
  // madvise(MADV_HUGEPAGE): a hint, so failure is ignored.
  static void AdviseHugePages(void* p, size_t bytes);

  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace tessera
