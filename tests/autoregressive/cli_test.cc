// `wfm ar ...` end to end: `ar logits` reproduces both fixtures (full and incremental); bad input gives a clear
// error and the right exit code.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ar_test_util.h"
#include "test_support.h"
#include "wfm/autoregressive/data.h"
#include "wfm/autoregressive/world.h"
#include "wfm/core/checkpoint.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/text/t5.h"
#include "wfm/core/text/text_encoder.h"
#include "wfm/core/video_io.h"

namespace {

using wfm::testing::MaxRelDiff;
using wfm::testing::RunCommand;
using wfm::testing::SharedPath;
using wfm::testing::TempDir;
using wfm::testing::WfmTool;

std::string Fixture(const std::string& file) { return SharedPath("fixtures/autoregressive/" + file); }

std::string LogitsCmd(const std::string& name, const std::string& input, const std::string& out) {
  return WfmTool() + " ar logits --config " + Fixture(name + ".json") + " --weights " +
         Fixture(name + ".weights.safetensors") + " --input " + input + " --output " + out + " --threads 1";
}

TEST(ArCli, LogitsReproducesBothFixturesFullAndIncremental) {
  for (const std::string name : {"ar_base", "ar_v2w"}) {
    WFM_REQUIRE_FILE(Fixture(name + ".weights.safetensors"));
    const wfm::TensorMap io = wfm::ReadSafetensors(Fixture(name + ".io.safetensors")).value();
    for (bool incremental : {false, true}) {
      const std::string out = TempDir() + "/" + name + ".out.safetensors";
      std::string log;
      ASSERT_EQ(RunCommand(LogitsCmd(name, Fixture(name + ".io.safetensors"), out) +
                               (incremental ? " --incremental" : ""),
                           &log),
                0)
          << log;
      const at::Tensor got = wfm::ReadSafetensors(out).value().at("logits");
      EXPECT_LE(MaxRelDiff(got, io.at(incremental ? "logits_incremental" : "logits")), 1e-4)
          << name << (incremental ? " incremental" : " full");
    }
  }
}

TEST(ArCli, LogitsBadInputs) {
  WFM_REQUIRE_FILE(Fixture("ar_v2w.weights.safetensors"));
  const std::string dir = TempDir();
  const wfm::TensorMap io = wfm::ReadSafetensors(Fixture("ar_v2w.io.safetensors")).value();
  std::string log;
  EXPECT_EQ(RunCommand(WfmTool() + " ar logits --config " + Fixture("ar_v2w.json"), &log), 2) << log;
  EXPECT_EQ(RunCommand(WfmTool() + " ar logits --help", &log), 0);
  EXPECT_NE(log.find("--incremental"), std::string::npos);
  // no context for a cross-attention model
  ASSERT_TRUE(wfm::WriteSafetensors(dir + "/noctx.safetensors", {{"tokens", io.at("tokens")}}).ok());
  EXPECT_EQ(RunCommand(LogitsCmd("ar_v2w", dir + "/noctx.safetensors", dir + "/o.safetensors"), &log), 1);
  EXPECT_NE(log.find("'context'"), std::string::npos) << log;
  // token outside the vocabulary
  ASSERT_TRUE(wfm::WriteSafetensors(dir + "/oov.safetensors",
                                    {{"tokens", at::full({1, 4}, 100000, at::kLong)},
                                     {"context", io.at("context").narrow(0, 0, 1)}})
                  .ok());
  EXPECT_EQ(RunCommand(LogitsCmd("ar_v2w", dir + "/oov.safetensors", dir + "/o.safetensors"), &log), 1);
  EXPECT_NE(log.find("outside the vocabulary"), std::string::npos) << log;
  // context overflow: more tokens than max_seq_len (48)
  ASSERT_TRUE(wfm::WriteSafetensors(dir + "/long.safetensors",
                                    {{"tokens", at::zeros({1, 60}, at::kLong)},
                                     {"context", io.at("context").narrow(0, 0, 1)}})
                  .ok());
  EXPECT_EQ(RunCommand(LogitsCmd("ar_v2w", dir + "/long.safetensors", dir + "/o.safetensors"), &log), 1);
  EXPECT_NE(log.find("context overflow"), std::string::npos) << log;
  // weights of the other layout
  EXPECT_EQ(RunCommand(WfmTool() + " ar logits --config " + Fixture("ar_v2w.json") + " --weights " +
                           Fixture("ar_base.weights.safetensors") + " --input " + Fixture("ar_v2w.io.safetensors") +
                           " --output " + dir + "/o.safetensors",
                       &log),
            1);
  EXPECT_NE(log.find("cross_attention"), std::string::npos) << log;
}

}  // namespace

namespace {

std::string TinyTokenizer() {
  return wfm::testing::SourceDir() + "/tests/autoregressive/data/dv_tiny_tokenizer.json";
}

std::string GenerateCmd(const std::string& extra) {
  return WfmTool() + " ar generate --config tiny --random-init --tokenizer-config " + TinyTokenizer() +
         " --threads 1 " + extra;
}

TEST(ArCli, GenerateSmokeMultiverseFolderAndSingleFile) {
  const std::string video = SharedPath("media/vtest.avi");
  WFM_REQUIRE_FILE(video);
  const std::string dir = TempDir();
  std::string log;
  // tiny model (latent 3x4x4) + tiny DV tokenizer (8x16x16, 512 codes): 9 prompt frames -> 17 frames of 64x64
  ASSERT_EQ(RunCommand(GenerateCmd("--input-video " + video + " --num-input-frames 9 --num-frames 17 --seed 3 " +
                                   "--num-samples 2 --save-tokens --output " + dir + "/futures"),
                       &log),
            0)
      << log;
  for (const char* f : {"/futures/sample_000.mp4", "/futures/sample_001.mp4", "/futures/tokens.safetensors"})
    EXPECT_TRUE(wfm::testing::FileExists(dir + f)) << f << "\n" << log;
  const at::Tensor tokens = wfm::ReadSafetensors(dir + "/futures/tokens.safetensors").value().at("tokens");
  EXPECT_EQ(tokens.sizes(), at::IntArrayRef({2, 3, 4, 4}));
  EXPECT_TRUE(at::equal(tokens[0][0], tokens[1][0])) << "both futures share the prompt frame";
  // --stream writes the same kind of file while generating (here with the int8 output head)
  ASSERT_EQ(RunCommand(GenerateCmd("--input-video " + video + " --num-input-frames 9 --num-frames 17 --seed 3 " +
                                   "--stream --int8-head --output " + dir + "/streamed.mp4"),
                       &log),
            0)
      << log;
  std::string info;
  ASSERT_EQ(RunCommand(WfmTool() + " info " + dir + "/streamed.mp4", &info), 0) << info;
  EXPECT_NE(info.find("\"num_frames\":17"), std::string::npos) << info;
  ASSERT_EQ(RunCommand(WfmTool() + " info " + dir + "/futures/sample_001.mp4", &info), 0) << info;
  EXPECT_NE(info.find("\"width\":64"), std::string::npos) << info;
  EXPECT_NE(info.find("\"num_frames\":17"), std::string::npos) << info;
}

TEST(ArCli, TokenizeWritesAClipFolder) {
  const std::string video = SharedPath("media/vtest.avi");
  WFM_REQUIRE_FILE(video);
  const std::string dir = TempDir();
  std::string log;
  ASSERT_EQ(RunCommand(WfmTool() + " ar tokenize --config tiny --random-init --tokenizer-config " + TinyTokenizer() +
                           " --max-clips 2 --output " + dir + "/clips " + video + " --threads 1",
                       &log),
            0)
      << log;
  const at::Tensor a = wfm::ReadSafetensors(dir + "/clips/vtest_0000.safetensors").value().at("indices");
  EXPECT_EQ(a.sizes(), at::IntArrayRef({3, 4, 4}));  // 17 frames of 64x64 -> the tiny model's 3x4x4 grid
  EXPECT_TRUE(wfm::testing::FileExists(dir + "/clips/vtest_0001.safetensors"));
  EXPECT_FALSE(wfm::testing::FileExists(dir + "/clips/vtest_0002.safetensors"));
  // vocabulary mismatch: the 64000-code DV8x16x16 tokenizer for the 512-token tiny model
  EXPECT_EQ(RunCommand(WfmTool() + " ar tokenize --config tiny --random-init --tokenizer-config DV8x16x16-720p " +
                           "--output " + dir + "/x " + video,
                       &log),
            1);
  EXPECT_NE(log.find("vocabulary mismatch"), std::string::npos) << log;
}

// A T5 directory as Cosmos ships one, tiny: byte-level vocabulary (384, no spiece.model), d_model 32 = the tiny
// models' context_dim, random weights.
std::string TinyT5Dir(const std::string& dir) {
  wfm::text::T5Config c;
  c.name = "tiny-byt5";
  c.vocab_size = 384;
  c.d_model = 32;
  c.d_kv = 8;
  c.d_ff = 64;
  c.num_layers = 1;
  c.num_heads = 4;
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << c.ToJson().dump();
  wfm::text::T5EncoderModel m(c);
  wfm::text::InitT5Weights(m, 5);
  EXPECT_TRUE(wfm::SaveModule(*m, dir + "/model.safetensors").ok());
  return dir;
}

// The one padding rule (ar::PadTextRows): a caption that went through `wfm ar tokenize` + the training batcher gives
// exactly the cross-attention context (and logits) that `wfm ar generate` builds from the same T5 directory:
// 512 rows, zero past the caption, all attended, as cosmos-predict1. (Before the fix tokenize stored the trimmed
// rows and training masked them, while generation attended all 512: different logits, checked below.)
TEST(ArCli, TokenizedCaptionsGiveTheGenerateContext) {
  const std::string video = SharedPath("media/vtest.avi");
  WFM_REQUIRE_FILE(video);
  const std::string dir = TempDir(), t5 = TinyT5Dir(dir + "/t5");
  const std::string caption = "a person walks toward the camera";
  std::filesystem::copy_file(video, dir + "/walk.avi");
  std::ofstream(dir + "/walk.txt") << caption << "\n";
  std::string log;
  ASSERT_EQ(RunCommand(WfmTool() + " ar tokenize --config tiny-v2w --random-init --tokenizer-config " +
                           TinyTokenizer() + " --max-clips 1 --text-encoder " + t5 + " --output " + dir + "/clips " +
                           dir + "/walk.avi --threads 1",
                       &log),
            0)
      << log;
  WFM_ASSERT_OK_AND_ASSIGN(wfm::ar::TokenFolder folder, wfm::ar::TokenFolder::Open(dir + "/clips"));
  wfm::ar::TokenBatcher batcher(folder, /*frames=*/3, /*val_fraction=*/0, /*seed=*/0);
  WFM_ASSERT_OK_AND_ASSIGN(wfm::ar::TokenBatch batch, batcher.Train(0, 1));
  ASSERT_TRUE(batch.context.defined()) << log;
  EXPECT_EQ(batch.captions[0], caption);

  // the generate path (tools/cmd_ar.cc LoadTextContext)
  WFM_ASSERT_OK_AND_ASSIGN(std::unique_ptr<wfm::text::TextEncoder> enc, wfm::text::LoadTextEncoder(t5));
  WFM_ASSERT_OK_AND_ASSIGN(wfm::text::TextEmbeddings e, enc->Encode({caption}));
  const wfm::ar::TextContext gen = wfm::ar::EncodedTextContext(e, wfm::ar::TextPadLength(t5, *enc));
  ASSERT_EQ(gen.embeddings.sizes(), at::IntArrayRef({1, 512, 32}));
  ASSERT_EQ(batch.context.sizes(), gen.embeddings.sizes()) << "HINT: tokenize must store the padding rule";
  EXPECT_TRUE(at::equal(batch.context_mask, gen.mask));
  EXPECT_TRUE(gen.mask.all().item<bool>()) << "Cosmos attends every one of the 512 positions";
  const int64_t n = wfm::ar::RealTextRows(e)[0].size(0);
  EXPECT_EQ(gen.embeddings.narrow(1, n, 512 - n).abs().max().item<float>(), 0.0f);
  EXPECT_LE(MaxRelDiff(batch.context, gen.embeddings), 1e-6);

  // the same logits; the old trimmed + masked context gives different ones (so this test can fail)
  wfm::ar::ArTransformer net = wfm::ar::Net(wfm::ar::Tiny(true));
  at::NoGradGuard no_grad;
  const at::Tensor tokens = batch.tokens.flatten(1);  // [1, 48]
  const wfm::ar::TextContext train_ctx{batch.context, batch.context_mask};
  const at::Tensor a = net->forward(tokens, 0, nullptr, &train_ctx), b = net->forward(tokens, 0, nullptr, &gen);
  EXPECT_LE(MaxRelDiff(a, b), 1e-6);
  auto [trimmed, trimmed_mask] = wfm::ar::PadTextRows(wfm::ar::RealTextRows(e), /*pad_to=*/0);
  const wfm::ar::TextContext old_ctx{trimmed, trimmed_mask};
  EXPECT_GT(MaxRelDiff(net->forward(tokens, 0, nullptr, &old_ctx), b), 1e-3);
}

TEST(ArCli, GenerateBadInputs) {
  const std::string video = SharedPath("media/vtest.avi");
  WFM_REQUIRE_FILE(video);
  const std::string dir = TempDir();
  std::string log;
  // a prompt video shorter than the requested prompt frames
  ASSERT_TRUE(wfm::WriteVideo(dir + "/short.mp4", at::zeros({3, 64, 64, 3}, at::kByte)).ok());
  EXPECT_EQ(RunCommand(GenerateCmd("--input-video " + dir + "/short.mp4 --num-input-frames 9 --output " + dir +
                                   "/o.mp4"),
                       &log),
            1);
  EXPECT_NE(log.find("fewer than the 9 requested"), std::string::npos) << log;
  EXPECT_EQ(RunCommand(GenerateCmd("--input-video " + dir + "/missing.mp4 --output " + dir + "/o.mp4"), &log), 1);
  EXPECT_EQ(RunCommand(GenerateCmd("--input-video " + video + " --num-frames 20 --output " + dir + "/o.mp4"), &log),
            1);
  EXPECT_NE(log.find("1 + k*8"), std::string::npos) << log;
  EXPECT_EQ(RunCommand(GenerateCmd("--input-video " + video + " --output " + dir + "/noext"), &log), 1);
  EXPECT_NE(log.find("extension"), std::string::npos) << log;
  EXPECT_EQ(RunCommand(GenerateCmd("--output " + dir + "/o.mp4"), &log), 1);  // base model without a prompt video
  EXPECT_NE(log.find("--input-video"), std::string::npos) << log;
  EXPECT_EQ(RunCommand(WfmTool() + " ar generate --config tiny --output x.mp4", &log), 2) << log;  // no tokenizer
  EXPECT_EQ(RunCommand(GenerateCmd("--input-video " + video + " --bf16-head --int8-head --output " + dir + "/o.mp4"),
                       &log),
            1);
  EXPECT_NE(log.find("either --bf16-head or --int8-head"), std::string::npos) << log;
}

}  // namespace
