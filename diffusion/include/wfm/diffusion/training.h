// Diffusion-specific training pieces (the loop, optimizer, EMA, checkpoints and logging are core/train's):
//   - the denoising loss of one batch, with text dropout (for classifier-free guidance) and condition-frame
//     dropout (one Video2World network learns Text2World too);
//   - a synthetic latent process for smoke tests and examples;
//   - a folder of pre-tokenized clips.
//
// Loss (cosmos_predict1/diffusion/training/models/model_image.py compute_loss_with_epsilon_and_sigma,
// extend_model.py): sigma ~ logN(p_mean, p_std) per sample (times sqrt(T) with adjust_video_noise), eps ~ N(0, I),
// x_t = x0 + sigma eps; for Video2World samples the first k latent frames are given (k per sample: 0 with
// probability condition_dropout, else uniform in [min, max]) and augmented with noise at s_aug ~ logN(-3, 2);
// x0_pred = D(x_t, sigma) with the condition region replaced; loss = mean(lambda(sigma) * (x0_pred - x0)^2).
//
//   DiffusionTrainingOptions o;                                  // EDM, text dropout 0.2
//   at::Generator g = at::make_generator<at::CPUGeneratorImpl>(seed);
//   LossOutput l = DiffusionTrainingLoss(*net, edm, batch, o, g);
//   l.loss.backward();
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "wfm/diffusion/dit.h"
#include "wfm/diffusion/parametrization.h"

namespace wfm::diffusion {

struct DiffusionTrainingOptions {
  LogNormalSigma sigma;               // p_mean 0, p_std 1 (Predict1 training config)
  bool adjust_video_noise = false;    // multiply sigma by sqrt(latent frames) (Cosmos video training)
  double text_dropout = 0.2;          // probability of a zero text embedding (the unconditional branch of CFG)
  // Video2World networks only: per sample, no condition frames with this probability (Text2World), else the
  // first k latent frames, k uniform in [min_condition_frames, max_condition_frames] (at most T - 1).
  double condition_dropout = 0.3;
  int64_t min_condition_frames = 1;
  int64_t max_condition_frames = 2;
  LogNormalSigma augment_sigma{-3.0, 2.0, 1.0};  // condition-frame augmentation (Cosmos V2W experiment config)
};

// One batch in diffusion space: x0 = sigma_data * normalised latent.
struct TrainingBatch {
  at::Tensor x0;             // [B, C, T, H, W]
  at::Tensor crossattn_emb;  // [B, N, D]
  double fps = 24.0;
  // Optional, one per sample: sample i's noise level, noise, text/condition dropout and condition draws come from
  // its own generator seeded by noise_seeds[i], so they do not depend on the batch or the rank the sample is in
  // (data parallelism: 2 ranks with batch B draw what 1 rank with batch 2B draws). Empty: the whole batch
  // draws from the generator passed to DiffusionTrainingLoss.
  std::vector<uint64_t> noise_seeds;
};

struct LossOutput {
  at::Tensor loss;         // scalar, differentiable
  double mse = 0;          // unweighted mean (x0_pred - x0)^2 over the generated region
  double mean_log_sigma = 0;
  double condition_frames = 0;  // mean given latent frames per sample
};

LossOutput DiffusionTrainingLoss(DiffusionNetwork& net, const Parametrization& parametrization,
                                 const TrainingBatch& batch, const DiffusionTrainingOptions& options,
                                 at::Generator& generator);

// A deterministic evaluation loss: the mean weighted denoising error over fixed noise levels (log-spaced over
// [0.02, 20], `levels` of them) with noise drawn from `seed`, no dropout and no condition frames. Lower is
// better; comparable across training steps.
double EvaluationLoss(DiffusionNetwork& net, const Parametrization& parametrization, const TrainingBatch& batch,
                      uint64_t seed, int levels = 8);

// A synthetic latent process: travelling waves per channel whose direction, speed and phase are random per
// clip, plus a text embedding that encodes the direction (so text conditioning carries information). Clip i of
// seed s is always the same. Shapes: x0 [B, C, T, H, W] with unit-ish variance times sigma_data, text [B, N, D].
struct SyntheticLatentProcess {
  int64_t channels = 16, frames = 4, height = 8, width = 8;
  int64_t text_tokens = 4, text_dim = 32;
  double sigma_data = 0.5;
  TrainingBatch Batch(int64_t first_index, int64_t batch_size, uint64_t seed) const;
};

// A folder of pre-tokenized clips: every *.safetensors under `dir` holds `latent` [C, T, H, W] (the tokenizer's
// raw latent) and optionally `crossattn_emb` [N, D]; a `caption` metadata entry is kept for text encoders.
struct LatentClip {
  std::string path;
  at::Tensor latent;          // [C, T, H, W]
  at::Tensor crossattn_emb;   // [N, D] or undefined
  std::string caption;
};
class LatentFolder {
 public:
  // Lists the files (sorted) and checks that they share one latent shape; the error names the first bad file.
  static absl::StatusOr<LatentFolder> Open(const std::string& dir);
  int64_t size() const { return static_cast<int64_t>(files_.size()); }
  const std::vector<int64_t>& latent_shape() const { return shape_; }  // [C, T, H, W]
  absl::StatusOr<LatentClip> Get(int64_t index) const;
  // Writes one clip (atomically): the format Get reads.
  static absl::Status Write(const std::string& path, const LatentClip& clip);

 private:
  std::vector<std::string> files_;
  std::vector<int64_t> shape_;
};

}  // namespace wfm::diffusion
