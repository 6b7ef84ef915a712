// `wfm diffusion ...` end to end: the forward command reproduces the reference fixtures; bad input gives a
// clear error and the right exit code.
#include <ATen/ATen.h>

#include <cstdlib>
#include <gtest/gtest.h>

#include "test_support.h"
#include "wfm/core/file_util.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/text/builtin_encoder.h"
#include "wfm/core/video_io.h"
#include "wfm/curation/webdataset.h"
#include "wfm/diffusion/training.h"
#include "wfm/tokenizer/config.h"

namespace {

using wfm::testing::MaxRelDiff;
using wfm::testing::RunCommand;
using wfm::testing::SharedPath;
using wfm::testing::TempDir;
using wfm::testing::WfmTool;

std::string Fixture(const std::string& file) { return SharedPath("fixtures/diffusion/" + file); }

TEST(DiffusionCli, ForwardReproducesBothFixtures) {
  for (const std::string name : {"dit_t2w", "dit_v2w"}) {
    WFM_REQUIRE_FILE(Fixture(name + ".weights.safetensors"));
    const std::string out = TempDir() + "/" + name + ".out.safetensors";
    std::string log;
    const int rc = RunCommand(WfmTool() + " diffusion forward --config " + Fixture(name + ".json") + " --weights " +
                                  Fixture(name + ".weights.safetensors") + " --input " +
                                  Fixture(name + ".io.safetensors") + " --output " + out + " --threads 1",
                              &log);
    ASSERT_EQ(rc, 0) << log;
    const at::Tensor got = wfm::ReadSafetensors(out).value().at("output");
    const at::Tensor ref = wfm::ReadSafetensors(Fixture(name + ".io.safetensors")).value().at("output");
    EXPECT_LE(MaxRelDiff(got, ref), 1e-4) << name;
  }
}

TEST(DiffusionCli, ForwardBadInputs) {
  WFM_REQUIRE_FILE(Fixture("dit_v2w.weights.safetensors"));
  const std::string dir = TempDir();
  std::string log;
  // Usage error: a required option is missing.
  EXPECT_EQ(RunCommand(WfmTool() + " diffusion forward --config " + Fixture("dit_v2w.json"), &log), 2) << log;
  // The Video2World network without its condition mask.
  wfm::TensorMap io = wfm::ReadSafetensors(Fixture("dit_v2w.io.safetensors")).value();
  io.erase("condition_video_input_mask");
  ASSERT_TRUE(wfm::WriteSafetensors(dir + "/io.safetensors", io).ok());
  EXPECT_EQ(RunCommand(WfmTool() + " diffusion forward --config " + Fixture("dit_v2w.json") + " --weights " +
                           Fixture("dit_v2w.weights.safetensors") + " --input " + dir + "/io.safetensors --output " +
                           dir + "/o.safetensors",
                       &log),
            1);
  EXPECT_NE(log.find("condition_video_input_mask"), std::string::npos) << log;
  // Text2World weights into the Video2World network: strict load names the mismatch.
  EXPECT_EQ(RunCommand(WfmTool() + " diffusion forward --config " + Fixture("dit_v2w.json") + " --weights " +
                           Fixture("dit_t2w.weights.safetensors") + " --input " + Fixture("dit_v2w.io.safetensors") +
                           " --output " + dir + "/o.safetensors",
                       &log),
            1);
  EXPECT_NE(log.find("x_embedder.proj.1.weight"), std::string::npos) << log;
}

}  // namespace

namespace {

// `wfm diffusion generate` smoke runs with random weights (tiny DiT; the CV8x8x8 tokenizer at 32x32).
std::string Generate(const std::string& args) {
  return WfmTool() + " diffusion generate --random-init --tokenizer-config CV8x8x8 --height 32 --width 32 --steps 2 "
                     "--device cpu " + args;
}

TEST(DiffusionCli, GenerateTextToWorldAndVideoToWorldSmoke) {
  const std::string dir = TempDir();
  std::string log;
  ASSERT_EQ(RunCommand(Generate("--config tiny --num-frames 9 --output " + dir + "/t2w.mp4"), &log), 0) << log;
  WFM_ASSERT_OK_AND_ASSIGN(wfm::VideoInfo info, wfm::ProbeVideo(dir + "/t2w.mp4", /*exact=*/true));
  EXPECT_EQ(info.num_frames, 9);
  EXPECT_EQ(info.width, 32);
  // Video2World from the last frame of that video, extended past one clip in latent space, two samples.
  ASSERT_EQ(RunCommand(Generate("--config tiny-video2world --input-video " + dir + "/t2w.mp4 --num-input-frames 1 "
                                "--num-frames 25 --clip-frames 17 --overlap-frames 1 --num-samples 2 --save-latents " +
                                dir + "/lat.safetensors --output " + dir + "/v2w.mp4"),
                       &log),
            0)
      << log;
  WFM_ASSERT_OK_AND_ASSIGN(info, wfm::ProbeVideo(dir + "/v2w_1.mp4", /*exact=*/true));
  EXPECT_EQ(info.num_frames, 25);
  const at::Tensor lat = wfm::ReadSafetensors(dir + "/lat.safetensors").value().at("latent");
  EXPECT_EQ(lat.sizes(), (std::vector<int64_t>{2, 16, 4, 4, 4}));
}

TEST(DiffusionCli, GenerateBadInputs) {
  const std::string dir = TempDir();
  std::string log;
  // Unsupported frame count: the message says which counts work.
  EXPECT_EQ(RunCommand(Generate("--config tiny --num-frames 20 --output " + dir + "/o.mp4"), &log), 1);
  EXPECT_NE(log.find("1 + k*8"), std::string::npos) << log;
  // A prompt without a text encoder.
  EXPECT_EQ(RunCommand(Generate("--config tiny --num-frames 9 --prompt 'a red ball' --output " + dir + "/o.mp4"), &log),
            1);
  EXPECT_NE(log.find("text encoder"), std::string::npos) << log;
  // Tokenizer latent channels vs the DiT.
  wfm::tokenizer::TokenizerConfig t = wfm::tokenizer::TokenizerConfig::Preset("CV8x8x8").value();
  t.latent_channels = t.z_channels = 8;
  ASSERT_TRUE(wfm::WriteFileAtomically(dir + "/tok8.json", t.ToJsonString()).ok());
  EXPECT_EQ(RunCommand(WfmTool() + " diffusion generate --config tiny --random-init --tokenizer-config " + dir +
                           "/tok8.json --num-frames 9 --output " + dir + "/o.mp4",
                       &log),
            1);
  EXPECT_NE(log.find("latent shape mismatch"), std::string::npos) << log;
  // Input frames for a Text2World network.
  EXPECT_EQ(RunCommand(Generate("--config tiny --input-video " + dir + "/none.mp4 --num-frames 17 --output " + dir +
                                "/o.mp4"),
                       &log),
            1);
  EXPECT_NE(log.find("Video2World"), std::string::npos) << log;
  // Size beyond the DiT's position tables.
  EXPECT_EQ(RunCommand(WfmTool() + " diffusion generate --config tiny --random-init --tokenizer-config CV8x8x8 "
                                   "--num-frames 9 --height 1024 --width 64 --output " + dir + "/o.mp4",
                       &log),
            1);
  EXPECT_NE(log.find("maximum"), std::string::npos) << log;
}

// A prompt through a text encoder (the built-in byte-level T5 at the tiny DiT's width 32), with a negative
// prompt; a text encoder of the wrong width is refused.
TEST(DiffusionCli, GenerateWithTextEncoder) {
  const std::string dir = TempDir();
  for (int64_t d : {32, 48}) {
    wfm::text::BuiltinTextEncoderOptions o;
    o.d_model = d;
    o.num_layers = 1;
    o.num_heads = 2;
    o.d_kv = 16;
    o.d_ff = 64;
    o.max_length = 32;
    auto enc = wfm::text::CreateBuiltinTextEncoder(o);
    ASSERT_TRUE(enc.ok()) << enc.status();
    WFM_ASSERT_OK(wfm::text::SaveBuiltinTextEncoder(**enc, dir + "/text" + std::to_string(d) + ".safetensors"));
  }
  std::string log;
  ASSERT_EQ(RunCommand(Generate("--config tiny --num-frames 9 --text-encoder " + dir + "/text32.safetensors "
                                "--prompt 'a red ball rolls left' --negative-prompt 'blurry' --output " + dir +
                                "/p.mp4"),
                       &log),
            0)
      << log;
  EXPECT_EQ(RunCommand(Generate("--config tiny --num-frames 9 --text-encoder " + dir + "/text48.safetensors "
                                "--prompt 'a red ball' --output " + dir + "/q.mp4"),
                       &log),
            1);
  EXPECT_NE(log.find("crossattn_emb_channels is 32"), std::string::npos) << log;
}

// `wfm diffusion train` on the synthetic latent process: metrics, checkpoints, EMA weights usable by generate,
// resume from the latest checkpoint; bad data arguments are usage errors.
TEST(DiffusionCli, TrainSyntheticResumeAndGenerate) {
  const std::string out = TempDir() + "/run";
  const std::string train = WfmTool() + " diffusion train --config tiny-video2world --synthetic --batch-size 2 "
                                        "--lr 2e-3 --warmup 2 --log-every 5 --eval-every 10 --checkpoint-every 10 "
                                        "--device cpu --threads 1 --output " + out;
  std::string log;
  ASSERT_EQ(RunCommand(train + " --steps 10", &log), 0) << log;
  ASSERT_EQ(RunCommand(train + " --steps 20", &log), 0) << log;
  EXPECT_NE(log.find("resumed from"), std::string::npos) << log;
  std::string metrics = wfm::ReadFile(out + "/metrics.jsonl").value();
  EXPECT_NE(metrics.find("\"step\":20"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("eval_loss"), std::string::npos) << metrics;
  EXPECT_TRUE(wfm::testing::FileExists(out + "/checkpoints/step_00000020/model_ema.safetensors"));
  EXPECT_TRUE(wfm::testing::FileExists(out + "/samples/step_20.safetensors"));
  ASSERT_EQ(RunCommand(Generate("--config " + out + "/config.json --weights " + out +
                                "/model_ema.safetensors --num-frames 9 --output " + out + "/g.mp4"),
                       &log),
            0)
      << log;
  EXPECT_EQ(RunCommand(WfmTool() + " diffusion train --output " + out + "/x", &log), 2) << log;
  EXPECT_NE(log.find("exactly one of"), std::string::npos) << log;

  // Pre-tokenized clips (raw latents + stored text embeddings), Text2World network.
  for (int i = 0; i < 3; ++i) {
    wfm::diffusion::LatentClip c;
    c.latent = at::randn({16, 2, 4, 4});
    c.crossattn_emb = at::randn({3, 32});
    WFM_ASSERT_OK(wfm::diffusion::LatentFolder::Write(out + "/clips/" + std::to_string(i) + ".safetensors", c));
  }
  ASSERT_EQ(RunCommand(WfmTool() + " diffusion train --config tiny --data " + out + "/clips --steps 3 --batch-size 2 "
                                   "--device cpu --threads 1 --output " + out + "/run2",
                       &log),
            0)
      << log;
  EXPECT_NE(log.find("3 pre-tokenized clips"), std::string::npos) << log;

  // Curated shards whose clips carry stored latents (wfm curate --latents): no tokenizer weights needed; clips
  // are cut to 9 frames x 32 x 32 pixels (2 x 4 x 4 latents) from larger stored latents.
  {
    auto tar = wfm::curation::TarWriter::Open(out + "/shards/part_000000/000000.tar");
    ASSERT_TRUE(tar.ok()) << tar.status();
    for (int i = 0; i < 3; ++i) {
      const std::string lat = out + "/lat.safetensors";
      WFM_ASSERT_OK(wfm::WriteSafetensors(lat, {{"latent", at::randn({16, 3, 6, 6})}}));
      const std::string key = "clip" + std::to_string(i);
      WFM_ASSERT_OK((*tar)->Add(key + ".latent.safetensors", wfm::ReadFile(lat).value()));
      WFM_ASSERT_OK((*tar)->Add(key + ".txt", "a ball rolls"));
    }
    // A truncated latent member is skipped with the reader's error naming shard and member.
    const std::string good = wfm::ReadFile(out + "/lat.safetensors").value();
    WFM_ASSERT_OK((*tar)->Add("clip_bad.latent.safetensors", good.substr(0, good.size() - 100)));
    WFM_ASSERT_OK((*tar)->Add("clip_bad.txt", "a ball rolls"));
    WFM_ASSERT_OK((*tar)->Finish());
  }
  ASSERT_EQ(RunCommand(WfmTool() + " diffusion train --config tiny --shards " + out + "/shards --num-frames 9 "
                                   "--height 32 --width 32 --steps 2 --batch-size 2 --device cpu --threads 1 --output " +
                                   out + "/run3",
                       &log),
            0)
      << log;
  EXPECT_NE(log.find("webdataset shards"), std::string::npos) << log;
  EXPECT_NE(log.find("skipping clip_bad"), std::string::npos) << log;
  EXPECT_NE(log.find("000000.tar:clip_bad.latent.safetensors"), std::string::npos) << log;
  EXPECT_NE(log.find("truncated?"), std::string::npos) << log;
  // Stored latents are parsed in memory: no scratch file is written next to the run.
  for (const auto& e : std::filesystem::directory_iterator(out + "/run3"))
    EXPECT_EQ(e.path().filename().string().rfind(".shard_latent", 0), std::string::npos) << e.path();
}

}  // namespace

namespace {

// `wfm diffusion train --videos`: clips of `wfm world` videos tokenized on the fly by the CV8x8x8 fixture tokenizer
// (random small weights), captions from KEY.txt; the final sample is decoded to an MP4 through the tokenizer.
TEST(DiffusionCli, TrainOnVideoFolderTokenizedOnTheFly) {
  const std::string tok = SharedPath("fixtures/tokenizer/CV8x8x8");
  WFM_REQUIRE_FILE(tok + ".weights.safetensors");
  const std::string dir = TempDir();
  std::string log;
  ASSERT_EQ(RunCommand(WfmTool() + " world --output " + dir + "/world --num-clips 2 --frames 60 --size 32x32 "
                                   "--threads 1",
                       &log),
            0)
      << log;
  const std::string train = WfmTool() + " diffusion train --config tiny-video2world --videos " + dir +
                            "/world --fps 12 --num-frames 9 --height 32 --width 32 --tokenizer-config " + tok +
                            ".json --steps 2 --batch-size 2 --device cpu --threads 1 --output " + dir + "/run";
  // Videos need the tokenizer weights.
  EXPECT_EQ(RunCommand(train, &log), 1) << log;
  EXPECT_NE(log.find("--tokenizer-weights"), std::string::npos) << log;
  ASSERT_EQ(RunCommand(train + " --tokenizer-weights " + tok + ".weights.safetensors", &log), 0) << log;
  EXPECT_NE(log.find("2 videos"), std::string::npos) << log;
  WFM_ASSERT_OK_AND_ASSIGN(wfm::VideoInfo info, wfm::ProbeVideo(dir + "/run/samples/step_2.mp4", /*exact=*/true));
  EXPECT_EQ(info.num_frames, 9);
  EXPECT_EQ(info.width, 32);
  // A frame count the tokenizer cannot take.
  EXPECT_NE(RunCommand(train + " --num-frames 10 --tokenizer-weights " + tok + ".weights.safetensors", &log), 0);
  EXPECT_NE(log.find("1 + k*8"), std::string::npos) << log;
}

}  // namespace

namespace {

// `wfm diffusion train` under `mpirun -np 2` with batch 2 equals one process with batch 4: the noise follows each
// sample's global index, gradients are averaged across ranks, so after 3 steps the AdamW moments and the weights
// agree. Skips unless the ctest DiffusionCliMpi.TrainTwoRanks (label mpi) starts it with WFM_MPIEXEC set.
TEST(DiffusionCliMpi, TwoRanksTrainLikeOneRankWithTheDoubledBatch) {
  const char* mpiexec = std::getenv("WFM_MPIEXEC");
  if (mpiexec == nullptr || std::getenv("OMPI_COMM_WORLD_SIZE"))
    GTEST_SKIP() << "run by the ctest DiffusionCliMpi.TrainTwoRanks (label mpi), which sets WFM_MPIEXEC";
  const std::string dir = TempDir();
  const std::string train = WfmTool() + " diffusion train --config tiny --synthetic --steps 3 --device cpu "
                                        "--threads 1 --seed 4 --output " + dir;
  std::string log;
  ASSERT_EQ(RunCommand(train + "/one --batch-size 4", &log), 0) << log;
  ASSERT_EQ(RunCommand("WFM_NUM_THREADS=1 " + std::string(mpiexec) + " --allow-run-as-root --oversubscribe -np 2 " +
                           train + "/two --batch-size 2",
                       &log),
            0)
      << log;
  for (const char* file : {"optimizer.safetensors", "model.safetensors"}) {
    // AdamW moments follow the gradients directly (other noise would change them completely).
    const std::string ckpt = std::string("/checkpoints/step_00000003/") + file;
    wfm::testing::ExpectSafetensorsClose(dir + "/one" + ckpt, dir + "/two" + ckpt, 1e-3, 40,
                                         "2 ranks must draw the noise 1 rank draws");
  }
}

}  // namespace
