// The optimisation and run flags every `wfm ... train` command takes (ar, tokenizer, diffusion), declared once:
// they go straight into the driver's options struct, whose fields the three drivers name alike (steps,
// batch_size, grad_accum, lr, min_lr, warmup_steps, schedule, weight_decay, clip_norm, ema_decay, log_every,
// eval_every, sample_every, checkpoint_every, keep_checkpoints, resume, max_time_s, seed, device, precision,
// distributed); core/train's TrainerOptions::From maps them on. Flag names are the CLI's contract (scripts and
// tests use them): two differ by command and are given in TrainFlagNames. --help shows each driver's own
// defaults.
//
//   ar::ArTrainOptions o;
//   TrainRunFlags run;
//   AddTrainFlags(p, o, run);                          // --steps ... --distributed
//   if (auto rc = p.Parse(argc, argv)) return *rc;
//   if (absl::Status s = run.Apply(o); !s.ok()) return p.UsageError(std::string(s.message()));
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "cli.h"

namespace wfm::cli {

// Flag names that differ between the train commands.
struct TrainFlagNames {
  std::string schedule = "schedule";  // `wfm diffusion train`: lr-schedule
  std::string ema = "ema";            // `wfm diffusion train`: ema-decay
};

// The flags parsed into something else than their field: --max-time (seconds, or 900s / 15m / 2h),
// --no-resume and --seed. Apply() copies them into the driver options after Parse().
struct TrainRunFlags {
  std::string max_time;
  bool no_resume = false;
  int64_t seed = 0;

  template <typename Options>
  absl::Status Apply(Options& o) const {
    if (!max_time.empty()) {
      double seconds = 0;
      if (!ParseDuration(max_time, &seconds))
        return absl::InvalidArgumentError("--max-time must be like 900, 15m or 2h, got '" + max_time + "'");
      o.max_time_s = seconds;
    }
    o.resume = !no_resume;
    o.seed = static_cast<decltype(o.seed)>(seed);
    return absl::OkStatus();
  }
  // "900", "900s", "15m", "2h" -> seconds (> 0).
  static bool ParseDuration(std::string text, double* seconds) {
    double scale = 1;
    if (!text.empty() && (text.back() == 's' || text.back() == 'm' || text.back() == 'h')) {
      scale = text.back() == 'h' ? 3600 : text.back() == 'm' ? 60 : 1;
      text.pop_back();
    }
    double v = 0;
    if (!absl::SimpleAtod(text, &v) || !(v > 0)) return false;
    *seconds = v * scale;
    return true;
  }
};

// Registers the shared flags on `p`, writing into `o` (whose current values are the defaults --help shows).
template <typename Options>
ArgParser& AddTrainFlags(ArgParser& p, Options& o, TrainRunFlags& run, const TrainFlagNames& names = {}) {
  run.seed = static_cast<int64_t>(o.seed);
  return p.Option("steps", &o.steps, "optimizer steps")
      .Option("batch-size", &o.batch_size, "samples (clips / windows) per micro-batch per process")
      .Option("grad-accum", &o.grad_accum, "micro-batches per step")
      .Option("lr", &o.lr, "peak learning rate")
      .Option("min-lr", &o.min_lr, "final learning rate")
      .Option("warmup", &o.warmup_steps, "linear warmup steps")
      .Option(names.schedule, &o.schedule, "learning-rate decay: cosine | linear | constant")
      .Option("weight-decay", &o.weight_decay, "AdamW weight decay of the weight matrices (not norms or biases)")
      .Option("clip-grad", &o.clip_norm, "global gradient-norm clipping, 0 = off")
      .Option(names.ema, &o.ema_decay, "EMA decay of the exported weights")
      .Option("log-every", &o.log_every, "steps between metrics.jsonl train records")
      .Option("eval-every", &o.eval_every, "steps between held-out evaluations (EMA weights), also at the end")
      .Option("sample-every", &o.sample_every, "steps between samples, 0 = only at the end")
      .Option("checkpoint-every", &o.checkpoint_every, "steps between checkpoints, also at the end and on Ctrl-C")
      .Option("keep-checkpoints", &o.keep_checkpoints, "checkpoints kept")
      .Option("max-time", &run.max_time,
              "end training after this wall time: seconds, or 15m / 2h (then evaluate, sample and export)")
      .Flag("no-resume", &run.no_resume, "start fresh even if OUT has checkpoints")
      .Option("seed", &run.seed, "seed of weights, data order and noise")
      .Option("device", &o.device, "cpu | cuda | cuda:N | auto")
      .Option("precision", &o.precision, "fp32 | bf16 | auto (bf16 on CUDA)")
      .Option("distributed", &o.distributed,
              "auto (MPI under mpirun: gradients all-reduced, rank 0 writes) | mpi | none");
}

}  // namespace wfm::cli
