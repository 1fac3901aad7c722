#include "formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace tessera {
namespace {

using nlohmann::json;

// The safetensors reference implementation refuses headers above 100 MB.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr size_t kMaxRank = 8;
// Bracket nesting allowed in the header JSON (a valid header needs 3).
constexpr int kMaxJsonDepth = 16;

absl::Status Bad(const std::string& path, std::string_view field, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrFormat("%s: safetensors %s %s", path, field, why));
}

std::optional<DType> DTypeFromSafetensors(const std::string& s) {
  if (s == "F32") return DType::kF32;
  if (s == "F16") return DType::kF16;
  if (s == "BF16") return DType::kBF16;
  return std::nullopt;
}

// Rejects deeply nested JSON before handing it to the (recursive) parser.
bool NestingWithin(const char* p, size_t n, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < n; ++i) {
    const char ch = p[i];
    if (in_string) {
      if (ch == '\\') ++i;
      else if (ch == '"') in_string = false;
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '{' || ch == '[') {
      if (++depth > max_depth) return false;
    } else if (ch == '}' || ch == ']') {
      --depth;
    }
  }
  return true;
}

absl::StatusOr<uint64_t> NonNegativeInt(const json& v, const std::string& path,
                                        const std::string& field) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  return Bad(path, field, absl::StrFormat("must be a non-negative integer (is %s)", v.dump()));
}

absl::StatusOr<SafetensorsTensor> ParseEntry(const std::string& path, const std::string& name,
                                             const json& e, uint64_t data_size) {
  const std::string field = absl::StrFormat("tensor '%s'", name);
  if (!e.is_object()) return Bad(path, field, "must be an object");
  if (!e.contains("dtype") || !e["dtype"].is_string()) {
    return Bad(path, field, "has no string \"dtype\"");
  }
  const std::string dtype_name = e["dtype"].get<std::string>();
  const std::optional<DType> dtype = DTypeFromSafetensors(dtype_name);
  if (!dtype) {
    return Bad(path, field, absl::StrFormat("has unsupported dtype %s (F32, F16, BF16 are)",
                                            dtype_name));
  }
  if (!e.contains("shape") || !e["shape"].is_array() || e["shape"].size() > kMaxRank) {
    return Bad(path, field, absl::StrFormat("\"shape\" must be an array of at most %d dims",
                                            kMaxRank));
  }
  SafetensorsTensor t;
  t.name = name;
  t.view.dtype = *dtype;
  uint64_t elems = 1;
  for (const json& d : e["shape"]) {
    ASSIGN_OR_RETURN(const uint64_t dim, NonNegativeInt(d, path, field + " shape"));
    if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        (dim != 0 && elems > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / 8 / dim)) {
      return Bad(path, field, "shape overflows");
    }
    elems *= dim;
    t.view.shape.push_back(static_cast<int64_t>(dim));
  }
  if (!e.contains("data_offsets") || !e["data_offsets"].is_array() ||
      e["data_offsets"].size() != 2) {
    return Bad(path, field, "\"data_offsets\" must be [begin, end]");
  }
  ASSIGN_OR_RETURN(t.begin, NonNegativeInt(e["data_offsets"][0], path, field + " data_offsets"));
  ASSIGN_OR_RETURN(t.end, NonNegativeInt(e["data_offsets"][1], path, field + " data_offsets"));
  if (t.begin > t.end || t.end > data_size) {
    return Bad(path, field, absl::StrFormat(
        "data_offsets [%d, %d] lie outside the %d-byte data section", t.begin, t.end, data_size));
  }
  const uint64_t expected = elems * static_cast<uint64_t>(Traits(*dtype).block_bytes);
  if (t.end - t.begin != expected) {
    return Bad(path, field, absl::StrFormat(
        "data_offsets span %d bytes but shape %s of %s needs %d", t.end - t.begin,
        t.view.ShapeString(), dtype_name, expected));
  }
  return t;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapping, MappedFile::Open(path));
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                   Parse(path, mapping->data(), mapping->size()));
  file->mapping_ = std::move(mapping);
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Parse(std::string name,
                                                                        const uint8_t* data,
                                                                        size_t size) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = std::move(name);
  const std::string& path = file->path_;
  if (size < 8) return Bad(path, "header length", absl::StrFormat("truncated: file has %d bytes", size));
  uint64_t header_len;
  std::memcpy(&header_len, data, 8);
  if (header_len > kMaxHeaderBytes || header_len > size - 8) {
    return Bad(path, "header length", absl::StrFormat(
        "%d is larger than the file (%d bytes) or the 100 MB limit", header_len, size));
  }
  const char* header = reinterpret_cast<const char*>(data + 8);
  if (!NestingWithin(header, header_len, kMaxJsonDepth)) {
    return Bad(path, "header", "JSON nests too deeply");
  }
  const json j = json::parse(header, header + header_len, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad(path, "header", "is not valid JSON");
  if (!j.is_object()) return Bad(path, "header", "is not a JSON object");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) return Bad(path, "__metadata__", "must be an object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string()) {
          return Bad(path, absl::StrFormat("__metadata__ '%s'", m.key()), "must be a string");
        }
        file->metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    ASSIGN_OR_RETURN(SafetensorsTensor t, ParseEntry(path, it.key(), it.value(), data_size));
    t.view.data = data + data_start + t.begin;
    file->tensors_.push_back(std::move(t));
  }
  // nlohmann's object keeps keys sorted and unique (a duplicate key keeps the last value).
  return file;
}

const SafetensorsTensor* SafetensorsFile::Find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const SafetensorsTensor& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Open(
    const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string index_path;
  std::vector<std::string> shard_paths;
  if (fs::is_directory(path, ec)) {
    const fs::path dir(path);
    if (fs::is_regular_file(dir / "model.safetensors.index.json", ec)) {
      index_path = (dir / "model.safetensors.index.json").string();
    } else if (fs::is_regular_file(dir / "model.safetensors", ec)) {
      shard_paths.push_back((dir / "model.safetensors").string());
    } else {
      return absl::NotFoundError(absl::StrFormat(
          "%s: neither model.safetensors nor model.safetensors.index.json is there", path));
    }
  } else if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0) {
    index_path = path;
  } else {
    shard_paths.push_back(path);
  }

  auto ckpt = std::unique_ptr<SafetensorsCheckpoint>(new SafetensorsCheckpoint());
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name
  if (!index_path.empty()) {
    std::ifstream in(index_path);
    if (!in) return absl::NotFoundError(absl::StrFormat("cannot open %s", index_path));
    const json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError(absl::StrFormat("%s: not a JSON object", index_path));
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: field 'weight_map' must be an object", index_path));
    }
    std::map<std::string, int> shard_ids;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      const std::string& shard = it.value().is_string() ? it.value().get_ref<const std::string&>()
                                                        : std::string();
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: weight_map '%s' must name a shard file in the same directory", index_path,
            it.key()));
      }
      weight_map[it.key()] = shard;
      if (shard_ids.emplace(shard, static_cast<int>(shard_ids.size())).second) {
        shard_paths.push_back((fs::path(index_path).parent_path() / shard).string());
      }
    }
  }
  std::map<std::string, const SafetensorsFile*> shard_by_name;
  for (const std::string& p : shard_paths) {
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> shard, SafetensorsFile::Open(p));
    for (const SafetensorsTensor& t : shard->tensors()) {
      auto [it, inserted] = ckpt->index_.emplace(t.name, &t);
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: safetensors tensor '%s' is in more than one shard", p, t.name));
      }
    }
    shard_by_name[fs::path(p).filename().string()] = shard.get();
    ckpt->shards_.push_back(std::move(shard));
  }
  for (const auto& [tensor, shard] : weight_map) {
    if (shard_by_name.at(shard)->Find(tensor) == nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: weight_map tensor '%s' is not in shard %s", index_path, tensor, shard));
    }
  }
  return ckpt;
}

const SafetensorsTensor* SafetensorsCheckpoint::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::vector<std::string> SafetensorsCheckpoint::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(index_.size());
  for (const auto& [name, t] : index_) names.push_back(name);
  return names;
}

}  // namespace tessera
