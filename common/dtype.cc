#include "common/dtype.h"

#include <array>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tessera {
namespace {

struct Entry {
  DType type;
  DTypeTraits traits;
};

constexpr std::array<Entry, 21> kTable = {{
    {DType::kF32, {"f32", 1, 4, false}},
    {DType::kF16, {"f16", 1, 2, false}},
    {DType::kQ4_0, {"q4_0", 32, 18, true}},
    {DType::kQ4_1, {"q4_1", 32, 20, true}},
    {DType::kQ5_0, {"q5_0", 32, 22, true}},
    {DType::kQ5_1, {"q5_1", 32, 24, true}},
    {DType::kQ8_0, {"q8_0", 32, 34, true}},
    {DType::kQ8_1, {"q8_1", 32, 36, true}},
    {DType::kQ2_K, {"q2_K", 256, 84, true}},
    {DType::kQ3_K, {"q3_K", 256, 110, true}},
    {DType::kQ4_K, {"q4_K", 256, 144, true}},
    {DType::kQ5_K, {"q5_K", 256, 176, true}},
    {DType::kQ6_K, {"q6_K", 256, 210, true}},
    {DType::kQ8_K, {"q8_K", 256, 292, true}},
    {DType::kI8, {"i8", 1, 1, false}},
    {DType::kI16, {"i16", 1, 2, false}},
    {DType::kI32, {"i32", 1, 4, false}},
    {DType::kI64, {"i64", 1, 8, false}},
    {DType::kF64, {"f64", 1, 8, false}},
    {DType::kBF16, {"bf16", 1, 2, false}},
    {DType::kF8E4M3, {"f8_e4m3", 1, 1, false}},
}};

// Types a file or a user may name; kF8E4M3 exists only in a backend's memory.
bool Nameable(DType type) { return type != DType::kF8E4M3; }

const Entry* Find(uint32_t id) {
  for (const Entry& e : kTable) {
    if (static_cast<uint32_t>(e.type) == id) return &e;
  }
  return nullptr;
}

}  // namespace

const DTypeTraits& Traits(DType type) {
  const Entry* e = Find(static_cast<uint32_t>(type));
  static const DTypeTraits kInvalid{"invalid", 1, 0, false};
  return e ? e->traits : kInvalid;
}

std::optional<DType> DTypeFromGgmlId(uint32_t id) {
  const Entry* e = Find(id);
  if (e == nullptr || !Nameable(e->type)) return std::nullopt;
  return e->type;
}

absl::StatusOr<DType> DTypeFromName(std::string_view name) {
  const std::string lower = absl::AsciiStrToLower(std::string(name));
  for (const Entry& e : kTable) {
    if (Nameable(e.type) && absl::AsciiStrToLower(std::string(e.traits.name)) == lower) {
      return e.type;
    }
  }
  return absl::InvalidArgumentError(absl::StrFormat("unknown dtype name '%s'", name));
}

absl::StatusOr<int64_t> RowBytes(DType type, int64_t elems) {
  const DTypeTraits& t = Traits(type);
  if (elems < 0 || elems % t.block_elems != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%d elements is not a multiple of the %s block size %d", elems, t.name, t.block_elems));
  }
  const int64_t blocks = elems / t.block_elems;
  if (blocks > std::numeric_limits<int64_t>::max() / t.block_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat("%d elements of %s overflow", elems, t.name));
  }
  return blocks * t.block_bytes;
}

}  // namespace tessera
