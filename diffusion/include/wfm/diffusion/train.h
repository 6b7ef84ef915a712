// The training driver behind `wfm diffusion train` (and wfm.diffusion.train in Python): trains or fine-tunes a
// DiT on latent clips with the loss of training.h. One network learns Text2World and Video2World: text is dropped
// with `text_dropout` (classifier-free guidance) and, for Video2World networks, the first min..max condition
// latent frames are given except with probability `condition_dropout`. Data: exactly one of the synthetic latent
// process, a folder of pre-tokenized clips (LatentFolder), a folder of videos or curated webdataset shards (both
// tokenized on the fly with a CV tokenizer; shards use their stored latents when `wfm curate --latents` wrote
// them). Loop, AdamW, warmup/decay, EMA, clipping, atomic checkpoints + resume, JSONL metrics and data
// parallelism (under mpirun) are core/train's.
//
//   diffusion::DiffusionTrainOptions o;
//   o.config = "tiny-video2world";  o.synthetic = true;  o.output = "runs/t";  o.steps = 300;
//   WFM_ASSIGN_OR_RETURN(diffusion::DiffusionTrainResult r, diffusion::TrainDiffusion(o));
//
// Files under `output`: config.json (the DiT config), model_ema.safetensors (EMA weights; rank 0, at the end),
// metrics.jsonl (train: loss, mse, log_sigma, condition_frames, grad_norm, lr; val: eval_loss), checkpoints/,
// samples/step_N.safetensors (+ .mp4 with a tokenizer), text_cache/ (captions through a text encoder).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace wfm::diffusion {

// Field names follow the CLI flags (`--num-frames` -> num_frames) except where noted.
struct DiffusionTrainOptions {
  std::string config = "tiny";   // DiT preset or config json
  std::string output;            // run directory (required)
  std::string init_weights;      // start from these DiT weights (fine-tuning)
  // Data: exactly one of synthetic / data / videos / shards.
  bool synthetic = false;
  std::string data;              // folder of pre-tokenized clips (*.safetensors: latent [+ crossattn_emb])
  std::string videos;            // folder of videos (+ KEY.txt captions)
  std::string shards;            // curated webdataset shards (KEY.mp4 + KEY.txt/json [+ KEY.latent.safetensors])
  std::string tokenizer_config = "CV8x8x8", tokenizer_weights;  // for videos / shards (and sample videos)
  std::string latent_stats;      // latent mean/std file; default identity
  std::string text_encoder;      // captions -> embeddings: T5 directory or built-in .safetensors
  int64_t num_frames = 17, height = 128, width = 128;  // clips of videos / shards (1 + k*Tc frames)
  double fps = 24.0;
  int64_t synthetic_frames = 4, synthetic_size = 8;    // latent frames and size of synthetic clips
  // Optimisation and run: named as in ar::ArTrainOptions / tokenizer::TokenizerTrainOptions (the CLIs' shared
  // flags, tools/train_flags.h, and core/train TrainerOptions::From read them alike; the flag is given where it
  // differs from the field name).
  int64_t steps = 1000, batch_size = 4, grad_accum = 1, warmup_steps = 100;  // --warmup
  double lr = 1e-4, min_lr = 0.0, weight_decay = 0.1, clip_norm = 1.0;       // --clip-grad
  double ema_decay = 0.9999;                                                 // --ema-decay
  std::string schedule = "cosine";  // constant | cosine | linear (--lr-schedule)
  // Loss.
  double text_dropout = 0.2, condition_dropout = 0.3;
  int64_t min_condition_frames = 1, max_condition_frames = 2;
  double p_mean = 0.0, p_std = 1.0;    // training noise: ln(sigma) ~ N(p_mean, p_std)
  // Run.
  int64_t log_every = 10, eval_every = 200, checkpoint_every = 500, sample_every = 0, sample_steps = 12;
  int keep_checkpoints = 3;
  double max_time_s = 0.0;
  bool resume = true;  // continue from output/checkpoints/latest (--no-resume: start fresh)
  int64_t seed = 0;
  std::string device = "auto", precision = "auto";
  std::string distributed = "auto";  // auto (MPI under mpirun) | mpi | none
  bool quiet = false;  // no progress line
};

struct DiffusionTrainResult {
  int rank = 0;
  int64_t start_step = 0, steps = 0;       // resumed from / total steps done
  double seconds = 0;                      // wall time of the loop in this process
  bool interrupted = false, time_budget_reached = false;
  std::map<std::string, double> last_train, last_eval;  // last logged train averages / evaluation
  std::string weights_path, config_path;   // OUT/model_ema.safetensors, OUT/config.json (rank 0)
};

absl::StatusOr<DiffusionTrainResult> TrainDiffusion(const DiffusionTrainOptions& options);

}  // namespace wfm::diffusion
