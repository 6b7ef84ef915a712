// ReadTensorFile / ListTensorFile on bad input — empty, foreign, truncated at every length, randomly corrupted
// files and broken shard indexes — must give an error naming the file, never a crash or a silently short
// result. Part of wfm_core_asan_tests (`make asan` runs it under AddressSanitizer + LeakSanitizer).
#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "test_support.h"
#include "wfm/core/file_util.h"
#include "wfm/core/tensor_file.h"

namespace wfm {
namespace {
namespace fs = std::filesystem;

std::string Data(const std::string& name) { return testing::SourceDir() + "/tests/data/checkpoint/" + name; }

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A fresh file per variant: rewriting one file in place makes ext4 flush on every truncate (slow).
std::string WriteVariant(const std::string& dir, const std::string& name, int64_t k, const std::string& bytes) {
  const std::string path = dir + "/" + std::to_string(k) + "." + name;
  WriteBytes(path, bytes);
  return path;
}

TEST(TensorFileBadInputTest, BadFilesAreErrorsThatNameTheFile) {
  const std::string dir = testing::TempDir();
  struct Bad {
    std::string name, bytes, expect;
  };
  std::mt19937 rng(1);
  std::string noise(4096, '\0');
  for (char& ch : noise) ch = static_cast<char>(rng());
  noise[0] = 'x';
  const std::vector<Bad> bad = {
      {"empty.pt", "", "empty"},
      {"noise.bin", noise, "unrecognised format"},
      {"text.pt", "hello world, not a checkpoint\n", "unrecognised format"},
      {"zip_head.pt", "PK\x03\x04 and then nothing but this sentence", "end-of-central-directory"},
      {"pickle_only.pt", std::string("\x80\x02}q\x00.", 7), "wrong magic"},
      {"index.json", R"({"metadata": {}})", "weight_map"},
      {"index2.json", R"({"weight_map": {"a": "missing-shard.safetensors"}})", "missing-shard.safetensors"},
      {"index3.json", R"({"weight_map": {"a": "../escape.safetensors"}})", "invalid shard"},
  };
  for (const Bad& b : bad) {
    const std::string path = dir + "/" + b.name;
    WriteBytes(path, b.bytes);
    auto listed = ListTensorFile(path);
    auto read = ReadTensorFile(path);
    ASSERT_FALSE(listed.ok()) << b.name;
    ASSERT_FALSE(read.ok()) << b.name;
    EXPECT_NE(std::string(read.status().message()).find(b.expect), std::string::npos) << read.status();
    EXPECT_NE(std::string(read.status().message()).find(b.name), std::string::npos) << read.status();
  }
  EXPECT_EQ(ReadTensorFile(dir + "/does-not-exist.pt").status().code(), absl::StatusCode::kNotFound);
  // A shard that lacks a tensor its index promises.
  fs::create_directories(dir + "/idx");
  fs::copy_file(Data("sharded_st/model-00001-of-00002.safetensors"), dir + "/idx/a.safetensors");
  WriteBytes(dir + "/idx/i.index.json", R"({"weight_map": {"no.such.tensor": "a.safetensors"}})");
  auto missing = ReadTensorFile(dir + "/idx/i.index.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("no.such.tensor"), std::string::npos) << missing.status();
  // A directory with two candidates asks the user to choose; one with none says so.
  EXPECT_FALSE(ReadTensorFile(Data("")).ok());
  fs::create_directories(dir + "/emptydir");
  EXPECT_EQ(ReadTensorFile(dir + "/emptydir").status().code(), absl::StatusCode::kNotFound);
}

// Every prefix of every file is an error (never a crash, never a silently short result).
TEST(TensorFileBadInputTest, EveryTruncationIsAnError) {
  const std::string dir = testing::TempDir();
  for (const char* name :
       {"state_dict.pt", "legacy.pt", "traced_bf16.jit", "nested.pt", "protocol4.pt", "state_dict.ref.safetensors"}) {
    WFM_ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFile(Data(name)));
    int64_t tried = 0;
    for (size_t len = 0; len < bytes.size(); len += (len < 600 || len + 600 > bytes.size()) ? 1 : 29) {
      const std::string path = WriteVariant(dir, name, tried++, bytes.substr(0, len));
      auto r = ReadTensorFile(path);
      ASSERT_FALSE(r.ok()) << name << " cut to " << len << " of " << bytes.size() << " bytes was accepted";
      EXPECT_NE(std::string(r.status().message()).find(path), std::string::npos) << r.status();
      fs::remove(path);
    }
    EXPECT_GT(tried, 100);
  }
}

// Random byte corruption: any outcome but a crash (ok, or an error naming the file). Run under ASan too.
TEST(TensorFileBadInputTest, CorruptedBytesNeverCrash) {
  const std::string dir = testing::TempDir();
  std::mt19937 rng(42);
  for (const char* name : {"state_dict.pt", "legacy.pt", "traced_bf16.jit", "nested.pt"}) {
    WFM_ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFile(Data(name)));
    int errors = 0;
    for (int trial = 0; trial < 300; ++trial) {
      std::string b = bytes;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < flips; ++k) b[rng() % b.size()] = static_cast<char>(rng());
      const std::string path = WriteVariant(dir, name, trial, b);
      auto listed = ListTensorFile(path);
      auto read = ReadTensorFile(path);
      if (read.ok()) {
        for (auto& [n, t] : *read) (void)t.sum().item<double>();  // the views must be readable
      } else {
        ++errors;
        EXPECT_NE(std::string(read.status().message()).find(path), std::string::npos) << read.status();
      }
      fs::remove(path);
    }
    EXPECT_GT(errors, 0) << name;
  }
}

}  // namespace
}  // namespace wfm
