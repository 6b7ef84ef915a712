// EDM and rectified-flow preconditioning, training noise levels and loss weights (see parametrization.h).
#include "wfm/diffusion/parametrization.h"

#include <cmath>

#include <ATen/ATen.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace wfm::diffusion {

at::Tensor Parametrization::NetworkOutputFor(const at::Tensor& x0, const at::Tensor& x, double sigma) const {
  const Preconditioning c = At(sigma);
  return (x0 - c.c_skip * x) / c.c_out;  // inverts x0 = c_skip x + c_out F
}

// cosmos_predict1/diffusion/modules/denoiser_scaling.py EDMScaling.__call__
Preconditioning EdmParametrization::At(double sigma) const {
  const double sd2 = sigma_data_ * sigma_data_, s2 = sigma * sigma;
  Preconditioning c;
  c.c_skip = sd2 / (s2 + sd2);
  c.c_out = sigma * sigma_data_ / std::sqrt(s2 + sd2);
  c.c_in = 1.0 / std::sqrt(s2 + sd2);
  c.c_noise = 0.25 * std::log(sigma);
  return c;
}

PreconditioningTensors EdmParametrization::At(const at::Tensor& sigma) const {
  const double sd2 = sigma_data_ * sigma_data_;
  const at::Tensor denom = sigma * sigma + sd2;
  PreconditioningTensors c;
  c.c_skip = sd2 / denom;
  c.c_out = sigma * sigma_data_ / denom.sqrt();
  c.c_in = denom.rsqrt();
  c.c_noise = 0.25 * sigma.log();
  return c;
}

// EDM's lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 (model_image.py get_per_sigma_loss_weights).
at::Tensor EdmParametrization::LossWeight(const at::Tensor& sigma) const {
  const double sd2 = sigma_data_ * sigma_data_;
  return (sigma * sigma + sd2) / (sigma * sigma * sd2);
}

// cosmos_predict2/module/denoiser_scaling.py RectifiedFlowScaling.__call__
Preconditioning RectifiedFlowParametrization::At(double sigma) const {
  const double t = sigma / (sigma + 1.0);
  Preconditioning c;
  c.c_skip = 1.0 - t;
  c.c_out = -t;
  c.c_in = 1.0 - t;
  c.c_noise = t * t_scaling_factor_;
  return c;
}

PreconditioningTensors RectifiedFlowParametrization::At(const at::Tensor& sigma) const {
  const at::Tensor t = sigma / (sigma + 1.0);
  PreconditioningTensors c;
  c.c_skip = 1.0 - t;
  c.c_out = -t;
  c.c_in = 1.0 - t;
  c.c_noise = t * t_scaling_factor_;
  return c;
}

// loss_weight_uniform: (1 + sigma)^2 / sigma^2, i.e. a uniform weight on the velocity error.
at::Tensor RectifiedFlowParametrization::LossWeight(const at::Tensor& sigma) const {
  return (1.0 + sigma).pow(2) / (sigma * sigma);
}

absl::StatusOr<std::unique_ptr<Parametrization>> MakeParametrization(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "edm") return std::unique_ptr<Parametrization>(new EdmParametrization(0.5));
  if (n == "rectified_flow" || n == "rf" || n == "rectified-flow")
    return std::unique_ptr<Parametrization>(new RectifiedFlowParametrization(1.0));
  return absl::InvalidArgumentError(
      absl::StrCat("unknown diffusion parametrisation '", name, "' (expected edm or rectified_flow)"));
}

at::Tensor LogNormalSigma::Sample(int64_t n, c10::optional<at::Generator> generator) const {
  at::Tensor z = at::empty({n}, at::TensorOptions().dtype(at::kFloat));
  z.normal_(p_mean, p_std, generator);
  return z.exp_().mul_(multiplier);
}

at::Tensor BatchView(const at::Tensor& per_sample, int64_t ndim) {
  std::vector<int64_t> shape(static_cast<size_t>(ndim), 1);
  shape[0] = per_sample.size(0);
  return per_sample.reshape(shape);
}

at::Tensor AddNoise(const at::Tensor& x0, const at::Tensor& sigma, const at::Tensor& eps) {
  return x0 + BatchView(sigma.to(x0.options()), x0.dim()) * eps;
}

}  // namespace wfm::diffusion
