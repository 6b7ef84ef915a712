// The preconditioned DiT denoiser with per-sample noise levels and Video2World condition frames (denoiser.h).
#include "wfm/diffusion/denoiser.h"

#include <ATen/ATen.h>

namespace wfm::diffusion {

at::Tensor PreconditionedDenoise(GeneralDiTImpl& net, const Parametrization& p, const DenoiserInputs& in) {
  const DiTConfig& cfg = net.config();
  const at::Tensor& x = in.x;
  const int64_t B = x.size(0), T = x.size(2), H = x.size(3), W = x.size(4);
  const at::Tensor sigma = in.sigma.to(x.options());
  const PreconditioningTensors c = p.At(sigma);  // each [B]
  auto bv = [&](const at::Tensor& t) { return BatchView(t, 5); };

  at::Tensor state = x;
  const bool condition = in.indicator.defined();
  if (condition) {
    // augment_conditional_latent_frames: (gt + noise * s_aug) * c_in(s_aug) / c_in(sigma)
    const at::Tensor s_aug = in.augment_sigma.to(x.options());
    const at::Tensor aug = (in.gt + in.augment_noise * bv(s_aug)) * bv(p.At(s_aug).c_in / c.c_in);
    state = in.indicator * aug + (1 - in.indicator) * x;
  }
  DiTInputs net_in;
  net_in.x = state * bv(c.c_in);
  net_in.timesteps = c.c_noise;
  net_in.crossattn_emb = in.crossattn_emb;
  net_in.fps = in.fps;
  if (cfg.video_conditioned()) {
    net_in.condition_video_input_mask = in.mask.defined() ? in.mask.to(x.options())
                                                          : at::zeros({B, 1, T, H, W}, x.options());
    if (cfg.add_augment_sigma_embedding) {
      // c_noise(s_aug) where frames are given, 0 otherwise (extend_model.py condition_on_augment_sigma).
      net_in.condition_video_augment_sigma =
          in.augment_sigma.defined()
              ? at::where(in.augment_sigma.to(x.options()) > 0, p.At(in.augment_sigma.to(x.options()).clamp_min(1e-12)).c_noise,
                          at::zeros({B}, x.options()))
              : at::zeros({B}, x.options());
    }
  }
  const at::Tensor f = net.Forward(net_in).to(x.scalar_type());
  at::Tensor x0 = bv(c.c_skip) * state + bv(c.c_out) * f;
  if (condition) x0 = in.indicator * in.gt + (1 - in.indicator) * x0;
  return x0;
}

}  // namespace wfm::diffusion
