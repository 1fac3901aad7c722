#include "kernels/cpu/packed_weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/half.h"
#include "kernels/cpu/quant_blocks.h"

namespace tessera {
namespace {

constexpr int kBlock = 32;  // inputs per block in every packed format

// The source block's scale, minimum (Q4_1, Q5_1), quant bytes (nibble pairs for Q4 and Q5,
// int8 for Q8_0) and fifth bits (Q5: bit t of qh is input t's), by format.
struct SourceBlock {
  uint16_t d = 0, m = 0;
  const uint8_t* qs = nullptr;
  uint32_t qh = 0;
};

SourceBlock ReadSourceBlock(PackedFormat f, const uint8_t* row, int64_t b) {
  switch (f) {
    case PackedFormat::kQ4_0x16: {
      const auto* blk = reinterpret_cast<const BlockQ4_0*>(row) + b;
      return {blk->d, 0, blk->qs};
    }
    case PackedFormat::kQ4_1x16: {
      const auto* blk = reinterpret_cast<const BlockQ4_1*>(row) + b;
      return {blk->d, blk->m, blk->qs};
    }
    case PackedFormat::kQ5_0x16: {
      const auto* blk = reinterpret_cast<const BlockQ5_0*>(row) + b;
      uint32_t qh;
      std::memcpy(&qh, blk->qh, 4);
      return {blk->d, 0, blk->qs, qh};
    }
    case PackedFormat::kQ5_1x16: {
      const auto* blk = reinterpret_cast<const BlockQ5_1*>(row) + b;
      uint32_t qh;
      std::memcpy(&qh, blk->qh, 4);
      return {blk->d, blk->m, blk->qs, qh};
    }
    case PackedFormat::kQ8_0x16: {
      const auto* blk = reinterpret_cast<const BlockQ8_0*>(row) + b;
      return {blk->d, 0, reinterpret_cast<const uint8_t*>(blk->qs)};
    }
  }
  return {};
}

// The fifth-bit plane byte 4i+u of a Q5 source block's bits qh (layout in the header).
uint8_t HighBitsByte(uint32_t qh, int u) {
  uint8_t byte = 0;
  for (int p = 0; p < 4; ++p) {
    byte |= static_cast<uint8_t>(((qh >> (4 * p + u)) & 1) << p);
    byte |= static_cast<uint8_t>(((qh >> (16 + 4 * p + u)) & 1) << (4 + p));
  }
  return byte;
}

// Input t's fifth bit (0 or 1) in a fifth-bit plane byte.
int HighBit(uint8_t byte, int t) {
  const int p = (t % 16) / 4;
  return (byte >> (t < 16 ? p : 4 + p)) & 1;
}

// Quant t (0..31) of lane i in a packed block, as the u8 that vpdpbusd multiplies.
int PackedQuant(PackedFormat f, const uint8_t* block, int i, int t) {
  const uint8_t* quants = block + PackedQuantOffset(f);
  if (!PackedHasNibbles(f)) return quants[(t / 4) * 64 + 4 * i + t % 4];
  const int p = (t % 16) / 4;
  const uint8_t byte = quants[p * 64 + 4 * i + t % 4];
  const int low4 = t < 16 ? (byte & 0x0F) : (byte >> 4);
  if (!PackedHasHighBits(f)) return low4;
  return low4 | HighBit(block[PackedHighBitsOffset(f) + 4 * i + t % 4], t) << 4;
}

// The GGUF fifth bits qh of lane i of a packed Q5 block.
uint32_t UnpackHighBits(const uint8_t* block, PackedFormat f, int i) {
  uint32_t qh = 0;
  for (int t = 0; t < kBlock; ++t) {
    qh |= static_cast<uint32_t>(HighBit(block[PackedHighBitsOffset(f) + 4 * i + t % 4], t)) << t;
  }
  return qh;
}

}  // namespace

bool PackedFormatFor(DType w, PackedFormat* format) {
  switch (w) {
    case DType::kQ4_0:
      *format = PackedFormat::kQ4_0x16;
      return true;
    case DType::kQ4_1:
      *format = PackedFormat::kQ4_1x16;
      return true;
    case DType::kQ5_0:
      *format = PackedFormat::kQ5_0x16;
      return true;
    case DType::kQ5_1:
      *format = PackedFormat::kQ5_1x16;
      return true;
    case DType::kQ8_0:
      *format = PackedFormat::kQ8_0x16;
      return true;
    default:
      return false;
  }
}

DType PackedActivationType(PackedFormat format) {
  return PackedHasMin(format) ? DType::kQ8_1 : DType::kQ8_0;
}

std::unique_ptr<WeightPacker> WeightPacker::Create(std::span<const TensorView> parts) {
  PackedFormat format;
  if (parts.empty() || !PackedFormatFor(parts[0].dtype, &format)) return nullptr;
  int64_t rows = 0;
  for (const TensorView& w : parts) {
    if (w.rank() != 2 || w.dtype != parts[0].dtype || w.dim(0) <= 0 ||
        w.dim(1) != parts[0].dim(1) || w.dim(1) % kBlock != 0 || w.data == nullptr) {
      return nullptr;
    }
    rows += w.dim(0);
  }
  auto packer = std::unique_ptr<WeightPacker>(new WeightPacker());
  packer->parts_.assign(parts.begin(), parts.end());
  packer->packed_ = std::unique_ptr<CpuPackedWeight>(new CpuPackedWeight());
  CpuPackedWeight& p = *packer->packed_;
  p.format_ = format;
  p.source_ = parts[0].dtype;
  p.rows_ = rows;
  p.cols_ = parts[0].dim(1);
  p.data_.Resize(static_cast<size_t>(p.groups() * p.group_bytes()));  // zeroed: padding rows
  return packer;
}

const uint8_t* WeightPacker::SourceRow(int64_t r) const {
  for (const TensorView& w : parts_) {
    if (r < w.dim(0)) return w.RowPtr(r);
    r -= w.dim(0);
  }
  return nullptr;  // r < rows: not reached
}

void WeightPacker::PackGroup(int64_t g) {
  CpuPackedWeight& p = *packed_;
  const PackedFormat f = p.format_;
  const int64_t nb = p.blocks_per_row();
  const int lanes = static_cast<int>(std::min<int64_t>(kPackRows, p.rows_ - g * kPackRows));
  uint8_t* out = p.data_.as<uint8_t>() + g * p.group_bytes();
  for (int64_t b = 0; b < nb; ++b, out += p.block_bytes()) {
    auto* d = reinterpret_cast<uint16_t*>(out);
    auto* m = reinterpret_cast<uint16_t*>(out + 32);
    uint8_t* quants = out + PackedQuantOffset(f);
    for (int i = 0; i < lanes; ++i) {
      const SourceBlock src = ReadSourceBlock(f, SourceRow(g * kPackRows + i), b);
      d[i] = src.d;
      if (PackedHasMin(f)) m[i] = src.m;
      if (PackedHasNibbles(f)) {
        // The GGUF byte qs[4p + t] holds inputs 4p + t (low) and 16 + 4p + t (high): the
        // packed nibble pair exactly.
        for (int p4 = 0; p4 < 4; ++p4) std::memcpy(quants + p4 * 64 + 4 * i, src.qs + 4 * p4, 4);
        if (PackedHasHighBits(f)) {
          for (int u = 0; u < 4; ++u) out[PackedHighBitsOffset(f) + 4 * i + u] = HighBitsByte(src.qh, u);
        }
      } else {
        for (int q = 0; q < 8; ++q) {
          for (int t = 0; t < 4; ++t) quants[q * 64 + 4 * i + t] = src.qs[4 * q + t] ^ 0x80;
        }
      }
    }
  }
}

namespace {

// Lane i of a packed Q4/Q5 block back into its GGUF block (d, and m / qh where it has them).
template <typename Block>
void UnpackNibbleBlock(Block* dst, const uint8_t* blk, PackedFormat f, int i, uint16_t d,
                       uint16_t m) {
  dst->d = d;
  if constexpr (requires { dst->m; }) dst->m = m;
  if constexpr (requires { dst->qh; }) {
    const uint32_t qh = UnpackHighBits(blk, f, i);
    std::memcpy(dst->qh, &qh, 4);
  }
  const uint8_t* quants = blk + PackedQuantOffset(f);
  for (int p4 = 0; p4 < 4; ++p4) std::memcpy(dst->qs + 4 * p4, quants + p4 * 64 + 4 * i, 4);
}

}  // namespace

void UnpackRow(const CpuPackedWeight& p, int64_t r, uint8_t* out) {
  const PackedFormat f = p.format();
  const int64_t g = r / kPackRows;
  const int i = static_cast<int>(r % kPackRows);
  const uint8_t* blk = p.group(g);
  for (int64_t b = 0; b < p.blocks_per_row(); ++b, blk += p.block_bytes()) {
    uint16_t d, m;
    std::memcpy(&d, blk + 2 * i, 2);
    std::memcpy(&m, blk + 32 + 2 * i, 2);
    switch (f) {
      case PackedFormat::kQ4_0x16:
        UnpackNibbleBlock(reinterpret_cast<BlockQ4_0*>(out) + b, blk, f, i, d, m);
        break;
      case PackedFormat::kQ4_1x16:
        UnpackNibbleBlock(reinterpret_cast<BlockQ4_1*>(out) + b, blk, f, i, d, m);
        break;
      case PackedFormat::kQ5_0x16:
        UnpackNibbleBlock(reinterpret_cast<BlockQ5_0*>(out) + b, blk, f, i, d, m);
        break;
      case PackedFormat::kQ5_1x16:
        UnpackNibbleBlock(reinterpret_cast<BlockQ5_1*>(out) + b, blk, f, i, d, m);
        break;
      case PackedFormat::kQ8_0x16: {
        auto* dst = reinterpret_cast<BlockQ8_0*>(out) + b;
        dst->d = d;
        for (int t = 0; t < kBlock; ++t) {
          dst->qs[t] = static_cast<int8_t>(PackedQuant(f, blk, i, t) ^ 0x80);
        }
        break;
      }
    }
  }
}

void FillActBlockInfo(PackedFormat format, const uint8_t* act, int64_t act_row_bytes, int64_t n,
                      int64_t nb, ActBlockInfo* info) {
  for (int64_t j = 0; j < n; ++j) {
    const uint8_t* row = act + j * act_row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      ActBlockInfo& in = info[j * nb + b];
      if (PackedHasMin(format)) {
        const auto* blk = reinterpret_cast<const BlockQ8_1*>(row) + b;
        in = {Fp16ToFloat(blk->d), Fp16ToFloat(blk->s), 0};
        continue;
      }
      const auto* blk = reinterpret_cast<const BlockQ8_0*>(row) + b;
      int32_t sum = 0;
      for (int t = 0; t < kBlock; ++t) sum += blk->qs[t];
      // Q4_0 quants are stored as q (0..15) for weights q - 8; Q5_0 as q (0..31) for q - 16;
      // Q8_0 as w + 128.
      const int32_t offset = format == PackedFormat::kQ4_0x16   ? 8
                             : format == PackedFormat::kQ5_0x16 ? 16
                                                                : 128;
      in = {Fp16ToFloat(blk->d), 0.0f, -offset * sum};
    }
  }
}

void PackedGemmReference(const PackedGemmArgs& a, int64_t g0, int64_t g1) {
  const CpuPackedWeight& w = *a.w;
  const PackedFormat f = w.format();
  const int64_t nb = w.blocks_per_row();
  const int64_t act_block = PackedHasMin(f) ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
  const int64_t act_qs = PackedHasMin(f) ? offsetof(BlockQ8_1, qs) : offsetof(BlockQ8_0, qs);
  for (int64_t g = g0; g < g1; ++g) {
    const int lanes = static_cast<int>(std::min<int64_t>(kPackRows, w.rows() - g * kPackRows));
    for (int i = 0; i < lanes; ++i) {
      for (int64_t j = 0; j < a.n; ++j) {
        float acc = 0.0f;
        const uint8_t* blk = w.group(g);
        for (int64_t b = 0; b < nb; ++b, blk += w.block_bytes()) {
          const ActBlockInfo& in = a.info[j * nb + b];
          const auto* aq =
              reinterpret_cast<const int8_t*>(a.act + j * a.act_row_bytes + b * act_block + act_qs);
          int32_t isum = in.c;
          for (int t = 0; t < kBlock; ++t)
            isum += PackedQuant(f, blk, i, t) * aq[t];
          uint16_t d;
          std::memcpy(&d, blk + 2 * i, 2);
          acc = std::fma(Fp16ToFloat(d) * in.d, static_cast<float>(isum), acc);
          if (PackedHasMin(f)) {
            uint16_t m;
            std::memcpy(&m, blk + 32 + 2 * i, 2);
            acc = std::fma(Fp16ToFloat(m), in.s, acc);
          }
        }
        a.y[j * a.ldy + g * kPackRows + i] = acc;
      }
    }
  }
}

}  // namespace tessera
