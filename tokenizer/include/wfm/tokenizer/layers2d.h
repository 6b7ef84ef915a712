// The 2D (image) encoder/decoder of the Cosmos-Tokenize1 CI/DI tokenizers: the Stable-Diffusion style
// network of cosmos_predict1/tokenizer/modules/layers2d.py (ResnetBlock, AttnBlock, Downsample, Upsample,
// Encoder, Decoder) with GroupNorm(32, eps 1e-6) and a 2D wavelet patcher. Keys equal the reference keys
// ("encoder.down.0.block.1.conv1.weight", "decoder.up.2.upsample.conv.weight", ...).
//
// Tensor layout: [B, C, H, W].
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "wfm/tokenizer/config.h"
#include "wfm/tokenizer/layers3d.h"
#include "wfm/tokenizer/patching.h"

namespace wfm::tokenizer {

class ResnetBlockImpl : public torch::nn::Module {
 public:
  ResnetBlockImpl(int64_t in_channels, int64_t out_channels, double dropout);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::Conv2d nin_shortcut{nullptr};  // null when in == out

 private:
  double dropout_;
};
TORCH_MODULE(ResnetBlock);

// Single-head self-attention over the H*W positions.
class AttnBlockImpl : public torch::nn::Module {
 public:
  explicit AttnBlockImpl(int64_t channels);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d q{nullptr}, k{nullptr}, v{nullptr}, proj_out{nullptr};
};
TORCH_MODULE(AttnBlock);

// Zero-pad right/bottom by one, 3x3 conv with stride 2.
class DownsampleImpl : public torch::nn::Module {
 public:
  explicit DownsampleImpl(int64_t channels);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Downsample);

// Nearest 2x, 3x3 conv.
class UpsampleImpl : public torch::nn::Module {
 public:
  explicit UpsampleImpl(int64_t channels);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample);

class ImageLevelImpl : public torch::nn::Module {
 public:
  ImageLevelImpl() = default;
  std::vector<ResnetBlock> blocks;
  std::vector<AttnBlock> attns;
  Downsample downsample{nullptr};
  Upsample upsample{nullptr};
  torch::nn::ModuleList block_list{nullptr}, attn_list{nullptr};
};
TORCH_MODULE(ImageLevel);

// Encoder: patcher -> conv_in -> levels -> mid -> norm_out -> SiLU -> conv_out.
// [B, in_channels, H, W] -> [B, z_channels, H / Sc, W / Sc].
class Encoder2dImpl : public EncoderInterface {
 public:
  Encoder2dImpl(const TokenizerConfig& config, int64_t z_channels);
  at::Tensor forward(const at::Tensor& x, CausalCache* cache = nullptr) override;

  Patcher patcher{nullptr};
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  std::vector<ImageLevel> down;
  ResnetBlock mid_block_1{nullptr}, mid_block_2{nullptr};
  AttnBlock mid_attn_1{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
};

// Decoder: conv_in -> mid -> levels -> norm_out -> SiLU -> conv_out -> unpatcher.
class Decoder2dImpl : public EncoderInterface {
 public:
  Decoder2dImpl(const TokenizerConfig& config, int64_t z_channels);
  at::Tensor forward(const at::Tensor& z, CausalCache* cache = nullptr) override;

  UnPatcher unpatcher{nullptr};
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  std::vector<ImageLevel> up;  // up[i_level]
  ResnetBlock mid_block_1{nullptr}, mid_block_2{nullptr};
  AttnBlock mid_attn_1{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
};

}  // namespace wfm::tokenizer
