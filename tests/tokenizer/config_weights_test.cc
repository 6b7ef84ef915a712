// Tokenizer config presets / JSON, strict weight loading errors, and trainability (autograd through every
// module, straight-through FSQ) of the native networks.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <nlohmann/json.hpp>

#include "test_support.h"
#include "wfm/core/safetensors.h"
#include "wfm/tokenizer/config.h"
#include "wfm/tokenizer/network.h"
#include "wfm/tokenizer/layers3d.h"
#include "wfm/tokenizer/train.h"
#include "wfm/tokenizer/weights.h"

namespace wfm::tokenizer {
namespace {

std::string Fixture(const std::string& name, const std::string& suffix) {
  return testing::SharedPath("fixtures/tokenizer/" + name + suffix);
}

TEST(TokenizerConfigTest, EveryPresetIsValidAndHasTheAdvertisedCompression) {
  for (const std::string& name : TokenizerConfig::PresetNames()) {
    WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig c, TokenizerConfig::Preset(name));
    WFM_EXPECT_OK(c.Validate());
    // "...CV8x16x16..." -> temporal 8, spatial 16.
    const size_t kind = name.find(c.name);
    ASSERT_NE(kind, std::string::npos) << name;
    std::string dims = name.substr(kind + 2);
    dims = dims.substr(0, dims.find('-'));
    const int64_t first = std::stoll(dims.substr(0, dims.find('x')));
    const int64_t last = std::stoll(dims.substr(dims.rfind('x') + 1));
    if (c.is_video()) EXPECT_EQ(c.temporal_compression, first) << name;
    EXPECT_EQ(c.spatial_compression, last) << name;
  }
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig cv816, TokenizerConfig::Preset("CV8x16x16"));
  EXPECT_EQ(cv816.patch_size, 4);
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig cv448, TokenizerConfig::Preset("Cosmos-Tokenize1-CV4x8x8-360p"));
  EXPECT_EQ(cv448.patch_size, 2);
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig cv448_01, TokenizerConfig::Preset("Cosmos-0.1-Tokenizer-CV4x8x8"));
  EXPECT_EQ(cv448_01.patch_size, 4);
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig dv, TokenizerConfig::Preset("dv4x8x8_360p"));
  EXPECT_EQ(dv.z_channels, 256);
  auto unknown = TokenizerConfig::Preset("CV2x2x2");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("CV8x8x8-720p"), std::string::npos) << unknown.status();
}

TEST(TokenizerConfigTest, JsonRoundTripAndErrors) {
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig c, TokenizerConfig::Preset("DV8x16x16"));
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig back, TokenizerConfig::FromJson(c.ToJson()));
  EXPECT_EQ(back.ToJson(), c.ToJson());
  // Wrapped in {"config": ...} like the fixtures.
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig wrapped, TokenizerConfig::FromJson(nlohmann::json{{"config", c.ToJson()}}));
  EXPECT_EQ(wrapped.ToJson(), c.ToJson());

  auto bad_type = TokenizerConfig::FromJsonString(R"({"name": "CV", "channels": "wide"})");
  ASSERT_FALSE(bad_type.ok());
  EXPECT_NE(bad_type.status().message().find("channels"), std::string::npos) << bad_type.status();
  auto bad_patch = TokenizerConfig::FromJsonString(R"({"name": "CV", "patch_size": 3})");
  ASSERT_FALSE(bad_patch.ok());
  EXPECT_NE(bad_patch.status().message().find("patch_size"), std::string::npos) << bad_patch.status();
  auto bad_name = TokenizerConfig::FromJsonString(R"({"name": "XV"})");
  EXPECT_FALSE(bad_name.ok());
  auto not_json = TokenizerConfig::FromJsonString("{name: CV");
  EXPECT_FALSE(not_json.ok());
  auto mismatch = TokenizerConfig::FromJsonString(R"({"name": "CV", "channels_mult": [1, 2]})");
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("upsamples"), std::string::npos) << mismatch.status();
  auto base = TokenizerConfig::FromJsonString(R"({"name": "CV", "encoder": "BASE"})");
  ASSERT_FALSE(base.ok());
  EXPECT_EQ(base.status().code(), absl::StatusCode::kUnimplemented);
  auto missing = TokenizerConfig::FromJsonFile("/nonexistent/config.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/config.json"), std::string::npos);
}

// Small-width versions of every preset: the latent has the advertised compression and decodes back.
TEST(TokenizerConfigTest, SmallWidthPresetsHaveTheRightLatentShapes) {
  torch::NoGradGuard no_grad;
  for (const char* name : {"CV8x8x8", "CV4x8x8", "CV8x16x16", "DV8x16x16", "DV4x8x8", "DV8x8x8", "CI8x8", "CI16x16",
                           "DI8x8", "DI16x16"}) {
    WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig c, TokenizerConfig::Preset(name));
    c.channels = c.is_video() ? 4 : 32;
    c.channels_mult = {1, 1, 1};
    c.num_res_blocks = 1;
    if (c.name == "DV" || c.name == "DI") c.z_channels = 8;
    TokenizerNetwork net(c);
    net->eval();
    const int64_t T = c.is_video() ? 1 + 2 * c.temporal_compression : 1;
    const int64_t H = 2 * c.spatial_compression, W = 3 * c.spatial_compression;
    at::Tensor x = at::rand(c.is_video() ? std::vector<int64_t>{1, 3, T, H, W} : std::vector<int64_t>{1, 3, H, W}) * 2 - 1;
    auto enc = net->Encode(x);
    std::vector<int64_t> want = {1, c.latent_dim()};
    if (c.is_video()) want.push_back(3);
    want.push_back(2);
    want.push_back(3);
    EXPECT_EQ(enc.latent.sizes().vec(), want) << name;
    EXPECT_EQ(net->Decode(enc.latent).sizes(), x.sizes()) << name;
    if (c.is_discrete()) {
      EXPECT_TRUE(enc.indices.ge(0).all().item<bool>() && enc.indices.lt(c.codebook_size()).all().item<bool>());
      EXPECT_TRUE(at::equal(net->quantizer->IndicesToCodes(enc.indices), enc.latent)) << name;
    }
  }
}

TEST(TokenizerWeightsTest, StrictLoadListsEveryProblemAtOnce) {
  WFM_REQUIRE_FILE(Fixture("CV8x8x8", ".weights.safetensors"));
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig config, TokenizerConfig::FromJsonFile(Fixture("CV8x8x8", ".json")));
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap w, ReadSafetensors(Fixture("CV8x8x8", ".weights.safetensors")));
  w.erase("decoder.conv_in.0.conv3d.weight");
  w.erase("encoder.mid.block_1.norm1.norm.bias");
  w["encoder.extra.weight"] = at::zeros({3});
  w["quant_conv.conv3d.bias"] = at::zeros({17});
  const std::string path = testing::TempDir() + "/broken.safetensors";
  WFM_ASSERT_OK(WriteSafetensors(path, w));
  TokenizerNetwork net(config);
  auto s = LoadTokenizerWeights(*net, path);
  ASSERT_FALSE(s.ok());
  const std::string msg(s.status().message());
  for (const char* needle : {"missing", "decoder.conv_in.0.conv3d.weight", "encoder.mid.block_1.norm1.norm.bias",
                             "1 unknown", "encoder.extra.weight", "1 wrong shape", "quant_conv.conv3d.bias",
                             "[17]", "broken.safetensors"})
    EXPECT_NE(msg.find(needle), std::string::npos) << "missing \"" << needle << "\" in: " << msg;
}

// Loaded parameters may share the checkpoint file's (copy-on-write) mapping: writing them (fine-tuning) must
// neither fail nor change the file, and a network loaded afterwards still gets the file's values.
TEST(TokenizerWeightsTest, LoadedWeightsAreWritableAndTheFileStaysIntact) {
  const std::string path = Fixture("CV8x8x8", ".weights.safetensors");
  WFM_REQUIRE_FILE(path);
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig config, TokenizerConfig::FromJsonFile(Fixture("CV8x8x8", ".json")));
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap file, ReadSafetensors(path));
  const at::Tensor before = file.at("quant_conv.conv3d.weight").clone();
  TokenizerNetwork net(config);
  WFM_ASSERT_OK(LoadTokenizerWeights(*net, path).status());
  {
    torch::NoGradGuard ng;
    for (auto& p : net->parameters()) p.add_(1);
  }
  EXPECT_TRUE(at::equal(net->quant_conv3d->conv3d->weight, before + 1));
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap again, ReadSafetensors(path));
  EXPECT_TRUE(at::equal(again.at("quant_conv.conv3d.weight"), before)) << "loading let writes reach the file";
  TokenizerNetwork net2(config);
  WFM_ASSERT_OK(LoadTokenizerWeights(*net2, path).status());
  EXPECT_TRUE(at::equal(net2->quant_conv3d->conv3d->weight, before));
}

TEST(TokenizerWeightsTest, WrongConfigIsReported) {
  WFM_REQUIRE_FILE(Fixture("DV8x16x16", ".weights.safetensors"));
  // The DV4x8x8 fixture config (patch 2, z 32) against the DV8x16x16 weights.
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig config, TokenizerConfig::FromJsonFile(Fixture("DV4x8x8", ".json")));
  TokenizerNetwork net(config);
  auto s = LoadTokenizerWeights(*net, Fixture("DV8x16x16", ".weights.safetensors"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("wrong shape"), std::string::npos) << s.status();
  // Different FSQ levels with the same codebook size: same shapes, different constants.
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig dv, TokenizerConfig::FromJsonFile(Fixture("DV8x16x16", ".json")));
  dv.levels = {5, 5, 5, 8, 8, 8};
  TokenizerNetwork net2(dv);
  auto s2 = LoadTokenizerWeights(*net2, Fixture("DV8x16x16", ".weights.safetensors"));
  ASSERT_FALSE(s2.ok());
  EXPECT_NE(s2.status().message().find("quantizer._levels"), std::string::npos) << s2.status();
  // Not a checkpoint at all.
  const std::string junk = testing::TempDir() + "/junk.safetensors";
  {
    FILE* f = std::fopen(junk.c_str(), "wb");
    std::fputs("this is not a checkpoint", f);
    std::fclose(f);
  }
  auto s3 = LoadTokenizerWeights(*net2, junk);
  ASSERT_FALSE(s3.ok());
  EXPECT_NE(s3.status().message().find("junk.safetensors"), std::string::npos) << s3.status();
  EXPECT_FALSE(LoadTokenizerWeights(*net2, "/nonexistent/w.safetensors").ok());
}

TEST(TokenizerWeightsTest, PublishedNamingIsMapped) {
  WFM_REQUIRE_FILE(Fixture("DV8x16x16", ".weights.safetensors"));
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig config, TokenizerConfig::FromJsonFile(Fixture("DV8x16x16", ".json")));
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap w, ReadSafetensors(Fixture("DV8x16x16", ".weights.safetensors")));
  // model.pt layout: "network." keys without the patcher buffers, EMA copies of the parameters as
  // "ema.network-..." buffers (here: all parameters + 1 so that using them is visible).
  TensorMap pt;
  for (auto& [k, t] : w) {
    if (k.rfind("encoder.patcher", 0) == 0 || k.rfind("decoder.unpatcher", 0) == 0) continue;
    pt["network." + k] = t;
    if (at::isFloatingType(t.scalar_type()) && k.find("quantizer") == std::string::npos) {
      std::string dashed = k;
      for (char& c : dashed)
        if (c == '.') c = '-';
      pt["ema.network-" + dashed] = t + 1;
    }
  }
  const std::string path = testing::TempDir() + "/model.safetensors";
  WFM_ASSERT_OK(WriteSafetensors(path, pt));
  TokenizerNetwork net(config);
  WFM_ASSERT_OK(LoadTokenizerWeights(*net, path).status());
  EXPECT_TRUE(at::equal(net->quant_conv3d->conv3d->weight, w.at("quant_conv.conv3d.weight")));
  WFM_ASSERT_OK(LoadTokenizerWeights(*net, path, WeightsPart::kAll, /*use_ema=*/true).status());
  EXPECT_TRUE(at::allclose(net->quant_conv3d->conv3d->weight, w.at("quant_conv.conv3d.weight") + 1));

  // Encoder half only (encoder.jit layout), required part = encoder.
  TensorMap enc;
  for (auto& [k, t] : w)
    if (InWeightsPart(k, WeightsPart::kEncoder)) enc[k] = t;
  const std::string enc_path = testing::TempDir() + "/encoder.safetensors";
  WFM_ASSERT_OK(WriteSafetensors(enc_path, enc));
  TokenizerNetwork net2(config);
  WFM_EXPECT_OK(LoadTokenizerWeights(*net2, enc_path, WeightsPart::kEncoder).status());
  auto need_all = LoadTokenizerWeights(*net2, enc_path, WeightsPart::kAll);
  ASSERT_FALSE(need_all.ok());
  EXPECT_NE(need_all.status().message().find("decoder."), std::string::npos);
  // decoder.jit layout: "inv_quant.quantizer.*".
  TensorMap dec;
  for (auto& [k, t] : w)
    if (InWeightsPart(k, WeightsPart::kDecoder))
      dec[k.rfind("quantizer.", 0) == 0 ? "inv_quant." + k : k] = t;
  const std::string dec_path = testing::TempDir() + "/decoder.safetensors";
  WFM_ASSERT_OK(WriteSafetensors(dec_path, dec));
  WFM_EXPECT_OK(LoadTokenizerWeights(*net2, enc_path + "," + dec_path, WeightsPart::kAll).status());
}

// Gradients reach every parameter (FSQ: straight-through), in train mode, for the four network kinds.
TEST(TokenizerTrainingTest, AutogradReachesEveryParameter) {
  for (const char* name : {"CV4x8x8", "DV4x8x8", "CI8x8", "DI8x8"}) {
    WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig c, TokenizerConfig::Preset(name));
    c.channels = c.is_video() ? 4 : 32;
    c.channels_mult = {1, 1, 2};
    c.num_res_blocks = 1;
    c.spatial_compression = c.patch_size * 2;
    if (c.is_video()) c.temporal_compression = c.patch_size * 2;
    c.z_channels = 8;
    c.dropout = 0.1;
    TokenizerNetwork net(c);
    net->train();
    at::manual_seed(0);
    at::Tensor x = c.is_video() ? at::rand({2, 3, 1 + c.temporal_compression, 16, 16}) : at::rand({2, 3, 16, 16});
    auto out = net->forward(x * 2 - 1);
    at::Tensor loss = (out.reconstruction - x).abs().mean();
    loss.backward();
    int without = 0;
    for (const auto& p : net->named_parameters(true)) {
      if (!p.value().grad().defined() || p.value().grad().abs().sum().item<double>() == 0.0) {
        ADD_FAILURE() << name << ": no gradient for " << p.key();
        if (++without > 5) break;
      }
    }
    // Dropout makes train-mode forward stochastic; eval mode is deterministic.
    net->eval();
    torch::NoGradGuard ng;
    EXPECT_TRUE(at::equal(net->forward(x).reconstruction, net->forward(x).reconstruction)) << name;
  }
}

// ScaleSkipPathToData: the encoder's and decoder's conv_in come out at unit spread and the reconstruction at the
// data's, keys and shapes unchanged, forward still finite; 2D tokenizers and flat batches are errors.
TEST(TokenizerTrainingTest, ScaleSkipPathToDataNormalisesTheSkipPath) {
  for (const char* name : {"CV", "DV"}) {  // the demo's small 4x8x8 layout
    TokenizerConfig c = BaseConfig(name);
    c.channels = 8;
    c.channels_mult = {2, 4};
    c.num_res_blocks = 1;
    c.attn_resolutions = {};
    c.resolution = 32;
    c.patch_size = 4;
    c.spatial_compression = 8;
    c.temporal_compression = 4;
    c.z_channels = c.latent_channels = 8;
    if (c.is_discrete()) {
      c.levels = {8, 5, 5, 5};
      c.embedding_dim = 4;
    }
    WFM_ASSERT_OK(c.Validate());
    at::manual_seed(1);
    TokenizerNetwork net(c);
    // Smooth frames with a few bright squares, roughly like the demo world.
    at::Tensor x = at::linspace(-0.3, 0.1, 32).view({1, 1, 1, 32, 1}).expand({2, 3, 5, 32, 32}).clone();
    x.narrow(3, 8, 6).narrow(4, 10, 6).select(1, 0).fill_(0.8);
    x.narrow(3, 20, 5).narrow(4, 3, 5).select(1, 2).fill_(0.7);
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const auto& p : net->named_parameters()) shapes[p.key()] = p.value().sizes().vec();
    WFM_ASSERT_OK(ScaleSkipPathToData(*net, x));
    at::NoGradGuard ng;
    auto enc = std::dynamic_pointer_cast<EncoderFactorizedImpl>(net->encoder);
    auto dec = std::dynamic_pointer_cast<DecoderFactorizedImpl>(net->decoder);
    EXPECT_NEAR(enc->conv_in(enc->patcher3d(x, nullptr), nullptr).std().item<double>(), 1.0, 1e-3) << name;
    EXPECT_NEAR(dec->conv_in(net->post_quant_conv3d(net->Encode(x).latent), nullptr).std().item<double>(), 1.0,
                1e-3)
        << name;
    const at::Tensor rec = net->forward(x).reconstruction;
    EXPECT_TRUE(at::isfinite(rec).all().item<bool>()) << name;
    EXPECT_NEAR(rec.std().item<double>() / x.std().item<double>(), 1.0, 1e-3) << name;
    for (const auto& p : net->named_parameters()) EXPECT_EQ(p.value().sizes().vec(), shapes[p.key()]) << p.key();
    EXPECT_EQ(ScaleSkipPathToData(*net, at::zeros({1, 3, 5, 32, 32})).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(ScaleSkipPathToData(*net, at::zeros({3, 5, 32, 32})).code(), absl::StatusCode::kInvalidArgument);
  }
  WFM_ASSERT_OK_AND_ASSIGN(TokenizerConfig ci, TokenizerConfig::Preset("CI8x8"));
  ci.channels = 32;
  ci.channels_mult = {1, 1, 2};
  ci.num_res_blocks = 1;
  ci.z_channels = 8;
  TokenizerNetwork image(ci);
  const absl::Status s = ScaleSkipPathToData(*image, at::rand({1, 3, 5, 16, 16}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("CV/DV"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace wfm::tokenizer
