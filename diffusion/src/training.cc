// Diffusion training loss, evaluation loss, synthetic latent process and pre-tokenized clip folders
// (training.h).
#include "wfm/diffusion/training.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/status.h"
#include "wfm/diffusion/denoiser.h"

namespace wfm::diffusion {
namespace {

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

at::Tensor RandCpu(at::IntArrayRef shape, at::Generator& g) {
  return at::rand(shape, g, at::TensorOptions().dtype(at::kFloat));
}
at::Tensor RandnCpu(at::IntArrayRef shape, at::Generator& g) {
  return at::randn(shape, g, at::TensorOptions().dtype(at::kFloat));
}

}  // namespace

namespace {

// The random draws of one training batch (CPU): noise levels, noise, text keep mask, condition frames,
// augmentation levels and noise.
struct LossDraws {
  at::Tensor sigma, eps, keep, use, k, aug_sigma, aug_noise;
};

LossDraws Draw(const DiffusionTrainingOptions& o, at::IntArrayRef shape, int64_t lo, int64_t hi, bool video,
               at::Generator& gen) {
  const int64_t B = shape[0];
  LossDraws d;
  d.sigma = o.sigma.Sample(B, gen);  // [B]
  d.eps = RandnCpu(shape, gen);
  d.keep = RandCpu({B}, gen) >= o.text_dropout;
  if (video) {
    d.use = RandCpu({B}, gen) >= o.condition_dropout;
    d.k = at::randint(lo, hi + 1, {B}, gen, at::TensorOptions().dtype(at::kLong));
    d.aug_sigma = o.augment_sigma.Sample(B, gen);
    d.aug_noise = RandnCpu(shape, gen);
  }
  return d;
}

}  // namespace

LossOutput DiffusionTrainingLoss(DiffusionNetwork& net, const Parametrization& p, const TrainingBatch& batch,
                                 const DiffusionTrainingOptions& o, at::Generator& gen) {
  const at::Tensor x0 = batch.x0.to(at::kFloat);
  const int64_t B = x0.size(0), T = x0.size(2), H = x0.size(3), W = x0.size(4);
  const auto opts = x0.options();
  const bool video = net.config().video_conditioned();
  const int64_t hi = std::min(o.max_condition_frames, T - 1), lo = std::min(o.min_condition_frames, hi);
  LossDraws d;
  if (batch.noise_seeds.empty()) {
    d = Draw(o, x0.sizes(), lo, hi, video, gen);
  } else {
    TORCH_CHECK(static_cast<int64_t>(batch.noise_seeds.size()) == B, "noise_seeds must hold one seed per sample");
    std::vector<int64_t> one(x0.sizes().begin(), x0.sizes().end());
    one[0] = 1;
    std::vector<LossDraws> per;
    for (uint64_t seed : batch.noise_seeds) {
      at::Generator g = at::make_generator<at::CPUGeneratorImpl>(SplitMix(seed));
      per.push_back(Draw(o, one, lo, hi, video, g));
    }
    auto cat = [&](at::Tensor LossDraws::*field) {
      std::vector<at::Tensor> parts;
      for (const LossDraws& x : per) parts.push_back(x.*field);
      return at::cat(parts);
    };
    d.sigma = cat(&LossDraws::sigma);
    d.eps = cat(&LossDraws::eps);
    d.keep = cat(&LossDraws::keep);
    if (video) {
      d.use = cat(&LossDraws::use);
      d.k = cat(&LossDraws::k);
      d.aug_sigma = cat(&LossDraws::aug_sigma);
      d.aug_noise = cat(&LossDraws::aug_noise);
    }
  }
  at::Tensor sigma = d.sigma;
  if (o.adjust_video_noise) sigma = sigma * std::sqrt(static_cast<double>(T));
  sigma = sigma.to(opts);
  const at::Tensor eps = d.eps.to(opts);

  DenoiserInputs in;
  in.x = x0 + BatchView(sigma, 5) * eps;
  in.sigma = sigma;
  in.fps = batch.fps;
  // Text dropout: the zero embedding is the unconditional branch of classifier-free guidance.
  in.crossattn_emb = batch.crossattn_emb.to(opts) * d.keep.to(opts).view({B, 1, 1});

  at::Tensor given;  // [B] condition frames per sample
  if (video) {
    given = at::where(d.use, d.k, at::zeros_like(d.k)).to(opts);
    const at::Tensor t_idx = at::arange(T, opts).view({1, 1, T, 1, 1});
    in.indicator = (t_idx < given.view({B, 1, 1, 1, 1})).to(opts);  // [B, 1, T, 1, 1]
    in.mask = in.indicator.expand({B, 1, T, H, W});
    in.gt = x0;
    in.augment_sigma = d.aug_sigma.to(opts) * (given > 0).to(opts);
    in.augment_noise = d.aug_noise.to(opts);
  }
  const at::Tensor x0_pred = PreconditionedDenoise(net, p, in);
  const at::Tensor err = (x0_pred - x0).pow(2);
  LossOutput out;
  out.loss = (BatchView(p.LossWeight(sigma), 5) * err).mean();
  torch::NoGradGuard no_grad;
  const at::Tensor generated = in.indicator.defined() ? (1 - in.indicator).expand_as(err) : at::ones_like(err);
  out.mse = ((err * generated).sum() / generated.sum().clamp_min(1)).item<double>();
  out.mean_log_sigma = sigma.log().mean().item<double>();
  out.condition_frames = given.defined() ? given.mean().item<double>() : 0.0;
  return out;
}

double EvaluationLoss(DiffusionNetwork& net, const Parametrization& p, const TrainingBatch& batch, uint64_t seed,
                      int levels) {
  torch::NoGradGuard no_grad;
  const at::Tensor x0 = batch.x0.to(at::kFloat);
  const int64_t B = x0.size(0);
  double total = 0;
  for (int i = 0; i < levels; ++i) {
    const double s = std::exp(std::log(0.02) + (std::log(20.0) - std::log(0.02)) * i / std::max(1, levels - 1));
    at::Generator g = at::make_generator<at::CPUGeneratorImpl>(SplitMix(seed + static_cast<uint64_t>(i)));
    DenoiserInputs in;
    in.sigma = at::full({B}, s, x0.options());
    in.x = x0 + RandnCpu(x0.sizes(), g).to(x0.options()) * s;
    in.crossattn_emb = batch.crossattn_emb.to(x0.options());
    in.fps = batch.fps;
    const at::Tensor err = (PreconditionedDenoise(net, p, in) - x0).pow(2).mean();
    total += (p.LossWeight(in.sigma.narrow(0, 0, 1)) * err).item<double>();
  }
  return total / levels;
}

TrainingBatch SyntheticLatentProcess::Batch(int64_t first_index, int64_t batch_size, uint64_t seed) const {
  // Fixed per-process parameters (seed only): channel amplitudes/phases, the text codebook.
  at::Generator fixed = at::make_generator<at::CPUGeneratorImpl>(SplitMix(seed));
  const at::Tensor amp = RandCpu({channels}, fixed) * 0.8 + 0.6;         // [C]
  const at::Tensor phase_c = RandCpu({channels}, fixed) * (2 * M_PI);    // [C]
  const at::Tensor text_a = RandnCpu({text_tokens, text_dim}, fixed), text_b = RandnCpu({text_tokens, text_dim}, fixed);
  const at::Tensor t = at::arange(frames, at::kFloat).view({1, frames, 1, 1});
  const at::Tensor h = at::arange(height, at::kFloat).view({1, 1, height, 1});
  const at::Tensor w = at::arange(width, at::kFloat).view({1, 1, 1, width});
  const double k = 2 * M_PI / 8.0;
  std::vector<at::Tensor> xs, es;
  for (int64_t i = 0; i < batch_size; ++i) {
    at::Generator g = at::make_generator<at::CPUGeneratorImpl>(SplitMix(seed ^ SplitMix(static_cast<uint64_t>(first_index + i))));
    const at::Tensor r = RandCpu({3}, g);
    const double theta = std::floor(r[0].item<double>() * 4) * (M_PI / 2);  // one of 4 directions
    const double speed = 0.5 + r[1].item<double>();
    const double phase = r[2].item<double>() * 2 * M_PI;
    const at::Tensor arg = k * (h * std::sin(theta) + w * std::cos(theta)) - speed * t + phase;  // [1, T, H, W]
    const at::Tensor wave = at::sin(arg + phase_c.view({channels, 1, 1, 1})) * amp.view({channels, 1, 1, 1});
    xs.push_back(wave * std::sqrt(2.0) * sigma_data);                 // [C, T, H, W]
    es.push_back(text_a * std::cos(theta) + text_b * std::sin(theta));  // [N, D]
  }
  TrainingBatch b;
  b.x0 = at::stack(xs);
  b.crossattn_emb = at::stack(es);
  return b;
}

// ---------------------------------------------------------------------------------------------------------------
// LatentFolder

absl::StatusOr<LatentFolder> LatentFolder::Open(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return absl::NotFoundError(absl::StrCat(dir, ": not a directory"));
  LatentFolder f;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file() && absl::EndsWith(it->path().string(), ".safetensors"))
      f.files_.push_back(it->path().string());
  }
  if (ec) return absl::InternalError(absl::StrCat(dir, ": ", ec.message()));
  std::sort(f.files_.begin(), f.files_.end());
  if (f.files_.empty()) return absl::NotFoundError(absl::StrCat(dir, ": no *.safetensors clips"));
  for (const std::string& path : f.files_) {
    WFM_ASSIGN_OR_RETURN(auto st, SafetensorsFile::Open(path));
    const SafetensorsEntry* e = st->Find("latent");
    if (!e || e->shape.size() != 4)
      return absl::InvalidArgumentError(absl::StrCat(path, ": expected a `latent` tensor [C, T, H, W]"));
    if (f.shape_.empty()) f.shape_ = e->shape;
    if (e->shape != f.shape_)
      return absl::InvalidArgumentError(absl::StrCat(path, ": latent shape ", c10::str(e->shape),
                                                     " differs from the first clip's ", c10::str(f.shape_)));
  }
  return f;
}

absl::StatusOr<LatentClip> LatentFolder::Get(int64_t index) const {
  if (index < 0 || index >= size()) return absl::OutOfRangeError(absl::StrCat("clip ", index, " of ", size()));
  LatentClip c;
  c.path = files_[static_cast<size_t>(index)];
  WFM_ASSIGN_OR_RETURN(auto st, SafetensorsFile::Open(c.path));
  WFM_ASSIGN_OR_RETURN(c.latent, st->GetCopy("latent"), c.path);
  if (!c.latent.is_floating_point() || !at::isfinite(c.latent).all().item<bool>())
    return absl::InvalidArgumentError(absl::StrCat(c.path, ": `latent` must be finite floating point"));
  c.latent = c.latent.to(at::kFloat);
  if (st->Contains("crossattn_emb")) {
    WFM_ASSIGN_OR_RETURN(c.crossattn_emb, st->GetCopy("crossattn_emb"), c.path);
    if (c.crossattn_emb.dim() != 2)
      return absl::InvalidArgumentError(absl::StrCat(c.path, ": `crossattn_emb` must be [N, D]"));
    c.crossattn_emb = c.crossattn_emb.to(at::kFloat);
  }
  auto it = st->metadata().find("caption");
  if (it != st->metadata().end()) c.caption = it->second;
  return c;
}

absl::Status LatentFolder::Write(const std::string& path, const LatentClip& clip) {
  TensorMap t{{"latent", clip.latent.to(at::kFloat).contiguous()}};
  if (clip.crossattn_emb.defined()) t["crossattn_emb"] = clip.crossattn_emb.to(at::kFloat).contiguous();
  std::map<std::string, std::string> meta;
  if (!clip.caption.empty()) meta["caption"] = clip.caption;
  return WriteSafetensors(path, t, meta);
}

}  // namespace wfm::diffusion
