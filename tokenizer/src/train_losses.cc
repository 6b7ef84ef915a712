// Tokenizer training losses and the 3D patch discriminator (see tokenizer/train.h).
#include <ATen/ATen.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/normalization.h>

#include "wfm/core/metrics.h"
#include "wfm/tokenizer/train.h"

namespace wfm::tokenizer {

LossTerms ReconstructionLoss(const at::Tensor& x, const at::Tensor& rec, const TokenizerLossWeights& w,
                             const at::Tensor& mean, const at::Tensor& logvar) {
  TORCH_CHECK(x.sizes() == rec.sizes(), "ReconstructionLoss: input and reconstruction shapes differ");
  LossTerms out;
  at::Tensor r = rec.to(x.scalar_type());
  at::Tensor l1 = (x - r).abs().mean();  // the reference "color" loss
  out.parts["l1"] = l1.detach();
  at::Tensor total = w.l1 * l1;
  // Frames as images: [B, 3, T, H, W] -> [B*T, 3, H, W].
  auto frames = [](const at::Tensor& v) {
    return v.dim() == 5 ? v.permute({0, 2, 1, 3, 4}).reshape({-1, v.size(1), v.size(3), v.size(4)}) : v;
  };
  if (w.ssim > 0 && x.size(-1) >= 11 && x.size(-2) >= 11) {
    at::Tensor ssim_loss = 1.0 - SsimPerImage(frames(x), frames(r), /*data_range=*/2.0).mean();
    out.parts["ssim_loss"] = ssim_loss.detach();
    total = total + w.ssim * ssim_loss;
  }
  if (w.temporal > 0 && x.dim() == 5 && x.size(2) > 1) {
    const int64_t t = x.size(2);
    at::Tensor dx = x.narrow(2, 1, t - 1) - x.narrow(2, 0, t - 1);
    at::Tensor dr = r.narrow(2, 1, t - 1) - r.narrow(2, 0, t - 1);
    at::Tensor temporal = (dx - dr).abs().mean();
    out.parts["temporal"] = temporal.detach();
    total = total + w.temporal * temporal;
  }
  if (w.kl > 0 && mean.defined() && logvar.defined()) {
    at::Tensor kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean();
    out.parts["kl"] = kl.detach();
    total = total + w.kl * kl;
  }
  out.total = total;
  return out;
}

PatchDiscriminator3dImpl::PatchDiscriminator3dImpl(int64_t channels, int64_t layers) {
  using torch::nn::Conv3d;
  using torch::nn::Conv3dOptions;
  convs_ = register_module("convs", torch::nn::ModuleList());
  norms_ = register_module("norms", torch::nn::ModuleList());
  convs_->push_back(Conv3d(Conv3dOptions(3, channels, {3, 4, 4}).stride({1, 2, 2}).padding({1, 1, 1})));
  int64_t c = channels;
  for (int64_t i = 1; i < layers; ++i) {
    const int64_t next = std::min<int64_t>(c * 2, channels * 8);
    convs_->push_back(Conv3d(Conv3dOptions(c, next, {3, 4, 4}).stride({2, 2, 2}).padding({1, 1, 1}).bias(false)));
    norms_->push_back(torch::nn::GroupNorm(torch::nn::GroupNormOptions(1, next)));
    c = next;
  }
  convs_->push_back(Conv3d(Conv3dOptions(c, 1, {3, 3, 3}).padding({1, 1, 1})));
}

at::Tensor PatchDiscriminator3dImpl::forward(const at::Tensor& x) {
  at::Tensor h = at::leaky_relu(convs_[0]->as<torch::nn::Conv3d>()->forward(x), 0.2);  // [B, c, T, H/2, W/2]
  for (size_t i = 1; i + 1 < convs_->size(); ++i) {
    h = convs_[i]->as<torch::nn::Conv3d>()->forward(h);
    h = at::leaky_relu(norms_[i - 1]->as<torch::nn::GroupNorm>()->forward(h), 0.2);
  }
  return convs_[convs_->size() - 1]->as<torch::nn::Conv3d>()->forward(h);  // [B, 1, t, h, w]
}

at::Tensor DiscriminatorHingeLoss(const at::Tensor& logits_real, const at::Tensor& logits_fake) {
  return at::relu(1.0 - logits_real).mean() + at::relu(1.0 + logits_fake).mean();
}

at::Tensor GeneratorHingeLoss(const at::Tensor& logits_fake) { return -logits_fake.mean(); }

}  // namespace wfm::tokenizer
