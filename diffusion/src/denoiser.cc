// The preconditioned DiT denoiser with per-sample noise levels and Video2World condition frames (denoiser.h).
#include "wfm/diffusion/denoiser.h"

#include <ATen/ATen.h>

namespace wfm::diffusion {

at::Tensor PreconditionedDenoise(DiffusionNetwork& net, const Parametrization& p, const DenoiserInputs& in) {
  const DiTConfig& cfg = net.config();
  const at::Tensor& x = in.x;
  const int64_t B = x.size(0), T = x.size(2), H = x.size(3), W = x.size(4);
  const at::Tensor sigma = in.sigma.to(x.options());
  const PreconditioningTensors c = p.At(sigma);  // each [B]
  auto bv = [&](const at::Tensor& t) { return BatchView(t, 5); };
  const bool condition = in.indicator.defined();

  DiTInputs net_in;
  net_in.crossattn_emb = in.crossattn_emb;
  net_in.fps = in.fps;
  net_in.crossattn_cache = in.crossattn_cache;
  at::Tensor state = x;  // the state the output map combines with (c_skip * state)
  if (condition && cfg.is_general()) {
    // augment_conditional_latent_frames: (gt + noise * s_aug) * c_in(s_aug) / c_in(sigma)
    const at::Tensor s_aug = in.augment_sigma.to(x.options());
    const at::Tensor aug = (in.gt + in.augment_noise * bv(s_aug)) * bv(p.At(s_aug).c_in / c.c_in);
    state = in.indicator * aug + (1 - in.indicator) * x;
  }
  net_in.x = state * bv(c.c_in);
  net_in.timesteps = c.c_noise;
  if (condition && !cfg.is_general()) {
    // FRAME_REPLACE: clean condition frames (scaled by 1 / sigma_data) with their own noise level per frame.
    net_in.x = in.indicator * (in.gt / p.sigma_data()) + (1 - in.indicator) * net_in.x;
    const at::Tensor ind_t = in.indicator.view({B, T});
    const double c_cond = p.At(in.sigma_conditional).c_noise;
    net_in.timesteps = ind_t * c_cond + (1 - ind_t) * c.c_noise.view({B, 1});
  }
  if (cfg.video_conditioned()) {
    net_in.condition_video_input_mask = in.mask.defined() ? in.mask.to(x.options())
                                                          : at::zeros({B, 1, T, H, W}, x.options());
    if (cfg.add_augment_sigma_embedding) {
      // c_noise(s_aug) where frames are given, 0 otherwise (extend_model.py condition_on_augment_sigma).
      const at::Tensor s_aug = in.augment_sigma.defined() ? in.augment_sigma.to(x.options()) : at::zeros({B}, x.options());
      net_in.condition_video_augment_sigma =
          at::where(s_aug > 0, p.At(s_aug.clamp_min(1e-12)).c_noise, at::zeros_like(s_aug));
    }
  }
  const at::Tensor f = net.Forward(net_in).to(x.scalar_type());
  at::Tensor x0 = bv(c.c_skip) * state + bv(c.c_out) * f;
  if (condition) x0 = in.indicator * in.gt + (1 - in.indicator) * x0;
  return x0;
}

}  // namespace wfm::diffusion
