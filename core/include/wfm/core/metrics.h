// Image / video quality metrics used by every evaluator and trainer: PSNR and SSIM, TokenBench style.
//
// Conventions. "Frames" are [T, H, W, C] (or one image [H, W, C]) in either of the two pixel conventions of
// wfm: uint8 (data range 255, what video IO returns) or floating point in [-1, 1] (the model convention, data
// range 2). By default floating inputs are first quantized to uint8 (round((x + 1) * 127.5), clamped), because
// what users evaluate is the decoded video they would save; set `quantize = false` to measure the float values
// directly (data range 2). Both inputs must have the same shape; dtypes may differ.
//
// PSNR follows NVlabs/TokenBench token_bench/metrics_cli.py PSNR(): one MSE over the whole clip (all frames,
// pixels and channels), psnr = 20 log10(255 / (sqrt(mse) + eps_f32)) — finite (~181 dB) for identical clips.
// (TokenBench subtracts raw uint8 arrays, which wraps around; here the difference is taken in float64.)
//
// SSIM is computed per frame and per channel over the "valid" region (no padding: windows that fit entirely,
// which equals skimage's reflect-filter-then-crop), channels averaged, and returned per frame; the clip SSIM is
// the mean over frames. Two windows:
//   kGaussian11 — Wang et al. 2004: 11x11 Gaussian, sigma 1.5, population covariance
//                 (skimage: gaussian_weights=True, use_sample_covariance=False). The library default.
//   kUniform7   — skimage.metrics.structural_similarity defaults, which is what TokenBench's SSIM() calls:
//                 7x7 box, sample covariance (N/(N-1)).
// K1 = 0.01, K2 = 0.03.
//
//   WFM_ASSIGN_OR_RETURN(VideoQuality q, CompareVideos(truth_u8, recon_u8));   // q.psnr, q.ssim, per frame
//   at::Tensor loss = 1 - SsimPerImage(x_nchw, y_nchw, /*data_range=*/2.0).mean();  // differentiable
#pragma once

#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"

namespace wfm {

enum class SsimWindow { kGaussian11, kUniform7 };

struct SsimOptions {
  SsimWindow window = SsimWindow::kGaussian11;
  double k1 = 0.01, k2 = 0.03;
  // The settings of TokenBench's SSIM() (skimage defaults: 7x7 box, sample covariance).
  static SsimOptions TokenBench() { return SsimOptions{SsimWindow::kUniform7}; }
};

struct MetricOptions {
  bool quantize = true;  // float inputs in [-1, 1] are quantized to uint8 first (TokenBench style)
  SsimOptions ssim;
};

struct VideoQuality {
  double psnr = 0.0;                  // whole-clip PSNR (dB)
  double ssim = 0.0;                  // mean of ssim_per_frame
  std::vector<double> psnr_per_frame;
  std::vector<double> ssim_per_frame;
};

// Whole-clip PSNR (dB). InvalidArgument on a shape mismatch, an empty input, or a non-finite float value.
absl::StatusOr<double> VideoPsnr(const at::Tensor& reference, const at::Tensor& test,
                                 const MetricOptions& options = {});
// PSNR of each frame of [T, H, W, C] frames (an image counts as one frame).
absl::StatusOr<std::vector<double>> PsnrPerFrame(const at::Tensor& reference, const at::Tensor& test,
                                                 const MetricOptions& options = {});
// SSIM of each frame; frames must be at least the window size (7 or 11) in H and W.
absl::StatusOr<std::vector<double>> SsimPerFrame(const at::Tensor& reference, const at::Tensor& test,
                                                 const MetricOptions& options = {});
// Everything at once (one quantization pass).
absl::StatusOr<VideoQuality> CompareVideos(const at::Tensor& reference, const at::Tensor& test,
                                           const MetricOptions& options = {});

// Model-layout video [C, T, H, W] or [1, C, T, H, W] (or image [C, H, W]) -> frames [T, H, W, C] (a view,
// dtype unchanged), for passing model tensors to the functions above.
at::Tensor ModelLayoutToFrames(const at::Tensor& video);

// ---- differentiable building blocks (any floating dtype and device; used by training losses) ----

// The normalised 2D SSIM window, [k, k] in `like`'s dtype and device.
at::Tensor SsimKernel(SsimWindow window, const at::Tensor& like);
// The SSIM map of images x, y: [N, C, H, W] -> [N, C, H - k + 1, W - k + 1] (valid region).
at::Tensor SsimMap(const at::Tensor& x, const at::Tensor& y, double data_range, const SsimOptions& options = {});
// Mean SSIM per image: [N, C, H, W] -> [N].
at::Tensor SsimPerImage(const at::Tensor& x, const at::Tensor& y, double data_range,
                        const SsimOptions& options = {});

}  // namespace wfm
