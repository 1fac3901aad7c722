// GgufFile rejects malformed files with INVALID_ARGUMENT naming the file and the field, and
// never reads out of bounds (this suite also runs under the sanitizer fuzz build's seeds).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "formats/gguf_reader.h"
#include "formats/gguf_writer.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

constexpr char kName[] = "bad/test.gguf";

// Hand-assembled GGUF images, so that invalid ones can be built (the writer refuses to).
class Raw {
 public:
  template <typename T>
  Raw& Put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    s_.append(b, sizeof(T));
    return *this;
  }
  Raw& Str(const std::string& x) {
    Put<uint64_t>(x.size());
    s_ += x;
    return *this;
  }
  Raw& Header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    s_ += "GGUF";
    return Put<uint32_t>(version).Put<uint64_t>(n_tensors).Put<uint64_t>(n_kv);
  }
  Raw& KvU32(const std::string& key, uint32_t v) {
    return Str(key).Put<uint32_t>(4).Put<uint32_t>(v);
  }
  Raw& Tensor(const std::string& name, std::vector<int64_t> ne, uint32_t type, uint64_t offset) {
    Str(name).Put<uint32_t>(static_cast<uint32_t>(ne.size()));
    for (int64_t d : ne) Put<int64_t>(d);
    return Put<uint32_t>(type).Put<uint64_t>(offset);
  }
  Raw& PadTo(size_t alignment) {
    s_.resize((s_.size() + alignment - 1) / alignment * alignment, '\0');
    return *this;
  }
  Raw& Bytes(size_t n) {
    s_.append(n, '\x11');
    return *this;
  }
  const std::string& str() const { return s_; }

 private:
  std::string s_;
};

absl::Status ParseStatus(const std::string& image) {
  return GgufFile::Parse(kName, reinterpret_cast<const uint8_t*>(image.data()), image.size())
      .status();
}

void ExpectInvalid(const std::string& image, const std::string& field,
                   const std::string& detail = "") {
  absl::Status s = ParseStatus(image);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr(kName));
  EXPECT_THAT(s.message(), HasSubstr(field));
  if (!detail.empty()) {
    EXPECT_THAT(s.message(), HasSubstr(detail));
  }
}

// One f32 [4, 2] tensor, one q8_0 [32] tensor and a few keys.
std::string SmallValidImage() {
  GgufWriter w;
  EXPECT_TRUE(w.AddString("general.architecture", "llama").ok());
  EXPECT_TRUE(w.AddStringArray("tokenizer.ggml.tokens", {"a", "b"}).ok());
  EXPECT_TRUE(w.AddValue("x.nested", GgufValue::Array(GgufType::kArray,
                                                      {GgufValue::F32Array({1.0f})})).ok());
  float f[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  uint8_t q[34] = {1, 2, 3};
  EXPECT_TRUE(w.AddTensor("w", DType::kF32, {4, 2}, f, sizeof(f)).ok());
  EXPECT_TRUE(w.AddTensor("q", DType::kQ8_0, {32}, q, sizeof(q)).ok());
  return *w.Serialize();
}

TEST(GgufReaderErrors, SmallValidImageParses) {
  EXPECT_TRUE(ParseStatus(SmallValidImage()).ok());
}

TEST(GgufReaderErrors, EveryTruncationIsRejected) {
  const std::string image = SmallValidImage();
  for (size_t n = 0; n < image.size(); ++n) {
    // A copy of exactly n bytes, so that a read past the end is caught by ASan.
    std::unique_ptr<uint8_t[]> prefix(new uint8_t[n + 1]);
    std::memcpy(prefix.get(), image.data(), n);
    absl::Status s = GgufFile::Parse(kName, prefix.get(), n).status();
    ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << "prefix " << n << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr(kName)) << n;
  }
}

TEST(GgufReaderErrors, ZeroByteTensorWithoutDataSectionStaysInBounds) {
  // The file ends right after the tensor table: the aligned data section would start past
  // the end. A zero-byte tensor is still valid, and its pointer must not leave the image.
  const std::string image = Raw().Header(3, 1, 0).Tensor("empty", {0, 4}, 0, 0).str();
  ASSERT_NE(image.size() % 32, 0u);
  const auto* data = reinterpret_cast<const uint8_t*>(image.data());
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Parse(kName, data, image.size());
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ((*f)->tensors().size(), 1u);
  const GgufTensorInfo& t = (*f)->tensors()[0];
  EXPECT_EQ(t.num_bytes, 0);
  EXPECT_GT((*f)->data_offset(), image.size());
  const auto* p = static_cast<const uint8_t*>(t.view.data);
  EXPECT_GE(p, data);
  EXPECT_LE(p, data + image.size());
  // A tensor with bytes there is rejected, naming it.
  ExpectInvalid(Raw().Header(3, 1, 0).Tensor("w", {4}, 0, 0).str(), "tensor 'w'",
                "outside the file");
}

TEST(GgufReaderErrors, WrongMagic) {
  std::string image = SmallValidImage();
  image[0] = 'X';
  ExpectInvalid(image, "magic");
}

TEST(GgufReaderErrors, UnsupportedVersions) {
  for (uint32_t v : {0u, 1u, 4u, 0x03000000u}) {
    ExpectInvalid(Raw().Header(v, 0, 0).str(), "version",
                  absl::StrCat("unsupported GGUF version ", v));
  }
  EXPECT_TRUE(ParseStatus(Raw().Header(2, 0, 0).str()).ok());
  EXPECT_TRUE(ParseStatus(Raw().Header(3, 0, 0).str()).ok());
}

TEST(GgufReaderErrors, AbsurdCounts) {
  ExpectInvalid(Raw().Header(3, uint64_t{1} << 60, 0).str(), "tensor_count");
  ExpectInvalid(Raw().Header(3, 0, ~uint64_t{0}).str(), "metadata_kv_count");
  ExpectInvalid(Raw().Header(3, 0, 1).Put<uint64_t>(~uint64_t{0}).Bytes(16).str(),
                "metadata key #0", "exceeds");
  // A string value whose length runs past the end.
  ExpectInvalid(Raw().Header(3, 0, 1).Str("k").Put<uint32_t>(8).Put<uint64_t>(1000).Bytes(4).str(),
                "metadata key 'k'", "exceeds");
  // An array claiming 2^61 uint64 items.
  ExpectInvalid(Raw().Header(3, 0, 1).Str("arr").Put<uint32_t>(9).Put<uint32_t>(10)
                    .Put<uint64_t>(uint64_t{1} << 61).Bytes(8).str(),
                "metadata key 'arr'", "cannot fit");
}

TEST(GgufReaderErrors, BadValues) {
  ExpectInvalid(Raw().Header(3, 0, 1).Str("t").Put<uint32_t>(13).Bytes(8).str(),
                "metadata key 't'", "unknown value type 13");
  ExpectInvalid(Raw().Header(3, 0, 1).Str("b").Put<uint32_t>(7).Put<uint8_t>(2).str(),
                "metadata key 'b'", "bool");
  ExpectInvalid(Raw().Header(3, 0, 1).Str("a").Put<uint32_t>(9).Put<uint32_t>(99)
                    .Put<uint64_t>(0).str(),
                "metadata key 'a'", "element type 99");
  Raw deep;
  deep.Header(3, 0, 1).Str("deep").Put<uint32_t>(9);
  for (int i = 0; i < 20; ++i) deep.Put<uint32_t>(9).Put<uint64_t>(1);
  deep.Put<uint32_t>(0).Put<uint64_t>(0);
  ExpectInvalid(deep.str(), "metadata key 'deep'", "nested");
}

TEST(GgufReaderErrors, DuplicateKeysAndTensors) {
  ExpectInvalid(Raw().Header(3, 0, 2).KvU32("k", 1).KvU32("k", 2).str(), "metadata key 'k'",
                "duplicate");
  ExpectInvalid(Raw().Header(3, 2, 0).Tensor("x", {4}, 0, 0).Tensor("x", {4}, 0, 32)
                    .PadTo(32).Bytes(64).str(),
                "tensor 'x'", "duplicate");
}

TEST(GgufReaderErrors, Alignment) {
  for (uint32_t a : {0u, 3u, 48u}) {
    ExpectInvalid(Raw().Header(3, 0, 1).KvU32("general.alignment", a).str(),
                  "general.alignment", "power of two");
  }
  ExpectInvalid(Raw().Header(3, 0, 1).Str("general.alignment").Put<uint32_t>(8).Str("64").str(),
                "general.alignment", "integer");
  // A tensor offset that is a multiple of 32 but not of the declared 64.
  ExpectInvalid(Raw().Header(3, 1, 1).KvU32("general.alignment", 64)
                    .Tensor("x", {8}, 0, 32).PadTo(64).Bytes(64).str(),
                "tensor 'x'", "alignment 64");
  absl::StatusOr<std::unique_ptr<GgufFile>> ok = [] {
    static const std::string image = Raw().Header(3, 1, 1).KvU32("general.alignment", 64)
                                         .Tensor("x", {8}, 0, 64).PadTo(64).Bytes(96).str();
    return GgufFile::Parse(kName, reinterpret_cast<const uint8_t*>(image.data()), image.size());
  }();
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)->alignment(), 64u);
  EXPECT_EQ((*ok)->data_offset() % 64, 0u);
}

TEST(GgufReaderErrors, TensorTable) {
  ExpectInvalid(Raw().Header(3, 1, 0).Tensor("x", {1, 1, 1, 1, 1}, 0, 0).PadTo(32).Bytes(4).str(),
                "tensor 'x'", "n_dims 5");
  ExpectInvalid(Raw().Header(3, 1, 0).Tensor("x", {int64_t{1} << 40, int64_t{1} << 40}, 0, 0)
                    .str(),
                "tensor 'x'", "overflow");
  // A zero dim first does not hide an overflowing product of the others (found by the
  // fuzzer: TensorView::NumElements multiplies the outer dims first).
  ExpectInvalid(Raw().Header(3, 1, 0)
                    .Tensor("x", {0, int64_t{1} << 40, int64_t{1} << 40}, 0, 0)
                    .str(),
                "tensor 'x'", "overflow");
  // Nor does a zero dim hide a row whose byte size overflows (found by the fuzzer:
  // 2^62 f32 elements per row, TensorView::RowBytes multiplies by 4).
  ExpectInvalid(Raw().Header(3, 1, 0).Tensor("x", {int64_t{1} << 62, 0}, 0, 0).str(),
                "tensor 'x'", "byte size overflows");
  ExpectInvalid(Raw().Header(3, 1, 0).Tensor("x", {4, -1}, 0, 0).str(), "tensor 'x'",
                "negative");
  ExpectInvalid(Raw().Header(3, 1, 0).Tensor("x", {8}, 16, 0).PadTo(32).Bytes(64).str(),
                "tensor 'x'", "unsupported tensor type 16 for tensor 'x'");
  ExpectInvalid(Raw().Header(3, 1, 0).Tensor("x", {33}, 8, 0).PadTo(32).Bytes(64).str(),
                "tensor 'x'", "block size 32");
  ExpectInvalid(Raw().Header(3, 1, 0).Tensor("x", {8}, 0, 8).PadTo(32).Bytes(64).str(),
                "tensor 'x'", "alignment 32");
  // 8 f32 = 32 bytes at offset 32, but only 48 data bytes.
  ExpectInvalid(Raw().Header(3, 1, 0).Tensor("x", {8}, 0, 32).PadTo(32).Bytes(48).str(),
                "tensor 'x'", "outside the file");
  ExpectInvalid(Raw().Header(3, 1, 0).Tensor("x", {8}, 0, ~uint64_t{0} - 31).PadTo(32).str(),
                "tensor 'x'", "outside the file");
  // Tensors may overlap (llama.cpp never writes it, but nothing forbids it).
  EXPECT_TRUE(ParseStatus(Raw().Header(3, 2, 0).Tensor("a", {8}, 0, 0).Tensor("b", {4}, 0, 0)
                              .PadTo(32).Bytes(32).str()).ok());
}

TEST(GgufReaderErrors, OpenNamesThePathOnDisk) {
  const std::string path = ::testing::TempDir() + "/bad_magic.gguf";
  {
    std::ofstream f(path, std::ios::binary);
    f << "NOTAGGUFFILE-------------";
  }
  absl::Status s = GgufFile::Open(path).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr(path));
  EXPECT_THAT(s.message(), HasSubstr("magic"));
  std::filesystem::remove(path);
  EXPECT_EQ(GgufFile::Open(::testing::TempDir()).status().code(),
            absl::StatusCode::kInvalidArgument);  // a directory
}

}  // namespace
}  // namespace tessera
