// The diffusion world model: a DiT + a parametrisation + a sampler, generating clips of continuous tokenizer
// latents from text (Text2World) and/or given first frames (Video2World), and long videos by autoregressive
// extension in latent space.
//
// Latent space. The tokenizer's raw latent z is normalised per channel (and, for Cosmos' mean_std.pt, per
// latent frame of a chunk) and scaled by sigma_data before diffusion (cosmos pretrained_vae.py
// VideoJITTokenizer.encode + model_t2w.py encode):   x = sigma_data * (z - mean) / std.
// LatentStats does the first part; DiffusionWorldModel works on x throughout.
//
// Video2World (cosmos_predict1/diffusion/training/models/extend_model.py ExtendDiffusionModel.denoise): the first
// `num_condition_frames` latent frames are given. At every network evaluation at noise level sigma
//   - the condition region of the input is the given latent plus a small fixed noise (sigma_aug = 0.001 at
//     inference), preconditioned at sigma_aug (augment_latent * c_in(sigma_aug) / c_in(sigma));
//   - the network gets the condition mask as an extra input channel;
//   - the x0 prediction of the condition region is replaced by the given latent (so guidance keeps it too).
// Below sigma_aug the reference stops replacing (the whole clip is denoised jointly); the final result's
// condition frames are the given latents exactly unless `keep_condition_exact` is false.
//
// Classifier-free guidance (Cosmos convention): x0 = cond + guidance * (cond - uncond); the unconditional branch
// uses the negative prompt's embedding, or zeros (the conditioner's dropped text) when there is none.
// Conditional and unconditional evaluations run as one batch of 2B.
//
//   DiffusionWorldModel wm(net, DefaultParametrization(net->config()));
//   TextConditioning text{prompt_emb, negative_emb};
//   GenerateOptions o; o.num_steps = 35; o.guidance = 7; o.seed = 1;
//   WFM_ASSIGN_OR_RETURN(at::Tensor x, wm.Generate({16, 16, 88, 160}, text, /*video=*/{}, o));  // [B,16,16,88,160]
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "wfm/diffusion/dit.h"
#include "wfm/diffusion/parametrization.h"
#include "wfm/diffusion/sampler.h"

namespace wfm::diffusion {

// Per-channel latent statistics: mean/std are [C] or [C, Tc] (per latent frame within a tokenizer chunk of Tc
// latent frames, as in Cosmos' mean_std.pt; frames beyond Tc reuse the pattern chunk by chunk).
struct LatentStats {
  at::Tensor mean, std;

  // Reads a statistics file (any format the core reader takes: Cosmos' torch.save'd mean_std.pt, safetensors)
  // holding (mean, std) as a tuple ("0", "1") or as named tensors "mean"/"std" (also "latent_mean"/"latent_std"). mean_std.pt stores each as a flat [C * Tc] vector;
  // `latent_channels` splits it.
  static absl::StatusOr<LatentStats> Load(const std::string& path, int64_t latent_channels = 16);
  // Identity statistics (mean 0, std 1) for C channels.
  static LatentStats Identity(int64_t channels);
  absl::Status Validate(int64_t latent_channels) const;

  // z [B, C, T, H, W] -> (z - mean) / std, and back.
  at::Tensor Normalize(const at::Tensor& z) const;
  at::Tensor Denormalize(const at::Tensor& x) const;
};

// Text conditioning: the positive prompt's embedding [B or 1, N, D] and, optionally, the negative prompt's (the
// unconditional branch of guidance; zeros when undefined).
struct TextConditioning {
  at::Tensor crossattn_emb;
  at::Tensor negative_crossattn_emb;
};

// Given first frames for Video2World: `latent` [B or 1, C, Tc, H, W] in diffusion space (normalised, times
// sigma_data); its first `num_frames` latent frames are the condition (num_frames <= Tc). Empty = Text2World.
struct VideoConditioning {
  at::Tensor latent;
  int64_t num_frames = 0;
  bool empty() const { return !latent.defined() || num_frames == 0; }
};

struct GenerateOptions {
  int num_steps = 35;
  Integrator integrator = Integrator::kRes2Ab;
  ScheduleOptions schedule;          // Karras 80 -> 0.0002, rho 7
  double guidance = 7.0;             // 0 = conditional model only (no second evaluation)
  uint64_t seed = 0;
  int64_t num_samples = 1;           // B (text/video conditioning with batch 1 is broadcast)
  double fps = 24.0;
  double condition_augment_sigma = 0.001;  // GeneralDIT noise augmentation of the condition frames
  double sigma_conditional = 1e-4;         // MiniTrainDIT frame replacement: the condition frames' noise level
  // Reference behaviour below condition_augment_sigma: stop replacing the condition region and denoise it too.
  bool denoise_condition_below_augment_sigma = true;
  bool keep_condition_exact = true;  // paste the given latents into the result's condition frames
  double s_churn = 0.0;              // EDM stochastic sampling (0 = deterministic ODE)
  // Project the text's cross-attention keys/values once per Generate call and reuse them at every step (the
  // text does not change between steps). Same result as recomputing them; false recomputes (for comparison).
  bool cache_cross_attention = true;
  std::function<void(const StepInfo&)> callback;
};

class DiffusionWorldModel {
 public:
  DiffusionWorldModel(std::shared_ptr<DiffusionNetwork> net, std::unique_ptr<Parametrization> parametrization);

  DiffusionNetwork& net() { return *net_; }
  const Parametrization& parametrization() const { return *parametrization_; }
  const DiTConfig& config() const { return net_->config(); }

  // Checks a generation request against the network: latent shape [C, T, H, W], conditioning batch sizes and
  // shapes, frame counts (the message says which work).
  absl::Status ValidateRequest(at::IntArrayRef latent_shape, const TextConditioning& text,
                               const VideoConditioning& video, const GenerateOptions& options) const;

  // Samples num_samples clips of `latent_shape` [C, T, H, W] in diffusion space. Video2World conditioning needs a
  // Video2World network (in_channels = C + 1).
  absl::StatusOr<at::Tensor> Generate(at::IntArrayRef latent_shape, const TextConditioning& text,
                                      const VideoConditioning& video, const GenerateOptions& options);

  // A long video by autoregressive extension in latent space: the first clip is generated from `video` (or from
  // text alone), each following clip of `clip_frames` latent frames is conditioned on the last `overlap` latent
  // frames of what exists so far, and its new frames are appended. Returns [B, C, total_frames, H, W]. Pixels
  // are never re-encoded. seed + k seeds clip k.
  absl::StatusOr<at::Tensor> GenerateLong(int64_t total_frames, int64_t clip_frames, int64_t overlap,
                                          at::IntArrayRef latent_chw, const TextConditioning& text,
                                          const VideoConditioning& video, const GenerateOptions& options);

  // The x0 prediction of one (guided, condition-replaced) network evaluation; exposed for tests and custom
  // samplers. `x` [B, C, T, H, W]. `cache` (optional) keeps the text's cross-attention K/V between calls.
  at::Tensor Denoise(const at::Tensor& x, double sigma, const TextConditioning& text, const VideoConditioning& video,
                     const GenerateOptions& options, const at::Tensor& augment_noise,
                     CrossAttentionCache* cache = nullptr);

 private:
  std::shared_ptr<DiffusionNetwork> net_;
  std::unique_ptr<Parametrization> parametrization_;
};

// The parametrisation a network was trained with: EDM (sigma_data 0.5) for GeneralDIT, rectified flow for
// MiniTrainDIT.
std::unique_ptr<Parametrization> DefaultParametrization(const DiTConfig& config);

// Pixel-frame bookkeeping of a causal video tokenizer with temporal compression `tc` (CV8x8x8: 8): N frames ->
// 1 + (N - 1) / tc latent frames; valid N are 1 + k * tc.
int64_t LatentFramesFor(int64_t pixel_frames, int64_t temporal_compression);
int64_t PixelFramesFor(int64_t latent_frames, int64_t temporal_compression);
// InvalidArgument naming the nearest valid counts when `pixel_frames` is not 1 + k * tc (what = "--num-frames").
absl::Status CheckPixelFrameCount(int64_t pixel_frames, int64_t temporal_compression, const std::string& what);

}  // namespace wfm::diffusion
