// SwiGLU and GELU feed-forward blocks (see wfm/core/nn/mlp.h).
#include "wfm/core/nn/mlp.h"

#include <ATen/ATen.h>

namespace wfm::nn {

int64_t Llama3FfnHiddenDim(int64_t dim, int64_t multiple_of, double ffn_dim_multiplier) {
  int64_t hidden = 4 * dim;
  hidden = static_cast<int64_t>(2 * hidden / 3);
  hidden = static_cast<int64_t>(ffn_dim_multiplier * static_cast<double>(hidden));
  return multiple_of * ((hidden + multiple_of - 1) / multiple_of);
}

SwiGLUImpl::SwiGLUImpl(const SwiGLUOptions& options_) : options(options_) { reset(); }

void SwiGLUImpl::reset() {
  TORCH_CHECK(options.dim() > 0 && options.hidden_dim() > 0, "SwiGLU: dims must be positive");
  const auto lin = [&](int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(options.bias()));
  };
  w1 = register_module("w1", lin(options.dim(), options.hidden_dim()));
  w2 = register_module("w2", lin(options.hidden_dim(), options.dim()));
  w3 = register_module("w3", lin(options.dim(), options.hidden_dim()));
}

at::Tensor SwiGLUImpl::forward(const at::Tensor& x) {
  // reference: MLP.forward — w2(silu(w1(x)) * w3(x))
  return w2->forward(at::silu(w1->forward(x)) * w3->forward(x));  // [..., hidden] -> [..., dim]
}

GeluMlpImpl::GeluMlpImpl(const GeluMlpOptions& options_) : options(options_) { reset(); }

void GeluMlpImpl::reset() {
  TORCH_CHECK(options.dim() > 0 && options.hidden_dim() > 0, "GeluMlp: dims must be positive");
  TORCH_CHECK(options.approximate() == "none" || options.approximate() == "tanh",
              "GeluMlp: approximate must be \"none\" or \"tanh\", got ", options.approximate());
  layer1 = register_module(
      "layer1", torch::nn::Linear(torch::nn::LinearOptions(options.dim(), options.hidden_dim()).bias(options.bias())));
  layer2 = register_module(
      "layer2", torch::nn::Linear(torch::nn::LinearOptions(options.hidden_dim(), options.dim()).bias(options.bias())));
}

at::Tensor GeluMlpImpl::forward(const at::Tensor& x) {
  // reference: GPT2FeedForward.forward — layer2(gelu(layer1(x)))
  return layer2->forward(at::gelu(layer1->forward(x), options.approximate()));
}

}  // namespace wfm::nn
