#include "formats/gguf_reader.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace tessera {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxDims = 4;
constexpr int kMaxArrayDepth = 8;  // nested arrays; llama.cpp itself never nests
// Smallest on-disk sizes, used to reject counts that cannot fit in the remaining bytes
// before anything is reserved.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;          // key length, type, one-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;  // name length, n_dims, type, offset

static_assert(std::endian::native == std::endian::little, "GGUF reader assumes little-endian");

// Bounds-checked little-endian reads over [data, data + size). Every failure names the
// file and the field being read.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* data, size_t size)
      : path_(path), data_(data), size_(size) {}

  size_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  absl::Status Error(std::string_view field, std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: GGUF %s: %s (at byte %d)", path_, field, what, pos_));
  }

  template <typename T>
  absl::StatusOr<T> Read(std::string_view field) {
    if (remaining() < sizeof(T)) {
      return Error(field, absl::StrFormat("truncated: need %d bytes, %d left", sizeof(T),
                                          remaining()));
    }
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  absl::StatusOr<std::string> ReadString(std::string_view field) {
    ASSIGN_OR_RETURN(const uint64_t len, Read<uint64_t>(field));
    if (len > remaining()) {
      return Error(field, absl::StrFormat("string length %d exceeds the %d bytes left", len,
                                          remaining()));
    }
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

 private:
  const std::string& path_;
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

uint64_t MinEncodedSize(GgufType type) {
  if (type == GgufType::kString) return 8;
  if (type == GgufType::kArray) return 4 + 8;
  return GgufScalarSize(type);
}

absl::StatusOr<GgufValue> ReadValue(Cursor& c, GgufType type, const std::string& field,
                                    int depth);

absl::StatusOr<GgufValue> ReadArray(Cursor& c, const std::string& field, int depth) {
  if (depth >= kMaxArrayDepth) {
    return c.Error(field, absl::StrFormat("arrays nested deeper than %d", kMaxArrayDepth));
  }
  ASSIGN_OR_RETURN(const uint32_t elem_id, c.Read<uint32_t>(field));
  if (!IsValidGgufType(elem_id)) {
    return c.Error(field, absl::StrFormat("unknown array element type %d", elem_id));
  }
  const GgufType elem = static_cast<GgufType>(elem_id);
  ASSIGN_OR_RETURN(const uint64_t n, c.Read<uint64_t>(field));
  if (n > c.remaining() / MinEncodedSize(elem)) {
    return c.Error(field, absl::StrFormat("array of %d %s items cannot fit in the %d bytes left",
                                          n, GgufTypeName(elem), c.remaining()));
  }
  GgufArray array;
  array.element_type = elem;
  array.items.reserve(static_cast<size_t>(n));
  for (uint64_t i = 0; i < n; ++i) {
    ASSIGN_OR_RETURN(GgufValue item,
                     ReadValue(c, elem, absl::StrFormat("%s[%d]", field, i), depth + 1));
    array.items.push_back(std::move(item));
  }
  return GgufValue{GgufType::kArray, std::move(array)};
}

absl::StatusOr<GgufValue> ReadValue(Cursor& c, GgufType type, const std::string& field,
                                    int depth) {
  switch (type) {
    case GgufType::kUint8: { ASSIGN_OR_RETURN(auto v, c.Read<uint8_t>(field)); return GgufValue::U8(v); }
    case GgufType::kInt8: { ASSIGN_OR_RETURN(auto v, c.Read<int8_t>(field)); return GgufValue::I8(v); }
    case GgufType::kUint16: { ASSIGN_OR_RETURN(auto v, c.Read<uint16_t>(field)); return GgufValue::U16(v); }
    case GgufType::kInt16: { ASSIGN_OR_RETURN(auto v, c.Read<int16_t>(field)); return GgufValue::I16(v); }
    case GgufType::kUint32: { ASSIGN_OR_RETURN(auto v, c.Read<uint32_t>(field)); return GgufValue::U32(v); }
    case GgufType::kInt32: { ASSIGN_OR_RETURN(auto v, c.Read<int32_t>(field)); return GgufValue::I32(v); }
    case GgufType::kUint64: { ASSIGN_OR_RETURN(auto v, c.Read<uint64_t>(field)); return GgufValue::U64(v); }
    case GgufType::kInt64: { ASSIGN_OR_RETURN(auto v, c.Read<int64_t>(field)); return GgufValue::I64(v); }
    case GgufType::kFloat32: { ASSIGN_OR_RETURN(auto v, c.Read<float>(field)); return GgufValue::F32(v); }
    case GgufType::kFloat64: { ASSIGN_OR_RETURN(auto v, c.Read<double>(field)); return GgufValue::F64(v); }
    case GgufType::kBool: {
      ASSIGN_OR_RETURN(const uint8_t v, c.Read<uint8_t>(field));
      if (v > 1) return c.Error(field, absl::StrFormat("bool value %d is not 0 or 1", v));
      return GgufValue::Bool(v != 0);
    }
    case GgufType::kString: { ASSIGN_OR_RETURN(auto v, c.ReadString(field)); return GgufValue::String(std::move(v)); }
    case GgufType::kArray:
      return ReadArray(c, field, depth);
  }
  return c.Error(field, "unknown value type");
}

absl::StatusOr<uint64_t> AlignmentFrom(const GgufValue& v, Cursor& c) {
  const std::string field = "metadata key 'general.alignment'";
  uint64_t a = 0;
  if (const auto* u = std::get_if<uint64_t>(&v.value)) {
    a = *u;
  } else if (const auto* i = std::get_if<int64_t>(&v.value); i != nullptr && *i > 0) {
    a = static_cast<uint64_t>(*i);
  } else if (!IsGgufIntegerType(v.type)) {
    return c.Error(field, absl::StrFormat("has type %s, expected an integer", GgufTypeName(v.type)));
  }
  if (a == 0 || (a & (a - 1)) != 0) {
    return c.Error(field, absl::StrFormat("alignment %s is not a nonzero power of two",
                                          v.DebugString()));
  }
  return a;
}

absl::StatusOr<GgufTensorInfo> ReadTensorInfo(Cursor& c, uint64_t index, uint64_t alignment) {
  const std::string idx_field = absl::StrFormat("tensor #%d name", index);
  ASSIGN_OR_RETURN(std::string name, c.ReadString(idx_field));
  const std::string field = absl::StrFormat("tensor '%s'", name);
  ASSIGN_OR_RETURN(const uint32_t n_dims, c.Read<uint32_t>(field + " n_dims"));
  if (n_dims > kMaxDims) {
    return c.Error(field, absl::StrFormat("n_dims %d exceeds %d", n_dims, kMaxDims));
  }
  GgufTensorInfo info;
  info.name = std::move(name);
  int64_t elems = 1;
  // The product of the non-zero dims must fit too: code that multiplies the shape in
  // another order (TensorView::NumElements) meets the zero last.
  int64_t nonzero = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    ASSIGN_OR_RETURN(const int64_t ne, c.Read<int64_t>(absl::StrFormat("%s ne[%d]", field, d)));
    if (ne < 0) return c.Error(field, absl::StrFormat("ne[%d] = %d is negative", d, ne));
    if (ne != 0 && nonzero > std::numeric_limits<int64_t>::max() / ne) {
      return c.Error(field, "element count overflows int64");
    }
    if (ne != 0) nonzero *= ne;
    elems *= ne;
    info.ne.push_back(ne);
  }
  ASSIGN_OR_RETURN(const uint32_t type_id, c.Read<uint32_t>(field + " type"));
  const std::optional<DType> dtype = DTypeFromGgmlId(type_id);
  if (!dtype) {
    return c.Error(field, absl::StrFormat("unsupported tensor type %d for tensor '%s'", type_id,
                                          info.name));
  }
  info.dtype = *dtype;
  ASSIGN_OR_RETURN(info.offset, c.Read<uint64_t>(field + " offset"));
  if (info.offset % alignment != 0) {
    return c.Error(field, absl::StrFormat("offset %d is not a multiple of the alignment %d",
                                          info.offset, alignment));
  }
  const DTypeTraits& t = Traits(info.dtype);
  const int64_t ne0 = info.ne.empty() ? 1 : info.ne[0];
  if (ne0 % t.block_elems != 0) {
    return c.Error(field, absl::StrFormat("ne[0] = %d is not a multiple of the %s block size %d",
                                          ne0, t.name, t.block_elems));
  }
  // As for the element count, the byte size of the non-zero dims must fit too: a zero
  // dim makes the tensor empty, but TensorView::RowBytes still multiplies ne[0] out.
  const int64_t blocks = elems / t.block_elems;
  if (nonzero / t.block_elems > std::numeric_limits<int64_t>::max() / t.block_bytes) {
    return c.Error(field, "byte size overflows int64");
  }
  info.num_bytes = blocks * t.block_bytes;
  info.view.dtype = info.dtype;
  info.view.shape.assign(info.ne.rbegin(), info.ne.rend());
  return info;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapping, MappedFile::Open(path));
  ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file,
                   Parse(path, mapping->data(), mapping->size()));
  file->mapping_ = std::move(mapping);
  return file;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(std::string name, const uint8_t* data,
                                                          size_t size) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = std::move(name);
  Cursor c(file->path_, data, size);

  ASSIGN_OR_RETURN(const uint32_t magic, c.Read<uint32_t>("magic"));
  if (magic != kGgufMagic) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: GGUF magic: not a GGUF file (first bytes 0x%08x, expected \"GGUF\")", file->path_,
        magic));
  }
  ASSIGN_OR_RETURN(file->version_, c.Read<uint32_t>("version"));
  if (file->version_ != 2 && file->version_ != 3) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: GGUF version: unsupported GGUF version %d (2 and 3 are supported)", file->path_,
        file->version_));
  }
  ASSIGN_OR_RETURN(const uint64_t n_tensors, c.Read<uint64_t>("tensor_count"));
  ASSIGN_OR_RETURN(const uint64_t n_kv, c.Read<uint64_t>("metadata_kv_count"));
  if (n_tensors > c.remaining() / kMinTensorInfoBytes) {
    return c.Error("tensor_count", absl::StrFormat("%d tensors cannot fit in the %d bytes left",
                                                   n_tensors, c.remaining()));
  }
  if (n_kv > c.remaining() / kMinKvBytes) {
    return c.Error("metadata_kv_count", absl::StrFormat(
        "%d key-value pairs cannot fit in the %d bytes left", n_kv, c.remaining()));
  }

  file->metadata_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    ASSIGN_OR_RETURN(std::string key, c.ReadString(absl::StrFormat("metadata key #%d", i)));
    const std::string field = absl::StrFormat("metadata key '%s'", key);
    if (file->metadata_index_.count(key) != 0) return c.Error(field, "duplicate key");
    ASSIGN_OR_RETURN(const uint32_t type_id, c.Read<uint32_t>(field + " type"));
    if (!IsValidGgufType(type_id)) {
      return c.Error(field, absl::StrFormat("unknown value type %d", type_id));
    }
    ASSIGN_OR_RETURN(GgufValue value, ReadValue(c, static_cast<GgufType>(type_id), field, 0));
    if (key == "general.alignment") {
      ASSIGN_OR_RETURN(file->alignment_, AlignmentFrom(value, c));
    }
    file->metadata_index_.emplace(key, file->metadata_.size());
    file->metadata_.emplace_back(std::move(key), std::move(value));
  }

  file->tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    ASSIGN_OR_RETURN(GgufTensorInfo info, ReadTensorInfo(c, i, file->alignment_));
    if (file->tensor_index_.count(info.name) != 0) {
      return c.Error(absl::StrFormat("tensor '%s'", info.name), "duplicate tensor name");
    }
    file->tensor_index_.emplace(info.name, file->tensors_.size());
    file->tensors_.push_back(std::move(info));
  }

  // The data section starts at the next multiple of the alignment; it may be absent when
  // there are no tensors.
  const uint64_t pos = c.pos();
  const uint64_t pad = (file->alignment_ - pos % file->alignment_) % file->alignment_;
  file->data_offset_ = pos + pad;
  for (GgufTensorInfo& t : file->tensors_) {
    const uint64_t available = size >= file->data_offset_ ? size - file->data_offset_ : 0;
    if (t.offset > available || static_cast<uint64_t>(t.num_bytes) > available - t.offset) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: GGUF tensor '%s': %d bytes at data offset %d lie outside the file (data section "
          "at byte %d, file size %d)",
          file->path_, t.name, t.num_bytes, t.offset, file->data_offset_, size));
    }
    // A zero-byte tensor may sit at or past the end of the file (no data section at all);
    // clamp so that its pointer stays within [data, data + size] and is never formed
    // out of bounds. For every other tensor the check above makes this the identity.
    t.view.data = data + std::min<uint64_t>(file->data_offset_ + t.offset, size);
  }
  return file;
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace tessera
