// GgufWriter -> GgufFile round trips: every metadata type, every DType, alignments.
#include "formats/gguf_writer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "formats/gguf_reader.h"

namespace tessera {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::unique_ptr<GgufFile> ParseOrDie(const std::string& image) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f =
      GgufFile::Parse("mem.gguf", reinterpret_cast<const uint8_t*>(image.data()), image.size());
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? std::move(f).value() : nullptr;
}

TEST(GgufWriter, EveryMetadataTypeRoundTrips) {
  GgufWriter w;
  std::vector<std::pair<std::string, GgufValue>> kvs = {
      {"u8", GgufValue::U8(250)},
      {"i8", GgufValue::I8(-120)},
      {"u16", GgufValue::U16(65000)},
      {"i16", GgufValue::I16(-32000)},
      {"u32", GgufValue::U32(4000000000u)},
      {"i32", GgufValue::I32(-2000000000)},
      {"u64", GgufValue::U64(18000000000000000000ull)},
      {"i64", GgufValue::I64(-9000000000000000000ll)},
      {"f32", GgufValue::F32(0.1f)},
      {"f64", GgufValue::F64(0.1)},
      {"b", GgufValue::Bool(true)},
      {"s", GgufValue::String(std::string("h\0llo \xe2\x9c\x93", 10))},
      {"empty", GgufValue::String("")},
      {"strs", GgufValue::StringArray({"a", "", "ccc"})},
      {"ints", GgufValue::I32Array({1, -2, 3})},
      {"floats", GgufValue::F32Array({0.5f, -1.25f})},
      {"u64s", GgufValue::Array(GgufType::kUint64, {GgufValue::U64(1), GgufValue::U64(2)})},
      {"bools", GgufValue::Array(GgufType::kBool, {GgufValue::Bool(false), GgufValue::Bool(true)})},
      {"noitems", GgufValue::Array(GgufType::kFloat64, {})},
      {"nested", GgufValue::Array(GgufType::kArray,
                                  {GgufValue::I32Array({1, 2}), GgufValue::I32Array({})})},
  };
  for (const auto& [k, v] : kvs) ASSERT_TRUE(w.AddValue(k, v).ok()) << k;
  absl::StatusOr<std::string> image = w.Serialize();
  ASSERT_TRUE(image.ok()) << image.status();
  std::unique_ptr<GgufFile> f = ParseOrDie(*image);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->version(), 3u);
  ASSERT_EQ(f->metadata().size(), kvs.size());
  for (size_t i = 0; i < kvs.size(); ++i) {
    EXPECT_EQ(f->metadata()[i].first, kvs[i].first);
    EXPECT_EQ(f->metadata()[i].second, kvs[i].second) << kvs[i].first << ": "
                                                      << f->metadata()[i].second.DebugString();
  }
  EXPECT_EQ(*f->GetInt("u8"), 250);
  EXPECT_EQ(*f->GetInt("i64"), -9000000000000000000ll);
  EXPECT_EQ(f->GetInt("u64").status().code(), absl::StatusCode::kInvalidArgument);  // > int64
  EXPECT_EQ(*f->GetFloat("f64"), 0.1);
  EXPECT_EQ(*f->GetFloat("f32"), static_cast<double>(0.1f));
  EXPECT_EQ(*f->GetFloat("i32"), -2000000000.0);
  EXPECT_EQ(f->GetString("s")->size(), 10u);
  EXPECT_THAT(*f->GetStringArray("strs"), ElementsAre("a", "", "ccc"));
  EXPECT_THAT(*f->GetIntArray("ints"), ElementsAre(1, -2, 3));
  EXPECT_THAT(*f->GetFloatArray("floats"), ElementsAre(0.5, -1.25));
  EXPECT_THAT(*f->GetFloatArray("ints"), ElementsAre(1.0, -2.0, 3.0));
  EXPECT_TRUE(f->GetFloatArray("noitems")->empty());
  EXPECT_EQ(f->GetIntArray("nested").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f->Find("nope"), nullptr);
  EXPECT_EQ(f->Find("nested")->DebugString(), "[[1, 2], []]");
}

TEST(GgufWriter, EveryDTypeRoundTripsWithAlignment) {
  const DType kAll[] = {DType::kF32,  DType::kF16,  DType::kQ4_0, DType::kQ4_1, DType::kQ5_0,
                        DType::kQ5_1, DType::kQ8_0, DType::kQ8_1, DType::kQ2_K, DType::kQ3_K,
                        DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kQ8_K, DType::kI8,
                        DType::kI16,  DType::kI32,  DType::kI64,  DType::kF64,  DType::kBF16};
  for (uint32_t alignment : {1u, 32u, 64u, 256u}) {
    GgufWriter w(alignment);
    std::vector<std::string> payloads;
    int i = 0;
    for (DType t : kAll) {
      const int64_t ne0 = Traits(t).block_elems * 2;
      const int64_t rows = 3;
      std::string bytes(static_cast<size_t>(*RowBytes(t, ne0 * rows)), '\0');
      for (size_t b = 0; b < bytes.size(); ++b) bytes[b] = static_cast<char>(b * 7 + i);
      ASSERT_TRUE(w.AddTensorRowMajor(absl::StrCat("t", i), t, {rows, ne0}, bytes.data(),
                                      bytes.size()).ok());
      payloads.push_back(bytes);
      ++i;
    }
    absl::StatusOr<std::string> image = w.Serialize();
    ASSERT_TRUE(image.ok()) << image.status();
    std::unique_ptr<GgufFile> f = ParseOrDie(*image);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->alignment(), alignment);
    EXPECT_EQ(f->data_offset() % alignment, 0u);
    if (alignment != 32) {
      EXPECT_EQ(*f->GetInt("general.alignment"), alignment);
    }
    ASSERT_EQ(f->tensors().size(), std::size(kAll));
    for (size_t k = 0; k < std::size(kAll); ++k) {
      const GgufTensorInfo& t = f->tensors()[k];
      EXPECT_EQ(t.name, absl::StrCat("t", k));
      EXPECT_EQ(t.dtype, kAll[k]);
      EXPECT_THAT(t.ne, ElementsAre(Traits(kAll[k]).block_elems * 2, 3));
      EXPECT_THAT(t.view.shape, ElementsAre(3, Traits(kAll[k]).block_elems * 2));
      EXPECT_EQ(t.offset % alignment, 0u);
      ASSERT_EQ(t.num_bytes, static_cast<int64_t>(payloads[k].size()));
      EXPECT_EQ(std::memcmp(t.view.data, payloads[k].data(), payloads[k].size()), 0)
          << DTypeName(kAll[k]);
    }
  }
}

TEST(GgufWriter, GgmlOrderAndRowMajorAgree) {
  float data[6] = {1, 2, 3, 4, 5, 6};
  GgufWriter w;
  ASSERT_TRUE(w.AddTensor("a", DType::kF32, {3, 2}, data, sizeof(data)).ok());
  ASSERT_TRUE(w.AddTensorRowMajor("b", DType::kF32, {2, 3}, data, sizeof(data)).ok());
  std::unique_ptr<GgufFile> f = ParseOrDie(*w.Serialize());
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->FindTensor("a")->ne, f->FindTensor("b")->ne);
  EXPECT_THAT(f->FindTensor("a")->view.shape, ElementsAre(2, 3));
}

TEST(GgufWriter, WritesVersion2AndFiles) {
  GgufWriter w;
  w.set_version(2);
  ASSERT_TRUE(w.AddString("general.architecture", "llama").ok());
  const std::string path = ::testing::TempDir() + "/writer_v2.gguf";
  ASSERT_TRUE(w.WriteFile(path).ok());
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->version(), 2u);
  EXPECT_EQ((*f)->path(), path);
  EXPECT_EQ(*(*f)->GetString("general.architecture"), "llama");
  EXPECT_TRUE((*f)->tensors().empty());
  std::filesystem::remove(path);
}

TEST(GgufWriter, RejectsBadInput) {
  GgufWriter w;
  ASSERT_TRUE(w.AddUint32("k", 1).ok());
  absl::Status dup = w.AddUint32("k", 2);
  EXPECT_EQ(dup.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dup.message(), HasSubstr("'k'"));
  absl::Status mixed = w.AddValue(
      "m", GgufValue::Array(GgufType::kInt32, {GgufValue::I32(1), GgufValue::F32(2)}));
  EXPECT_EQ(mixed.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mixed.message(), HasSubstr("'m'"));
  uint8_t q[34] = {};
  absl::Status block = w.AddTensor("q", DType::kQ8_0, {16, 1}, q, 17);
  EXPECT_EQ(block.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(block.message(), HasSubstr("'q'"));
  absl::Status size = w.AddTensor("q", DType::kQ8_0, {32, 1}, q, 33);
  EXPECT_EQ(size.code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(w.AddTensor("q", DType::kQ8_0, {32, 1}, q, 34).ok());
  EXPECT_EQ(w.AddTensor("q", DType::kQ8_0, {32, 1}, q, 34).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GgufWriter(48).Serialize().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(GgufWriter, AlignmentKeyMustAgreeWithTheLayout) {
  GgufWriter w(64);
  ASSERT_TRUE(w.AddUint32("general.alignment", 32).ok());
  absl::StatusOr<std::string> image = w.Serialize();
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(), HasSubstr("general.alignment"));

  GgufWriter same(64);
  ASSERT_TRUE(same.AddUint32("general.alignment", 64).ok());
  float x[4] = {1, 2, 3, 4};
  ASSERT_TRUE(same.AddTensor("x", DType::kF32, {4}, x, sizeof(x)).ok());
  image = same.Serialize();
  ASSERT_TRUE(image.ok()) << image.status();
  auto f = GgufFile::Parse("same.gguf", reinterpret_cast<const uint8_t*>(image->data()),
                           image->size());
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->alignment(), 64u);
  EXPECT_EQ(std::memcmp((*f)->FindTensor("x")->view.data, x, sizeof(x)), 0);
}

TEST(GgufWriter, RejectsDimsWhoseProductOverflows) {
  GgufWriter w;
  const int64_t big = int64_t{1} << 40;
  absl::Status s = w.AddTensor("huge", DType::kF32, {big, big}, nullptr, 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'huge'"));
  EXPECT_THAT(s.message(), HasSubstr("overflows"));
  // Elements fit, bytes do not.
  s = w.AddTensor("wide", DType::kF32, {int64_t{1} << 62}, nullptr, 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'wide'"));
}

// Deferred tensors: WriteFile streams what the fillers produce, at the same offsets as the
// in-memory image of the same contents.
TEST(GgufWriter, DeferredTensorsStreamTheSameFileAsCopiedOnes) {
  const int64_t rows = 3000, cols = 4096;  // 48 MiB of f32: several filler calls
  const auto value = [](int64_t r, int64_t c) { return static_cast<float>(r * 7 + c % 13); };
  std::vector<float> big(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) big[r * cols + c] = value(r, c);
  }
  const float small[3] = {1, 2, 3};
  const uint8_t q[34] = {1, 2, 3};
  GgufWriter copied, deferred;
  for (GgufWriter* w : {&copied, &deferred}) ASSERT_TRUE(w->AddString("k", "v").ok());
  ASSERT_TRUE(copied.AddTensorRowMajor("small", DType::kF32, {3}, small, sizeof(small)).ok());
  ASSERT_TRUE(deferred.AddTensorRowMajor("small", DType::kF32, {3}, small, sizeof(small)).ok());
  ASSERT_TRUE(copied.AddTensorRowMajor("big", DType::kF32, {rows, cols}, big.data(),
                                       big.size() * sizeof(float)).ok());
  int calls = 0;
  int64_t next_row = 0;
  ASSERT_TRUE(deferred.AddDeferredTensorRowMajor(
      "big", DType::kF32, {rows, cols},
      [&](int64_t first, int64_t n, void* dst) {
        EXPECT_EQ(first, next_row);
        next_row = first + n;
        ++calls;
        auto* out = static_cast<float*>(dst);
        for (int64_t r = 0; r < n; ++r) {
          for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = value(first + r, c);
        }
        return absl::OkStatus();
      }).ok());
  ASSERT_TRUE(copied.AddTensorRowMajor("q", DType::kQ8_0, {32}, q, sizeof(q)).ok());
  ASSERT_TRUE(deferred.AddDeferredTensorRowMajor("q", DType::kQ8_0, {32},
                                                 [&](int64_t first, int64_t n, void* dst) {
                                                   EXPECT_EQ(first, 0);
                                                   EXPECT_EQ(n, 1);
                                                   std::memcpy(dst, q, sizeof(q));
                                                   return absl::OkStatus();
                                                 }).ok());

  absl::StatusOr<std::string> image = copied.Serialize();
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(deferred.Serialize().status().code(), absl::StatusCode::kInvalidArgument);
  const std::string path = ::testing::TempDir() + "deferred.gguf";
  int64_t last_done = 0, last_total = 0;
  ASSERT_TRUE(deferred.WriteFile(path, [&](int64_t done, int64_t total) {
    EXPECT_GE(done, last_done);
    last_done = done;
    last_total = total;
  }).ok());
  EXPECT_EQ(next_row, rows);
  EXPECT_GT(calls, 1);
  EXPECT_EQ(last_done, last_total);
  EXPECT_EQ(last_total, static_cast<int64_t>(sizeof(small) + big.size() * 4 + sizeof(q)));
  std::ifstream in(path, std::ios::binary);
  const std::string written((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(written == *image) << written.size() << " vs " << image->size();
  std::remove(path.c_str());
}

TEST(GgufWriter, DeferredTensorErrors) {
  GgufWriter w;
  EXPECT_EQ(w.AddDeferredTensor("x", DType::kF32, {4}, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddDeferredTensor("q", DType::kQ8_0, {31},
                                [](int64_t, int64_t, void*) { return absl::OkStatus(); })
                .code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(w.AddDeferredTensor("x", DType::kF32, {4}, [](int64_t, int64_t, void*) {
                 return absl::DataLossError("filler failed");
               }).ok());
  EXPECT_EQ(w.AddDeferredTensor("x", DType::kF32, {4},
                                [](int64_t, int64_t, void*) { return absl::OkStatus(); })
                .code(),
            absl::StatusCode::kInvalidArgument);  // added twice
  const std::string path = ::testing::TempDir() + "deferred_error.gguf";
  absl::Status s = w.WriteFile(path);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("filler failed"));
  std::remove(path.c_str());
  s = w.WriteFile("/nonexistent-dir/x.gguf");
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("/nonexistent-dir/x.gguf"));
}

}  // namespace
}  // namespace tessera
