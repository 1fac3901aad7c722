#include "formats/gguf_writer.h"

#include <cstring>
#include <fstream>
#include <limits>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace tessera {
namespace {

template <typename T>
void Put(std::string& out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out.append(buf, sizeof(T));
}

void PutString(std::string& out, const std::string& s) {
  Put<uint64_t>(out, s.size());
  out += s;
}

absl::Status CheckValue(const std::string& key, const GgufValue& v) {
  if (const auto* a = std::get_if<GgufArray>(&v.value)) {
    if (v.type != GgufType::kArray) {
      return absl::InvalidArgumentError(absl::StrFormat("GGUF key '%s': array value with type %s",
                                                        key, GgufTypeName(v.type)));
    }
    for (const GgufValue& item : a->items) {
      if (item.type != a->element_type) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "GGUF key '%s': array of %s holds a %s item", key, GgufTypeName(a->element_type),
            GgufTypeName(item.type)));
      }
      RETURN_IF_ERROR(CheckValue(key, item));
    }
    return absl::OkStatus();
  }
  // The variant alternative must be the one the type's reader produces.
  bool ok = false;
  switch (v.type) {
    case GgufType::kUint8: case GgufType::kUint16: case GgufType::kUint32: case GgufType::kUint64:
      ok = std::holds_alternative<uint64_t>(v.value);
      break;
    case GgufType::kInt8: case GgufType::kInt16: case GgufType::kInt32: case GgufType::kInt64:
      ok = std::holds_alternative<int64_t>(v.value);
      break;
    case GgufType::kFloat32: case GgufType::kFloat64:
      ok = std::holds_alternative<double>(v.value);
      break;
    case GgufType::kBool: ok = std::holds_alternative<bool>(v.value); break;
    case GgufType::kString: ok = std::holds_alternative<std::string>(v.value); break;
    case GgufType::kArray: ok = false; break;
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GGUF key '%s': value does not hold a %s", key, GgufTypeName(v.type)));
  }
  return absl::OkStatus();
}

void PutValue(std::string& out, const GgufValue& v) {
  switch (v.type) {
    case GgufType::kUint8: Put<uint8_t>(out, std::get<uint64_t>(v.value)); break;
    case GgufType::kInt8: Put<int8_t>(out, std::get<int64_t>(v.value)); break;
    case GgufType::kUint16: Put<uint16_t>(out, std::get<uint64_t>(v.value)); break;
    case GgufType::kInt16: Put<int16_t>(out, std::get<int64_t>(v.value)); break;
    case GgufType::kUint32: Put<uint32_t>(out, std::get<uint64_t>(v.value)); break;
    case GgufType::kInt32: Put<int32_t>(out, std::get<int64_t>(v.value)); break;
    case GgufType::kUint64: Put<uint64_t>(out, std::get<uint64_t>(v.value)); break;
    case GgufType::kInt64: Put<int64_t>(out, std::get<int64_t>(v.value)); break;
    case GgufType::kFloat32: Put<float>(out, static_cast<float>(std::get<double>(v.value))); break;
    case GgufType::kFloat64: Put<double>(out, std::get<double>(v.value)); break;
    case GgufType::kBool: Put<uint8_t>(out, std::get<bool>(v.value) ? 1 : 0); break;
    case GgufType::kString: PutString(out, std::get<std::string>(v.value)); break;
    case GgufType::kArray: {
      const GgufArray& a = std::get<GgufArray>(v.value);
      Put<uint32_t>(out, static_cast<uint32_t>(a.element_type));
      Put<uint64_t>(out, a.items.size());
      for (const GgufValue& item : a.items) PutValue(out, item);
      break;
    }
  }
}

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

absl::Status GgufWriter::AddValue(std::string key, GgufValue value) {
  for (const auto& [k, v] : metadata_) {
    if (k == key) return absl::InvalidArgumentError(absl::StrFormat("GGUF key '%s' added twice", key));
  }
  RETURN_IF_ERROR(CheckValue(key, value));
  metadata_.emplace_back(std::move(key), std::move(value));
  return absl::OkStatus();
}

absl::Status GgufWriter::AddTensor(std::string name, DType dtype, std::vector<int64_t> ne,
                                   const void* bytes, size_t num_bytes) {
  for (const Tensor& t : tensors_) {
    if (t.name == name) {
      return absl::InvalidArgumentError(absl::StrFormat("GGUF tensor '%s' added twice", name));
    }
  }
  if (ne.size() > 4) {
    return absl::InvalidArgumentError(absl::StrFormat("GGUF tensor '%s': %d dims (at most 4)",
                                                      name, ne.size()));
  }
  int64_t elems = 1;
  for (int64_t d : ne) {
    if (d < 0) return absl::InvalidArgumentError(absl::StrFormat("GGUF tensor '%s': negative dim", name));
    if (d != 0 && elems > std::numeric_limits<int64_t>::max() / d) {
      return absl::InvalidArgumentError(
          absl::StrFormat("GGUF tensor '%s': element count overflows int64", name));
    }
    elems *= d;
  }
  const DTypeTraits& t = Traits(dtype);
  const int64_t ne0 = ne.empty() ? 1 : ne[0];
  if (t.block_bytes == 0 || ne0 % t.block_elems != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GGUF tensor '%s': ne[0] = %d is not a multiple of the %s block size", name, ne0, t.name));
  }
  const int64_t blocks = elems / t.block_elems;
  if (blocks > std::numeric_limits<int64_t>::max() / t.block_bytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("GGUF tensor '%s': byte size overflows int64", name));
  }
  const int64_t expected = blocks * t.block_bytes;
  if (static_cast<int64_t>(num_bytes) != expected) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GGUF tensor '%s': %d bytes given, %d expected", name, num_bytes, expected));
  }
  tensors_.push_back(Tensor{std::move(name), dtype, std::move(ne),
                            std::string(static_cast<const char*>(bytes), num_bytes)});
  return absl::OkStatus();
}

absl::Status GgufWriter::AddTensorRowMajor(std::string name, DType dtype,
                                           const std::vector<int64_t>& shape, const void* bytes,
                                           size_t num_bytes) {
  return AddTensor(std::move(name), dtype, std::vector<int64_t>(shape.rbegin(), shape.rend()),
                   bytes, num_bytes);
}

absl::StatusOr<std::string> GgufWriter::Serialize() const {
  if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("GGUF alignment %d is not a nonzero power of two", alignment_));
  }
  bool has_alignment_key = false;
  for (const auto& [k, v] : metadata_) {
    if (k != "general.alignment") continue;
    has_alignment_key = true;
    // Readers lay the data section out by this key, so it must agree with the layout written.
    const auto* u = std::get_if<uint64_t>(&v.value);
    const auto* i = std::get_if<int64_t>(&v.value);
    if (!((u != nullptr && *u == alignment_) || (i != nullptr && *i == alignment_))) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "GGUF key 'general.alignment' = %s disagrees with the writer's alignment %d",
          v.DebugString(), alignment_));
    }
  }
  const bool write_alignment = alignment_ != 32 && !has_alignment_key;

  std::string out;
  Put<uint32_t>(out, 0x46554747);  // "GGUF"
  Put<uint32_t>(out, version_);
  Put<uint64_t>(out, tensors_.size());
  Put<uint64_t>(out, metadata_.size() + (write_alignment ? 1 : 0));
  if (write_alignment) {
    PutString(out, "general.alignment");
    Put<uint32_t>(out, static_cast<uint32_t>(GgufType::kUint32));
    Put<uint32_t>(out, alignment_);
  }
  for (const auto& [k, v] : metadata_) {
    PutString(out, k);
    Put<uint32_t>(out, static_cast<uint32_t>(v.type));
    PutValue(out, v);
  }
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const Tensor& t : tensors_) {
    PutString(out, t.name);
    Put<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) Put<int64_t>(out, d);
    Put<uint32_t>(out, static_cast<uint32_t>(t.dtype));
    Put<uint64_t>(out, offset);
    offsets.push_back(offset);
    offset = AlignUp(offset + t.bytes.size(), alignment_);
  }
  if (!tensors_.empty()) {
    out.resize(AlignUp(out.size(), alignment_), '\0');
    const size_t data_start = out.size();
    for (size_t i = 0; i < tensors_.size(); ++i) {
      out.resize(data_start + offsets[i], '\0');
      out += tensors_[i].bytes;
    }
  }
  return out;
}

absl::Status GgufWriter::WriteFile(const std::string& path) const {
  ASSIGN_OR_RETURN(const std::string image, Serialize());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(image.data(), static_cast<std::streamsize>(image.size()));
  f.close();
  if (!f) return absl::InternalError(absl::StrFormat("cannot write GGUF file %s", path));
  return absl::OkStatus();
}

}  // namespace tessera
