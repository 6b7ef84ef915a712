// TokenizerNetwork (see network.h): the encode/decode paths of the four reference networks.
#include "wfm/tokenizer/network.h"

#include <ATen/ATen.h>

#include <optional>

#include "wfm/tokenizer/layers2d.h"

namespace wfm::tokenizer {

TokenizerNetworkImpl::TokenizerNetworkImpl(TokenizerConfig config, bool initialize) : config_(std::move(config)) {
  const absl::Status valid = config_.Validate();
  TORCH_CHECK(valid.ok(), std::string(valid.message()));
  std::optional<SkipWeightInit> skip;
  if (!initialize) skip.emplace();
  const TokenizerConfig& c = config_;
  // DI is the one network without z_factor (discrete_image.py passes z_channels straight through).
  const int64_t enc_z = c.name == "DI" ? c.z_channels : c.z_factor * c.z_channels;
  const int64_t latent = c.is_discrete() ? c.embedding_dim : c.z_factor * c.latent_channels;
  const int64_t post_in = c.is_discrete() ? c.embedding_dim : c.latent_channels;
  if (c.is_video()) {
    encoder = register_module("encoder", std::make_shared<EncoderFactorizedImpl>(c, enc_z));
    decoder = register_module("decoder", std::make_shared<DecoderFactorizedImpl>(c, c.z_channels));
    quant_conv3d = register_module("quant_conv", CausalConv3d(enc_z, latent, std::array<int64_t, 3>{1, 1, 1}, 1, 1, 0));
    post_quant_conv3d =
        register_module("post_quant_conv", CausalConv3d(post_in, c.z_channels, std::array<int64_t, 3>{1, 1, 1}, 1, 1, 0));
  } else {
    encoder = register_module("encoder", std::make_shared<Encoder2dImpl>(c, enc_z));
    decoder = register_module("decoder", std::make_shared<Decoder2dImpl>(c, c.z_channels));
    quant_conv2d = register_module("quant_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(enc_z, latent, 1)));
    post_quant_conv2d =
        register_module("post_quant_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(post_in, c.z_channels, 1)));
    MaybeSkipInit(*quant_conv2d);
    MaybeSkipInit(*post_quant_conv2d);
  }
  if (c.is_discrete()) quantizer = register_module("quantizer", FSQuantizer(c.levels));
}

at::Tensor TokenizerNetworkImpl::QuantConv(const at::Tensor& h) {
  return config_.is_video() ? quant_conv3d(h) : quant_conv2d(h);
}

at::Tensor TokenizerNetworkImpl::PostQuantConv(const at::Tensor& z) {
  return config_.is_video() ? post_quant_conv3d(z) : post_quant_conv2d(z);
}

at::Tensor TokenizerNetworkImpl::EncodeMoments(const at::Tensor& x, CausalCache* cache) {
  TORCH_CHECK(x.dim() == (config_.is_video() ? 5 : 4), "tokenizer ", config_.name, " expects a ",
              config_.is_video() ? "[B, C, T, H, W]" : "[B, C, H, W]", " input, got ", x.sizes());
  return QuantConv(encoder->forward(x, cache));
}

TokenizerNetworkImpl::Encoded TokenizerNetworkImpl::Encode(const at::Tensor& x, CausalCache* cache) {
  return Quantize(EncodeMoments(x, cache));
}

TokenizerNetworkImpl::Encoded TokenizerNetworkImpl::Quantize(const at::Tensor& moments) {
  Encoded out;
  if (config_.is_discrete()) {
    FSQuantizerImpl::Output q = quantizer->forward(moments);
    out.latent = q.codes.to(moments.scalar_type());
    out.indices = q.indices;
  } else if (config_.formulation == "VAE") {
    // GaussianDistribution: mean/logvar halves, logvar clamped to [-30, 20]; sampled in train mode.
    auto halves = moments.chunk(2, 1);
    out.mean = halves[0];
    out.logvar = halves[1].clamp(-30.0, 20.0);
    out.latent = is_training() ? out.mean + (0.5 * out.logvar).exp() * at::randn_like(out.mean) : out.mean;
  } else {
    out.latent = moments;  // IdentityDistribution
  }
  return out;
}

at::Tensor TokenizerNetworkImpl::Decode(const at::Tensor& latent, CausalCache* cache) {
  TORCH_CHECK(latent.dim() == (config_.is_video() ? 5 : 4), "tokenizer ", config_.name, " decodes a ",
              config_.is_video() ? "[B, C, t, h, w]" : "[B, C, h, w]", " latent, got ", latent.sizes());
  return decoder->forward(PostQuantConv(latent), cache);
}

at::Tensor TokenizerNetworkImpl::DecodeIndices(const at::Tensor& indices, CausalCache* cache) {
  TORCH_CHECK(config_.is_discrete(), "DecodeIndices needs a discrete tokenizer (DV/DI), not ", config_.name);
  at::Tensor codes = quantizer->IndicesToCodes(indices);
  const auto& w = config_.is_video() ? post_quant_conv3d->conv3d->weight : post_quant_conv2d->weight;
  return Decode(codes.to(w.scalar_type()), cache);
}

TokenizerNetworkImpl::Output TokenizerNetworkImpl::forward(const at::Tensor& x) {
  Output out;
  out.encoded = Encode(x);
  out.reconstruction = Decode(out.encoded.latent);
  return out;
}

}  // namespace wfm::tokenizer
