// ReadTensorFile / ListTensorFile against files written by Python torch 1.13 (tests/data/checkpoint, made by
// tests/data/make_checkpoint_test_data.py): every format gives exactly the tensors Python sees (the
// X.ref.safetensors beside each file) and views keep sharing storage. Bad input: tensor_file_asan_test.cc.
#include "wfm/core/tensor_file.h"

#include <ATen/ATen.h>

#include <filesystem>

#include "test_support.h"
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

}  // namespace
}  // namespace wfm
