#include "formats/gguf_writer.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <future>
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

// The most bytes of a deferred tensor produced per filler call.
constexpr int64_t kDeferredPieceBytes = int64_t{32} << 20;

}  // namespace

absl::Status GgufWriter::AddValue(std::string key, GgufValue value) {
  for (const auto& [k, v] : metadata_) {
    if (k == key) return absl::InvalidArgumentError(absl::StrFormat("GGUF key '%s' added twice", key));
  }
  RETURN_IF_ERROR(CheckValue(key, value));
  metadata_.emplace_back(std::move(key), std::move(value));
  return absl::OkStatus();
}

absl::StatusOr<int64_t> GgufWriter::CheckTensor(const std::string& name, DType dtype,
                                                const std::vector<int64_t>& ne) const {
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
  return blocks * t.block_bytes;
}

absl::Status GgufWriter::AddTensor(std::string name, DType dtype, std::vector<int64_t> ne,
                                   const void* bytes, size_t num_bytes) {
  ASSIGN_OR_RETURN(const int64_t expected, CheckTensor(name, dtype, ne));
  if (static_cast<int64_t>(num_bytes) != expected) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GGUF tensor '%s': %d bytes given, %d expected", name, num_bytes, expected));
  }
  tensors_.push_back(Tensor{std::move(name), dtype, std::move(ne), expected,
                            std::string(static_cast<const char*>(bytes), num_bytes), nullptr});
  return absl::OkStatus();
}

absl::Status GgufWriter::AddDeferredTensor(std::string name, DType dtype,
                                           std::vector<int64_t> ne, RowFiller fill) {
  ASSIGN_OR_RETURN(const int64_t num_bytes, CheckTensor(name, dtype, ne));
  if (fill == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("GGUF tensor '%s': deferred without a filler", name));
  }
  tensors_.push_back(Tensor{std::move(name), dtype, std::move(ne), num_bytes, "", std::move(fill)});
  return absl::OkStatus();
}

absl::Status GgufWriter::AddDeferredTensorRowMajor(std::string name, DType dtype,
                                                   const std::vector<int64_t>& shape,
                                                   RowFiller fill) {
  return AddDeferredTensor(std::move(name), dtype,
                           std::vector<int64_t>(shape.rbegin(), shape.rend()), std::move(fill));
}

absl::Status GgufWriter::AddTensorRowMajor(std::string name, DType dtype,
                                           const std::vector<int64_t>& shape, const void* bytes,
                                           size_t num_bytes) {
  return AddTensor(std::move(name), dtype, std::vector<int64_t>(shape.rbegin(), shape.rend()),
                   bytes, num_bytes);
}

absl::StatusOr<std::string> GgufWriter::SerializeHeader(std::vector<uint64_t>* offsets) const {
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
  offsets->clear();
  for (const Tensor& t : tensors_) {
    PutString(out, t.name);
    Put<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) Put<int64_t>(out, d);
    Put<uint32_t>(out, static_cast<uint32_t>(t.dtype));
    Put<uint64_t>(out, offset);
    offsets->push_back(offset);
    offset = AlignUp(offset + static_cast<uint64_t>(t.num_bytes), alignment_);
  }
  if (!tensors_.empty()) out.resize(AlignUp(out.size(), alignment_), '\0');
  return out;
}

absl::StatusOr<std::string> GgufWriter::Serialize() const {
  for (const Tensor& t : tensors_) {
    if (t.fill != nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "GGUF tensor '%s' is deferred: only WriteFile can produce its bytes", t.name));
    }
  }
  std::vector<uint64_t> offsets;
  ASSIGN_OR_RETURN(std::string out, SerializeHeader(&offsets));
  const size_t data_start = out.size();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    out.resize(data_start + offsets[i], '\0');
    out += tensors_[i].bytes;
  }
  return out;
}

absl::Status GgufWriter::WriteFile(const std::string& path, const WriteProgress& progress) const {
  std::vector<uint64_t> offsets;
  ASSIGN_OR_RETURN(const std::string header, SerializeHeader(&offsets));
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  const auto io_error = [&path] {
    return absl::InternalError(absl::StrFormat("cannot write GGUF file %s", path));
  };
  if (!f) return io_error();
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  int64_t total = 0;
  for (const Tensor& t : tensors_) total += t.num_bytes;
  int64_t done = 0;
  uint64_t position = 0;  // within the data section
  // Deferred tensors are filled into one buffer while the other is written by a helper
  // thread, so generation and disk I/O overlap.
  std::string buffers[2];
  int next_buffer = 0;
  std::future<bool> pending;
  const auto finish_pending = [&]() -> bool {
    if (!pending.valid()) return true;
    return pending.get();
  };
  const auto write_async = [&](const char* data, size_t n) {
    pending = std::async(std::launch::async, [&f, data, n] {
      f.write(data, static_cast<std::streamsize>(n));
      return static_cast<bool>(f);
    });
  };
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const Tensor& t = tensors_[i];
    if (position < offsets[i]) {  // alignment padding
      if (!finish_pending()) return io_error();
      const std::string pad(offsets[i] - position, '\0');
      f.write(pad.data(), static_cast<std::streamsize>(pad.size()));
      position = offsets[i];
    }
    if (t.fill == nullptr) {
      if (!finish_pending()) return io_error();
      f.write(t.bytes.data(), static_cast<std::streamsize>(t.bytes.size()));
      done += t.num_bytes;
      if (progress != nullptr) progress(done, total);
    } else {
      int64_t rows = 1;  // elements / ne[0]
      for (size_t d = 1; d < t.ne.size(); ++d) rows *= t.ne[d];
      if (t.num_bytes == 0) rows = 0;
      const int64_t row_bytes = rows == 0 ? 0 : t.num_bytes / rows;
      const int64_t rows_per_piece =
          row_bytes == 0 ? 1 : std::max<int64_t>(1, kDeferredPieceBytes / row_bytes);
      for (int64_t r = 0; r < rows; r += rows_per_piece) {
        const int64_t n = std::min(rows_per_piece, rows - r);
        std::string& buf = buffers[next_buffer];
        next_buffer ^= 1;
        buf.resize(static_cast<size_t>(n * row_bytes));
        RETURN_IF_ERROR(t.fill(r, n, buf.data()));
        if (!finish_pending()) return io_error();
        write_async(buf.data(), buf.size());
        done += n * row_bytes;
        if (progress != nullptr) progress(done, total);
      }
    }
    position += static_cast<uint64_t>(t.num_bytes);
  }
  if (!finish_pending()) return io_error();
  f.close();
  if (!f) return io_error();
  return absl::OkStatus();
}

}  // namespace tessera
