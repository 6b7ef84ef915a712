// The causal 3D building blocks and the factorized video encoder/decoder of the Cosmos-Tokenize1 CV/DV
// tokenizers (cosmos_predict1/tokenizer/modules/layers3d.py: CausalConv3d, CausalNormalize,
// CausalResnetBlockFactorized3d, CausalAttnBlock, CausalTemporalAttnBlock, CausalHybridDownsample3d,
// CausalHybridUpsample3d, EncoderFactorized, DecoderFactorized). Submodules are registered under the
// reference names, so state_dict() keys equal the checkpoint keys byte for byte
// (e.g. "encoder.down.0.block.1.conv1.0.conv3d.weight"); nn.Sequential children are named "0", "1".
//
// Every forward takes an optional CausalCache: without one it is the reference computation on a whole clip;
// with one it processes one chunk of a stream and carries the causal state (see causal_cache.h).
// All modules are trainable (plain ATen ops, autograd through everything; dropout follows train()/eval()).
//
// Tensor layout everywhere: [B, C, T, H, W].
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "wfm/tokenizer/causal_cache.h"
#include "wfm/tokenizer/config.h"
#include "wfm/tokenizer/patching.h"

namespace wfm::tokenizer {

// A 3D convolution that is causal in time: the input is padded on the left with
// time_pad = (kt - 1) + (1 - time_stride) copies of its first frame (zero-padded spatially by `padding`).
// Key: "conv3d.weight" [out, in, kt, kh, kw], "conv3d.bias".
class CausalConv3dImpl : public torch::nn::Module {
 public:
  CausalConv3dImpl(int64_t in_channels, int64_t out_channels, std::array<int64_t, 3> kernel, int64_t stride = 1,
                   int64_t time_stride = 1, int64_t padding = 1);
  // [B, Cin, T, H, W] -> [B, Cout, T', H', W']
  at::Tensor forward(const at::Tensor& x, CausalCache* cache = nullptr);

  torch::nn::Conv3d conv3d{nullptr};
  int64_t time_pad() const { return time_pad_; }

 private:
  at::Tensor Conv(const at::Tensor& x_time_padded) const;
  std::array<int64_t, 3> kernel_;
  int64_t stride_, time_stride_, padding_, time_pad_;
};
TORCH_MODULE(CausalConv3d);

// Two causal convolutions in sequence, registered as "0" and "1" (the reference nn.Sequential):
// (1, 3, 3) with spatial padding 1, then (3, 1, 1). Used for conv_in, conv_out and the residual convs.
class FactorizedConv3dImpl : public torch::nn::Module {
 public:
  FactorizedConv3dImpl(int64_t in_channels, int64_t mid_channels, int64_t out_channels);
  at::Tensor forward(const at::Tensor& x, CausalCache* cache = nullptr);

  CausalConv3d spatial{nullptr};   // "0"
  CausalConv3d temporal{nullptr};  // "1"
};
TORCH_MODULE(FactorizedConv3d);

// GroupNorm(num_groups, eps 1e-6) applied to each frame separately when num_groups == 1 (causal), over the
// whole clip otherwise (legacy). Key: "norm.weight", "norm.bias".
class CausalNormalizeImpl : public torch::nn::Module {
 public:
  explicit CausalNormalizeImpl(int64_t channels, int64_t num_groups = 1);
  at::Tensor forward(const at::Tensor& x);
  // norm(x) followed by SiLU (one pass on CPU in eval mode).
  at::Tensor NormSiLU(const at::Tensor& x);

  torch::nn::GroupNorm norm{nullptr};
  int64_t num_groups() const { return num_groups_; }

 private:
  int64_t num_groups_;
};
TORCH_MODULE(CausalNormalize);

// norm1 -> SiLU -> conv1 -> norm2 -> SiLU -> dropout -> conv2, plus the input (through a 1x1x1 nin_shortcut
// when the channel count changes).
class CausalResnetBlockFactorized3dImpl : public torch::nn::Module {
 public:
  CausalResnetBlockFactorized3dImpl(int64_t in_channels, int64_t out_channels, double dropout, int64_t num_groups);
  at::Tensor forward(const at::Tensor& x, CausalCache* cache = nullptr);

  CausalNormalize norm1{nullptr}, norm2{nullptr};
  FactorizedConv3d conv1{nullptr}, conv2{nullptr};
  CausalConv3d nin_shortcut{nullptr};  // null when in == out

 private:
  double dropout_;
};
TORCH_MODULE(CausalResnetBlockFactorized3d);

// Spatial self-attention inside each frame (single head, channel width C, scale C^-1/2).
class CausalAttnBlockImpl : public torch::nn::Module {
 public:
  CausalAttnBlockImpl(int64_t channels, int64_t num_groups);
  at::Tensor forward(const at::Tensor& x);

  CausalNormalize norm{nullptr};
  CausalConv3d q{nullptr}, k{nullptr}, v{nullptr}, proj_out{nullptr};
};
TORCH_MODULE(CausalAttnBlock);

// Causal self-attention along time for each pixel (lower-triangular mask). With a cache, the keys/values of
// earlier chunks are kept (limited to the cache's attention_window frames when that is > 0).
class CausalTemporalAttnBlockImpl : public torch::nn::Module {
 public:
  CausalTemporalAttnBlockImpl(int64_t channels, int64_t num_groups);
  at::Tensor forward(const at::Tensor& x, CausalCache* cache = nullptr);

  CausalNormalize norm{nullptr};
  CausalConv3d q{nullptr}, k{nullptr}, v{nullptr}, proj_out{nullptr};
};
TORCH_MODULE(CausalTemporalAttnBlock);

// nn.Sequential(CausalAttnBlock, CausalTemporalAttnBlock): children "0" and "1".
class CausalAttnPairImpl : public torch::nn::Module {
 public:
  CausalAttnPairImpl(int64_t channels, int64_t num_groups);
  at::Tensor forward(const at::Tensor& x, CausalCache* cache = nullptr);

  CausalAttnBlock spatial{nullptr};           // "0"
  CausalTemporalAttnBlock temporal{nullptr};  // "1"
};
TORCH_MODULE(CausalAttnPair);

// Spatial: zero-pad right/bottom by 1, conv1 (1,3,3) stride 2 + avg-pool 2x2; temporal: repeat the first
// frame once, conv2 (3,1,1) time-stride 2 + avg-pool over 2 frames; then conv3 (1x1x1).
// (T, H, W) -> (T/2 + 1 for odd T, H/2, W/2) for each enabled direction.
class CausalHybridDownsample3dImpl : public torch::nn::Module {
 public:
  CausalHybridDownsample3dImpl(int64_t channels, bool spatial_down, bool temporal_down);
  at::Tensor forward(const at::Tensor& x, CausalCache* cache = nullptr);

  CausalConv3d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  bool spatial_down() const { return spatial_down_; }
  bool temporal_down() const { return temporal_down_; }

 private:
  bool spatial_down_, temporal_down_;
};
TORCH_MODULE(CausalHybridDownsample3d);

// Temporal: repeat each frame twice and drop the first (T -> 2T - 1), x + conv1 (3,1,1); spatial: nearest 2x,
// x + conv2 (1,3,3); then conv3 (1x1x1).
class CausalHybridUpsample3dImpl : public torch::nn::Module {
 public:
  CausalHybridUpsample3dImpl(int64_t channels, bool spatial_up, bool temporal_up);
  at::Tensor forward(const at::Tensor& x, CausalCache* cache = nullptr);

  CausalConv3d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  bool spatial_up() const { return spatial_up_; }
  bool temporal_up() const { return temporal_up_; }
  // The spatial step: nearest 2x, x + conv2(x). Reference form (used with autograd) and the equivalent sub-pixel
  // form (inference).
  at::Tensor SpatialUpReference(const at::Tensor& x);
  at::Tensor SpatialUpSubPixel(const at::Tensor& x);

 private:
  bool spatial_up_, temporal_up_;
};
TORCH_MODULE(CausalHybridUpsample3d);

// One resolution level: "block" (ModuleList of residual blocks), "attn" (ModuleList of attention pairs, empty
// unless the level's resolution is in attn_resolutions), and optionally "downsample" / "upsample".
class VideoLevelImpl : public torch::nn::Module {
 public:
  VideoLevelImpl() = default;
  std::vector<CausalResnetBlockFactorized3d> blocks;
  std::vector<CausalAttnPair> attns;
  CausalHybridDownsample3d downsample{nullptr};
  CausalHybridUpsample3d upsample{nullptr};
  torch::nn::ModuleList block_list{nullptr}, attn_list{nullptr};
};
TORCH_MODULE(VideoLevel);

// The encoder/decoder interface shared by the video and image networks. `cache` is ignored by image networks.
class EncoderInterface : public torch::nn::Module {
 public:
  virtual at::Tensor forward(const at::Tensor& x, CausalCache* cache = nullptr) = 0;
};

// EncoderFactorized: patcher3d -> conv_in -> levels (res blocks, attention, hybrid downsampling) -> mid
// (block_1, attn_1, block_2) -> norm_out -> SiLU -> conv_out.
// [B, in_channels, 1 + k*Tc, H, W] -> [B, z_channels, 1 + k, H / Sc, W / Sc].
class EncoderFactorizedImpl : public EncoderInterface {
 public:
  EncoderFactorizedImpl(const TokenizerConfig& config, int64_t z_channels);
  at::Tensor forward(const at::Tensor& x, CausalCache* cache = nullptr) override;

  Patcher3D patcher3d{nullptr};
  FactorizedConv3d conv_in{nullptr}, conv_out{nullptr};
  std::vector<VideoLevel> down;
  CausalResnetBlockFactorized3d mid_block_1{nullptr}, mid_block_2{nullptr};
  CausalAttnPair mid_attn_1{nullptr};
  CausalNormalize norm_out{nullptr};
};

// DecoderFactorized: conv_in -> mid -> levels (res blocks, attention, hybrid upsampling) -> norm_out -> SiLU ->
// conv_out -> unpatcher3d. [B, z_channels, 1 + k, h, w] -> [B, out_channels, 1 + k*Tc, h*Sc, w*Sc].
class DecoderFactorizedImpl : public EncoderInterface {
 public:
  DecoderFactorizedImpl(const TokenizerConfig& config, int64_t z_channels);
  at::Tensor forward(const at::Tensor& z, CausalCache* cache = nullptr) override;

  UnPatcher3D unpatcher3d{nullptr};
  FactorizedConv3d conv_in{nullptr}, conv_out{nullptr};
  std::vector<VideoLevel> up;  // up[i_level], as in the reference (registered in that order)
  CausalResnetBlockFactorized3d mid_block_1{nullptr}, mid_block_2{nullptr};
  CausalAttnPair mid_attn_1{nullptr};
  CausalNormalize norm_out{nullptr};
};

// SiLU used by all tokenizer blocks (x * sigmoid(x)).
at::Tensor Nonlinearity(const at::Tensor& x);

// While alive (on this thread), tokenizer layers built are left uninitialised: their convolution weights are
// replaced right after construction by untouched (not yet resident) memory. Used when a checkpoint is loaded
// next, so that a full-size network does not first occupy (and spend time filling) 0.4 GB of random weights.
class SkipWeightInit {
 public:
  SkipWeightInit();
  ~SkipWeightInit();
  static bool active();

 private:
  bool previous_;
};
// Replaces `conv`'s weight/bias by uninitialised tensors when SkipWeightInit is active.
void MaybeSkipInit(torch::nn::Module& conv);

}  // namespace wfm::tokenizer
