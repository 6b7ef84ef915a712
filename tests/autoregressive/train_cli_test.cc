// `wfm ar train` end to end: a tiny model trains on the synthetic process, its loss falls, a run resumed from a
// checkpoint ends bit-identical to an uninterrupted one, the exported config + weights load in `ar logits`; the
// token-folder source with a jointly trained built-in text encoder, curated shards tokenized on the fly, samples,
// and bad input (exit codes and messages).
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_support.h"
#include "wfm/autoregressive/data.h"
#include "wfm/autoregressive/train.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/video_io.h"

namespace {

using wfm::testing::FileExists;
using wfm::testing::RunCommand;
using wfm::testing::SharedPath;
using wfm::testing::TempDir;
using wfm::testing::WfmTool;

std::vector<nlohmann::json> ReadJsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::vector<nlohmann::json> Records(const std::string& path, const std::string& split) {
  std::vector<nlohmann::json> out;
  for (auto& r : ReadJsonl(path))
    if (r.value("split", "") == split) out.push_back(r);
  return out;
}

// Constant LR after a short warmup, so a run of 20 steps is a prefix of a run of 40 (cosine would depend on the
// total).
std::string SyntheticTrain(const std::string& out, int steps) {
  return WfmTool() + " ar train --config tiny --synthetic --batch-size 8 --lr 3e-3 --warmup 5 --schedule constant " +
         "--log-every 5 --eval-every 0 --val-samples 4 --device cpu --threads 1 --output " + out + " --steps " +
         std::to_string(steps);
}

TEST(ArTrainCli, SyntheticLossFallsResumeIsExactAndWeightsLoad) {
  const std::string dir = TempDir();
  std::string log;
  ASSERT_EQ(RunCommand(SyntheticTrain(dir + "/a", 40), &log), 0) << log;
  // the same run, stopped at 20 and resumed from its checkpoint
  ASSERT_EQ(RunCommand(SyntheticTrain(dir + "/b", 20), &log), 0) << log;
  ASSERT_EQ(RunCommand(SyntheticTrain(dir + "/b", 40), &log), 0) << log;
  EXPECT_NE(log.find("trained steps 20..40"), std::string::npos) << log;

  const auto train = Records(dir + "/a/metrics.jsonl", "train");
  ASSERT_GE(train.size(), 4u);
  const double first = train.front()["loss"], last = train.back()["loss"];
  std::cout << "[ ar train ] tiny model, synthetic bars: loss " << first << " -> " << last << "\n";
  EXPECT_LT(last, first - 2.0) << "HINT: the loss must fall from ~ln(512) = 6.2";
  const auto val = Records(dir + "/a/metrics.jsonl", "val");
  ASSERT_FALSE(val.empty());
  EXPECT_TRUE(val.back().contains("val_ce") && val.back().contains("rollout_match")) << val.back().dump();
  // resumed == uninterrupted, and the log of the resumed run has every step once
  const wfm::TensorMap wa = wfm::ReadSafetensors(dir + "/a/model.safetensors").value();
  const wfm::TensorMap wb = wfm::ReadSafetensors(dir + "/b/model.safetensors").value();
  ASSERT_EQ(wa.size(), wb.size());
  for (const auto& [name, t] : wa) EXPECT_TRUE(at::equal(t, wb.at(name))) << name << " differs after resume";
  const auto train_b = Records(dir + "/b/metrics.jsonl", "train");
  ASSERT_EQ(train_b.size(), train.size());
  for (size_t i = 0; i < train.size(); ++i) EXPECT_EQ(train[i]["step"], train_b[i]["step"]);
  // the exported config and EMA weights load strictly
  ASSERT_TRUE(wfm::WriteSafetensors(dir + "/io.safetensors", {{"tokens", at::zeros({1, 48}, at::kLong)}}).ok());
  EXPECT_EQ(RunCommand(WfmTool() + " ar logits --config " + dir + "/a/config.json --weights " + dir +
                           "/a/model_ema.safetensors --input " + dir + "/io.safetensors --output " + dir +
                           "/logits.safetensors --threads 1",
                       &log),
            0)
      << log;
  const nlohmann::json summary = nlohmann::json::parse(std::ifstream(dir + "/a/summary.json"));
  EXPECT_EQ(summary["steps"], 40);
}

TEST(ArTrainCli, TokenFolderWithAJointlyTrainedBuiltinTextEncoder) {
  const std::string dir = TempDir();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  std::vector<int> dirs;
  const at::Tensor clips = wfm::ar::MovingBarTokens(6, 3, 4, 4, 64, gen, &dirs);
  for (int64_t i = 0; i < 6; ++i) {
    const std::string path = dir + "/clips/clip_" + std::to_string(i) + ".safetensors";
    ASSERT_TRUE(wfm::ar::TokenFolder::Write(path, {path, clips[i], {}, dirs[i] > 0 ? "moving right" : "moving left"})
                    .ok());
  }
  std::string log;
  ASSERT_EQ(RunCommand(WfmTool() + " ar train --config tiny-v2w --tokens " + dir + "/clips --text-encoder builtin " +
                           "--steps 6 --batch-size 4 --sample-every 3 --eval-every 3 --val-fraction 0.34 --device cpu " +
                           "--threads 1 --output " + dir + "/run",
                       &log),
            0)
      << log;
  EXPECT_TRUE(FileExists(dir + "/run/text_encoder.safetensors")) << log;
  const wfm::TensorMap s = wfm::ReadSafetensors(dir + "/run/samples/step_00000006.safetensors").value();
  EXPECT_EQ(s.at("tokens").sizes(), at::IntArrayRef({2, 3, 4, 4}));  // 2 held-out clips, greedy rollouts
  EXPECT_TRUE(at::equal(s.at("tokens").select(1, 0), s.at("truth").select(1, 0))) << "the condition frame is kept";
  EXPECT_EQ(Records(dir + "/run/metrics.jsonl", "val").size(), 2u);
}

// Curated shards (KEY.mp4 + KEY.txt) are extracted once and their clips tokenized on the fly.
TEST(ArTrainCli, ShardsTokenizedOnTheFlyWithDecodedSamples) {
  const std::string dir = TempDir();
  // a 40-frame clip of a square moving right, in a plain tar shard as `wfm curate` writes them
  at::Tensor frames = at::zeros({40, 64, 64, 3}, at::kByte);
  for (int64_t t = 0; t < 40; ++t) frames[t].narrow(0, 24, 16).narrow(1, t, 16).fill_(220);
  ASSERT_TRUE(wfm::WriteVideo(dir + "/clip_a.mp4", frames, {.fps = 10}).ok());
  { std::ofstream(dir + "/clip_a.txt") << "a white square slides right"; }
  std::string log;
  ASSERT_EQ(RunCommand("tar -cf " + dir + "/shard-000000.tar -C " + dir + " clip_a.mp4 clip_a.txt", &log), 0) << log;
  // tiny model (latent 3x4x4) + the tiny random DV tokenizer (8x16x16, 512 codes): clips of 17 frames at 64x64
  ASSERT_EQ(RunCommand(WfmTool() + " ar train --config tiny --shards " + dir + "/shard-000000.tar --tokenizer-config " +
                           wfm::testing::SourceDir() + "/tests/autoregressive/data/dv_tiny_tokenizer.json " +
                           "--random-tokenizer --steps 2 --batch-size 2 --val-samples 2 --val-fraction 0.5 " +
                           "--sample-every 2 --device cpu --threads 1 --output " + dir + "/run",
                       &log),
            0)
      << log;
  EXPECT_TRUE(FileExists(dir + "/run/shard_videos/shard-000000_clip_a.txt")) << log;
  EXPECT_TRUE(FileExists(dir + "/run/samples/step_00000002.mp4")) << log;
  std::string info;
  ASSERT_EQ(RunCommand(WfmTool() + " info " + dir + "/run/samples/step_00000002.mp4", &info), 0) << info;
  EXPECT_NE(info.find("\"width\":128"), std::string::npos) << "truth | rollout side by side\n" << info;
}

TEST(ArTrainCli, BadInputs) {
  const std::string dir = TempDir();
  std::string log;
  const std::string base = WfmTool() + " ar train --config tiny --device cpu --threads 1 --output " + dir + "/o ";
  EXPECT_EQ(RunCommand(base, &log), 2) << log;  // no data source
  EXPECT_NE(log.find("exactly one"), std::string::npos) << log;
  EXPECT_EQ(RunCommand(base + "--synthetic --tokens " + dir, &log), 2) << log;
  EXPECT_EQ(RunCommand(WfmTool() + " ar train --help", &log), 0);
  EXPECT_NE(log.find("--text-dropout"), std::string::npos);
  EXPECT_EQ(RunCommand(base + "--tokens " + dir + "/missing", &log), 1);
  EXPECT_NE(log.find("missing"), std::string::npos) << log;
  EXPECT_EQ(RunCommand(base + "--synthetic --condition-frames 3", &log), 1);
  EXPECT_NE(log.find("to predict"), std::string::npos) << log;
  EXPECT_EQ(RunCommand(base + "--videos " + dir + " --tokenizer-config DV8x16x16-720p --random-tokenizer", &log), 1);
  EXPECT_NE(log.find("vocabulary mismatch"), std::string::npos) << log;
  EXPECT_EQ(RunCommand(base + "--synthetic --max-time soon", &log), 2) << log;
}

// `wfm ar train` under `mpirun -np 2` with batch 4 trains what one process with batch 8 does (data-parallel:
// every sample follows its global index; gradients are averaged across ranks). Skips unless the ctest
// ArCliMpi.TrainTwoRanks (label mpi) starts it with WFM_MPIEXEC set.
TEST(ArCliMpi, TwoRanksTrainLikeOneRankWithTheDoubledBatch) {
  const char* mpiexec = std::getenv("WFM_MPIEXEC");
  if (mpiexec == nullptr || std::getenv("OMPI_COMM_WORLD_SIZE"))
    GTEST_SKIP() << "run by the ctest ArCliMpi.TrainTwoRanks (label mpi), which sets WFM_MPIEXEC";
  const std::string dir = TempDir();
  const std::string train = WfmTool() + " ar train --config tiny --synthetic --lr 3e-3 --warmup 5 --schedule constant "
                                        "--steps 3 --eval-every 0 --device cpu --threads 1 --seed 4 --output " + dir;
  std::string log;
  ASSERT_EQ(RunCommand(train + "/one --batch-size 8", &log), 0) << log;
  ASSERT_EQ(RunCommand("WFM_NUM_THREADS=1 " + std::string(mpiexec) + " --allow-run-as-root --oversubscribe -np 2 " +
                           train + "/two --batch-size 4",
                       &log),
            0)
      << log;
  EXPECT_NE(log.find("2 process(es)"), std::string::npos) << log;
  for (const char* file : {"optimizer.safetensors", "model.safetensors"}) {
    const std::string ckpt = std::string("/checkpoints/step_00000003/") + file;
    wfm::testing::ExpectSafetensorsClose(dir + "/one" + ckpt, dir + "/two" + ckpt, 1e-3, 20,
                                         "rank r must train on samples r*B..(r+1)*B-1 of the global batch");
  }
}

}  // namespace
