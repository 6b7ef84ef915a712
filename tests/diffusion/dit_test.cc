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

// Predict1 -> Predict2 state-dict names (the same computation in the MiniTrainDIT layout).
TensorMap ToMiniTrainNames(const TensorMap& w, const TensorMap& own_buffers) {
  const std::vector<std::string> sub = {"self_attn", "cross_attn", "mlp"};
  const std::vector<std::pair<std::string, std::string>> attn = {
      {"block.attn.to_q.0.", "q_proj."}, {"block.attn.to_q.1.", "q_norm."}, {"block.attn.to_k.0.", "k_proj."},
      {"block.attn.to_k.1.", "k_norm."}, {"block.attn.to_v.0.", "v_proj."}, {"block.attn.to_out.0.", "output_proj."}};
  TensorMap out;
  for (const auto& [k, v] : w) {
    std::string n = k;
    int blk = -1, j = -1;
    char rest[256] = {0};
    if (std::sscanf(k.c_str(), "blocks.block%d.blocks.%d.%255s", &blk, &j, rest) == 3) {
      const std::string r(rest), prefix = "blocks." + std::to_string(blk) + ".";
      if (r.rfind("adaLN_modulation.", 0) == 0) {
        n = prefix + "adaln_modulation_" + sub[j] + r.substr(std::string("adaLN_modulation").size());
      } else if (r.rfind("block.layer", 0) == 0) {
        n = prefix + "mlp." + r.substr(std::string("block.").size());
      } else {
        for (const auto& [from, to] : attn)
          if (r.rfind(from, 0) == 0) n = prefix + sub[j] + "." + to + r.substr(from.size());
      }
    } else if (k.rfind("final_layer.adaLN_modulation.", 0) == 0) {
      n = "final_layer.adaln_modulation." + k.substr(std::string("final_layer.adaLN_modulation.").size());
    } else if (k == "affline_norm.weight") {
      n = "t_embedding_norm.weight";
    }
    out[n] = v;
  }
  for (const char* b : {"pos_embedder.dim_spatial_range", "pos_embedder.dim_temporal_range"}) out[b] = own_buffers.at(b);
  return out;
}

// MiniTrainDIT / MinimalV1LVGDiT with the fixtures' weights renamed: the Predict2 network computes the Predict1
// reference output (its docstring: "can load and reproduce the training results of the original DIT").
TEST(DiT, MiniTrainDitReproducesTheFixturesWithRenamedWeights) {
  for (const std::string name : {"dit_t2w", "dit_v2w"}) {
    WFM_REQUIRE_FILE(SharedPath("fixtures/diffusion/" + name + ".weights.safetensors"));
    const Fixture f = LoadFixture(name);
    DiTConfig c = f.config;
    c.architecture = DiTArchitecture::kMiniTrainDit;
    c.minitrain_video2world = f.config.video_conditioned();
    c.in_channels = f.config.latent_channels();
    c.rope_enable_fps_modulation = true;
    MiniTrainDiT net(c);
    net->eval();
    WFM_ASSERT_OK(LoadDiTWeights(*net, ToMiniTrainNames(f.weights, StateDict(*net)), name));
    DiTInputs in = InputsFrom(f.io, c.video_conditioned());
    torch::NoGradGuard no_grad;
    const at::Tensor out = net->Forward(in);
    const double rel = MaxRelDiff(out, f.io.at("output"));
    std::printf("%s as %s: max|diff| / max|ref| = %.3g\n", name.c_str(), c.ReferenceClass().c_str(), rel);
    EXPECT_LE(rel, 1e-4) << "HINT: per-frame modulation, t_embedding_norm, block order self -> cross -> mlp";
    // Per-frame noise levels that are all equal give the same result as one per sample.
    in.timesteps = in.timesteps.view({-1, 1}).expand({in.x.size(0), in.x.size(2)}).contiguous();
    EXPECT_LE(MaxRelDiff(net->Forward(in), out), 1e-6);
  }
}

TEST(DiT, MiniTrainStateDictNames) {
  MiniTrainDiT net(DiTConfig::Preset("predict2-tiny-video2world").value());
  const TensorMap sd = StateDict(*net);
  for (const char* k : {"x_embedder.proj.1.weight", "pos_embedder.seq", "pos_embedder.dim_spatial_range",
                        "pos_embedder.dim_temporal_range", "t_embedder.1.linear_1.weight",
                        "t_embedder.1.linear_2.weight", "t_embedding_norm.weight", "blocks.0.self_attn.q_proj.weight",
                        "blocks.0.self_attn.q_norm.weight", "blocks.0.self_attn.k_norm.weight",
                        "blocks.0.self_attn.output_proj.weight", "blocks.1.cross_attn.k_proj.weight",
                        "blocks.1.mlp.layer1.weight", "blocks.1.mlp.layer2.weight",
                        "blocks.0.adaln_modulation_self_attn.1.weight", "blocks.0.adaln_modulation_cross_attn.2.weight",
                        "blocks.1.adaln_modulation_mlp.2.weight", "final_layer.adaln_modulation.1.weight",
                        "final_layer.linear.weight"})
    EXPECT_TRUE(sd.count(k)) << k;
  // MinimalV1LVGDiT: 16 latent + 1 condition mask + 1 padding mask channels into the 1x2x2 patch embedding.
  EXPECT_EQ(sd.at("x_embedder.proj.1.weight").size(1), 18 * 4);
  EXPECT_EQ(sd.size(), 3u + 1u + 2u + 1u + 2u * (6 + 6 + 2 + 6) + 3u);
  const DiTConfig big = DiTConfig::Preset("predict2-2b-video2world").value();
  EXPECT_EQ(big.model_channels, 2048);
  EXPECT_EQ(big.num_heads, 16);
  EXPECT_EQ(big.ReferenceClass(), "MinimalV1LVGDiT");
  // The class is read back from `_target_`.
  EXPECT_EQ(DiTConfig::FromJson(big.ToJson()).value().ReferenceClass(), "MinimalV1LVGDiT");
}

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
