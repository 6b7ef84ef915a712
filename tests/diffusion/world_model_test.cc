// The diffusion world model pipeline on small random DiTs: Video2World conditioning, guidance, determinism,
// autoregressive extension, latent statistics and request validation.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "test_support.h"
#include "wfm/core/safetensors.h"
#include "wfm/diffusion/world_model.h"

namespace wfm::diffusion {
namespace {

using wfm::testing::MaxAbsDiff;

// A small random DiT (GeneralDIT, or MiniTrainDIT with `predict2`) with non-zero block modulation so that every
// part of the network matters.
DiffusionWorldModel MakeModel(bool v2w, uint64_t seed = 0, bool predict2 = false) {
  at::manual_seed(seed);
  const std::string base = predict2 ? "predict2-tiny" : "tiny";
  const DiTConfig c = DiTConfig::Preset(v2w ? base + "-video2world" : base).value();
  std::shared_ptr<DiffusionNetwork> net = MakeDiffusionNetwork(c).value();
  torch::NoGradGuard g;
  for (auto& p : net->parameters()) p.add_(at::randn_like(p) * 0.05);
  return DiffusionWorldModel(net, DefaultParametrization(c));
}

TextConditioning Text(int64_t b = 1, uint64_t seed = 1) {
  at::manual_seed(seed);
  return {at::randn({b, 5, 32}), at::randn({b, 5, 32})};
}

GenerateOptions FastOptions() {
  GenerateOptions o;
  o.num_steps = 4;
  o.guidance = 3.0;
  o.seed = 7;
  return o;
}

TEST(WorldModel, Video2WorldKeepsConditionFramesExactly) {
  for (bool predict2 : {false, true}) {
  DiffusionWorldModel wm = MakeModel(true, 0, predict2);
  SCOPED_TRACE(predict2 ? "MiniTrainDIT (rectified flow, frame replacement)" : "GeneralDIT (EDM, augmentation)");
  for (int64_t n : {1, 2}) {
    VideoConditioning v;
    v.latent = at::randn({1, 16, 3, 4, 6});
    v.num_frames = n;
    for (bool reference_tail : {false, true}) {
      GenerateOptions o = FastOptions();
      // Without the final paste and without the reference's joint denoising below sigma_aug, the condition
      // region is kept by the x0 replacement alone.
      o.keep_condition_exact = reference_tail;
      o.denoise_condition_below_augment_sigma = reference_tail;
      const at::Tensor out = wm.Generate({16, 3, 4, 6}, Text(), v, o).value();
      ASSERT_EQ(out.sizes(), (std::vector<int64_t>{1, 16, 3, 4, 6}));
      EXPECT_TRUE(out.narrow(2, 0, n).equal(v.latent.narrow(2, 0, n))) << n << " condition frames";
      EXPECT_FALSE(out.narrow(2, n, 3 - n).equal(v.latent.narrow(2, n, 3 - n)));
    }
  }
  }
}

TEST(WorldModel, GuidanceScaleZeroIsTheConditionalModel) {
  DiffusionWorldModel wm = MakeModel(false);
  const TextConditioning text = Text();
  const at::Tensor x = at::randn({1, 16, 2, 4, 6}) * 3;
  const at::Tensor noise = at::randn_like(x);
  torch::NoGradGuard g;
  GenerateOptions o = FastOptions();
  o.guidance = 0;
  const at::Tensor cond = wm.Denoise(x, 3.0, text, {}, o, noise);
  // The conditional model alone: the negative prompt must not matter at scale 0.
  TextConditioning other_negative = text;
  other_negative.negative_crossattn_emb = at::randn_like(text.negative_crossattn_emb);
  EXPECT_TRUE(wm.Denoise(x, 3.0, other_negative, {}, o, noise).equal(cond));
  // Scale -1 is the unconditional (negative-prompt) model alone.
  o.guidance = -1;
  const at::Tensor uncond_via_guidance = wm.Denoise(x, 3.0, text, {}, o, noise);
  o.guidance = 0;
  const at::Tensor uncond = wm.Denoise(x, 3.0, {text.negative_crossattn_emb, {}}, {}, o, noise);
  EXPECT_LT(MaxAbsDiff(uncond_via_guidance, uncond), 1e-5);
  // Without a negative prompt the unconditional branch sees zero text embeddings.
  o.guidance = -1;
  const at::Tensor zero_text = wm.Denoise(x, 3.0, {text.crossattn_emb, {}}, {}, o, noise);
  o.guidance = 0;
  EXPECT_LT(MaxAbsDiff(zero_text, wm.Denoise(x, 3.0, {at::zeros_like(text.crossattn_emb), {}}, {}, o, noise)), 1e-5);
}

TEST(WorldModel, SeedDeterminism) {
  DiffusionWorldModel wm = MakeModel(false);
  GenerateOptions o = FastOptions();
  o.num_samples = 2;
  const at::Tensor a = wm.Generate({16, 2, 4, 6}, Text(), {}, o).value();
  const at::Tensor b = wm.Generate({16, 2, 4, 6}, Text(), {}, o).value();
  EXPECT_TRUE(a.equal(b));
  o.seed = 8;
  const at::Tensor c = wm.Generate({16, 2, 4, 6}, Text(), {}, o).value();
  EXPECT_GT(MaxAbsDiff(a, c), 1e-3);
  // Sample 1 of seed 7 is sample 0 of seed 8 (per-sample noise streams), up to batched-BLAS rounding.
  EXPECT_LT(MaxAbsDiff(a[1], c[0]), 1e-4);
}

// The text's cross-attention K/V projected once per sample and reused at every step give the same samples as
// projecting them at every network evaluation (both architectures, Text2World and Video2World, with and without
// guidance, single- and multi-evaluation integrators).
TEST(WorldModel, CrossAttentionCacheEqualsRecomputation) {
  for (bool predict2 : {false, true}) {
    for (bool v2w : {false, true}) {
      DiffusionWorldModel wm = MakeModel(v2w, 0, predict2);
      VideoConditioning v;
      if (v2w) {
        v.latent = at::randn({1, 16, 3, 4, 6});
        v.num_frames = 1;
      }
      for (const Integrator integrator : {Integrator::kHeun, Integrator::kRes2Ab}) {
        for (double guidance : {0.0, 3.0}) {
          SCOPED_TRACE(::testing::Message() << (predict2 ? "MiniTrainDIT" : "GeneralDIT") << (v2w ? " V2W" : " T2W")
                                            << " " << IntegratorName(integrator) << " guidance " << guidance);
          GenerateOptions o = FastOptions();
          o.integrator = integrator;
          o.guidance = guidance;
          o.num_samples = 2;
          o.cache_cross_attention = false;
          const at::Tensor plain = wm.Generate({16, 3, 4, 6}, Text(), v, o).value();
          o.cache_cross_attention = true;
          const at::Tensor cached = wm.Generate({16, 3, 4, 6}, Text(), v, o).value();
          const double rel = wfm::testing::MaxRelDiff(cached, plain);
          EXPECT_LE(rel, 1e-5) << "HINT: the cached K/V must be exactly what the layers would project";
        }
      }
    }
  }
}

// The cache is filled once and then reused; a text of other values refills it, equal values (a new tensor)
// reuse it, and autograd (training) bypasses it.
TEST(WorldModel, CrossAttentionCacheFillsOnceAndFollowsTheText) {
  DiffusionWorldModel wm = MakeModel(false, 0, false);
  const TextConditioning text = Text();
  const at::Tensor x = at::randn({1, 16, 2, 4, 6}) * 3;
  const at::Tensor noise = at::randn_like(x);
  GenerateOptions o = FastOptions();
  CrossAttentionCache cache;
  {
    torch::NoGradGuard g;
    for (double sigma : {5.0, 2.0, 0.5}) {
      const at::Tensor want = wm.Denoise(x, sigma, text, {}, o, noise);
      EXPECT_LE(wfm::testing::MaxRelDiff(wm.Denoise(x, sigma, text, {}, o, noise, &cache), want), 1e-5);
    }
    EXPECT_EQ(cache.fills, 1);
    EXPECT_EQ(cache.reuses, 2);
    EXPECT_EQ(cache.kv.size(), 2u);  // tiny: 2 blocks, one cross-attention each
    const TextConditioning other{text.crossattn_emb + 1, text.negative_crossattn_emb};
    const at::Tensor want = wm.Denoise(x, 2.0, other, {}, o, noise);
    EXPECT_LE(wfm::testing::MaxRelDiff(wm.Denoise(x, 2.0, other, {}, o, noise, &cache), want), 1e-5);
    EXPECT_EQ(cache.fills, 2);
  }
  const at::Tensor with_grad = wm.Denoise(x, 2.0, text, {}, o, noise, &cache);
  EXPECT_EQ(cache.fills + cache.reuses, 3 + 1) << "a pass with autograd on must not touch the cache";
  EXPECT_TRUE(with_grad.requires_grad());
}

TEST(WorldModel, AutoregressiveExtensionInLatentSpace) {
  DiffusionWorldModel wm = MakeModel(true);
  GenerateOptions o = FastOptions();
  VideoConditioning v;
  v.latent = at::randn({1, 16, 1, 4, 6});
  v.num_frames = 1;
  const at::Tensor first = wm.Generate({16, 3, 4, 6}, Text(), v, o).value();
  const at::Tensor longv = wm.GenerateLong(7, 3, 1, {16, 4, 6}, Text(), v, o).value();
  ASSERT_EQ(longv.size(2), 7);
  EXPECT_TRUE(longv.narrow(2, 0, 3).equal(first)) << "the first clip is the plain Video2World clip";
  EXPECT_TRUE(longv.narrow(2, 0, 1).equal(v.latent));
  // The next clip starts from the last frame of the first: re-generating it from that frame alone agrees.
  VideoConditioning tail;
  tail.latent = first.narrow(2, 2, 1);
  tail.num_frames = 1;
  GenerateOptions o2 = o;
  o2.seed = o.seed + 1;
  const at::Tensor second = wm.Generate({16, 3, 4, 6}, Text(), tail, o2).value();
  EXPECT_TRUE(longv.narrow(2, 3, 2).equal(second.narrow(2, 1, 2)));

  DiffusionWorldModel t2w = MakeModel(false);
  const absl::Status s = t2w.GenerateLong(7, 3, 1, {16, 4, 6}, Text(), {}, o).status();
  EXPECT_NE(std::string(s.message()).find("Video2World"), std::string::npos) << s;
}

TEST(WorldModel, RejectsMismatchedRequests) {
  DiffusionWorldModel wm = MakeModel(true);
  GenerateOptions o = FastOptions();
  const TextConditioning text = Text();
  // Tokenizer latent channels vs DiT.
  absl::Status s = wm.ValidateRequest({8, 3, 4, 6}, text, {}, o);
  EXPECT_NE(std::string(s.message()).find("latent channels"), std::string::npos) << s;
  // Too many frames for the position tables; the message names the maximum.
  s = wm.ValidateRequest({16, 17, 4, 6}, text, {}, o);
  EXPECT_NE(std::string(s.message()).find("maximum of 16"), std::string::npos) << s;
  // Condition latent of the wrong spatial size.
  VideoConditioning v;
  v.latent = at::randn({1, 16, 2, 8, 6});
  v.num_frames = 1;
  EXPECT_FALSE(wm.ValidateRequest({16, 3, 4, 6}, text, v, o).ok());
  // Every frame given: nothing left to generate.
  v.latent = at::randn({1, 16, 3, 4, 6});
  v.num_frames = 3;
  EXPECT_FALSE(wm.ValidateRequest({16, 3, 4, 6}, text, v, o).ok());
  // Text2World network cannot take condition frames.
  v.num_frames = 1;
  DiffusionWorldModel t2w = MakeModel(false);
  s = t2w.ValidateRequest({16, 3, 4, 6}, text, v, o);
  EXPECT_NE(std::string(s.message()).find("Video2World"), std::string::npos) << s;
  // Missing text embedding; embedding of the wrong width.
  EXPECT_FALSE(wm.ValidateRequest({16, 3, 4, 6}, {}, {}, o).ok());
  EXPECT_FALSE(wm.ValidateRequest({16, 3, 4, 6}, {at::zeros({1, 5, 33}), {}}, {}, o).ok());
  // Pixel frame counts of a causal 8x tokenizer.
  WFM_EXPECT_OK(CheckPixelFrameCount(121, 8, "--num-frames"));
  s = CheckPixelFrameCount(120, 8, "--num-frames");
  EXPECT_NE(std::string(s.message()).find("113 or 121"), std::string::npos) << s;
  EXPECT_EQ(LatentFramesFor(121, 8), 16);
  EXPECT_EQ(PixelFramesFor(2, 8), 9);
}

TEST(LatentStats, NormaliseRoundTripAndPerFrameStatistics) {
  const std::string dir = wfm::testing::TempDir();
  // Cosmos mean_std.pt layout: flat [C * Tc] per tensor, tuple (mean, std).
  const at::Tensor mean = at::randn({16 * 3}), std = at::rand({16 * 3}) + 0.5;
  WFM_ASSERT_OK(WriteSafetensors(dir + "/mean_std.safetensors", {{"0", mean}, {"1", std}}));
  const LatentStats s = LatentStats::Load(dir + "/mean_std.safetensors").value();
  ASSERT_EQ(s.mean.sizes(), (std::vector<int64_t>{16, 3}));
  const at::Tensor z = at::randn({2, 16, 5, 4, 4});
  const at::Tensor x = s.Normalize(z);
  EXPECT_LT(MaxAbsDiff(s.Denormalize(x), z), 1e-5);
  // Frame 4 uses the chunk pattern's frame 1.
  const at::Tensor expect = (z.select(2, 4) - mean.view({16, 3}).select(1, 1).view({1, 16, 1, 1})) /
                            std.view({16, 3}).select(1, 1).view({1, 16, 1, 1});
  EXPECT_LT(MaxAbsDiff(x.select(2, 4), expect), 1e-5);

  WFM_ASSERT_OK(WriteSafetensors(dir + "/bad.safetensors", {{"mean", at::zeros({10})}, {"std", at::ones({10})}}));
  EXPECT_FALSE(LatentStats::Load(dir + "/bad.safetensors").ok());
  WFM_ASSERT_OK(WriteSafetensors(dir + "/neg.safetensors", {{"mean", at::zeros({16})}, {"std", -at::ones({16})}}));
  EXPECT_FALSE(LatentStats::Load(dir + "/neg.safetensors").ok());
  EXPECT_FALSE(LatentStats::Load(dir + "/missing.safetensors").ok());
}

}  // namespace
}  // namespace wfm::diffusion
