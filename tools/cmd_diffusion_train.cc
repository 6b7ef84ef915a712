// `wfm diffusion train`: maps the command line onto diffusion::TrainDiffusion (diffusion/src/train_driver.cc: the
// data sources, text conditioning with dropout, the loss, evaluation and samples on the shared core/train loop;
// wfm.diffusion.train in Python calls the same function).
#include <string>

#include "cli.h"
#include "train_flags.h"
#include "wfm/diffusion/train.h"

namespace wfm::cli {
namespace {

using namespace wfm::diffusion;

int RunTrain(int argc, char** argv) {
  DiffusionTrainOptions a;
  TrainRunFlags run;
  ArgParser p("wfm diffusion train",
              "Train or fine-tune a diffusion DiT. One network learns Text2World and Video2World: text is dropped "
              "with --text-dropout (classifier-free guidance) and, for Video2World networks, the first 1..2 latent "
              "frames are given except with probability --condition-dropout. Resumes from OUT/checkpoints/latest. "
              "Data-parallel under mpirun (one process per GPU/node; rank 0 writes).");
  p.Option("config", &a.config, "DiT config json or preset (default tiny)")
      .Option("output", &a.output, "run directory: config.json, metrics.jsonl, checkpoints/, samples/", true)
      .Option("init-weights", &a.init_weights, "start from these DiT weights (fine-tuning)")
      .Flag("synthetic", &a.synthetic, "train on the built-in synthetic latent process (smoke tests, examples)")
      .Option("data", &a.data, "folder of pre-tokenized clips (*.safetensors with latent [+ crossattn_emb])")
      .Option("videos", &a.videos, "folder of videos (+ KEY.txt captions), tokenized on the fly")
      .Option("shards", &a.shards, "curated webdataset shards (KEY.mp4 + KEY.txt/json), tokenized on the fly")
      .Option("tokenizer-config", &a.tokenizer_config, "tokenizer config json or preset (default CV8x8x8)")
      .Option("tokenizer-weights", &a.tokenizer_weights, "tokenizer weights (for --videos/--shards)")
      .Option("latent-stats", &a.latent_stats, "latent mean/std file (mean_std.pt); default identity")
      .Option("text-encoder", &a.text_encoder, "text encoder for captions (T5 dir or built-in .safetensors)")
      .Option("num-frames", &a.num_frames, "pixel frames per clip for --videos/--shards (1 + k*8; default 17)")
      .Option("height", &a.height, "clip height for --videos/--shards (default 128)")
      .Option("width", &a.width, "clip width for --videos/--shards (default 128)")
      .Option("fps", &a.fps, "clip frame rate (default 24)")
      .Option("synthetic-frames", &a.synthetic_frames, "latent frames of synthetic clips (default 4)")
      .Option("synthetic-size", &a.synthetic_size, "latent height/width of synthetic clips (default 8)")
      .Option("text-dropout", &a.text_dropout, "probability of dropping the text (default 0.2)")
      .Option("condition-dropout", &a.condition_dropout, "Video2World: probability of no condition frames (0.3)")
      .Option("min-condition-frames", &a.min_condition_frames, "Video2World: fewest given latent frames (1)")
      .Option("max-condition-frames", &a.max_condition_frames, "Video2World: most given latent frames (2)")
      .Option("p-mean", &a.p_mean, "training noise: mean of ln(sigma) (default 0)")
      .Option("p-std", &a.p_std, "training noise: std of ln(sigma) (default 1)")
      .Option("sample-steps", &a.sample_steps, "sampling steps of the periodic samples (default 12)");
  AddTrainFlags(p, a, run, {.schedule = "lr-schedule", .ema = "ema-decay"})
      .Epilog("example:\n  wfm diffusion train --config tiny-video2world --synthetic --steps 300 --output runs/t\n"
              "  wfm diffusion generate --config runs/t/config.json --weights runs/t/model_ema.safetensors ...\n");
  if (auto rc = p.Parse(argc, argv)) return *rc;
  if (absl::Status s = run.Apply(a); !s.ok()) return p.UsageError(std::string(s.message()));
  const int sources = int(a.synthetic) + int(!a.data.empty()) + int(!a.videos.empty()) + int(!a.shards.empty());
  if (sources != 1) return p.UsageError("give exactly one of --synthetic, --data DIR, --videos DIR, --shards DIR");
  if (a.batch_size < 1 || a.grad_accum < 1 || a.steps < 1)
    return p.UsageError("--batch-size, --grad-accum and --steps must be >= 1");
  const absl::StatusOr<DiffusionTrainResult> r = TrainDiffusion(a);
  return r.ok() ? kExitOk : ReportError(r.status());
}

WFM_REGISTER_COMMAND("diffusion train", "train or fine-tune the diffusion world model", RunTrain);

}  // namespace
}  // namespace wfm::cli
