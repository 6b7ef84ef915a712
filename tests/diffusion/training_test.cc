// Diffusion training: a tiny DiT trained here on the synthetic latent process lowers its denoising loss well
// below the untrained value; loss plumbing (dropouts, condition frames) behaves as specified.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/optim/adamw.h>

#include "test_support.h"
#include "wfm/diffusion/training.h"

namespace wfm::diffusion {
namespace {

SyntheticLatentProcess Process() {
  SyntheticLatentProcess p;
  p.channels = 16;
  p.frames = 3;
  p.height = 4;
  p.width = 4;
  p.text_tokens = 4;
  p.text_dim = 32;
  return p;
}

TEST(DiffusionTraining, TinyDiTLearnsTheSyntheticProcess) {
  at::manual_seed(0);
  GeneralDiT net(DiTConfig::Preset("tiny-video2world").value());  // GeneralDIT, EDM
  EdmParametrization edm;
  const SyntheticLatentProcess proc = Process();
  const TrainingBatch val = proc.Batch(1 << 20, 16, /*seed=*/5);
  const double before = EvaluationLoss(*net, edm, val, 123);
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(2e-3).weight_decay(0.0));
  DiffusionTrainingOptions o;
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(1);
  net->train();
  double last = 0;
  for (int step = 0; step < 250; ++step) {
    opt.zero_grad();
    LossOutput l = DiffusionTrainingLoss(*net, edm, proc.Batch(step * 8, 8, 5), o, g);
    ASSERT_TRUE(std::isfinite(l.loss.item<double>())) << "step " << step;
    l.loss.backward();
    opt.step();
    last = l.loss.item<double>();
  }
  net->eval();
  const double after = EvaluationLoss(*net, edm, val, 123);
  std::printf("evaluation loss: untrained %.4f, after 250 steps %.4f (last train loss %.4f)\n", before, after, last);
  EXPECT_LT(after, 0.5 * before) << "HINT: the denoising loss should fall well below the untrained value";
}

TEST(DiffusionTraining, LossPlumbing) {
  at::manual_seed(0);
  GeneralDiT v2w(DiTConfig::Preset("tiny-video2world").value());
  EdmParametrization edm;
  const TrainingBatch b = Process().Batch(0, 6, 3);
  ASSERT_EQ(b.x0.sizes(), (std::vector<int64_t>{6, 16, 3, 4, 4}));
  // The same process index gives the same clip.
  EXPECT_TRUE(Process().Batch(2, 1, 3).x0[0].equal(b.x0[2]));
  EXPECT_NEAR(b.x0.std().item<double>(), 0.5, 0.15) << "unit variance times sigma_data";

  DiffusionTrainingOptions o;
  o.condition_dropout = 0.0;
  o.min_condition_frames = o.max_condition_frames = 2;
  at::Generator g1 = at::make_generator<at::CPUGeneratorImpl>(7), g2 = at::make_generator<at::CPUGeneratorImpl>(7);
  const LossOutput a = DiffusionTrainingLoss(*v2w, edm, b, o, g1);
  EXPECT_DOUBLE_EQ(a.condition_frames, 2.0);
  EXPECT_TRUE(std::isfinite(a.loss.item<double>()));
  // Reproducible given the generator state.
  EXPECT_EQ(DiffusionTrainingLoss(*v2w, edm, b, o, g2).loss.item<double>(), a.loss.item<double>());
  // Condition-frame dropout 1: every sample is Text2World.
  o.condition_dropout = 1.0;
  EXPECT_DOUBLE_EQ(DiffusionTrainingLoss(*v2w, edm, b, o, g1).condition_frames, 0.0);
  // Gradients reach the parameters.
  LossOutput l = DiffusionTrainingLoss(*v2w, edm, b, o, g1);
  l.loss.backward();
  EXPECT_TRUE(v2w->patch_proj->weight.grad().defined());
  EXPECT_GT(v2w->patch_proj->weight.grad().abs().sum().item<double>(), 0.0);
}

TEST(LatentFolder, RoundTripAndErrors) {
  const std::string dir = wfm::testing::TempDir();
  LatentClip c;
  c.latent = at::randn({16, 2, 4, 6});
  c.crossattn_emb = at::randn({5, 32});
  c.caption = "a ball rolls left";
  WFM_ASSERT_OK(LatentFolder::Write(dir + "/a/000.safetensors", c));
  c.crossattn_emb = at::Tensor();
  WFM_ASSERT_OK(LatentFolder::Write(dir + "/a/001.safetensors", c));
  WFM_ASSERT_OK_AND_ASSIGN(LatentFolder f, LatentFolder::Open(dir + "/a"));
  EXPECT_EQ(f.size(), 2);
  EXPECT_EQ(f.latent_shape(), (std::vector<int64_t>{16, 2, 4, 6}));
  WFM_ASSERT_OK_AND_ASSIGN(LatentClip g, f.Get(0));
  EXPECT_TRUE(g.latent.equal(c.latent));
  EXPECT_EQ(g.caption, "a ball rolls left");
  EXPECT_EQ(g.crossattn_emb.sizes(), (std::vector<int64_t>{5, 32}));
  EXPECT_FALSE(f.Get(2).ok());
  // A clip of another shape is named.
  c.latent = at::randn({16, 3, 4, 6});
  WFM_ASSERT_OK(LatentFolder::Write(dir + "/a/002.safetensors", c));
  const absl::Status s = LatentFolder::Open(dir + "/a").status();
  EXPECT_NE(std::string(s.message()).find("002.safetensors"), std::string::npos) << s;
  EXPECT_FALSE(LatentFolder::Open(dir + "/missing").ok());
}

}  // namespace
}  // namespace wfm::diffusion
