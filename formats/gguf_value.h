// A GGUF metadata value: one of the scalar types, a string, or a typed array (arrays may
// nest). Plain data: copyable, no thread-safety concerns beyond those of std::vector.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tessera {

// GGUF's value type ids (gguf_type in the spec).
enum class GgufType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5,
  kFloat32 = 6, kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
};
std::string_view GgufTypeName(GgufType type);
// True for the ids 0..12 above.
bool IsValidGgufType(uint32_t id);
bool IsGgufIntegerType(GgufType type);
bool IsGgufFloatType(GgufType type);
// Bytes a scalar of `type` takes on disk (0 for string and array).
size_t GgufScalarSize(GgufType type);

struct GgufValue;
struct GgufArray {
  GgufType element_type = GgufType::kUint8;
  std::vector<GgufValue> items;
};

struct GgufValue {
  GgufType type = GgufType::kUint8;
  // Integers are widened: signed types in int64_t, unsigned in uint64_t; floats in double.
  std::variant<int64_t, uint64_t, double, bool, std::string, GgufArray> value;

  // Short human-readable rendering (arrays abbreviated) for `tessera inspect`.
  std::string DebugString(size_t max_items = 8) const;

  // Constructors for each GGUF type (used by GgufWriter and tests).
  static GgufValue U8(uint8_t v) { return {GgufType::kUint8, uint64_t{v}}; }
  static GgufValue I8(int8_t v) { return {GgufType::kInt8, int64_t{v}}; }
  static GgufValue U16(uint16_t v) { return {GgufType::kUint16, uint64_t{v}}; }
  static GgufValue I16(int16_t v) { return {GgufType::kInt16, int64_t{v}}; }
  static GgufValue U32(uint32_t v) { return {GgufType::kUint32, uint64_t{v}}; }
  static GgufValue I32(int32_t v) { return {GgufType::kInt32, int64_t{v}}; }
  static GgufValue U64(uint64_t v) { return {GgufType::kUint64, v}; }
  static GgufValue I64(int64_t v) { return {GgufType::kInt64, v}; }
  static GgufValue F32(float v) { return {GgufType::kFloat32, double{v}}; }
  static GgufValue F64(double v) { return {GgufType::kFloat64, v}; }
  static GgufValue Bool(bool v) { return {GgufType::kBool, v}; }
  static GgufValue String(std::string v) { return {GgufType::kString, std::move(v)}; }
  static GgufValue Array(GgufType element_type, std::vector<GgufValue> items) {
    return {GgufType::kArray, GgufArray{element_type, std::move(items)}};
  }
  static GgufValue StringArray(const std::vector<std::string>& items);
  static GgufValue I32Array(const std::vector<int32_t>& items);
  static GgufValue F32Array(const std::vector<float>& items);

  bool operator==(const GgufValue&) const = default;
};

inline bool operator==(const GgufArray& a, const GgufArray& b) {
  return a.element_type == b.element_type && a.items == b.items;
}

}  // namespace tessera
