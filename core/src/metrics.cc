// PSNR / SSIM (see metrics.h). SSIM follows skimage.metrics.structural_similarity: separable window filters of
// x, y, x^2, y^2, xy; luminance/contrast-structure terms with C1 = (K1 R)^2, C2 = (K2 R)^2; valid region only.
#include "wfm/core/metrics.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "wfm/core/status.h"

namespace wfm {
namespace {

constexpr double kUint8Max = 255.0;
// np.finfo(np.float32).eps, as in TokenBench.
constexpr double kFloat32Eps = 1.1920928955078125e-07;
// Frames per SSIM chunk: bounds the float64 temporaries to ~5 * 8 * C*H*W bytes per frame.
constexpr int64_t kSsimChunkFrames = 8;

std::string ShapeString(const at::Tensor& t) { return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]"); }

int WindowSize(SsimWindow w) { return w == SsimWindow::kGaussian11 ? 11 : 7; }

// Validates a pair and brings both to [T, H, W, C] float64 on the CPU, in the scale given by `data_range`.
absl::Status Prepare(const at::Tensor& reference, const at::Tensor& test, const MetricOptions& options,
                     at::Tensor* ref_out, at::Tensor* test_out, double* data_range) {
  if (!reference.defined() || !test.defined()) return absl::InvalidArgumentError("metrics: undefined tensor");
  if (reference.sizes() != test.sizes())
    return absl::InvalidArgumentError(absl::StrCat("metrics: shape mismatch: reference ", ShapeString(reference),
                                                   " vs test ", ShapeString(test)));
  if (reference.dim() != 3 && reference.dim() != 4)
    return absl::InvalidArgumentError(
        absl::StrCat("metrics: expected frames [T, H, W, C] or an image [H, W, C], got ", ShapeString(reference)));
  if (reference.numel() == 0) return absl::InvalidArgumentError("metrics: empty input");
  const bool any_float = at::isFloatingType(reference.scalar_type()) || at::isFloatingType(test.scalar_type());
  *data_range = (any_float && !options.quantize) ? 2.0 : kUint8Max;
  auto convert = [&](const at::Tensor& t, const char* what, at::Tensor* out) -> absl::Status {
    at::Tensor x = t.detach().to(at::kCPU);
    if (at::isFloatingType(x.scalar_type())) {
      x = x.to(at::kDouble);
      if (!at::isfinite(x).all().item<bool>())
        return absl::InvalidArgumentError(absl::StrCat("metrics: ", what, " contains NaN or Inf"));
      if (options.quantize) x = ((x + 1.0) * (kUint8Max / 2.0)).round().clamp(0.0, kUint8Max);
    } else if (x.scalar_type() == at::kByte) {
      x = x.to(at::kDouble);
      if (*data_range == 2.0) x = x / (kUint8Max / 2.0) - 1.0;  // mixed uint8 / float without quantization
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("metrics: ", what, " must be uint8 or floating point, got ", c10::toString(x.scalar_type())));
    }
    *out = x.dim() == 3 ? x.unsqueeze(0) : x;
    return absl::OkStatus();
  };
  WFM_RETURN_IF_ERROR(convert(reference, "reference", ref_out));
  WFM_RETURN_IF_ERROR(convert(test, "test", test_out));
  return absl::OkStatus();
}

double PsnrFromMse(double mse, double data_range) {
  return 20.0 * std::log10(data_range / (std::sqrt(mse) + kFloat32Eps));
}

// One separable pass of the window over [N, C, H, W] (groups = C), valid region.
at::Tensor FilterValid(const at::Tensor& x, const at::Tensor& k1d) {
  const int64_t c = x.size(1), k = k1d.numel();
  at::Tensor kv = k1d.view({1, 1, k, 1}).expand({c, 1, k, 1}).contiguous();
  at::Tensor kh = k1d.view({1, 1, 1, k}).expand({c, 1, 1, k}).contiguous();
  const at::Tensor no_bias;
  const std::vector<int64_t> one = {1, 1}, zero = {0, 0};
  return at::conv2d(at::conv2d(x, kv, no_bias, one, zero, one, c), kh, no_bias, one, zero, one, c);
}

at::Tensor Kernel1d(SsimWindow window, const at::TensorOptions& opts) {
  if (window == SsimWindow::kUniform7) return at::full({7}, 1.0 / 7.0, opts);
  // scipy.ndimage gaussian, sigma 1.5, truncate 3.5 -> radius 5 (11 taps), normalised.
  at::Tensor x = at::arange(-5, 6, opts.dtype(at::kDouble));
  at::Tensor g = at::exp(-0.5 * x * x / (1.5 * 1.5));
  return (g / g.sum()).to(opts);
}

absl::Status CheckSsimSize(const at::Tensor& frames_thwc, const SsimOptions& options) {
  const int k = WindowSize(options.window);
  if (frames_thwc.size(1) < k || frames_thwc.size(2) < k)
    return absl::InvalidArgumentError(absl::StrCat("SSIM: frames of ", frames_thwc.size(1), "x", frames_thwc.size(2),
                                                   " are smaller than the ", k, "x", k, " window"));
  return absl::OkStatus();
}

std::vector<double> ToVector(const at::Tensor& t) {
  at::Tensor c = t.to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

std::vector<double> PsnrPerFramePrepared(const at::Tensor& r, const at::Tensor& t, double range) {
  at::Tensor mse = (r - t).square().flatten(1).mean(1);  // [T]
  std::vector<double> out;
  for (double m : ToVector(mse)) out.push_back(PsnrFromMse(m, range));
  return out;
}

std::vector<double> SsimPerFramePrepared(const at::Tensor& r, const at::Tensor& t, double range,
                                         const SsimOptions& options) {
  std::vector<double> out;
  for (int64_t s = 0; s < r.size(0); s += kSsimChunkFrames) {
    const int64_t e = std::min<int64_t>(r.size(0), s + kSsimChunkFrames);
    at::Tensor x = r.slice(0, s, e).permute({0, 3, 1, 2});  // [t, C, H, W]
    at::Tensor y = t.slice(0, s, e).permute({0, 3, 1, 2});
    for (double v : ToVector(SsimPerImage(x, y, range, options))) out.push_back(v);
  }
  return out;
}

double Mean(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

}  // namespace

absl::StatusOr<double> VideoPsnr(const at::Tensor& reference, const at::Tensor& test, const MetricOptions& options) {
  at::Tensor r, t;
  double range = 0;
  WFM_RETURN_IF_ERROR(Prepare(reference, test, options, &r, &t, &range));
  return PsnrFromMse((r - t).square().mean().item<double>(), range);
}

absl::StatusOr<std::vector<double>> PsnrPerFrame(const at::Tensor& reference, const at::Tensor& test,
                                                 const MetricOptions& options) {
  at::Tensor r, t;
  double range = 0;
  WFM_RETURN_IF_ERROR(Prepare(reference, test, options, &r, &t, &range));
  return PsnrPerFramePrepared(r, t, range);
}

absl::StatusOr<std::vector<double>> SsimPerFrame(const at::Tensor& reference, const at::Tensor& test,
                                                 const MetricOptions& options) {
  at::Tensor r, t;
  double range = 0;
  WFM_RETURN_IF_ERROR(Prepare(reference, test, options, &r, &t, &range));
  WFM_RETURN_IF_ERROR(CheckSsimSize(r, options.ssim));
  return SsimPerFramePrepared(r, t, range, options.ssim);
}

absl::StatusOr<VideoQuality> CompareVideos(const at::Tensor& reference, const at::Tensor& test,
                                           const MetricOptions& options) {
  at::Tensor r, t;
  double range = 0;
  WFM_RETURN_IF_ERROR(Prepare(reference, test, options, &r, &t, &range));
  WFM_RETURN_IF_ERROR(CheckSsimSize(r, options.ssim));
  VideoQuality q;
  q.psnr = PsnrFromMse((r - t).square().mean().item<double>(), range);
  q.psnr_per_frame = PsnrPerFramePrepared(r, t, range);
  q.ssim_per_frame = SsimPerFramePrepared(r, t, range, options.ssim);
  q.ssim = Mean(q.ssim_per_frame);
  return q;
}

at::Tensor ModelLayoutToFrames(const at::Tensor& video) {
  TORCH_CHECK(video.dim() >= 3 && video.dim() <= 5, "ModelLayoutToFrames: expected [C,H,W], [C,T,H,W] or [1,C,T,H,W]");
  at::Tensor v = video;
  if (v.dim() == 5) {
    TORCH_CHECK(v.size(0) == 1, "ModelLayoutToFrames: batch size must be 1, got ", v.size(0));
    v = v[0];
  }
  if (v.dim() == 3) return v.permute({1, 2, 0});  // [H, W, C]
  return v.permute({1, 2, 3, 0});                  // [T, H, W, C]
}

at::Tensor SsimKernel(SsimWindow window, const at::Tensor& like) {
  at::Tensor k = Kernel1d(window, like.options());
  return at::outer(k, k);
}

at::Tensor SsimMap(const at::Tensor& x, const at::Tensor& y, double data_range, const SsimOptions& options) {
  TORCH_CHECK(x.dim() == 4 && x.sizes() == y.sizes(), "SsimMap: expected equal [N, C, H, W] inputs");
  const int64_t c = x.size(1);
  const int k = WindowSize(options.window);
  at::Tensor k1d = Kernel1d(options.window, x.options());
  // Filter the five statistics in one grouped convolution: [N, 5C, H, W] -> [N, 5C, H', W'].
  at::Tensor f = FilterValid(at::cat({x, y, x * x, y * y, x * y}, 1), k1d);
  at::Tensor ux = f.narrow(1, 0, c), uy = f.narrow(1, c, c);
  at::Tensor uxx = f.narrow(1, 2 * c, c), uyy = f.narrow(1, 3 * c, c), uxy = f.narrow(1, 4 * c, c);
  const double np = static_cast<double>(k) * k;
  const double cov_norm = options.window == SsimWindow::kUniform7 ? np / (np - 1.0) : 1.0;
  at::Tensor vx = cov_norm * (uxx - ux * ux);
  at::Tensor vy = cov_norm * (uyy - uy * uy);
  at::Tensor vxy = cov_norm * (uxy - ux * uy);
  const double c1 = std::pow(options.k1 * data_range, 2), c2 = std::pow(options.k2 * data_range, 2);
  at::Tensor a1 = 2 * ux * uy + c1, a2 = 2 * vxy + c2;
  at::Tensor b1 = ux * ux + uy * uy + c1, b2 = vx + vy + c2;
  return (a1 * a2) / (b1 * b2);
}

at::Tensor SsimPerImage(const at::Tensor& x, const at::Tensor& y, double data_range, const SsimOptions& options) {
  return SsimMap(x, y, data_range, options).flatten(1).mean(1);
}

}  // namespace wfm
