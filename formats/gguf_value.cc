#include "formats/gguf_value.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tessera {

std::string_view GgufTypeName(GgufType type) {
  switch (type) {
    case GgufType::kUint8: return "uint8";
    case GgufType::kInt8: return "int8";
    case GgufType::kUint16: return "uint16";
    case GgufType::kInt16: return "int16";
    case GgufType::kUint32: return "uint32";
    case GgufType::kInt32: return "int32";
    case GgufType::kFloat32: return "float32";
    case GgufType::kBool: return "bool";
    case GgufType::kString: return "string";
    case GgufType::kArray: return "array";
    case GgufType::kUint64: return "uint64";
    case GgufType::kInt64: return "int64";
    case GgufType::kFloat64: return "float64";
  }
  return "invalid";
}

bool IsValidGgufType(uint32_t id) { return id <= static_cast<uint32_t>(GgufType::kFloat64); }

bool IsGgufIntegerType(GgufType type) {
  switch (type) {
    case GgufType::kUint8: case GgufType::kInt8: case GgufType::kUint16: case GgufType::kInt16:
    case GgufType::kUint32: case GgufType::kInt32: case GgufType::kUint64: case GgufType::kInt64:
      return true;
    default:
      return false;
  }
}

bool IsGgufFloatType(GgufType type) {
  return type == GgufType::kFloat32 || type == GgufType::kFloat64;
}

size_t GgufScalarSize(GgufType type) {
  switch (type) {
    case GgufType::kUint8: case GgufType::kInt8: case GgufType::kBool: return 1;
    case GgufType::kUint16: case GgufType::kInt16: return 2;
    case GgufType::kUint32: case GgufType::kInt32: case GgufType::kFloat32: return 4;
    case GgufType::kUint64: case GgufType::kInt64: case GgufType::kFloat64: return 8;
    default: return 0;
  }
}

GgufValue GgufValue::StringArray(const std::vector<std::string>& items) {
  std::vector<GgufValue> values;
  values.reserve(items.size());
  for (const std::string& s : items) values.push_back(String(s));
  return Array(GgufType::kString, std::move(values));
}

GgufValue GgufValue::I32Array(const std::vector<int32_t>& items) {
  std::vector<GgufValue> values;
  values.reserve(items.size());
  for (int32_t v : items) values.push_back(I32(v));
  return Array(GgufType::kInt32, std::move(values));
}

GgufValue GgufValue::F32Array(const std::vector<float>& items) {
  std::vector<GgufValue> values;
  values.reserve(items.size());
  for (float v : items) values.push_back(F32(v));
  return Array(GgufType::kFloat32, std::move(values));
}

std::string GgufValue::DebugString(size_t max_items) const {
  constexpr size_t kMaxStringChars = 64;
  if (const auto* a = std::get_if<GgufArray>(&value)) {
    std::string out = "[";
    for (size_t i = 0; i < a->items.size() && i < max_items; ++i) {
      if (i > 0) out += ", ";
      out += a->items[i].DebugString(max_items);
    }
    if (a->items.size() > max_items) {
      absl::StrAppend(&out, a->items.empty() ? "" : ", ", "... (", a->items.size(), " ",
                      std::string(GgufTypeName(a->element_type)), " items)");
    }
    return out + "]";
  }
  if (const auto* s = std::get_if<std::string>(&value)) {
    if (s->size() <= kMaxStringChars) return absl::StrFormat("\"%s\"", absl::CEscape(*s));
    return absl::StrFormat("\"%s\"... (%d bytes)", absl::CEscape(s->substr(0, kMaxStringChars)),
                           s->size());
  }
  if (const auto* b = std::get_if<bool>(&value)) return *b ? "true" : "false";
  if (const auto* i = std::get_if<int64_t>(&value)) return absl::StrCat(*i);
  if (const auto* u = std::get_if<uint64_t>(&value)) return absl::StrCat(*u);
  return absl::StrFormat("%g", std::get<double>(value));
}

}  // namespace tessera
