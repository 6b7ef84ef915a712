// 2D image encoder/decoder (see layers2d.h); a port of cosmos_predict1/tokenizer/modules/layers2d.py.
#include "wfm/tokenizer/layers2d.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>

namespace wfm::tokenizer {
namespace {

torch::nn::GroupNorm Normalize(int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(32, channels).eps(1e-6));
}
torch::nn::Conv2d Conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding) {
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding));
  MaybeSkipInit(*conv);
  return conv;
}
at::Tensor NormSiLU(const torch::nn::GroupNorm& norm, const at::Tensor& x) {
  at::Tensor y = at::group_norm(x, 32, norm->weight, norm->bias, 1e-6);
  return c10::GradMode::is_enabled() ? at::silu(y) : at::silu_(y);
}
int64_t Log2(int64_t v) {
  int64_t r = 0;
  while (v > 1) v >>= 1, ++r;
  return r;
}
bool Contains(const std::vector<int64_t>& v, int64_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

ImageLevel MakeLevel() {
  ImageLevel level;
  level->block_list = level->register_module("block", torch::nn::ModuleList());
  level->attn_list = level->register_module("attn", torch::nn::ModuleList());
  return level;
}

at::Tensor RunLevelBlocks(ImageLevelImpl& level, at::Tensor h) {
  for (size_t i = 0; i < level.blocks.size(); ++i) {
    h = level.blocks[i](h);
    if (!level.attns.empty()) h = level.attns[i](h);
  }
  return h;
}
}  // namespace

ResnetBlockImpl::ResnetBlockImpl(int64_t in_channels, int64_t out_channels, double dropout) : dropout_(dropout) {
  norm1 = register_module("norm1", Normalize(in_channels));
  conv1 = register_module("conv1", Conv(in_channels, out_channels, 3, 1, 1));
  norm2 = register_module("norm2", Normalize(out_channels));
  conv2 = register_module("conv2", Conv(out_channels, out_channels, 3, 1, 1));
  if (in_channels != out_channels) nin_shortcut = register_module("nin_shortcut", Conv(in_channels, out_channels, 1, 1, 0));
}

at::Tensor ResnetBlockImpl::forward(const at::Tensor& x) {
  at::Tensor h = conv1(NormSiLU(norm1, x));
  h = NormSiLU(norm2, h);
  if (dropout_ > 0 && is_training()) h = at::dropout(h, dropout_, true);
  h = conv2(h);
  return (nin_shortcut ? nin_shortcut(x) : x) + h;
}

AttnBlockImpl::AttnBlockImpl(int64_t channels) {
  norm = register_module("norm", Normalize(channels));
  q = register_module("q", Conv(channels, channels, 1, 1, 0));
  k = register_module("k", Conv(channels, channels, 1, 1, 0));
  v = register_module("v", Conv(channels, channels, 1, 1, 0));
  proj_out = register_module("proj_out", Conv(channels, channels, 1, 1, 0));
}

at::Tensor AttnBlockImpl::forward(const at::Tensor& x) {
  at::Tensor h = norm(x);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), N = H * W;
  at::Tensor qf = q(h).reshape({B, C, N}).transpose(1, 2);  // [B, N, C]
  at::Tensor kf = k(h).reshape({B, C, N});                   // [B, C, N]
  at::Tensor vf = v(h).reshape({B, C, N});                   // [B, C, N]
  const double scale = std::pow(static_cast<double>(C), -0.5);
  const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(N, (int64_t{1} << 24) / std::max<int64_t>(1, B * N)));
  std::vector<at::Tensor> parts;
  for (int64_t r = 0; r < N; r += rows) {
    const int64_t n = std::min(rows, N - r);
    at::Tensor w = at::softmax(at::bmm(qf.narrow(1, r, n), kf).mul_(scale), 2);  // [B, n, N]
    parts.push_back(at::bmm(vf, w.transpose(1, 2)));                              // [B, C, n]
  }
  at::Tensor out = parts.size() == 1 ? parts[0] : at::cat(parts, 2);
  return x + proj_out(out.view({B, C, H, W}));
}

DownsampleImpl::DownsampleImpl(int64_t channels) { conv = register_module("conv", Conv(channels, channels, 3, 2, 0)); }

at::Tensor DownsampleImpl::forward(const at::Tensor& x) { return conv(at::constant_pad_nd(x, {0, 1, 0, 1}, 0.0)); }

UpsampleImpl::UpsampleImpl(int64_t channels) { conv = register_module("conv", Conv(channels, channels, 3, 1, 1)); }

at::Tensor UpsampleImpl::forward(const at::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  return conv(x.view({B, C, H, 1, W, 1}).expand({B, C, H, 2, W, 2}).reshape({B, C, 2 * H, 2 * W}));
}

Encoder2dImpl::Encoder2dImpl(const TokenizerConfig& c, int64_t z_channels) {
  const int64_t num_res = static_cast<int64_t>(c.channels_mult.size());
  const int64_t p = c.patch_size;
  patcher = register_module("patcher", Patcher(p, c.patch_method));
  const int64_t in_ch = c.in_channels * p * p;
  const int64_t num_downsamples = Log2(c.spatial_compression) - Log2(p);
  TORCH_CHECK(num_downsamples <= num_res, "too many downsamplings");
  conv_in = register_module("conv_in", Conv(in_ch, c.channels, 3, 1, 1));
  int64_t curr_res = c.resolution / p;
  std::vector<int64_t> in_ch_mult = {1};
  in_ch_mult.insert(in_ch_mult.end(), c.channels_mult.begin(), c.channels_mult.end());
  auto down_list = register_module("down", torch::nn::ModuleList());
  int64_t block_in = c.channels;
  for (int64_t i = 0; i < num_res; ++i) {
    ImageLevel level = MakeLevel();
    block_in = c.channels * in_ch_mult[i];
    const int64_t block_out = c.channels * c.channels_mult[i];
    for (int64_t b = 0; b < c.num_res_blocks; ++b) {
      level->blocks.push_back(ResnetBlock(block_in, block_out, c.dropout));
      level->block_list->push_back(level->blocks.back());
      block_in = block_out;
      if (Contains(c.attn_resolutions, curr_res)) {
        level->attns.push_back(AttnBlock(block_in));
        level->attn_list->push_back(level->attns.back());
      }
    }
    if (i < num_downsamples) {
      level->downsample = level->register_module("downsample", Downsample(block_in));
      curr_res /= 2;
    }
    down.push_back(level);
    down_list->push_back(level);
  }
  auto mid = register_module("mid", std::make_shared<torch::nn::Module>());
  mid_block_1 = mid->register_module("block_1", ResnetBlock(block_in, block_in, c.dropout));
  mid_attn_1 = mid->register_module("attn_1", AttnBlock(block_in));
  mid_block_2 = mid->register_module("block_2", ResnetBlock(block_in, block_in, c.dropout));
  norm_out = register_module("norm_out", Normalize(block_in));
  conv_out = register_module("conv_out", Conv(block_in, z_channels, 3, 1, 1));
}

at::Tensor Encoder2dImpl::forward(const at::Tensor& x, CausalCache* /*cache*/) {
  at::Tensor h = conv_in(patcher(x));
  for (auto& level : down) {
    h = RunLevelBlocks(*level, h);
    if (level->downsample) h = level->downsample(h);
  }
  h = mid_block_2(mid_attn_1(mid_block_1(h)));
  return conv_out(NormSiLU(norm_out, h));
}

Decoder2dImpl::Decoder2dImpl(const TokenizerConfig& c, int64_t z_channels) {
  const int64_t num_res = static_cast<int64_t>(c.channels_mult.size());
  const int64_t p = c.patch_size;
  unpatcher = register_module("unpatcher", UnPatcher(p, c.patch_method));
  const int64_t out_ch = c.out_channels * p * p;
  const int64_t num_upsamples = Log2(c.spatial_compression) - Log2(p);
  TORCH_CHECK(num_upsamples <= num_res, "too many upsamplings");
  int64_t block_in = c.channels * c.channels_mult[num_res - 1];
  int64_t curr_res = (c.resolution / p) >> (num_res - 1);
  conv_in = register_module("conv_in", Conv(z_channels, block_in, 3, 1, 1));
  auto mid = register_module("mid", std::make_shared<torch::nn::Module>());
  mid_block_1 = mid->register_module("block_1", ResnetBlock(block_in, block_in, c.dropout));
  mid_attn_1 = mid->register_module("attn_1", AttnBlock(block_in));
  mid_block_2 = mid->register_module("block_2", ResnetBlock(block_in, block_in, c.dropout));
  up.resize(num_res);
  for (int64_t i = num_res - 1; i >= 0; --i) {
    ImageLevel level = MakeLevel();
    const int64_t block_out = c.channels * c.channels_mult[i];
    for (int64_t b = 0; b < c.num_res_blocks + 1; ++b) {
      level->blocks.push_back(ResnetBlock(block_in, block_out, c.dropout));
      level->block_list->push_back(level->blocks.back());
      block_in = block_out;
      if (Contains(c.attn_resolutions, curr_res)) {
        level->attns.push_back(AttnBlock(block_in));
        level->attn_list->push_back(level->attns.back());
      }
    }
    if (i >= num_res - num_upsamples) {
      level->upsample = level->register_module("upsample", Upsample(block_in));
      curr_res *= 2;
    }
    up[i] = level;
  }
  auto up_list = register_module("up", torch::nn::ModuleList());
  for (auto& level : up) up_list->push_back(level);
  norm_out = register_module("norm_out", Normalize(block_in));
  conv_out = register_module("conv_out", Conv(block_in, out_ch, 3, 1, 1));
}

at::Tensor Decoder2dImpl::forward(const at::Tensor& z, CausalCache* /*cache*/) {
  at::Tensor h = conv_in(z);
  h = mid_block_2(mid_attn_1(mid_block_1(h)));
  for (int64_t i = static_cast<int64_t>(up.size()) - 1; i >= 0; --i) {
    h = RunLevelBlocks(*up[i], h);
    if (up[i]->upsample) h = up[i]->upsample(h);
  }
  return unpatcher(conv_out(NormSiLU(norm_out, h)));
}

}  // namespace wfm::tokenizer
