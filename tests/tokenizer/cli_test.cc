// `wfm tokenizer encode|decode|reconstruct` end to end (running build/bin/wfm as users do): the fixtures are
// reproduced through files, video files stream to video/PNG outputs with the input's size and frame count, and
// bad input gives a clear error and exit code.
#include <ATen/ATen.h>

#include <filesystem>

#include "test_support.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/video_io.h"

namespace wfm::tokenizer {
namespace {

using testing::MaxRelDiff;
using testing::RunCommand;
using testing::TempDir;
using testing::WfmTool;

std::string Fixture(const std::string& name, const std::string& suffix) {
  return testing::SharedPath("fixtures/tokenizer/" + name + suffix);
}

std::string Cmd(const std::string& verb, const std::string& name, const std::string& input, const std::string& output,
                const std::string& extra = "") {
  return WfmTool() + " tokenizer " + verb + " --config " + Fixture(name, ".json") + " --weights " +
         Fixture(name, ".weights.safetensors") + " --input " + input + " --output " + output + " --threads 1 " + extra +
         " 2>&1";
}

TensorMap Read(const std::string& path) {
  auto r = ReadSafetensors(path);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : TensorMap();
}

void EncodeDecodeMatchesFixture(const std::string& name) {
  WFM_REQUIRE_FILE(Fixture(name, ".weights.safetensors"));
  const std::string dir = TempDir();
  const std::string io = Fixture(name, ".io.safetensors");
  std::string log;
  ASSERT_EQ(RunCommand(Cmd("encode", name, io, dir + "/z.safetensors"), &log), 0) << log;
  TensorMap ref = Read(io), z = Read(dir + "/z.safetensors");
  const bool discrete = ref.count("indices") > 0;
  if (discrete) {
    ASSERT_TRUE(z.count("indices") && z.count("codes")) << name;
    EXPECT_EQ(z.at("indices").scalar_type(), at::kLong);
    EXPECT_TRUE(at::equal(z.at("indices"), ref.at("indices"))) << name;
    EXPECT_LE(MaxRelDiff(z.at("codes"), ref.at("codes")), 1e-4) << name;
  } else {
    ASSERT_TRUE(z.count("latent")) << name;
    EXPECT_LE(MaxRelDiff(z.at("latent"), ref.at("latent")), 1e-4) << name;
  }
  ASSERT_EQ(RunCommand(Cmd("decode", name, dir + "/z.safetensors", dir + "/rec.safetensors"), &log), 0) << log;
  const at::Tensor rec = Read(dir + "/rec.safetensors").at("reconstruction");
  const at::Tensor want = ref.at(discrete ? "reconstruction_from_indices" : "reconstruction");
  EXPECT_LE(MaxRelDiff(rec, want), 1e-4) << name << ": max rel diff " << MaxRelDiff(rec, want);
}

TEST(TokenizerCli, EncodeDecodeReproduceTheVideoFixtures) {
  EncodeDecodeMatchesFixture("CV8x8x8");
  EncodeDecodeMatchesFixture("DV8x16x16");
}

TEST(TokenizerCli, EncodeDecodeReproduceTheImageFixtures) {
  EncodeDecodeMatchesFixture("CI8x8");
  EncodeDecodeMatchesFixture("DI16x16");
}

TEST(TokenizerCli, ReconstructReproducesTheFixtures) {
  for (const std::string name : {"CV4x8x8", "DV4x8x8"}) {
    WFM_REQUIRE_FILE(Fixture(name, ".weights.safetensors"));
    const std::string out = TempDir() + "/rec.safetensors";
    std::string log;
    // Explicit :TENSOR selection and windowed mode (one 9-frame window = the whole clip).
    ASSERT_EQ(RunCommand(Cmd("reconstruct", name, Fixture(name, ".io.safetensors:input"), out, "--mode windowed"), &log), 0)
        << log;
    const at::Tensor rec = Read(out).at("reconstruction");
    EXPECT_LE(MaxRelDiff(rec, Read(Fixture(name, ".io.safetensors")).at("reconstruction")), 1e-4) << name;
  }
}

// A real clip streams from a video file to a video file and to PNG frames; sizes and frame counts survive the
// padding (320x240, 21 frames -> 1 + 3*8 = 25 padded frames, cropped back).
TEST(TokenizerCli, VideoFilesStreamToVideoAndPng) {
  WFM_REQUIRE_FILE(Fixture("CV8x8x8", ".weights.safetensors"));
  const std::string clip = testing::SharedPath("media/tree.avi");
  WFM_REQUIRE_FILE(clip);
  const std::string dir = TempDir();
  std::string log;
  ASSERT_EQ(RunCommand(Cmd("reconstruct", "CV8x8x8", clip, dir + "/rec.mp4", "--num-frames 21 --chunk-frames 8"), &log), 0)
      << log;
  auto info = ProbeVideo(dir + "/rec.mp4", /*exact=*/true);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->width, 320);
  EXPECT_EQ(info->height, 240);
  EXPECT_EQ(info->num_frames, 21);
  EXPECT_NEAR(info->fps.value(), 15.0, 0.01);
  // Encode to a file, decode to PNG frames.
  ASSERT_EQ(RunCommand(Cmd("encode", "CV8x8x8", clip, dir + "/z.safetensors", "--num-frames 10 --mode windowed --window 9"),
                       &log),
            0)
      << log;
  const at::Tensor z = Read(dir + "/z.safetensors").at("latent");
  // Windows of 9 frames (2 latent frames) and 1 frame (1 latent frame).
  EXPECT_EQ(z.sizes(), (std::vector<int64_t>{1, 16, 2 + 1, 240 / 8, 320 / 8}));
  ASSERT_EQ(RunCommand(Cmd("decode", "CV8x8x8", dir + "/z.safetensors", dir + "/frame.png"), &log), 0) << log;
  int pngs = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".png") ++pngs;
  EXPECT_EQ(pngs, 10);
  auto first = ReadImage(dir + "/frame_000000.png");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->sizes(), (std::vector<int64_t>{240, 320, 3}));
}

TEST(TokenizerCli, BadInputGivesClearErrors) {
  WFM_REQUIRE_FILE(Fixture("DV8x16x16", ".weights.safetensors"));
  const std::string dir = TempDir();
  std::string log;
  // Usage error: a required option is missing.
  EXPECT_EQ(RunCommand(WfmTool() + " tokenizer encode --config " + Fixture("DV8x16x16", ".json") + " 2>&1", &log), 2) << log;
  // NaN in the input.
  TensorMap io = Read(Fixture("DV8x16x16", ".io.safetensors"));
  at::Tensor bad = io.at("input").clone();
  bad[0][0][3][5][5] = std::numeric_limits<float>::quiet_NaN();
  ASSERT_TRUE(WriteSafetensors(dir + "/nan.safetensors", {{"input", bad}}).ok());
  EXPECT_EQ(RunCommand(Cmd("encode", "DV8x16x16", dir + "/nan.safetensors", dir + "/z.safetensors"), &log), 1);
  EXPECT_NE(log.find("NaN"), std::string::npos) << log;
  // Wrong channel count.
  ASSERT_TRUE(WriteSafetensors(dir + "/c4.safetensors", {{"input", at::zeros({1, 4, 9, 32, 32})}}).ok());
  EXPECT_EQ(RunCommand(Cmd("encode", "DV8x16x16", dir + "/c4.safetensors", dir + "/z.safetensors"), &log), 1);
  EXPECT_NE(log.find("4 channels"), std::string::npos) << log;
  // Missing tensor name.
  EXPECT_EQ(RunCommand(Cmd("encode", "DV8x16x16", Fixture("DV8x16x16", ".io.safetensors:nope"), dir + "/z.safetensors"), &log), 1);
  EXPECT_NE(log.find("no tensor \"nope\""), std::string::npos) << log;
  // Weights of another tokenizer.
  EXPECT_EQ(RunCommand(WfmTool() + " tokenizer encode --config " + Fixture("DV8x16x16", ".json") + " --weights " +
                           Fixture("CV8x8x8", ".weights.safetensors") + " --input " + Fixture("DV8x16x16", ".io.safetensors") +
                           " --output " + dir + "/z.safetensors 2>&1",
                       &log),
            1);
  EXPECT_NE(log.find("does not match"), std::string::npos) << log;
  // Unknown mode, missing input file.
  EXPECT_EQ(RunCommand(Cmd("encode", "DV8x16x16", Fixture("DV8x16x16", ".io.safetensors"), dir + "/z.safetensors",
                           "--mode sideways"),
                       &log),
            1);
  EXPECT_NE(log.find("sideways"), std::string::npos) << log;
  EXPECT_EQ(RunCommand(Cmd("reconstruct", "DV8x16x16", dir + "/missing.mp4", dir + "/r.mp4"), &log), 1);
  EXPECT_NE(log.find("missing.mp4"), std::string::npos) << log;
  // A video too short for the requested start frame (each of the three frame loops: windowed encode, streaming
  // encode/reconstruct, windowed reconstruct).
  const std::string clip = testing::SharedPath("media/tree.avi");
  if (std::filesystem::exists(clip)) {
    for (const auto& [verb, mode] : std::vector<std::pair<std::string, std::string>>{
             {"encode", "windowed"}, {"reconstruct", "streaming"}, {"reconstruct", "windowed"}}) {
      const std::string out = dir + (verb == "encode" ? "/z.safetensors" : "/r.mp4");
      EXPECT_EQ(RunCommand(Cmd(verb, "DV8x16x16", clip, out, "--start-frame 100000 --mode " + mode), &log), 1) << log;
      EXPECT_NE(log.find("no frames decoded"), std::string::npos) << verb << " " << mode << ": " << log;
    }
  }
  // Out-of-range indices.
  ASSERT_TRUE(WriteSafetensors(dir + "/idx.safetensors", {{"indices", at::full({1, 2, 2, 2}, 70000, at::kLong)}}).ok());
  EXPECT_EQ(RunCommand(Cmd("decode", "DV8x16x16", dir + "/idx.safetensors", dir + "/r.safetensors"), &log), 1);
  EXPECT_NE(log.find("out of range"), std::string::npos) << log;
}

}  // namespace
}  // namespace wfm::tokenizer
