// MappedFile: contents, empty files, error codes naming the path.
#include "formats/mapped_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace tessera {
namespace {

using ::testing::HasSubstr;

TEST(MappedFile, MapsContents) {
  const std::string path = ::testing::TempDir() + "/mapped_file_test.bin";
  const std::string contents("abc\0def", 7);
  std::ofstream(path, std::ios::binary) << contents;
  absl::StatusOr<std::unique_ptr<MappedFile>> f = MappedFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->size(), 7u);
  EXPECT_EQ((*f)->path(), path);
  EXPECT_EQ(std::memcmp((*f)->data(), contents.data(), 7), 0);
  std::filesystem::remove(path);  // the mapping stays valid after unlink
  EXPECT_EQ((*f)->data()[6], 'f');
}

TEST(MappedFile, EmptyFile) {
  const std::string path = ::testing::TempDir() + "/mapped_file_empty.bin";
  std::ofstream(path, std::ios::binary).close();
  absl::StatusOr<std::unique_ptr<MappedFile>> f = MappedFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->size(), 0u);
  std::filesystem::remove(path);
}

TEST(MappedFile, Errors) {
  absl::Status missing = MappedFile::Open("/no/such/file.bin").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.message(), HasSubstr("/no/such/file.bin"));
  absl::Status dir = MappedFile::Open(::testing::TempDir()).status();
  EXPECT_EQ(dir.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dir.message(), HasSubstr("not a regular file"));
}

TEST(MappedFile, FifoIsRefusedWithoutWaitingForAWriter) {
  const std::string path = ::testing::TempDir() + "/mapped_file_test.fifo";
  std::filesystem::remove(path);
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  // Before O_NONBLOCK this call blocked forever: nobody ever opens the FIFO for writing.
  absl::Status fifo = MappedFile::Open(path).status();
  std::filesystem::remove(path);
  EXPECT_EQ(fifo.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(fifo.message(), HasSubstr(path));
  EXPECT_THAT(fifo.message(), HasSubstr("not a regular file"));
}

}  // namespace
}  // namespace tessera
