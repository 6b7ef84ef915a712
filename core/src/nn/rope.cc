// Rotary position embeddings, 1D and 3D (see wfm/core/nn/rope.h). Arithmetic follows the reference order in
// float32 (cosmos_predict1/autoregressive/modules/embedding.py RotaryPositionEmbedding.get_inv_freq /
// compute_freqs / get_scale_factors and diffusion/module/position_embedding.py VideoRopePosition3DEmb) so that the
// tables match the reference bit for bit.
#include "wfm/core/nn/rope.h"

#include <cmath>

#include <ATen/ATen.h>

namespace wfm::nn {
namespace {

// arange(0, dim, 2)[: dim // 2].float() / dim   [dim/2]
at::Tensor FreqRange(int64_t dim) {
  return at::arange(0, dim, 2, at::kLong).slice(0, 0, dim / 2).to(at::kFloat) / static_cast<double>(dim);
}

at::Tensor InvFreqFromRange(const at::Tensor& range, double theta) {
  return at::reciprocal(at::pow(theta, range));  // 1.0 / (theta ** range)
}

// theta * ratio^(d / (d - 2)) (NTK-aware extrapolation); exactly theta when ratio is 1.
double NtkTheta(double theta, double ratio, int64_t d) {
  if (ratio == 1.0) return theta;
  TORCH_CHECK(d > 2, "RoPE: extrapolation ratio needs more than 2 dims per axis, got ", d);
  return theta * std::pow(ratio, static_cast<double>(d) / static_cast<double>(d - 2));
}

}  // namespace

at::Tensor YarnScaleFactors(const at::Tensor& inv_freq, double original_len, const YarnOptions& yarn) {
  TORCH_CHECK(original_len > 0, "YaRN: the original context length must be positive");
  TORCH_CHECK(yarn.scale() > 0, "YaRN: scale must be positive, got ", yarn.scale());
  const double high_freq_cutoff = 2 * M_PI * yarn.beta_fast() / original_len;
  const double low_freq_cutoff = 2 * M_PI * yarn.beta_slow() / original_len;
  const at::Tensor smooth_mask =
      at::clamp((inv_freq - low_freq_cutoff) / (high_freq_cutoff - low_freq_cutoff), 0, 1);
  return (1 - smooth_mask) / yarn.scale() + smooth_mask;
}

double YarnMscale(const YarnOptions& yarn) {
  const double m = yarn.scale() <= 1 ? 1.0 : 0.1 * std::log(yarn.scale()) + 1.0;
  return m * yarn.attn_factor();
}

at::Tensor RopeInvFreq(int64_t dim, double theta) {
  TORCH_CHECK(dim > 0 && dim % 2 == 0, "RoPE: rotated dim must be positive and even, got ", dim);
  return InvFreqFromRange(FreqRange(dim), theta);
}

at::Tensor Rope1DAngles(const Rope1DOptions& options, int64_t seq_len, RotaryStyle style) {
  at::Tensor inv_freq = RopeInvFreq(options.dim(), options.theta());  // [dim/2]
  if (options.yarn().has_value()) {
    TORCH_CHECK(options.original_max_len() > 0, "RoPE 1D: YaRN needs original_max_len");
    inv_freq = inv_freq * YarnScaleFactors(inv_freq, static_cast<double>(options.original_max_len()), *options.yarn());
  }
  const at::Tensor freqs = at::outer(at::arange(seq_len, at::kFloat), inv_freq);  // [S, dim/2]
  if (style == RotaryStyle::kHalf) return at::cat({freqs, freqs}, -1);           // [S, dim]
  return at::stack({freqs, freqs}, -1).reshape({seq_len, options.dim()});        // [S, dim] (f0 f0 f1 f1 ...)
}

Rope3DSplit SplitHeadDim3D(int64_t head_dim) {
  const int64_t dim_h = head_dim / 6 * 2;
  return Rope3DSplit{head_dim - 2 * dim_h, dim_h, dim_h};
}

at::Tensor Rope3DAngles(const Rope3DOptions& o) {
  const auto [T, H, W] = o.latent_shape();
  TORCH_CHECK(T > 0 && H > 0 && W > 0, "RoPE 3D: latent shape must be positive, got ", T, "x", H, "x", W);
  const Rope3DSplit split = SplitHeadDim3D(o.head_dim());
  TORCH_CHECK(split.h >= 2 && split.t >= 2 && split.t % 2 == 0, "RoPE 3D: head dim ", o.head_dim(),
              " too small or odd for the (t, h, w) split");
  const at::Tensor spatial_range = FreqRange(split.h);   // [dim_h/2]
  const at::Tensor temporal_range = FreqRange(split.t);  // [dim_t/2]
  at::Tensor f_h = InvFreqFromRange(spatial_range, NtkTheta(o.theta(), o.h_extrapolation_ratio(), split.h));
  at::Tensor f_w = InvFreqFromRange(spatial_range, NtkTheta(o.theta(), o.w_extrapolation_ratio(), split.w));
  at::Tensor f_t = InvFreqFromRange(temporal_range, NtkTheta(o.theta(), o.t_extrapolation_ratio(), split.t));
  if (o.yarn().has_value()) {
    const auto& orig = o.original_latent_shape();
    TORCH_CHECK(orig[0] > 0 && orig[1] > 0, "RoPE 3D: YaRN needs original_latent_shape");
    f_h = f_h * YarnScaleFactors(f_h, static_cast<double>(orig[1]), *o.yarn());
    f_w = f_w * YarnScaleFactors(f_w, static_cast<double>(orig[1]), *o.yarn());
    f_t = f_t * YarnScaleFactors(f_t, static_cast<double>(orig[0]), *o.yarn());
  }
  at::Tensor pos_t = at::arange(T, at::kFloat);
  if (o.fps().has_value()) pos_t = pos_t / *o.fps() * o.base_fps();
  const at::Tensor half_t = at::outer(pos_t, f_t);                          // [T, dt/2]
  const at::Tensor half_h = at::outer(at::arange(H, at::kFloat), f_h);      // [H, dh/2]
  const at::Tensor half_w = at::outer(at::arange(W, at::kFloat), f_w);      // [W, dw/2]
  const int64_t nt = half_t.size(1), nh = half_h.size(1), nw = half_w.size(1);
  const at::Tensor et = half_t.view({T, 1, 1, nt}).expand({T, H, W, nt});
  const at::Tensor eh = half_h.view({1, H, 1, nh}).expand({T, H, W, nh});
  const at::Tensor ew = half_w.view({1, 1, W, nw}).expand({T, H, W, nw});
  return at::cat({et, eh, ew, et, eh, ew}, -1).reshape({T * H * W, o.head_dim()});  // [T*H*W, D]
}

std::pair<at::Tensor, at::Tensor> RopeCosSin(const at::Tensor& angles, double mscale) {
  at::Tensor c = at::cos(angles), s = at::sin(angles);
  if (mscale != 1.0) {
    c = c * mscale;
    s = s * mscale;
  }
  return {c, s};
}

at::Tensor ApplyRotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, RotaryStyle style) {
  const int64_t d = x.size(-1), rot = cos.size(-1);
  TORCH_CHECK(rot % 2 == 0 && rot <= d && sin.size(-1) == rot, "ApplyRotary: table dim ", rot,
              " must be even and <= head dim ", d);
  const at::Tensor c = cos.scalar_type() == x.scalar_type() ? cos : cos.to(x.scalar_type());
  const at::Tensor s = sin.scalar_type() == x.scalar_type() ? sin : sin.to(x.scalar_type());
  const at::Tensor xr = rot == d ? x : x.narrow(-1, 0, rot);
  at::Tensor rotated;
  if (style == RotaryStyle::kHalf) {
    rotated = at::cat({-xr.narrow(-1, rot / 2, rot / 2), xr.narrow(-1, 0, rot / 2)}, -1);  // cat(-x2, x1)
  } else {
    const at::Tensor pairs = xr.unflatten(-1, {rot / 2, 2});
    rotated = at::stack({-pairs.select(-1, 1), pairs.select(-1, 0)}, -1).flatten(-2);  // (x0, x1) -> (-x1, x0)
  }
  at::Tensor out = xr * c + rotated * s;
  if (rot < d) out = at::cat({out, x.narrow(-1, rot, d - rot)}, -1);
  return out;
}

}  // namespace wfm::nn
