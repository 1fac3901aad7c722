// MappedFile: contents, empty files, error codes naming the path.
#include "formats/mapped_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

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

// Resident pages of this process (/proc/self/statm's second field).
long ResidentPages() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident;
}

TEST(MappedFile, ReleasedPagesLeaveTheResidentSetAndReadBackTheSame) {
  const std::string path = ::testing::TempDir() + "/mapped_file_release.bin";
  constexpr size_t kBytes = 4 << 20;
  std::string contents(kBytes, '\0');
  for (size_t i = 0; i < kBytes; ++i) contents[i] = static_cast<char>(i * 131 + i / 4096);
  std::ofstream(path, std::ios::binary) << contents;
  absl::StatusOr<std::unique_ptr<MappedFile>> f = MappedFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  const MappedFile& file = **f;
  ASSERT_EQ(std::memcmp(file.data(), contents.data(), kBytes), 0);  // every page resident
  const long before = ResidentPages();
  file.ReleasePages(file.data() + 10, kBytes - 20);  // the partial first and last pages stay
  const long after = ResidentPages();
  const long pages = static_cast<long>(kBytes / static_cast<size_t>(::sysconf(_SC_PAGESIZE)));
  EXPECT_GE(before - after, pages * 9 / 10) << before << " -> " << after;
  EXPECT_EQ(std::memcmp(file.data(), contents.data(), kBytes), 0);  // faulted back from the file
  // Ranges outside the mapping are ignored.
  file.ReleasePages(contents.data(), 4096);
  EXPECT_EQ(contents[5], static_cast<char>(5 * 131));
  std::filesystem::remove(path);
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
