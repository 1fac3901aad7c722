// Weights repacked at load for the "cpu" backend's interleaved GEMM (Backend::PackWeight).
//
// A GGUF row keeps each output row's blocks together, so a kernel reading it computes one
// dot product at a time and pays a horizontal sum and a scale broadcast per row and block.
// The packed layouts interleave 16 output rows instead: for each block of 32 inputs they hold
// the 16 rows' scales as one vector and their quants in the operand order of vpdpbusd (one
// 32-bit lane per row, 4 inputs per lane). One activation quad broadcast against one 64-byte
// load then advances 16 dot products at once; the 16 results come out as one vector, with no
// horizontal sums; and a weight block is unpacked once for up to 8 activation rows.
//
// Layout of one 16-row group (rows 16g .. 16g+15; a last group of fewer rows is padded with
// zero rows), block after block, each block:
//   d[16]   fp16 weight scales                        (all formats)
//   m[16]   fp16 weight minimums                      (Q4_1x16 and Q5_1x16)
//   quants  Q4, Q5: 4 chunks of 64 bytes; chunk p, byte 4i+t: row i's input 4p+t in the
//           low nibble and input 16+4p+t in the high nibble (both 0..15 as GGUF stores
//           them; for Q5, the low four bits).
//           Q8_0: 8 chunks of 64 bytes; chunk q, byte 4i+t: row i's input 4q+t plus 128
//           (as u8, since vpdpbusd multiplies u8 by s8).
//   high    Q5 only, 64 bytes: byte 4i+t holds the fifth bits of row i's inputs 4p+t in bit
//           p and 16+4p+t in bit 4+p (p = 0..3), so that one shift and mask per chunk puts
//           them at bit 4 of the chunk's bytes.
// Bytes per block and group: Q4_0x16 288, Q4_1x16 320, Q5_0x16 352, Q5_1x16 384, Q8_0x16
// 544 — exactly 16 GGUF blocks, so a packed matrix takes no more memory than its source.
//
// Arithmetic per output (row r, activation row j), identical in every kernel and in
// PackedGemmReference, so results are bit-equal across ISAs, batch sizes and thread counts:
//   acc = 0; for each block b:
//     isum = c[j][b] + Σ_t u8 quant(r, t) · s8 act(j, t)      (exact int32)
//     acc  = fma(d_w[r] · d_a[j][b], float(isum), acc)
//     Q4_1, Q5_1: acc = fma(m_w[r], s_a[j][b], acc)
// where quant is 0..15 (Q4), 0..31 (Q5) or w + 128 (Q8_0); c = -8·Σ act quants (Q4_0:
// weights are q - 8), -16·Σ act quants (Q5_0: q - 16), -128·Σ act quants (Q8_0), 0 with a
// minimum; and d_a, s_a come from the Q8_0 / Q8_1 activation block (fp16).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "common/aligned_buffer.h"
#include "common/dtype.h"
#include "common/tensor.h"

namespace tessera {

inline constexpr int kPackRows = 16;

enum class PackedFormat { kQ4_0x16, kQ4_1x16, kQ5_0x16, kQ5_1x16, kQ8_0x16 };

// What a packed format's block holds (the layout above).
inline constexpr bool PackedHasMin(PackedFormat f) {
  return f == PackedFormat::kQ4_1x16 || f == PackedFormat::kQ5_1x16;
}
inline constexpr bool PackedHasNibbles(PackedFormat f) { return f != PackedFormat::kQ8_0x16; }
inline constexpr bool PackedHasHighBits(PackedFormat f) {
  return f == PackedFormat::kQ5_0x16 || f == PackedFormat::kQ5_1x16;
}
// Offsets in a packed block of the quants and (Q5) the fifth-bit plane, and its size.
inline constexpr int64_t PackedQuantOffset(PackedFormat f) { return PackedHasMin(f) ? 64 : 32; }
inline constexpr int64_t PackedHighBitsOffset(PackedFormat f) {
  return PackedQuantOffset(f) + 4 * 64;
}
inline constexpr int64_t PackedBlockBytes(PackedFormat f) {
  return PackedQuantOffset(f) + (PackedHasNibbles(f) ? 4 * 64 : 8 * 64) +
         (PackedHasHighBits(f) ? 64 : 0);
}

// The packed format for weight dtype `w`, if it has one.
bool PackedFormatFor(DType w, PackedFormat* format);

class CpuPackedWeight : public PackedWeight {
 public:
  PackedFormat format() const { return format_; }
  DType source_dtype() const { return source_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t blocks_per_row() const { return cols_ / 32; }
  int64_t groups() const { return (rows_ + kPackRows - 1) / kPackRows; }
  int64_t block_bytes() const { return PackedBlockBytes(format_); }
  int64_t group_bytes() const { return blocks_per_row() * block_bytes(); }
  const uint8_t* group(int64_t g) const { return data_.as<uint8_t>() + g * group_bytes(); }
  size_t bytes() const { return data_.size(); }

 private:
  friend class WeightPacker;
  PackedFormat format_ = PackedFormat::kQ4_1x16;
  DType source_ = DType::kQ4_1;
  int64_t rows_ = 0, cols_ = 0;
  AlignedBuffer data_;
};

// Packs a matrix group by group, so that callers may spread the groups over threads:
//   auto packer = WeightPacker::Create(parts);  // matrices [rows_i, cols], stacked
//   for each g in [0, packer->groups()): packer->PackGroup(g);
//   std::unique_ptr<CpuPackedWeight> p = packer->Finish();
class WeightPacker {
 public:
  // nullptr from Create when the parts' dtype has no packed format, they are not matrices,
  // or they differ in dtype or width (the caller then keeps the GGUF layout); never an error
  // for valid views. The packed matrix holds the parts' rows in order.
  static std::unique_ptr<WeightPacker> Create(std::span<const TensorView> parts);
  static std::unique_ptr<WeightPacker> Create(const TensorView& w) { return Create({&w, 1}); }
  int64_t groups() const { return packed_->groups(); }
  // Thread-safe for distinct g.
  void PackGroup(int64_t g);
  std::unique_ptr<CpuPackedWeight> Finish() { return std::move(packed_); }

 private:
  WeightPacker() = default;
  // Row r of the stacked parts.
  const uint8_t* SourceRow(int64_t r) const;
  std::vector<TensorView> parts_;
  std::unique_ptr<CpuPackedWeight> packed_;
};

// Row r of a packed matrix back in its GGUF block layout (RowBytes of the source dtype).
// Packing is lossless; tests use this to show it.
void UnpackRow(const CpuPackedWeight& p, int64_t r, uint8_t* out);

// Per (activation row, block): the activation block's scale, Q8_1 sum term and the integer
// correction c of the arithmetic above.
struct ActBlockInfo {
  float d = 0.0f;
  float s = 0.0f;
  int32_t c = 0;
};

// One packed GEMM: y[j, r] for activation rows j < n and the rows of groups [g0, g1).
// `act` holds n activation rows (Q8_1 blocks for formats with a minimum, Q8_0 blocks
// otherwise), row j at act + j * act_row_bytes; `info` holds n * blocks_per_row entries (FillActBlockInfo).
// y is [n, ldy]; group g writes columns [16g, min(16g + 16, rows)).
struct PackedGemmArgs {
  const CpuPackedWeight* w = nullptr;
  const uint8_t* act = nullptr;
  int64_t act_row_bytes = 0;
  const ActBlockInfo* info = nullptr;
  int64_t n = 0;
  float* y = nullptr;
  int64_t ldy = 0;
};
using PackedGemmFn = void (*)(const PackedGemmArgs& args, int64_t g0, int64_t g1);

// The activation format a packed format reads (kQ8_0 or kQ8_1).
DType PackedActivationType(PackedFormat format);

// info[j * nb + b] for the n activation rows at `act` (nb = k / 32 blocks each).
void FillActBlockInfo(PackedFormat format, const uint8_t* act, int64_t act_row_bytes, int64_t n,
                      int64_t nb, ActBlockInfo* info);

// The portable kernel: scalar, the arithmetic above spelled out. The SIMD kernels are tested
// bit-equal to it.
void PackedGemmReference(const PackedGemmArgs& args, int64_t g0, int64_t g1);

}  // namespace tessera
