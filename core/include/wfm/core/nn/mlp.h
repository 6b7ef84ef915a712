// Feed-forward blocks shared by the world models.
//
// SwiGLU (Llama; cosmos_predict1/autoregressive/modules/mlp.py MLP): w2(silu(w1(x)) * w3(x)), no biases.
//   State dict: w1.weight [hidden, dim], w2.weight [dim, hidden], w3.weight [hidden, dim].
// GeluMlp (GPT-2 style; cosmos_predict1/diffusion/module/attention.py GPT2FeedForward): layer2(gelu(layer1(x))).
//   State dict: layer1.weight [hidden, dim], layer2.weight [dim, hidden] (+ .bias with bias(true)).
//
//   wfm::nn::SwiGLU ffn(wfm::nn::SwiGLUOptions(4096, 14336));
//   at::Tensor y = ffn(x);  // [..., 4096]
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace wfm::nn {

// Llama-3 hidden size: int(ffn_dim_multiplier * int(2 * 4 * dim / 3)) rounded up to a multiple of `multiple_of`
// (compute_llama3_ffn_hidden_dim in the reference).
int64_t Llama3FfnHiddenDim(int64_t dim, int64_t multiple_of, double ffn_dim_multiplier);

struct SwiGLUOptions {
  SwiGLUOptions(int64_t dim, int64_t hidden_dim) : dim_(dim), hidden_dim_(hidden_dim) {}
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(int64_t, hidden_dim);
  TORCH_ARG(bool, bias) = false;
};

class SwiGLUImpl : public torch::nn::Cloneable<SwiGLUImpl> {
 public:
  explicit SwiGLUImpl(const SwiGLUOptions& options);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);  // [..., dim] -> [..., dim]

  SwiGLUOptions options;
  torch::nn::Linear w1{nullptr};  // gate   dim -> hidden
  torch::nn::Linear w2{nullptr};  // down   hidden -> dim
  torch::nn::Linear w3{nullptr};  // up     dim -> hidden
};
TORCH_MODULE(SwiGLU);

struct GeluMlpOptions {
  GeluMlpOptions(int64_t dim, int64_t hidden_dim) : dim_(dim), hidden_dim_(hidden_dim) {}
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(int64_t, hidden_dim);
  TORCH_ARG(bool, bias) = false;
  // "none" (exact erf GELU, torch.nn.GELU() default) or "tanh".
  TORCH_ARG(std::string, approximate) = "none";
};

class GeluMlpImpl : public torch::nn::Cloneable<GeluMlpImpl> {
 public:
  explicit GeluMlpImpl(const GeluMlpOptions& options);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);  // [..., dim] -> [..., dim]

  GeluMlpOptions options;
  torch::nn::Linear layer1{nullptr};  // dim -> hidden
  torch::nn::Linear layer2{nullptr};  // hidden -> dim
};
TORCH_MODULE(GeluMlp);

}  // namespace wfm::nn
