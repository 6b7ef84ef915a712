// Rotary position embeddings (RoPE) in 1D and 3D, shared by the autoregressive model and the diffusion DiT.
//
// Tables are built as angle tensors [S, D] (float32, the reference's arithmetic order so that values match it
// bit for bit), turned into cos/sin with RopeCosSin, and applied to q/k with ApplyRotary:
//   kHalf        — "rotate half" (Transformer Engine / GPT-NeoX): out = x * cos + cat(-x2, x1) * sin, where x1/x2
//                  are the two halves of the rotated dims. Used by the Cosmos AR model (pytorch_rope_version v2) and
//                  the diffusion DiT (TE apply_rotary_pos_emb).
//   kInterleaved — pairs (x0, x1) -> (-x1, x0) (Meta Llama / mistral; AR pytorch_rope_version v1).
//
// 3D layout (REFERENCE.md section 2; cosmos_predict1/autoregressive/modules/embedding.py RotaryPositionEmbedding
// rope_dim "3D" and cosmos_predict1/diffusion/module/position_embedding.py VideoRopePosition3DEmb): the head dim
// splits into height and width parts of dim_h = D // 6 * 2 each and time dim_t = D - 2 * dim_h. Each axis has
// inverse frequencies 1 / theta^(arange(0, d, 2) / d); the angles of token (t, h, w) (raster order t, h, w) are
// cat([t * f_t, h * f_h, w * f_w] * 2) -> [T*H*W, D].
//
//   auto angles = wfm::nn::Rope3DAngles(wfm::nn::Rope3DOptions(128, {5, 40, 64}).theta(5e5));  // [12800, 128]
//   auto [cos, sin] = wfm::nn::RopeCosSin(angles);
//   q = wfm::nn::ApplyRotary(q, cos.view({1, S, 1, D}), sin.view({1, S, 1, D}));  // q [B, S, H, D]
#pragma once

#include <cstdint>
#include <optional>
#include <utility>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include "wfm/core/nn/types.h"

namespace wfm::nn {

enum class RotaryStyle { kHalf, kInterleaved };

// YaRN frequency scaling (embedding.py get_scale_factors / get_mscale): frequencies below the beta_slow cutoff are
// divided by `scale`, those above beta_fast are kept, linear in between; attention magnitude factor
// mscale = (0.1 ln(scale) + 1) * attn_factor.
struct YarnOptions {
  TORCH_ARG(double, scale) = 1.0;
  TORCH_ARG(double, beta_fast) = 32.0;
  TORCH_ARG(double, beta_slow) = 1.0;
  TORCH_ARG(double, attn_factor) = 1.0;
};
// inv_freq [n] -> per-frequency factors [n] for a context of `original_len` positions.
at::Tensor YarnScaleFactors(const at::Tensor& inv_freq, double original_len, const YarnOptions& yarn);
double YarnMscale(const YarnOptions& yarn);

// 1 / theta^(arange(0, dim, 2)[:dim/2] / dim), float32 [dim/2].
at::Tensor RopeInvFreq(int64_t dim, double theta);

struct Rope1DOptions {
  /* implicit */ Rope1DOptions(int64_t dim) : dim_(dim) {}
  TORCH_ARG(int64_t, dim);  // rotated dims (usually the head dim)
  TORCH_ARG(double, theta) = 10000.0;
  TORCH_ARG(std::optional<YarnOptions>, yarn) = std::nullopt;
  TORCH_ARG(int64_t, original_max_len) = 0;  // YaRN cutoffs; required with yarn
};
// Angles [seq_len, dim] for positions 0..seq_len-1: cat(f, f) for kHalf, interleaved pairs for kInterleaved.
at::Tensor Rope1DAngles(const Rope1DOptions& options, int64_t seq_len, RotaryStyle style = RotaryStyle::kHalf);

struct Rope3DSplit {
  int64_t t, h, w;  // rotated dims per axis (t + h + w = head dim)
};
Rope3DSplit SplitHeadDim3D(int64_t head_dim);

struct Rope3DOptions {
  Rope3DOptions(int64_t head_dim, GridShape latent_shape)
      : head_dim_(head_dim), latent_shape_(latent_shape) {}
  TORCH_ARG(int64_t, head_dim);
  TORCH_ARG(GridShape, latent_shape);  // T, H, W
  TORCH_ARG(double, theta) = 10000.0;
  // NTK-aware extrapolation per axis (diffusion rope_{h,w,t}_extrapolation_ratio): theta_axis = theta *
  // ratio^(d / (d - 2)).
  TORCH_ARG(double, h_extrapolation_ratio) = 1.0;
  TORCH_ARG(double, w_extrapolation_ratio) = 1.0;
  TORCH_ARG(double, t_extrapolation_ratio) = 1.0;
  // Frame-rate scaling of the time positions (diffusion): t -> t / fps * base_fps when fps is set.
  TORCH_ARG(std::optional<double>, fps) = std::nullopt;
  TORCH_ARG(double, base_fps) = 24.0;
  // YaRN (AR 12B): spatial cutoffs from original_latent_shape[1], temporal from original_latent_shape[0].
  TORCH_ARG(std::optional<YarnOptions>, yarn) = std::nullopt;
  TORCH_ARG(GridShape, original_latent_shape) = {0, 0, 0};
};
// Angles [T*H*W, head_dim] in raster order (t, h, w), layout cat([t, h, w] * 2).
at::Tensor Rope3DAngles(const Rope3DOptions& options);

// cos(angles) * mscale, sin(angles) * mscale (float32, same shape).
std::pair<at::Tensor, at::Tensor> RopeCosSin(const at::Tensor& angles, double mscale = 1.0);

// Rotates the first cos.size(-1) dims of x (the rest pass through, as Transformer Engine does); cos/sin must
// broadcast against x[..., :rot]. Computed in x's dtype after casting cos/sin to it.
at::Tensor ApplyRotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                       RotaryStyle style = RotaryStyle::kHalf);

}  // namespace wfm::nn
