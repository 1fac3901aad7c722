// kernels/paged_kv.h: the slot mapping, the window helper, the layout sizes and the shared
// argument checks (messages name the op and the field).
#include "kernels/paged_kv.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tessera {
namespace {

PagedKvLayout Layout(int64_t num_blocks, int64_t block_size) {
  return {.num_blocks = num_blocks, .block_size = block_size, .num_kv_heads = 3,
          .head_dim = 64};
}

TEST(PagedKvTest, LayoutSizes) {
  const PagedKvLayout l = Layout(10, 16);
  EXPECT_EQ(l.token_elems(), 192);
  EXPECT_EQ(l.block_elems(), 16 * 192);
  EXPECT_EQ(l.pool_elems(), 10 * 16 * 192);
  EXPECT_EQ(l.num_slots(), 160);
}

TEST(PagedKvTest, SlotMappingFollowsTheBlockTables) {
  // Sequence 0: positions 2..5 in table {7, 2} (block size 4); row 4 is padding;
  // sequence 1: position 0 in table {0}.
  const std::vector<int32_t> t0 = {7, 2}, t1 = {0};
  const std::vector<PagedSequence> seqs = {{0, 4, 6, t0}, {5, 1, 1, t1}};
  const std::vector<int32_t> positions = {2, 3, 4, 5, 0, 0};
  std::vector<int32_t> slots;
  ASSERT_TRUE(ComputeSlotMapping(seqs, positions, Layout(8, 4), &slots).ok());
  EXPECT_EQ(slots, (std::vector<int32_t>{30, 31, 8, 9, kPaddingSlot, 0}));
}

TEST(PagedKvTest, SlotMappingRejectsPositionsPastTheTable) {
  const std::vector<int32_t> t0 = {7, 2};
  std::vector<int32_t> slots;
  // context_len 9 needs a third block.
  const std::vector<PagedSequence> long_ctx = {{0, 1, 9, t0}};
  const std::vector<int32_t> pos = {8};
  absl::Status st = ComputeSlotMapping(long_ctx, pos, Layout(8, 4), &slots);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("sequences[0].context_len=9"), std::string::npos) << st;
  // Block id 7 is outside a pool of 5 blocks.
  const std::vector<PagedSequence> seqs = {{0, 1, 6, t0}};
  st = ComputeSlotMapping(seqs, {{5}}, Layout(5, 4), &slots);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("sequences[0].block_table[0]=7"), std::string::npos) << st;
  // positions.size() must cover the rows.
  st = ComputeSlotMapping(seqs, {}, Layout(8, 4), &slots);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("sequences[0] rows"), std::string::npos) << st;
}

TEST(PagedKvTest, WindowStart) {
  EXPECT_EQ(WindowStart(10, 0), 0);
  EXPECT_EQ(WindowStart(10, 4), 7);   // sees 7, 8, 9, 10
  EXPECT_EQ(WindowStart(3, 4), 0);
  EXPECT_EQ(WindowStart(4, 4), 1);
  EXPECT_EQ(WindowStart(0, 1), 0);
}

TEST(PagedKvTest, LayoutChecks) {
  float buf[1];
  const KvPool pool{buf, buf};
  EXPECT_TRUE(CheckPagedKvLayout("b", "Op", Layout(4, 16), pool).ok());
  PagedKvLayout l = Layout(4, 0);
  absl::Status st = CheckPagedKvLayout("b", "Op", l, pool);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("block_size=0"), std::string::npos) << st;
  EXPECT_EQ(st.message().rfind("b Op:", 0), 0u) << st;
  st = CheckPagedKvLayout("b", "Op", Layout(int64_t{1} << 28, 16), pool);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("int32"), std::string::npos) << st;
  st = CheckPagedKvLayout("b", "Op", Layout(4, 16), KvPool{buf, nullptr});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("pool.v"), std::string::npos) << st;
  l = Layout(4, 16);
  l.dtype = DType::kF16;
  EXPECT_TRUE(CheckPagedKvLayout("b", "Op", l, pool).ok());
  EXPECT_EQ(l.elem_bytes(), 2);
  EXPECT_EQ(l.block_bytes(), l.block_elems() * 2);
  l.dtype = DType::kBF16;
  st = CheckPagedKvLayout("b", "Op", l, pool);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(st.message().find("layout.dtype bf16"), std::string::npos) << st;
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

TEST(PagedKvSwapTest, CopiesWholeBlocksBetweenPoolSets) {
  const PagedKvLayout device{.num_blocks = 4, .block_size = 2, .num_kv_heads = 1, .head_dim = 3};
  PagedKvLayout host = device;
  host.num_blocks = 2;
  const int64_t n = device.block_elems();
  std::vector<float> dk(4 * n), dv(4 * n), hk(2 * n, 0.0f), hv(2 * n, 0.0f);
  for (size_t i = 0; i < dk.size(); ++i) {
    dk[i] = static_cast<float>(i);
    dv[i] = -static_cast<float>(i);
  }
  const std::vector<KvPool> d = {{dk.data(), dv.data()}};
  const std::vector<KvPool> h = {{hk.data(), hv.data()}};
  const std::vector<KvBlockCopy> out = {{3, 0}, {1, 1}};
  ASSERT_TRUE(SwapHostBlocks("test", d, device, h, host, out).ok());
  EXPECT_EQ(hk[0], static_cast<float>(3 * n));
  EXPECT_EQ(hv[n], -static_cast<float>(n));
  const std::vector<KvBlockCopy> in = {{0, 2}};
  ASSERT_TRUE(SwapHostBlocks("test", h, host, d, device, in).ok());
  EXPECT_EQ(dk[2 * n + 1], static_cast<float>(3 * n + 1));

  const std::vector<KvBlockCopy> bad = {{0, 2}};  // host has blocks 0 and 1 only
  const absl::Status s = SwapHostBlocks("test", d, device, h, host, bad);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  PagedKvLayout other = host;
  other.head_dim = 4;
  EXPECT_EQ(SwapHostBlocks("test", d, device, h, other, out).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera
