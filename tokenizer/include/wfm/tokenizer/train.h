// Training and evaluating Cosmos-Tokenize1 video tokenizers (CV / DV) natively: losses, a small 3D patch
// discriminator, the training driver behind `wfm tokenizer train`, and the scorer behind `wfm tokenizer eval`.
//
// Losses (cosmos_predict1/tokenizer training uses L1 "color", perceptual, optical-flow, Gram and adversarial
// terms; VGG/RAFT weights are not available here, so their places are taken by SSIM and a temporal-gradient
// term):
//   total = w_l1 * |x - x^|  +  w_ssim * (1 - SSIM(x, x^))  +  w_temporal * |dx/dt - dx^/dt|
//         + w_adv * hinge_G(D(x^))   (from adversarial_start on)  +  w_kl * KL (VAE formulation only)
// FSQ needs no codebook loss (straight-through rounding). Training uses the shared core/train pieces: AdamW with
// no decay on norms/biases, warmup + cosine, clipping, EMA (evaluated and exported), atomic checkpoints and
// bit-exact resume, JSONL metrics, PNG reconstruction grids and SVG curves, bf16 autocast on GPU, MPI data
// parallelism.
//
//   TokenizerTrainOptions o;
//   o.inputs = {"../shared/media"};
//   WFM_ASSIGN_OR_RETURN(o.config, TokenizerConfig::Preset("CV4x8x8"));
//   o.config.channels = 16;                      // a small model
//   o.output_dir = "out/tok"; o.steps = 2000;
//   WFM_ASSIGN_OR_RETURN(TokenizerTrainResult r, TrainTokenizer(o));   // r.val_psnr, r.val_ssim
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "wfm/core/metrics.h"
#include "wfm/core/train/video_clips.h"
#include "wfm/tokenizer/config.h"
#include "wfm/tokenizer/network.h"

namespace wfm::tokenizer {

struct ServeOptions;  // tokenizer.h

// ---- initialisation ----

// Data-scaled initialisation of the skip path of a freshly initialised factorized video tokenizer (CV / DV), for
// training from scratch: the encoder's and the decoder's `conv_in` are rescaled so that their outputs have unit
// standard deviation on `x` (the Haar-patched input and the latent come out of a default-initialised `conv_in` at
// ~0.1, and the GroupNorm-first residual branches, blind to the input's level, then swamp them within a few
// hundred steps: on nearly flat video the network loses the colours), and the decoder's `conv_out` so that the
// reconstruction's standard deviation matches the data's. x: a batch of training windows [B, 3, T, H, W] in
// [-1, 1]. Weights only change scale; state-dict keys and shapes are untouched. On the demo world it reaches in 600
// steps what default initialisation reaches in 3000 (docs/PERFORMANCE.md, demo).
absl::Status ScaleSkipPathToData(TokenizerNetworkImpl& net, const at::Tensor& x);

// ---- losses ----

struct TokenizerLossWeights {
  double l1 = 1.0;
  double ssim = 0.2;              // 1 - SSIM (Gaussian 11x11), per frame
  double temporal = 0.5;          // L1 of temporal differences (flow-consistency proxy); needs T > 1
  double adversarial = 0.0;       // generator hinge term; 0 = no discriminator
  int64_t adversarial_start = 0;  // step at which the adversarial terms switch on
  double kl = 1e-6;               // VAE formulation only
};

struct LossTerms {
  at::Tensor total;                          // differentiable scalar
  std::map<std::string, at::Tensor> parts;   // "l1", "ssim_loss", "temporal", "kl" (unweighted, detached)
};

// x, rec: [B, 3, T, H, W] (or [B, 3, H, W]) in [-1, 1]. Frames smaller than the SSIM window skip the SSIM term.
LossTerms ReconstructionLoss(const at::Tensor& x, const at::Tensor& rec, const TokenizerLossWeights& weights,
                             const at::Tensor& mean = {}, const at::Tensor& logvar = {});

// A small PatchGAN-style 3D discriminator: Conv3d (3,4,4) stride (1,2,2) -> LeakyReLU(0.2), then `layers - 1`
// blocks Conv3d stride (2,2,2) (time stride 1 once T is 1) -> GroupNorm(1) -> LeakyReLU, then a 1-channel
// Conv3d head: [B, 3, T, H, W] -> logits [B, 1, t, h, w] (one per space-time patch).
class PatchDiscriminator3dImpl : public torch::nn::Module {
 public:
  explicit PatchDiscriminator3dImpl(int64_t channels = 32, int64_t layers = 3);
  at::Tensor forward(const at::Tensor& x);

 private:
  torch::nn::ModuleList convs_{nullptr}, norms_{nullptr};
};
TORCH_MODULE(PatchDiscriminator3d);

// Hinge losses: D: mean(relu(1 - D(x))) + mean(relu(1 + D(x^))); G: -mean(D(x^)).
at::Tensor DiscriminatorHingeLoss(const at::Tensor& logits_real, const at::Tensor& logits_fake);
at::Tensor GeneratorHingeLoss(const at::Tensor& logits_fake);

// ---- evaluation ----

struct ClipScore {
  std::string name;       // "path@start_frame"
  std::string path;
  int64_t start_frame = 0;
  int64_t frames = 0;
  double psnr = 0, ssim = 0;
};

struct EvalSummary {
  std::vector<ClipScore> clips;
  double mean_psnr = 0, mean_ssim = 0;
  double seconds = 0;
};

// Frame / size rules of a tokenizer: the largest 1 + k*Tc <= frames (video) and multiples of the spatial
// compression. `clip` uint8 [T, H, W, 3] is centre-cropped to them (InvalidArgument if nothing is left).
absl::StatusOr<at::Tensor> CropToTokenizerShape(const TokenizerConfig& config, const at::Tensor& clip);

// Reconstructs clip (uint8 [T, H, W, 3]; cropped with CropToTokenizerShape) with `net` in eval mode and no
// grad, and scores it TokenBench-style (uint8 PSNR over the clip, per-frame SSIM). `reconstruction` (optional)
// receives uint8 [T', H', W', 3]; `truth` (optional) the cropped input. `serve` (optional): reconstruct through
// the serving path (Tokenizer::Reconstruct: streaming/windowed mode, spatial tiling) instead of one whole-clip
// forward -- how the cost of a serving mode (e.g. tiling seams) is measured.
absl::StatusOr<ClipScore> ScoreClip(TokenizerNetworkImpl& net, const at::Tensor& clip, const MetricOptions& metrics,
                                    c10::Device device, at::Tensor* reconstruction = nullptr,
                                    at::Tensor* truth = nullptr, const ServeOptions* serve = nullptr);

// Scores every clip; means over clips.
absl::StatusOr<EvalSummary> EvaluateClips(TokenizerNetworkImpl& net, const std::vector<train::VideoClip>& clips,
                                          const MetricOptions& metrics, c10::Device device, bool show_progress = true,
                                          const ServeOptions* serve = nullptr);

// ---- training ----

struct TokenizerTrainOptions {
  // Data: video files / directories (split by time into train and validation), clip shape and augmentation.
  std::vector<std::string> inputs;
  train::VideoClipOptions data;   // num_frames, width/height, fps, zoom, flip, val_fraction, seed, cache
  int64_t val_clips = 8;          // validation clips scored at each evaluation
  // Model: the architecture, and optional weights to start from (fine-tuning; any format LoadTokenizerWeights
  // takes). A resumed run ignores them (the checkpoint wins).
  TokenizerConfig config;
  std::string init_weights;
  // Optimisation.
  int64_t steps = 1000;
  int64_t batch_size = 4;
  int grad_accum = 1;
  double lr = 1e-3, min_lr = 1e-5, weight_decay = 0.01, beta1 = 0.9, beta2 = 0.99, clip_norm = 1.0;
  int64_t warmup_steps = 100;
  std::string schedule = "cosine";  // cosine | linear | constant
  double ema_decay = 0.999;
  TokenizerLossWeights loss;
  double disc_lr = 2e-4;
  int64_t disc_channels = 32;
  // Run.
  std::string output_dir;
  int64_t log_every = 10, eval_every = 250, sample_every = 250, checkpoint_every = 500;
  int keep_checkpoints = 3;
  bool resume = true;
  double max_time_s = 0;          // stop training after this much wall time (then evaluate and export)
  uint64_t seed = 0;              // weight init (data uses data.seed)
  std::string device = "auto";
  std::string precision = "auto"; // fp32 | bf16 | auto (bf16 on CUDA)
  std::string distributed = "auto";
  int prefetch = 2;
  bool quiet = false;
  nlohmann::json command_line;    // recorded in config.json / checkpoints
};

struct TokenizerTrainResult {
  int64_t steps = 0;              // total steps done (including before a resume)
  double train_seconds = 0;       // wall time of the training loop in this process
  double val_psnr = 0, val_ssim = 0;  // EMA weights, held-out clips, TokenBench-style
  std::string weights_path;       // OUT/model_ema.safetensors
  std::string config_path;        // OUT/config.json
};

absl::StatusOr<TokenizerTrainResult> TrainTokenizer(const TokenizerTrainOptions& options);

}  // namespace wfm::tokenizer
