// The training loop every wfm trainer runs (`wfm tokenizer train`, `wfm ar train`, `wfm diffusion train`):
// resume from the latest checkpoint, step, log, evaluate, sample, checkpoint, stop cleanly on Ctrl-C / SIGTERM
// or a time budget — with a progress line (steps/s, ETA, loss) and a JSONL metrics log.
//
// The caller owns the model, optimizer, EMA and data; the step function does one optimisation step (forward,
// backward, ApplyGradients) and returns its metrics. The Trainer does everything around it:
//
//   train::Trainer trainer({.output_dir = out, .total_steps = 5000, .eval_every = 500, .checkpoint_every = 1000});
//   trainer.items().modules["model"] = model.get();
//   trainer.items().emas["model_ema"] = &ema;
//   trainer.items().optimizers["optimizer"] = &opt;
//   trainer.AddState("data", [&] { return data.SaveState(); }, [&](const json& j) { return data.LoadState(j); });
//   trainer.set_config(config_json);
//   trainer.OnEval([&](int64_t step) -> absl::StatusOr<train::Metrics> { ...; return {{"psnr", p}}; });
//   WFM_RETURN_IF_ERROR(trainer.Run([&](int64_t step) -> absl::StatusOr<train::Metrics> {
//     opt.ZeroGrad();
//     at::Tensor loss = Loss(*model, data.Next());
//     loss.backward();
//     WFM_ASSIGN_OR_RETURN(double gnorm, train::ApplyGradients(opt, {.lr = sched.At(step), .clip_norm = 1.0,
//                                                                     .group = pg.get(), .ema = &ema}));
//     return train::Metrics{{"loss", loss.item<double>()}, {"grad_norm", gnorm}, {"lr", sched.At(step)}};
//   }));
//
// Files under output_dir: metrics.jsonl (records {"step", "split": "train"|"val", "time_s", ...metrics}),
// checkpoints/ (see checkpoint.h), and whatever the hooks write. With a process group, only rank 0 writes.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "wfm/core/train/checkpoint.h"

namespace wfm::train {

class AdamW;
class Ema;
class JsonlLog;
class ProcessGroup;

using Metrics = std::map<std::string, double>;

struct TrainerOptions {
  std::string output_dir;          // required: metrics.jsonl, checkpoints/, samples
  int64_t total_steps = 1000;
  int64_t log_every = 10;          // JSONL train records (averaged over the interval) every N steps
  int64_t eval_every = 0;          // 0 = only at the end (if an eval hook is set)
  int64_t sample_every = 0;        // 0 = only at the end (if a sample hook is set)
  int64_t checkpoint_every = 0;    // 0 = only at the end / on interruption
  int keep_checkpoints = 3;
  bool resume = true;              // continue from output_dir/checkpoints/latest when present
  std::string resume_from;         // or from this checkpoint directory
  double max_time_s = 0;           // > 0: end training after this much wall time (this process)
  int max_nonfinite_steps = 10;    // consecutive non-finite losses tolerated before failing
  int64_t items_per_step = 0;      // e.g. clips per step (all ranks), to show items/s
  std::string progress_label = "train";
  bool quiet = false;              // no progress line

  // The schedule/checkpoint fields copied from a driver's own options struct (ar::ArTrainOptions,
  // tokenizer::TokenizerTrainOptions: steps, log/eval/sample/checkpoint_every, keep_checkpoints, resume,
  // max_time_s, quiet), so every driver maps them the same way.
  template <typename DriverOptions>
  static TrainerOptions From(const DriverOptions& o, std::string output_dir, int64_t items_per_step,
                             std::string progress_label) {
    TrainerOptions t;
    t.output_dir = std::move(output_dir);
    t.total_steps = o.steps;
    t.log_every = o.log_every;
    t.eval_every = o.eval_every;
    t.sample_every = o.sample_every;
    t.checkpoint_every = o.checkpoint_every;
    t.keep_checkpoints = o.keep_checkpoints;
    t.resume = o.resume;
    t.max_time_s = o.max_time_s;
    t.items_per_step = items_per_step;
    t.progress_label = std::move(progress_label);
    t.quiet = o.quiet;
    return t;
  }
};

// What Run() did.
struct TrainerResult {
  int64_t start_step = 0;   // 0, or the step resumed from
  int64_t end_step = 0;     // steps completed in total
  bool interrupted = false;          // stopped by SIGINT/SIGTERM (a checkpoint was written, no final eval)
  bool time_budget_reached = false;  // stopped by max_time_s (then evaluated, sampled and checkpointed)
  double seconds = 0;
  Metrics last_train;       // last logged train averages
  Metrics last_eval;
};

class Trainer {
 public:
  explicit Trainer(TrainerOptions options, std::shared_ptr<ProcessGroup> group = nullptr);
  ~Trainer();

  // What checkpoints hold (register before Run()).
  CheckpointItems& items() { return items_; }
  // Saved in checkpoints under "config"; a resumed run warns about keys that changed.
  void set_config(nlohmann::json config) { config_ = std::move(config); }
  // Extra state saved in checkpoints (e.g. the data loader position): save() -> JSON, load(JSON).
  void AddState(const std::string& name, std::function<nlohmann::json()> save,
                std::function<absl::Status(const nlohmann::json&)> load);

  void OnEval(std::function<absl::StatusOr<Metrics>(int64_t step)> fn) { eval_ = std::move(fn); }
  void OnSample(std::function<absl::Status(int64_t step)> fn) { sample_ = std::move(fn); }

  // Loads the checkpoint to resume from (if any) and returns the step to start at. Run() calls it; call it
  // earlier to know the start step (e.g. to position a data loader).
  absl::StatusOr<int64_t> Resume();

  // Runs steps start..total_steps-1. `step` passed to the function is the 0-based index of the step being run.
  absl::StatusOr<TrainerResult> Run(const std::function<absl::StatusOr<Metrics>(int64_t step)>& step_fn);

  // Writes a checkpoint for `step` now (rank 0; all ranks must call).
  absl::Status SaveCheckpoint(int64_t step);

  const TrainerOptions& options() const { return options_; }
  std::string metrics_path() const;
  std::string checkpoint_dir() const;
  bool is_main() const;

 private:
  absl::Status LogRecord(nlohmann::json record);
  absl::StatusOr<Metrics> RunEval(int64_t step);

  TrainerOptions options_;
  std::shared_ptr<ProcessGroup> group_;
  CheckpointItems items_;
  nlohmann::json config_ = nlohmann::json::object();
  struct State {
    std::function<nlohmann::json()> save;
    std::function<absl::Status(const nlohmann::json&)> load;
  };
  std::map<std::string, State> states_;
  std::function<absl::StatusOr<Metrics>(int64_t)> eval_;
  std::function<absl::Status(int64_t)> sample_;
  std::unique_ptr<JsonlLog> log_;
  std::optional<int64_t> resumed_step_;
  double start_time_ = 0;  // wall seconds trained before this process (from the checkpoint)
  double run_start_ = 0;   // steady-clock seconds when Run() began
};

// ---- the standard optimisation step ----

struct UpdateOptions {
  double lr = 0;              // learning rate for this step
  double clip_norm = 0;       // > 0: clip the global gradient norm
  ProcessGroup* group = nullptr;  // average gradients across ranks first
  Ema* ema = nullptr;         // update after the step
};

// All-reduces gradients (if a group is given), clips, and applies the AdamW step and EMA update. Returns the
// gradient norm before clipping. A non-finite norm skips the update (gradients are zeroed), and the norm (NaN or
// Inf) is returned so the caller can log it; the Trainer stops after too many in a row.
absl::StatusOr<double> ApplyGradients(AdamW& optimizer, const UpdateOptions& options);

// ---- mixed precision ----

// "fp32" | "bf16" | "auto" (bf16 on CUDA, fp32 on CPU); "fp16" is refused (training would need loss scaling).
absl::StatusOr<c10::ScalarType> ParsePrecision(absl::string_view name, c10::Device device);

// Enables autocast to `dtype` on `device` for the guard's lifetime (no-op for float32). Weights stay float32;
// matmuls/convs run in bf16. Works with LibTorch 1.13 (per-device-kind setters) and 2.4+ (device-type API).
class AutocastGuard {
 public:
  AutocastGuard(c10::Device device, c10::ScalarType dtype);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool prev_enabled_ = false;
  c10::ScalarType prev_dtype_ = c10::kFloat;
};

}  // namespace wfm::train
