// RMSNorm (see wfm/core/nn/norm.h).
#include "wfm/core/nn/norm.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

namespace wfm::nn {

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  // reference: RMSNorm.compute_rmsnorm — _norm(x.float(), eps).type_as(x) * weight
  const at::Tensor xf = x.scalar_type() == at::kFloat ? x : x.to(at::kFloat);
  at::Tensor y = xf * at::rsqrt(xf.square().mean(-1, /*keepdim=*/true) + eps);
  if (y.scalar_type() != x.scalar_type()) y = y.to(x.scalar_type());
  return weight.defined() ? y * weight : y;
}

RMSNormImpl::RMSNormImpl(const RMSNormOptions& options_) : options(options_) { reset(); }

void RMSNormImpl::reset() {
  TORCH_CHECK(options.dim() > 0, "RMSNorm: dim must be positive, got ", options.dim());
  if (options.elementwise_affine()) {
    weight = register_parameter("weight", at::ones({options.dim()}));
  } else {
    weight = at::Tensor();
  }
}

void RMSNormImpl::reset_parameters() {
  if (weight.defined()) torch::nn::init::ones_(weight);
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.size(-1) == options.dim(), "RMSNorm: expected last dim ", options.dim(), ", got ", x.sizes());
  return RmsNorm(x, weight, options.eps());
}

}  // namespace wfm::nn
