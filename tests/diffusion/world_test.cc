// diffusion::GenerateWorld, the one-call Video2World API, on a tiny random DiT and a tiny random CV tokenizer:
// output shapes and sizes, the condition frames shared by every future, per-future seeds, resizing, and the
// errors a synthetic-data user meets first.
#include "wfm/diffusion/world.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "test_support.h"
#include "wfm/core/video_io.h"
#include "wfm/tokenizer/config.h"
#include "wfm/tokenizer/network.h"
#include "wfm/tokenizer/tokenizer.h"

namespace wfm::diffusion {
namespace {

using wfm::testing::MaxAbsDiff;

// A 4x8x8 CV tokenizer with 16 latent channels (the tiny DiT's; tests/diffusion/data/cv_tiny_tokenizer.json, also
// the install test's), random weights.
std::unique_ptr<tokenizer::Tokenizer> TinyTokenizer() {
  auto config = tokenizer::TokenizerConfig::FromJsonFile(testing::SourceDir() +
                                                         "/tests/diffusion/data/cv_tiny_tokenizer.json");
  EXPECT_TRUE(config.ok()) << config.status();
  tokenizer::TokenizerConfig c = *config;
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  at::manual_seed(3);
  tokenizer::TokenizerNetwork net(c);
  net->eval();
  return tokenizer::Tokenizer::FromNetwork(net, {}).value();
}

DiffusionWorldModel TinyModel() {
  at::manual_seed(0);
  const DiTConfig c = DiTConfig::Preset("tiny-video2world").value();
  std::shared_ptr<DiffusionNetwork> net = MakeDiffusionNetwork(c).value();
  torch::NoGradGuard g;
  for (auto& p : net->parameters()) p.add_(at::randn_like(p) * 0.05);
  return DiffusionWorldModel(net, DefaultParametrization(c));
}

// A moving-gradient clip, uint8 [T, H, W, 3].
at::Tensor Frames(int64_t t, int64_t h, int64_t w) {
  const at::Tensor tt = at::arange(t).view({t, 1, 1, 1}), yy = at::arange(h).view({1, h, 1, 1});
  const at::Tensor xx = at::arange(w).view({1, 1, w, 1}), cc = at::arange(3).view({1, 1, 1, 3});
  return ((tt * 9 + yy * 3 + xx * 2 + cc * 60) % 256).to(at::kByte);
}

TEST(GenerateWorld, FuturesShareTheConditionAndFollowTheirSeeds) {
  DiffusionWorldModel wm = TinyModel();
  auto tok = TinyTokenizer();
  const LatentStats stats = LatentStats::Identity(16);
  const TextConditioning text{at::randn({1, 5, 32}), {}};
  WorldOptions o;
  o.num_input_frames = 5;  // 2 latent frames given
  o.num_frames = 9;        // 3 latent frames in all
  o.generation.num_steps = 3;
  o.generation.guidance = 2;
  o.generation.seed = 7;
  o.generation.num_samples = 3;
  const at::Tensor frames = Frames(7, 40, 52);  // any size: covered and centre-cropped to 32 x 48
  WFM_ASSERT_OK_AND_ASSIGN(WorldResult r, GenerateWorld(wm, *tok, stats, frames, text, o));
  EXPECT_EQ(r.height, 32);
  EXPECT_EQ(r.width, 48);
  ASSERT_EQ(r.videos.sizes(), (at::IntArrayRef{3, 9, 32, 48, 3}));
  EXPECT_EQ(r.videos.scalar_type(), at::kByte);
  ASSERT_EQ(r.latents.sizes(), (at::IntArrayRef{3, 16, 3, 4, 6}));
  // The condition latents are the tokenizer's encoding of the input's last 5 frames, in every future.
  torch::NoGradGuard g;
  const at::Tensor x = FramesToModelInput(ResizeCoverCrop(frames.narrow(0, 2, 5), 32, 48)).unsqueeze(0);
  WFM_ASSERT_OK_AND_ASSIGN(tokenizer::EncodeResult enc, tok->Encode(x));
  for (int64_t i = 0; i < 3; ++i)
    EXPECT_LT(MaxAbsDiff(r.latents[i].narrow(1, 0, 2), enc.latent[0].narrow(1, 0, 2)), 1e-5) << "future " << i;
  // The generated latent frame differs between futures.
  EXPECT_GT(MaxAbsDiff(r.latents[0].narrow(1, 2, 1), r.latents[1].narrow(1, 2, 1)), 1e-2);
  // Future 1 of seed 7 is future 0 of seed 8 (per-sample noise streams; batched-BLAS rounding apart).
  o.generation.seed = 8;
  o.generation.num_samples = 1;
  WFM_ASSERT_OK_AND_ASSIGN(WorldResult one, GenerateWorld(wm, *tok, stats, frames, text, o));
  EXPECT_LT(MaxAbsDiff(one.latents[0], r.latents[1]), 1e-4);
}

TEST(GenerateWorld, ClearErrors) {
  DiffusionWorldModel wm = TinyModel();
  auto tok = TinyTokenizer();
  const LatentStats stats = LatentStats::Identity(16);
  const TextConditioning text{at::zeros({1, 1, 32}), {}};
  WorldOptions o;
  o.num_input_frames = 5;
  o.num_frames = 10;
  o.generation.num_steps = 1;
  auto message = [&](const at::Tensor& frames) {
    auto r = GenerateWorld(wm, *tok, stats, frames, text, o);
    EXPECT_FALSE(r.ok());
    return std::string(r.status().message());
  };
  EXPECT_NE(message(Frames(7, 32, 32)).find("1 + k*4"), std::string::npos);
  o.num_frames = 9;
  EXPECT_NE(message(Frames(3, 32, 32)).find("fewer than --num-input-frames 5"), std::string::npos);
  o.height = 24;
  EXPECT_NE(message(Frames(7, 32, 32)).find("multiples of 16"), std::string::npos);
  o.height = 0;
  EXPECT_NE(message(Frames(7, 32, 32).to(at::kFloat)).find("uint8"), std::string::npos);
  // No text encoder: a prompt is refused, no prompt is the unconditional model.
  const DiTConfig& cfg = wm.config();
  EXPECT_NE(EncodePrompt(nullptr, cfg, "a ball", "", at::kCPU).status().message().find("text encoder"),
            std::string::npos);
  WFM_ASSERT_OK_AND_ASSIGN(TextConditioning none, EncodePrompt(nullptr, cfg, "", "", at::kCPU));
  EXPECT_EQ(none.crossattn_emb.abs().sum().item<double>(), 0.0);
}

}  // namespace
}  // namespace wfm::diffusion
