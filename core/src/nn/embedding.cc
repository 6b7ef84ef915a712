// Sinusoidal timestep and 3D sin-cos position embeddings (see wfm/core/nn/embedding.h).
#include "wfm/core/nn/embedding.h"

#include <cmath>

#include <ATen/ATen.h>

namespace wfm::nn {

at::Tensor SinusoidalTimestepEmbedding(const at::Tensor& timesteps, const TimestepsOptions& o) {
  // reference: cosmos_predict1/diffusion/module/blocks.py Timesteps.forward
  TORCH_CHECK(timesteps.dim() == 1, "Timesteps: expected [B] timesteps, got ", timesteps.sizes());
  TORCH_CHECK(o.num_channels() >= 2, "Timesteps: num_channels must be >= 2");
  const int64_t half = o.num_channels() / 2;
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(timesteps.device());
  at::Tensor exponent = -std::log(o.max_period()) * at::arange(half, f32);
  exponent = exponent / (static_cast<double>(half) - o.downscale_freq_shift());
  at::Tensor emb = timesteps.unsqueeze(1).to(at::kFloat) * at::exp(exponent).unsqueeze(0);  // [B, half]
  if (o.scale() != 1.0) emb = emb * o.scale();
  const at::Tensor s = at::sin(emb), c = at::cos(emb);
  emb = o.flip_sin_to_cos() ? at::cat({c, s}, -1) : at::cat({s, c}, -1);  // [B, 2*half]
  if (o.num_channels() % 2) emb = at::constant_pad_nd(emb, {0, 1});
  return timesteps.is_floating_point() ? emb.to(timesteps.scalar_type()) : emb;
}

at::Tensor SinCos1DPositionEmbedding(int64_t dim, const at::Tensor& positions) {
  // reference: get_1d_sincos_pos_embed_from_grid (numpy float64)
  TORCH_CHECK(dim > 0 && dim % 2 == 0, "sin-cos embedding: dim must be positive and even, got ", dim);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor omega = at::arange(dim / 2, f64) / (static_cast<double>(dim) / 2.0);
  omega = 1.0 / at::pow(10000.0, omega);                                            // [D/2]
  const at::Tensor out = at::outer(positions.reshape(-1).to(at::kDouble).cpu(), omega);  // [M, D/2]
  return at::cat({at::sin(out), at::cos(out)}, 1);                                  // [M, D]
}

at::Tensor SinCos3DPositionEmbedding(const SinCos3DOptions& o) {
  const auto [T, H, W] = o.latent_shape();
  TORCH_CHECK(T > 0 && H > 0 && W > 0, "sin-cos 3D: latent shape must be positive");
  const int64_t dim_h = o.dim() / 6 * 2, dim_w = dim_h, dim_t = o.dim() - 2 * dim_h;
  const auto positions = [](int64_t n, double ratio) {
    return at::arange(n, at::kDouble) / ratio;  // np.arange(n) * 1.0 / ratio
  };
  const at::Tensor eh = SinCos1DPositionEmbedding(dim_h, positions(H, o.h_extrapolation_ratio()));  // [H, dh]
  const at::Tensor ew = SinCos1DPositionEmbedding(dim_w, positions(W, o.w_extrapolation_ratio()));  // [W, dw]
  const at::Tensor et = SinCos1DPositionEmbedding(dim_t, positions(T, o.t_extrapolation_ratio()));  // [T, dt]
  return at::cat({et.view({T, 1, 1, dim_t}).expand({T, H, W, dim_t}),
                  eh.view({1, H, 1, dim_h}).expand({T, H, W, dim_h}),
                  ew.view({1, 1, W, dim_w}).expand({T, H, W, dim_w})},
                 -1)
      .reshape({T * H * W, o.dim()});  // [T*H*W, dim]
}

}  // namespace wfm::nn
