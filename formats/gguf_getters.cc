// GgufFile's typed metadata getters.
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "formats/gguf_reader.h"

namespace tessera {
namespace {

absl::Status WrongType(const std::string& path, std::string_view key, const GgufValue& v,
                       std::string_view expected) {
  std::string got(GgufTypeName(v.type));
  if (const auto* a = std::get_if<GgufArray>(&v.value)) {
    got = absl::StrFormat("array of %s", GgufTypeName(a->element_type));
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "%s: GGUF metadata key '%s' has type %s, expected %s", path, key, got, expected));
}

// The value under `key`; INVALID_ARGUMENT naming the file and key when it is absent.
absl::StatusOr<const GgufValue*> Require(const GgufFile& file, std::string_view key) {
  const GgufValue* v = file.Find(key);
  if (v == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: GGUF metadata key '%s' is missing", file.path(), key));
  }
  return v;
}

// Integer value of `v` if it is an integer type whose value fits in int64.
std::optional<int64_t> AsInt(const GgufValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v.value)) return *i;
  if (const auto* u = std::get_if<uint64_t>(&v.value)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(*u);
  }
  return std::nullopt;
}

std::optional<double> AsFloat(const GgufValue& v) {
  if (const auto* d = std::get_if<double>(&v.value)) return *d;
  if (const auto* i = std::get_if<int64_t>(&v.value)) return static_cast<double>(*i);
  if (const auto* u = std::get_if<uint64_t>(&v.value)) return static_cast<double>(*u);
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::string> GgufFile::GetString(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, Require(*this, key));
  if (const auto* s = std::get_if<std::string>(&v->value)) return *s;
  return WrongType(path_, key, *v, "string");
}

absl::StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, Require(*this, key));
  if (!IsGgufIntegerType(v->type)) return WrongType(path_, key, *v, "an integer");
  std::optional<int64_t> i = AsInt(*v);
  if (!i) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: GGUF metadata key '%s' value %s does not fit in int64", path_, key,
        v->DebugString()));
  }
  return *i;
}

absl::StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, Require(*this, key));
  std::optional<double> f = AsFloat(*v);
  if (!f) return WrongType(path_, key, *v, "a number");
  return *f;
}

absl::StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, Require(*this, key));
  if (const auto* b = std::get_if<bool>(&v->value)) return *b;
  return WrongType(path_, key, *v, "bool");
}

absl::StatusOr<std::vector<std::string>> GgufFile::GetStringArray(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, Require(*this, key));
  const auto* a = std::get_if<GgufArray>(&v->value);
  if (a == nullptr || a->element_type != GgufType::kString) {
    return WrongType(path_, key, *v, "array of string");
  }
  std::vector<std::string> out;
  out.reserve(a->items.size());
  for (const GgufValue& item : a->items) out.push_back(std::get<std::string>(item.value));
  return out;
}

absl::StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, Require(*this, key));
  const auto* a = std::get_if<GgufArray>(&v->value);
  if (a == nullptr || !IsGgufIntegerType(a->element_type)) {
    return WrongType(path_, key, *v, "array of integers");
  }
  std::vector<int64_t> out;
  out.reserve(a->items.size());
  for (size_t i = 0; i < a->items.size(); ++i) {
    std::optional<int64_t> x = AsInt(a->items[i]);
    if (!x) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: GGUF metadata key '%s'[%d] does not fit in int64", path_, key, i));
    }
    out.push_back(*x);
  }
  return out;
}

absl::StatusOr<std::vector<double>> GgufFile::GetFloatArray(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, Require(*this, key));
  const auto* a = std::get_if<GgufArray>(&v->value);
  if (a == nullptr ||
      !(IsGgufIntegerType(a->element_type) || IsGgufFloatType(a->element_type))) {
    return WrongType(path_, key, *v, "array of numbers");
  }
  std::vector<double> out;
  out.reserve(a->items.size());
  for (const GgufValue& item : a->items) out.push_back(*AsFloat(item));
  return out;
}

}  // namespace tessera
