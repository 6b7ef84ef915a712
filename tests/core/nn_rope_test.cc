// Rotary embeddings: the 3D tables against the Cosmos AR fixture and the per-axis formula, the relative-position
// property, both rotation conventions, partial rotation, YaRN and the diffusion-style NTK / fps variants.
#include <ATen/ATen.h>

#include <cmath>

#include "test_support.h"
#include "wfm/core/nn/rope.h"
#include "wfm/core/safetensors.h"

namespace wfm::nn {
namespace {

// The angle of dim index i (of D) for token (t, h, w) under the 3D split, from the formula in REFERENCE.md.
double Angle3D(int64_t D, double theta_t, double theta_h, double theta_w, int64_t t, int64_t h, int64_t w,
               int64_t i) {
  const int64_t dh = D / 6 * 2, dt = D - 2 * dh;
  const int64_t half = D / 2;
  int64_t j = i % half;  // position within [t-part, h-part, w-part]
  if (j < dt / 2) return t / std::pow(theta_t, 2.0 * j / dt);
  j -= dt / 2;
  if (j < dh / 2) return h / std::pow(theta_h, 2.0 * j / dh);
  j -= dh / 2;
  return w / std::pow(theta_w, 2.0 * j / dh);
}

TEST(NnRopeTest, HeadDimSplit) {
  const Rope3DSplit s = SplitHeadDim3D(128);
  EXPECT_EQ(s.h, 42);
  EXPECT_EQ(s.w, 42);
  EXPECT_EQ(s.t, 44);
  const Rope3DSplit s16 = SplitHeadDim3D(16);
  EXPECT_EQ(s16.h, 4);
  EXPECT_EQ(s16.t, 8);
}

TEST(NnRopeTest, Angles3DMatchFormula) {
  const int64_t D = 32;
  const GridShape g{3, 5, 7};
  const at::Tensor a = Rope3DAngles(Rope3DOptions(D, g).theta(500000.0));
  ASSERT_EQ(a.sizes(), at::IntArrayRef({3 * 5 * 7, D}));
  auto acc = a.accessor<float, 2>();
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t h = 0; h < 5; ++h)
      for (int64_t w = 0; w < 7; ++w)
        for (int64_t i = 0; i < D; ++i) {
          const double ref = Angle3D(D, 5e5, 5e5, 5e5, t, h, w, i);
          ASSERT_NEAR(acc[(t * 5 + h) * 7 + w][i], ref, 1e-5 * std::max(1.0, std::abs(ref)))
              << "t,h,w,i=" << t << "," << h << "," << w << "," << i;
        }
}

TEST(NnRopeTest, TablesMatchCosmosArFixture) {
  for (const char* name : {"ar_base", "ar_v2w"}) {
    const std::string path = testing::SharedPath(std::string("fixtures/autoregressive/") + name + ".io.safetensors");
    WFM_REQUIRE_FILE(path);
    WFM_ASSERT_OK_AND_ASSIGN(TensorMap io, ReadSafetensors(path));
    // Fixture: head_dim 16 (dim 64 / 4 heads), latent 3x4x4, rope_theta 5e5, [1, N, 1, head_dim] layout.
    const auto [c, s] = RopeCosSin(Rope3DAngles(Rope3DOptions(16, {3, 4, 4}).theta(500000.0)));
    const double dc = testing::MaxAbsDiff(c.view({1, 48, 1, 16}), io.at("rope_cos"));
    const double ds = testing::MaxAbsDiff(s.view({1, 48, 1, 16}), io.at("rope_sin"));
    EXPECT_LT(dc, 1e-6) << name << " HINT: layout cat([t, h, w] * 2), split dim//6*2";
    EXPECT_LT(ds, 1e-6) << name;
  }
}

TEST(NnRopeTest, ApplyHalfAndInterleavedMatchFormula) {
  at::manual_seed(0);
  const at::Tensor x = at::randn({2, 6, 3, 8}, at::kDouble);  // [B, S, H, D]
  const at::Tensor ang = at::randn({6, 4}, at::kDouble);      // [S, D/2] one angle per pair
  // kHalf: pairs (i, i + D/2); kInterleaved: pairs (2i, 2i + 1).
  for (RotaryStyle style : {RotaryStyle::kHalf, RotaryStyle::kInterleaved}) {
    const at::Tensor full = style == RotaryStyle::kHalf ? at::cat({ang, ang}, -1)
                                                         : at::stack({ang, ang}, -1).reshape({6, 8});
    const at::Tensor out = ApplyRotary(x, at::cos(full).view({1, 6, 1, 8}), at::sin(full).view({1, 6, 1, 8}), style);
    at::Tensor ref = x.clone();
    auto xa = x.accessor<double, 4>();
    auto ra = ref.accessor<double, 4>();
    auto aa = ang.accessor<double, 2>();
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t s = 0; s < 6; ++s)
        for (int64_t h = 0; h < 3; ++h)
          for (int64_t i = 0; i < 4; ++i) {
            const int64_t i0 = style == RotaryStyle::kHalf ? i : 2 * i;
            const int64_t i1 = style == RotaryStyle::kHalf ? i + 4 : 2 * i + 1;
            const double c = std::cos(aa[s][i]), sn = std::sin(aa[s][i]);
            ra[b][s][h][i0] = xa[b][s][h][i0] * c - xa[b][s][h][i1] * sn;
            ra[b][s][h][i1] = xa[b][s][h][i1] * c + xa[b][s][h][i0] * sn;
          }
    EXPECT_LT(testing::MaxRelDiff(out, ref), 1e-12) << (style == RotaryStyle::kHalf ? "half" : "interleaved");
    EXPECT_LT(testing::MaxRelDiff(out.norm(2, -1), x.norm(2, -1)), 1e-12) << "rotation must preserve norms";
  }
}

TEST(NnRopeTest, PartialRotationPassesTheRestThrough) {
  at::manual_seed(1);
  const at::Tensor x = at::randn({1, 4, 2, 10});
  const auto [c, s] = RopeCosSin(Rope1DAngles(Rope1DOptions(6), 4));
  const at::Tensor out = ApplyRotary(x, c.view({1, 4, 1, 6}), s.view({1, 4, 1, 6}));
  EXPECT_TRUE(at::equal(out.narrow(-1, 6, 4), x.narrow(-1, 6, 4)));
  EXPECT_FALSE(at::allclose(out.narrow(-1, 0, 6).narrow(1, 1, 3), x.narrow(-1, 0, 6).narrow(1, 1, 3)));
  EXPECT_TRUE(at::allclose(out.select(1, 0), x.select(1, 0)));  // position 0 is the identity
}

TEST(NnRopeTest, Rope3DScoresDependOnlyOnRelativePosition) {
  at::manual_seed(2);
  const int64_t D = 48;
  const GridShape g{6, 6, 6};
  const auto [c, s] = RopeCosSin(Rope3DAngles(Rope3DOptions(D, g).theta(10000.0)));
  const at::Tensor q = at::randn({D}, at::kDouble), k = at::randn({D}, at::kDouble);
  const auto at_pos = [&](const at::Tensor& v, int64_t t, int64_t h, int64_t w) {
    const int64_t idx = (t * 6 + h) * 6 + w;
    return ApplyRotary(v.view({1, 1, 1, D}), c[idx].to(at::kDouble).view({1, 1, 1, D}),
                       s[idx].to(at::kDouble).view({1, 1, 1, D}))
        .view({D});
  };
  const auto score = [&](int64_t t1, int64_t h1, int64_t w1, int64_t t2, int64_t h2, int64_t w2) {
    return at::dot(at_pos(q, t1, h1, w1), at_pos(k, t2, h2, w2)).item<double>();
  };
  // Same offset (dt, dh, dw) = (1, -2, 3) at different absolute places gives the same score...
  const double a = score(1, 3, 0, 0, 5, 2 - 2 + 0), b = score(4, 2, 2, 3, 4, 4 - 2 + 0);
  EXPECT_NEAR(score(2, 4, 1, 1, 2, 4), score(5, 3, 2, 4, 1, 5), 1e-5);
  EXPECT_NEAR(a, b, 1e-5);
  // ...while a different offset along any single axis changes it.
  EXPECT_GT(std::abs(score(2, 4, 1, 1, 2, 4) - score(2, 4, 1, 0, 2, 4)), 1e-4);
  EXPECT_GT(std::abs(score(2, 4, 1, 1, 2, 4) - score(2, 4, 1, 1, 3, 4)), 1e-4);
  EXPECT_GT(std::abs(score(2, 4, 1, 1, 2, 4) - score(2, 4, 1, 1, 2, 3)), 1e-4);
}

TEST(NnRopeTest, Rope1DMatchesFormulaInBothLayouts) {
  const at::Tensor half = Rope1DAngles(Rope1DOptions(8).theta(10000.0), 5, RotaryStyle::kHalf);
  const at::Tensor inter = Rope1DAngles(Rope1DOptions(8).theta(10000.0), 5, RotaryStyle::kInterleaved);
  for (int64_t p = 0; p < 5; ++p)
    for (int64_t i = 0; i < 4; ++i) {
      const double ref = p / std::pow(10000.0, 2.0 * i / 8);
      EXPECT_NEAR(half[p][i].item<double>(), ref, 1e-5 * std::max(1.0, ref));
      EXPECT_NEAR(half[p][i + 4].item<double>(), ref, 1e-5 * std::max(1.0, ref));
      EXPECT_NEAR(inter[p][2 * i].item<double>(), ref, 1e-5 * std::max(1.0, ref));
      EXPECT_NEAR(inter[p][2 * i + 1].item<double>(), ref, 1e-5 * std::max(1.0, ref));
    }
}

TEST(NnRopeTest, YarnScalesLowFrequenciesOnly) {
  const YarnOptions yarn = YarnOptions().scale(2.0).beta_fast(4).beta_slow(1);
  EXPECT_NEAR(YarnMscale(yarn), 0.1 * std::log(2.0) + 1.0, 1e-12);
  EXPECT_EQ(YarnMscale(YarnOptions().scale(1.0)), 1.0);
  const at::Tensor inv = RopeInvFreq(32, 10000.0);
  const at::Tensor f = YarnScaleFactors(inv, 64, yarn);
  const double hi = 2 * M_PI * 4 / 64, lo = 2 * M_PI * 1 / 64;
  for (int64_t i = 0; i < 16; ++i) {
    const double w = inv[i].item<double>();
    const double m = std::clamp((w - lo) / (hi - lo), 0.0, 1.0);
    EXPECT_NEAR(f[i].item<double>(), (1 - m) / 2.0 + m, 1e-6) << i;
  }
  EXPECT_NEAR(f[0].item<double>(), 1.0, 1e-7);   // highest frequency kept
  EXPECT_NEAR(f[15].item<double>(), 0.5, 1e-7);  // lowest frequency divided by the scale
  // 3D: spatial cut-offs from original H, temporal from original T.
  const GridShape g{4, 8, 8};
  const at::Tensor plain = Rope3DAngles(Rope3DOptions(48, g).theta(5e5));
  const at::Tensor scaled = Rope3DAngles(Rope3DOptions(48, g).theta(5e5).yarn(yarn).original_latent_shape({2, 4, 4}));
  const Rope3DSplit sp = SplitHeadDim3D(48);
  const at::Tensor ft = YarnScaleFactors(RopeInvFreq(sp.t, 5e5), 2, yarn);
  const at::Tensor fh = YarnScaleFactors(RopeInvFreq(sp.h, 5e5), 4, yarn);
  const at::Tensor factors = at::cat({ft, fh, fh, ft, fh, fh});
  EXPECT_LT(testing::MaxRelDiff(scaled, plain * factors), 1e-6);
}

TEST(NnRopeTest, DiffusionNtkAndFpsVariant) {
  // VideoRopePosition3DEmb: theta_axis = 10000 * ratio^(d/(d-2)); time positions t / fps * base_fps.
  const int64_t D = 24;
  const at::Tensor a = Rope3DAngles(Rope3DOptions(D, {3, 2, 2})
                                        .theta(10000.0)
                                        .h_extrapolation_ratio(2.0)
                                        .w_extrapolation_ratio(3.0)
                                        .t_extrapolation_ratio(1.5)
                                        .fps(12.0)
                                        .base_fps(24.0));
  const int64_t dh = D / 6 * 2, dt = D - 2 * dh;
  const double th = 1e4 * std::pow(2.0, dh / (dh - 2.0)), tw = 1e4 * std::pow(3.0, dh / (dh - 2.0)),
               tt = 1e4 * std::pow(1.5, dt / (dt - 2.0));
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t w = 0; w < 2; ++w)
        for (int64_t i = 0; i < D; ++i) {
          // time positions are doubled (fps 12 against base 24)
          double ref = Angle3D(D, tt, th, tw, 2 * t, h, w, i);
          EXPECT_NEAR(a[(t * 2 + h) * 2 + w][i].item<double>(), ref, 1e-5 * std::max(1.0, ref));
        }
}

}  // namespace
}  // namespace wfm::nn
