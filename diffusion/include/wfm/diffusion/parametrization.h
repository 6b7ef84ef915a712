// Diffusion parametrisations: how a network F is wrapped into a denoiser D(x, sigma) ~ E[x0 | x] on the
// variance-exploding state x = x0 + sigma * eps, plus the training-time noise distribution and loss weights.
//
// Every parametrisation is written as the four EDM preconditioning coefficients (Karras et al. 2022, Table 1):
//   D(x, sigma) = c_skip(sigma) * x + c_out(sigma) * F(c_in(sigma) * x, c_noise(sigma))
// so that samplers only ever see D (sampler.h) and the network only ever sees (c_in * x, c_noise).
//
//   EDM (Cosmos-Predict1, cosmos_predict1/diffusion/modules/denoiser_scaling.py EDMScaling):
//     c_skip = sd^2 / (s^2 + sd^2), c_out = s * sd / sqrt(s^2 + sd^2), c_in = 1 / sqrt(s^2 + sd^2),
//     c_noise = 0.25 * ln(s); loss weight (s^2 + sd^2) / (s * sd)^2; sd = sigma_data = 0.5.
//   Rectified flow (Cosmos-Predict2, cosmos_predict2/module/denoiser_scaling.py RectifiedFlowScaling):
//     t = s / (s + 1); c_skip = 1 - t, c_out = -t, c_in = 1 - t, c_noise = t * t_scaling_factor
//     (the network predicts the velocity eps - x0 of x_t = (1 - t) x0 + t eps); loss weight (1 + s)^2 / s^2.
//
//   auto p = MakeParametrization("edm");                 // or "rectified_flow"
//   Preconditioning c = p->At(sigma);                    // doubles
//   at::Tensor x0 = c.c_skip * x + c.c_out * net(c.c_in * x, c.c_noise);
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace wfm::diffusion {

// The preconditioning coefficients at one noise level.
struct Preconditioning {
  double c_skip = 0, c_out = 0, c_in = 0, c_noise = 0;
};

// The same coefficients for a batch of noise levels; each tensor has sigma's shape and dtype.
struct PreconditioningTensors {
  at::Tensor c_skip, c_out, c_in, c_noise;
};

class Parametrization {
 public:
  virtual ~Parametrization() = default;
  // "edm" or "rectified_flow".
  virtual std::string name() const = 0;
  virtual double sigma_data() const = 0;
  // sigma > 0.
  virtual Preconditioning At(double sigma) const = 0;
  virtual PreconditioningTensors At(const at::Tensor& sigma) const = 0;
  // Per-sigma weight of the x0 mean-squared error, lambda(sigma).
  virtual at::Tensor LossWeight(const at::Tensor& sigma) const = 0;
  // The inverse of the output map: the network output F that makes D(x, sigma) equal `x0`. Used to splice given
  // content (e.g. Video2World condition frames) into a raw network output.
  at::Tensor NetworkOutputFor(const at::Tensor& x0, const at::Tensor& x, double sigma) const;
};

class EdmParametrization final : public Parametrization {
 public:
  explicit EdmParametrization(double sigma_data = 0.5) : sigma_data_(sigma_data) {}
  std::string name() const override { return "edm"; }
  double sigma_data() const override { return sigma_data_; }
  Preconditioning At(double sigma) const override;
  PreconditioningTensors At(const at::Tensor& sigma) const override;
  at::Tensor LossWeight(const at::Tensor& sigma) const override;

 private:
  double sigma_data_;
};

class RectifiedFlowParametrization final : public Parametrization {
 public:
  explicit RectifiedFlowParametrization(double t_scaling_factor = 1.0) : t_scaling_factor_(t_scaling_factor) {}
  std::string name() const override { return "rectified_flow"; }
  double sigma_data() const override { return 1.0; }
  double t_scaling_factor() const { return t_scaling_factor_; }
  Preconditioning At(double sigma) const override;
  PreconditioningTensors At(const at::Tensor& sigma) const override;
  at::Tensor LossWeight(const at::Tensor& sigma) const override;

 private:
  double t_scaling_factor_;
};

// "edm" (sigma_data 0.5) or "rectified_flow"/"rf"; InvalidArgument otherwise.
absl::StatusOr<std::unique_ptr<Parametrization>> MakeParametrization(absl::string_view name);

// Training noise levels: ln(sigma) ~ N(p_mean, p_std^2), times `multiplier` (Cosmos' adjust_video_noise uses
// sqrt(latent frames)). Reference: cosmos_predict1/diffusion/training/modules/edm_sde.py EDMSDE.sample_t
// (p_mean 0, p_std 1 in the Predict1 training config; Predict2 rectified flow also uses N(0, 1)).
struct LogNormalSigma {
  double p_mean = 0.0;
  double p_std = 1.0;
  double multiplier = 1.0;
  // float32 [n] on CPU, drawn from `generator` (the default CPU generator when undefined).
  at::Tensor Sample(int64_t n, c10::optional<at::Generator> generator = c10::nullopt) const;
};

// One denoising training example: the noisy input for a clean batch `x0` [B, ...] at per-sample noise levels
// `sigma` [B] with noise `eps` (x0's shape): x_t = x0 + sigma * eps.
at::Tensor AddNoise(const at::Tensor& x0, const at::Tensor& sigma, const at::Tensor& eps);

// Broadcasts a per-sample [B] tensor against a [B, ...] tensor of rank `ndim` (adds trailing singleton dims).
at::Tensor BatchView(const at::Tensor& per_sample, int64_t ndim);

}  // namespace wfm::diffusion
