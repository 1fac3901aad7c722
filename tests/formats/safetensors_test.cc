// SafetensorsFile / SafetensorsCheckpoint: good files, sharded checkpoints, bad headers.
#include "formats/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/formats/safetensors_builder.h"

namespace tessera {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::BytesOf;
using testing::SafetensorsBuilder;
namespace fs = std::filesystem;

constexpr char kName[] = "bad/model.safetensors";

absl::StatusOr<std::unique_ptr<SafetensorsFile>> ParseImage(const std::string& image) {
  return SafetensorsFile::Parse(kName, reinterpret_cast<const uint8_t*>(image.data()),
                                image.size());
}

void ExpectInvalid(const std::string& image, const std::string& field, const std::string& detail) {
  absl::Status s = ParseImage(image).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr(kName));
  EXPECT_THAT(s.message(), HasSubstr(field));
  EXPECT_THAT(s.message(), HasSubstr(detail));
}

SafetensorsBuilder ThreeTensors() {
  SafetensorsBuilder b;
  b.Add("b.f32", "F32", {2, 3}, BytesOf(std::vector<float>{1, 2, 3, 4, 5, 6}));
  b.Add("a.f16", "F16", {4}, BytesOf(std::vector<uint16_t>{0x3c00, 0, 0, 0xc000}));
  b.Add("c.bf16", "BF16", {1, 2}, BytesOf(std::vector<uint16_t>{0x3f80, 0x4000}));
  b.Metadata("format", "pt");
  return b;
}

TEST(Safetensors, ParsesAllAcceptedDtypes) {
  const std::string image = ThreeTensors().Build();
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = ParseImage(image);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ((*f)->tensors().size(), 3u);
  EXPECT_EQ((*f)->tensors()[0].name, "a.f16");  // sorted by name
  const SafetensorsTensor* t = (*f)->Find("b.f32");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->view.dtype, DType::kF32);
  EXPECT_THAT(t->view.shape, ElementsAre(2, 3));
  EXPECT_EQ(static_cast<const float*>(t->view.data)[5], 6.0f);
  EXPECT_EQ((*f)->Find("a.f16")->view.dtype, DType::kF16);
  EXPECT_EQ((*f)->Find("c.bf16")->view.dtype, DType::kBF16);
  EXPECT_EQ(static_cast<const uint16_t*>((*f)->Find("c.bf16")->view.data)[1], 0x4000);
  EXPECT_EQ((*f)->Find("nope"), nullptr);
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
}

TEST(Safetensors, EveryTruncationIsRejected) {
  const std::string image = ThreeTensors().Build();
  for (size_t n = 0; n < image.size(); ++n) {
    std::unique_ptr<uint8_t[]> prefix(new uint8_t[n + 1]);
    std::memcpy(prefix.get(), image.data(), n);
    absl::Status s = SafetensorsFile::Parse(kName, prefix.get(), n).status();
    ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << n << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr(kName));
  }
}

TEST(Safetensors, BadHeaders) {
  ExpectInvalid("abc", "header length", "truncated");
  std::string huge_header = SafetensorsBuilder::Image("{}", "");
  huge_header.replace(0, 8, std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8));
  ExpectInvalid(huge_header, "header length", "larger");
  ExpectInvalid(SafetensorsBuilder::Image("{\"a\": ", ""), "header", "not valid JSON");
  ExpectInvalid(SafetensorsBuilder::Image("[1, 2]", ""), "header", "not a JSON object");
  ExpectInvalid(SafetensorsBuilder::Image(std::string(100, '[') + std::string(100, ']'), ""),
                "header", "nests too deeply");
  ExpectInvalid(SafetensorsBuilder::Image(R"({"__metadata__": {"k": 1}})", ""), "__metadata__ 'k'",
                "string");

  SafetensorsBuilder i8;
  i8.Add("w.int", "I8", {4}, "abcd");
  ExpectInvalid(i8.Build(), "tensor 'w.int'", "unsupported dtype I8");
  SafetensorsBuilder f64;
  f64.Add("w.f64", "F64", {1}, std::string(8, '\0'));
  ExpectInvalid(f64.Build(), "tensor 'w.f64'", "unsupported dtype F64");

  SafetensorsBuilder b = ThreeTensors();
  b.header()["b.f32"]["data_offsets"] = {0, 20};
  ExpectInvalid(b.Build(), "tensor 'b.f32'", "needs 24");
  b = ThreeTensors();
  b.header()["b.f32"]["data_offsets"] = {1000, 1024};
  ExpectInvalid(b.Build(), "tensor 'b.f32'", "outside");
  b = ThreeTensors();
  b.header()["b.f32"]["data_offsets"] = {8, 4};
  ExpectInvalid(b.Build(), "tensor 'b.f32'", "outside");
  b = ThreeTensors();
  b.header()["b.f32"]["shape"] = {2, -3};
  ExpectInvalid(b.Build(), "tensor 'b.f32' shape", "non-negative");
  b = ThreeTensors();
  b.header()["b.f32"]["shape"] = {int64_t{1} << 40, int64_t{1} << 40};
  ExpectInvalid(b.Build(), "tensor 'b.f32'", "overflow");
  b = ThreeTensors();
  b.header()["b.f32"].erase("dtype");
  ExpectInvalid(b.Build(), "tensor 'b.f32'", "dtype");
  b = ThreeTensors();
  b.header()["b.f32"]["data_offsets"] = {0};
  ExpectInvalid(b.Build(), "tensor 'b.f32'", "data_offsets");
  b = ThreeTensors();
  b.header()["b.f32"]["shape"] = "2x3";
  ExpectInvalid(b.Build(), "tensor 'b.f32'", "shape");
  b = ThreeTensors();
  b.header()["b.f32"] = 7;
  ExpectInvalid(b.Build(), "tensor 'b.f32'", "object");
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("st_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void WriteIndex(const nlohmann::json& weight_map) {
    std::ofstream(dir_ / "model.safetensors.index.json")
        << nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump();
  }
  fs::path dir_;
};

TEST_F(CheckpointTest, SingleFileAndDirectory) {
  ThreeTensors().Write((dir_ / "model.safetensors").string());
  for (const fs::path& p : {dir_, dir_ / "model.safetensors"}) {
    absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> c = SafetensorsCheckpoint::Open(p);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_THAT((*c)->TensorNames(), ElementsAre("a.f16", "b.f32", "c.bf16"));
    EXPECT_NE((*c)->Find("c.bf16"), nullptr);
  }
}

TEST_F(CheckpointTest, Sharded) {
  SafetensorsBuilder s1, s2;
  s1.Add("x", "F32", {2}, BytesOf(std::vector<float>{1, 2}));
  s2.Add("y", "F32", {1}, BytesOf(std::vector<float>{3}));
  s2.Add("z", "BF16", {2}, BytesOf(std::vector<uint16_t>{1, 2}));
  s1.Write((dir_ / "model-00001-of-00002.safetensors").string());
  s2.Write((dir_ / "model-00002-of-00002.safetensors").string());
  WriteIndex({{"x", "model-00001-of-00002.safetensors"},
              {"y", "model-00002-of-00002.safetensors"},
              {"z", "model-00002-of-00002.safetensors"}});
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> c = SafetensorsCheckpoint::Open(dir_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->shards().size(), 2u);
  EXPECT_THAT((*c)->TensorNames(), ElementsAre("x", "y", "z"));
  EXPECT_EQ(static_cast<const float*>((*c)->Find("y")->view.data)[0], 3.0f);

  // A weight_map entry that points at the wrong shard.
  WriteIndex({{"x", "model-00002-of-00002.safetensors"},
              {"y", "model-00002-of-00002.safetensors"}});
  absl::Status s = SafetensorsCheckpoint::Open(dir_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'x'"));
  EXPECT_THAT(s.message(), HasSubstr("model.safetensors.index.json"));

  // Shard escaping the directory.
  WriteIndex({{"x", "../evil.safetensors"}});
  s = SafetensorsCheckpoint::Open(dir_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'x'"));

  // A missing shard file.
  WriteIndex({{"x", "model-00003-of-00002.safetensors"}});
  s = SafetensorsCheckpoint::Open(dir_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("model-00003-of-00002.safetensors"));

  // The same tensor in two shards.
  s2.Add("x", "F32", {2}, BytesOf(std::vector<float>{1, 2}));
  s2.Write((dir_ / "model-00002-of-00002.safetensors").string());
  WriteIndex({{"x", "model-00001-of-00002.safetensors"},
              {"y", "model-00002-of-00002.safetensors"}});
  s = SafetensorsCheckpoint::Open(dir_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'x'"));

  std::ofstream(dir_ / "model.safetensors.index.json") << "{\"weight_map\": 3}";
  s = SafetensorsCheckpoint::Open(dir_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("weight_map"));
}

TEST_F(CheckpointTest, EmptyDirectoryIsNotFound) {
  absl::Status s = SafetensorsCheckpoint::Open(dir_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr(dir_.string()));
}

}  // namespace
}  // namespace tessera
