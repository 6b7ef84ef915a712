// Fixed (non-learned) embeddings shared by the world models: sinusoidal timestep embeddings (diffusion noise
// level) and sin-cos absolute position embeddings over a 3D latent grid (AR Video2World, diffusion).
//
// Timesteps follows cosmos_predict1/diffusion/module/blocks.py Timesteps: freqs = exp(-ln(max_period) *
// arange(half) / (half - downscale_freq_shift)), emb = t * freqs, output cat(cos, sin) (flip_sin_to_cos; the
// diffusers default order is sin, cos). Cosmos: flip_sin_to_cos true, downscale_freq_shift 0, max_period 1e4.
//
// The 3D sin-cos embedding follows embedding.py SinCosPosEmbAxisTE / position_embedding.py
// MultiviewSinCosPosEmbAxis: the channel dim splits like the 3D RoPE (h and w get dim // 6 * 2 each, t the rest);
// each axis uses the MAE 1D embedding cat(sin(p * omega), cos(p * omega)), omega = 1 / 10000^(arange(d/2) / (d/2)),
// computed in float64; the token (t, h, w) gets cat(e_t[t], e_h[h], e_w[w]).
//
//   at::Tensor e = wfm::nn::SinusoidalTimestepEmbedding(sigma_noise, wfm::nn::TimestepsOptions(256));  // [B, 256]
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include "wfm/core/nn/types.h"

namespace wfm::nn {

struct TimestepsOptions {
  /* implicit */ TimestepsOptions(int64_t num_channels) : num_channels_(num_channels) {}
  TORCH_ARG(int64_t, num_channels);
  TORCH_ARG(bool, flip_sin_to_cos) = true;  // true: [cos, sin] (Cosmos); false: [sin, cos]
  TORCH_ARG(double, downscale_freq_shift) = 0.0;
  TORCH_ARG(double, max_period) = 10000.0;
  TORCH_ARG(double, scale) = 1.0;  // multiplies the angles
};

// timesteps [B] (any real dtype) -> [B, num_channels] in the timesteps' dtype (computed in float32). An odd
// num_channels gets a zero pad column at the end.
at::Tensor SinusoidalTimestepEmbedding(const at::Tensor& timesteps, const TimestepsOptions& options);

// Parameter-free module wrapper, so models can register it where the reference has a `Timesteps` submodule
// (e.g. the DiT's t_embedder.0).
class TimestepsImpl : public torch::nn::Cloneable<TimestepsImpl> {
 public:
  explicit TimestepsImpl(const TimestepsOptions& options) : options(options) {}
  void reset() override {}
  at::Tensor forward(const at::Tensor& timesteps) { return SinusoidalTimestepEmbedding(timesteps, options); }
  TimestepsOptions options;
};
TORCH_MODULE(Timesteps);

// MAE 1D sin-cos embedding of `positions` [M] (float64 math): [M, dim] = cat(sin(p*omega), cos(p*omega)), float64.
at::Tensor SinCos1DPositionEmbedding(int64_t dim, const at::Tensor& positions);

struct SinCos3DOptions {
  SinCos3DOptions(int64_t dim, GridShape latent_shape) : dim_(dim), latent_shape_(latent_shape) {}
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(GridShape, latent_shape);  // T, H, W
  // Positions are divided by these (diffusion's extrapolation ratios); 1 = plain integer positions.
  TORCH_ARG(double, t_extrapolation_ratio) = 1.0;
  TORCH_ARG(double, h_extrapolation_ratio) = 1.0;
  TORCH_ARG(double, w_extrapolation_ratio) = 1.0;
};
// [T*H*W, dim] float64 in raster order (t, h, w); cast to the model dtype as the reference does (AR: bfloat16).
at::Tensor SinCos3DPositionEmbedding(const SinCos3DOptions& options);

}  // namespace wfm::nn
