// Diffusion world model pipeline in latent space: latent statistics, Video2World conditioning, guided denoising,
// sampling and autoregressive extension (see world_model.h).
#include "wfm/diffusion/world_model.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "absl/strings/str_cat.h"
#include "wfm/core/tensor_file.h"
#include "wfm/core/status.h"
#include "wfm/diffusion/denoiser.h"

namespace wfm::diffusion {

// ---------------------------------------------------------------------------------------------------------------
// LatentStats

LatentStats LatentStats::Identity(int64_t channels) {
  return {at::zeros({channels}), at::ones({channels})};
}

absl::Status LatentStats::Validate(int64_t c) const {
  if (!mean.defined() || !std.defined()) return absl::InvalidArgumentError("latent statistics are missing");
  if (mean.sizes() != std.sizes() || mean.dim() < 1 || mean.dim() > 2 || mean.size(0) != c)
    return absl::InvalidArgumentError(absl::StrCat("latent statistics must be [", c, "] or [", c,
                                                   ", Tc] (mean and std alike), got mean ", c10::str(mean.sizes()),
                                                   ", std ", c10::str(std.sizes())));
  if (!at::isfinite(mean).all().item<bool>() || !(std > 0).all().item<bool>())
    return absl::InvalidArgumentError("latent statistics: mean must be finite and std positive");
  return absl::OkStatus();
}

absl::StatusOr<LatentStats> LatentStats::Load(const std::string& path, int64_t c) {
  WFM_ASSIGN_OR_RETURN(TensorMap t, ReadTensorFile(path));
  LatentStats s;
  for (const auto& [m, d] : std::vector<std::pair<std::string, std::string>>{
           {"mean", "std"}, {"latent_mean", "latent_std"}, {"0", "1"}}) {
    if (t.count(m) && t.count(d)) {
      s.mean = t.at(m).to(at::kFloat).clone();
      s.std = t.at(d).to(at::kFloat).clone();
      break;
    }
  }
  if (!s.mean.defined())
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": expected latent statistics as (mean, std) or tensors named mean/std"));
  // mean_std.pt: flat [C * Tc] (or [1, C, Tc, 1, 1]); view as [C, Tc] like VideoJITTokenizer.register_mean_std.
  if (s.mean.numel() % c != 0 || s.mean.numel() != s.std.numel())
    return absl::InvalidArgumentError(absl::StrCat(path, ": latent statistics of ", s.mean.numel(),
                                                   " values do not split into ", c, " channels"));
  const int64_t tc = s.mean.numel() / c;
  s.mean = tc == 1 ? s.mean.reshape({c}) : s.mean.reshape({c, tc});
  s.std = tc == 1 ? s.std.reshape({c}) : s.std.reshape({c, tc});
  WFM_RETURN_IF_ERROR(s.Validate(c), path);
  return s;
}

namespace {
// [C] or [C, Tc] -> broadcastable [1, C, T, 1, 1] for T latent frames (chunk pattern repeated).
at::Tensor Broadcast(const at::Tensor& v, int64_t frames, const at::Tensor& like) {
  at::Tensor s = v.to(like.options());
  if (s.dim() == 1) return s.view({1, s.size(0), 1, 1, 1});
  const at::Tensor idx = at::arange(frames, at::TensorOptions().dtype(at::kLong).device(like.device())) % s.size(1);
  return s.index_select(1, idx).view({1, s.size(0), frames, 1, 1});
}
}  // namespace

at::Tensor LatentStats::Normalize(const at::Tensor& z) const {
  const int64_t t = z.size(2);
  return (z - Broadcast(mean, t, z)) / Broadcast(std, t, z);
}

at::Tensor LatentStats::Denormalize(const at::Tensor& x) const {
  const int64_t t = x.size(2);
  return x * Broadcast(std, t, x) + Broadcast(mean, t, x);
}

// ---------------------------------------------------------------------------------------------------------------
// Frame counts

int64_t LatentFramesFor(int64_t pixel_frames, int64_t tc) { return 1 + (pixel_frames - 1) / tc; }
int64_t PixelFramesFor(int64_t latent_frames, int64_t tc) { return 1 + (latent_frames - 1) * tc; }

absl::Status CheckPixelFrameCount(int64_t n, int64_t tc, const std::string& what) {
  if (n >= 1 && (n - 1) % tc == 0) return absl::OkStatus();
  const int64_t lo = n < 1 ? 1 : 1 + (n - 1) / tc * tc;
  return absl::InvalidArgumentError(absl::StrCat(what, " ", n, " is not a frame count the tokenizer supports: it ",
                                                 "needs 1 + k*", tc, " frames (e.g. ", lo, " or ", lo + tc, ")"));
}

// ---------------------------------------------------------------------------------------------------------------
// DiffusionWorldModel

DiffusionWorldModel::DiffusionWorldModel(std::shared_ptr<DiffusionNetwork> net,
                                         std::unique_ptr<Parametrization> parametrization)
    : net_(std::move(net)), parametrization_(std::move(parametrization)) {}

std::unique_ptr<Parametrization> DefaultParametrization(const DiTConfig& config) {
  if (config.is_general()) return std::make_unique<EdmParametrization>(0.5);
  return std::make_unique<RectifiedFlowParametrization>(1.0);
}

absl::Status DiffusionWorldModel::ValidateRequest(at::IntArrayRef shape, const TextConditioning& text,
                                                  const VideoConditioning& video, const GenerateOptions& o) const {
  const DiTConfig& c = net_->config();
  auto bad = [](const std::string& m) { return absl::InvalidArgumentError(m); };
  if (shape.size() != 4) return bad("the latent shape must be [C, T, H, W]");
  const int64_t C = shape[0], T = shape[1], H = shape[2], W = shape[3];
  if (C != c.latent_channels())
    return bad(absl::StrCat("the tokenizer gives ", C, " latent channels but the DiT expects ", c.latent_channels(),
                            " (tokenizer and diffusion model do not belong together)"));
  if (o.num_samples < 1) return bad("the number of samples must be >= 1");
  if (o.num_steps < 1) return bad("the number of sampling steps must be >= 1");
  DiTInputs probe;
  probe.x = at::empty({1, C, T, H, W}, at::TensorOptions().device(at::kMeta));
  probe.timesteps = at::empty({1}, at::TensorOptions().device(at::kMeta));
  probe.crossattn_emb = at::empty({1, 1, c.crossattn_emb_channels}, at::TensorOptions().device(at::kMeta));
  probe.condition_video_input_mask = at::empty({1, 1, T, H, W}, at::TensorOptions().device(at::kMeta));
  probe.fps = o.fps;
  WFM_RETURN_IF_ERROR(net_->ValidateInputs(probe));
  auto check_text = [&](const at::Tensor& e, const char* what) -> absl::Status {
    if (!e.defined()) return absl::OkStatus();
    if (e.dim() != 3 || e.size(2) != c.crossattn_emb_channels || (e.size(0) != 1 && e.size(0) != o.num_samples))
      return bad(absl::StrCat(what, " must be [1 or ", o.num_samples, ", N, ", c.crossattn_emb_channels, "], got ",
                              c10::str(e.sizes())));
    return absl::OkStatus();
  };
  if (!text.crossattn_emb.defined()) return bad("a text embedding (crossattn_emb) is required");
  WFM_RETURN_IF_ERROR(check_text(text.crossattn_emb, "the prompt embedding"));
  WFM_RETURN_IF_ERROR(check_text(text.negative_crossattn_emb, "the negative prompt embedding"));
  if (!video.empty()) {
    if (!c.video_conditioned())
      return bad("conditioning on input frames needs a Video2World network (config in_channels = latent channels "
                 "+ 1)");
    const at::Tensor& v = video.latent;
    if (v.dim() != 5 || v.size(1) != C || v.size(3) != H || v.size(4) != W || (v.size(0) != 1 && v.size(0) != o.num_samples))
      return bad(absl::StrCat("the condition latent must be [1 or ", o.num_samples, ", ", C, ", Tc, ", H, ", ", W,
                              "], got ", c10::str(v.sizes()), " (input video and output size disagree)"));
    if (video.num_frames < 0 || video.num_frames > v.size(2) || video.num_frames >= T)
      return bad(absl::StrCat(video.num_frames, " condition latent frames do not fit: the input gives ", v.size(2),
                              " and the clip has ", T, " (at least one frame must be generated)"));
  }
  return absl::OkStatus();
}

namespace {
at::Tensor ExpandBatch(const at::Tensor& t, int64_t b) {
  if (t.size(0) == b) return t;
  std::vector<int64_t> sizes(t.sizes().begin(), t.sizes().end());
  sizes[0] = b;
  return t.expand(sizes);
}
}  // namespace

// extend_model.py get_x0_fn_from_batch_with_condition_latent: the conditional and unconditional evaluations
// (as one batch of 2B), each with the condition region replaced, combined by guidance.
at::Tensor DiffusionWorldModel::Denoise(const at::Tensor& x, double sigma, const TextConditioning& text,
                                        const VideoConditioning& video, const GenerateOptions& o,
                                        const at::Tensor& augment_noise, CrossAttentionCache* cache) {
  const DiTConfig& cfg = net_->config();
  const int64_t B = x.size(0), T = x.size(2), H = x.size(3), W = x.size(4);
  DenoiserInputs in;
  in.x = x;
  in.sigma = at::full({B}, sigma, x.options());
  in.fps = o.fps;
  in.sigma_conditional = o.sigma_conditional;
  in.crossattn_cache = cache;
  if (cfg.video_conditioned() && !video.empty()) {
    const int64_t n = video.num_frames;
    in.mask = at::zeros({B, 1, T, H, W}, x.options());
    in.mask.narrow(2, 0, n).fill_(1.0);
    // The reference's inference trick (GeneralDIT): once sigma <= s_aug the condition region is denoised with the
    // rest (the mask channel still marks it).
    if (!cfg.is_general() || !(o.denoise_condition_below_augment_sigma && o.condition_augment_sigma >= sigma)) {
      in.indicator = at::zeros({B, 1, T, 1, 1}, x.options());
      in.indicator.narrow(2, 0, n).fill_(1.0);
      in.gt = at::zeros_like(x);
      in.gt.narrow(2, 0, n).copy_(ExpandBatch(video.latent.narrow(2, 0, n).to(x.options()), B));
      in.augment_sigma = at::full({B}, o.condition_augment_sigma, x.options());
      in.augment_noise = augment_noise;
    }
  }
  const at::Tensor cond_emb = ExpandBatch(text.crossattn_emb, B).to(x.device());
  if (o.guidance == 0.0) {
    in.crossattn_emb = cond_emb;
    return PreconditionedDenoise(*net_, *parametrization_, in);
  }
  // Unconditional branch: the negative prompt, or the dropped (zero) text embedding.
  at::Tensor neg = text.negative_crossattn_emb.defined() ? ExpandBatch(text.negative_crossattn_emb, B).to(x.device())
                                                         : at::zeros_like(cond_emb);
  const int64_t n_tok = std::max(cond_emb.size(1), neg.size(1));
  auto pad = [n_tok](const at::Tensor& e) {
    return e.size(1) == n_tok ? e : at::constant_pad_nd(e, {0, 0, 0, n_tok - e.size(1)});
  };
  auto twice = [](const at::Tensor& t) { return t.defined() ? at::cat({t, t}) : t; };
  in.crossattn_emb = at::cat({pad(cond_emb), pad(neg.to(cond_emb.scalar_type()))});
  in.x = twice(in.x);
  in.sigma = twice(in.sigma);
  in.indicator = twice(in.indicator);
  in.mask = twice(in.mask);
  in.gt = twice(in.gt);
  in.augment_sigma = twice(in.augment_sigma);
  in.augment_noise = twice(in.augment_noise);
  const at::Tensor x0 = PreconditionedDenoise(*net_, *parametrization_, in);
  return ApplyGuidance(x0.narrow(0, 0, B), x0.narrow(0, B, B), o.guidance);
}

absl::StatusOr<at::Tensor> DiffusionWorldModel::Generate(at::IntArrayRef latent_shape, const TextConditioning& text,
                                                         const VideoConditioning& video,
                                                         const GenerateOptions& o) {
  WFM_RETURN_IF_ERROR(ValidateRequest(latent_shape, text, video, o));
  return CatchToStatus("diffusion sampling", [&]() -> absl::StatusOr<at::Tensor> {
    torch::NoGradGuard no_grad;
    net_->eval();
    const c10::Device device = net_->device();
    std::vector<int64_t> shape{o.num_samples};
    shape.insert(shape.end(), latent_shape.begin(), latent_shape.end());
    const at::Tensor noise = InitialNoise(shape, o.seed, device, at::kFloat);  // [B, C, T, H, W]
    // The reference draws the condition augmentation noise from the same seed (arch_invariant_rand(seed)).
    const at::Tensor augment_noise = noise;
    const std::vector<double> sigmas = MakeSchedule(o.num_steps, o.schedule);
    SamplerOptions so;
    so.integrator = o.integrator;
    so.s_churn = o.s_churn;
    if (o.s_churn > 0) so.churn_generator = at::make_generator<at::CPUGeneratorImpl>(o.seed ^ 0x9e3779b97f4a7c15ull);
    so.callback = o.callback;
    CrossAttentionCache cache;  // the text is the same at every step: project its K/V once
    CrossAttentionCache* cache_ptr = o.cache_cross_attention ? &cache : nullptr;
    const DenoiseFn denoise = [&](const at::Tensor& x, double sigma) {
      return Denoise(x, sigma, text, video, o, augment_noise, cache_ptr);
    };
    at::Tensor out = Sample(denoise, noise * sigmas.front(), sigmas, so);
    if (!video.empty() && o.keep_condition_exact) {
      out.narrow(2, 0, video.num_frames)
          .copy_(ExpandBatch(video.latent.narrow(2, 0, video.num_frames).to(out.options()), o.num_samples));
    }
    if (!at::isfinite(out).all().item<bool>())
      return absl::InternalError("diffusion sampling produced non-finite values (check the weights and inputs)");
    return out;
  });
}

absl::StatusOr<at::Tensor> DiffusionWorldModel::GenerateLong(int64_t total_frames, int64_t clip_frames,
                                                             int64_t overlap, at::IntArrayRef chw,
                                                             const TextConditioning& text,
                                                             const VideoConditioning& video,
                                                             const GenerateOptions& options) {
  if (chw.size() != 3) return absl::InvalidArgumentError("latent_chw must be [C, H, W]");
  if (clip_frames < 2 || total_frames < 1)
    return absl::InvalidArgumentError("a clip needs at least 2 latent frames and the video at least 1");
  if (total_frames > clip_frames) {
    if (!net_->config().video_conditioned())
      return absl::InvalidArgumentError(absl::StrCat(
          total_frames, " latent frames exceed one clip of ", clip_frames,
          "; extending a video autoregressively needs a Video2World network (in_channels = latent channels + 1)"));
    if (overlap < 1 || overlap >= clip_frames)
      return absl::InvalidArgumentError(absl::StrCat("the extension overlap must be in [1, ", clip_frames - 1,
                                                     "] latent frames, got ", overlap));
  }
  const std::vector<int64_t> first_shape{chw[0], std::min(clip_frames, std::max(total_frames, video.num_frames + 1)),
                                         chw[1], chw[2]};
  WFM_ASSIGN_OR_RETURN(at::Tensor result, Generate(first_shape, text, video, options));
  GenerateOptions o = options;
  for (int64_t k = 1; result.size(2) < total_frames; ++k) {
    VideoConditioning cond;
    cond.latent = result.narrow(2, result.size(2) - overlap, overlap).contiguous();
    cond.num_frames = overlap;
    o.seed = options.seed + static_cast<uint64_t>(k);
    o.num_samples = result.size(0);
    WFM_ASSIGN_OR_RETURN(at::Tensor clip, Generate({chw[0], clip_frames, chw[1], chw[2]}, text, cond, o),
                         "extension clip ", k);
    result = at::cat({result, clip.narrow(2, overlap, clip_frames - overlap)}, 2);
  }
  return result.narrow(2, 0, total_frames).contiguous();
}

}  // namespace wfm::diffusion
