#include "common/aligned_buffer.h"

#include <cstdint>
#include <utility>

#include "gtest/gtest.h"

namespace tessera {
namespace {

bool AllZero(const AlignedBuffer& b) {
  for (size_t i = 0; i < b.size(); ++i) {
    if (b.data()[i] != std::byte{0}) return false;
  }
  return true;
}

TEST(AlignedBufferTest, ZeroedAlignedAndResizable) {
  AlignedBuffer b(100);
  EXPECT_EQ(b.size(), 100u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % AlignedBuffer::kAlignment, 0u);
  EXPECT_TRUE(AllZero(b));
  b.data()[99] = std::byte{7};
  b.Resize(10);  // discards the contents
  EXPECT_EQ(b.size(), 10u);
  EXPECT_TRUE(AllZero(b));
  b.Resize(0);
  EXPECT_EQ(b.data(), nullptr);
  AlignedBuffer moved(std::move(b));
  EXPECT_EQ(moved.size(), 0u);
}

// A huge-page buffer is aligned to the huge page (when large enough to hold one), zeroed and
// writable to its last byte; a small one falls back to the usual alignment.
TEST(AlignedBufferTest, HugePageBuffersAreAlignedToTheHugePage) {
  AlignedBuffer big;
  big.Resize(AlignedBuffer::kHugePage + 3, /*huge_pages=*/true);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big.data()) % AlignedBuffer::kHugePage, 0u);
  EXPECT_EQ(big.size(), AlignedBuffer::kHugePage + 3);
  EXPECT_TRUE(AllZero(big));
  big.data()[big.size() - 1] = std::byte{1};
  AlignedBuffer small;
  small.Resize(4096, /*huge_pages=*/true);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(small.data()) % AlignedBuffer::kAlignment, 0u);
  EXPECT_TRUE(AllZero(small));
}

}  // namespace
}  // namespace tessera
