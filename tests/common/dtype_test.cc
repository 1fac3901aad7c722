#include "common/dtype.h"

#include "gtest/gtest.h"

namespace tessera {
namespace {

TEST(DTypeTest, BlockSizesMatchGgml) {
  EXPECT_EQ(Traits(DType::kQ4_1).block_elems, 32);
  EXPECT_EQ(Traits(DType::kQ4_1).block_bytes, 20);
  EXPECT_EQ(Traits(DType::kQ6_K).block_bytes, 210);
  EXPECT_EQ(Traits(DType::kQ8_K).block_bytes, 292);
  EXPECT_EQ(Traits(DType::kBF16).block_bytes, 2);
}

TEST(DTypeTest, GgmlIdsRoundTrip) {
  EXPECT_EQ(DTypeFromGgmlId(14), DType::kQ6_K);
  EXPECT_EQ(DTypeFromGgmlId(30), DType::kBF16);
  EXPECT_FALSE(DTypeFromGgmlId(16).has_value());  // IQ2_XXS: not run by Tessera
  EXPECT_FALSE(DTypeFromGgmlId(4).has_value());   // removed Q4_2
}

TEST(DTypeTest, NamesParseCaseInsensitively) {
  EXPECT_EQ(*DTypeFromName("Q4_K"), DType::kQ4_K);
  EXPECT_EQ(*DTypeFromName("f16"), DType::kF16);
  EXPECT_EQ(DTypeFromName("q9_9").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DTypeTest, TheBackendsFp8TypeComesFromNoFileAndNoName) {
  EXPECT_EQ(DTypeName(DType::kF8E4M3), "f8_e4m3");
  EXPECT_EQ(*RowBytes(DType::kF8E4M3, 10), 10);
  EXPECT_FALSE(DTypeFromGgmlId(static_cast<uint32_t>(DType::kF8E4M3)).has_value());
  EXPECT_EQ(DTypeFromName("f8_e4m3").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DTypeTest, RowBytesRejectsPartialBlocks) {
  EXPECT_EQ(*RowBytes(DType::kQ8_0, 64), 68);
  EXPECT_EQ(RowBytes(DType::kQ8_0, 33).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera
