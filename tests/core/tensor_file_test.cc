// ReadTensorFile / ListTensorFile against files written by Python torch 1.13 (tests/data/checkpoint, made by
// tests/data/make_checkpoint_test_data.py): every format gives exactly the tensors Python sees (the
// X.ref.safetensors beside each file), views keep sharing storage, and every truncated, corrupted, empty or
// foreign file is a clean error naming the file.
#include "wfm/core/tensor_file.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "test_support.h"
#include "wfm/core/file_util.h"
#include "wfm/core/safetensors.h"

namespace wfm {
namespace {
namespace fs = std::filesystem;

std::string Data(const std::string& name) { return testing::SourceDir() + "/tests/data/checkpoint/" + name; }

void ExpectSameTensors(const TensorMap& got, const TensorMap& ref, const std::string& what) {
  std::vector<std::string> got_names, ref_names;
  for (const auto& kv : got) got_names.push_back(kv.first);
  for (const auto& kv : ref) ref_names.push_back(kv.first);
  ASSERT_EQ(got_names, ref_names) << what << ": names differ from what Python's torch.load gives";
  for (const auto& [name, r] : ref) {
    const at::Tensor& g = got.at(name);
    EXPECT_EQ(g.scalar_type(), r.scalar_type()) << what << " " << name;
    EXPECT_EQ(g.sizes(), r.sizes()) << what << " " << name;
    EXPECT_TRUE(at::equal(g.contiguous(), r)) << what << " " << name << ": values differ (max diff "
                                              << testing::MaxAbsDiff(g, r) << ")";
  }
}

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

struct Case {
  const char* file;
  const char* ref;
  TensorFileFormat format;
};

const Case kCases[] = {
    {"state_dict.pt", "state_dict.ref.safetensors", TensorFileFormat::kTorchZip},
    {"nested.pt", "nested.ref.safetensors", TensorFileFormat::kTorchZip},
    {"protocol4.pt", "protocol4.ref.safetensors", TensorFileFormat::kTorchZip},
    {"legacy.pt", "legacy.ref.safetensors", TensorFileFormat::kTorchLegacy},
    {"traced_bf16.jit", "traced_bf16.ref.safetensors", TensorFileFormat::kTorchScript},
    {"scripted.jit", "scripted.ref.safetensors", TensorFileFormat::kTorchScript},
    {"module.pt", "state_dict.ref.safetensors", TensorFileFormat::kTorchZip},
    {"sharded_st/model.safetensors.index.json", "sharded.ref.safetensors", TensorFileFormat::kShardedIndex},
    {"sharded_bin/pytorch_model.bin.index.json", "sharded.ref.safetensors", TensorFileFormat::kShardedIndex},
    {"sharded_st", "sharded.ref.safetensors", TensorFileFormat::kShardedIndex},  // a directory
    {"state_dict.ref.safetensors", "state_dict.ref.safetensors", TensorFileFormat::kSafetensors},
};

TEST(TensorFileTest, EveryFormatReadsWhatPythonSees) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.file);
    WFM_ASSERT_OK_AND_ASSIGN(TensorMap ref, ReadSafetensors(Data(c.ref)));
    WFM_ASSERT_OK_AND_ASSIGN(TensorFileFormat format, DetectTensorFileFormat(Data(c.file)));
    EXPECT_STREQ(TensorFileFormatName(format), TensorFileFormatName(c.format));
    WFM_ASSERT_OK_AND_ASSIGN(TensorMap got, ReadTensorFile(Data(c.file)));
    ExpectSameTensors(got, ref, c.file);
  }
}

TEST(TensorFileTest, ListingMatchesTheDataWithoutReadingIt) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.file);
    WFM_ASSERT_OK_AND_ASSIGN(TensorFileIndex index, ListTensorFile(Data(c.file)));
    WFM_ASSERT_OK_AND_ASSIGN(TensorMap got, ReadTensorFile(Data(c.file)));
    ASSERT_EQ(index.tensors.size(), got.size());
    uint64_t bytes = 0;
    for (const TensorInfo& info : index.tensors) {
      ASSERT_TRUE(got.count(info.name)) << info.name;
      EXPECT_EQ(info.dtype, got[info.name].scalar_type()) << info.name;
      EXPECT_EQ(c10::IntArrayRef(info.shape), got[info.name].sizes()) << info.name;
      EXPECT_EQ(info.nbytes(), got[info.name].numel() * got[info.name].element_size());
      bytes += info.nbytes();
    }
    EXPECT_EQ(index.total_bytes(), bytes);
  }
  // Shards are named per tensor; pickled non-tensor leaves are counted, not lost silently.
  WFM_ASSERT_OK_AND_ASSIGN(TensorFileIndex sharded, ListTensorFile(Data("sharded_st/model.safetensors.index.json")));
  EXPECT_NE(sharded.tensors.front().file, sharded.tensors.back().file);
  EXPECT_TRUE(sharded.metadata.count("total_size"));
  WFM_ASSERT_OK_AND_ASSIGN(TensorFileIndex nested, ListTensorFile(Data("nested.pt")));
  EXPECT_GE(nested.skipped_entries, 8) << "iteration, config, ratio, flag, nothing, step, lr, params";
  EXPECT_NE(std::find(nested.skipped_examples.begin(), nested.skipped_examples.end(), "iteration"),
            nested.skipped_examples.end());
}

TEST(TensorFileTest, ViewsShareStorageAndKeepTheirStrides) {
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap t, ReadTensorFile(Data("nested.pt")));
  const at::Tensor& base = t.at("views.base");
  EXPECT_EQ(static_cast<char*>(t.at("views.row").data_ptr()), static_cast<char*>(base.data_ptr()) + 4 * sizeof(float));
  EXPECT_EQ(t.at("views.t").strides(), c10::IntArrayRef({1, 4}));
  EXPECT_FALSE(t.at("views.col").is_contiguous());
  // Writes are private to this process (copy-on-write mapping) and visible through every alias.
  t.at("views.row").fill_(-1);
  EXPECT_EQ(base[1][0].item<float>(), -1);
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap again, ReadTensorFile(Data("nested.pt")));
  EXPECT_EQ(again.at("views.base")[1][0].item<float>(), 4.0f);
}

TEST(TensorFileTest, ComplexAndSelectiveReads) {
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap c, ReadTensorFile(Data("complex.pt")));
  at::Tensor expected = at::complex(at::arange(4, at::kFloat), -at::arange(4, at::kFloat));  // the generator's formula
  EXPECT_TRUE(at::equal(c.at("c64"), expected));
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap some, ReadTensorFile(Data("sharded_bin/pytorch_model.bin.index.json"),
                                                          [](const std::string& n) { return n == "decoder.2.bias"; }));
  ASSERT_EQ(some.size(), 1u);
  EXPECT_TRUE(some.count("decoder.2.bias"));
}

TEST(TensorFileTest, BadFilesAreErrorsThatNameTheFile) {
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
TEST(TensorFileTest, EveryTruncationIsAnError) {
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
TEST(TensorFileTest, CorruptedBytesNeverCrash) {
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
