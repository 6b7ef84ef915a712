// The four Cosmos-Tokenize1 networks as one module (cosmos_predict1/tokenizer/networks/: 
// CausalContinuousVideoTokenizer, CausalDiscreteVideoTokenizer, ContinuousImageTokenizer,
// DiscreteImageTokenizer): encoder -> quant_conv -> (identity | Gaussian | FSQ), post_quant_conv -> decoder.
// Children and state-dict keys: "encoder.*", "decoder.*", "quant_conv.*", "post_quant_conv.*" and, for the
// discrete ones, "quantizer._levels", "quantizer._basis", "quantizer.implicit_codebook".
//
//   TokenizerNetwork net(config);                         // random init (torch defaults), train() mode
//   WFM_RETURN_IF_ERROR(LoadTokenizerWeights(*net, "CV8x8x8.weights.safetensors"));
//   net->eval();
//   auto enc = net->Encode(video);                        // video [B, 3, 1 + k*Tc, H, W] in [-1, 1]
//   at::Tensor rec = net->Decode(enc.latent);             // CV: latent; DV: normalised codes
//   at::Tensor rec2 = net->DecodeIndices(enc.indices);    // DV/DI
//
// Trainable: forward() runs encode + decode with autograd (straight-through FSQ, VAE sampling in train mode).
#pragma once

#include <memory>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include "wfm/tokenizer/causal_cache.h"
#include "wfm/tokenizer/config.h"
#include "wfm/tokenizer/fsq.h"
#include "wfm/tokenizer/layers3d.h"

namespace wfm::tokenizer {

class TokenizerNetworkImpl : public torch::nn::Module {
 public:
  // initialize = false: the convolution weights are left uninitialised (a checkpoint is loaded next).
  explicit TokenizerNetworkImpl(TokenizerConfig config, bool initialize = true);

  struct Encoded {
    // CV/CI: the latent [B, latent_channels, t, h, w] / [B, C, h, w] (VAE: a sample in train mode, the mean in
    // eval mode). DV/DI: the normalised FSQ codes [B, D, ...].
    at::Tensor latent;
    at::Tensor indices;         // DV/DI: int64 [B, t, h, w] / [B, h, w]; undefined for continuous
    at::Tensor mean, logvar;    // VAE only
  };
  // x: video [B, C, T, H, W] (CV/DV) or image [B, C, H, W] (CI/DI). `cache`: streaming state (video only).
  Encoded Encode(const at::Tensor& x, CausalCache* cache = nullptr);
  // The two halves of Encode: encoder + quant_conv (continuous "moments", pre-quantisation values), and the
  // distribution / quantiser applied to them. Tiled encoding blends moments before quantising.
  at::Tensor EncodeMoments(const at::Tensor& x, CausalCache* cache = nullptr);
  Encoded Quantize(const at::Tensor& moments);
  // latent (CV/CI) or codes (DV/DI) -> reconstruction.
  at::Tensor Decode(const at::Tensor& latent, CausalCache* cache = nullptr);
  // DV/DI: int64 indices -> reconstruction.
  at::Tensor DecodeIndices(const at::Tensor& indices, CausalCache* cache = nullptr);

  struct Output {
    at::Tensor reconstruction;
    Encoded encoded;
  };
  Output forward(const at::Tensor& x);

  const TokenizerConfig& config() const { return config_; }

  std::shared_ptr<EncoderInterface> encoder, decoder;
  // Video: CausalConv3d 1x1x1 ("quant_conv.conv3d.weight"); image: Conv2d 1x1 ("quant_conv.weight").
  CausalConv3d quant_conv3d{nullptr}, post_quant_conv3d{nullptr};
  torch::nn::Conv2d quant_conv2d{nullptr}, post_quant_conv2d{nullptr};
  FSQuantizer quantizer{nullptr};  // discrete only

 private:
  at::Tensor QuantConv(const at::Tensor& h);
  at::Tensor PostQuantConv(const at::Tensor& z);
  TokenizerConfig config_;
};
TORCH_MODULE(TokenizerNetwork);

}  // namespace wfm::tokenizer
