// Training the AR world model. The loop, AdamW, schedules, EMA, checkpoints, JSONL metrics and data parallelism
// are the shared core/train infrastructure; this file holds the model-specific parts: the teacher-forced
// next-token loss of cosmos_predict1/autoregressive/training/model.py (cross-entropy over the video tokens after
// the condition frames + z-loss), text dropout for classifier-free guidance (utils/misc.py random_dropout: a
// dropped sample's text embeddings are zeroed), a synthetic token process for tests and smoke runs, and the
// training driver behind `wfm ar train` (TrainArModel).
//
//   ar::ArLossOptions lo;  lo.text_dropout = 0.1;
//   WFM_ASSIGN_OR_RETURN(ar::ArLossOutput out, ar::TeacherForcedLoss(*net, tokens, &text, lo, &gen));
//   out.loss.backward();
//
//   ar::ArTrainOptions o;                          // a whole run
//   o.config = *ar::ArConfig::Preset("tiny-v2w");  o.synthetic = true;  o.output_dir = "out/ar";
//   WFM_ASSIGN_OR_RETURN(ar::ArTrainResult r, ar::TrainArModel(o));   // r.val_ce, r.ema_weights_path
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "wfm/autoregressive/config.h"
#include "wfm/autoregressive/transformer.h"

namespace wfm::ar {

struct ArLossOptions {
  // Latent frames at the start that condition but are not predicted (the reference's num_condition_latents_t:
  // ignore_first_num_tokens = H*W*frames, minus one without <bov>).
  int64_t condition_frames = 1;
  double z_loss = 1e-4;        // z_loss_coeff * mean(logsumexp(logits)^2)
  double text_dropout = 0.0;   // per-sample probability of zeroing the text embeddings
  // Positions per chunk of the memory-bounded cross-entropy (ChunkedCrossEntropy); 0 = auto (about 2^24 logits,
  // 262 positions at 64000 codes), < 0 = the plain version (all [positions, vocab] logits at once).
  int64_t ce_chunk = 0;
};

struct ArLossOutput {
  at::Tensor loss;          // ce + z-loss (scalar, differentiable)
  double ce = 0, z = 0;     // their values
  double accuracy = 0;      // argmax == target over the predicted tokens
  int64_t targets = 0;      // predicted tokens in the batch
};

// tokens: int64 [B, t, h, w] (or [B, N] raster order), whole latent frames, t <= the model's latent window,
// with the model's frame size. `text` is required iff the model has cross-attention ([B or 1, L, D]).
// `generator` draws the text dropout (CPU; may be null when text_dropout is 0).
absl::StatusOr<ArLossOutput> TeacherForcedLoss(ArTransformerImpl& net, const at::Tensor& tokens,
                                               const TextContext* text, const ArLossOptions& options,
                                               at::Generator* generator = nullptr);

// Cross-entropy + z-loss of a bias-free output layer, chunked over positions so that the fp32 [M, V] logits and
// their softmax gradients never exist at once (at 64000 codes they dominate training memory):
//   loss = mean_i(lse_i - logit_i[target_i]) + z_coeff * mean_i(lse_i^2),  logits = hidden @ weight^T (in fp32)
// hidden [M, D], weight [V, D] (float or bfloat16), targets int64 [M]. When a gradient is needed the forward also
// computes d loss / d hidden and d loss / d weight chunk by chunk (the loss is linear in its upstream gradient,
// so backward only scales them): the same 3 GEMMs as the plain version, peak memory one [chunk, V] block.
// stats (no gradient): float [3] = {ce, z-loss term, correct argmax predictions}.
struct ChunkedCeOutput {
  at::Tensor loss;   // scalar, differentiable w.r.t. hidden and weight
  at::Tensor stats;  // [3]
};
ChunkedCeOutput ChunkedCrossEntropy(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                    double z_coeff, int64_t chunk);

// A moving-bar process in token space: every sample has a background token, a bar token (both drawn from the
// vocabulary) and a vertical bar that moves one column right per latent frame (wrapping). Frame 0 determines the
// rest, so a model that learned the process predicts every later token. int64 [B, t, h, w].
// With `directions` non-null, each sample's bar moves right (+1) or left (-1) at random and the direction is
// stored there: from one condition frame only a text-conditioned model can then predict the motion (the
// captions of the synthetic source say "moving right" / "moving left").
at::Tensor MovingBarTokens(int64_t batch, int64_t frames, int64_t height, int64_t width, int64_t vocab,
                           at::Generator& generator, std::vector<int>* directions = nullptr);

// ---- the training driver ----

struct ArTrainOptions {
  // Model: the architecture, and optional weights to start from (fine-tuning; a resumed run ignores them).
  ArConfig config;
  std::string init_weights;
  // Data, exactly one source:
  std::string tokens_dir;            // pre-tokenized clip folder (`wfm ar tokenize`, TokenFolder)
  std::vector<std::string> videos;   // video files / directories, tokenized on the fly with the tokenizer
  bool synthetic = false;            // the moving-bar process (MovingBarTokens with directions + captions)
  // DV tokenizer (preset or config.json, and weights; empty weights = random, for smoke tests): needed for
  // `videos`; optional otherwise, where it decodes the periodic samples to MP4.
  std::string tokenizer_config, tokenizer_weights;
  bool random_tokenizer = false;     // allow empty tokenizer_weights
  int64_t frames = 0;                // latent frames per training window (0 = the model's video_latent_shape[0])
  double fps = 0;                    // videos: resample to this rate first (0 = keep)
  double val_fraction = 0.1;         // held out: the last clips of a folder / the end of every video
  int64_t val_samples = 8;           // validation windows scored at each evaluation
  // Text (models with cross-attention): clip embeddings stored in the folder win; else captions (folder
  // metadata, VIDEO.txt sidecars, synthetic captions) through `text_encoder`: a T5 directory (frozen, Cosmos
  // padding: max_length rows, all attended), a built-in encoder .safetensors, or "builtin" (a fresh one of width
  // context_dim); else a zero context (= the dropped condition).
  std::string text_encoder;
  bool train_text_encoder = false;   // optimise a built-in encoder jointly ("builtin" implies it)
  ArLossOptions loss;                // condition_frames, z_loss, text_dropout
  // Optimisation (reference configs/registry.py: AdamW lr 1e-3, weight decay 0.05, warmup + cosine).
  int64_t steps = 1000;
  int64_t batch_size = 8;            // windows per micro-batch per process
  int grad_accum = 1;
  double lr = 1e-3, min_lr = 1e-6, weight_decay = 0.05, beta1 = 0.9, beta2 = 0.999, clip_norm = 1.0;
  int64_t warmup_steps = 100;
  std::string schedule = "cosine";   // cosine | linear | constant
  double ema_decay = 0.999;
  // Run.
  std::string output_dir;
  int64_t log_every = 10, eval_every = 200, sample_every = 0, checkpoint_every = 500;
  int keep_checkpoints = 3;
  bool resume = true;
  double max_time_s = 0;             // end training after this wall time (then evaluate, sample, export)
  uint64_t seed = 0;
  std::string device = "auto";
  std::string precision = "auto";    // fp32 | bf16 | auto (bf16 on CUDA)
  std::string distributed = "auto";  // auto (MPI under mpirun) | mpi | none
  bool quiet = false;
  nlohmann::json command_line;       // recorded in train_config.json and checkpoints
};

struct ArTrainResult {
  int rank = 0;                       // of this process (only rank 0 evaluates and writes)
  int64_t start_step = 0, steps = 0;  // resumed from / total steps done
  double train_seconds = 0;           // wall time of the loop in this process
  bool interrupted = false, time_budget_reached = false;
  double first_loss = 0, last_loss = 0;  // train loss (ce + z): first step of this run / last logged interval
  double val_ce = 0, val_accuracy = 0;   // EMA weights, held-out windows, teacher forced
  double val_rollout_match = 0;          // greedy rollout from the condition frames: tokens equal to the truth
  std::string weights_path, ema_weights_path, config_path, text_encoder_path;
};

// Trains (or resumes) a run in options.output_dir. Files: config.json (the model's params, loadable by
// `wfm ar generate --config`), model.safetensors / model_ema.safetensors (reference names), text_encoder.safetensors
// (a trained built-in encoder, EMA), train_config.json, summary.json, metrics.jsonl (train: loss, ce, z_loss,
// accuracy, grad_norm, lr; val: val_ce, val_accuracy, rollout_match), checkpoints/, samples/step_N.safetensors
// (truth + greedy rollout tokens) and step_N.mp4 (truth | rollout, decoded) when a tokenizer is given.
absl::StatusOr<ArTrainResult> TrainArModel(const ArTrainOptions& options);

}  // namespace wfm::ar
