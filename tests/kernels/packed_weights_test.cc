// The packed weight layouts and GEMM (kernels/cpu/packed_weights.h):
//   * packing is lossless (every row unpacks to its GGUF bytes), strided views included;
//   * the portable PackedGemmReference agrees with a float64 evaluation of the packed
//     arithmetic on the dequantized blocks (relative 1e-5 of Σ|terms|, float32 accumulation
//     over at most 48 blocks);
//   * each SIMD packed kernel gives the reference's bits, for every batch size remainder and
//     partial last group;
//   * CpuBackend::MatMul on packed weights is batch- and thread-invariant (same bits) and
//     refuses a packed copy that is not its own.
// The comparison with the "cpu-reference" backend on float inputs is in cpu_backend_test.
#include "kernels/cpu/packed_weights.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/half.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quantize.h"
#include "tests/kernels/kernel_test_util.h"

namespace tessera {
namespace {

using testing::RandomFloats;
using testing::RandomWeights;

constexpr DType kPackedTypes[] = {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1,
                                   DType::kQ8_0};

std::unique_ptr<CpuPackedWeight> Pack(const TensorView& w) {
  std::unique_ptr<WeightPacker> packer = WeightPacker::Create(w);
  if (packer == nullptr) return nullptr;
  for (int64_t g = 0; g < packer->groups(); ++g) packer->PackGroup(g);
  return packer->Finish();
}

TEST(PackedLayoutTest, EveryRowUnpacksToItsGgufBytes) {
  std::mt19937 rng(3);
  for (DType t : kPackedTypes) {
    for (int64_t m : {1, 15, 16, 17, 40}) {
      for (int64_t k : {32, 96}) {
        SCOPED_TRACE(absl::StrFormat("%s m=%d k=%d", DTypeName(t), m, k));
        const std::vector<uint8_t> w = RandomWeights(t, m, k, rng);
        const TensorView view{t, {m, k}, w.data()};
        const std::unique_ptr<CpuPackedWeight> p = Pack(view);
        ASSERT_NE(p, nullptr);
        EXPECT_EQ(p->rows(), m);
        EXPECT_EQ(p->cols(), k);
        EXPECT_EQ(p->source_dtype(), t);
        // No more bytes than the source, up to the padding of the last group.
        EXPECT_EQ(static_cast<int64_t>(p->bytes()), p->groups() * 16 * view.RowBytes());
        std::vector<uint8_t> row(static_cast<size_t>(view.RowBytes()));
        for (int64_t r = 0; r < m; ++r) {
          UnpackRow(*p, r, row.data());
          ASSERT_EQ(std::memcmp(row.data(), view.RowPtr(r), row.size()), 0) << "row " << r;
        }
      }
    }
  }
}

TEST(PackedLayoutTest, ColumnSliceOfAWiderMatrixPacksItsOwnColumns) {
  std::mt19937 rng(4);
  for (DType t : kPackedTypes) {
    const int64_t m = 19, wide = 160;
    const std::vector<uint8_t> w = RandomWeights(t, m, wide, rng);
    const TensorView full{t, {m, wide}, w.data()};
    // Columns [64, 128): a tensor-parallel shard of a row-parallel weight.
    TensorView slice = full;
    slice.shape[1] = 64;
    slice.row_stride_bytes = full.RowBytes();
    slice.data = full.RowPtr(0) + 64 / 32 * Traits(t).block_bytes;
    const std::unique_ptr<CpuPackedWeight> p = Pack(slice);
    ASSERT_NE(p, nullptr);
    std::vector<uint8_t> row(static_cast<size_t>(slice.RowBytes()));
    for (int64_t r = 0; r < m; ++r) {
      UnpackRow(*p, r, row.data());
      ASSERT_EQ(std::memcmp(row.data(), slice.RowPtr(r), row.size()), 0)
          << DTypeName(t) << " " << r;
    }
  }
}

TEST(PackedLayoutTest, StackedPartsPackTheirRowsInOrder) {
  std::mt19937 rng(11);
  for (DType t : kPackedTypes) {
    // Q, K and V of a GQA layer: 9 rows, then 3 and 3 (groups straddle the parts).
    const std::vector<uint8_t> a = RandomWeights(t, 9, 64, rng), b = RandomWeights(t, 3, 64, rng),
                               c = RandomWeights(t, 3, 64, rng);
    const std::vector<TensorView> parts = {{t, {9, 64}, a.data()}, {t, {3, 64}, b.data()},
                                           {t, {3, 64}, c.data()}};
    std::unique_ptr<WeightPacker> packer = WeightPacker::Create(parts);
    ASSERT_NE(packer, nullptr) << DTypeName(t);
    for (int64_t g = 0; g < packer->groups(); ++g) packer->PackGroup(g);
    const std::unique_ptr<CpuPackedWeight> p = packer->Finish();
    ASSERT_EQ(p->rows(), 15);
    std::vector<uint8_t> row(static_cast<size_t>(parts[0].RowBytes()));
    int64_t r = 0;
    for (const TensorView& part : parts) {
      for (int64_t i = 0; i < part.dim(0); ++i, ++r) {
        UnpackRow(*p, r, row.data());
        ASSERT_EQ(std::memcmp(row.data(), part.RowPtr(i), row.size()), 0) << DTypeName(t) << " " << r;
      }
    }
  }
  // Parts that differ in dtype or width are not stacked.
  std::vector<uint8_t> bytes(1 << 14);
  const TensorView q41{DType::kQ4_1, {4, 64}, bytes.data()};
  EXPECT_EQ(WeightPacker::Create(std::vector<TensorView>{q41, {DType::kQ8_0, {4, 64}, bytes.data()}}),
            nullptr);
  EXPECT_EQ(WeightPacker::Create(std::vector<TensorView>{q41, {DType::kQ4_1, {4, 96}, bytes.data()}}),
            nullptr);
  EXPECT_EQ(WeightPacker::Create(std::span<const TensorView>()), nullptr);
}

TEST(PackedLayoutTest, OtherDtypesAndShapesAreLeftAsTheyAre) {
  std::vector<uint8_t> bytes(1 << 16);
  for (DType t :
       {DType::kF32, DType::kF16, DType::kBF16, DType::kQ5_K, DType::kQ4_K, DType::kQ6_K}) {
    const int64_t k = Traits(t).block_elems == 256 ? 256 : 32;
    EXPECT_EQ(WeightPacker::Create(TensorView{t, {4, k}, bytes.data()}), nullptr) << DTypeName(t);
  }
  EXPECT_EQ(WeightPacker::Create(TensorView{DType::kQ4_1, {64}, bytes.data()}), nullptr);
  EXPECT_EQ(WeightPacker::Create(TensorView{DType::kQ4_1, {0, 32}, bytes.data()}), nullptr);
}

// A random packed GEMM problem: weights, activation rows quantized as the format reads them
// and their block infos.
struct Problem {
  DType type;
  int64_t n, k, m;
  std::vector<uint8_t> w;
  std::unique_ptr<CpuPackedWeight> packed;
  std::vector<uint8_t> act;
  int64_t act_row_bytes = 0;
  std::vector<ActBlockInfo> info;

  Problem(DType t, int64_t n_, int64_t k_, int64_t m_, std::mt19937& rng)
      : type(t), n(n_), k(k_), m(m_) {
    w = RandomWeights(t, m, k, rng);
    packed = Pack(TensorView{t, {m, k}, w.data()});
    const DType act_type = PackedActivationType(packed->format());
    act_row_bytes = *RowBytes(act_type, k);
    act.resize(static_cast<size_t>(n * act_row_bytes));
    const std::vector<float> x = RandomFloats(n * k, rng);
    for (int64_t j = 0; j < n; ++j) {
      EXPECT_TRUE(QuantizeRow(act_type, x.data() + j * k, act.data() + j * act_row_bytes, k).ok());
    }
    info.resize(static_cast<size_t>(n * k / 32));
    FillActBlockInfo(packed->format(), act.data(), act_row_bytes, n, k / 32, info.data());
  }

  std::vector<float> Run(PackedGemmFn gemm) const {
    std::vector<float> y(static_cast<size_t>(n * m), NAN);
    const PackedGemmArgs args{.w = packed.get(),
                              .act = act.data(),
                              .act_row_bytes = act_row_bytes,
                              .info = info.data(),
                              .n = n,
                              .y = y.data(),
                              .ldy = m};
    gemm(args, 0, packed->groups());
    return y;
  }
};

// Quant t (0..31) of a Q5_0 / Q5_1 block: its nibble and bit t of qh.
int FifthBitQuant(const uint8_t* qs, const uint8_t* qh, int t) {
  const int low4 = t < 16 ? qs[t] & 15 : qs[t - 16] >> 4;
  return low4 | ((qh[t / 8] >> (t % 8)) & 1) << 4;
}

// Element t of weight row r and activation row j, dequantized from the GGUF blocks.
double Weight(const Problem& p, int64_t r, int64_t b, int t, double* d, double* min) {
  const uint8_t* row = p.w.data() + r * (p.k / 32) * Traits(p.type).block_bytes;
  switch (p.type) {
    case DType::kQ4_0: {
      const auto& blk = reinterpret_cast<const BlockQ4_0*>(row)[b];
      *d = Fp16ToFloat(blk.d);
      *min = 0;
      return (t < 16 ? blk.qs[t] & 15 : blk.qs[t - 16] >> 4) - 8;
    }
    case DType::kQ4_1: {
      const auto& blk = reinterpret_cast<const BlockQ4_1*>(row)[b];
      *d = Fp16ToFloat(blk.d);
      *min = Fp16ToFloat(blk.m);
      return t < 16 ? blk.qs[t] & 15 : blk.qs[t - 16] >> 4;
    }
    case DType::kQ5_0: {
      const auto& blk = reinterpret_cast<const BlockQ5_0*>(row)[b];
      *d = Fp16ToFloat(blk.d);
      *min = 0;
      return FifthBitQuant(blk.qs, blk.qh, t) - 16;
    }
    case DType::kQ5_1: {
      const auto& blk = reinterpret_cast<const BlockQ5_1*>(row)[b];
      *d = Fp16ToFloat(blk.d);
      *min = Fp16ToFloat(blk.m);
      return FifthBitQuant(blk.qs, blk.qh, t);
    }
    default: {
      const auto& blk = reinterpret_cast<const BlockQ8_0*>(row)[b];
      *d = Fp16ToFloat(blk.d);
      *min = 0;
      return blk.qs[t];
    }
  }
}

TEST(PackedGemmReferenceTest, AgreesWithFloat64OnTheGgufBlocks) {
  std::mt19937 rng(5);
  for (DType t : kPackedTypes) {
    for (const auto& [n, k, m] :
         {std::tuple<int64_t, int64_t, int64_t>{1, 32, 16}, {3, 96, 17}, {9, 1536, 33}}) {
      SCOPED_TRACE(absl::StrFormat("%s n=%d k=%d m=%d", DTypeName(t), n, k, m));
      const Problem p(t, n, k, m, rng);
      const std::vector<float> y = p.Run(PackedGemmReference);
      const bool q8_1 = t == DType::kQ4_1 || t == DType::kQ5_1;
      for (int64_t j = 0; j < n; ++j) {
        const uint8_t* arow = p.act.data() + j * p.act_row_bytes;
        for (int64_t r = 0; r < m; ++r) {
          double want = 0, scale = 0;
          for (int64_t b = 0; b < k / 32; ++b) {
            const int8_t* aq = q8_1 ? reinterpret_cast<const BlockQ8_1*>(arow)[b].qs
                                    : reinterpret_cast<const BlockQ8_0*>(arow)[b].qs;
            const double da = Fp16ToFloat(q8_1 ? reinterpret_cast<const BlockQ8_1*>(arow)[b].d
                                               : reinterpret_cast<const BlockQ8_0*>(arow)[b].d);
            double dw = 0, mw = 0, dot = 0;
            for (int e = 0; e < 32; ++e) dot += Weight(p, r, b, e, &dw, &mw) * aq[e];
            want += dw * da * dot;
            scale += std::fabs(dw * da * dot);
            if (q8_1) {
              // Q8_1's s is the stored fp16 d·Σq, as the GGUF dot product uses it.
              const double s = Fp16ToFloat(reinterpret_cast<const BlockQ8_1*>(arow)[b].s);
              want += mw * s;
              scale += std::fabs(mw * s);
            }
          }
          ASSERT_NEAR(y[j * m + r], want, 1e-5 * scale + 1e-7) << "row " << r << " act " << j;
        }
      }
    }
  }
}

// Whether `table` packs dtype t (CpuKernels::packs_format).
bool TablePacks(const CpuKernels& table, DType t) {
  PackedFormat f;
  return PackedFormatFor(t, &f) && (table.packs_format == nullptr || table.packs_format(f));
}

// The tables of this CPU that have a SIMD packed kernel.
std::vector<const CpuKernels*> TablesWithPackedGemm() {
  std::vector<const CpuKernels*> out;
  for (const CpuKernels* k : SupportedCpuKernels()) {
    if (k->packed_gemm != nullptr) out.push_back(k);
  }
  return out;
}

TEST(PackedGemmSimdTest, GivesTheReferenceBits) {
  const std::vector<const CpuKernels*> tables = TablesWithPackedGemm();
  if (tables.empty()) GTEST_SKIP() << "this CPU has no SIMD packed GEMM (needs AVX-512 VNNI)";
  std::mt19937 rng(6);
  for (const CpuKernels* table : tables) {
    for (DType t : kPackedTypes) {
      if (!TablePacks(*table, t)) continue;
      // Every remainder of the 8-row activation chunks, full and partial last groups.
      for (int64_t n : {1, 2, 3, 4, 5, 6, 7, 8, 9, 17}) {
        for (const auto& [k, m] : {std::pair<int64_t, int64_t>{32, 16}, {96, 45}, {576, 33}}) {
          SCOPED_TRACE(absl::StrFormat("%s %s n=%d k=%d m=%d", table->isa, DTypeName(t), n, k, m));
          const Problem p(t, n, k, m, rng);
          const std::vector<float> want = p.Run(PackedGemmReference);
          const std::vector<float> got = p.Run(table->packed_gemm);
          ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
        }
      }
    }
  }
}

// Q8_0 at its extremes: weight quants of -128 against activation quants of +-127, the
// largest pair sums of the AVX2 kernel's |w| x sign(w)·a products (2·128·127 < 2^15).
TEST(PackedGemmSimdTest, Q8ExtremesGiveTheReferenceBits) {
  const std::vector<const CpuKernels*> tables = TablesWithPackedGemm();
  if (tables.empty()) GTEST_SKIP() << "this CPU has no SIMD packed GEMM";
  std::mt19937 rng(8);
  Problem p(DType::kQ8_0, /*n=*/2, /*k=*/64, /*m=*/16, rng);
  for (int64_t b = 0; b < p.m * p.k / 32; ++b) {
    auto& blk = reinterpret_cast<BlockQ8_0*>(p.w.data())[b];
    blk.d = FloatToFp16(0.01f);
    for (int8_t& q : blk.qs) q = -128;
  }
  p.packed = Pack(TensorView{p.type, {p.m, p.k}, p.w.data()});
  std::vector<float> x(static_cast<size_t>(2 * p.k));
  for (int64_t i = 0; i < p.k; ++i) {
    x[i] = 1.0f;                               // every quant 127
    x[p.k + i] = i % 2 == 0 ? 1.0f : -1.0f;   // +-127
  }
  for (int64_t j = 0; j < 2; ++j) {
    ASSERT_TRUE(QuantizeRow(DType::kQ8_0, x.data() + j * p.k, p.act.data() + j * p.act_row_bytes,
                            p.k)
                    .ok());
  }
  FillActBlockInfo(p.packed->format(), p.act.data(), p.act_row_bytes, 2, p.k / 32, p.info.data());
  const std::vector<float> want = p.Run(PackedGemmReference);
  for (float y : std::span(want).first(16)) EXPECT_LT(y, 0.0f);  // -128 x 127 summed: negative
  for (const CpuKernels* table : tables) {
    if (!TablePacks(*table, DType::kQ8_0)) continue;
    SCOPED_TRACE(std::string(table->isa));
    const std::vector<float> got = p.Run(table->packed_gemm);
    ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
  }
}

TEST(PackedGemmSimdTest, WritesOnlyItsGroupsColumns) {
  const std::vector<const CpuKernels*> tables = TablesWithPackedGemm();
  if (tables.empty()) GTEST_SKIP() << "this CPU has no SIMD packed GEMM (needs AVX-512 VNNI)";
  std::mt19937 rng(7);
  const Problem p(DType::kQ4_1, 3, 64, 40, rng);  // groups: rows 0-15, 16-31, 32-39
  std::vector<float> y(static_cast<size_t>(3 * 40), -7.0f);
  const PackedGemmArgs args{.w = p.packed.get(),
                            .act = p.act.data(),
                            .act_row_bytes = p.act_row_bytes,
                            .info = p.info.data(),
                            .n = 3,
                            .y = y.data(),
                            .ldy = 40};
  tables[0]->packed_gemm(args, 1, 3);
  for (int64_t j = 0; j < 3; ++j) {
    for (int64_t r = 0; r < 40; ++r) {
      if (r < 16) {
        EXPECT_EQ(y[j * 40 + r], -7.0f) << j << "," << r;
      } else {
        EXPECT_NE(y[j * 40 + r], -7.0f) << j << "," << r;
      }
    }
  }
}

// CpuBackend tables whose packed GEMM is the SIMD one where this CPU has it, else the
// portable reference, so that the backend's packed path runs on every machine.
std::vector<CpuKernels> PackingTables() {
  std::vector<CpuKernels> out;
  for (const CpuKernels* k : SupportedCpuKernels()) {
    CpuKernels table = *k;
    if (table.packed_gemm == nullptr) table.packed_gemm = PackedGemmReference;
    out.push_back(table);
  }
  return out;
}

TEST(CpuBackendPackedTest, RowsAreTheSameBitsInAnyBatchAndThreadCount) {
  std::mt19937 rng(8);
  for (const CpuKernels& table : PackingTables()) {
    for (DType t : kPackedTypes) {
      if (!TablePacks(table, t)) continue;  // e.g. Q8_0 on AVX2
      SCOPED_TRACE(absl::StrFormat("%s %s", table.isa, DTypeName(t)));
      const int64_t k = 192, m = 83, n = 13;
      const std::vector<uint8_t> w = RandomWeights(t, m, k, rng);
      TensorView view{t, {m, k}, w.data()};
      CpuBackend one(1, &table), three(3, &table);
      ASSERT_TRUE(one.packs_weights());
      absl::StatusOr<std::unique_ptr<PackedWeight>> packed = three.PackWeight(view);
      ASSERT_TRUE(packed.ok()) << packed.status();
      ASSERT_NE(*packed, nullptr);
      view.packed = packed->get();
      const std::vector<float> x = RandomFloats(n * k, rng);
      std::vector<float> batch(n * m), batch3(n * m), single(m);
      ASSERT_TRUE(three.MatMul(x.data(), n, k, view, batch3.data()).ok());
      ASSERT_TRUE(one.MatMul(x.data(), n, k, view, batch.data()).ok());
      EXPECT_EQ(std::memcmp(batch.data(), batch3.data(), batch.size() * sizeof(float)), 0);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_TRUE(three.MatMul(x.data() + i * k, 1, k, view, single.data()).ok());
        ASSERT_EQ(std::memcmp(single.data(), batch.data() + i * m, m * sizeof(float)), 0)
            << "row " << i;
      }
    }
  }
}

TEST(CpuBackendPackedTest, AStackedMatMulGivesEachPartsBits) {
  std::mt19937 rng(12);
  for (const CpuKernels& table : PackingTables()) {
    for (DType t : kPackedTypes) {
      if (!TablePacks(table, t)) continue;  // e.g. Q8_0 on AVX2
      SCOPED_TRACE(absl::StrFormat("%s %s", table.isa, DTypeName(t)));
      CpuBackend be(2, &table);
      const int64_t k = 96, n = 11;
      const std::vector<uint8_t> a = RandomWeights(t, 40, k, rng), b = RandomWeights(t, 7, k, rng);
      std::vector<TensorView> parts = {{t, {40, k}, a.data()}, {t, {7, k}, b.data()}};
      absl::StatusOr<std::unique_ptr<PackedWeight>> stacked = be.PackWeights(parts);
      ASSERT_TRUE(stacked.ok() && *stacked != nullptr);
      TensorView view{t, {47, k}, nullptr};
      view.packed = stacked->get();
      const std::vector<float> x = RandomFloats(n * k, rng);
      std::vector<float> y(n * 47);
      ASSERT_TRUE(be.MatMul(x.data(), n, k, view, y.data()).ok());
      int64_t col = 0;
      for (TensorView& part : parts) {
        absl::StatusOr<std::unique_ptr<PackedWeight>> own = be.PackWeight(part);
        ASSERT_TRUE(own.ok() && *own != nullptr);
        part.packed = own->get();
        std::vector<float> want(n * part.dim(0));
        ASSERT_TRUE(be.MatMul(x.data(), n, k, part, want.data()).ok());
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(std::memcmp(y.data() + i * 47 + col, want.data() + i * part.dim(0),
                                part.dim(0) * sizeof(float)), 0) << "row " << i;
        }
        col += part.dim(0);
      }
    }
  }
}

TEST(CpuBackendPackedTest, EmbeddingRowsFromThePackedCopyAreTheSame) {
  std::mt19937 rng(10);
  for (const CpuKernels& table : PackingTables()) {
    for (DType t : kPackedTypes) {
      if (!TablePacks(table, t)) continue;  // e.g. Q8_0 on AVX2
      SCOPED_TRACE(absl::StrFormat("%s %s", table.isa, DTypeName(t)));
      const std::vector<uint8_t> w = RandomWeights(t, 37, 64, rng);
      TensorView view{t, {37, 64}, w.data()};
      CpuBackend be(2, &table);
      const std::vector<int32_t> ids = {0, 36, 17, 16, 15, 17};
      std::vector<float> want(ids.size() * 64), got(ids.size() * 64);
      ASSERT_TRUE(be.Embedding(view, ids, want.data()).ok());
      absl::StatusOr<std::unique_ptr<PackedWeight>> packed = be.PackWeight(view);
      ASSERT_TRUE(packed.ok() && *packed != nullptr);
      view.packed = packed->get();
      ASSERT_TRUE(be.Embedding(view, ids, got.data()).ok());
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
      const std::vector<int32_t> bad = {37};
      EXPECT_EQ(be.Embedding(view, bad, got.data()).code(), absl::StatusCode::kInvalidArgument);
      view.shape[0] = 36;  // a view the copy was not made from
      EXPECT_EQ(be.Embedding(view, std::span<const int32_t>(ids).subspan(0, 1), got.data()).code(),
                absl::StatusCode::kInvalidArgument);
    }
  }
}

TEST(CpuBackendPackedTest, NoPackingWhenTurnedOffOrWithoutAKernel) {
  std::vector<uint8_t> w(16 * 20 * 32);
  const TensorView view{DType::kQ4_1, {16, 32}, w.data()};
  CpuKernels table = *SupportedCpuKernels()[0];
  table.packed_gemm = PackedGemmReference;
  CpuBackend off(1, &table, /*batch_invariant=*/false, /*pack_weights=*/false);
  EXPECT_FALSE(off.packs_weights());
  ASSERT_TRUE(off.PackWeight(view).ok());
  EXPECT_EQ(*off.PackWeight(view), nullptr);
  table.packed_gemm = nullptr;
  CpuBackend none(1, &table);
  EXPECT_FALSE(none.packs_weights());
  EXPECT_EQ(*none.PackWeight(view), nullptr);
}

TEST(CpuBackendPackedTest, RefusesAPackedCopyOfAnotherMatrix) {
  CpuKernels table = *SupportedCpuKernels()[0];
  if (table.packed_gemm == nullptr) table.packed_gemm = PackedGemmReference;
  CpuBackend be(1, &table);
  std::mt19937 rng(9);
  const std::vector<uint8_t> w = RandomWeights(DType::kQ4_1, 32, 64, rng);
  const TensorView small{DType::kQ4_1, {16, 64}, w.data()};
  TensorView big{DType::kQ4_1, {32, 64}, w.data()};
  absl::StatusOr<std::unique_ptr<PackedWeight>> packed = be.PackWeight(small);
  ASSERT_TRUE(packed.ok());
  big.packed = packed->get();
  const std::vector<float> x = RandomFloats(64, rng);
  std::vector<float> y(32);
  absl::Status s = be.MatMul(x.data(), 1, 64, big, y.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("w.packed"), std::string::npos) << s;

  // A table without a packed GEMM reads the file's layout of a matrix another "cpu" backend
  // packed, and refuses a stacked one, which has no such layout.
  CpuKernels plain_table = table;
  plain_table.packed_gemm = nullptr;
  CpuBackend plain(1, &plain_table);
  TensorView small_packed = small;
  small_packed.packed = packed->get();
  std::vector<float> got(16), want(16);
  ASSERT_TRUE(plain.MatMul(x.data(), 1, 64, small_packed, got.data()).ok());
  ASSERT_TRUE(plain.MatMul(x.data(), 1, 64, small, want.data()).ok());
  EXPECT_EQ(got, want);
  TensorView stacked_view{DType::kQ4_1, {16, 64}, nullptr};
  stacked_view.packed = packed->get();
  s = plain.MatMul(x.data(), 1, 64, stacked_view, got.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;

  struct Foreign : PackedWeight {
  } foreign;
  big.packed = &foreign;
  s = be.MatMul(x.data(), 1, 64, big, y.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

}  // namespace
}  // namespace tessera
