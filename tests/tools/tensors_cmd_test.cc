// `wfm tensors`: the listing matches ListTensorFile, JSON totals add up, --rules shows load names, and usage /
// file errors give exit codes 2 / 1.
#include <nlohmann/json.hpp>

#include "test_support.h"
#include "wfm/core/tensor_file.h"

namespace wfm {
namespace {

std::string Data(const std::string& name) { return testing::SourceDir() + "/tests/data/checkpoint/" + name; }

int Wfm(const std::string& args, std::string* out) {
  return testing::RunCommand(testing::WfmTool() + " " + args + " 2>&1", out);
}

TEST(TensorsCommandTest, JsonListsEveryTensorWithTotals) {
  for (const char* file : {"nested.pt", "sharded_bin"}) {  // each run loads every wfm library: keep it short
    SCOPED_TRACE(file);
    std::string out;
    ASSERT_EQ(Wfm("tensors --json " + Data(file), &out), 0) << out;
    nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << out;
    WFM_ASSERT_OK_AND_ASSIGN(TensorFileIndex index, ListTensorFile(Data(file)));
    ASSERT_EQ(j["tensors"].size(), index.tensors.size());
    uint64_t bytes = 0;
    for (size_t i = 0; i < index.tensors.size(); ++i) {
      EXPECT_EQ(j["tensors"][i]["name"], index.tensors[i].name);
      EXPECT_EQ(j["tensors"][i]["dtype"], DtypeShortName(index.tensors[i].dtype));
      EXPECT_EQ(j["tensors"][i]["shape"].get<std::vector<int64_t>>(), index.tensors[i].shape);
      bytes += j["tensors"][i]["bytes"].get<uint64_t>();
    }
    EXPECT_EQ(j["total"]["bytes"].get<uint64_t>(), bytes);
    EXPECT_EQ(j["total"]["bytes"].get<uint64_t>(), index.total_bytes());
    EXPECT_EQ(j["format"], TensorFileFormatName(index.format));
  }
}

TEST(TensorsCommandTest, TableRulesAndErrors) {
  std::string out;
  ASSERT_EQ(Wfm("tensors " + Data("cosmos_model.pt") + " --rules ema --filter conv", &out), 0) << out;
  EXPECT_NE(out.find("ema.network-encoder-conv-weight"), std::string::npos) << out;
  EXPECT_NE(out.find("encoder.conv.weight"), std::string::npos) << out;
  EXPECT_NE(out.find("(dropped)"), std::string::npos) << out;
  EXPECT_NE(out.find("4 of 17 tensors"), std::string::npos) << out;
  EXPECT_EQ(Wfm("tensors", &out), 2) << out;
  EXPECT_EQ(Wfm("tensors " + Data("nested.pt") + " --rules no-such-preset", &out), 2) << out;
  EXPECT_EQ(Wfm("tensors " + Data("no-such-file.pt"), &out), 1) << out;
  EXPECT_NE(out.find("no-such-file.pt"), std::string::npos) << out;
}

}  // namespace
}  // namespace wfm
