// The preconditioned denoiser D(x, sigma) of a DiT, with per-sample noise levels and optional Video2World
// condition frames: the one place that turns (noisy state, noise level, conditioning) into the network's inputs
// and its output into an x0 prediction. Sampling (world_model.h) and training (training.h) both call it.
//
// GeneralDIT (Predict1; cosmos_predict1/diffusion/training/models/model_image.py DiffusionModel.denoise and
// extend_model.py ExtendDiffusionModel.denoise / augment_conditional_latent_frames) — noise augmentation:
//   state  = indicator * (gt + aug_noise * s_aug) * c_in(s_aug) / c_in(sigma) + (1 - indicator) * x
//   F      = net(c_in(sigma) * state, c_noise(sigma), text, mask channel, c_noise(s_aug))
//   x0     = c_skip(sigma) * state + c_out(sigma) * F
//   x0     = indicator * gt + (1 - indicator) * x0        (condition region replaced by the given latents)
// MiniTrainDIT (Predict2; cosmos_predict2/pipelines/video2world.py denoise, FRAME_REPLACE) — frame replacement:
//   net input = indicator * gt / sigma_data + (1 - indicator) * c_in(sigma) * x, per-frame noise input
//   c_noise = c_noise(sigma_conditional) on condition frames, c_noise(sigma) elsewhere; x0 replaced likewise.
#pragma once

#include <optional>

#include <ATen/core/Tensor.h>

#include "wfm/diffusion/dit.h"
#include "wfm/diffusion/parametrization.h"

namespace wfm::diffusion {

struct DenoiserInputs {
  at::Tensor x;              // [B, C, T, H, W] noisy state x0 + sigma * eps
  at::Tensor sigma;          // [B] noise levels (float)
  at::Tensor crossattn_emb;  // [B, N, D]
  // Video2World (all optional):
  at::Tensor indicator;      // [B, 1, T, 1, 1]: 1 where the input/x0 are replaced by `gt`; undefined = nowhere
  at::Tensor mask;           // [B, 1, T, H, W] condition-mask input channel; undefined = zeros (V2W networks)
  at::Tensor gt;             // [B, C, T, H, W] the given latents (where indicator is 1)
  at::Tensor augment_sigma;  // [B] condition augmentation noise level s_aug (> 0 where frames are given)
  at::Tensor augment_noise;  // like x: the augmentation noise (GeneralDIT)
  double sigma_conditional = 1e-4;  // noise level the condition frames report (MiniTrainDIT frame replacement)
  std::optional<double> fps = 24.0;
  CrossAttentionCache* crossattn_cache = nullptr;  // reuse the text's cross-attention K/V (sampling; dit.h)
};

// The x0 prediction [B, C, T, H, W] in x's dtype. Differentiable (training calls it with autograd on).
at::Tensor PreconditionedDenoise(DiffusionNetwork& net, const Parametrization& parametrization,
                                 const DenoiserInputs& inputs);

}  // namespace wfm::diffusion
