// `wfm text encode / tokenize / init-builtin` end to end through the real binary.
#include <ATen/ATen.h>

#include <filesystem>

#include "test_support.h"
#include "text_test_util.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/text/builtin_encoder.h"
#include "wfm/core/text/t5.h"

namespace wfm::text {
namespace {

namespace fs = std::filesystem;
using ::wfm::testing::MaxAbsDiff;
using ::wfm::testing::RunCommand;
using ::wfm::testing::TempDir;
using ::wfm::testing::WfmTool;

TEST(TextCli, InitBuiltinThenEncode) {
  const std::string dir = TempDir();
  std::string out;
  ASSERT_EQ(RunCommand(WfmTool() + " text init-builtin --output " + dir + "/enc.safetensors --d-model 32 --layers 1"
                       " --heads 2 --d-kv 16 --d-ff 64 --max-length 24", &out), 0) << out;
  ASSERT_EQ(RunCommand(WfmTool() + " text encode --builtin " + dir + "/enc.safetensors --prompt 'a red car'"
                       " --prompt 'waves' --output " + dir + "/e.safetensors", &out), 0) << out;
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap t, ReadSafetensors(dir + "/e.safetensors"));
  ASSERT_EQ(t.at("embeddings").sizes(), (std::vector<int64_t>{2, 24, 32}));
  ASSERT_EQ(t.at("mask").scalar_type(), at::kBool);
  EXPECT_EQ(t.at("mask").sum(1).to(at::kLong)[0].item<int64_t>(), 10);  // 9 bytes + EOS

  // Same numbers as the library.
  WFM_ASSERT_OK_AND_ASSIGN(auto enc, LoadBuiltinTextEncoder(dir + "/enc.safetensors"));
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings e, enc->Encode({"a red car", "waves"}));
  // The wfm process picks its own OpenBLAS kernels (InitThreads), so GEMM sums differ in the last bits.
  EXPECT_LT(MaxAbsDiff(t.at("embeddings"), e.embeddings), 1e-5);

  // --no-pad trims to the longest prompt; --cache fills a cache directory.
  ASSERT_EQ(RunCommand(WfmTool() + " text encode --builtin " + dir + "/enc.safetensors --prompt 'a red car' --no-pad"
                       " --cache " + dir + "/cache --output " + dir + "/short.safetensors", &out), 0) << out;
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap s, ReadSafetensors(dir + "/short.safetensors"));
  EXPECT_EQ(s.at("embeddings").size(1), 10);
  EXPECT_TRUE(fs::is_directory(dir + "/cache"));
}

TEST(TextCli, EncodeT5DirectoryAndTokenize) {
  if (!text::testing::HaveTool("spm_train")) GTEST_SKIP() << "spm_train not installed";
  std::string error;
  const std::string ref = text::testing::T5ReferenceDir("relu", &error);
  if (ref.empty()) GTEST_SKIP() << error;
  const std::string dir = TempDir();
  fs::copy(ref + "/sharded", dir + "/model", fs::copy_options::recursive);
  const std::string spm =
      text::testing::TrainSpm(dir, "spiece", 100, "--pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1", &error);
  ASSERT_FALSE(spm.empty()) << error;
  fs::copy_file(spm, dir + "/model/spiece.model");

  std::string out;
  ASSERT_EQ(RunCommand(WfmTool() + " text encode --model " + dir + "/model --prompt 'A drone flies over the station.'"
                       " --max-length 16 --output " + dir + "/e.safetensors", &out), 0) << out;
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap t, ReadSafetensors(dir + "/e.safetensors"));
  ASSERT_EQ(t.at("embeddings").sizes(), (std::vector<int64_t>{1, 16, 32}));
  T5EncoderOptions o;
  o.max_length = 16;
  WFM_ASSERT_OK_AND_ASSIGN(auto enc, T5TextEncoder::Load(dir + "/model", o));
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings e, enc->Encode({"A drone flies over the station."}));
  // The wfm process picks its own OpenBLAS kernels (InitThreads), so GEMM sums differ in the last bits.
  EXPECT_LT(MaxAbsDiff(t.at("embeddings"), e.embeddings), 1e-5);

  const auto expected = text::testing::SpmEncodeIds(spm, {"A drone flies over the station."}, dir);
  ASSERT_EQ(RunCommand(WfmTool() + " text tokenize --model " + dir + "/model --prompt 'A drone flies over the station.'",
                       &out), 0) << out;
  std::string ids;
  for (int32_t id : expected[0]) ids += std::to_string(id) + ",";
  EXPECT_NE(out.find("{\"ids\":[" + ids + "1],\"truncated\":false}"), std::string::npos) << out;
}

TEST(TextCli, ErrorsAndUsage) {
  const std::string dir = TempDir();
  std::string out;
  EXPECT_EQ(RunCommand(WfmTool() + " text encode --prompt x --output " + dir + "/e.safetensors", &out), 2) << out;
  EXPECT_EQ(RunCommand(WfmTool() + " text encode --model " + dir + " --output " + dir + "/e.safetensors", &out), 2)
      << out;
  EXPECT_EQ(RunCommand(WfmTool() + " text encode --model " + dir + "/none --prompt x --output " + dir + "/e.safetensors",
                       &out), 1) << out;
  EXPECT_NE(out.find("does not exist"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(WfmTool() + " text encode --help", &out), 0) << out;
  EXPECT_NE(out.find("--builtin"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir + "/e.safetensors"));
}

}  // namespace
}  // namespace wfm::text
