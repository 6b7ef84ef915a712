// Atomic file writes, reads and memory mapping.
#include "wfm/core/file_util.h"

#include <filesystem>

#include "test_support.h"

namespace wfm {
namespace {
namespace fs = std::filesystem;

TEST(FileUtilTest, AtomicWriteReplacesOnlyOnCommit) {
  std::string dir = testing::TempDir();
  std::string path = dir + "/sub/dir/out.txt";
  WFM_ASSERT_OK(WriteFileAtomically(path, "first"));
  WFM_ASSERT_OK_AND_ASSIGN(std::string got, ReadFile(path));
  EXPECT_EQ(got, "first");
  {
    AtomicFileWriter w;
    WFM_ASSERT_OK(w.Open(path));
    WFM_ASSERT_OK(w.Write("second, never committed"));
    EXPECT_TRUE(fs::exists(w.temp_path()));
    // Until Commit the old content is what readers see.
    WFM_ASSERT_OK_AND_ASSIGN(std::string mid, ReadFile(path));
    EXPECT_EQ(mid, "first");
  }  // destroyed without Commit: temp removed, target untouched
  WFM_ASSERT_OK_AND_ASSIGN(std::string after, ReadFile(path));
  EXPECT_EQ(after, "first");
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir + "/sub/dir")) files += e.is_regular_file();
  EXPECT_EQ(files, 1) << "temp file left behind";
}

TEST(FileUtilTest, ErrorsNameThePath) {
  absl::StatusOr<std::string> r = ReadFile("/nonexistent/wfm/file.bin");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("/nonexistent/wfm/file.bin"), std::string::npos);
  auto m = MappedFile::Open(testing::TempDir());
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("directory"), std::string::npos);
}

TEST(FileUtilTest, MapsFilesIncludingEmptyOnes) {
  std::string dir = testing::TempDir();
  WFM_ASSERT_OK(WriteFileAtomically(dir + "/a", "hello"));
  WFM_ASSERT_OK(WriteFileAtomically(dir + "/empty", ""));
  WFM_ASSERT_OK_AND_ASSIGN(auto a, MappedFile::Open(dir + "/a"));
  ASSERT_EQ(a->size(), 5u);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(a->data()), 5), "hello");
  WFM_ASSERT_OK_AND_ASSIGN(auto e, MappedFile::Open(dir + "/empty"));
  EXPECT_EQ(e->size(), 0u);
}

}  // namespace
}  // namespace wfm
