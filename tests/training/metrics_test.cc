// PSNR / SSIM: analytic cases, an independent numpy implementation of skimage's SSIM algorithm and TokenBench's
// PSNR (tests/training/ssim_reference.py), input conventions and error paths.
#include "wfm/core/metrics.h"

#include <ATen/ATen.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace wfm {
namespace {

TEST(MetricsTest, PsnrOfAConstantErrorIsAnalytic) {
  // Every pixel off by d in frame t: mse_t = d_t^2, PSNR_t = 20 log10(255 / d_t); clip mse = mean of d_t^2.
  at::Tensor a = at::full({3, 16, 20, 3}, 100, at::kByte);
  at::Tensor b = a.clone();
  const std::vector<int> d = {1, 4, 10};
  for (int t = 0; t < 3; ++t) b[t].add_(d[t]);
  WFM_ASSERT_OK_AND_ASSIGN(auto per_frame, PsnrPerFrame(a, b));
  ASSERT_EQ(per_frame.size(), 3u);
  for (int t = 0; t < 3; ++t) EXPECT_NEAR(per_frame[t], 20 * std::log10(255.0 / d[t]), 1e-5) << "frame " << t;
  WFM_ASSERT_OK_AND_ASSIGN(double clip, VideoPsnr(a, b));
  EXPECT_NEAR(clip, 20 * std::log10(255.0 / std::sqrt((1.0 + 16.0 + 100.0) / 3.0)), 1e-5);
  // Order of arguments does not matter, and an uint8 wrap-around (TokenBench's numpy bug) is not reproduced.
  WFM_ASSERT_OK_AND_ASSIGN(double swapped, VideoPsnr(b, a));
  EXPECT_DOUBLE_EQ(clip, swapped);
}

TEST(MetricsTest, IdenticalClipsGiveTheFiniteTokenBenchCeiling) {
  at::Tensor a = at::randint(0, 256, {2, 12, 12, 3}, at::kByte);
  WFM_ASSERT_OK_AND_ASSIGN(double p, VideoPsnr(a, a));
  EXPECT_NEAR(p, 20 * std::log10(255.0 / 1.1920928955078125e-07), 1e-9);  // eps = float32 eps
  WFM_ASSERT_OK_AND_ASSIGN(auto s, SsimPerFrame(a, a));
  for (double v : s) EXPECT_NEAR(v, 1.0, 1e-12);
}

TEST(MetricsTest, FloatInputsAreQuantizedToUint8First) {
  at::manual_seed(1);
  at::Tensor u8 = at::randint(0, 256, {2, 16, 16, 3}, at::kByte);
  at::Tensor f = u8.to(at::kFloat) / 127.5 - 1.0;  // [-1, 1]
  at::Tensor f_noisy = f + (at::rand_like(f) - 0.5) * (0.9 / 127.5);  // < half a uint8 step
  WFM_ASSERT_OK_AND_ASSIGN(double p, VideoPsnr(u8, f_noisy));
  EXPECT_GT(p, 180.0) << "sub-quantum noise must vanish after uint8 quantization";
  MetricOptions raw;
  raw.quantize = false;
  WFM_ASSERT_OK_AND_ASSIGN(double p_raw, VideoPsnr(f, f_noisy, raw));
  EXPECT_LT(p_raw, 60.0);
  // Float-vs-float without quantization uses data range 2: a constant error e gives 20 log10(2 / e).
  WFM_ASSERT_OK_AND_ASSIGN(double p_const, VideoPsnr(f, f + 0.02, raw));
  EXPECT_NEAR(p_const, 20 * std::log10(2.0 / 0.02), 1e-4);
}

TEST(MetricsTest, SsimOfConstantImagesIsTheLuminanceTerm) {
  // Constant images: variances and covariance vanish, SSIM = (2 a b + C1) / (a^2 + b^2 + C1) exactly.
  const double a = 80, b = 120, c1 = std::pow(0.01 * 255, 2);
  const double expected = (2 * a * b + c1) / (a * a + b * b + c1);
  for (auto opts : {SsimOptions{}, SsimOptions::TokenBench()}) {
    MetricOptions m;
    m.ssim = opts;
    WFM_ASSERT_OK_AND_ASSIGN(
        auto s, SsimPerFrame(at::full({1, 20, 24, 3}, a, at::kByte), at::full({1, 20, 24, 3}, b, at::kByte), m));
    EXPECT_NEAR(s[0], expected, 1e-12);
  }
}

TEST(MetricsTest, SsimAndPsnrMatchIndependentNumpyReference) {
  const std::string python = "/usr/bin/python3";
  if (testing::RunCommand(python + " -c 'import numpy' 2>/dev/null") != 0) GTEST_SKIP() << "no numpy in " << python;
  // Real-ish content: smooth gradients + texture + a moving square, and a degraded copy (blur-like + noise).
  at::manual_seed(7);
  const int64_t t = 3, h = 40, w = 52;
  at::Tensor yy = at::arange(h, at::kDouble).view({1, h, 1, 1}), xx = at::arange(w, at::kDouble).view({1, 1, w, 1});
  at::Tensor tt = at::arange(t, at::kDouble).view({t, 1, 1, 1});
  at::Tensor cc = at::arange(3, at::kDouble).view({1, 1, 1, 3});
  at::Tensor base = 128 + 60 * at::sin(xx * 0.3 + tt + cc) * at::cos(yy * 0.2) + 20 * at::randn({t, h, w, 3}, at::kDouble);
  at::Tensor ref = base.clamp(0, 255).round().to(at::kByte);
  at::Tensor test = (0.8 * base + 0.2 * base.roll(1, 2) + 8 * at::randn({t, h, w, 3}, at::kDouble) + 3)
                        .clamp(0, 255).round().to(at::kByte);
  const std::string dir = testing::TempDir();
  for (auto [name, x] : {std::pair<std::string, at::Tensor>{"a.raw", ref}, {"b.raw", test}}) {
    std::ofstream f(dir + "/" + name, std::ios::binary);
    f.write(static_cast<const char*>(x.contiguous().data_ptr()), x.numel());
  }
  std::string out;
  const std::string cmd = python + " " + testing::SourceDir() + "/tests/training/ssim_reference.py " + dir + "/a.raw " +
                          dir + "/b.raw 3 40 52 3";
  ASSERT_EQ(testing::RunCommand(cmd, &out), 0) << out;
  const nlohmann::json ref_json = nlohmann::json::parse(out);

  WFM_ASSERT_OK_AND_ASSIGN(VideoQuality q, CompareVideos(ref, test));
  EXPECT_NEAR(q.psnr, ref_json["psnr"].get<double>(), 1e-9);
  MetricOptions tb;
  tb.ssim = SsimOptions::TokenBench();
  WFM_ASSERT_OK_AND_ASSIGN(auto s_tb, SsimPerFrame(ref, test, tb));
  for (int i = 0; i < t; ++i) {
    EXPECT_NEAR(q.psnr_per_frame[i], ref_json["psnr_per_frame"][i].get<double>(), 1e-9);
    EXPECT_NEAR(q.ssim_per_frame[i], ref_json["ssim_gaussian"][i].get<double>(), 1e-10)
        << "HINT: gaussian 11x11 sigma 1.5, population covariance, valid region";
    EXPECT_NEAR(s_tb[i], ref_json["ssim_uniform7"][i].get<double>(), 1e-10)
        << "HINT: 7x7 box, sample covariance N/(N-1) (skimage defaults)";
  }
  EXPECT_GT(q.ssim, 0.3);
  EXPECT_LT(q.ssim, 0.99);
}

TEST(MetricsTest, ModelLayoutAndDifferentiableSsim) {
  at::manual_seed(3);
  at::Tensor x = at::rand({1, 3, 2, 16, 16}) * 2 - 1;  // [B, C, T, H, W] in [-1, 1]
  at::Tensor frames = ModelLayoutToFrames(x);
  EXPECT_EQ(frames.sizes(), (std::vector<int64_t>{2, 16, 16, 3}));
  EXPECT_TRUE(at::equal(frames[1].select(2, 0), x[0][0][1]));
  // Gradient of 1 - SSIM exists and moves y towards x.
  at::Tensor a = at::rand({2, 3, 16, 16}) * 2 - 1;
  at::Tensor b = (a + 0.3 * at::randn_like(a)).detach().requires_grad_(true);
  at::Tensor loss = 1 - SsimPerImage(a, b, 2.0).mean();
  loss.backward();
  ASSERT_TRUE(b.grad().defined());
  at::Tensor b2 = (b - 5.0 * b.grad()).detach();
  EXPECT_LT((1 - SsimPerImage(a, b2, 2.0).mean()).item<double>(), loss.item<double>());
  EXPECT_EQ(SsimKernel(SsimWindow::kGaussian11, a).sizes(), (std::vector<int64_t>{11, 11}));
  EXPECT_NEAR(SsimKernel(SsimWindow::kGaussian11, a).sum().item<double>(), 1.0, 1e-6);
}

TEST(MetricsTest, BadInputsAreErrors) {
  at::Tensor a = at::zeros({2, 16, 16, 3}, at::kByte);
  EXPECT_EQ(VideoPsnr(a, at::zeros({2, 16, 15, 3}, at::kByte)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VideoPsnr(at::zeros({16, 16}), at::zeros({16, 16})).status().code(), absl::StatusCode::kInvalidArgument);
  at::Tensor nan = at::zeros({2, 16, 16, 3});
  nan[0][0][0][0] = NAN;
  auto s = VideoPsnr(nan, at::zeros({2, 16, 16, 3}));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("NaN"), std::string::npos) << s.status();
  auto small = SsimPerFrame(at::zeros({1, 8, 8, 3}, at::kByte), at::zeros({1, 8, 8, 3}, at::kByte));
  EXPECT_EQ(small.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(small.status().message().find("window"), std::string::npos) << small.status();
  EXPECT_EQ(VideoPsnr(at::zeros({1, 4, 4, 3}, at::kInt), at::zeros({1, 4, 4, 3}, at::kInt)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace wfm
