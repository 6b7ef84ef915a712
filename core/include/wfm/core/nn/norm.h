// RMSNorm shared by the world models and text encoders: y = x / sqrt(mean(x^2, -1) + eps) * weight, computed
// in float32 whatever the input dtype (bf16 activations keep full-precision statistics).
//
// Follows cosmos_predict1/autoregressive/modules/normalization.py RMSNorm (the Transformer Engine RMSNorm of the
// diffusion DiT and T5's T5LayerNorm compute the same thing in float32). State dict: `weight` [dim].
//
//   wfm::nn::RMSNorm norm(wfm::nn::RMSNormOptions(4096).eps(1e-5));
//   at::Tensor y = norm(x);  // [..., 4096]
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

namespace wfm::nn {

// Functional form; `weight` may be undefined (no affine scale). The normalised value is cast back to x's dtype
// before the weight is applied (the reference order).
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);

struct RMSNormOptions {
  /* implicit */ RMSNormOptions(int64_t dim) : dim_(dim) {}
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(double, eps) = 1e-6;
  // false: no `weight` parameter (pure normalisation).
  TORCH_ARG(bool, elementwise_affine) = true;
};

class RMSNormImpl : public torch::nn::Cloneable<RMSNormImpl> {
 public:
  explicit RMSNormImpl(const RMSNormOptions& options);
  void reset() override;
  void reset_parameters();
  at::Tensor forward(const at::Tensor& x);  // [..., dim] -> [..., dim]

  RMSNormOptions options;
  at::Tensor weight;  // [dim], ones at init
};
TORCH_MODULE(RMSNorm);

}  // namespace wfm::nn
