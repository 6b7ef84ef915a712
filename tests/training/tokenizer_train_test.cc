// Tokenizer training: losses, discriminator, shape rules, the clip sampler on real video, and an end-to-end
// training run (learns, exports loadable weights, resumes, and `wfm tokenizer eval` reproduces its score), and
// the CLI training from webdataset shards.
#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "test_support.h"
#include "wfm/core/file_util.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/train/jsonl_log.h"
#include "wfm/core/train/video_clips.h"
#include "wfm/core/video_io.h"
#include "wfm/tokenizer/train.h"
#include "wfm/tokenizer/weights.h"

namespace wfm::tokenizer {
namespace {
namespace fs = std::filesystem;

TEST(TokenizerLossTest, TermsMatchTheirDefinitions) {
  at::manual_seed(0);
  at::Tensor x = at::rand({2, 3, 5, 16, 16}) * 2 - 1;
  TokenizerLossWeights w;
  LossTerms same = ReconstructionLoss(x, x, w);
  EXPECT_NEAR(same.total.item<double>(), 0.0, 1e-6);
  // A constant offset: L1 = offset, no temporal change, SSIM below 1.
  LossTerms off = ReconstructionLoss(x, x + 0.1, w);
  EXPECT_NEAR(off.parts.at("l1").item<double>(), 0.1, 1e-6);
  EXPECT_NEAR(off.parts.at("temporal").item<double>(), 0.0, 1e-6);
  EXPECT_GT(off.parts.at("ssim_loss").item<double>(), 0.0);
  const double expected = w.l1 * 0.1 + w.ssim * off.parts.at("ssim_loss").item<double>();
  EXPECT_NEAR(off.total.item<double>(), expected, 1e-6);
  // Freezing the video (every frame = the first) is caught by the temporal term.
  at::Tensor frozen = x.narrow(2, 0, 1).expand_as(x).contiguous();
  LossTerms fz = ReconstructionLoss(x, frozen, w);
  const at::Tensor dx = x.narrow(2, 1, 4) - x.narrow(2, 0, 4);
  EXPECT_NEAR(fz.parts.at("temporal").item<double>(), dx.abs().mean().item<double>(), 1e-6);
  // KL of a standard normal posterior is 0.
  at::Tensor mean = at::zeros({2, 4, 2, 2, 2}), logvar = at::zeros({2, 4, 2, 2, 2});
  EXPECT_NEAR(ReconstructionLoss(x, x, w, mean, logvar).parts.at("kl").item<double>(), 0.0, 1e-9);
}

TEST(TokenizerLossTest, DiscriminatorShapesAndHinge) {
  PatchDiscriminator3d d(8, 3);
  at::Tensor logits = d->forward(at::randn({2, 3, 9, 32, 32}));
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 1, 3, 4, 4}));
  EXPECT_NEAR(DiscriminatorHingeLoss(at::full({4}, 2.0), at::full({4}, -2.0)).item<double>(), 0.0, 1e-9);
  EXPECT_NEAR(DiscriminatorHingeLoss(at::zeros({4}), at::zeros({4})).item<double>(), 2.0, 1e-9);
  EXPECT_NEAR(GeneratorHingeLoss(at::full({4}, -2.0)).item<double>(), 2.0, 1e-9);
}

TEST(TokenizerEvalTest, CropToTokenizerShape) {
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig c, TokenizerConfig::Preset("CV4x8x8"));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor t, CropToTokenizerShape(c, at::zeros({20, 70, 90, 3}, at::kByte)));
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{17, 64, 88, 3}));
  EXPECT_FALSE(CropToTokenizerShape(c, at::zeros({5, 6, 90, 3}, at::kByte)).ok());
  EXPECT_FALSE(CropToTokenizerShape(c, at::zeros({5, 64, 64}, at::kByte)).ok());
}

TEST(VideoClipsTest, RealVideoSplitByTimeAndDeterministicClips) {
  // tree.avi: cinepak with 68 coded frames whose timestamps span 29.6 s; at a constant 15 fps that is ~444.
  const std::string tree = testing::SharedPath("media/tree.avi");
  WFM_REQUIRE_FILE(tree);
  train::VideoClipOptions o;
  o.num_frames = 9;
  o.fps = 15;
  o.width = o.height = 64;
  o.resize_short_side = 80;
  o.seed = 3;
  o.max_zoom = 1.5;
  o.random_flip = true;
  WFM_ASSERT_OK_AND_ASSIGN(auto ds, train::VideoClipDataset::Open({tree}, o));
  ASSERT_EQ(ds->videos().size(), 1u);
  const auto& v = ds->videos()[0];
  EXPECT_NEAR(v.num_frames, 444, 2);
  EXPECT_EQ(v.train_end, static_cast<int64_t>(std::floor(v.num_frames * 0.85)));
  EXPECT_EQ(v.decoded_height, 80);
  EXPECT_EQ(v.decoded_width, 108);  // 320 * 80 / 240 = 106.7 -> 107 -> even
  for (uint64_t i = 0; i < 20; ++i) {
    WFM_ASSERT_OK_AND_ASSIGN(train::VideoClip c, ds->TrainClip(i));
    EXPECT_EQ(c.frames.sizes(), (std::vector<int64_t>{9, 64, 64, 3}));
    EXPECT_LE(c.start_frame + 9, v.train_end) << "a training clip reaches into the held-out span";
    WFM_ASSERT_OK_AND_ASSIGN(train::VideoClip again, ds->TrainClip(i));
    EXPECT_TRUE(at::equal(c.frames, again.frames)) << "clip " << i << " is not a function of its index";
  }
  WFM_ASSERT_OK_AND_ASSIGN(auto val, ds->ValidationClips(0));
  EXPECT_EQ(val.size(), static_cast<size_t>((v.num_frames - v.val_begin) / 9));
  for (const auto& c : val) EXPECT_GE(c.start_frame, v.val_begin);
  // The loader yields the same batches whatever its prefetch depth, and resumes at a position.
  train::ClipBatchLoader a(*ds, 2, 1), b(*ds, 2, 4);
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor a0, a.Next());
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor a1, a.Next());
  EXPECT_EQ(a0.sizes(), (std::vector<int64_t>{2, 3, 9, 64, 64}));
  EXPECT_LE(a0.max().item<double>(), 1.0);
  EXPECT_GE(a0.min().item<double>(), -1.0);
  WFM_ASSERT_OK(b.LoadState(nlohmann::json{{"batch", 1}}));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor b1, b.Next());
  EXPECT_TRUE(at::equal(a1, b1));
  EXPECT_EQ(b.SaveState()["batch"], 2);
  // Errors: nothing long enough, bad options.
  o.num_frames = 1000;
  EXPECT_EQ(train::VideoClipDataset::Open({tree}, o).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(train::VideoClipDataset::Open({testing::TempDir()}, o).status().code(), absl::StatusCode::kNotFound);
}

// A small synthetic video: a bright square moving over a smooth gradient (easy to learn, temporally coherent).
std::string MakeVideo(const std::string& dir) {
  const int64_t t = 60, h = 48, w = 48;
  at::Tensor yy = at::arange(h, at::kFloat).view({1, h, 1, 1}), xx = at::arange(w, at::kFloat).view({1, 1, w, 1});
  at::Tensor tt = at::arange(t, at::kFloat).view({t, 1, 1, 1});
  at::Tensor cc = at::tensor({0.0f, 1.0f, 2.0f}).view({1, 1, 1, 3});
  at::Tensor bg = 90 + 50 * at::sin(xx * 0.13 + yy * 0.07 + cc + tt * 0.05);
  at::Tensor cx = (tt * 0.6).remainder(w - 12), cy = 18 + 8 * at::sin(tt * 0.2);
  at::Tensor inside = ((xx >= cx) & (xx < cx + 10) & (yy >= cy) & (yy < cy + 10)).to(at::kFloat);
  at::Tensor frames = (bg * (1 - inside) + 230 * inside).clamp(0, 255).to(at::kByte).contiguous();
  const std::string path = dir + "/square.mp4";
  EncodeOptions e;
  e.fps = 10;
  e.crf = 12;
  EXPECT_TRUE(WriteVideo(path, frames, e).ok());
  return path;
}

TEST(TokenizerTrainTest, LearnsExportsResumesAndEvalAgrees) {
  const std::string dir = testing::TempDir();
  const std::string video = MakeVideo(dir);
  TokenizerTrainOptions o;
  o.inputs = {video};
  WFM_ASSERT_OK_AND_ASSIGN(o.config, TokenizerConfig::Preset("CV4x8x8"));
  o.config.channels = 8;
  o.data.num_frames = 5;
  o.data.width = o.data.height = 32;
  o.data.resize_short_side = 40;
  o.val_clips = 2;
  o.steps = 40;
  o.batch_size = 2;
  o.lr = 3e-3;
  o.warmup_steps = 5;
  o.eval_every = 20;
  o.sample_every = 40;
  o.checkpoint_every = 20;
  o.log_every = 5;
  o.output_dir = dir + "/out";
  o.device = "cpu";
  o.quiet = true;

  // The untrained model's held-out score, for comparison.
  o.steps = 1;
  o.lr = 1e-9;
  o.output_dir = dir + "/untrained";
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerTrainResult untrained, TrainTokenizer(o));
  o.lr = 3e-3;
  o.output_dir = dir + "/out";

  o.steps = 40;
  {
    WFM_ASSERT_OK_AND_ASSIGN(TokenizerTrainResult r, TrainTokenizer(o));
    EXPECT_EQ(r.steps, 40);
    EXPECT_GT(r.val_psnr, untrained.val_psnr + 3.0)
        << "training did not improve the held-out PSNR enough: " << untrained.val_psnr << " -> " << r.val_psnr;
    EXPECT_TRUE(std::isfinite(r.val_ssim));
    // Exports: loadable weights + config, curves, grids, summary, metrics with val records.
    WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig cfg, TokenizerConfig::FromJsonFile(r.config_path));
    TokenizerNetwork net(cfg);
    WFM_ASSERT_OK(LoadTokenizerWeights(*net, r.weights_path).status());
    for (const char* f : {"curves.svg", "summary.json", "samples/recon_00000040.png", "train_config.json",
                          "checkpoints/step_00000040/model_ema.safetensors", "checkpoints/step_00000020/state.json"})
      EXPECT_TRUE(fs::exists(o.output_dir + "/" + f)) << f;
    WFM_ASSERT_OK_AND_ASSIGN(auto log, train::JsonlLog::ReadAll(o.output_dir + "/metrics.jsonl"));
    int val_records = 0;
    for (const auto& rec : log) val_records += rec["split"] == "val";
    EXPECT_EQ(val_records, 2);  // step 20 and the end

    // `wfm tokenizer eval` on the same held-out clips reproduces the training's final score.
    std::string out;
    const std::string cmd = testing::WfmTool() + " tokenizer eval --config " + r.config_path + " --weights " +
                            r.weights_path + " --input " + video +
                            " --split val --frames 5 --size 32 --short-side 40 --max-clips 2 --device cpu --output " +
                            dir + "/eval.json 2>&1";
    ASSERT_EQ(testing::RunCommand(cmd, &out), 0) << out;
    WFM_ASSERT_OK_AND_ASSIGN(std::string text, ReadFile(dir + "/eval.json"));
    const nlohmann::json j = nlohmann::json::parse(text);
    EXPECT_NEAR(j["mean_psnr"].get<double>(), r.val_psnr, 1e-6) << out;
    EXPECT_NEAR(j["mean_ssim"].get<double>(), r.val_ssim, 1e-6) << out;
    EXPECT_FALSE(j.contains("serve"));
    // Through the serving path: streaming (one chunk here) is the whole-clip result; tiling is recorded and
    // scores finite (its seam cost on real footage is measured in docs/PERFORMANCE.md).
    ASSERT_EQ(testing::RunCommand(cmd + " --mode streaming", &out), 0) << out;
    WFM_ASSERT_OK_AND_ASSIGN(text, ReadFile(dir + "/eval.json"));
    const nlohmann::json js = nlohmann::json::parse(text);
    EXPECT_NEAR(js["mean_psnr"].get<double>(), r.val_psnr, 1e-3) << out;
    EXPECT_EQ(js["serve"]["mode"], "streaming");
    ASSERT_EQ(testing::RunCommand(cmd + " --tile 16 --tile-overlap 8", &out), 0) << out;
    WFM_ASSERT_OK_AND_ASSIGN(text, ReadFile(dir + "/eval.json"));
    const nlohmann::json jt = nlohmann::json::parse(text);
    EXPECT_EQ(jt["serve"]["tile"], 16);
    EXPECT_TRUE(std::isfinite(jt["mean_psnr"].get<double>())) << out;
    EXPECT_NE(jt["mean_psnr"].get<double>(), r.val_psnr) << "the tiled run did not tile";
  }
  // Resume from the step-20 checkpoint in a fresh directory: the second half gives the same final weights.
  const std::string copy = dir + "/resumed";
  fs::create_directories(copy + "/checkpoints");
  fs::copy(o.output_dir + "/checkpoints/step_00000020", copy + "/checkpoints/step_00000020",
           fs::copy_options::recursive);
  TokenizerTrainOptions resumed = o;
  resumed.steps = 40;
  resumed.output_dir = copy;
  resumed.seed = 12345;  // a different init: the checkpoint must win
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerTrainResult r2, TrainTokenizer(resumed));
  EXPECT_EQ(r2.steps, 40);
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap a, ReadSafetensors(o.output_dir + "/model_ema.safetensors"));
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap b, ReadSafetensors(copy + "/model_ema.safetensors"));
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, v] : a) EXPECT_TRUE(at::equal(v, b.at(k))) << k << ": resume is not bit-exact";
}

// Fine-tuning from a published checkpoint (issue 3: "load, then train"), on the shared fixture weights in the
// reference layout: with a negligible learning rate the run exports the loaded weights (nothing re-initialises
// them), training from them through `wfm tokenizer train --init-weights` improves the held-out score, and a
// checkpoint of another architecture is a clear error naming the flag.
TEST(TokenizerTrainTest, FineTunesFromAPublishedCheckpoint) {
  const std::string fixture = testing::SharedPath("fixtures/tokenizer/CV4x8x8");
  WFM_REQUIRE_FILE(fixture + ".weights.safetensors");
  const std::string dir = testing::TempDir();
  const std::string video = MakeVideo(dir);
  TokenizerTrainOptions o;
  o.inputs = {video};
  WFM_ASSERT_OK_AND_ASSIGN(o.config, TokenizerConfig::FromJsonFile(fixture + ".json"));
  o.init_weights = fixture + ".weights.safetensors";
  o.data.num_frames = 5;
  o.data.width = o.data.height = 32;
  o.data.resize_short_side = 40;
  o.val_clips = 2;
  o.batch_size = 2;
  o.steps = 2;
  o.lr = o.min_lr = 1e-20;  // moves no weight by more than ~1e-20 (a re-initialised weight would move by ~0.1)
  o.weight_decay = 0;
  o.warmup_steps = 0;
  o.output_dir = dir + "/frozen";
  o.device = "cpu";
  o.quiet = true;
  o.seed = 7;  // a random init that the loaded weights must replace
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerTrainResult frozen, TrainTokenizer(o));
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap published, ReadSafetensors(o.init_weights));
  for (const char* f : {"model.safetensors", "model_ema.safetensors"}) {
    WFM_ASSERT_OK_AND_ASSIGN(TensorMap exported, ReadSafetensors(o.output_dir + "/" + f));
    EXPECT_EQ(exported.size(), published.size()) << f;
    for (const auto& [k, v] : published) {
      auto it = exported.find(k);
      ASSERT_NE(it, exported.end()) << f << " lacks " << k;
      ASSERT_EQ(v.sizes(), it->second.sizes()) << f << ": " << k;
      EXPECT_LE((v.to(at::kDouble) - it->second.to(at::kDouble)).abs().max().item<double>(), 1e-12)
          << f << ": " << k << " differs from the published weights (lr ~ 0)";
    }
  }

  // Fine-tune through the CLI (the user path), from the fixture json's config.
  std::string out;
  const std::string tuned = dir + "/tuned";
  const std::string cmd = testing::WfmTool() + " tokenizer train --config " + fixture + ".json --init-weights " +
                          o.init_weights + " --input " + video + " --output " + tuned +
                          " --frames 5 --size 32 --short-side 40 --val-clips 2 --batch-size 2 --steps 20 --lr 3e-3"
                          " --warmup 5 --eval-every 20 --sample-every 20 --checkpoint-every 20 --device cpu 2>&1";
  ASSERT_EQ(testing::RunCommand(cmd, &out), 0) << out;
  EXPECT_NE(out.find("fine-tuning"), std::string::npos) << out;
  WFM_ASSERT_OK_AND_ASSIGN(std::string text, ReadFile(tuned + "/summary.json"));
  const nlohmann::json summary = nlohmann::json::parse(text);
  EXPECT_EQ(summary["steps"].get<int64_t>(), 20);
  EXPECT_GT(summary["val_psnr"].get<double>(), frozen.val_psnr + 1.0)
      << "fine-tuning did not improve the held-out PSNR: " << frozen.val_psnr << " -> " << summary["val_psnr"];
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap after, ReadSafetensors(tuned + "/model.safetensors"));
  int changed = 0;
  for (const auto& [k, v] : published) changed += !at::equal(v, after.at(k));
  EXPECT_GT(changed, 0);

  // Weights of another architecture: one clear error that names the flag and the file.
  o.init_weights = testing::SharedPath("fixtures/tokenizer/DV4x8x8.weights.safetensors");
  o.output_dir = dir + "/mismatch";
  auto bad = TrainTokenizer(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--init-weights"), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("DV4x8x8"), std::string::npos) << bad.status();
}

TEST(TokenizerTrainTest, BadOptionsAreClearErrors) {
  TokenizerTrainOptions o;
  WFM_ASSERT_OK_AND_ASSIGN(o.config, TokenizerConfig::Preset("CV4x8x8"));
  o.inputs = {testing::TempDir()};
  o.output_dir = testing::TempDir() + "/out";
  o.data.num_frames = 8;  // not 1 + 4k
  auto r = TrainTokenizer(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("1 + k*4"), std::string::npos) << r.status();
  o.data.num_frames = 9;
  o.data.width = 60;
  r = TrainTokenizer(o);
  EXPECT_NE(r.status().message().find("multiple of the spatial compression"), std::string::npos) << r.status();
  o.data.width = 64;
  r = TrainTokenizer(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();  // empty folder
  WFM_ASSERT_OK_AND_ASSIGN(o.config, TokenizerConfig::Preset("CI8x8"));
  EXPECT_EQ(TrainTokenizer(o).status().code(), absl::StatusCode::kUnimplemented);
}

TEST(TokenizerTrainCliTest, HelpAndUsageErrors) {
  std::string out;
  EXPECT_EQ(testing::RunCommand(testing::WfmTool() + " tokenizer train --help 2>&1", &out), 0) << out;
  EXPECT_NE(out.find("--max-time"), std::string::npos);
  EXPECT_EQ(testing::RunCommand(testing::WfmTool() + " tokenizer train --output x 2>&1", &out), 2) << out;
  EXPECT_EQ(testing::RunCommand(testing::WfmTool() + " tokenizer eval --config CV4x8x8 --weights none.safetensors "
                                                     "--input /nonexistent 2>&1",
                                &out),
            1)
      << out;
  EXPECT_NE(out.find("/nonexistent"), std::string::npos) << out;
  const std::string eval = testing::WfmTool() + " tokenizer eval --config CV4x8x8 --weights w --input v ";
  EXPECT_EQ(testing::RunCommand(eval + "--mode sideways 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("sideways"), std::string::npos) << out;
  EXPECT_EQ(testing::RunCommand(eval + "--tile-overlap 8 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("--tile-overlap needs --tile"), std::string::npos) << out;
}

// Curated webdataset shards among --input (curation::ExtractShardClips): their clips are extracted once into
// OUT/shard_videos and trained on; a corrupt shard is an error naming it.
TEST(TokenizerTrainCliTest, TrainsFromShardsGivenAsInput) {
  const std::string dir = testing::TempDir();
  MakeVideo(dir);
  std::string out;
  ASSERT_EQ(testing::RunCommand("tar -cf " + dir + "/shard-000000.tar -C " + dir + " square.mp4", &out), 0) << out;
  const std::string train = testing::WfmTool() +
                            " tokenizer train --config CV4x8x8 --channels 4 --channels-mult 1,1,1 --num-res-blocks 1 "
                            "--frames 5 --size 16 --short-side 20 --batch-size 1 --val-clips 1 --warmup 1 --steps 1 "
                            "--device cpu --threads 1 --output " + dir + "/run --input ";
  ASSERT_EQ(testing::RunCommand(train + dir + "/shard-000000.tar 2>&1", &out), 0) << out;
  EXPECT_NE(out.find("trained 1 steps"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(dir + "/run/shard_videos/shard-000000_square.mp4")) << out;
  ASSERT_TRUE(WriteFileAtomically(dir + "/bad.tar", std::string(1024, 'z')).ok());
  EXPECT_EQ(testing::RunCommand(train + dir + "/bad.tar 2>&1", &out), 1) << out;
  EXPECT_NE(out.find(dir + "/bad.tar"), std::string::npos) << out;
}

}  // namespace
}  // namespace wfm::tokenizer
