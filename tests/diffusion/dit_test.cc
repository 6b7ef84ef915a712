// The DiT against the reference: parity with the Cosmos-Predict1 GeneralDIT / VideoExtendGeneralDIT fixtures
// (../shared/fixtures/diffusion), strict loading, config parsing and input validation.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_support.h"
#include "wfm/core/checkpoint.h"
#include "wfm/core/file_util.h"
#include "wfm/core/safetensors.h"
#include "wfm/diffusion/dit.h"

namespace wfm::diffusion {
namespace {

using wfm::testing::MaxRelDiff;
using wfm::testing::SharedPath;

struct Fixture {
  DiTConfig config;
  TensorMap weights, io;
};

Fixture LoadFixture(const std::string& name) {
  Fixture f;
  f.config = DiTConfig::FromJsonFile(SharedPath("fixtures/diffusion/" + name + ".json")).value();
  f.weights = ReadSafetensors(SharedPath("fixtures/diffusion/" + name + ".weights.safetensors")).value();
  f.io = ReadSafetensors(SharedPath("fixtures/diffusion/" + name + ".io.safetensors")).value();
  return f;
}

DiTInputs InputsFrom(const TensorMap& io, bool v2w) {
  DiTInputs in;
  in.x = io.at("x");
  in.timesteps = io.at("timesteps");
  in.crossattn_emb = io.at("crossattn_emb");
  in.padding_mask = io.at("padding_mask");
  if (v2w) in.condition_video_input_mask = io.at("condition_video_input_mask");
  in.fps = 24.0;
  return in;
}

void CheckParity(const std::string& name, bool v2w) {
  WFM_REQUIRE_FILE(SharedPath("fixtures/diffusion/" + name + ".weights.safetensors"));
  const Fixture f = LoadFixture(name);
  ASSERT_EQ(f.config.video_conditioned(), v2w);
  GeneralDiT net(f.config);
  net->eval();
  WFM_ASSERT_OK(LoadDiTWeights(*net, f.weights, name));
  const DiTInputs in = InputsFrom(f.io, v2w);
  WFM_ASSERT_OK(net->ValidateInputs(in));
  torch::NoGradGuard no_grad;
  const at::Tensor out = net->Forward(in);
  const at::Tensor& ref = f.io.at("output");
  ASSERT_EQ(out.sizes(), ref.sizes());
  const double rel = MaxRelDiff(out, ref);
  std::printf("%s: max|diff| / max|ref| = %.3g\n", name.c_str(), rel);
  EXPECT_LE(rel, 1e-4) << "HINT: compare the timestep embedding (cos before sin), the per-head q/k RMSNorm, RoPE "
                          "rotate-half layout cat([t, h, w] * 2), the normalised learnable absolute embedding "
                          "added before every block, and the (p1 p2 t C) unpatchify order";
}

TEST(DiT, Text2WorldMatchesGeneralDIT) { CheckParity("dit_t2w", false); }
TEST(DiT, Video2WorldMatchesVideoExtendGeneralDIT) { CheckParity("dit_v2w", true); }

TEST(DiT, StateDictNamesAreTheReferenceNames) {
  WFM_REQUIRE_FILE(SharedPath("fixtures/diffusion/dit_t2w.weights.safetensors"));
  const Fixture f = LoadFixture("dit_t2w");
  GeneralDiT net(f.config);
  const TensorMap own = StateDict(*net);
  ASSERT_EQ(own.size(), f.weights.size());
  for (const auto& [k, v] : f.weights) {
    ASSERT_TRUE(own.count(k)) << "missing " << k;
    EXPECT_EQ(own.at(k).sizes(), v.sizes()) << k;
  }
}

TEST(DiT, StrictLoadReportsEveryProblem) {
  WFM_REQUIRE_FILE(SharedPath("fixtures/diffusion/dit_t2w.weights.safetensors"));
  const Fixture f = LoadFixture("dit_t2w");
  GeneralDiT net(f.config);
  TensorMap w = f.weights;
  w.erase("final_layer.linear.weight");
  w["blocks.block0.extra.weight"] = at::zeros({2});
  w["affline_norm.weight"] = at::zeros({3});
  const absl::Status s = LoadDiTWeights(*net, w, "broken.safetensors");
  ASSERT_FALSE(s.ok());
  const std::string m(s.message());
  EXPECT_NE(m.find("broken.safetensors"), std::string::npos) << m;
  EXPECT_NE(m.find("final_layer.linear.weight"), std::string::npos) << m;
  EXPECT_NE(m.find("blocks.block0.extra.weight"), std::string::npos) << m;
  EXPECT_NE(m.find("affline_norm.weight"), std::string::npos) << m;

  // A published-style checkpoint: "net." prefix, logvar and Transformer Engine extra state around the network.
  TensorMap published;
  for (const auto& [k, v] : f.weights) published["net." + k] = v;
  published["logvar.1.weight"] = at::zeros({1, 128});
  published["net.blocks.block0.blocks.0.block.attn.attn_op._extra_state"] = at::zeros({0});
  WFM_EXPECT_OK(LoadDiTWeights(*net, published, "model.pt"));
}

TEST(DiT, ValidateInputsNamesTheProblem) {
  DiTConfig c = DiTConfig::Preset("tiny").value();
  GeneralDiT net(c);
  DiTInputs in;
  in.x = at::zeros({1, 16, 2, 8, 8});
  in.timesteps = at::zeros({1});
  in.crossattn_emb = at::zeros({1, 3, c.crossattn_emb_channels});
  WFM_EXPECT_OK(net->ValidateInputs(in));
  in.x = at::zeros({1, 15, 2, 8, 8});
  EXPECT_NE(std::string(net->ValidateInputs(in).message()).find("16"), std::string::npos);
  in.x = at::zeros({1, 16, 2, 7, 8});
  EXPECT_FALSE(net->ValidateInputs(in).ok());
  in.x = at::zeros({1, 16, c.max_latent_frames() + 1, 8, 8});
  const std::string m(net->ValidateInputs(in).message());
  EXPECT_NE(m.find("maximum of 16"), std::string::npos) << m;
  in.x = at::zeros({1, 16, 2, 8, 8});
  in.crossattn_emb = at::zeros({1, 3, 7});
  EXPECT_FALSE(net->ValidateInputs(in).ok());

  GeneralDiT v2w(DiTConfig::Preset("tiny-video2world").value());
  in.crossattn_emb = at::zeros({1, 3, c.crossattn_emb_channels});
  EXPECT_NE(std::string(v2w->ValidateInputs(in).message()).find("condition_video_input_mask"), std::string::npos);
}

TEST(DiTConfig, FromJsonAndPresets) {
  for (const std::string& name : DiTConfig::PresetNames()) {
    auto c = DiTConfig::Preset(name);
    ASSERT_TRUE(c.ok()) << name;
    WFM_EXPECT_OK(c->Validate());
    // Round trip through the reference keys.
    auto back = DiTConfig::FromJson(c->ToJson());
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->ToJson(), c->ToJson()) << name;
  }
  const DiTConfig big = DiTConfig::Preset("predict1-14b-video2world").value();
  EXPECT_EQ(big.model_channels, 5120);
  EXPECT_EQ(big.num_blocks, 36);
  EXPECT_EQ(big.in_channels, 17);
  EXPECT_DOUBLE_EQ(big.extra_w_extrapolation_ratio, 2.0);
  EXPECT_FALSE(DiTConfig::Preset("predict9").ok());

  nlohmann::json j = DiTConfig::Preset("tiny").value().ToJson();
  j["num_head"] = 4;  // typo
  EXPECT_FALSE(DiTConfig::FromJson(j).ok());
  j.erase("num_head");
  j["model_channels"] = 65;
  EXPECT_FALSE(DiTConfig::FromJson(j).ok());
  j["model_channels"] = "wide";
  EXPECT_FALSE(DiTConfig::FromJson(j).ok());
}

}  // namespace
}  // namespace wfm::diffusion
