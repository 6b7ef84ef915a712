// Tokenizer-backed curation features with the small tokenizer fixtures: the tokenized clip variant
// (KEY.latent.safetensors: shape, geometry metadata, continuous and discrete) and the pooled-latent embedder.
#include <filesystem>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "curation_test_util.h"
#include "test_support.h"
#include "wfm/core/safetensors.h"
#include "wfm/curation/pipeline.h"
#include "wfm/curation/tokenizer_features.h"
#include "wfm/curation/webdataset.h"

namespace wfm::curation {
namespace {

class TokenizerFeaturesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TokenizerAvailable()) GTEST_SKIP() << "built without the tokenizer module";
    fixtures_ = wfm::testing::SharedPath("fixtures/tokenizer");
    WFM_REQUIRE_FILE(fixtures_ + "/CV8x8x8.weights.safetensors");
    WFM_REQUIRE_FILE(wfm::testing::SharedPath("media/cityCC0.mpg"));
    dir_ = wfm::testing::TempDir();
    // A 17-frame 64x48 clip of real footage.
    auto frames = testing::LoadFrames(wfm::testing::SharedPath("media/cityCC0.mpg"), 64, 48, 20, 17);
    ASSERT_TRUE(frames.ok()) << frames.status();
    frames_ = *frames;
    ASSERT_TRUE(testing::EncodeFrames(frames_, 25, dir_ + "/clip.mp4").ok());
  }
  TokenizerSpec Spec(const std::string& name) const {
    TokenizerSpec s;
    s.config = fixtures_ + "/" + name + ".json";
    s.weights = fixtures_ + "/" + name + ".weights.safetensors";
    return s;
  }
  std::string fixtures_, dir_;
  at::Tensor frames_;
};

TEST_F(TokenizerFeaturesTest, ContinuousLatentVariant) {
  WFM_ASSERT_OK_AND_ASSIGN(LatentWriter w, MakeLatentWriter(Spec("CV8x8x8")));
  WFM_ASSERT_OK(w(dir_ + "/clip.mp4", dir_ + "/clip.latent.safetensors"));
  WFM_ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(dir_ + "/clip.latent.safetensors"));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor latent, file->Get("latent"));
  // 17 frames -> 1 + 16/8 = 3 latent frames; 48x64 / 8 = 6x8; 16 channels.
  EXPECT_EQ(latent.sizes(), (std::vector<int64_t>{16, 3, 6, 8}));
  EXPECT_TRUE(at::isfinite(latent).all().item<bool>());
  EXPECT_EQ(file->metadata().at("wfm.tokenizer.frames"), "17");
}

TEST_F(TokenizerFeaturesTest, DiscreteIndicesVariant) {
  WFM_REQUIRE_FILE(fixtures_ + "/DV4x8x8.weights.safetensors");
  WFM_ASSERT_OK_AND_ASSIGN(LatentWriter w, MakeLatentWriter(Spec("DV4x8x8")));
  WFM_ASSERT_OK(w(dir_ + "/clip.mp4", dir_ + "/d.latent.safetensors"));
  WFM_ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(dir_ + "/d.latent.safetensors"));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor idx, file->Get("indices"));
  EXPECT_EQ(idx.scalar_type(), at::kInt);
  EXPECT_EQ(idx.sizes(), (std::vector<int64_t>{5, 6, 8}));  // 1 + 16/4 latent frames
  EXPECT_GE(idx.min().item<int>(), 0);
}

TEST_F(TokenizerFeaturesTest, PooledLatentEmbedder) {
  WFM_ASSERT_OK_AND_ASSIGN(auto e, MakeTokenizerEmbedder(Spec("CV8x8x8"), 64, 48));
  WFM_ASSERT_OK_AND_ASSIGN(std::vector<float> a, e->Embed(frames_.slice(0, 0, 8)));
  WFM_ASSERT_OK_AND_ASSIGN(std::vector<float> b, e->Embed(frames_.slice(0, 1, 9)));
  WFM_ASSERT_OK_AND_ASSIGN(std::vector<float> c, e->Embed(frames_.flip({1, 2}).slice(0, 0, 8)));
  ASSERT_EQ(a.size(), 64u);  // 4 x 16 channels
  double ab = 0, ac = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += a[i] * b[i];
    ac += a[i] * c[i];
  }
  // Neighbouring windows of the same shot are closer than the same frames turned upside down.
  EXPECT_GT(ab, ac);
  EXPECT_GT(ab, 0.9);
  EXPECT_FALSE(MakeLatentWriter({"CV8x8x8", dir_ + "/missing.safetensors"}).ok());
}

TEST_F(TokenizerFeaturesTest, ShardsCarryTheTokenizedVariant) {
  TokenizerSpec spec = Spec("CV8x8x8");
  spec.height = 48;
  WFM_ASSERT_OK_AND_ASSIGN(LatentWriter w, MakeLatentWriter(spec));
  CurateOptions o;
  o.inputs = {wfm::testing::SharedPath("media/cityCC0.mpg")};
  o.output = dir_ + "/run";
  o.quiet = true;
  o.transcode.height = 96;
  o.latent_writer = w;
  WFM_ASSERT_OK(RunCurate(o).status());
  WFM_ASSERT_OK_AND_ASSIGN(auto reader, DatasetReader::Open({dir_ + "/run/shards"}));
  Sample s;
  int n = 0;
  while (true) {
    WFM_ASSERT_OK_AND_ASSIGN(bool more, reader->Next(&s));
    if (!more) break;
    ASSERT_TRUE(s.Has("latent.safetensors")) << s.key;
    WFM_ASSERT_OK_AND_ASSIGN(nlohmann::json meta, s.Json());
    // 92 or 50 frames -> 1 + ceil((T - 1) / 8) latent frames; 48 px high -> 6 latent rows.
    std::string path = dir_ + "/" + s.key + ".safetensors";
    std::FILE* f = std::fopen(path.c_str(), "wb");
    std::fwrite(s.Get("latent.safetensors").data(), 1, s.Get("latent.safetensors").size(), f);
    std::fclose(f);
    WFM_ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor latent, file->Get("latent"));
    int64_t t = meta["num_frames"].get<int64_t>();
    EXPECT_EQ(latent.size(1), 1 + (t - 1 + 7) / 8);
    EXPECT_EQ(latent.size(2), 6);
    ++n;
  }
  EXPECT_EQ(n, 2);
}

}  // namespace
}  // namespace wfm::curation
