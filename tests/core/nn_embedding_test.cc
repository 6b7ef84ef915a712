// Sinusoidal timestep embedding (Cosmos diffusion Timesteps conventions) and the 3D sin-cos absolute position
// embedding against the Cosmos AR fixture and the MAE formula.
#include <ATen/ATen.h>

#include <cmath>

#include "test_support.h"
#include "wfm/core/nn/embedding.h"
#include "wfm/core/safetensors.h"

namespace wfm::nn {
namespace {

TEST(NnEmbeddingTest, TimestepsCosFirstNoShift) {
  const at::Tensor t = at::tensor({0.0f, 1.5f, -3.0f, 250.0f});
  const int64_t C = 16, half = 8;
  Timesteps module{TimestepsOptions(C)};
  const at::Tensor e = module(t);
  ASSERT_EQ(e.sizes(), at::IntArrayRef({4, C}));
  for (int64_t b = 0; b < 4; ++b)
    for (int64_t i = 0; i < half; ++i) {
      const double arg = t[b].item<double>() * std::exp(-std::log(10000.0) * i / half);
      EXPECT_NEAR(e[b][i].item<double>(), std::cos(arg), 2e-5) << b << "," << i;
      EXPECT_NEAR(e[b][half + i].item<double>(), std::sin(arg), 2e-5) << b << "," << i;
    }
}

TEST(NnEmbeddingTest, TimestepsDiffusersConventions) {
  const at::Tensor t = at::tensor({2.0, 7.0}, at::kDouble);
  const at::Tensor e = SinusoidalTimestepEmbedding(
      t, TimestepsOptions(9).flip_sin_to_cos(false).downscale_freq_shift(1.0).max_period(100.0).scale(0.5));
  ASSERT_EQ(e.sizes(), at::IntArrayRef({2, 9}));
  EXPECT_EQ(e.scalar_type(), at::kDouble);
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t i = 0; i < 4; ++i) {
      const double arg = 0.5 * t[b].item<double>() * std::exp(-std::log(100.0) * i / (4 - 1.0));
      EXPECT_NEAR(e[b][i].item<double>(), std::sin(arg), 1e-5);
      EXPECT_NEAR(e[b][4 + i].item<double>(), std::cos(arg), 1e-5);
    }
    EXPECT_EQ(e[b][8].item<double>(), 0.0);  // odd width: zero pad column
  }
}

TEST(NnEmbeddingTest, SinCos3DMatchesFormula) {
  const int64_t D = 20;  // h, w: 6 each; t: 8
  const at::Tensor e = SinCos3DPositionEmbedding(SinCos3DOptions(D, {2, 3, 4}).h_extrapolation_ratio(2.0));
  ASSERT_EQ(e.sizes(), at::IntArrayRef({24, D}));
  const auto one_d = [](int64_t d, double p, int64_t i) {  // MAE: [sin(p w_0..), cos(p w_0..)]
    const int64_t k = i % (d / 2);
    const double arg = p / std::pow(10000.0, k / (d / 2.0));
    return i < d / 2 ? std::sin(arg) : std::cos(arg);
  };
  for (int64_t t = 0; t < 2; ++t)
    for (int64_t h = 0; h < 3; ++h)
      for (int64_t w = 0; w < 4; ++w) {
        const int64_t row = (t * 3 + h) * 4 + w;
        for (int64_t i = 0; i < 8; ++i) EXPECT_NEAR(e[row][i].item<double>(), one_d(8, t, i), 1e-12);
        for (int64_t i = 0; i < 6; ++i) EXPECT_NEAR(e[row][8 + i].item<double>(), one_d(6, h / 2.0, i), 1e-12);
        for (int64_t i = 0; i < 6; ++i) EXPECT_NEAR(e[row][14 + i].item<double>(), one_d(6, w, i), 1e-12);
      }
}

TEST(NnEmbeddingTest, SinCos3DMatchesCosmosArFixture) {
  const std::string path = testing::SharedPath("fixtures/autoregressive/ar_v2w.io.safetensors");
  WFM_REQUIRE_FILE(path);
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap io, ReadSafetensors(path));
  // The reference stores the table in bfloat16 (SinCosPosEmbAxisTE's default dtype).
  const at::Tensor e = SinCos3DPositionEmbedding(SinCos3DOptions(64, {3, 4, 4})).to(at::kBFloat16).unsqueeze(0);
  const at::Tensor& ref = io.at("abs_pos_emb");
  ASSERT_EQ(ref.sizes(), e.sizes());
  EXPECT_EQ(testing::MaxAbsDiff(e, ref), 0.0) << "HINT: per-axis split t = rest, h = w = dim//6*2; sin then cos";
}

}  // namespace
}  // namespace wfm::nn
